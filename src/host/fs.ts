// A filesystem rooted at a prefix: host-absolute paths are joined onto `root`, every write is
// atomic (temporary sibling, then rename) and skipped when the content is already equal.
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { posix } from 'node:path';
import { NspawnctlError } from '../errors';
import { isWithin } from './paths';

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
  /** Refuse the write if the parent directory resolves (through symlinks) outside this dir. */
  confineTo?: string;
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
  removeFile(path: string, options?: { confineTo?: string }): Promise<boolean>;
  /** Removes a directory tree without following symlinks. */
  removeTree(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** Creates a file only if nothing exists at `path`; returns false if something does. */
  createExclusive(path: string, content: string, mode: number): Promise<boolean>;
  /** mkdir -p; with `confineTo`, refuses when the path resolves outside that directory. */
  mkdir(path: string, mode: number, options?: { uid?: number; gid?: number; confineTo?: string }): Promise<void>;
}

/** The real filesystem under `root` ("/" on a host, a scratch directory for render). */
export function createNodeFs(root: string): HostFs {
  const real = (p: string) => posix.join(root, p);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

  async function stat(path: string): Promise<FileInfo | undefined> {
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

  async function checkConfined(path: string, confineTo: string | undefined): Promise<void> {
    if (!confineTo) return;
    const base = await fsp.realpath(real(confineTo));
    const parent = await fsp.realpath(real(posix.dirname(path)));
    if (!isWithin(parent, base)) {
      throw new NspawnctlError(`refusing to write ${path}: its directory resolves to ${parent}, outside ${confineTo}`, {
        hint: 'A symlink inside the machine points out of its root filesystem; remove it or fix the path.',
      });
    }
  }

  function tempSibling(path: string): string {
    return posix.join(posix.dirname(path), `.${posix.basename(path)}.nspawnctl-${randomBytes(4).toString('hex')}`);
  }

  return {
    root,
    async readText(path) {
      try {
        return await fsp.readFile(real(path), 'utf8');
      } catch (err) {
        if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
        throw err;
      }
    },
    stat,
    async statResolved(path) {
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
      try {
        return await fsp.readlink(real(path));
      } catch (err) {
        if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return undefined;
        throw err;
      }
    },
    async listDir(path) {
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
      await checkConfined(path, options.confineTo);
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
      await checkConfined(path, options.confineTo);
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
    async removeFile(path, options = {}) {
      const info = await stat(path);
      if (!info) return false;
      await checkConfined(path, options.confineTo);
      if (info.type === 'dir') throw new NspawnctlError(`refusing to remove ${path}: it is a directory`);
      await fsp.unlink(real(path));
      return true;
    },
    async removeTree(path) {
      if (posix.normalize(path) === '/' || path === '') throw new NspawnctlError('refusing to remove /');
      await fsp.rm(real(path), { recursive: true, force: true });
    },
    async rename(from, to) {
      await fsp.rename(real(from), real(to));
    },
    async mkdir(path, mode, options = {}) {
      if (options.confineTo) {
        await mkdirp(posix.dirname(path), mode, options.uid, options.gid);
        await checkConfined(path, options.confineTo);
      }
      await mkdirp(path, mode, options.uid, options.gid);
    },
    async createExclusive(path, content, mode) {
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
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
