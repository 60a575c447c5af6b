// The RootfsHandle: the one way into a machine's root filesystem. The real one is tested on a
// temporary directory (no root needed), including a real symlink race run by perl's renameat2
// (RENAME_EXCHANGE), and the fake one must behave the same for every operation.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { NspawnctlError, UnsafePathError } from '../../src/errors';
import { createNodeFs } from '../../src/host/fs';
import { MAX_ROOTFS_READ, openRootfsHandle, RootfsHandle } from '../../src/host/rootfs-handle';
import { FakeFs } from '../helpers/fake-host';

/** A scratch directory removed after each test. */
function scratch(): string {
  return mkdtempSync(join(tmpdir(), 'nspawnctl-rootfs-'));
}

function mkfifo(path: string): void {
  const r = spawnSync('mkfifo', [path]);
  if (r.status !== 0) throw new Error(`mkfifo ${path} failed: ${r.stderr}`);
}

/** The result, or the error class and message (`root` cut out of the message). */
async function outcome(fn: () => Promise<unknown>, root = ''): Promise<unknown> {
  try {
    return { ok: await fn() };
  } catch (err) {
    if (err instanceof NspawnctlError) return { error: err.constructor.name, message: root ? err.message.split(root).join('') : err.message };
    return { error: (err as NodeJS.ErrnoException).code ?? String(err) };
  }
}

// Each step builds on the ones before. The tree is /tree; /outside stands for the host. Symlink
// targets are relative, so the real one (in a temporary directory) points where the fake does.
type Op = [string, (h: RootfsHandle) => Promise<unknown>];
const ops: Op[] = [
  ['top of the tree', async (h) => (await h.top()).type],
  ['write a file, directories made', (h) => h.writeFile('/etc/app/app.conf', 'one\n', { mode: 0o640 })],
  ['read it back', (h) => h.inspect('/etc/app/app.conf').then((e) => e && e.type === 'file' && [e.content, e.mode])],
  ['same content and mode: nothing written', (h) => h.writeFile('/etc/app/app.conf', 'one\n', { mode: 0o640 })],
  ['other mode: written', (h) => h.writeFile('/etc/app/app.conf', 'one\n', { mode: 0o600 })],
  ['stat of a dir', async (h) => (await h.stat('/etc/app'))?.type],
  ['stat of a missing path', (h) => h.stat('/etc/none/x')],
  ['inspect of a missing path', (h) => h.inspect('/etc/none/x')],
  ['a symlink as directory on the way: write refused', (h) => h.writeFile('/etc/escape/app.conf', 'x', { mode: 0o644 })],
  ['a symlink on the way: read refused', (h) => h.inspect('/etc/escape/secret')],
  ['a symlink on the way: stat refused', (h) => h.stat('/etc/escape/secret')],
  ['a symlink on the way: remove refused', (h) => h.removeFile('/etc/escape/secret')],
  ['a symlink on the way: mkdir refused', (h) => h.mkdir('/etc/escape/d', { mode: 0o755 })],
  ['a symlink on the way: listDir refused', (h) => h.listDir('/etc/escape')],
  ['a file on the way: refused', (h) => h.writeFile('/etc/app/app.conf/x', 'x', { mode: 0o644 })],
  ['the symlink itself is seen, not followed', (h) => h.inspect('/etc/escape')],
  ['a FIFO is "other" and never read', (h) => h.inspect('/etc/hostname')],
  ['writing over a FIFO is refused', (h) => h.writeFile('/etc/hostname', 'web\n', { mode: 0o644 })],
  ['writing over a directory is refused', (h) => h.writeFile('/etc/app', 'x', { mode: 0o644 })],
  ['writing a file where a symlink is replaces the symlink', (h) => h.writeFile('/etc/link-to-secret', 'mine\n', { mode: 0o644 })],
  ['a symlink is written and retargeted', async (h) => [await h.writeSymlink('/etc/l', 'a', {}), await h.writeSymlink('/etc/l', 'a', {}), await h.writeSymlink('/etc/l', 'b', {}), await h.inspect('/etc/l')]],
  ['removing a symlink removes only the link', (h) => h.removeFile('/etc/l')],
  ['removing a directory is refused', (h) => h.removeFile('/etc/app')],
  ['removing a missing file', (h) => h.removeFile('/etc/app/none')],
  ['mkdir -p with a mode', async (h) => [await h.mkdir('/srv/data/x', { mode: 0o700 }), (await h.stat('/srv/data/x'))?.mode]],
  ['listDir is sorted', (h) => h.listDir('/etc')],
  ['removeEmptyDir: not empty, empty, missing', async (h) => [await h.removeEmptyDir('/srv/data'), await h.removeEmptyDir('/srv/data/x'), await h.removeEmptyDir('/srv/none')]],
  ['a file larger than the cap is refused', (h) => h.inspect('/var/big')],
  ['"..", "." and empty names are refused', async (h) => [await outcome(() => h.inspect('/etc/../x')), await outcome(() => h.writeFile('/etc/./x', '', { mode: 0o644 })), await outcome(() => h.stat('/etc//x'))]],
];

/** The outside directory (the "host") after the steps: it must be exactly as seeded. */
const OUTSIDE = { secret: 'host secret\n' };

describe('RootfsHandle: the fake behaves like the real one', () => {
  let dir: string;
  let real: RootfsHandle;
  let fake: RootfsHandle;
  let fakeFs: FakeFs;

  beforeAll(async () => {
    dir = scratch();
    mkdirSync(join(dir, 'outside'));
    writeFileSync(join(dir, 'outside/secret'), OUTSIDE.secret);
    mkdirSync(join(dir, 'tree/etc'), { recursive: true });
    mkdirSync(join(dir, 'tree/var'), { recursive: true });
    symlinkSync('../../outside', join(dir, 'tree/etc/escape'));
    symlinkSync('../../outside/secret', join(dir, 'tree/etc/link-to-secret'));
    mkfifo(join(dir, 'tree/etc/hostname'));
    writeFileSync(join(dir, 'tree/var/big'), 'x'.repeat(MAX_ROOTFS_READ + 1));
    real = await createNodeFs(dir).openRootfs('/tree');

    fakeFs = new FakeFs();
    fakeFs.addFile('/outside/secret', OUTSIDE.secret).addDir('/tree/etc').addDir('/tree/var');
    fakeFs.addSymlink('/tree/etc/escape', '../../outside').addSymlink('/tree/etc/link-to-secret', '../../outside/secret');
    fakeFs.addFifo('/tree/etc/hostname').addFile('/tree/var/big', 'x'.repeat(MAX_ROOTFS_READ + 1));
    fake = await fakeFs.openRootfs('/tree');
  });

  afterAll(async () => {
    await real.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test.each(ops)('%s', async (_name, op) => {
    const expected = await outcome(() => op(real), dir);
    expect(await outcome(() => op(fake))).toEqual(expected);
  });

  test('after every step, the outside directory is untouched in both', async () => {
    expect(readdirSync(join(dir, 'outside'))).toEqual(['secret']);
    expect(readFileSync(join(dir, 'outside/secret'), 'utf8')).toBe(OUTSIDE.secret);
    expect([...fakeFs.nodes.keys()].filter((k) => k.startsWith('/outside'))).toEqual(['/outside', '/outside/secret']);
    expect(await fakeFs.readText('/outside/secret')).toBe(OUTSIDE.secret);
  });
});

describe('RootfsHandle on a real directory', () => {
  let dir: string;
  beforeEach(() => {
    dir = scratch();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('the tree itself must be a directory, not a symlink to one', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync('real', join(dir, 'link'));
    expect(() => openRootfsHandle(join(dir, 'link'))).toThrow(UnsafePathError);
    expect(() => openRootfsHandle(join(dir, 'link'))).toThrow(`${join(dir, 'link')} is not a directory (or is a symlink)`);
  });

  test('a symlink to /dev/zero is seen as a symlink and never read', async () => {
    mkdirSync(join(dir, 'tree/etc'), { recursive: true });
    symlinkSync('/dev/zero', join(dir, 'tree/etc/hostname'));
    const h = openRootfsHandle(join(dir, 'tree'));
    expect(await h.inspect('/etc/hostname')).toEqual({ type: 'symlink', target: '/dev/zero' });
    await h.close();
  });

  test('writes are atomic renames of an O_EXCL temporary file, which is gone afterwards', async () => {
    mkdirSync(join(dir, 'tree'));
    const h = openRootfsHandle(join(dir, 'tree'));
    await h.writeFile('/etc/a', 'a\n', { mode: 0o600 });
    await h.writeFile('/etc/a', 'b\n', { mode: 0o644 });
    expect(readdirSync(join(dir, 'tree/etc'))).toEqual(['a']);
    expect(lstatSync(join(dir, 'tree/etc/a')).mode & 0o7777).toBe(0o644);
    expect(readFileSync(join(dir, 'tree/etc/a'), 'utf8')).toBe('b\n');
    await h.close();
  });

  test('a directory renamed away after the handle opened it is still the one written into', async () => {
    mkdirSync(join(dir, 'tree/etc'), { recursive: true });
    mkdirSync(join(dir, 'outside'));
    const h = openRootfsHandle(join(dir, 'tree'));
    // The top of the tree is what the handle holds: moving it and putting a symlink in its place
    // does not redirect the handle.
    renameSync(join(dir, 'tree'), join(dir, 'moved'));
    symlinkSync('outside', join(dir, 'tree'));
    await h.writeFile('/etc/x', 'x\n', { mode: 0o644 });
    expect(readdirSync(join(dir, 'outside'))).toEqual([]);
    expect(readFileSync(join(dir, 'moved/etc/x'), 'utf8')).toBe('x\n');
    await h.close();
  });
});

/**
 * A machine's root can take a write lease on a file it owns (no capability needed): opening it
 * then fails with EAGAIN (O_NONBLOCK) instead of blocking. That must be this entry's problem,
 * reported as an UnsafePathError, not an error that stops a whole plan.
 */
describe('RootfsHandle and a file a machine holds a lease on', () => {
  let dir: string;
  let holder: ReturnType<typeof spawn> | undefined;
  afterEach(() => {
    holder?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  test('inspect reports it as unusable at once, and the next entry is read as usual', async () => {
    dir = realpathSync(scratch());
    mkdirSync(join(dir, 'tree/etc'), { recursive: true });
    writeFileSync(join(dir, 'tree/etc/hostname'), 'web\n');
    writeFileSync(join(dir, 'tree/etc/motd'), 'hello\n');
    // F_SETLEASE is 1024, F_WRLCK 1.
    holder = spawn('/usr/bin/perl', ['-e', 'open(my $fh, "<", $ARGV[0]) or die; fcntl($fh, 1024, 1) or die "lease: $!"; $| = 1; print "leased\n"; sleep 600', join(dir, 'tree/etc/hostname')], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      holder!.stdout!.once('data', () => resolve());
      holder!.once('exit', (code) => reject(new Error(`perl exited with ${code}`)));
    });
    const h = openRootfsHandle(join(dir, 'tree'));
    const err = await h.inspect('/etc/hostname').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafePathError);
    expect((err as Error).message).toBe(`${join(dir, 'tree/etc/hostname')} could not be opened or read (EAGAIN): nspawnctl will not follow or use it`);
    expect(await h.inspect('/etc/motd')).toMatchObject({ type: 'file', content: 'hello\n' });
    await h.close();
  });
});

/**
 * A real race: perl exchanges a directory of the tree with a symlink to an outside directory in a
 * tight loop (renameat2 with RENAME_EXCHANGE, as a machine's root could), while files are written
 * and removed in that directory. With the handle, every operation either lands in the tree's own
 * directory or is refused; the outside directory is never touched. The same loop against the
 * path-based write nspawnctl used before (realpath check, then write by path) does escape, which
 * shows the race is real and the test can fail.
 */
describe('RootfsHandle against a live symlink-exchange race', () => {
  const PERL = '/usr/bin/perl';
  let dir: string;
  let racer: ReturnType<typeof spawn> | undefined;

  beforeEach(async () => {
    dir = realpathSync(scratch());
    mkdirSync(join(dir, 'tree/etc/app'), { recursive: true });
    mkdirSync(join(dir, 'outside'));
    writeFileSync(join(dir, 'outside/app.conf'), 'host\n');
    symlinkSync(join(dir, 'outside'), join(dir, 'tree/etc/app-swap'));
    // 316 is renameat2 on x86_64, -100 is AT_FDCWD, 2 is RENAME_EXCHANGE.
    // (perl's syscall() wants writable strings, hence the variables.)
    const script = 'chdir $ARGV[0] or die; my ($x, $y) = ("tree/etc/app", "tree/etc/app-swap"); $| = 1; print "go\\n"; while (1) { syscall(316, -100, $x, -100, $y, 2) == 0 or die "renameat2: $!"; }';
    racer = spawn(PERL, ['-e', script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    // Wait for the racer's own signal that it runs, not for a guessed time.
    await new Promise<void>((resolve, reject) => {
      racer!.stdout!.once('data', () => resolve());
      racer!.once('exit', (code) => reject(new Error(`perl racer exited with ${code}`)));
    });
  });

  afterEach(() => {
    racer?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const outsideUntouched = () => {
    expect(readdirSync(join(dir, 'outside'))).toEqual(['app.conf']);
    expect(readFileSync(join(dir, 'outside/app.conf'), 'utf8')).toBe('host\n');
  };

  test('writes and removals through the handle never reach the outside directory', async () => {
    expect(process.arch).toBe('x64');
    const h = openRootfsHandle(join(dir, 'tree'));
    let written = 0;
    let refused = 0;
    let removed = 0;
    // Until both outcomes were seen many times (so the race was live), bounded by a count.
    for (let i = 0; i < 200_000 && (written < 200 || refused < 200); i++) {
      try {
        if (i % 3 === 2) {
          if (await h.removeFile('/etc/app/app.conf')) removed++;
        } else if (await h.writeFile('/etc/app/app.conf', `machine ${i}\n`, { mode: 0o644 })) {
          written++;
        }
      } catch (err) {
        if (!(err instanceof UnsafePathError)) throw err;
        refused++;
      }
    }
    await h.close();
    expect({ written: written >= 200, refused: refused >= 200, removed: removed > 0 }).toEqual({ written: true, refused: true, removed: true });
    outsideUntouched();
  }, 120_000);

  test('control: the old path-based write (realpath check, then write by path) does escape', () => {
    const target = join(dir, 'tree/etc/app/app.conf');
    let escaped = false;
    for (let i = 0; i < 200_000 && !escaped; i++) {
      try {
        const parent = realpathSync(dirname(target));
        if (!parent.startsWith(`${join(dir, 'tree')}/`)) continue;
        writeFileSync(target, 'from the machine manifest\n');
      } catch {
        // ENOENT and friends while the names swap
      }
      escaped = readFileSync(join(dir, 'outside/app.conf'), 'utf8') !== 'host\n';
    }
    expect(escaped).toBe(true);
    expect(existsSync(join(dir, 'outside/app.conf'))).toBe(true);
  }, 120_000);
});
