// The fake is only useful if it behaves like the real thing: the same operations run against
// createNodeFs (in a temporary directory) and FakeFs must give the same results and trees; and
// the same for a RootfsHandle of each on a tree a machine's root has made hostile.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandFailedError } from '../../src/errors';
import { createNodeFs, HostFs } from '../../src/host/fs';
import { HttpError } from '../../src/host/http';
import { RootfsHandle } from '../../src/host/rootfs-handle';
import { FakeFs, FakeHost } from './fake-host';

// Symlink targets are relative here: createNodeFs is rooted at a temporary directory, where an
// absolute target would point out of it (on a host the root is /, and the fake's / is that root).
type Op = [string, (fs: HostFs) => Promise<unknown>];

const ops: Op[] = [
  ['listDir of a missing dir', (fs) => fs.listDir('/nope')],
  ['write a new file, parents made', (fs) => fs.writeFile('/a/b/c.txt', 'one\n', { mode: 0o640 })],
  ['same content and mode: no write', (fs) => fs.writeFile('/a/b/c.txt', 'one\n', { mode: 0o640 })],
  ['same content, other mode: write', (fs) => fs.writeFile('/a/b/c.txt', 'one\n', { mode: 0o600 })],
  ['other content: write', (fs) => fs.writeFile('/a/b/c.txt', 'two\n', { mode: 0o600 })],
  ['read it', (fs) => fs.readText('/a/b/c.txt')],
  ['read a directory', (fs) => fs.readText('/a/b')],
  ['read a missing file', (fs) => fs.readText('/a/x')],
  ['stat a file', async (fs) => pickStat(await fs.stat('/a/b/c.txt'))],
  ['stat a dir', async (fs) => (await fs.stat('/a/b'))?.type],
  ['stat missing', (fs) => fs.stat('/a/zzz')],
  ['stat below a file', (fs) => fs.stat('/a/b/c.txt/x')],
  ['write over a directory is refused', (fs) => fs.writeFile('/a/b', 'x', { mode: 0o644 })],
  ['write below a file is refused', (fs) => fs.writeFile('/a/b/c.txt/d', 'x', { mode: 0o644 })],
  ['symlink', (fs) => fs.writeSymlink('/a/link', 'b', {})],
  ['same symlink: no write', (fs) => fs.writeSymlink('/a/link', 'b', {})],
  ['retarget symlink', (fs) => fs.writeSymlink('/a/link', 'b/c.txt', {})],
  ['readLink', (fs) => fs.readLink('/a/link')],
  ['readLink of a file', (fs) => fs.readLink('/a/b/c.txt')],
  ['stat of a symlink is the link', async (fs) => (await fs.stat('/a/link'))?.type],
  ['read through a symlink', (fs) => fs.readText('/a/link')],
  ['symlink to a dir is a parent dir for writes', async (fs) => [await fs.writeSymlink('/d', 'a/b', {}), await fs.writeFile('/d/e.txt', 'e', { mode: 0o644 }), await fs.readText('/a/b/e.txt')]],
  ['a path inside a machine is refused (it takes a RootfsHandle)', (fs) => fs.writeFile('/var/lib/machines/web/etc/x', 'x', { mode: 0o644 })],
  ['reading inside a machine is refused too', (fs) => fs.readText('/var/lib/machines/web/etc/hostname')],
  ['so is a path through a process root', (fs) => fs.stat('/proc/1/root/etc')],
  ['listDir is sorted', async (fs) => [await fs.writeFile('/a/b/B', '', { mode: 0o644 }), await fs.writeFile('/a/b/a', '', { mode: 0o644 }), await fs.listDir('/a/b')]],
  ['removeFile refuses a directory', (fs) => fs.removeFile('/a/b')],
  ['removeFile of a symlink removes only the link', async (fs) => [await fs.removeFile('/a/link'), await fs.readText('/a/b/c.txt')]],
  ['removeFile of a missing file', (fs) => fs.removeFile('/a/missing')],
  ['rename a tree', async (fs) => [await fs.mkdir('/m/.staging/etc', 0o755), await fs.writeFile('/m/.staging/etc/h', 'h', { mode: 0o644 }), await fs.rename('/m/.staging', '/m/web'), await fs.listDir('/m'), await fs.readText('/m/web/etc/h')]],
  ['removeTree', async (fs) => [await fs.removeTree('/m/web'), await fs.listDir('/m')]],
  ['removeTree of a missing path', (fs) => fs.removeTree('/m/none')],
  ['removeTree of / is refused', (fs) => fs.removeTree('/')],
  ['mkdir over a file is refused', (fs) => fs.mkdir('/a/b/c.txt/sub', 0o755)],
  ['createExclusive a new file, parents made', async (fs) => [await fs.createExclusive('/run/x/l.lock', 'me\n', 0o644), await fs.readText('/run/x/l.lock'), pickStat(await fs.stat('/run/x/l.lock'))]],
  ['createExclusive over an existing file: false, content kept', async (fs) => [await fs.createExclusive('/run/x/l.lock', 'you\n', 0o600), await fs.readText('/run/x/l.lock')]],
  ['createExclusive over a directory: false', (fs) => fs.createExclusive('/run/x', 'you\n', 0o644)],
  ['createExclusive over a symlink: false', async (fs) => [await fs.writeSymlink('/run/link', 'x/none', {}), await fs.createExclusive('/run/link', 'you\n', 0o644), await fs.readText('/run/x/none')]],
  ['createExclusive below a file is refused', (fs) => fs.createExclusive('/run/x/l.lock/sub', 'x', 0o644)],
  ['createExclusive again after removeFile', async (fs) => [await fs.removeFile('/run/x/l.lock'), await fs.createExclusive('/run/x/l.lock', 'again\n', 0o644), await fs.readText('/run/x/l.lock')]],
];

function pickStat(info: Awaited<ReturnType<HostFs['stat']>>) {
  return info && { type: info.type, mode: info.mode, size: info.size };
}

/** The result or the error; `root` (the real fs' prefix, shown in some messages) is cut out. */
async function outcome(fn: () => Promise<unknown>, root = ''): Promise<unknown> {
  try {
    return { ok: await fn() };
  } catch (err) {
    if (['NspawnctlError', 'UnsafePathError'].includes((err as Error).constructor.name)) return { error: root ? (err as Error).message.split(root).join('') : (err as Error).message };
    return { error: (err as NodeJS.ErrnoException).code ?? 'error' };
  }
}

describe('FakeFs behaves like createNodeFs', () => {
  let dir: string;
  let real: HostFs;
  let fake: FakeFs;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nspawnctl-fs-'));
    real = createNodeFs(dir);
    fake = new FakeFs();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // The steps build on each other, in order.
  test.each(ops)('%s', async (_name, op) => {
    const expected = await outcome(() => op(real), dir);
    const actual = await outcome(() => op(fake));
    expect(actual).toEqual(expected);
  });
});

// Inside /m: etc/hostname, etc/link -> /etc, a FIFO etc/fifo, and etc/systemd -> ../../outside.
type HandleOp = [string, (h: RootfsHandle) => Promise<unknown>];
const entryOf = (e: Awaited<ReturnType<RootfsHandle['inspect']>>) => (e?.type === 'file' ? { type: e.type, content: e.content, mode: e.mode } : e);
const handleOps: HandleOp[] = [
  ['inspect a file', async (h) => entryOf(await h.inspect('/etc/hostname'))],
  ['inspect a symlink: its target, not followed', (h) => h.inspect('/etc/link')],
  ['inspect a FIFO: "other", never opened for reading', (h) => h.inspect('/etc/fifo')],
  ['inspect below a symlinked directory: refused', (h) => h.inspect('/etc/systemd/network/x')],
  ['inspect below a missing directory', (h) => h.inspect('/nope/x')],
  ['inspect below a file: refused', (h) => h.inspect('/etc/hostname/x')],
  ['stat of the symlinked directory is the link', async (h) => pickStat(await h.stat('/etc/systemd'))?.type],
  ['stat below it: refused', (h) => h.stat('/etc/systemd/x')],
  ['write below the symlinked directory: refused', (h) => h.writeFile('/etc/systemd/network/x', 'x', { mode: 0o644 })],
  ['symlink below it: refused', (h) => h.writeSymlink('/etc/systemd/x', '/y', {})],
  ['mkdir through it: refused', (h) => h.mkdir('/etc/systemd/a/b', { mode: 0o755 })],
  ['remove below it: refused', (h) => h.removeFile('/etc/systemd/x')],
  ['write over the FIFO: refused', (h) => h.writeFile('/etc/fifo', 'x', { mode: 0o644 })],
  ['write over a symlink replaces the link', async (h) => [await h.writeFile('/etc/link', 'mine\n', { mode: 0o640 }), entryOf(await h.inspect('/etc/link'))]],
  ['write a new file, directories made with dirMode', async (h) => [await h.writeFile('/a/b/c', 'c\n', { mode: 0o600, dirMode: 0o700 }), pickStat(await h.stat('/a')), pickStat(await h.stat('/a/b/c'))]],
  ['the same again: no write', (h) => h.writeFile('/a/b/c', 'c\n', { mode: 0o600 })],
  ['another mode: a write', (h) => h.writeFile('/a/b/c', 'c\n', { mode: 0o644 })],
  ['a symlink over a file', async (h) => [await h.writeSymlink('/etc/hostname', '/proc/self/root', {}), await h.inspect('/etc/hostname')]],
  ['the same symlink: no write', (h) => h.writeSymlink('/etc/hostname', '/proc/self/root', {})],
  ['write over a directory: refused', (h) => h.writeFile('/a/b', 'x', { mode: 0o644 })],
  ['remove a directory: refused', (h) => h.removeFile('/a')],
  ['remove the symlinked directory removes only the link', async (h) => [await h.removeFile('/etc/systemd'), await h.inspect('/etc/systemd')]],
  ['remove a missing file', (h) => h.removeFile('/etc/none')],
  ['listDir is sorted; a missing one is empty', async (h) => [await h.listDir('/etc'), await h.listDir('/none')]],
  ['removeEmptyDir of a non-empty one: false', (h) => h.removeEmptyDir('/a/b')],
  ['removeEmptyDir once empty: true', async (h) => [await h.removeFile('/a/b/c'), await h.removeEmptyDir('/a/b'), await h.listDir('/a')]],
  ['mkdir -p with a mode', async (h) => [await h.mkdir('/x/y', { mode: 0o750 }), pickStat(await h.stat('/x')), pickStat(await h.stat('/x/y'))]],
  ['".." is refused', (h) => h.inspect('/etc/../../outside')],
  ['the top', async (h) => pickStat(await h.top())],
];

describe('FakeRootfsHandle behaves like the real RootfsHandle', () => {
  let dir: string;
  let real: RootfsHandle;
  let fake: RootfsHandle;
  let fakeFs: FakeFs;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nspawnctl-rootfs-'));
    mkdirSync(join(dir, 'm/etc'), { recursive: true });
    chmodSync(join(dir, 'm'), 0o755);
    writeFileSync(join(dir, 'm/etc/hostname'), 'web\n');
    chmodSync(join(dir, 'm/etc/hostname'), 0o644);
    symlinkSync('/etc', join(dir, 'm/etc/link'));
    execFileSync('mkfifo', [join(dir, 'm/etc/fifo')]);
    symlinkSync('../../outside', join(dir, 'm/etc/systemd'));
    mkdirSync(join(dir, 'outside'));
    real = await createNodeFs(dir).openRootfs('/m');
    fakeFs = new FakeFs().addFile('/m/etc/hostname', 'web\n').addSymlink('/m/etc/link', '/etc').addFifo('/m/etc/fifo').addSymlink('/m/etc/systemd', '../../outside').addDir('/outside');
    fake = await fakeFs.openRootfs('/m');
  });
  afterAll(async () => {
    await real.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test.each(handleOps)('%s', async (_name, op) => {
    const expected = await outcome(() => op(real), dir);
    const actual = await outcome(() => op(fake));
    expect(actual).toEqual(expected);
  });

  test('nothing reached the directory outside', () => {
    expect(readdirSync(join(dir, 'outside'))).toEqual([]);
    expect(fakeFs.paths().filter((p) => p.startsWith('/outside/'))).toEqual([]);
  });
});

describe('FakeRunner', () => {
  test('records every call and answers in order, limited responses first', async () => {
    const host = new FakeHost();
    host.runner.on(['machinectl', 'show', 'web'], { stdout: 'running\n' }, 1).on(['machinectl', 'show', 'web'], { exitCode: 1 });
    expect((await host.runner.run('machinectl', ['show', 'web'])).stdout).toBe('running\n');
    expect((await host.runner.run('machinectl', ['show', 'web'], { allowFailure: true })).exitCode).toBe(1);
    expect(host.runner.calls).toEqual([
      { file: 'machinectl', args: ['show', 'web'], options: undefined },
      { file: 'machinectl', args: ['show', 'web'], options: { allowFailure: true } },
    ]);
  });

  test('a non-zero exit throws CommandFailedError unless allowFailure, like the real runner', async () => {
    const host = new FakeHost();
    host.runner.on(['false'], { exitCode: 3, stderr: 'boom\n' });
    await expect(host.runner.run('false', [])).rejects.toThrow(new CommandFailedError(['false'], 3, 'boom\n'));
  });

  test('an unscripted call fails loudly and is remembered', async () => {
    const host = new FakeHost();
    await expect(host.runner.run('rm', ['-rf', '/'])).rejects.toThrow('FakeRunner: unexpected command ["rm","-rf","/"]');
    expect(() => host.assertNoUnmatchedCalls()).toThrow('unscripted commands ran:\n  ["rm","-rf","/"]');
  });

  test('readInput reads only the in-memory inputs', async () => {
    const host = new FakeHost({ inputs: { 'm.yaml': 'x' } });
    await expect(host.readInput('m.yaml')).resolves.toBe('x');
    await expect(host.readInput('other.yaml')).rejects.toThrow('cannot read other.yaml: no such file');
    expect(host.uid).toBe(0);
    expect(new FakeHost({ uid: 1000 }).uid).toBe(1000);
  });
});

describe('FakeHttp', () => {
  test('records every HEAD with its proxy and timeout; unscripted URLs answer 200, scripted ones as told, in order', async () => {
    const host = new FakeHost();
    host.http.on('http://m/debian/dists/x/Release', { status: 404 }).on((u) => u.includes('/moved/'), { status: 301, location: '/debian/' }).on(() => true, { fail: 'connection refused' });
    await expect(host.http.head('http://m/debian/dists/x/Release', { timeoutMs: 5 })).resolves.toEqual({ status: 404 });
    await expect(host.http.head('http://m/moved/Release', { timeoutMs: 5, proxy: 'http://p:1' })).resolves.toEqual({ status: 301, location: '/debian/', via: 'http://p:1' });
    await expect(host.http.head('http://other/', { timeoutMs: 5, proxy: 'http://p:1' })).rejects.toThrow(new HttpError('http://other/', 'connection refused', 'http://p:1'));
    expect(host.http.calls).toEqual([
      { url: 'http://m/debian/dists/x/Release', timeoutMs: 5 },
      { url: 'http://m/moved/Release', proxy: 'http://p:1', timeoutMs: 5 },
      { url: 'http://other/', proxy: 'http://p:1', timeoutMs: 5 },
    ]);
    await expect(new FakeHost().http.head('http://any/', { timeoutMs: 1 })).resolves.toEqual({ status: 200 });
  });
});
