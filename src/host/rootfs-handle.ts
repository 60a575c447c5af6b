// The one way into a machine's root filesystem. Once a machine has booted, its root can turn
// any directory of its tree into a symlink to a host path at any moment (even between two
// system calls of ours). So nothing here ever resolves a path inside the tree from the host's
// root: the tree's top directory is opened once, and every step below it is taken relative to
// the file descriptor of the directory opened before, with O_NOFOLLOW, the way systemd's chase()
// does with openat(). Node has no openat(), but "/proc/self/fd/N/NAME" is resolved by the kernel
// in the directory that descriptor N holds (the magic link jumps to the open directory itself,
// wherever it is now), and only NAME is looked up below it; a symlink there is never followed
// because the last component is opened with O_NOFOLLOW, and rename/unlink/rmdir/lstat/readlink
// never follow their last component. Non-regular files are recognised before they are opened
// for reading (O_PATH, then fstat), so a FIFO or device never blocks or triggers anything, and
// reads are size-capped.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  renameSync,
  rmdirSync,
  Stats,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { posix } from 'node:path';
import { NspawnctlError, UnsafePathError } from '../errors';
import type { FileInfo } from './fs';

/** O_PATH is not in fs.constants; this is its value on Linux x86_64, arm64, armhf, ppc64el, s390x and riscv64. */
const O_PATH = 0o10000000;
const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NOCTTY, O_NONBLOCK } = constants;

/** Reads inside a rootfs stop here: nspawnctl's own files are small. */
export const MAX_ROOTFS_READ = 1024 * 1024;

/** What a path inside a rootfs holds, read without following anything. */
export type RootfsEntryState =
  | { type: 'file'; content: string; mode: number; uid: number; gid: number }
  | { type: 'symlink'; target: string }
  | { type: 'dir' | 'other' };

export interface RootfsWriteOptions {
  mode: number;
  uid?: number;
  gid?: number;
  /** Mode of directories created on the way (0755 by default). */
  dirMode?: number;
}

// Everything nspawnctl does inside a rootfs goes through one of these. Paths are the machine's
// own ("/etc/hostname"); "." and ".." are refused.
export interface RootfsHandle {
  /** The host path of the tree's top directory, for messages. */
  readonly path: string;
  /** Owner and mode of the top directory itself. */
  top(): Promise<FileInfo>;
  /** lstat of the path; undefined when it (or a directory on the way) is missing. */
  stat(path: string): Promise<FileInfo | undefined>;
  /** The entry at the path, a regular file read up to `maxBytes` (a larger one is refused). */
  inspect(path: string, maxBytes?: number): Promise<RootfsEntryState | undefined>;
  /** Writes a regular file atomically (temporary file created O_EXCL, then renamed); true when something changed. */
  writeFile(path: string, content: string, options: RootfsWriteOptions): Promise<boolean>;
  /** Creates or retargets a symlink atomically; true when something changed. */
  writeSymlink(path: string, target: string, options: Omit<RootfsWriteOptions, 'mode'>): Promise<boolean>;
  /** Removes a file or symlink (never a directory); false when it was not there. */
  removeFile(path: string): Promise<boolean>;
  /** mkdir -p, each directory created inside the one opened before it. */
  mkdir(path: string, options: Omit<RootfsWriteOptions, 'mode'> & { mode: number }): Promise<void>;
  /** Names in a directory, sorted; [] when it is missing. */
  listDir(path: string): Promise<string[]>;
  /** Removes an empty directory; false when it is missing or not empty. */
  removeEmptyDir(path: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Splits a machine path into its names; refuses anything that is not a plain absolute path. */
export function rootfsPathParts(path: string): string[] {
  if (path === '/' || path === '') return [];
  const parts = path.replace(/^\//, '').split('/');
  for (const p of parts) {
    if (p === '' || p === '.' || p === '..' || p.includes('\0')) {
      throw new NspawnctlError(`internal: ${JSON.stringify(path)} is not a plain path inside a root filesystem`);
    }
  }
  return parts;
}

/** The name `name` in the directory that descriptor `fd` holds, as a path the kernel resolves there. */
function at(fd: number, name: string): string {
  return `/proc/self/fd/${fd}/${name}`;
}

function infoOf(s: Stats): FileInfo {
  const type = s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : 'other';
  return { type, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, mtimeMs: s.mtimeMs, size: s.size };
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/**
 * Opens `dir` (a host path; its last component must be a real directory, not a symlink) as a
 * rootfs handle. Checks once that /proc resolves descriptors as this module needs.
 */
export function openRootfsHandle(dir: string): RootfsHandle {
  let rootFd: number;
  try {
    rootFd = openSync(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOTDIR' || code === 'ELOOP') throw new UnsafePathError(dir, 'is not a directory (or is a symlink)');
    throw err;
  }
  try {
    const viaProc = lstatSync(`/proc/self/fd/${rootFd}/.`);
    const direct = fstatSync(rootFd);
    if (viaProc.ino !== direct.ino || viaProc.dev !== direct.dev) throw new Error('inode mismatch');
  } catch (err) {
    closeSync(rootFd);
    throw new NspawnctlError(`cannot work inside ${dir} safely: /proc/self/fd does not resolve directory descriptors here (${(err as Error).message})`, {
      hint: 'nspawnctl needs /proc mounted (without hidepid restrictions for root).',
    });
  }
  return new RealRootfsHandle(dir, rootFd);
}

class RealRootfsHandle implements RootfsHandle {
  private closed = false;
  private readonly isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

  constructor(
    readonly path: string,
    private readonly rootFd: number,
  ) {}

  private hostPath(parts: string[]): string {
    return posix.join(this.path, ...parts);
  }

  /**
   * Opens the directory at `parts` step by step, each step relative to the last. Missing
   * directories are created (inside the one already open) when `create` is given, else the
   * result is undefined. A symlink or non-directory on the way is refused.
   */
  private openDir(parts: string[], create?: { mode: number; uid?: number; gid?: number }): number | undefined {
    if (this.closed) throw new NspawnctlError(`internal: the handle of ${this.path} is closed`);
    let fd = this.rootFd;
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i];
      let next: number | undefined;
      for (let attempt = 0; next === undefined; attempt++) {
        try {
          next = openSync(at(fd, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        } catch (err) {
          const code = errno(err);
          if (code === 'ENOENT' && create && attempt < 3) {
            try {
              mkdirSync(at(fd, name), create.mode);
            } catch (mkErr) {
              if (errno(mkErr) !== 'EEXIST') {
                if (fd !== this.rootFd) closeSync(fd);
                throw mkErr;
              }
            }
            try {
              // Opened again with O_NOFOLLOW: if the new directory was swapped for a symlink in
              // between, this fails and nothing is changed through it.
              next = openSync(at(fd, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            } catch {
              continue;
            }
            if (this.isRoot && create.uid !== undefined) fchownSync(next, create.uid, create.gid ?? create.uid);
            fchmodSync(next, create.mode);
            break;
          }
          if (fd !== this.rootFd) closeSync(fd);
          if (code === 'ENOENT' && !create) return undefined;
          if (code === 'ENOTDIR' || code === 'ELOOP') {
            const what = this.describeNonDir(parts.slice(0, i + 1));
            throw new UnsafePathError(this.hostPath(parts.slice(0, i + 1)), what);
          }
          throw err;
        }
      }
      if (fd !== this.rootFd) closeSync(fd);
      fd = next;
    }
    return fd;
  }

  private describeNonDir(parts: string[]): string {
    try {
      const s = this.lstatParts(parts);
      if (s?.isSymbolicLink()) return 'is a symlink';
    } catch {
      // fall through
    }
    return 'is not a directory';
  }

  /** lstat through the parent's descriptor; undefined when missing. */
  private lstatParts(parts: string[]): Stats | undefined {
    const dir = this.openDir(parts.slice(0, -1));
    if (dir === undefined) return undefined;
    try {
      return lstatSync(parts.length === 0 ? `/proc/self/fd/${dir}/.` : at(dir, parts[parts.length - 1]));
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    } finally {
      this.release(dir);
    }
  }

  /** An entry that could not be opened or read (a lease, a lock, a swap in between). */
  private cannotUse(parts: string[], err: unknown): UnsafePathError {
    return new UnsafePathError(this.hostPath(parts), `could not be opened or read (${errno(err) ?? (err as Error).message})`);
  }

  private release(fd: number): void {
    if (fd !== this.rootFd) closeSync(fd);
  }

  async top(): Promise<FileInfo> {
    return infoOf(fstatSync(this.rootFd));
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    const s = this.lstatParts(rootfsPathParts(path));
    return s ? infoOf(s) : undefined;
  }

  async inspect(path: string, maxBytes = MAX_ROOTFS_READ): Promise<RootfsEntryState | undefined> {
    const parts = rootfsPathParts(path);
    if (parts.length === 0) return { type: 'dir' };
    const dir = this.openDir(parts.slice(0, -1));
    if (dir === undefined) return undefined;
    try {
      return this.inspectAt(dir, parts, maxBytes);
    } finally {
      this.release(dir);
    }
  }

  private inspectAt(dir: number, parts: string[], maxBytes: number): RootfsEntryState | undefined {
    const name = parts[parts.length - 1];
    let pathFd: number;
    try {
      // O_PATH opens the entry itself, whatever it is, without reading or following it.
      pathFd = openSync(at(dir, name), O_PATH | O_NOFOLLOW);
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw this.cannotUse(parts, err);
    }
    try {
      const s = fstatSync(pathFd);
      if (s.isSymbolicLink()) {
        try {
          return { type: 'symlink', target: readlinkSync(at(dir, name)) };
        } catch {
          return { type: 'other' };
        }
      }
      if (s.isDirectory()) return { type: 'dir' };
      if (!s.isFile()) return { type: 'other' };
      if (s.size > maxBytes) throw new UnsafePathError(this.hostPath(parts), `is larger than ${maxBytes} bytes`);
      // Reopened through the O_PATH descriptor: the very file that was checked, now for reading.
      // The machine may hold a lease or a lock on it, or swap it meanwhile: any failure here is
      // this entry's (and so this machine's) problem, never a whole run's.
      let fd: number;
      try {
        fd = openSync(`/proc/self/fd/${pathFd}`, O_RDONLY | O_NOCTTY | O_NONBLOCK);
      } catch (err) {
        throw this.cannotUse(parts, err);
      }
      try {
        const buf = Buffer.alloc(Math.min(s.size, maxBytes) + 1);
        let n = 0;
        for (;;) {
          let r: number;
          try {
            r = readSync(fd, buf, n, buf.length - n, null);
          } catch (err) {
            throw this.cannotUse(parts, err);
          }
          if (r === 0) break;
          n += r;
          if (n === buf.length) break;
        }
        if (n > maxBytes) throw new UnsafePathError(this.hostPath(parts), `is larger than ${maxBytes} bytes`);
        return { type: 'file', content: buf.subarray(0, n).toString('utf8'), mode: s.mode & 0o7777, uid: s.uid, gid: s.gid };
      } finally {
        closeSync(fd);
      }
    } finally {
      closeSync(pathFd);
    }
  }

  async writeFile(path: string, content: string, options: RootfsWriteOptions): Promise<boolean> {
    const parts = rootfsPathParts(path);
    if (parts.length === 0) throw new NspawnctlError(`internal: cannot write the top of ${this.path}`);
    const name = parts[parts.length - 1];
    const dir = this.openDir(parts.slice(0, -1), { mode: options.dirMode ?? 0o755, uid: options.uid, gid: options.gid });
    if (dir === undefined) throw new NspawnctlError(`internal: ${this.path} vanished`);
    try {
      const current = this.inspectAt(dir, parts, Math.max(MAX_ROOTFS_READ, Buffer.byteLength(content)));
      const uid = options.uid;
      const gid = options.gid ?? uid;
      if (current?.type === 'file') {
        const ownerOk = !this.isRoot || uid === undefined || (current.uid === uid && current.gid === gid);
        if (current.content === content && current.mode === options.mode && ownerOk) return false;
      } else if (current && current.type !== 'symlink') {
        throw new UnsafePathError(this.hostPath(parts), current.type === 'dir' ? 'is a directory' : 'is a special file (FIFO, socket or device)');
      }
      replaceWith(dir, name, (tmp) => {
        const fd = openSync(at(dir, tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
        try {
          const bytes = Buffer.from(content, 'utf8');
          for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
          if (this.isRoot && uid !== undefined) fchownSync(fd, uid, gid ?? uid);
          fchmodSync(fd, options.mode);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      });
      return true;
    } finally {
      this.release(dir);
    }
  }

  async writeSymlink(path: string, target: string, options: Omit<RootfsWriteOptions, 'mode'>): Promise<boolean> {
    const parts = rootfsPathParts(path);
    if (parts.length === 0) throw new NspawnctlError(`internal: cannot write the top of ${this.path}`);
    const name = parts[parts.length - 1];
    const dir = this.openDir(parts.slice(0, -1), { mode: options.dirMode ?? 0o755, uid: options.uid, gid: options.gid });
    if (dir === undefined) throw new NspawnctlError(`internal: ${this.path} vanished`);
    try {
      const current = this.inspectAt(dir, parts, MAX_ROOTFS_READ);
      if (current?.type === 'symlink' && current.target === target) return false;
      if (current && current.type !== 'symlink' && current.type !== 'file') {
        throw new UnsafePathError(this.hostPath(parts), current.type === 'dir' ? 'is a directory' : 'is a special file (FIFO, socket or device)');
      }
      replaceWith(dir, name, (tmp) => {
        symlinkSync(target, at(dir, tmp));
        if (this.isRoot && options.uid !== undefined) lchownSync(at(dir, tmp), options.uid, options.gid ?? options.uid);
      });
      return true;
    } finally {
      this.release(dir);
    }
  }

  async removeFile(path: string): Promise<boolean> {
    const parts = rootfsPathParts(path);
    if (parts.length === 0) throw new NspawnctlError(`internal: cannot remove the top of ${this.path}`);
    const dir = this.openDir(parts.slice(0, -1));
    if (dir === undefined) return false;
    try {
      try {
        // unlink() never follows its last component and refuses directories (EISDIR).
        unlinkSync(at(dir, parts[parts.length - 1]));
        return true;
      } catch (err) {
        const code = errno(err);
        if (code === 'ENOENT') return false;
        if (code === 'EISDIR' || code === 'EPERM') throw new UnsafePathError(this.hostPath(parts), 'is a directory, not a file nspawnctl wrote');
        throw err;
      }
    } finally {
      this.release(dir);
    }
  }

  async mkdir(path: string, options: Omit<RootfsWriteOptions, 'mode'> & { mode: number }): Promise<void> {
    const dir = this.openDir(rootfsPathParts(path), { mode: options.mode, uid: options.uid, gid: options.gid });
    if (dir !== undefined) this.release(dir);
  }

  async listDir(path: string): Promise<string[]> {
    const dir = this.openDir(rootfsPathParts(path));
    if (dir === undefined) return [];
    try {
      return readdirSync(`/proc/self/fd/${dir}`).sort();
    } finally {
      this.release(dir);
    }
  }

  async removeEmptyDir(path: string): Promise<boolean> {
    const parts = rootfsPathParts(path);
    if (parts.length === 0) throw new NspawnctlError(`internal: cannot remove the top of ${this.path}`);
    const dir = this.openDir(parts.slice(0, -1));
    if (dir === undefined) return false;
    try {
      // rmdir() never follows its last component; a symlink there fails with ENOTDIR.
      rmdirSync(at(dir, parts[parts.length - 1]));
      return true;
    } catch (err) {
      if (['ENOENT', 'ENOTEMPTY', 'EEXIST', 'ENOTDIR'].includes(errno(err) ?? '')) return false;
      throw err;
    } finally {
      this.release(dir);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.rootFd);
  }
}

/**
 * Makes a new entry under a temporary name in the directory `dir` holds (`make` creates it
 * there), then renames it over `name`. rename() never follows its last component: whatever is
 * at `name`, a symlink included, is replaced, never written through. On a failure the temporary
 * entry is removed.
 */
function replaceWith(dir: number, name: string, make: (tmp: string) => void): void {
  const tmp = `.${name.slice(0, 200)}.nspawnctl-${randomBytes(6).toString('hex')}`;
  try {
    make(tmp);
    renameSync(at(dir, tmp), at(dir, name));
  } catch (err) {
    try {
      unlinkSync(at(dir, tmp));
    } catch {
      // never made, or already gone
    }
    throw err;
  }
}

/** Runs `fn` with a handle on `dir`, closing it afterwards. */
export async function withRootfsHandle<T>(open: (dir: string) => Promise<RootfsHandle>, dir: string, fn: (h: RootfsHandle) => Promise<T>): Promise<T> {
  const handle = await open(dir);
  try {
    return await fn(handle);
  } finally {
    await handle.close();
  }
}
