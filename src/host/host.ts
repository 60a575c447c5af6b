// The one object through which nspawnctl touches a machine: a runner, a rooted filesystem, HEAD
// requests to mirrors and the host lock.
import { readFile } from 'node:fs/promises';
import { posix, resolve } from 'node:path';
import { ManifestError, NspawnctlError } from '../errors';
import { LockFile, openLockFile } from './flock';
import { createNodeFs, HostFs } from './fs';
import { createNodeHttp, Http } from './http';
import { RootfsHandle } from './rootfs-handle';
import { createExecaRunner, PROGRAM_DIRS, Runner } from './runner';

export interface Host {
  runner: Runner;
  fs: HostFs;
  /** HEAD requests (does a mirror have a suite?), with the environment's proxy settings. */
  http: Http;
  /** The effective user id (0 = root). */
  uid: number;
  /** Our own process id, for lock files and messages. */
  pid: number;
  /** Aborted on SIGINT/SIGTERM: running children are stopped and no further step starts. */
  signal?: AbortSignal;
  /** Opens (creating) a lock file at `path`, under the same root as `fs`; see src/host/flock.ts. */
  openLock(path: string): Promise<LockFile>;
  /** Reads a user's input file (a manifest) relative to the working directory, not the root. */
  readInput(path: string): Promise<string>;
}

export { PROGRAM_DIRS };
export type { Http, LockFile };

/** The real host: execa and the filesystem at `root`. */
export function createRealHost(root = '/', signal?: AbortSignal): Host {
  return {
    signal,
    runner: createExecaRunner(signal),
    fs: createNodeFs(root),
    // The proxy variables apt itself honours, so nspawnctl reaches a mirror the way the bootstrap will.
    http: createNodeHttp({ http_proxy: process.env.http_proxy, https_proxy: process.env.https_proxy, no_proxy: process.env.no_proxy ?? process.env.NO_PROXY }),
    uid: typeof process.getuid === 'function' ? process.getuid() : -1,
    pid: process.pid,
    openLock: (path) => openLockFile(posix.join(root, path), signal),
    async readInput(path) {
      try {
        const bytes = await readFile(resolve(path));
        const text = bytes.toString('utf8');
        // A lossy decode that does not round-trip means invalid UTF-8 (a real U+FFFD is fine).
        if (!Buffer.from(text, 'utf8').equals(bytes)) {
          const offset = Math.max(0, firstInvalidUtf8(bytes));
          const before = bytes.subarray(0, offset).toString('utf8').split('\n');
          throw new ManifestError([
            { file: path, line: before.length, col: before[before.length - 1].length + 1, path: '', message: `file is not valid UTF-8 (byte 0x${bytes[offset].toString(16).padStart(2, '0')} at offset ${offset})` },
          ]);
        }
        return text;
      } catch (err) {
        if (err instanceof ManifestError) throw err;
        const code = (err as NodeJS.ErrnoException).code;
        throw new NspawnctlError(`cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`, { exitCode: 2, cause: err });
      }
    },
  };
}

/** Offset of the first byte that does not start or continue a valid UTF-8 sequence, or -1. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    const len = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
    if (len === 0 || i + len > bytes.length) return i;
    for (let k = 1; k < len; k++) if ((bytes[i + k] & 0xc0) !== 0x80) return i;
    // Overlong forms, UTF-16 surrogates and code points above U+10FFFF.
    const second = bytes[i + 1];
    if ((b === 0xe0 && second < 0xa0) || (b === 0xed && second > 0x9f) || (b === 0xf0 && second < 0x90) || (b === 0xf4 && second > 0x8f)) return i;
    i += len;
  }
  return -1;
}

/** Finds a program in PROGRAM_DIRS through the Host's filesystem. */
export async function findProgram(host: Host, name: string): Promise<string | undefined> {
  for (const dir of PROGRAM_DIRS) {
    const info = await host.fs.stat(`${dir}/${name}`);
    if (info && (info.type === 'file' || info.type === 'symlink')) return `${dir}/${name}`;
  }
  return undefined;
}

/** Runs `fn` with a handle on the root filesystem at `dir` (a machine's, or a staging directory). */
export async function withRootfs<T>(host: Host, dir: string, fn: (rootfs: RootfsHandle) => Promise<T>): Promise<T> {
  if ((await host.fs.stat(dir))?.type !== 'dir') throw new NspawnctlError(`root filesystem ${dir} is missing`);
  const rootfs = await host.fs.openRootfs(dir);
  try {
    return await fn(rootfs);
  } finally {
    await rootfs.close();
  }
}
