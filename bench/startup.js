// node bench/startup.js: start-up cost of the built CLI (npm run build first) against a bare
// `node -e 0`, all interleaved, median of RUNS runs each (default 10) after one warm-up of each.
// Wall-clock time, as a user waits, and CPU time (user + system, from /usr/bin/time when it is
// installed), which a busy machine disturbs less. BASE=/other/checkout/bin/run.js adds that
// CLI's --version and apply --help, for a before/after comparison. Needs no root.
// docs/performance.md records the figures; the target is --version within 0.25 s of node -e 0.
'use strict';
const { existsSync } = require('node:fs');
const { spawnSync } = require('node:child_process');
const { join } = require('node:path');

const RUNS = Number(process.env.RUNS) || 10;
const BIN = join(__dirname, '..', 'bin', 'run.js');
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const CASES = [
  ['node -e 0', ['-e', '0']],
  ...(process.env.BASE ? [['BASE --version', [process.env.BASE, '--version']], ['BASE apply --help', [process.env.BASE, 'apply', '--help']]] : []),
  ['nspawnctl --version', [BIN, '--version']],
  ['nspawnctl --help', [BIN, '--help']],
  ['nspawnctl apply --help', [BIN, 'apply', '--help']],
  ['nspawnctl aply (did you mean)', [BIN, 'aply']],
  ['nspawnctl autocomplete bash', [BIN, 'autocomplete', 'bash']],
  ['nspawnctl init - (asks ip twice)', [BIN, 'init', '-']],
];

/** [wall, cpu] seconds of one run. */
function time(args) {
  const start = process.hrtime.bigint();
  const r = TIME ? spawnSync(TIME, ['-f', '%U %S', process.execPath, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] }) : spawnSync(process.execPath, args, { stdio: 'ignore' });
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.error) throw r.error;
  const cpu = TIME ? r.stderr.trim().split('\n').pop().split(' ').map(Number).reduce((a, b) => a + b, 0) : NaN;
  return [wall, cpu];
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const samples = CASES.map(() => []);
for (const [, args] of CASES) time(args);
for (let i = 0; i < RUNS; i++) CASES.forEach(([, args], k) => samples[k].push(time(args)));

const wall0 = median(samples[0].map((s) => s[0]));
const cpu0 = median(samples[0].map((s) => s[1]));
console.log(`node ${process.version}, median of ${RUNS} runs each, load average ${require('node:os').loadavg()[0].toFixed(2)}:`);
console.log(`  ${'command'.padEnd(34)} ${'wall'.padStart(7)} ${'vs node'.padStart(8)} ${'cpu'.padStart(7)} ${'vs node'.padStart(8)}`);
CASES.forEach(([name], k) => {
  const wall = median(samples[k].map((s) => s[0]));
  const cpu = median(samples[k].map((s) => s[1]));
  const extra = (v, b) => (k === 0 ? '' : `+${(v - b).toFixed(3)}`).padStart(8);
  console.log(`  ${name.padEnd(34)} ${wall.toFixed(3).padStart(7)} ${extra(wall, wall0)} ${cpu.toFixed(2).padStart(7)} ${extra(cpu, cpu0)}`);
});
