// node bench/readiness.js MACHINE [RUNS]: how long a machine takes from `machinectl start` until
// apply calls it ready (startMachine in dist/apply/machinectl.js: registered, its systemd done
// starting up, host0 configured when it has a network), against the same wait done by hand in
// the shell with no nspawnctl around it. Runs as root on a systemd host (bench/inside.sh runs it
// in the test host) with MACHINE created by nspawnctl; it is stopped before each run and left
// running at the end. Prints one JSON object: the medians, every run, and where nspawnctl's time
// went (each command it ran, in order, with its duration, for the median run).
'use strict';
const { spawnSync } = require('node:child_process');
const { join } = require('node:path');

const dist = join(__dirname, '..', 'dist');
const { createRealHost } = require(join(dist, 'host', 'host.js'));
const { startMachine, stopMachine } = require(join(dist, 'apply', 'machinectl.js'));

const name = process.argv[2];
const runs = Number(process.argv[3] ?? process.env.RUNS ?? 5);
const network = process.env.NETWORK !== '0';
if (!name) {
  process.stderr.write('usage: node bench/readiness.js MACHINE [RUNS]\n');
  process.exit(2);
}

const seconds = (ns) => Number(ns) / 1e9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** A Host whose runner notes every command and how long it took. */
function timedHost() {
  const host = createRealHost('/');
  const log = [];
  const run = host.runner.run.bind(host.runner);
  host.runner = {
    async run(file, args, options) {
      const start = process.hrtime.bigint();
      try {
        return await run(file, args, options);
      } finally {
        log.push({ argv: [file, ...args].join(' '), s: +seconds(process.hrtime.bigint() - start).toFixed(3) });
      }
    },
  };
  return { host, log };
}

/** The floor: the same start and waits from a shell, one process each, no node in between. */
function byHand() {
  const waitOnline = network ? `systemd-run --machine=${name} --wait --pipe --quiet --collect -- /lib/systemd/systemd-networkd-wait-online --interface=host0 --timeout=60 >/dev/null` : 'true';
  const script = [
    's=$(date +%s%N)',
    `machinectl start ${name}`,
    `until systemctl --machine=${name} is-system-running --wait >/dev/null 2>&1; do :; done`,
    waitOnline,
    'e=$(date +%s%N)',
    'echo $((e - s))',
  ].join('\n');
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`by hand: ${r.stderr}`);
  return seconds(BigInt(r.stdout.trim()));
}

async function main() {
  const wait = { timeoutMs: 90_000, network };
  const plain = createRealHost('/');
  const nspawnctl = [];
  const shell = [];
  const logs = [];
  for (let i = 0; i < runs; i++) {
    // Interleaved, so that a busy moment of the machine hits both alike.
    await stopMachine(plain, name, wait);
    shell.push(byHand());
    await stopMachine(plain, name, wait);
    const { host, log } = timedHost();
    const start = process.hrtime.bigint();
    await startMachine(host, name, wait);
    nspawnctl.push(seconds(process.hrtime.bigint() - start));
    logs.push(log);
  }
  const m = median(nspawnctl);
  const result = {
    machine: name,
    network,
    runs,
    nspawnctl: { median: +m.toFixed(3), runs: nspawnctl.map((x) => +x.toFixed(3)) },
    byHand: { median: +median(shell).toFixed(3), runs: shell.map((x) => +x.toFixed(3)) },
    commandsOfMedianRun: logs[nspawnctl.indexOf(m)],
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
