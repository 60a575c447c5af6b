// `nspawnctl restore` through oclif with a fake Host: the archive checked before anything is
// written, the tree extracted into staging, record and settings, one rename, then enable and
// start as it was; --as for a stopped copy; every refusal with its exit code and nothing changed.
import Restore from '../../src/commands/restore';
import { Host } from '../../src/host/host';
import { LOCK_PATH } from '../../src/host/lock';
import { serializeRecord } from '../../src/plan/records';
import { GOOD_LISTING, isExtract, isList, isReadMeta, LIMITS, listingLine, META, NSPAWN, RECORD, seedArchive } from '../helpers/backup';
import { makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { changesBesidesLock } from '../helpers/lock';
import { runCommand, TEST_CWD } from '../helpers/run-command';
import { readyCalls, simulateSystemd } from '../helpers/simulated-systemd';

const restoreWith = (host: Host) =>
  class extends Restore {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

const FILE = '/srv/backups/web.tar.zst';
const STAGING = (name: string) => `/var/lib/machines/.nspawnctl-${name}.staging`;
const HOST0 = '[Match]\nName=host0\n\n[Network]\nAddress=10.77.0.11/24\n';

/** A booted host without the machine; extracting fills the staging directory like tar would. */
function hostFor(o: { extractFails?: boolean; running?: string[] } = {}): FakeHost {
  const host = makeBootedHost(new FakeHost(), ['machinectl', 'systemd-nspawn', 'networkctl', 'tar', 'zstd']);
  simulateSystemd(host, { running: o.running ?? [] });
  host.fs.addDir('/var/lib').addDir('/etc/systemd/system');
  host.runner.on(['systemctl', 'daemon-reload'], {});
  host.runner.on(isExtract, ({ args }) => {
    const dir = /^--directory=(.+)$/.exec(args.find((a) => a.startsWith('--directory=')) ?? '')![1];
    if (o.extractFails) return { exitCode: 2, stderr: 'tar: ./usr/lib/x: Cannot write: No space left on device\n' };
    host.fs.addFile(`${dir}/etc/hostname`, 'web\n');
    host.fs.addFile(`${dir}/etc/machine-id`, '0123456789abcdef0123456789abcdef\n', { mode: 0o444 });
    host.fs.addFile(`${dir}/etc/systemd/network/10-nspawnctl-host0.network`, HOST0);
    return {};
  });
  return host;
}

const EXTRACT = (name: string) =>
  `zstd --decompress --quiet --stdout | tar --extract --file=- --directory=${STAGING(name)} --numeric-owner --same-owner --same-permissions --xattrs --xattrs-include=user.* --xattrs-include=security.capability --acls --transform=s,^rootfs\\(/\\|$\\),./,S -- rootfs`;
const LIST = 'zstd --decompress --quiet --stdout | tar --list --verbose --file=- --absolute-names --numeric-owner --full-time --quoting-style=c';
const READ_META = 'zstd --decompress --quiet --stdout | tar --extract --file=- --to-stdout --occurrence=1 -- nspawnctl-backup.json';
const SHOW = (name: string) => `machinectl show ${name} --property=State --value`;

describe('nspawnctl restore', () => {
  test('under its own name: checked, extracted into staging, record and settings, renamed, enabled and started as it was', async () => {
    const host = hostFor();
    const { sha256, contentLength } = seedArchive(host, FILE);
    const r = await runCommand(restoreWith(host), [FILE]);
    expect({ code: r.exitCode, err: r.stderr }).toEqual({ code: 0, err: expect.any(String) });
    expect(r.stderr).toContain(
      [
        'restore machine web from a backup made 2026-11-29T23:05:12.000Z by nspawnctl 0.1.0 (while it was stopped for it):',
        '  - extract its root filesystem into /var/lib/machines/.nspawnctl-web.staging',
        '  - write its record and settings (2 file(s): web.nspawn, 50-nspawnctl-limits.conf)',
        '  - rename it to /var/lib/machines/web',
        '  - enable it (it started at boot)',
        '  - start it and wait until it is ready (it was running)',
      ].join('\n'),
    );
    expect(r.stdout.endsWith(`Restored web from ${FILE} (6 members, sha256 ${sha256}); it is running with address 10.77.0.11.\n`)).toBe(true);
    expect(host.runner.argvs().map((a) => a.join(' ').replace(/--timeout=89$/, '--timeout=90'))).toEqual([
      LIST,
      READ_META,
      'machinectl show web --property=State --value',
      EXTRACT('web'),
      // synced before the rename that publishes it
      'sync --file-system /var/lib/machines/.nspawnctl-web.staging',
      'systemctl daemon-reload',
      'machinectl enable web',
      'machinectl start web',
      SHOW('web'),
      ...readyCalls('web', 90).map((a) => a.join(' ')),
    ]);
    // Extraction reads the content the checksum covered, not the trailer.
    const extract = host.runner.calls.find((c) => isExtract([c.file, ...c.args]))!;
    expect([extract.pipeline?.input?.start, extract.pipeline?.input?.end]).toEqual([0, contentLength]);
    expect(changesBesidesLock(host)).toEqual([
      'mkdir /var/lib/machines',
      'mkdir /var/lib/machines/.nspawnctl-web.staging',
      'mkdir /var/lib/nspawnctl',
      'mkdir /var/lib/nspawnctl/machines',
      'write /var/lib/nspawnctl/machines/web.json',
      'mkdir /etc/systemd/nspawn',
      'write /etc/systemd/nspawn/web.nspawn',
      'mkdir /etc/systemd/system/systemd-nspawn@web.service.d',
      'write /etc/systemd/system/systemd-nspawn@web.service.d/50-nspawnctl-limits.conf',
      'syncfs /var/lib/machines/.nspawnctl-web.staging',
      'rename /var/lib/machines/.nspawnctl-web.staging -> /var/lib/machines/web',
    ]);
    expect(host.fs.textAt('/var/lib/nspawnctl/machines/web.json')).toBe(serializeRecord(RECORD));
    expect(host.fs.nodes.get('/var/lib/nspawnctl/machines/web.json')).toMatchObject({ mode: 0o600 });
    expect(host.fs.textAt('/etc/systemd/nspawn/web.nspawn')).toBe(NSPAWN);
    expect(host.fs.textAt('/etc/systemd/system/systemd-nspawn@web.service.d/50-nspawnctl-limits.conf')).toBe(LIMITS);
    expect(host.fs.textAt('/var/lib/machines/web/etc/hostname')).toBe('web\n');
  });

  test('--as web2: record and settings renamed, hostname and machine-id inside, left stopped and not enabled', async () => {
    const host = hostFor();
    seedArchive(host, FILE);
    const r = await runCommand(restoreWith(host), [FILE, '--as', 'web2']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain(
      [
        'restore machine web2 (a copy of web) from a backup made 2026-11-29T23:05:12.000Z by nspawnctl 0.1.0 (while it was stopped for it):',
        '  - extract its root filesystem into /var/lib/machines/.nspawnctl-web2.staging',
        '  - hostname web becomes web2 (where it was the name), and /etc/machine-id is emptied so it gets its own identity at first boot',
        '  - write its record and settings (2 file(s): web.nspawn, 50-nspawnctl-limits.conf)',
        '  - rename it to /var/lib/machines/web2',
        "  - leave it stopped: it keeps web's network address and settings, and belongs to no manifest until one names it.",
        '    Add "web2:" with its own address to a manifest and apply it: apply rewrites its hostname, address and settings and starts it.',
      ].join('\n'),
    );
    expect(r.stdout).toMatch(/\nRestored web2 \(a copy of web\) from \/srv\/backups\/web\.tar\.zst \(6 members, sha256 [0-9a-f]{64}\); it is stopped with address 10\.77\.0\.11\.\n$/);
    expect(host.runner.argvs().map((a) => a.join(' '))).toEqual([LIST, READ_META, SHOW('web2'), EXTRACT('web2'), 'sync --file-system /var/lib/machines/.nspawnctl-web2.staging', 'systemctl daemon-reload']);
    expect(JSON.parse(host.fs.textAt('/var/lib/nspawnctl/machines/web2.json')!)).toEqual({
      ...RECORD,
      name: 'web2',
      files: ['/etc/systemd/nspawn/web2.nspawn', '/etc/systemd/system/systemd-nspawn@web2.service.d/50-nspawnctl-limits.conf', '/var/lib/machines/web2/etc/hostname', '/var/lib/machines/web2/etc/systemd/network/10-nspawnctl-host0.network'],
    });
    expect(host.fs.textAt('/etc/systemd/nspawn/web2.nspawn')).toContain('Hostname=web2\n');
    expect(host.fs.textAt('/etc/systemd/nspawn/web2.nspawn')).toContain('for machine web2.\n');
    expect(host.fs.textAt('/var/lib/machines/web2/etc/hostname')).toBe('web2\n');
    expect(host.fs.nodes.get('/var/lib/machines/web2/etc/machine-id')).toMatchObject({ type: 'file', content: '', mode: 0o444 });
    expect(host.fs.textAt('/etc/systemd/nspawn/web.nspawn')).toBeUndefined();
  });

  test('--as with a tree whose /etc is a symlink: nothing is written through it; the copy is refused and removed', async () => {
    const host = makeBootedHost(new FakeHost(), ['machinectl', 'systemd-nspawn', 'tar', 'zstd']);
    simulateSystemd(host);
    host.fs.addFile('/etc/hostname', 'the-host\n');
    host.runner.on(isExtract, () => {
      host.fs.addSymlink(`${STAGING('web2')}/etc`, '/etc');
      return {};
    });
    seedArchive(host, FILE);
    const r = await runCommand(restoreWith(host), [FILE, '--as', 'web2']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('/var/lib/machines/.nspawnctl-web2.staging/etc is a symlink: nspawnctl will not follow or use it');
    expect(host.fs.textAt('/etc/hostname')).toBe('the-host\n');
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/') || p.startsWith('/var/lib/nspawnctl/'))).toEqual([]);
  });

  test('a machine of that name exists: exit 4, nothing written but the lock', async () => {
    const host = hostFor();
    seedArchive(host, FILE);
    host.fs.addFile('/var/lib/nspawnctl/machines/web.json', serializeRecord(RECORD));
    host.fs.addDir('/var/lib/machines/web');
    const r = await runCommand(restoreWith(host), [FILE]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain('nspawnctl: machine web exists (/var/lib/nspawnctl/machines/web.json, /var/lib/machines/web); restore never replaces a machine\nhint: Restore it under another name with --as NAME, or remove it first: nspawnctl destroy web\n');
    expect(changesBesidesLock(host)).toEqual([]);
    expect(host.runner.argvs().filter(isExtract)).toEqual([]);
  });

  test('a machine of that name that only runs (not nspawnctl\'s) counts too', async () => {
    const host = hostFor({ running: ['web'] });
    seedArchive(host, FILE);
    const r = await runCommand(restoreWith(host), [FILE]);
    expect([r.exitCode, r.stderr]).toEqual([4, expect.stringContaining('machine web exists (a running machine named web (machinectl))')]);
  });

  test.each([
    ['a path traversal', [listingLine('-', 'rootfs/../../etc/cron.d/x')], '"rootfs/../../etc/cron.d/x" has a ".." in its name'],
    ['an absolute name', [listingLine('-', '/etc/cron.d/x')], '"/etc/cron.d/x" is an absolute name'],
    ['a file through a symlink member', [listingLine('l', 'rootfs/etc/evil', { target: '/etc' }), listingLine('-', 'rootfs/etc/evil/cron.d')], '"rootfs/etc/evil/cron.d" goes through "rootfs/etc/evil", a symlink of the archive'],
    ['a device node outside /dev', [listingLine('c', 'rootfs/etc/kmem', { dev: '1,2' })], '"rootfs/etc/kmem" is a device node outside /dev'],
  ])('a hostile archive (%s) is refused with exit 2 before the lock: nothing written, nothing extracted', async (_what, extra, problem) => {
    const host = hostFor();
    seedArchive(host, FILE, { listing: [...GOOD_LISTING, ...extra] });
    const r = await runCommand(restoreWith(host), [FILE]);
    expect([r.exitCode, r.stderr]).toEqual([2, expect.stringContaining(`nspawnctl: ${FILE}: not a usable nspawnctl backup: a member is unsafe to extract:\n  - ${problem}; nothing was restored\n`)]);
    expect(host.runner.argvs().map((a) => a.join(' '))).toEqual([LIST]);
    expect(host.fs.changes).toEqual([]);
  });

  test('a bad checksum: exit 2, and zstd and tar never ran', async () => {
    const host = hostFor();
    seedArchive(host, FILE);
    host.archives.get(FILE)!.data[0] ^= 1;
    const r = await runCommand(restoreWith(host), [FILE]);
    expect([r.exitCode, r.stderr]).toEqual([2, expect.stringContaining('not a usable nspawnctl backup: checksum mismatch: it is damaged or was changed')]);
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('an archive someone else may change is refused (exit 2) unless --dry-run', async () => {
    const host = hostFor();
    seedArchive(host, FILE, { uid: 1000, mode: 0o644 });
    const r = await runCommand(restoreWith(host), [FILE]);
    expect([r.exitCode, r.stderr]).toEqual([2, `nspawnctl: refusing to restore ${FILE}: it belongs to UID 1000, so it could change while root reads it\nhint: Copy it somewhere only root writes, then restore the copy: install -m 600 ${FILE} /root/\n`]);
    host.archives.get(FILE)!.uid = 0;
    host.archives.get(FILE)!.mode = 0o664;
    expect((await runCommand(restoreWith(host), [FILE])).stderr).toContain('its group or others may write it');
    expect((await runCommand(restoreWith(host), [FILE, '--dry-run'])).exitCode).toBe(0);
    expect(host.fs.changes).toEqual([]);
  });

  test('extraction fails: the staging directory, record and settings are all gone again; exit 1 naming tar', async () => {
    const host = hostFor({ extractFails: true });
    seedArchive(host, FILE);
    const r = await runCommand(restoreWith(host), [FILE]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('No space left on device');
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/') || p.startsWith('/var/lib/nspawnctl/machines/') || p.startsWith('/etc/systemd/nspawn/'))).toEqual([]);
    expect(changesBesidesLock(host)).toEqual(['mkdir /var/lib/machines', 'mkdir /var/lib/machines/.nspawnctl-web.staging', 'remove-tree /var/lib/machines/.nspawnctl-web.staging']);
  });

  test('a staging directory a killed run left is removed before extracting, never resumed', async () => {
    const host = hostFor();
    seedArchive(host, FILE);
    host.fs.addFile(`${STAGING('web')}/half/written`, 'x');
    const r = await runCommand(restoreWith(host), [FILE, '--no-start']);
    expect(r.exitCode).toBe(0);
    expect(changesBesidesLock(host).slice(0, 2)).toEqual(['remove-tree /var/lib/machines/.nspawnctl-web.staging', 'mkdir /var/lib/machines/.nspawnctl-web.staging']);
    expect(host.fs.textAt('/var/lib/machines/web/half/written')).toBeUndefined();
  });

  test('--no-start leaves it stopped (still enabled as it was)', async () => {
    const host = hostFor();
    seedArchive(host, FILE);
    const r = await runCommand(restoreWith(host), [FILE, '--no-start']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain('  - leave it stopped (--no-start)');
    expect(host.runner.argvs().map((a) => a.join(' '))).not.toContain('machinectl start web');
    expect(host.runner.argvs().map((a) => a.join(' '))).toContain('machinectl enable web');
  });

  test('--dry-run --json: what it would restore, checked, with no lock and no change', async () => {
    const host = hostFor();
    const { sha256 } = seedArchive(host, FILE);
    const r = await runCommand(restoreWith(host), [FILE, '--dry-run', '--json', '--as', 'web2']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      machine: 'web2',
      from: 'web',
      file: FILE,
      sha256,
      members: 6,
      created: META.created,
      nspawnctl: '0.1.0',
      consistency: 'stopped',
      start: false,
      enable: false,
      record: expect.objectContaining({ name: 'web2' }),
      settings: [expect.objectContaining({ path: '/etc/systemd/nspawn/web2.nspawn' }), expect.objectContaining({ path: '/etc/systemd/system/systemd-nspawn@web2.service.d/50-nspawnctl-limits.conf' })],
    });
    expect(host.fs.changes).toEqual([]);
    expect(host.isLocked(LOCK_PATH)).toBe(false);
  });

  test('metadata that names files which are not the machine\'s refuses the archive (exit 2)', async () => {
    const host = hostFor();
    seedArchive(host, FILE, { meta: { ...META, record: { ...RECORD, files: [...RECORD.files, '/etc/systemd/system/sshd.service'] } } });
    const r = await runCommand(restoreWith(host), [FILE]);
    expect([r.exitCode, r.stderr]).toEqual([2, expect.stringContaining('not a usable nspawnctl backup: its record lists "/etc/systemd/system/sshd.service", which is not a file nspawnctl writes for machine web; nothing was restored')]);
    expect(host.fs.changes).toEqual([]);
  });

  test.each([
    [['x.tar.zst', '--as', 'Web_2'], 2, 'nspawnctl: "Web_2" is not a machine name (1-12 characters of a-z, 0-9 and -, not starting or ending with -)\n'],
    [['missing.tar.zst'], 2, 'nspawnctl: cannot read missing.tar.zst: no such file\n'],
  ])('%j: exit %d', async (argv, code, stderr) => {
    const host = hostFor();
    const r = await runCommand(restoreWith(host), argv);
    expect([r.exitCode, r.stderr]).toEqual([code, stderr]);
    expect(host.fs.changes).toEqual([]);
  });

  test('as a normal user: exit 3 before the archive is read', async () => {
    const host = new FakeHost({ uid: 1000 });
    const r = await runCommand(restoreWith(host), [FILE]);
    expect([r.exitCode, r.stderr]).toEqual([3, 'nspawnctl: this host is not ready:\n  - nspawnctl restore must run as root\nhint: Run it with sudo, or as root.\n']);
  });

  test('the listing is asked of tar exactly once per check, and the metadata once', async () => {
    const host = hostFor();
    seedArchive(host, FILE);
    await runCommand(restoreWith(host), [FILE, '--dry-run']);
    expect(host.runner.argvs().filter(isList)).toHaveLength(1);
    expect(host.runner.argvs().filter(isReadMeta)).toHaveLength(1);
  });
});
