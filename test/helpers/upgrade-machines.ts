// A converged fake host whose machines answer apt and dpkg as a test scripts them, and the exact
// commands nspawnctl upgrade runs inside a machine, spelled out here (not taken from src/) so
// that the tests check them. Shared by the upgrade core and command tests.
import { convergeFakeHost, desiredFrom, makeBootedHost } from './converged';
import { FakeHost } from './fake-host';
import { inMachineArgv, simulateSystemd } from './simulated-systemd';

export const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive' };
/** The commands spelled out here, not taken from src/, so that the test checks them. */
export const UPDATE = (n: string) => inMachineArgv(n, ['apt-get', 'update'], APT_ENV);
export const FULL_UPGRADE = (n: string) =>
  inMachineArgv(n, ['apt-get', 'full-upgrade', '--yes', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold'], APT_ENV);
export const SIMULATE = (n: string) =>
  inMachineArgv(n, ['apt-get', '--simulate', 'full-upgrade', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold'], APT_ENV);
export const QUERY = (n: string) => inMachineArgv(n, ['dpkg-query', '--show', '--showformat=${db:Status-Abbrev}\\t${binary:Package}\\t${Version}\\n']);
export const REBOOT_TEST = (n: string) => inMachineArgv(n, ['test', '-e', '/run/reboot-required']);
export const REBOOT_PKGS = (n: string) => inMachineArgv(n, ['cat', '/run/reboot-required.pkgs']);

/** web and db run and can be upgraded; ro, vol and solo run but cannot; off is stopped. */
export const MANIFEST = `networks:
  lan: { subnet: 10.5.0.0/24 }
machines:
  web: { network: { bridge: lan, address: 10.5.0.2 } }
  db: { network: { bridge: lan, address: 10.5.0.3 } }
  ro: { network: { bridge: lan, address: 10.5.0.4 }, security: { readOnly: true } }
  vol: { network: { bridge: lan, address: 10.5.0.5 }, security: { volatile: overlay } }
  solo: {}
  off: { network: { bridge: lan, address: 10.5.0.6 } }
`;
export const RUNNING = ['web', 'db', 'ro', 'vol', 'solo'];

export interface MachineScript {
  simulate?: string;
  before?: string;
  after?: string;
  reboot?: boolean;
  rebootPkgs?: string;
  /** Which of its apt commands fails (exit 100). */
  fail?: 'update' | 'full-upgrade';
}

export const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A converged host running RUNNING, whose machines answer apt and dpkg as scripted. */
export function upgradeHost(scripts: Record<string, MachineScript> = {}): { host: FakeHost; running: Set<string> } {
  const host = makeBootedHost(new FakeHost());
  convergeFakeHost(host, desiredFrom(MANIFEST).desired, { queries: false });
  for (const [name, s] of Object.entries(scripts)) {
    let upgraded = false;
    const r = host.runner;
    r.on((a) => same(a, UPDATE(name)), s.fail === 'update' ? { exitCode: 100, stderr: 'E: Failed to fetch http://deb.example/dists/bookworm/InRelease\n' } : { stdout: 'Hit:1 http://deb.example bookworm InRelease\n' });
    r.on((a) => same(a, SIMULATE(name)), { stdout: s.simulate ?? '' });
    r.on((a) => same(a, QUERY(name)), () => ({ stdout: upgraded ? (s.after ?? s.before ?? '') : (s.before ?? '') }));
    r.on(
      (a) => same(a, FULL_UPGRADE(name)),
      () => {
        if (s.fail === 'full-upgrade') return { exitCode: 100, stderr: 'E: Sub-process /usr/bin/dpkg returned an error code (1)\n' };
        upgraded = true;
        return { stdout: 'Setting up nsctl-tiny (2) ...\n' };
      },
    );
    r.on((a) => same(a, REBOOT_TEST(name)), { exitCode: s.reboot ? 0 : 1 });
    r.on((a) => same(a, REBOOT_PKGS(name)), { stdout: s.rebootPkgs ?? '' });
  }
  const sim = simulateSystemd(host, { running: RUNNING, bridges: ['lan'] });
  return { host, running: sim.running };
}

export const TINY_BEFORE = 'ii \tnsctl-tiny\t1\nii \tlibc6\t2.36-9+deb12u4\n';
export const TINY_AFTER = 'ii \tnsctl-tiny\t2\nii \tlibc6\t2.36-9+deb12u4\n';
