// Scripts a FakeHost's runner to behave like a small systemd host: machinectl start/poweroff/
// enable/disable/show/list keep a set of running machines and the autostart links, networkctl
// reload makes the bridges appear (in /sys/class/net and to `ip link show`), and a bootstrapper creates its target directory.
import { autostartLinkPath } from '../../src/host/paths';
import { FakeHost } from './fake-host';

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
  r.on(is('mmdebstrap'), ({ args }) => {
    host.fs.addDir(args[args.length - 2]);
    return ok;
  });
  r.on(is('systemd-nspawn'), ok);
  return sim;
}
