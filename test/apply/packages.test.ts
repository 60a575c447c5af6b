// Packages added after creation are installed by the machine itself, through its own systemd:
// in place when its root is writable (started first when it is stopped), in a maintenance boot
// when its root is read-only or volatile. Nothing runs a machine's apt from the host.
import { installPackages } from '../../src/apply/packages';
import { NspawnctlError } from '../../src/errors';
import { makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { appMaintenanceBoot, specMachines, STOP_LEFTOVER_MAINTENANCE } from '../helpers/machine-specs';
import { inMachineArgv, readyCalls, simulateSystemd } from '../helpers/simulated-systemd';

const MACHINES = specMachines();
const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive' };
const APT = (n: string, ...packages: string[]) => [
  inMachineArgv(n, ['apt-get', 'update'], APT_ENV),
  inMachineArgv(n, ['apt-get', 'install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', ...packages], APT_ENV),
];
const SHOW = (n: string) => ['machinectl', 'show', n, '--property=State', '--value'];
const OPTIONS = { timeoutMs: 60_000 };

function hostRunning(...running: string[]): { host: FakeHost; running: Set<string> } {
  const host = makeBootedHost(new FakeHost());
  return { host, running: simulateSystemd(host, { running, bridges: ['lan'] }).running };
}

describe('installPackages', () => {
  test('a running machine with a writable root: apt-get update and install inside it, nothing else', async () => {
    const { host, running } = hostRunning('web');
    const lines: string[] = [];
    await installPackages(host, MACHINES.web, ['curl', 'jq'], { ...OPTIONS, onLine: (l) => lines.push(l) });
    expect(host.runner.argvs()).toEqual([SHOW('web'), ...APT('web', 'curl', 'jq')]);
    host.assertNoUnmatchedCalls();
    // apt's output is shown as progress; it dies with nspawnctl.
    expect(host.runner.calls.slice(1).map((c) => [c.options?.dieWithParent, typeof c.options?.onLine])).toEqual([
      [true, 'function'],
      [true, 'function'],
    ]);
    expect([...running]).toEqual(['web']);
    expect(host.fs.changes).toEqual([]);
  });

  test('a stopped machine with a writable root: started (and waited for) first, then the same', async () => {
    const { host, running } = hostRunning();
    await installPackages(host, MACHINES.web, ['curl'], OPTIONS);
    expect(host.runner.argvs()).toEqual([SHOW('web'), ['machinectl', 'start', 'web'], SHOW('web'), ...readyCalls('web', 60), ...APT('web', 'curl')]);
    host.assertNoUnmatchedCalls();
    expect([...running]).toEqual(['web']);
  });

  test('a running read-only machine: stopped, booted once with a writable root in a maintenance unit, installed inside, powered off', async () => {
    const { host, running } = hostRunning('app');
    await installPackages(host, MACHINES.app, ['nginx'], OPTIONS);
    expect(host.runner.argvs()).toEqual([
      SHOW('app'),
      // stopMachine: still there, poweroff, gone (and its unit inactive).
      SHOW('app'),
      ['machinectl', 'poweroff', 'app'],
      SHOW('app'),
      ['systemctl', 'is-active', 'systemd-nspawn@app.service'],
      STOP_LEFTOVER_MAINTENANCE('app'),
      appMaintenanceBoot(60),
      ...readyCalls('app', 60),
      ...APT('app', 'nginx'),
      ['machinectl', 'poweroff', 'app'],
      SHOW('app'),
      ['systemctl', 'is-active', 'nspawnctl-maintenance-app.service'],
    ]);
    host.assertNoUnmatchedCalls();
    // The plan starts it normally afterwards.
    expect([...running]).toEqual([]);
  });

  test('a stopped read-only machine: no stop, the same maintenance boot', async () => {
    const { host } = hostRunning();
    await installPackages(host, MACHINES.app, ['nginx'], OPTIONS);
    expect(host.runner.argvs().slice(0, 3)).toEqual([SHOW('app'), STOP_LEFTOVER_MAINTENANCE('app'), appMaintenanceBoot(60)]);
    expect(host.runner.argvs().filter((a) => a[0] === 'systemd-run').map((a) => a[1])).toEqual([
      '--unit=nspawnctl-maintenance-app.service',
      '--machine=app',
      '--machine=app',
      '--machine=app',
    ]);
  });

  test('a volatile machine goes through a maintenance boot too (its changes would not outlive a normal boot)', async () => {
    const { host } = hostRunning('vol');
    await installPackages(host, MACHINES.vol, ['nginx'], OPTIONS);
    const boot = host.runner.argvs().find((a) => a[1]?.startsWith('--unit='))!;
    expect(boot.slice(0, 2)).toEqual(['systemd-run', '--unit=nspawnctl-maintenance-vol.service']);
    // Its own settings, without Volatile=: the root it boots is writable.
    expect(boot.filter((a) => a.startsWith('--volatile') || a.startsWith('--read-only'))).toEqual([]);
    expect(boot.slice(boot.indexOf('--directory=/var/lib/machines/vol') + 1)).toEqual([
      '--hostname=vol',
      // volatile: state keeps the root read-only, so the host's nameservers are bind-mounted.
      '--resolv-conf=bind-host',
      '--private-users=pick',
      '--private-users-ownership=auto',
      '--network-bridge=lan',
    ]);
    expect(host.runner.argvs().filter((a) => a[1] === '--machine=vol' && a[0] === 'systemd-run').map((a) => a.slice(-2))).toEqual([
      ['--interface=host0', '--timeout=60'],
      ['apt-get', 'update'],
      ['Dpkg::Options::=--force-confold', 'nginx'],
    ]);
  });

  test('a machine without a network: a clear error, and nothing is run', async () => {
    const { host } = hostRunning('solo');
    const err = (await installPackages(host, MACHINES.solo, ['curl', 'jq'], OPTIONS).catch((e: unknown) => e)) as NspawnctlError;
    expect(err).toBeInstanceOf(NspawnctlError);
    expect([err.message, err.hint]).toEqual([
      'machine solo has no network, so apt inside it cannot download curl jq',
      'Packages added after creation are installed by the machine itself: give it a network (with nat: true, or an aptProxy reachable from its bridge), or destroy it and apply again to build it with them.',
    ]);
    expect(host.runner.calls).toEqual([]);
  });
});
