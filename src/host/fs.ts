// A filesystem rooted at a prefix: host-absolute paths are joined onto `root`, every write is
// atomic (temporary sibling, then rename) and skipped when the content is already equal. Paths
// inside a machine's root filesystem are refused here: they are reached only through a
// RootfsHandle (src/host/rootfs-handle.ts), which never follows a symlink.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp, statfsSync } from 'node:fs';
import { posix } from 'node:path';
import { CommandFailedError, NspawnctlError, PermissionDeniedError } from '../errors';
import { insideMachinePath, isWithin } from './paths';
import { openRootfsHandle, RootfsHandle } from './rootfs-handle';

export interface FileInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  size: number;
}

export interface WriteOptions {
  mode: number;
  uid?: number;
  gid?: number;
  /** Mode for directories created on the way. */
  dirMode?: number;
}

// The filesystem side of the Host seam; FakeFs in the tests implements the same interface.
export interface HostFs {
  readonly root: string;
  readText(path: string): Promise<string | undefined>;
  stat(path: string): Promise<FileInfo | undefined>;
  /**
   * Follows every symlink (realpath, then stat): where `path` finally leads and what is there;
   * undefined when nothing is (missing, or a dangling symlink). Reads no content.
   */
  statResolved(path: string): Promise<{ path: string; info: FileInfo } | undefined>;
  readLink(path: string): Promise<string | undefined>;
  listDir(path: string): Promise<string[]>;
  /** Returns true when something was written. */
  writeFile(path: string, content: string, options: WriteOptions): Promise<boolean>;
  /** Creates or retargets a symlink atomically; returns true when something changed. */
  writeSymlink(path: string, target: string, options: Omit<WriteOptions, 'mode'>): Promise<boolean>;
  /** Removes a file or symlink (never following it); returns false if it was not there. */
  removeFile(path: string): Promise<boolean>;
  /** Removes a directory tree without following symlinks or crossing into other filesystems. */
  removeTree(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** Creates a file only if nothing exists at `path`; returns false if something does. */
  createExclusive(path: string, content: string, mode: number): Promise<boolean>;
  /** mkdir -p. */
  mkdir(path: string, mode: number, options?: { uid?: number; gid?: number }): Promise<void>;
  /** Changes the owner of `path` itself (never what a symlink there points to). */
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** Opens a machine's root filesystem (or any tree nspawnctl must not follow symlinks in). */
  openRootfs(dir: string): Promise<RootfsHandle>;
  /**
   * Whether this process may write `path` (access(2) with W_OK), without writing it: 'read-only'
   * for a read-only mount (/proc/sys in a container), 'denied' when the kernel refuses it.
   */
  writeAccess(path: string): Promise<WriteAccess>;
}

export type WriteAccess = 'ok' | 'read-only' | 'denied' | 'missing';

/** Refuses a host path that lies inside a machine's root filesystem (see RootfsHandle). */
export function assertHostPath(path: string): void {
  if (insideMachinePath(path)) {
    throw new NspawnctlError(`internal: ${path} is inside a machine's root filesystem; it is reached only through its RootfsHandle`);
  }
}

/** The real filesystem under `root` ("/" on a host, a scratch directory for render). */
export function createNodeFs(root: string): HostFs {
  // Never with a trailing slash: "DIR/" makes lstat() and open(O_NOFOLLOW) follow DIR itself
  // when it is a symlink, which a filesystem rooted at DIR (render --out) must see as one.
  const real = (p: string) => {
    const joined = posix.join(root, p);
    return joined.length > 1 ? joined.replace(/\/+$/, '') : joined;
  };
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

  async function stat(path: string): Promise<FileInfo | undefined> {
    assertHostPath(path);
    try {
      const s = await fsp.lstat(real(path));
      const type = s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : 'other';
      return { type, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, mtimeMs: s.mtimeMs, size: s.size };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async function mkdirp(dir: string, mode: number, uid?: number, gid?: number): Promise<void> {
    if (posix.dirname(dir) === dir) {
      await fsp.mkdir(real(dir), { recursive: true, mode: 0o755 });
      return;
    }
    const info = await stat(dir);
    if (info) {
      if (info.type === 'dir') return;
      if (info.type === 'symlink') {
        const s = await fsp.stat(real(dir)).catch(() => undefined);
        if (s?.isDirectory()) return;
      }
      throw new NspawnctlError(`${dir} exists and is not a directory`);
    }
    await mkdirp(posix.dirname(dir), mode, uid, gid);
    await fsp.mkdir(real(dir), { mode }).catch((err) => {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    });
    if (isRoot && uid !== undefined) await fsp.lchown(real(dir), uid, gid ?? uid);
  }

  function tempSibling(path: string): string {
    return posix.join(posix.dirname(path), `.${posix.basename(path)}.nspawnctl-${randomBytes(4).toString('hex')}`);
  }

  const fs: HostFs = {
    root,
    async readText(path) {
      assertHostPath(path);
      try {
        return await fsp.readFile(real(path), 'utf8');
      } catch (err) {
        if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
        throw err;
      }
    },
    stat,
    async statResolved(path) {
      assertHostPath(path);
      // Wherever the path leads (even into a machine), only metadata is read: the caller refuses
      // a credential file that resolves into a machine.
      try {
        const resolved = await fsp.realpath(real(path));
        const s = await fsp.stat(resolved);
        const type = s.isFile() ? 'file' : s.isDirectory() ? 'dir' : 'other';
        // As a path under `root` when it stays there (always, for root "/").
        const shown = isWithin(resolved, root) ? posix.join('/', posix.relative(root, resolved)) : resolved;
        return { path: shown, info: { type, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, mtimeMs: s.mtimeMs, size: s.size } };
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw err;
      }
    },
    async readLink(path) {
      assertHostPath(path);
      try {
        return await fsp.readlink(real(path));
      } catch (err) {
        if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return undefined;
        throw err;
      }
    },
    async listDir(path) {
      assertHostPath(path);
      try {
        return (await fsp.readdir(real(path))).sort();
      } catch (err) {
        if (isMissing(err)) return [];
        throw err;
      }
    },
    async writeFile(path, content, options) {
      const info = await stat(path);
      if (info?.type === 'file') {
        const current = await fsp.readFile(real(path), 'utf8');
        const ownerOk = !isRoot || options.uid === undefined || (info.uid === options.uid && info.gid === (options.gid ?? options.uid));
        if (current === content && info.mode === options.mode && ownerOk) return false;
      } else if (info && info.type !== 'symlink') {
        throw new NspawnctlError(`refusing to replace ${path}: it is a ${info.type === 'dir' ? 'directory' : 'special file'}`);
      }
      await mkdirp(posix.dirname(path), options.dirMode ?? 0o755, options.uid, options.gid);
      const tmp = tempSibling(path);
      try {
        const handle = await fsp.open(real(tmp), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, options.mode);
        try {
          await handle.writeFile(content, 'utf8');
          await handle.chmod(options.mode);
          if (isRoot && options.uid !== undefined) await handle.chown(options.uid, options.gid ?? options.uid);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fsp.rename(real(tmp), real(path));
      } catch (err) {
        await fsp.rm(real(tmp), { force: true });
        throw err;
      }
      return true;
    },
    async writeSymlink(path, target, options) {
      const info = await stat(path);
      if (info?.type === 'symlink' && (await fsp.readlink(real(path))) === target) return false;
      if (info && info.type !== 'symlink' && info.type !== 'file') {
        throw new NspawnctlError(`refusing to replace ${path}: it is a directory or special file`);
      }
      await mkdirp(posix.dirname(path), options.dirMode ?? 0o755, options.uid, options.gid);
      const tmp = tempSibling(path);
      await fsp.symlink(target, real(tmp));
      try {
        if (isRoot && options.uid !== undefined) await fsp.lchown(real(tmp), options.uid, options.gid ?? options.uid);
        await fsp.rename(real(tmp), real(path));
      } catch (err) {
        await fsp.rm(real(tmp), { force: true });
        throw err;
      }
      return true;
    },
    async removeFile(path) {
      const info = await stat(path);
      if (!info) return false;
      if (info.type === 'dir') throw new NspawnctlError(`refusing to remove ${path}: it is a directory`);
      await fsp.unlink(real(path));
      return true;
    },
    async removeTree(path) {
      if (posix.normalize(path) === '/' || path === '') throw new NspawnctlError('refusing to remove /');
      assertHostPath(path);
      await removeWithRm(real(path), 0);
    },
    async rename(from, to) {
      assertHostPath(from);
      assertHostPath(to);
      await fsp.rename(real(from), real(to));
    },
    async mkdir(path, mode, options = {}) {
      await mkdirp(path, mode, options.uid, options.gid);
    },
    async chown(path, uid, gid) {
      assertHostPath(path);
      await fsp.lchown(real(path), uid, gid);
    },
    async openRootfs(dir) {
      assertHostPath(dir);
      return openRootfsHandle(real(dir));
    },
    async writeAccess(path) {
      assertHostPath(path);
      try {
        await fsp.access(real(path), constants.W_OK);
        return 'ok';
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (isMissing(err)) return 'missing';
        if (code === 'EROFS') return 'read-only';
        if (code === 'EACCES' || code === 'EPERM') return 'denied';
        throw err;
      }
    },
    async createExclusive(path, content, mode) {
      assertHostPath(path);
      await mkdirp(posix.dirname(path), 0o755);
      // Written whole to a temporary file, then hard-linked into place: link() fails if the
      // path exists, and a reader never sees the file half-written.
      const tmp = tempSibling(path);
      try {
        const handle = await fsp.open(real(tmp), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
        try {
          await handle.writeFile(content, 'utf8');
          await handle.chmod(mode);
        } finally {
          await handle.close();
        }
        await fsp.link(real(tmp), real(path));
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw err;
      } finally {
        await fsp.rm(real(tmp), { force: true });
      }
    },
  };
  return withPermissionErrors(fs, real, isRoot);
}

/**
 * The same filesystem, with the kernel's EACCES and EPERM turned into PermissionDeniedError
 * ("cannot read /var/lib/machines/web: permission denied"): every caller gets one typed error
 * it can tell apart from a missing file, and nothing else is caught or changed.
 */
function withPermissionErrors(fs: HostFs, real: (p: string) => string, asRoot: boolean): HostFs {
  const mapped = <A extends unknown[], R>(operation: string, method: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await method(...args);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e?.code !== 'EACCES' && e?.code !== 'EPERM') throw err;
        // The path the kernel refused (a parent of it may be what denied the search).
        const path = typeof e.path === 'string' ? e.path : typeof args[0] === 'string' ? real(args[0]) : fs.root;
        throw new PermissionDeniedError(operation, path, { code: e.code, asRoot, cause: err });
      }
    };
  return {
    root: fs.root,
    readText: mapped('read', fs.readText),
    stat: mapped('read', fs.stat),
    statResolved: mapped('read', fs.statResolved),
    readLink: mapped('read', fs.readLink),
    listDir: mapped('read', fs.listDir),
    writeFile: mapped('write', fs.writeFile),
    writeSymlink: mapped('write', fs.writeSymlink),
    removeFile: mapped('remove', fs.removeFile),
    removeTree: mapped('remove', fs.removeTree),
    rename: mapped('rename', fs.rename),
    createExclusive: mapped('create', fs.createExclusive),
    mkdir: mapped('create', fs.mkdir),
    chown: mapped('chown', fs.chown),
    openRootfs: mapped('open', fs.openRootfs),
    // Answers a refusal itself ('denied'): nothing to map.
    writeAccess: fs.writeAccess,
  };
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Removes a tree with GNU rm, which walks it relative to open directories without following
 * symlinks, copes with any depth, and with --one-file-system stays out of filesystems mounted
 * below. On btrfs a machine's root can create subvolumes, which rm skips as other devices: each
 * such subvolume inside the tree is removed the same way on its own (rm removes an emptied
 * subvolume), then the tree again.
 */
async function removeWithRm(dir: string, depth: number): Promise<void> {
  const argv = ['rm', '--recursive', '--force', '--one-file-system', '--', dir];
  const r = await execFileResult('/bin/rm', argv.slice(1));
  if (r.code === 0) return;
  // rm names itself as it was called ("/bin/rm: skipping ...").
  const skipped = [...r.stderr.matchAll(/^\S*rm: skipping '(.+)', since it's on a different device$/gm)].map((m) => m[1]);
  const subvolumes = skipped.filter((p) => isWithin(p, dir) && p !== dir && isBtrfs(p));
  if (subvolumes.length === 0 || depth >= 16) throw new CommandFailedError(argv, r.code, r.stderr);
  for (const sub of subvolumes) await removeWithRm(sub, depth + 1);
  const again = await execFileResult('/bin/rm', argv.slice(1));
  if (again.code !== 0) throw new CommandFailedError(argv, again.code, again.stderr);
}

/** Runs a program (argument array, no shell) and returns its exit code and stderr. */
function execFileResult(file: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    // LC_ALL=C: its messages are read (rm's "skipping ..."), so they must not be translated.
    execFile(file, args, { maxBuffer: 4 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stderr: String(stderr) });
    });
  });
}

/** True when `path` is on a btrfs filesystem (statfs magic 0x9123683e). */
function isBtrfs(path: string): boolean {
  try {
    return statfsSync(path).type === 0x9123683e;
  } catch {
    return false;
  }
}
