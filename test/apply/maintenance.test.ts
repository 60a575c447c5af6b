// A stopped machine's own programs run in systemd-nspawn with the machine's own settings: a
// maintenance boot (a transient unit) for package installs into a read-only or volatile machine,
// and the one-off ownership shift of a read-only root. prepareReadOnly's mount points are made
// through the rootfs handle.
import { runStep } from '../../src/apply/apply';
import { prepareReadOnly } from '../../src/apply/bootstrap';
import { maintenanceUnit, shiftOwnership, withMaintenanceBoot } from '../../src/apply/maintenance';
import { NspawnctlError, UnsafePathError } from '../../src/errors';
import { renderNspawnFile } from '../../src/render/nspawn';
import { makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { APP_LIMIT_PROPERTIES, APP_NSPAWN, appMaintenanceBoot, specMachines, STOP_LEFTOVER_MAINTENANCE } from '../helpers/machine-specs';
import { readyCalls, simulateSystemd } from '../helpers/simulated-systemd';

const MACHINES = specMachines();
const SHOW = (n: string) => ['machinectl', 'show', n, '--property=State', '--value'];
const SHIFT_BASE = 524288;

/** The one-off shift of app's files into `users` (pick, identity or a base UID). */
const APP_SHIFT = (users: string) => [
  'systemd-nspawn',
  '--quiet',
  ...APP_LIMIT_PROPERTIES.map((p) => `--property=${p}`),
  '--settings=no',
  '--console=pipe',
  '--link-journal=no',
  '--timezone=off',
  '--resolv-conf=off',
  '--machine=app',
  '--directory=/var/lib/machines/app',
  // The machine's containment, without its mounts and without any network.
  '--hostname=app',
  `--private-users=${users}`,
  '--no-new-privileges=yes',
  '--drop-capability=CAP_MKNOD,CAP_SYS_PTRACE',
  '--system-call-filter=~@clock',
  '--private-users-ownership=chown',
  '--private-network',
  '--',
  '/bin/true',
];

test('the options below are read from app\'s .nspawn file, which is this', () => {
  expect(renderNspawnFile(MACHINES.app, 'machines.yaml').split('\n').slice(3).join('\n')).toBe(APP_NSPAWN);
});

describe('withMaintenanceBoot', () => {
  test('boots the machine in its own transient unit, waits until it is ready, runs fn, powers it off; fn\'s result is returned', async () => {
    const host = makeBootedHost(new FakeHost());
    const sim = simulateSystemd(host, { bridges: ['lan'] });
    const seen: boolean[] = [];
    const result = await withMaintenanceBoot(host, MACHINES.app, 45_000, async () => {
      seen.push(sim.running.has('app'));
      return 'done';
    });
    expect(result).toBe('done');
    expect(seen).toEqual([true]);
    expect(maintenanceUnit('app')).toBe('nspawnctl-maintenance-app.service');
    expect(host.runner.argvs()).toEqual([
      STOP_LEFTOVER_MAINTENANCE('app'),
      appMaintenanceBoot(45),
      ...readyCalls('app', 45),
      ['machinectl', 'poweroff', 'app'],
      SHOW('app'),
      ['systemctl', 'is-active', 'nspawnctl-maintenance-app.service'],
    ]);
    expect(sim.running.has('app')).toBe(false);
    host.assertNoUnmatchedCalls();
  });

  test('fn fails: the machine is still powered off, and the failure is what is thrown', async () => {
    const host = makeBootedHost(new FakeHost());
    const sim = simulateSystemd(host, { bridges: ['lan'] });
    const boom = new NspawnctlError('apt failed');
    await expect(withMaintenanceBoot(host, MACHINES.app, 45_000, async () => Promise.reject(boom))).rejects.toBe(boom);
    expect(host.runner.argvs().slice(-3)).toEqual([['machinectl', 'poweroff', 'app'], SHOW('app'), ['systemctl', 'is-active', 'nspawnctl-maintenance-app.service']]);
    expect(sim.running.has('app')).toBe(false);
  });

  test('the machine does not go away after poweroff: its maintenance unit is stopped', async () => {
    const host = makeBootedHost(new FakeHost());
    // poweroff is ignored (responses are tried in order: this one before the simulation's).
    host.runner.on(['machinectl', 'poweroff', 'app'], {});
    host.runner.on(['systemctl', 'stop', 'nspawnctl-maintenance-app.service'], {});
    simulateSystemd(host, { bridges: ['lan'] });
    // A timeout of 0 gives up on waiting at once (no real sleep); the unit still gets 1 s to start.
    await withMaintenanceBoot(host, MACHINES.app, 0, async () => undefined);
    expect(host.runner.argvs()).toEqual([
      STOP_LEFTOVER_MAINTENANCE('app'),
      appMaintenanceBoot(1),
      ...readyCalls('app', 1),
      ['machinectl', 'poweroff', 'app'],
      SHOW('app'),
      ['systemctl', 'stop', 'nspawnctl-maintenance-app.service'],
    ]);
    host.assertNoUnmatchedCalls();
  });

  test('"$" in the machine\'s settings reaches systemd-nspawn verbatim (systemd would expand it)', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host, { bridges: ['lan'] });
    const app = { ...MACHINES.app, hostname: 'a$b' };
    await withMaintenanceBoot(host, app, 45_000, async () => undefined);
    expect(host.runner.argvs()[1]).toContain('--hostname=a$$b');
  });
});

describe('shiftOwnership', () => {
  test.each<['pick' | number, string]>([
    ['pick', 'pick'],
    [SHIFT_BASE, String(SHIFT_BASE)],
    [0, 'identity'],
  ])('shift %p: systemd-nspawn with the machine\'s settings and limits, no network, ownership chown, only /bin/true', async (shift, users) => {
    const host = makeBootedHost(new FakeHost());
    host.runner.on((a) => a[0] === 'systemd-nspawn', {});
    const onLine = () => undefined;
    await shiftOwnership(host, MACHINES.app, shift, 30_000, onLine);
    expect(host.runner.argvs()).toEqual([APP_SHIFT(users)]);
    expect(host.runner.calls[0].options).toEqual({ onLine, dieWithParent: true, timeoutMs: 30_000 });
  });

  test('a machine without a network keeps its own private network; the default TasksMax applies', async () => {
    const host = makeBootedHost(new FakeHost());
    host.runner.on((a) => a[0] === 'systemd-nspawn', {});
    await shiftOwnership(host, MACHINES.solo, SHIFT_BASE, 30_000);
    expect(host.runner.argvs()).toEqual([
      [
        'systemd-nspawn',
        '--quiet',
        '--property=TasksMax=16384',
        '--settings=no',
        '--console=pipe',
        '--link-journal=no',
        '--timezone=off',
        '--resolv-conf=off',
        '--machine=solo',
        '--directory=/var/lib/machines/solo',
        '--hostname=solo',
        `--private-users=${SHIFT_BASE}`,
        '--private-users-ownership=chown',
        '--private-network',
        '--',
        '/bin/true',
      ],
    ]);
  });
});

describe('prepareReadOnly', () => {
  function hostWithApp(): FakeHost {
    const host = makeBootedHost(new FakeHost());
    host.runner.on((a) => a[0] === 'systemd-nspawn', {});
    host.fs.addDir('/var/lib/machines/app', { uid: SHIFT_BASE });
    host.fs.addDir('/var/lib/machines/app/tmp', { uid: SHIFT_BASE });
    return host;
  }

  test('shifts, then makes the missing mount points inside the rootfs, owned like its top', async () => {
    const host = hostWithApp();
    await prepareReadOnly(host, MACHINES.app, 'pick', ['/etc/app', '/srv/app', '/tmp'], 30_000);
    expect(host.runner.argvs()).toEqual([APP_SHIFT('pick')]);
    expect(host.fs.changes).toEqual([
      'mkdir /var/lib/machines/app/etc',
      'mkdir /var/lib/machines/app/etc/app',
      'mkdir /var/lib/machines/app/srv',
      'mkdir /var/lib/machines/app/srv/app',
    ]);
    for (const p of ['/etc', '/etc/app', '/srv', '/srv/app']) {
      expect(host.fs.nodes.get(`/var/lib/machines/app${p}`)).toEqual({ type: 'dir', mode: 0o755, uid: SHIFT_BASE, gid: SHIFT_BASE });
    }
    expect(host.fs.opened).toEqual(['/var/lib/machines/app']);
  });

  test('no shift to do: only the mount points', async () => {
    const host = hostWithApp();
    await prepareReadOnly(host, MACHINES.app, undefined, ['/tmp'], 30_000);
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('a symlink on the way to a mount point: refused, nothing made through it on the host', async () => {
    const host = hostWithApp();
    host.fs.addSymlink('/var/lib/machines/app/srv', '/srv');
    host.fs.addDir('/srv');
    const err = await prepareReadOnly(host, MACHINES.app, undefined, ['/etc/app', '/srv/app'], 30_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafePathError);
    expect((err as UnsafePathError).path).toBe('/var/lib/machines/app/srv');
    expect(host.fs.changes).toEqual(['mkdir /var/lib/machines/app/etc', 'mkdir /var/lib/machines/app/etc/app']);
    expect(host.fs.nodes.has('/srv/app')).toBe(false);
  });
});

test('the install and prepare steps take the machine from the manifest being applied; one not in it is an internal error', async () => {
  const host = makeBootedHost(new FakeHost());
  const step = { kind: 'install-packages' as const, machine: 'ghost', packages: ['x'], reason: 'r' };
  const err = (await runStep(host, step, { startTimeoutMs: 1000, machines: MACHINES }, () => undefined).catch((e: unknown) => e)) as NspawnctlError;
  expect(err.message).toBe('machine ghost: internal: machine ghost is not in the manifest being applied');
  expect(host.runner.calls).toEqual([]);
});
