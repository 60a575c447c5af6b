// Scripts a FakeHost's runner to behave like a small systemd host: machinectl start/poweroff/
// enable/disable/show/list keep a set of running machines and the autostart links, a running
// machine's systemd is up (is-system-running says running, systemd-run into it succeeds), a
// maintenance boot (systemd-run --unit=nspawnctl-maintenance-NAME.service) registers NAME,
// networkctl reload makes the bridges appear (in /sys/class/net and to `ip link show`), and a
// bootstrapper creates its target directory.
import { autostartLinkPath } from '../../src/host/paths';
import { FakeHost } from './fake-host';
import { simulateSync } from './image-cache';

export interface SimulatedSystemd {
  running: Set<string>;
  /** Bridges networkd has created (after `networkctl reload`). */
  bridges: Set<string>;
}

/** Adds the responses; `running` machines start out registered and running. */
export function simulateSystemd(host: FakeHost, options: { running?: string[]; bridges?: string[]; leaderPid?: number } = {}): SimulatedSystemd {
  const sim: SimulatedSystemd = { running: new Set(options.running ?? []), bridges: new Set() };
  const r = host.runner;
  const ok = { exitCode: 0 };
  const is = (file: string, ...prefix: string[]) => (argv: string[]) => argv[0] === file && prefix.every((p, i) => argv[i + 1] === p);

  r.on(['machinectl', 'list', '--no-legend', '--no-pager', '--full'], () => ({
    stdout: [...sim.running].sort().map((n) => `${n} container systemd-nspawn debian 12 -\n`).join(''),
  }));
  r.on(['systemctl', 'is-active', 'systemd-networkd.service'], { stdout: 'active\n' });
  r.on(is('machinectl', 'show'), ({ args }) => {
    const [, name, property] = args;
    if (!sim.running.has(name)) return { exitCode: 1, stderr: `Could not get path to machine: No machine '${name}' known\n` };
    return { stdout: property === '--property=Leader' ? `${options.leaderPid ?? 4321}\n` : 'running\n' };
  });
  r.on(is('machinectl', 'start'), ({ args }) => {
    sim.running.add(args[1]);
    return ok;
  });
  r.on(is('machinectl', 'poweroff'), ({ args }) => {
    sim.running.delete(args[1]);
    return ok;
  });
  r.on(is('machinectl', 'enable'), ({ args }) => {
    host.fs.addSymlink(autostartLinkPath(args[1]), '/lib/systemd/system/systemd-nspawn@.service');
    return ok;
  });
  r.on(is('machinectl', 'disable'), ({ args }) => {
    host.fs.nodes.delete(autostartLinkPath(args[1]));
    return ok;
  });
  r.on(is('systemctl', 'is-active'), ({ args }) => {
    const name = /^systemd-nspawn@(.+)\.service$/.exec(args[1])?.[1] ?? '';
    return sim.running.has(name) ? { stdout: 'active\n' } : { exitCode: 3, stdout: 'inactive\n' };
  });
  r.on(['networkctl', 'reload'], () => {
    for (const b of options.bridges ?? []) {
      sim.bridges.add(b);
      host.fs.addDir(`/sys/class/net/${b}`);
    }
    return ok;
  });
  r.on(is('ip', 'link', 'show', 'dev'), ({ args }) =>
    sim.bridges.has(args[3]) ? { stdout: `7: ${args[3]}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\n` } : { exitCode: 1, stderr: `Device "${args[3]}" does not exist.\n` },
  );
  // Stopping a transient unit that is not there succeeds, as systemctl stop does.
  r.on((a) => a[0] === 'systemctl' && a[1] === 'stop' && /^nspawnctl-maintenance-.+\.service$/.test(a[2] ?? ''), {});
  r.on(['ip', '-json', 'link', 'show'], () => ({ stdout: ipLinkJson(['lo', 'eth0', ...sim.bridges]) }));
  // The machine's own systemd: done starting up once it runs; commands run inside succeed.
  const machineArg = (argv: string[]) => /^--machine=(.+)$/.exec(argv[1] ?? '')?.[1] ?? '';
  r.on(
    (a) => a[0] === 'systemctl' && a[1]?.startsWith('--machine=') && a[2] === 'is-system-running',
    ({ file, args }) => (sim.running.has(machineArg([file, ...args])) ? { stdout: 'running\n' } : { exitCode: 1, stderr: 'Failed to connect to bus: Host is down\n' }),
  );
  r.on(
    (a) => a[0] === 'systemd-run' && a[1]?.startsWith('--machine='),
    ({ file, args }) => (sim.running.has(machineArg([file, ...args])) ? {} : { exitCode: 1, stderr: 'Failed to connect to bus: Host is down\n' }),
  );
  // A maintenance boot (a transient unit running systemd-nspawn --boot) registers its machine.
  r.on(
    (a) => a[0] === 'systemd-run' && /^--unit=nspawnctl-maintenance-.+\.service$/.test(a[1] ?? ''),
    ({ args }) => {
      sim.running.add(/^--unit=nspawnctl-maintenance-(.+)\.service$/.exec(args[0])![1]);
      return ok;
    },
  );
  r.on(is('mmdebstrap'), ({ args }) => {
    host.fs.addDir(args[args.length - 2]);
    return ok;
  });
  r.on(is('systemd-nspawn'), ok);
  simulateSync(host);
  return sim;
}

/** What `ip -json link show` prints for these interface names (only the fields nspawnctl reads, and a few more). */
export function ipLinkJson(names: string[]): string {
  return `${JSON.stringify(names.map((ifname, i) => ({ ifindex: i + 1, ifname, flags: ['UP'], mtu: 1500 })))}\n`;
}

/**
 * The argv that runs `command` inside the running machine `name` through its own systemd, spelled
 * out here (not taken from src/) so that tests check it: systemd-run --machine with --wait --pipe
 * --quiet --collect, one --setenv per variable, and "$" doubled (systemd would expand it).
 */
export function inMachineArgv(name: string, command: string[], env: Record<string, string> = {}): string[] {
  return [
    'systemd-run',
    `--machine=${name}`,
    '--wait',
    '--pipe',
    '--quiet',
    '--collect',
    ...Object.entries(env).map(([k, v]) => `--setenv=${k}=${v}`),
    '--',
    ...command.map((a) => a.split('$').join('$$')),
  ];
}

/**
 * What apply asks after a machine registered as running: its systemd finished starting up, and,
 * for a machine with a network, networkd inside configured host0 within `waitOnlineS` seconds.
 */
export function readyCalls(name: string, waitOnlineS?: number): string[][] {
  const ready = [['systemctl', `--machine=${name}`, 'is-system-running', '--wait']];
  if (waitOnlineS === undefined) return ready;
  return [...ready, inMachineArgv(name, ['/lib/systemd/systemd-networkd-wait-online', '--interface=host0', `--timeout=${waitOnlineS}`])];
}
