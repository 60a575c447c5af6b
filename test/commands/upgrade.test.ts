// `nspawnctl upgrade` through oclif with a fake Host: argv, root and the lock, the summary and
// --json, exit codes naming failures; and `list` showing how long ago each machine was upgraded.
import List from '../../src/commands/list';
import Status from '../../src/commands/status';
import Upgrade from '../../src/commands/upgrade';
import { Host } from '../../src/host/host';
import { LOCK_PATH } from '../../src/host/lock';
import { machineRecordPath } from '../../src/host/paths';
import { FakeHost } from '../helpers/fake-host';
import { changesBesidesLock, seedLockHolder } from '../helpers/lock';
import { runCommand, TEST_CWD } from '../helpers/run-command';
import { FULL_UPGRADE, SIMULATE, TINY_AFTER, TINY_BEFORE, upgradeHost } from '../helpers/upgrade-machines';

const upgradeWith = (host: Host) =>
  class extends Upgrade {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

const SIM = 'Inst nsctl-tiny [1] (2 localhost [all])\nConf nsctl-tiny (2 localhost [all])\n';

describe('nspawnctl upgrade', () => {
  test('every running machine it can upgrade, the others named as skipped; exit 0; only the records change, under the lock', async () => {
    const { host } = upgradeHost({ web: { before: TINY_BEFORE, after: TINY_AFTER, reboot: true, rebootPkgs: 'nsctl-tiny\n' }, db: { before: TINY_AFTER, after: TINY_AFTER } });
    const r = await runCommand(upgradeWith(host), []);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    // Progress (listr2's plain renderer, not a terminal) comes first; the summary ends stdout.
    expect(r.stdout.slice(r.stdout.indexOf('db: up to date'))).toBe(
      [
        'db: up to date',
        'off: skipped: it is not running (start it, then upgrade it)',
        'ro: skipped: its root is read-only while it runs (security.readOnly), so its packages cannot change in place',
        'solo: skipped: it has no network, so apt inside it cannot download',
        'vol: skipped: its root is volatile (security.volatile: overlay), so an upgrade would be lost when it stops',
        'web: changed 1 package',
        '    nsctl-tiny 1 -> 2',
        '    needs a restart: /run/reboot-required exists (nsctl-tiny)',
        '',
        'Restart needed: web. nspawnctl upgrade --restart web restarts it and waits until it is ready (or restart it when convenient).',
        '',
      ].join('\n'),
    );
    expect(changesBesidesLock(host).sort()).toEqual([`write ${machineRecordPath('db')}`, `write ${machineRecordPath('web')}`]);
    host.assertNoUnmatchedCalls();
  });

  test('--dry-run --json: what would change per machine, as data; nothing installed or recorded', async () => {
    const { host } = upgradeHost({ web: { simulate: SIM }, db: { simulate: '' } });
    const r = await runCommand(upgradeWith(host), ['--dry-run', '--json', 'web', 'db']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      dryRun: true,
      machines: [
        { name: 'db', status: 'up to date', changes: [], restartNeeded: [] },
        { name: 'web', status: 'would upgrade', changes: [{ package: 'nsctl-tiny', from: '1', to: '2' }], restartNeeded: [] },
      ],
    });
    expect(r.stderr).toBe('');
    expect(host.runner.argvs().filter((a) => a.includes('full-upgrade') && !a.includes('--simulate'))).toEqual([]);
    const simulated = host.runner.argvs().filter((a) => a.includes('--simulate'));
    expect(simulated).toHaveLength(2);
    expect(simulated).toEqual(expect.arrayContaining([SIMULATE('db'), SIMULATE('web')]));
    expect(changesBesidesLock(host)).toEqual([]);
  });

  test('a machine that fails: the summary, then exit 1 naming it; the other was upgraded; --json prints one document', async () => {
    const { host } = upgradeHost({ web: { fail: 'full-upgrade', before: TINY_BEFORE }, db: { before: TINY_BEFORE, after: TINY_AFTER } });
    const r = await runCommand(upgradeWith(host), ['web', 'db', '--json']);
    expect(r.exitCode).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.machines.map((m: { name: string; status: string }) => `${m.name}: ${m.status}`)).toEqual(['db: upgraded', 'web: failed']);
    expect(r.stderr).toMatch(/^nspawnctl: upgrade failed \(done: db\):\n {2}- machine web: command systemd-run --machine=web .* full-upgrade .*exited with code 100:\n/);
    expect(r.stderr).toContain('hint: The other machines were not held up.');
    expect(host.runner.argvs()).toContainEqual(FULL_UPGRADE('db'));
    expect(changesBesidesLock(host)).toEqual([`write ${machineRecordPath('db')}`]);
  });

  test('a named machine that is stopped: exit 1 saying why, nothing run inside any machine', async () => {
    const { host } = upgradeHost();
    const r = await runCommand(upgradeWith(host), ['web', 'off']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(
      'nspawnctl: cannot upgrade machine off: it is not running (start it, then upgrade it)\nhint: Nothing was upgraded. Without names, upgrade acts on every running machine it can and lists the others.\n',
    );
    expect(host.runner.argvs().filter((a) => a[0] === 'systemd-run')).toEqual([]);
    expect(changesBesidesLock(host)).toEqual([]);
  });

  test('an unknown name: exit 1; a name no machine can have: exit 2 before anything is read', async () => {
    const { host } = upgradeHost();
    const unknown = await runCommand(upgradeWith(host), ['ghost']);
    expect([unknown.exitCode, unknown.stderr]).toEqual([1, 'nspawnctl: no machine named ghost is managed by nspawnctl\nhint: nspawnctl list shows the machines nspawnctl manages.\n']);
    const fresh = new FakeHost();
    const bad = await runCommand(upgradeWith(fresh), ['../etc']);
    expect([bad.exitCode, bad.stderr]).toEqual([2, 'nspawnctl: "../etc" is not a machine name\nhint: nspawnctl list shows the machines nspawnctl manages.\n']);
    expect([fresh.runner.calls, fresh.fs.changes]).toEqual([[], []]);
  });

  test('as a normal user: exit 3 before the host is read (a dry run too)', async () => {
    for (const argv of [[], ['--dry-run']]) {
      const host = new FakeHost({ uid: 1000 });
      const r = await runCommand(upgradeWith(host), argv);
      expect([r.exitCode, r.stderr]).toEqual([3, 'nspawnctl: this host is not ready:\n  - nspawnctl upgrade must run as root\nhint: Run it with sudo, or as root.\n']);
      expect([host.runner.calls, host.fs.changes]).toEqual([[], []]);
    }
  });

  test('another nspawnctl holds the lock: --no-wait exits 5 and upgrades nothing', async () => {
    const { host } = upgradeHost({ web: { before: TINY_BEFORE, after: TINY_AFTER } });
    seedLockHolder(host, { pid: 999, command: 'apply /srv/conf/machines.yaml', started: '2025-01-01T00:00:00.000Z' } as never, true);
    const r = await runCommand(upgradeWith(host), ['--no-wait']);
    expect(r.exitCode).toBe(5);
    expect(host.runner.argvs().filter((a) => a[0] === 'systemd-run')).toEqual([]);
    expect(host.isLocked(LOCK_PATH)).toBe(true);
  });
});

describe('list and status show when a machine was last upgraded', () => {
  const NOW = Date.parse('2025-03-07T05:06:07.000Z');
  const listWith = (host: Host) =>
    class extends List {
      protected override createHost(): Host {
        return host;
      }

      protected override cwd(): string {
        return TEST_CWD;
      }

      protected override now(): number {
        return NOW;
      }
    };

  test('an UPGRADED column (age, or never) and an upgraded field in --json (null: never)', async () => {
    const { host } = upgradeHost({ web: { before: TINY_BEFORE, after: TINY_AFTER } });
    expect((await runCommand(upgradeWith(host), ['web'])).exitCode).toBe(0);
    // The record says when; make it three days before NOW.
    const record = JSON.parse(host.fs.textAt(machineRecordPath('web'))!);
    expect(Date.parse(record.upgraded)).not.toBeNaN();
    host.fs.addFile(machineRecordPath('web'), `${JSON.stringify({ ...record, upgraded: '2025-03-04T05:06:07.000Z' }, null, 2)}\n`, { mode: 0o600 });
    const r = await runCommand(listWith(host), []);
    expect(r.exitCode).toBe(0);
    const rows = r.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^MACHINE +STATE +ADDRESS +MANIFEST +UPGRADED$/);
    expect(rows.map((l) => [l.split(/\s+/)[0], l.slice(rows[0].indexOf('UPGRADED'))])).toEqual([
      ['MACHINE', 'UPGRADED'],
      ['db', 'never'],
      ['off', 'never'],
      ['ro', 'never'],
      ['solo', 'never'],
      ['vol', 'never'],
      ['web', '3 d ago'],
    ]);
    const json = JSON.parse((await runCommand(listWith(host), ['--json'])).stdout);
    expect(json.map((m: { name: string; upgraded: string | null }) => [m.name, m.upgraded])).toEqual([
      ['db', null],
      ['off', null],
      ['ro', null],
      ['solo', null],
      ['vol', null],
      ['web', '2025-03-04T05:06:07.000Z'],
    ]);
    const statusWith = class extends Status {
      protected override createHost(): Host {
        return host;
      }
    };
    const status = await runCommand(statusWith, ['web']);
    expect(status.stdout).toMatch(/\nupgraded: {2}2025-03-04T05:06:07\.000Z \(\d+ d ago\)\n/);
    expect(JSON.parse((await runCommand(statusWith, ['web', '--json'])).stdout).upgraded).toBe('2025-03-04T05:06:07.000Z');
  });
});
