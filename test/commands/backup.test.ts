// `nspawnctl backup` through oclif with a fake Host: the exact commands it runs (stop, tar | zstd,
// start, the check restore would make), what it writes and where, and its refusals with exit codes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeTrailer, TRAILER_LENGTH } from '../../src/apply/backup-format';
import Backup from '../../src/commands/backup';
import { InterruptedError } from '../../src/errors';
import { Host } from '../../src/host/host';
import { LOCK_PATH } from '../../src/host/lock';
import { GOOD_LISTING, isCreate, isList, isReadMeta, listingLine } from '../helpers/backup';
import { convergeFakeHost, desiredFrom, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { changesBesidesLock } from '../helpers/lock';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';
import { readyCalls, simulateSystemd } from '../helpers/simulated-systemd';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');
const META_FILE = '/run/nspawnctl/backup-4242/nspawnctl-backup.json';
const COMPRESSED = 'zstd frames of the tar stream';

const backupWith = (host: Host) =>
  class extends Backup {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

interface Options {
  running?: string[];
  btrfs?: boolean;
  listing?: string[];
  createFails?: boolean;
}

/** A converged example host; tar | zstd "writes" COMPRESSED, and reading the archive back lists `listing`. */
function hostFor(o: Options = {}): { host: FakeHost; meta: () => unknown } {
  const host = makeBootedHost(new FakeHost(), ['machinectl', 'systemd-nspawn', 'networkctl', 'mmdebstrap', 'tar', 'zstd', ...(o.btrfs ? ['btrfs'] : [])]);
  const { desired } = desiredFrom(EXAMPLE);
  simulateSystemd(host, { running: o.running ?? ['db', 'web'] });
  convergeFakeHost(host, desired, { queries: false });
  let meta: unknown;
  host.runner.on(isCreate, () => {
    // What tar reads as the first member, while it runs.
    meta = JSON.parse(host.fs.textAt(META_FILE) ?? 'null');
    return o.createFails ? { exitCode: 2, stderr: 'tar: ./srv/x: Cannot open: Input/output error\n' } : { stdout: COMPRESSED };
  });
  host.runner.on(isList, { stdout: `${(o.listing ?? GOOD_LISTING).join('\n')}\n` });
  host.runner.on(isReadMeta, () => ({ stdout: JSON.stringify(meta) }));
  if (o.btrfs) {
    host.runner.on(['stat', '--file-system', '--format=%T', '/var/lib/machines/web'], { stdout: 'btrfs\n' });
    host.runner.on(['btrfs', 'subvolume', 'show', '/var/lib/machines/web'], { stdout: 'web\n\tName: web\n' });
    host.runner.on(['btrfs', 'subvolume', 'snapshot', '-r', '/var/lib/machines/web', '/var/lib/machines/.nspawnctl-web.snapshot'], () => {
      host.fs.addDir('/var/lib/machines/.nspawnctl-web.snapshot');
      return {};
    });
    host.runner.on(['btrfs', 'subvolume', 'delete', '/var/lib/machines/.nspawnctl-web.snapshot'], () => {
      host.fs.nodes.delete('/var/lib/machines/.nspawnctl-web.snapshot');
      return {};
    });
  }
  return { host, meta: () => meta };
}

const TAR_CREATE = (tree: string) => [
  'tar',
  '--create',
  '--file=-',
  '--format=posix',
  '--pax-option=delete=atime,delete=ctime',
  '--numeric-owner',
  '--xattrs',
  '--xattrs-include=user.*',
  '--xattrs-include=security.capability',
  '--acls',
  '--sparse',
  '--one-file-system',
  '--directory=/run/nspawnctl/backup-4242',
  'nspawnctl-backup.json',
  `--directory=${tree}`,
  '--transform=s,^\\.\\(/\\|$\\),rootfs\\1,S',
  '.',
  '|',
  'zstd',
  '--quiet',
  '--stdout',
  '--threads=0',
];
const SHOW = (name: string) => ['machinectl', 'show', name, '--property=State', '--value'];
const LIST_ARCHIVE = 'zstd --decompress --quiet --stdout | tar --list --verbose --file=- --absolute-names --numeric-owner --full-time --quoting-style=c';
const READ_META = 'zstd --decompress --quiet --stdout | tar --extract --file=- --to-stdout --occurrence=1 -- nspawnctl-backup.json';

describe('nspawnctl backup', () => {
  test('a running machine on a filesystem without snapshots: said first, stopped, archived, started, checked, then written', async () => {
    const { host, meta } = hostFor();
    const r = await runCommand(backupWith(host), ['web', '--to', '/srv/backups/web.tar.zst']);
    expect({ code: r.exitCode, err: r.stderr }).toEqual({ code: 0, err: expect.any(String) });
    expect(r.stderr).toContain(
      'backup of web to /srv/backups/web.tar.zst:\n  web is running and /var/lib/machines/web is not a btrfs subvolume: web is stopped for the copy and started again; it is down for as long as archiving takes, which is measured.\n',
    );
    expect(r.stdout).toMatch(/\nWrote \/srv\/backups\/web\.tar\.zst: \d+ B \(29 B of tree, 6 members\) in \d+\.\d s, sha256 of content [0-9a-f]{64}\. web was down for \d+\.\d s\.\n$/);
    // The exact sequence: plan, stop, archive, start and wait until ready, read the archive back.
    // (networkd's wait gets what is left of --start-timeout: 90 s, or 89 on a slow run)
    expect(host.runner.argvs().map((a) => a.join(' ').replace(/--timeout=89$/, '--timeout=90'))).toEqual([
      SHOW('web').join(' '),
      SHOW('web').join(' '),
      'machinectl poweroff web',
      SHOW('web').join(' '),
      'systemctl is-active systemd-nspawn@web.service',
      TAR_CREATE('/var/lib/machines/web').join(' '),
      'machinectl start web',
      SHOW('web').join(' '),
      ...readyCalls('web', 90).map((a) => a.join(' ')),
      LIST_ARCHIVE,
      READ_META,
    ]);
    // What the archive holds besides the tree: the record, the settings files, the state.
    const written = meta() as Record<string, unknown>;
    expect(written).toMatchObject({ kind: 'nspawnctl-backup', format: 1, machine: 'web', nspawnctl: '0.1.0', consistency: 'stopped', running: true, enabled: true });
    expect((written.record as { name: string }).name).toBe('web');
    expect((written.settings as { path: string }[]).map((s) => s.path)).toEqual(['/etc/systemd/nspawn/web.nspawn']);
    expect((written.settings as { content: string }[])[0].content).toBe(host.fs.textAt('/etc/systemd/nspawn/web.nspawn'));
    // The file: what zstd wrote, then the trailer with its sha256; the metadata's scratch directory is gone.
    const archive = host.archives.get('/srv/backups/web.tar.zst')!;
    expect(archive.data.subarray(0, archive.data.length - TRAILER_LENGTH).toString()).toBe(COMPRESSED);
    expect(decodeTrailer(archive.data.subarray(archive.data.length - TRAILER_LENGTH))).toBe(r.stdout.match(/sha256 of content ([0-9a-f]{64})/)![1]);
    expect([...host.archives.keys()]).toEqual(['/srv/backups/web.tar.zst']);
    expect(changesBesidesLock(host)).toEqual([
      'mkdir /run/nspawnctl',
      'mkdir /run/nspawnctl/backup-4242',
      `write ${META_FILE}`,
      'archive /srv/backups/web.tar.zst',
      'remove-tree /run/nspawnctl/backup-4242',
    ]);
    expect(host.fs.textAt(META_FILE)).toBeUndefined();
  });

  test('a machine that is not running is archived as it is: no stop, no start', async () => {
    const { host, meta } = hostFor({ running: ['db'] });
    const r = await runCommand(backupWith(host), ['web', '--to', 'web.tar.zst']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain('web is not running: its root filesystem is archived as it is.');
    expect(r.stdout).not.toContain('down for');
    expect(r.stdout).not.toContain('stop web');
    expect(host.runner.argvs().map((a) => a[0] === 'tar' ? 'tar|zstd' : a.join(' '))).toEqual([SHOW('web').join(' '), 'tar|zstd', LIST_ARCHIVE, READ_META]);
    expect(meta()).toMatchObject({ consistency: 'not-running', running: false });
  });

  test('a running machine whose tree is a btrfs subvolume: a read-only snapshot is archived and deleted; it keeps running', async () => {
    const { host, meta } = hostFor({ btrfs: true });
    const r = await runCommand(backupWith(host), ['web', '--to', 'web.tar.zst']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain('web is running and /var/lib/machines/web is a btrfs subvolume: a read-only snapshot of it is archived, and web keeps running');
    expect(r.stdout).toContain('web kept running (btrfs snapshot).');
    expect(host.runner.argvs().map((a) => a.join(' '))).toEqual([
      SHOW('web').join(' '),
      'stat --file-system --format=%T /var/lib/machines/web',
      'btrfs subvolume show /var/lib/machines/web',
      'btrfs subvolume snapshot -r /var/lib/machines/web /var/lib/machines/.nspawnctl-web.snapshot',
      TAR_CREATE('/var/lib/machines/.nspawnctl-web.snapshot').join(' '),
      'btrfs subvolume delete /var/lib/machines/.nspawnctl-web.snapshot',
      LIST_ARCHIVE,
      READ_META,
    ]);
    expect(host.runner.argvs().some((a) => a[1] === 'poweroff')).toBe(false);
    expect(meta()).toMatchObject({ consistency: 'snapshot', running: true });
  });

  test('a leftover snapshot of a killed backup is deleted first', async () => {
    const { host } = hostFor({ btrfs: true });
    host.fs.addDir('/var/lib/machines/.nspawnctl-web.snapshot');
    const r = await runCommand(backupWith(host), ['web', '--to', 'web.tar.zst']);
    expect(r.exitCode).toBe(0);
    const argvs = host.runner.argvs().map((a) => a.join(' '));
    expect(argvs.indexOf('btrfs subvolume delete /var/lib/machines/.nspawnctl-web.snapshot')).toBeLessThan(argvs.findIndex((a) => a.startsWith('btrfs subvolume snapshot')));
  });

  test('tar failing: the machine is started again, nothing is left at FILE, exit 1 naming tar', async () => {
    const { host } = hostFor({ createFails: true });
    const r = await runCommand(backupWith(host), ['web', '--to', 'web.tar.zst']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('Input/output error');
    expect(r.stderr).toContain('command tar --create');
    const argvs = host.runner.argvs().map((a) => a.join(' '));
    expect(argvs.slice(argvs.indexOf('machinectl poweroff web'))).toEqual(expect.arrayContaining(['machinectl start web']));
    expect(argvs.indexOf('machinectl start web')).toBeGreaterThan(argvs.findIndex((a) => a.startsWith('tar --create')));
    expect([...host.archives.keys()]).toEqual([]);
    expect(changesBesidesLock(host)).toEqual(['mkdir /run/nspawnctl', 'mkdir /run/nspawnctl/backup-4242', `write ${META_FILE}`, 'remove-tree /run/nspawnctl/backup-4242']);
  });

  test('interrupted while archiving: the machine is started again all the same, nothing is left, exit 130', async () => {
    // Not hostFor: its tar answers first. Here tar is interrupted by SIGINT.
    const host = makeBootedHost(new FakeHost(), ['machinectl', 'systemd-nspawn', 'tar', 'zstd']);
    simulateSystemd(host, { running: ['db', 'web'] });
    convergeFakeHost(host, desiredFrom(EXAMPLE).desired, { queries: false });
    const interrupt = new AbortController();
    host.signal = interrupt.signal;
    host.runner.on(isCreate, () => {
      interrupt.abort();
      throw new InterruptedError(['tar']);
    });
    const r = await runCommand(backupWith(host), ['web', '--to', 'web.tar.zst']);
    expect(r.exitCode).toBe(130);
    const start = host.runner.calls.find((c) => c.file === 'machinectl' && c.args[0] === 'start');
    expect(start).toEqual({ file: 'machinectl', args: ['start', 'web'], options: { afterInterrupt: true, allowFailure: true, timeoutMs: 60_000 } });
    expect([...host.archives.keys()]).toEqual([]);
    expect(host.isLocked(LOCK_PATH)).toBe(false);
  });

  test('an archive restore would refuse is not kept: exit 1 naming the member; the machine runs again', async () => {
    const { host } = hostFor({ listing: [...GOOD_LISTING, listingLine('d', 'rootfs/home/'), listingLine('b', 'rootfs/home/sda', { dev: '8,0' })] });
    const r = await runCommand(backupWith(host), ['web', '--to', 'web.tar.zst']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('nspawnctl: machine web: the archive does not pass restore\'s checks, so it was not kept: a member is unsafe to extract:\n  - "rootfs/home/sda" is a block device\n');
    expect(r.stderr).toContain('hint: Remove what it names from the machine (from inside it), then back it up again.');
    expect([...host.archives.keys()]).toEqual([]);
    expect(host.runner.argvs().map((a) => a.join(' '))).toContain('machinectl start web');
  });

  test('an existing FILE is refused (exit 2) before the machine is touched; --force replaces it', async () => {
    const { host } = hostFor();
    host.archives.set('web.tar.zst', { data: Buffer.from('older backup'), uid: 0, mode: 0o600 });
    const r = await runCommand(backupWith(host), ['web', '--to', 'web.tar.zst']);
    expect([r.exitCode, r.stderr]).toEqual([2, expect.stringContaining('nspawnctl: web.tar.zst already exists; nothing was written\n')]);
    expect(host.runner.argvs().some((a) => a[1] === 'poweroff')).toBe(false);
    expect(host.archives.get('web.tar.zst')!.data.toString()).toBe('older backup');
    const forced = await runCommand(backupWith(host), ['web', '--to', 'web.tar.zst', '--force']);
    expect(forced.exitCode).toBe(0);
    expect(host.archives.get('web.tar.zst')!.data.subarray(0, COMPRESSED.length).toString()).toBe(COMPRESSED);
  });

  test('FILE inside a machine\'s root filesystem is refused (exit 2)', async () => {
    const { host } = hostFor();
    const r = await runCommand(backupWith(host), ['web', '--to', '/var/lib/machines/db/root/web.tar.zst']);
    expect([r.exitCode, r.stderr]).toEqual([2, expect.stringMatching(/\nnspawnctl: refusing to write \/var\/lib\/machines\/db\/root\/web\.tar\.zst: \/var\/lib\/machines\/db\/root is inside a machine's root filesystem\n$/)]);
    expect(host.runner.argvs().some((a) => a[1] === 'poweroff')).toBe(false);
  });

  test('without --to: NAME-<UTC time>.tar.zst in the working directory', async () => {
    const { host } = hostFor({ running: [] });
    const r = await runCommand(backupWith(host), ['web']);
    expect(r.exitCode).toBe(0);
    expect([...host.archives.keys()]).toEqual([expect.stringMatching(/^web-\d{8}T\d{6}Z\.tar\.zst$/)]);
  });

  test('--json: the report as data', async () => {
    const { host } = hostFor();
    const r = await runCommand(backupWith(host), ['web', '--to', 'w.tar.zst', '--json']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      machine: 'web',
      file: 'w.tar.zst',
      method: 'stop',
      bytes: COMPRESSED.length + TRAILER_LENGTH,
      treeBytes: COMPRESSED.length,
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      members: 6,
      seconds: expect.any(Number),
      downtimeSeconds: expect.any(Number),
    });
  });

  test('--dry-run says how it would read the machine, touching nothing and taking no lock', async () => {
    const { host } = hostFor();
    const r = await runCommand(backupWith(host), ['web', '--dry-run', '--to', 'w.tar.zst']);
    expect([r.exitCode, r.stdout]).toEqual([0, expect.stringMatching(/^backup of web to w\.tar\.zst:\n {2}web is running and .* is not a btrfs subvolume: web is stopped for the copy/)]);
    expect(host.runner.argvs()).toEqual([SHOW('web')]);
    expect(host.fs.changes).toEqual([]);
  });

  test.each([
    [['../etc'], 2, 'nspawnctl: "../etc" is not a machine name nspawnctl could have created (1-12 characters of a-z, 0-9 and -)\n'],
    [['ghost'], 1, 'nspawnctl: no machine named ghost: nspawnctl has no record of it\nhint: nspawnctl list shows the machines nspawnctl manages.\n'],
  ])('%j: exit %d, nothing changed but the lock', async (argv, code, stderr) => {
    const { host } = hostFor();
    const r = await runCommand(backupWith(host), argv);
    expect([r.exitCode, r.stderr]).toEqual([code, stderr]);
    expect(changesBesidesLock(host)).toEqual([]);
  });

  test('a machine nspawnctl did not create is refused (exit 4)', async () => {
    const { host } = hostFor();
    host.fs.addDir('/var/lib/machines/legacy');
    const r = await runCommand(backupWith(host), ['legacy']);
    expect([r.exitCode, r.stderr]).toEqual([4, 'nspawnctl: machine legacy was not created by nspawnctl (no record in /var/lib/nspawnctl/machines/legacy.json); backup works on the machines nspawnctl manages\n']);
  });

  test('zstd missing: exit 3 naming the package, before the machine is touched', async () => {
    const { host } = hostFor();
    host.fs.nodes.delete('/usr/bin/zstd');
    const r = await runCommand(backupWith(host), ['web']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe('nspawnctl: this host is not ready:\n  - zstd is not installed (nspawnctl backup writes and reads .tar.zst archives with it)\nhint: apt-get install zstd, or run: nspawnctl host init\n');
    expect(host.runner.argvs().some((a) => a[1] === 'poweroff')).toBe(false);
  });

  test('as a normal user: exit 3 before anything is read', async () => {
    const host = new FakeHost({ uid: 1000 });
    const r = await runCommand(backupWith(host), ['web']);
    expect([r.exitCode, r.stderr]).toEqual([3, 'nspawnctl: this host is not ready:\n  - nspawnctl backup must run as root\nhint: Run it with sudo, or as root.\n']);
    expect(host.runner.calls).toEqual([]);
  });

  test('holds the host lock while it works (--no-wait refuses with exit 5)', async () => {
    const { host } = hostFor();
    host.holdLock(LOCK_PATH, `${JSON.stringify({ pid: 77, command: 'apply m.yaml', since: 'then' })}\n`);
    const r = await runCommand(backupWith(host), ['web', '--no-wait']);
    expect([r.exitCode, r.stderr]).toEqual([5, 'nspawnctl: another nspawnctl is changing this host: PID 77 (apply m.yaml, since then)\nhint: Wait for it, or run again with --wait (the default).\n']);
    expect(host.runner.calls).toEqual([]);
  });
});
