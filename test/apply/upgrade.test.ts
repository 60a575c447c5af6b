// nspawnctl upgrade's core: what is taken from apt's and dpkg's output (which comes from inside a
// machine, so hostile lines too), which machines it acts on, the exact commands it runs inside
// each (through the machine's own systemd), how it decides a machine needs a restart, the record
// of the upgrade, and --restart: one machine at a time, a failure stopping no other.
import {
  APT_SIMULATE_FULL_UPGRADE,
  diffInstalledPackages,
  DPKG_QUERY_INSTALLED,
  formatUpgradeReport,
  MAX_PACKAGES,
  parseInstalledPackages,
  parseSimulatedUpgrade,
  readNspawnFacts,
  restartReasons,
  selectUpgradeTargets,
  summarizeUpgradeFailures,
  upgradeMachines,
  UpgradeOptions,
} from '../../src/apply/upgrade';
import { machineRecordPath } from '../../src/host/paths';
import { machineRecordSchema } from '../../src/plan/records';
import { APT_FULL_UPGRADE, APT_UPDATE, renderAutoUpgradeService } from '../../src/render/auto-upgrade';
import { desiredFrom } from '../helpers/converged';
import { FakeHost, RunCall } from '../helpers/fake-host';
import { readyCalls } from '../helpers/simulated-systemd';
import { FULL_UPGRADE, MANIFEST, QUERY, REBOOT_PKGS, REBOOT_TEST, SIMULATE, TINY_AFTER, TINY_BEFORE, UPDATE, upgradeHost } from '../helpers/upgrade-machines';

const SIMULATION = `NOTE: This is only a simulation!
      apt-get needs root privileges for real execution.
Reading package lists...
Building dependency tree...
Calculating upgrade...
The following packages will be upgraded:
  libc6 nsctl-tiny
2 upgraded, 1 newly installed, 1 to remove and 0 not upgraded.
Remv oldlib [0.9-1]
Inst libc6 [2.36-9+deb12u4] (2.36-9+deb12u7 Debian:12.7/stable [amd64]) []
Inst nsctl-tiny [1] (2 localhost [all])
Inst newdep (1.0-2 Debian:12.7/stable [amd64])
Conf libc6 (2.36-9+deb12u7 Debian:12.7/stable [amd64])
Conf nsctl-tiny (2 localhost [all])
Conf newdep (1.0-2 Debian:12.7/stable [amd64])
`;

describe('parseSimulatedUpgrade: what apt-get --simulate full-upgrade would change', () => {
  test('upgrades with old and new version, new packages, removals; Conf and other lines ignored; sorted by name', () => {
    expect(parseSimulatedUpgrade(SIMULATION)).toEqual([
      { package: 'libc6', from: '2.36-9+deb12u4', to: '2.36-9+deb12u7' },
      { package: 'newdep', to: '1.0-2' },
      { package: 'nsctl-tiny', from: '1', to: '2' },
      { package: 'oldlib', from: '0.9-1' },
    ]);
  });

  test('nothing to do: an empty list', () => {
    expect(parseSimulatedUpgrade('Reading package lists...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n')).toEqual([]);
  });

  test('epochs, tildes and architecture-qualified names are Debian syntax and kept', () => {
    expect(parseSimulatedUpgrade('Inst libfoo1:i386 [1:2.0~rc1-1] (1:2.0-1 Debian:12/stable [i386])\n')).toEqual([{ package: 'libfoo1:i386', from: '1:2.0~rc1-1', to: '1:2.0-1' }]);
  });

  test('hostile lines from a machine are ignored, never passed on', () => {
    const hostile = [
      'Inst evil\u001b[2J [1] (2 x [all])', // a terminal escape in the name
      'Inst EVIL [1] (2 x [all])', // not Debian's syntax (upper case)
      'Inst ok [1] (2\u001b]0;pwned\u0007 x [all])', // an escape in the version
      'Inst spaced name [1] (2 x [all])',
      'Inst $(reboot) [1] (2 x [all])',
      `Inst ${'a'.repeat(200)} [1] (2 x [all])`, // longer than a package name may be
      'Inst tooshort- [1;rm -rf /] (2 x [all])', // a version with shell text
      'Remv gone [1] trailing words',
      '  Inst indented [1] (2 x [all])',
      'XInst prefixed [1] (2 x [all])',
      `Inst huge [1] (2 ${'x'.repeat(2000)} [all])`, // an overlong line
      'Inst good [1] (2 x [all])',
      'Inst good [7] (8 x [all])', // the same package twice: the first line counts
    ].join('\n');
    expect(parseSimulatedUpgrade(hostile)).toEqual([{ package: 'good', from: '1', to: '2' }]);
  });

  test('at most MAX_PACKAGES packages are taken from one machine', () => {
    const many = Array.from({ length: MAX_PACKAGES + 50 }, (_, i) => `Inst p${i} [1] (2 x [all])`).join('\n');
    expect(parseSimulatedUpgrade(many)).toHaveLength(MAX_PACKAGES);
  });
});

describe('what dpkg-query lists as installed, and what changed', () => {
  const before = parseInstalledPackages(['ii \tlibc6\t2.36-9+deb12u4', 'ii \tnsctl-tiny\t1', 'rc \tpurged-ish\t0.1', 'un \tnever\t', 'ii \toldlib\t0.9-1', 'iU \thalf\t3'].join('\n'));
  const after = parseInstalledPackages(['ii \tlibc6\t2.36-9+deb12u7', 'ii \tnsctl-tiny\t2', 'ii \tnewdep\t1.0-2', 'rc \toldlib\t0.9-1', 'iU \thalf\t3', ''].join('\n'));

  test('config-files and not-installed packages are not installed', () => {
    expect([...before]).toEqual([
      ['libc6', '2.36-9+deb12u4'],
      ['nsctl-tiny', '1'],
      ['oldlib', '0.9-1'],
      ['half', '3'],
    ]);
  });

  test('the difference: upgraded, newly installed, removed (left as config-files)', () => {
    expect(diffInstalledPackages(before, after)).toEqual([
      { package: 'libc6', from: '2.36-9+deb12u4', to: '2.36-9+deb12u7' },
      { package: 'newdep', to: '1.0-2' },
      { package: 'nsctl-tiny', from: '1', to: '2' },
      { package: 'oldlib', from: '0.9-1' },
    ]);
  });

  test('hostile lines are ignored', () => {
    const text = ['ii \tok\t1', 'ii \tbad\u001b[1m\t1', 'ii \tok2\t1\textra', 'ii \tUPPER\t1', 'ii \tv\t1 2', 'i', 'ii \tok\t9'].join('\n');
    expect([...parseInstalledPackages(text)]).toEqual([['ok', '1']]);
  });
});

describe('restartReasons', () => {
  const none = { required: false, packages: [] };
  test('no reboot-required file and nothing that stays loaded: none', () => {
    expect(restartReasons([{ package: 'nsctl-tiny', from: '1', to: '2' }, { package: 'libc-bin', from: '1', to: '2' }], none)).toEqual([]);
  });

  test('/run/reboot-required, with the packages its .pkgs file names', () => {
    expect(restartReasons([], { required: true, packages: ['nsctl-tiny'] })).toEqual(['/run/reboot-required exists (nsctl-tiny)']);
    expect(restartReasons([], { required: true, packages: [] })).toEqual(['/run/reboot-required exists']);
  });

  test('libc6, systemd, its shared library and dbus: upgraded or installed, not removed', () => {
    const changes = [
      { package: 'libc6', from: '1', to: '2' },
      { package: 'systemd', from: '252.1', to: '252.2' },
      { package: 'libsystemd-shared', from: '252.1', to: '252.2' },
      { package: 'dbus', to: '1.14' },
      { package: 'dbus-daemon', from: '1.14' },
      { package: 'libc6:i386', from: '1', to: '2' },
    ];
    expect(restartReasons(changes, none)).toEqual([
      'libc6 was upgraded',
      'systemd was upgraded',
      'libsystemd-shared was upgraded',
      'dbus was installed',
      'libc6:i386 was upgraded',
    ]);
    expect(restartReasons([{ package: 'libc6', from: '1', to: '2' }], { required: true, packages: ['libc6'] }, true)).toEqual(['/run/reboot-required exists (libc6)', 'libc6 would be upgraded']);
  });
});

const OPTIONS: UpgradeOptions = { dryRun: false, jobs: 2, restart: false, startTimeoutMs: 30_000, renderer: 'silent', now: () => '2025-03-04T05:06:07.000Z', clock: () => 0 };

describe('readNspawnFacts reads what the .nspawn file says', () => {
  test('writable with a bridge; read-only; volatile; no network; no file', async () => {
    const { host } = upgradeHost();
    expect(await readNspawnFacts(host, 'web')).toEqual({ readOnly: false, network: true });
    expect(await readNspawnFacts(host, 'ro')).toEqual({ readOnly: true, network: true });
    expect(await readNspawnFacts(host, 'vol')).toEqual({ readOnly: false, volatile: 'overlay', network: true });
    expect(await readNspawnFacts(host, 'solo')).toEqual({ readOnly: false, network: false });
    expect(await readNspawnFacts(host, 'ghost')).toBeUndefined();
  });
});

describe('selectUpgradeTargets', () => {
  test('without names: every running machine that can take an upgrade; the others skipped with the reason', async () => {
    const { host } = upgradeHost();
    const { targets, skipped } = await selectUpgradeTargets(host);
    expect(targets).toEqual([
      { name: 'db', network: true },
      { name: 'web', network: true },
    ]);
    expect(skipped.map((s) => `${s.name}: ${s.reason}`)).toEqual([
      'off: it is not running (start it, then upgrade it)',
      'ro: its root is read-only while it runs (security.readOnly), so its packages cannot change in place',
      'solo: it has no network, so apt inside it cannot download',
      'vol: its root is volatile (security.volatile: overlay), so an upgrade would be lost when it stops',
    ]);
    expect(host.fs.changes).toEqual([]);
  });

  test('named machines that cannot be upgraded: an error naming each, nothing done', async () => {
    const { host } = upgradeHost();
    await expect(selectUpgradeTargets(host, ['web', 'off', 'ro'])).rejects.toThrow(
      'cannot upgrade machine off: it is not running (start it, then upgrade it); machine ro: its root is read-only while it runs (security.readOnly), so its packages cannot change in place',
    );
    expect(host.runner.argvs().filter((a) => a[0] === 'systemd-run')).toEqual([]);
  });

  test('a name nspawnctl does not manage is an error', async () => {
    const { host } = upgradeHost();
    await expect(selectUpgradeTargets(host, ['web', 'ghost'])).rejects.toThrow('no machine named ghost is managed by nspawnctl');
  });

  test('named once or twice: once', async () => {
    const { host } = upgradeHost();
    expect((await selectUpgradeTargets(host, ['web', 'web'])).targets).toEqual([{ name: 'web', network: true }]);
  });

  test('a host not booted with systemd: exit 3', async () => {
    const host = new FakeHost();
    await expect(selectUpgradeTargets(host)).rejects.toMatchObject({ exitCode: 3 });
  });
});

describe('upgradeMachines', () => {
  test('a real upgrade: update, what is installed, full-upgrade, what is installed now, reboot check, record; all inside the machine', async () => {
    const { host } = upgradeHost({ web: { before: TINY_BEFORE, after: TINY_AFTER, reboot: true, rebootPkgs: 'nsctl-tiny\n' } });
    const [web] = await upgradeMachines(host, [{ name: 'web', network: true }], OPTIONS);
    expect(host.runner.argvs()).toEqual([UPDATE('web'), QUERY('web'), FULL_UPGRADE('web'), QUERY('web'), REBOOT_TEST('web'), REBOOT_PKGS('web')]);
    host.assertNoUnmatchedCalls();
    expect(web).toEqual({
      name: 'web',
      status: 'upgraded',
      changes: [{ package: 'nsctl-tiny', from: '1', to: '2' }],
      restartNeeded: ['/run/reboot-required exists (nsctl-tiny)'],
      upgraded: '2025-03-04T05:06:07.000Z',
    });
    // apt gets the long timeout and dies with nspawnctl; the short commands get the short one.
    const timeouts = host.runner.calls.map((c: RunCall) => [c.args[c.args.indexOf('--') + 1], c.options?.timeoutMs, c.options?.dieWithParent ?? false]);
    expect(timeouts).toEqual([
      ['apt-get', 1_800_000, true],
      ['dpkg-query', 60_000, false],
      ['apt-get', 1_800_000, true],
      ['dpkg-query', 60_000, false],
      ['test', 60_000, false],
      ['cat', 60_000, false],
    ]);
  });

  test('the record gets `upgraded`, everything else kept; still 0600 in a 0700 directory', async () => {
    const { host } = upgradeHost({ web: { before: TINY_BEFORE, after: TINY_AFTER } });
    const before = host.fs.textAt(machineRecordPath('web'))!;
    await upgradeMachines(host, [{ name: 'web', network: true }], OPTIONS);
    const record = JSON.parse(host.fs.textAt(machineRecordPath('web'))!);
    expect(record).toEqual({ ...JSON.parse(before), upgraded: '2025-03-04T05:06:07.000Z' });
    expect(machineRecordSchema.parse(record).upgraded).toBe('2025-03-04T05:06:07.000Z');
    expect(Object.keys(record).pop()).toBe('upgraded');
    const node = host.fs.nodes.get(machineRecordPath('web'));
    expect(node?.type === 'file' && node.mode).toBe(0o600);
    expect(host.fs.changes).toEqual([`write ${machineRecordPath('web')}`]);
  });

  test('nothing to upgrade: up to date, no restart, still recorded', async () => {
    const { host } = upgradeHost({ web: { before: TINY_AFTER, after: TINY_AFTER } });
    const [web] = await upgradeMachines(host, [{ name: 'web', network: true }], OPTIONS);
    expect(web).toMatchObject({ status: 'up to date', changes: [], restartNeeded: [], upgraded: '2025-03-04T05:06:07.000Z' });
  });

  test('--dry-run: update, simulate, reboot check; nothing installed, nothing recorded', async () => {
    const { host } = upgradeHost({ web: { simulate: SIMULATION } });
    const [web] = await upgradeMachines(host, [{ name: 'web', network: true }], { ...OPTIONS, dryRun: true });
    expect(host.runner.argvs()).toEqual([UPDATE('web'), SIMULATE('web'), REBOOT_TEST('web')]);
    expect(web.status).toBe('would upgrade');
    expect(web.changes.map((c) => c.package)).toEqual(['libc6', 'newdep', 'nsctl-tiny', 'oldlib']);
    expect(web.restartNeeded).toEqual(['libc6 would be upgraded']);
    expect(web.upgraded).toBeUndefined();
    expect(host.fs.changes).toEqual([]);
  });

  test('a machine whose apt fails stops only its own upgrade; the other is upgraded and recorded', async () => {
    const { host } = upgradeHost({ web: { fail: 'full-upgrade', before: TINY_BEFORE }, db: { before: TINY_BEFORE, after: TINY_AFTER } });
    const results = await upgradeMachines(host, [{ name: 'db', network: true }, { name: 'web', network: true }], OPTIONS);
    expect(results.map((r) => [r.name, r.status])).toEqual([
      ['db', 'upgraded'],
      ['web', 'failed'],
    ]);
    expect(results[1].error).toMatch(/apt-get full-upgrade.*exited with code 100/s);
    expect(results[1].error).toContain('E: Sub-process /usr/bin/dpkg returned an error code (1)');
    // web stopped at the failing step: no reboot check, no record.
    expect(host.runner.argvs().filter((a) => a[1] === '--machine=web').map((a) => a[a.indexOf('--') + 1])).toEqual(['apt-get', 'dpkg-query', 'apt-get']);
    expect(host.fs.changes).toEqual([`write ${machineRecordPath('db')}`]);
  });

  test('--jobs 1 upgrades one machine after the other; --jobs 2 overlaps them', async () => {
    const order = async (jobs: number) => {
      const { host } = upgradeHost({ web: { before: TINY_BEFORE, after: TINY_AFTER }, db: { before: TINY_BEFORE, after: TINY_AFTER } });
      await upgradeMachines(host, [{ name: 'db', network: true }, { name: 'web', network: true }], { ...OPTIONS, jobs });
      return host.runner.argvs().map((a) => a[1].replace('--machine=', ''));
    };
    expect(await order(1)).toEqual(['db', 'db', 'db', 'db', 'db', 'web', 'web', 'web', 'web', 'web']);
    const both = await order(2);
    expect(both.indexOf('web')).toBeLessThan(both.lastIndexOf('db'));
  });
});

describe('--restart', () => {
  /** Scripts `systemctl restart systemd-nspawn@NAME.service`; `failing` machines do not come back. */
  function withRestarts(host: FakeHost, running: Set<string>, failing: string[] = []): string[] {
    const restarted: string[] = [];
    host.runner.on(
      (a) => a[0] === 'systemctl' && a[1] === 'restart',
      ({ args }) => {
        const name = /^systemd-nspawn@(.+)\.service$/.exec(args[1])![1];
        restarted.push(name);
        if (failing.includes(name)) {
          running.delete(name);
          return { exitCode: 1, stderr: `Job for systemd-nspawn@${name}.service failed because the control process exited with error code.\n` };
        }
        return {};
      },
    );
    host.runner.on((a) => a[0] === 'journalctl', { stdout: '' });
    return restarted;
  }

  test('only the machines that need it, one at a time, after every upgrade, each waited for until ready', async () => {
    const { host, running } = upgradeHost({
      web: { before: TINY_BEFORE, after: TINY_AFTER, reboot: true },
      db: { before: TINY_BEFORE, after: TINY_AFTER },
    });
    const restarted = withRestarts(host, running);
    const times = [1000, 3500];
    const results = await upgradeMachines(host, [{ name: 'db', network: true }, { name: 'web', network: true }], { ...OPTIONS, restart: true, clock: () => times.shift() ?? 0 });
    expect(restarted).toEqual(['web']);
    const argv = host.runner.argvs();
    const restartAt = argv.findIndex((a) => a[1] === 'restart');
    // Both upgrades (db: 5 commands inside, web: 6) were done before the restart.
    expect(argv.slice(0, restartAt).filter((a) => a[0] === 'systemd-run')).toHaveLength(11);
    expect(argv.slice(restartAt)).toEqual([['systemctl', 'restart', 'systemd-nspawn@web.service'], ['machinectl', 'show', 'web', '--property=State', '--value'], ...readyCalls('web', 30)]);
    expect(results.find((r) => r.name === 'web')!.restarted).toEqual({ downtimeSeconds: 2.5, state: 'running', failedUnits: [] });
    expect(results.find((r) => r.name === 'db')!.restarted).toBeUndefined();
  });

  test('a machine that fails to restart does not stop the next one; both are reported', async () => {
    const { host, running } = upgradeHost({
      web: { before: TINY_BEFORE, after: TINY_AFTER, reboot: true },
      db: { before: TINY_BEFORE, after: 'ii \tnsctl-tiny\t1\nii \tlibc6\t2.36-9+deb12u7\n' },
    });
    const restarted = withRestarts(host, running, ['db']);
    const results = await upgradeMachines(host, [{ name: 'db', network: true }, { name: 'web', network: true }], { ...OPTIONS, restart: true });
    expect(restarted).toEqual(['db', 'web']);
    const db = results.find((r) => r.name === 'db')!;
    expect(db.restartNeeded).toEqual(['libc6 was upgraded']);
    expect(db.restartError).toMatch(/systemctl restart systemd-nspawn@db\.service exited with code 1/);
    expect(results.find((r) => r.name === 'web')!.restarted?.state).toBe('running');
    expect(running.has('web')).toBe(true);
    const failure = summarizeUpgradeFailures({ dryRun: false, machines: results })!;
    expect(failure.exitCode).toBe(1);
    expect(failure.message).toMatch(/^upgrade failed \(done: db, web\):\n {2}- machine db: restart failed: /);
  });

  test('a machine whose upgrade failed is not restarted; --dry-run restarts nothing', async () => {
    const { host, running } = upgradeHost({ web: { fail: 'update' } });
    const restarted = withRestarts(host, running);
    await upgradeMachines(host, [{ name: 'web', network: true }], { ...OPTIONS, restart: true });
    const dry = upgradeHost({ web: { simulate: SIMULATION, reboot: true } });
    const dryRestarted = withRestarts(dry.host, dry.running);
    const [r] = await upgradeMachines(dry.host, [{ name: 'web', network: true }], { ...OPTIONS, restart: true, dryRun: true });
    expect([restarted, dryRestarted]).toEqual([[], []]);
    expect(r.restartNeeded).toEqual(['/run/reboot-required exists', 'libc6 would be upgraded']);
  });
});

describe('formatUpgradeReport', () => {
  test('changes, restarts, skips and failures, one machine after the other', () => {
    const text = formatUpgradeReport(
      {
        dryRun: false,
        machines: [
          { name: 'db', status: 'up to date', changes: [], restartNeeded: [] },
          { name: 'off', status: 'skipped', changes: [], restartNeeded: [], reason: 'it is not running (start it, then upgrade it)' },
          { name: 'old', status: 'failed', changes: [], restartNeeded: [], error: 'apt-get update exited 100' },
          {
            name: 'web',
            status: 'upgraded',
            changes: [
              { package: 'gone', from: '1' },
              { package: 'new', to: '3' },
              { package: 'nsctl-tiny', from: '1', to: '2' },
            ],
            restartNeeded: ['/run/reboot-required exists (nsctl-tiny)'],
          },
        ],
      },
      false,
    );
    expect(text).toBe(
      [
        'db: up to date',
        'off: skipped: it is not running (start it, then upgrade it)',
        'old: failed: apt-get update exited 100',
        'web: changed 3 packages',
        '    gone 1 (removed)',
        '    new 3 (new)',
        '    nsctl-tiny 1 -> 2',
        '    needs a restart: /run/reboot-required exists (nsctl-tiny)',
        '',
        'Restart needed: web. nspawnctl upgrade --restart web restarts it and waits until it is ready (or restart it when convenient).',
        '',
      ].join('\n'),
    );
  });

  test('restarted machines say how long they were down; a dry run says what would change', () => {
    expect(
      formatUpgradeReport({ dryRun: false, machines: [{ name: 'web', status: 'up to date', changes: [], restartNeeded: ['/run/reboot-required exists'], restarted: { downtimeSeconds: 2.46, state: 'running', failedUnits: [] } }] }, true),
    ).toBe('web: up to date\n    needs a restart: /run/reboot-required exists\n    restarted (down 2.5 s)\n');
    expect(formatUpgradeReport({ dryRun: true, machines: [{ name: 'web', status: 'would upgrade', changes: [{ package: 'libc6', from: '1', to: '2' }], restartNeeded: ['libc6 would be upgraded'] }] }, false)).toBe(
      'web: would change 1 package\n    libc6 1 -> 2\n    would need a restart: libc6 would be upgraded\n\nRestart needed: web. nspawnctl upgrade --restart web restarts it and waits until it is ready (or restart it when convenient).\n',
    );
  });
});

describe('autoUpgrade runs what nspawnctl upgrade runs', () => {
  test('the service\'s ExecStart lines are the same argv, and nothing in them is a systemd specifier or variable', () => {
    const machine = desiredFrom(MANIFEST).manifest.machines.web;
    const service = renderAutoUpgradeService(machine, 'machines.yaml');
    const exec = service.split('\n').filter((l) => l.startsWith('ExecStart=')).map((l) => l.slice('ExecStart='.length).split(' '));
    expect(exec).toEqual([['/usr/bin/apt-get', ...APT_UPDATE.slice(1)], ['/usr/bin/apt-get', ...APT_FULL_UPGRADE.slice(1)]]);
    expect(exec.flat().filter((w) => /[%$"'\\\s]/.test(w))).toEqual([]);
    expect(service).toContain('\nEnvironment=DEBIAN_FRONTEND=noninteractive\n');
    // The simulation is the same command with --simulate and without --yes.
    expect(APT_SIMULATE_FULL_UPGRADE).toEqual(['apt-get', '--simulate', ...APT_FULL_UPGRADE.slice(1).filter((a) => a !== '--yes')]);
    expect(DPKG_QUERY_INSTALLED[0]).toBe('dpkg-query');
  });
});
