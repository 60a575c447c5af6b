// `nspawnctl destroy` through oclif with a fake Host: it removes exactly what the record lists,
// refuses what nspawnctl did not make, and stops the machine with an exact command sequence.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Destroy from '../../src/commands/destroy';
import { Host } from '../../src/host/host';
import { LOCK_PATH } from '../../src/host/lock';
import { autostartLinkPath, isWithin } from '../../src/host/paths';
import { convergeFakeHost, desiredFrom, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { changesBesidesLock, seedLockHolder } from '../helpers/lock';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';
import { simulateSystemd } from '../helpers/simulated-systemd';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');

const destroyWith = (host: Host) =>
  class extends Destroy {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** A booted host where the example was applied and both machines run. */
function convergedHost(uid = 0): FakeHost {
  const host = makeBootedHost(new FakeHost({ uid }));
  const { desired } = desiredFrom(EXAMPLE);
  simulateSystemd(host, { running: ['db', 'web'] });
  convergeFakeHost(host, desired, { queries: false });
  return host;
}

const SHOW_WEB = ['machinectl', 'show', 'web', '--property=State', '--value'];

describe('nspawnctl destroy', () => {
  test('an unknown name is a clear error, exit 1', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host);
    const r = await runCommand(destroyWith(host), ['ghost', '--yes']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('nspawnctl: no machine named ghost: nspawnctl has no record of it and nothing of that name exists\nhint: nspawnctl list shows the machines nspawnctl manages.\n');
    expect(host.runner.argvs()).toEqual([['machinectl', 'show', 'ghost', '--property=State', '--value']]);
    expect(host.fs.changes).toEqual([]);
  });

  test('a name nspawnctl could never have created is refused with exit 2, asking nothing', async () => {
    const host = makeBootedHost(new FakeHost());
    const r = await runCommand(destroyWith(host), ['../etc', '--yes']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('nspawnctl: "../etc" is not a machine name nspawnctl could have created (1-12 characters of a-z, 0-9 and -)\n');
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('a machine with a rootfs but no record is refused (exit 4) and nothing is removed', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host);
    host.fs.addFile('/var/lib/machines/legacy/etc/hostname', 'legacy\n');
    host.fs.addFile('/etc/systemd/nspawn/legacy.nspawn', '[Exec]\nBoot=yes\n');
    const before = new Map(host.fs.nodes);
    const r = await runCommand(destroyWith(host), ['legacy', '--yes']);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toBe(
      'nspawnctl: machine legacy was not created by nspawnctl (no record in /var/lib/nspawnctl/machines/legacy.json); refusing to touch it\nhint: If it is really yours to delete, run: nspawnctl destroy legacy --force\n',
    );
    expect(host.runner.argvs()).toEqual([['machinectl', 'show', 'legacy', '--property=State', '--value']]);
    expect(host.fs.changes).toEqual([]);
    expect(host.fs.nodes).toEqual(before);
  });

  test('without --yes and without a terminal it refuses (exit 2) before changing anything', async () => {
    const host = convergedHost();
    const isTTY = Object.getOwnPropertyDescriptor(process.stdin, 'isTTY');
    Object.defineProperty(process.stdin, 'isTTY', { value: false, configurable: true });
    try {
      const r = await runCommand(destroyWith(host), ['web']);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toBe('nspawnctl: refusing to destroy web without --yes (stdin is not a terminal)\n');
    } finally {
      if (isTTY) Object.defineProperty(process.stdin, 'isTTY', isTTY);
      else delete (process.stdin as { isTTY?: boolean }).isTTY;
    }
    expect(host.runner.argvs()).toEqual([SHOW_WEB]);
    expect(host.fs.changes).toEqual([]);
  });

  // Regression (newcomer issue): as a normal user, destroy looked at /var/lib/machines/web first
  // and died with a raw EACCES (exit 1); now it refuses before reading anything or asking.
  test('as non-root it fails with exit 3 before reading, stopping or removing anything', async () => {
    const host = convergedHost(1000);
    const r = await runCommand(destroyWith(host), ['web', '--yes']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe('nspawnctl: this host is not ready:\n  - nspawnctl destroy must run as root\nhint: Run it with sudo, or as root.\n');
    expect(host.runner.argvs()).toEqual([]);
    // Non-root takes no lock (it could not create it in /run anyway).
    expect(host.fs.changes).toEqual([]);
  });

  // Regression test for a fixed bug (it was in src/host/lock.ts acquireLock, via BaseCommand.withLock): destroy takes the lock before
  // its root check; a non-root user cannot create /run/nspawnctl.lock (EACCES on a real host), so
  // the raw EACCES error (exit 1) replaces this preflight report (exit 3). The FakeFs has no
  // permissions; this test gives it the real answer for /run.
  test('as non-root on a real filesystem (no write access to /run): still exit 3 before anything', async () => {
    const host = convergedHost(1000);
    host.openLock = async (path: string) => {
      throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES', errno: -13, syscall: 'open', path });
    };
    const r = await runCommand(destroyWith(host), ['web', '--yes']);
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toEqual({
      exitCode: 3,
      stderr: 'nspawnctl: this host is not ready:\n  - nspawnctl destroy must run as root\nhint: Run it with sudo, or as root.\n',
    });
    expect(host.fs.changes).toEqual([]);
  });

  test('--no-wait while another nspawnctl holds the lock: exit 5, the machine is not stopped, nothing removed', async () => {
    const host = convergedHost();
    const theirs = seedLockHolder(host, { pid: 777, command: 'apply /srv/conf/machines.yaml', since: '2025-01-01T00:00:00.000Z' }, true);
    const r = await runCommand(destroyWith(host), ['web', '--yes', '--no-wait']);
    expect(r.exitCode).toBe(5);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'nspawnctl: another nspawnctl is changing this host: PID 777 (apply /srv/conf/machines.yaml, since 2025-01-01T00:00:00.000Z)\nhint: Wait for it, or run again with --wait (the default).\n',
    );
    // Only the command's ownership check ran before the lock.
    expect(host.runner.argvs()).toEqual([SHOW_WEB]);
    expect(host.fs.changes).toEqual([]);
    expect([host.isLocked(LOCK_PATH), host.lockNote(LOCK_PATH)]).toEqual([true, theirs]);
  });

  test('with a record on a booted host: exact command sequence, removes exactly what is recorded', async () => {
    const host = convergedHost();
    const before = host.fs.paths();
    const r = await runCommand(destroyWith(host), ['web', '--yes']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('Destroyed web (stopped); removed 4 path(s).\n');
    expect(r.stderr).toBe('powering off web\ndisabling web\nremoving /var/lib/machines/web\n');
    expect(host.runner.argvs()).toEqual([
      SHOW_WEB, // the command's ownership check
      SHOW_WEB, // destroyMachine's ownership check
      SHOW_WEB, // stopMachine: is it registered?
      ['machinectl', 'poweroff', 'web'],
      SHOW_WEB, // gone from machined
      ['systemctl', 'is-active', 'systemd-nspawn@web.service'],
      ['machinectl', 'disable', 'web'],
    ]);
    host.assertNoUnmatchedCalls();

    const gone = (p: string) =>
      p === '/etc/systemd/nspawn/web.nspawn' || p === '/var/lib/nspawnctl/machines/web.json' || p === autostartLinkPath('web') || isWithin(p, '/var/lib/machines/web');
    expect(host.fs.paths()).toEqual(before.filter((p) => !gone(p)));
    // What else was there is still there: the other machine, the network, the bind source.
    for (const p of ['/etc/systemd/nspawn/db.nspawn', '/var/lib/machines/db/etc/motd', '/var/lib/nspawnctl/machines/db.json', autostartLinkPath('db'), '/etc/systemd/network/50-nspawnctl-examplevlan.network', '/var/lib/nspawnctl/networks/examplevlan.json', '/srv/www']) {
      expect(host.fs.paths()).toContain(p);
    }
    expect(changesBesidesLock(host)).toEqual(['remove /etc/systemd/nspawn/web.nspawn', 'remove-tree /var/lib/machines/web', 'remove /var/lib/nspawnctl/machines/web.json']);
  });

  test('a staging directory left by an interrupted run is unmounted below and removed too', async () => {
    const host = convergedHost();
    const staging = '/var/lib/machines/.nspawnctl-web.staging';
    host.fs.addFile(`${staging}/etc/hostname`, 'web\n');
    host.fs.addFile('/proc/self/mountinfo', `25 1 0:23 / / rw - ext4 /dev/sda1 rw\n98 25 0:46 / ${staging}/proc rw,nosuid - proc proc rw\n`);
    // umount takes the mount out of mountinfo, as the kernel does.
    host.runner.on(['umount', '--lazy', `${staging}/proc`], () => {
      host.fs.addFile('/proc/self/mountinfo', '25 1 0:23 / / rw - ext4 /dev/sda1 rw\n');
      return {};
    });
    const r = await runCommand(destroyWith(host), ['web', '--yes', '--json']);
    expect(r.error).toBeUndefined();
    expect(JSON.parse(r.stdout)).toEqual({
      machine: 'web',
      stopped: 'stopped',
      removed: [autostartLinkPath('web'), '/etc/systemd/nspawn/web.nspawn', '/var/lib/machines/web', staging, '/var/lib/nspawnctl/machines/web.json'],
    });
    expect(host.runner.argvs().slice(-2)).toEqual([
      ['machinectl', 'disable', 'web'],
      ['umount', '--lazy', `${staging}/proc`],
    ]);
    host.assertNoUnmatchedCalls();
    expect(changesBesidesLock(host)).toEqual([
      'remove /etc/systemd/nspawn/web.nspawn',
      'remove-tree /var/lib/machines/web',
      `remove-tree ${staging}`,
      'remove /var/lib/nspawnctl/machines/web.json',
    ]);
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/') && !p.startsWith('/var/lib/machines/db'))).toEqual([]);
  });

  test('a read-only snapshot a killed backup left is deleted with btrfs (rm cannot)', async () => {
    const host = convergedHost();
    const snapshot = '/var/lib/machines/.nspawnctl-web.snapshot';
    host.fs.addFile(`${snapshot}/etc/hostname`, 'web\n');
    host.runner.on(['btrfs', 'subvolume', 'delete', snapshot], () => {
      host.fs.nodes.forEach((_n, p) => p.startsWith(snapshot) && host.fs.nodes.delete(p));
      return {};
    });
    const r = await runCommand(destroyWith(host), ['web', '--yes', '--json']);
    expect(r.error).toBeUndefined();
    expect(JSON.parse(r.stdout).removed).toEqual([autostartLinkPath('web'), '/etc/systemd/nspawn/web.nspawn', '/var/lib/machines/web', snapshot, '/var/lib/nspawnctl/machines/web.json']);
    expect(host.runner.argvs().slice(-1)).toEqual([['btrfs', 'subvolume', 'delete', snapshot]]);
    expect(host.fs.paths().filter((p) => p.startsWith(snapshot))).toEqual([]);
  });

  test('--json reports what was removed', async () => {
    const host = convergedHost();
    const r = await runCommand(destroyWith(host), ['db', '--yes', '--json']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      machine: 'db',
      stopped: 'stopped',
      removed: [autostartLinkPath('db'), '/etc/systemd/nspawn/db.nspawn', '/var/lib/machines/db', '/var/lib/nspawnctl/machines/db.json'],
    });
  });

  test('a stopped machine is not powered off again', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host, { running: ['db'] });
    convergeFakeHost(host, desiredFrom(EXAMPLE).desired, { queries: false });
    const r = await runCommand(destroyWith(host), ['web', '--yes']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('Destroyed web (not-running); removed 4 path(s).\n');
    expect(host.runner.argvs()).toEqual([SHOW_WEB, SHOW_WEB, ['machinectl', 'disable', 'web']]);
  });

  test('something still mounted under the rootfs stops the removal of the rootfs', async () => {
    const host = convergedHost();
    host.fs.addFile('/proc/self/mountinfo', '25 1 0:23 / / rw - ext4 /dev/sda1 rw\n97 25 0:45 / /var/lib/machines/web/var/www rw - ext4 /dev/sda1 rw\n');
    const r = await runCommand(destroyWith(host), ['web', '--yes']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.endsWith('nspawnctl: refusing to remove /var/lib/machines/web: something is still mounted under it (/var/lib/machines/web/var/www)\nhint: Unmount it first: umount /var/lib/machines/web/var/www\n')).toBe(true);
    expect(host.fs.nodes.get('/var/lib/machines/web/etc/hostname')?.type).toBe('file');
    expect(host.fs.changes).not.toContain('remove-tree /var/lib/machines/web');
    // The lock is released even though destroy failed.
    expect(changesBesidesLock(host)).toEqual(['remove /etc/systemd/nspawn/web.nspawn']);
  });
});
