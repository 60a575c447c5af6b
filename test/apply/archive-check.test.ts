// What restore checks before it writes anything, in order, with a fake Host: the trailer and the
// checksum (before zstd or tar ever run), every member, the metadata.
import { assertArchiveTools, checkArchive, describeBytes, formatBytes, progressReporter } from '../../src/apply/archive-check';
import { encodeTrailer } from '../../src/apply/backup-format';
import { FakeHost } from '../helpers/fake-host';
import { GOOD_LISTING, isList, isReadMeta, listingLine, META, seedArchive } from '../helpers/backup';

function hostWithTools(): FakeHost {
  const host = new FakeHost();
  host.fs.addFile('/usr/bin/tar', '').addFile('/usr/bin/zstd', '');
  return host;
}

const open = (host: FakeHost, path = '/srv/web.tar.zst') => host.openArchive(path);

test('a good archive: checksum, then the listing, then the metadata', async () => {
  const host = hostWithTools();
  const { sha256, contentLength } = seedArchive(host, '/srv/web.tar.zst');
  const progress: number[] = [];
  const checked = await checkArchive(host, await open(host), (done) => progress.push(done));
  expect(checked).toEqual({ sha256, contentLength, members: GOOD_LISTING.length, meta: META });
  expect(host.runner.argvs().map((a) => a.join(' '))).toEqual([
    'zstd --decompress --quiet --stdout | tar --list --verbose --file=- --absolute-names --numeric-owner --full-time --quoting-style=c',
    'zstd --decompress --quiet --stdout | tar --extract --file=- --to-stdout --occurrence=1 -- nspawnctl-backup.json',
  ]);
  // Both passes read the content only, never the trailer.
  expect(host.runner.calls.map((c) => [c.pipeline?.input?.start, c.pipeline?.input?.end])).toEqual([
    [0, contentLength],
    [0, contentLength],
  ]);
  expect(progress[progress.length - 1]).toBe(contentLength * 2);
});

test('a bad checksum is refused (exit 2) before zstd or tar read a byte', async () => {
  const host = hostWithTools();
  seedArchive(host, '/srv/web.tar.zst');
  const archive = host.archives.get('/srv/web.tar.zst')!;
  archive.data[3] ^= 0xff;
  const err = await checkArchive(host, await open(host)).catch((e: unknown) => e);
  expect(err).toMatchObject({ exitCode: 2, message: expect.stringMatching(/^\/srv\/web\.tar\.zst: not a usable nspawnctl backup: checksum mismatch: it is damaged or was changed \(its trailer says sha256 [0-9a-f]{64}, its content hashes to [0-9a-f]{64}\); nothing was restored$/) });
  expect(host.runner.calls).toEqual([]);
});

test.each([
  ['no trailer (a plain .tar.zst)', Buffer.from('x'.repeat(500)), "it does not end with nspawnctl's checksum (not written by nspawnctl backup, or cut short)"],
  ['cut short', Buffer.concat([Buffer.from('x'.repeat(500)), encodeTrailer('a'.repeat(64)).subarray(0, 50)]), "it does not end with nspawnctl's checksum (not written by nspawnctl backup, or cut short)"],
  ['too short to hold a trailer', Buffer.from('tiny'), 'it is too short to be one'],
])('refused before anything runs: %s', async (_what, data, why) => {
  const host = hostWithTools();
  host.archives.set('/srv/web.tar.zst', { data, uid: 0, mode: 0o600 });
  await expect(checkArchive(host, await open(host))).rejects.toMatchObject({ exitCode: 2, message: `/srv/web.tar.zst: not a usable nspawnctl backup: ${why}; nothing was restored` });
  expect(host.runner.calls).toEqual([]);
});

test('a hostile member is refused (exit 2) with every problem named; the metadata is never read', async () => {
  const host = hostWithTools();
  seedArchive(host, '/srv/web.tar.zst', { listing: [...GOOD_LISTING, listingLine('-', 'rootfs/../../etc/cron.d/x'), listingLine('b', 'rootfs/dev/sda', { dev: '8,0' })] });
  await expect(checkArchive(host, await open(host))).rejects.toMatchObject({
    exitCode: 2,
    message: '/srv/web.tar.zst: not a usable nspawnctl backup: members are unsafe to extract:\n  - "rootfs/../../etc/cron.d/x" has a ".." in its name\n  - "rootfs/dev/sda" is a block device; nothing was restored',
  });
  expect(host.runner.argvs().filter(isReadMeta)).toEqual([]);
});

test('zstd failing on the content is a damaged archive (exit 2), not a host failure', async () => {
  const host = hostWithTools();
  seedArchive(host, '/srv/web.tar.zst', { answer: false });
  host.runner.on(isList, { exitCode: 1, stderr: "/*stdin*\\ : Decoding error (36) : Restored data doesn't match checksum\n" });
  await expect(checkArchive(host, await open(host))).rejects.toMatchObject({
    exitCode: 2,
    message: expect.stringContaining("/srv/web.tar.zst: not a usable nspawnctl backup: zstd could not read it (command zstd --decompress --quiet --stdout"),
  });
});

test('a file that changes between the checksum and the listing is refused', async () => {
  const host = hostWithTools();
  seedArchive(host, '/srv/web.tar.zst', { answer: false });
  const archive = host.archives.get('/srv/web.tar.zst')!;
  host.runner.on(isList, () => {
    archive.data = Buffer.concat([Buffer.from('swapped!'), archive.data.subarray(8)]);
    return { stdout: `${GOOD_LISTING.join('\n')}\n` };
  });
  await expect(checkArchive(host, await open(host))).rejects.toMatchObject({ exitCode: 2, message: '/srv/web.tar.zst: not a usable nspawnctl backup: it changed while it was being read; nothing was restored' });
  expect(host.runner.argvs().filter(isReadMeta)).toEqual([]);
});

test('tar or zstd missing: exit 3 naming the package, before anything is read', async () => {
  const host = new FakeHost();
  host.fs.addFile('/usr/bin/tar', '');
  await expect(assertArchiveTools(host, 'backup')).rejects.toMatchObject({
    exitCode: 3,
    message: 'this host is not ready:\n  - zstd is not installed (nspawnctl backup writes and reads .tar.zst archives with it)',
    hint: 'apt-get install zstd, or run: nspawnctl host init',
  });
  host.fs.addFile('/bin/zstd', '');
  await expect(assertArchiveTools(host, 'backup')).resolves.toBeUndefined();
});

test('progress lines: bytes, percentage when the total is known, rate; at most one per interval', () => {
  expect(formatBytes(512)).toBe('512 B');
  expect(formatBytes(1536)).toBe('1.5 KiB');
  expect(formatBytes(300 * 1024 * 1024)).toBe('300 MiB');
  expect(describeBytes(512 * 1024 * 1024, 1024 * 1024 * 1024, 45 * 1024 * 1024)).toBe('512 MiB of 1.0 GiB (50%), 45 MiB/s');
  let t = 0;
  const lines: string[] = [];
  const report = progressReporter((l) => lines.push(l), 1000, () => t, describeBytes);
  t = 500;
  report(1024 * 1024, undefined);
  t = 900;
  report(2 * 1024 * 1024, undefined);
  t = 2000;
  report(4 * 1024 * 1024, undefined);
  report.flush();
  expect(lines).toEqual(['1.0 MiB, 2.0 MiB/s', '4.0 MiB, 2.0 MiB/s', '4.0 MiB, 2.0 MiB/s']);
});
