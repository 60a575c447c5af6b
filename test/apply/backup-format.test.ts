// The archive format: the exact argv of tar and zstd, the checksum trailer, the metadata, and how
// a record and settings are checked and renamed for restore --as.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  decodeTrailer,
  defaultArchiveName,
  encodeTrailer,
  parseMeta,
  recordFor,
  renameSettings,
  settingsFor,
  TAR_LIST,
  TAR_READ_META,
  tarCreateCommand,
  tarExtractCommand,
  TRAILER_LENGTH,
  ZSTD_COMPRESS,
  ZSTD_DECOMPRESS,
} from '../../src/apply/backup-format';
import { LIMITS, META, NSPAWN, RECORD } from '../helpers/backup';

const SHA = createHash('sha256').update('content').digest('hex');

describe('the argv of tar and zstd', () => {
  test('tar --create: the metadata, then the tree as rootfs/, never following links or leaving its filesystem', () => {
    expect(tarCreateCommand('/run/nspawnctl/backup-42', '/var/lib/machines/web')).toEqual({
      file: 'tar',
      args: [
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
        '--directory=/run/nspawnctl/backup-42',
        'nspawnctl-backup.json',
        '--directory=/var/lib/machines/web',
        '--transform=s,^\\.\\(/\\|$\\),rootfs\\1,S',
        '.',
      ],
    });
  });

  test('tar --list: raw names (--absolute-names), C-quoted, numeric owners; tar --extract: rootfs/ onto the directory', () => {
    expect(TAR_LIST).toEqual({ file: 'tar', args: ['--list', '--verbose', '--file=-', '--absolute-names', '--numeric-owner', '--full-time', '--quoting-style=c'] });
    expect(TAR_READ_META).toEqual({ file: 'tar', args: ['--extract', '--file=-', '--to-stdout', '--occurrence=1', '--', 'nspawnctl-backup.json'] });
    expect(tarExtractCommand('/var/lib/machines/.nspawnctl-web.staging')).toEqual({
      file: 'tar',
      args: [
        '--extract',
        '--file=-',
        '--directory=/var/lib/machines/.nspawnctl-web.staging',
        '--numeric-owner',
        '--same-owner',
        '--same-permissions',
        '--xattrs',
        '--xattrs-include=user.*',
        '--xattrs-include=security.capability',
        '--acls',
        '--transform=s,^rootfs\\(/\\|$\\),./,S',
        '--',
        'rootfs',
      ],
    });
    expect(tarExtractCommand('/x').args).not.toContain('--absolute-names');
  });

  test('zstd: all cores to compress; plain decompression (its memory limit caps the window)', () => {
    expect(ZSTD_COMPRESS).toEqual({ file: 'zstd', args: ['--quiet', '--stdout', '--threads=0'] });
    expect(ZSTD_DECOMPRESS).toEqual({ file: 'zstd', args: ['--decompress', '--quiet', '--stdout'] });
  });
});

describe('the checksum trailer', () => {
  test('a zstd skippable frame carrying the sha256, read back exactly', () => {
    const t = encodeTrailer(SHA);
    expect(t.length).toBe(TRAILER_LENGTH);
    expect(t.readUInt32LE(0)).toBe(0x184d2a57);
    expect(t.readUInt32LE(4)).toBe(TRAILER_LENGTH - 8);
    expect(t.subarray(8).toString()).toBe(`nspawnctl-backup format=1 sha256=${SHA}\n`);
    expect(decodeTrailer(t)).toBe(SHA);
  });

  test('anything else is no trailer: other magic, other length, other text, upper case', () => {
    const t = encodeTrailer(SHA);
    const other = Buffer.from(t);
    other.writeUInt32LE(0x184d2a50, 0);
    expect(decodeTrailer(other)).toBeUndefined();
    expect(decodeTrailer(t.subarray(1))).toBeUndefined();
    expect(decodeTrailer(Buffer.concat([t.subarray(0, 8), Buffer.from(`nspawnctl-backup format=1 sha256=${SHA.toUpperCase()}\n`)]))).toBeUndefined();
    expect(decodeTrailer(Buffer.concat([t.subarray(0, 8), Buffer.from(`nspawnctl-backup format=2 sha256=${SHA}\n`)]))).toBeUndefined();
    expect(() => encodeTrailer('abc')).toThrow('internal');
  });

  // Needs the zstd program; it is what makes the archive an ordinary .tar.zst.
  const hasZstd = (() => {
    try {
      execFileSync('zstd', ['--version']);
      return true;
    } catch {
      return false;
    }
  })();
  (hasZstd ? test : test.skip)('zstd skips it: the file decompresses to exactly what was compressed (skipped without zstd)', () => {
    const compressed = execFileSync('zstd', ['--quiet', '--stdout'], { input: 'hello, archive\n' });
    const out = execFileSync('zstd', ['--decompress', '--quiet', '--stdout'], { input: Buffer.concat([compressed, encodeTrailer(SHA)]) });
    expect(out.toString()).toBe('hello, archive\n');
  });
});

describe('the metadata', () => {
  test('parses back; another format is named; unknown keys and bad names are refused (exit 2)', () => {
    expect(parseMeta(JSON.stringify(META))).toEqual(META);
    expect(() => parseMeta(JSON.stringify({ ...META, format: 2 }))).toThrow('not a usable nspawnctl backup: it is in backup format 2; this nspawnctl reads format 1; nothing was restored');
    expect(() => parseMeta(JSON.stringify({ ...META, extra: 1 }))).toThrow(/nspawnctl-backup\.json is not valid: \(top\): Unrecognized key/);
    expect(() => parseMeta(JSON.stringify({ ...META, machine: '../etc' }))).toThrow('nspawnctl-backup.json is not valid: machine: Invalid');
    expect(() => parseMeta('{')).toThrow(/nspawnctl-backup\.json is not JSON/);
    expect(() => parseMeta('{')).toThrow(expect.objectContaining({ exitCode: 2 }));
  });

  test('the default archive name: NAME-UTC time.tar.zst, no colons', () => {
    expect(defaultArchiveName('web', new Date('2026-11-29T23:05:12.345Z'))).toBe('web-20261129T230512Z.tar.zst');
  });
});

describe('record and settings for the restored machine', () => {
  test('the same name: unchanged', () => {
    expect(recordFor(META, 'web')).toEqual(RECORD);
    expect(settingsFor(META, 'web')).toEqual(META.settings);
  });

  test('--as: every path moves to the new name; Hostname= and the headers are renamed, nothing else', () => {
    expect(recordFor(META, 'web2')).toEqual({
      ...RECORD,
      name: 'web2',
      files: ['/etc/systemd/nspawn/web2.nspawn', '/etc/systemd/system/systemd-nspawn@web2.service.d/50-nspawnctl-limits.conf', '/var/lib/machines/web2/etc/hostname', '/var/lib/machines/web2/etc/systemd/network/10-nspawnctl-host0.network'],
    });
    expect(settingsFor(META, 'web2')).toEqual([
      { path: '/etc/systemd/nspawn/web2.nspawn', content: NSPAWN.replace('for machine web.', 'for machine web2.').replace('Hostname=web\n', 'Hostname=web2\n') },
      { path: '/etc/systemd/system/systemd-nspawn@web2.service.d/50-nspawnctl-limits.conf', content: LIMITS.replace('of machine web.', 'of machine web2.') },
    ]);
  });

  test('a hostname the manifest chose stays; a header naming another machine stays', () => {
    expect(renameSettings('[Exec]\nHostname=web.example.org\n', 'web', 'web2')).toBe('[Exec]\nHostname=web.example.org\n');
    expect(renameSettings('# Generated by nspawnctl from m.yaml for machine webx.\nHostname=webx\n', 'web', 'web2')).toBe('# Generated by nspawnctl from m.yaml for machine webx.\nHostname=webx\n');
  });

  test.each([
    ['/etc/passwd', 'its record lists "/etc/passwd", which is not a file nspawnctl writes for machine web'],
    ['/var/lib/machines/web', 'its record lists "/var/lib/machines/web", which is not a file nspawnctl writes for machine web'],
    ['/var/lib/machines/web/../../../etc/shadow', 'its record lists "/var/lib/machines/web/../../../etc/shadow", which is not a file nspawnctl writes for machine web'],
    ['/var/lib/machines/db/etc/hostname', 'its record lists "/var/lib/machines/db/etc/hostname", which is not a file nspawnctl writes for machine web'],
    ['/etc/systemd/nspawn/db.nspawn', 'its record lists "/etc/systemd/nspawn/db.nspawn", which is not a file nspawnctl writes for machine web'],
  ])('a record listing %s refuses the archive (destroy would remove it)', (path, why) => {
    expect(() => recordFor({ ...META, record: { ...RECORD, files: [...RECORD.files, path] } }, 'web2')).toThrow(`not a usable nspawnctl backup: ${why}; nothing was restored`);
  });

  test('settings for a path that is not the machine\'s, or twice, or a record of another machine, refuse the archive', () => {
    expect(() => settingsFor({ ...META, settings: [{ path: '/etc/systemd/system/sshd.service', content: '' }] }, 'web')).toThrow('it holds settings for "/etc/systemd/system/sshd.service", which is not a settings file of machine web');
    expect(() => settingsFor({ ...META, settings: [META.settings[0], META.settings[0]] }, 'web')).toThrow('it holds /etc/systemd/nspawn/web.nspawn twice');
    expect(() => recordFor({ ...META, record: { ...RECORD, name: 'db' } }, 'web')).toThrow("its record is machine db's, not web's");
  });
});
