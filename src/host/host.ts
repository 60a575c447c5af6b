// The one object through which nspawnctl touches a machine: a runner, a rooted filesystem, HEAD
// requests to mirrors and the host lock.
import { constants, fstat, read, stat, Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { Socket } from 'node:net';
import { posix, resolve } from 'node:path';
import { isatty, ReadStream } from 'node:tty';
import { promisify } from 'node:util';
import { InterruptedError, ManifestError, NspawnctlError } from '../errors';
import type { ArchiveFile, ArchiveOutput } from './archive-io';
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
  /**
   * Reads a user's input file (a manifest) relative to the working directory, not the root; `-`
   * is standard input. Only a regular file is opened (without blocking, so a FIFO or a device is
   * refused instead of waited on), and never more than `maxBytes` + 1 bytes are read: one byte
   * more than the limit is enough to refuse it (ManifestError, exit 2).
   */
  readInput(path: string, maxBytes: number): Promise<string>;
  /**
   * Opens a backup archive (relative to the working directory) for reading: a regular file, read
   * through that one descriptor by every pass (src/host/archive-io.ts).
   */
  openArchive(path: string): Promise<ArchiveFile>;
  /**
   * Starts writing a backup archive at `path` (relative to the working directory): a hidden O_EXCL
   * temporary beside it, committed whole. Refuses a path in a machine's root filesystem, and an
   * existing file unless `replace`.
   */
  createArchive(path: string, options: { replace: boolean }): Promise<ArchiveOutput>;
}

/** How standard input is named on the command line. */
export const STDIN_ARG = '-';
/** How problems in a manifest read from standard input are located: `<stdin>:3:5: ...`. */
export const STDIN_LABEL = '<stdin>';

export { PROGRAM_DIRS };
export type { ArchiveFile, ArchiveOutput, Http, LockFile };

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
    openArchive: (path) => (require('./archive-io') as typeof import('./archive-io')).openArchiveFile(path),
    createArchive: (path, options) => (require('./archive-io') as typeof import('./archive-io')).createArchiveOutput(path, options),
    async readInput(path, maxBytes) {
      const stdin = path === STDIN_ARG;
      const label = stdin ? STDIN_LABEL : path;
      const bytes = stdin ? await readStdinAtMost(maxBytes + 1, signal) : await readFileAtMost(path, maxBytes + 1, signal);
      if (bytes.length > maxBytes) {
        const what = stdin ? 'standard input' : 'file';
        throw new ManifestError([{ file: label, line: 1, col: 1, path: '', message: `${what} is larger than ${maxBytes} bytes; a manifest is hand-written text` }]);
      }
      const text = bytes.toString('utf8');
      // A lossy decode that does not round-trip means invalid UTF-8 (a real U+FFFD is fine).
      if (!Buffer.from(text, 'utf8').equals(bytes)) {
        const offset = Math.max(0, firstInvalidUtf8(bytes));
        const before = bytes.subarray(0, offset).toString('utf8').split('\n');
        throw new ManifestError([
          { file: label, line: before.length, col: before[before.length - 1].length + 1, path: '', message: `file is not valid UTF-8 (byte 0x${bytes[offset].toString(16).padStart(2, '0')} at offset ${offset})` },
        ]);
      }
      return text;
    },
  };
}

const READING_STDIN = 'reading the manifest from standard input';
const NOT_REGULAR_HINT = 'A manifest is a YAML file such as machines.yaml. To give one through a pipe, pass - and write it to standard input: nspawnctl plan - < machines.yaml';

/**
 * A user's file, opened with O_NONBLOCK (opening a FIFO does not wait for a writer), checked with
 * fstat to be a regular file, then read `cap` bytes at most.
 */
async function readFileAtMost(path: string, cap: number, signal?: AbortSignal): Promise<Buffer> {
  if (signal?.aborted) throw new InterruptedError(undefined, `reading ${path}`);
  const full = resolve(path);
  let handle;
  try {
    handle = await open(full, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // open() of a socket fails with ENXIO; say what it is.
    const kind = code === 'ENXIO' ? await promisify(stat)(full).then(describeKind, () => undefined) : undefined;
    const reason = kind ? `it is ${kind}; a manifest must be a regular file` : code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new NspawnctlError(`cannot read ${path}: ${reason}`, { exitCode: 2, cause: err, hint: kind ? NOT_REGULAR_HINT : undefined });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new NspawnctlError(`cannot read ${path}: it is ${describeKind(info)}; a manifest must be a regular file`, { exitCode: 2, hint: NOT_REGULAR_HINT });
    const fh = handle;
    return await readAtMost((into, offset, length) => fh.read(into, offset, length, null).then((r) => r.bytesRead), cap, signal, `reading ${path}`);
  } finally {
    await handle.close();
  }
}

function describeKind(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO (named pipe)';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  if (info.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Reads with `read` until the end or until `cap` bytes: each call asks for no more than what is
 * left, so a source that never ends (/dev/zero on standard input) costs `cap` bytes, no more.
 * Checks `signal` before every call.
 */
export async function readAtMost(
  read: (into: Buffer, offset: number, length: number) => Promise<number>,
  cap: number,
  signal?: AbortSignal,
  during = READING_STDIN,
): Promise<Buffer> {
  const store = Buffer.alloc(cap);
  let total = 0;
  while (total < cap) {
    if (signal?.aborted) throw new InterruptedError(undefined, during);
    const n = await read(store, total, cap - total);
    if (n <= 0) break;
    total += n;
  }
  return store.subarray(0, total);
}

/** What readStreamAtMost needs of a socket: net.Socket and tty.ReadStream both are one. */
export interface CappedStream {
  on(event: 'end' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  resume(): unknown;
  destroy(): unknown;
}

/** Node's `onread` option: each read goes straight into `buffer()` and is at most its length. */
export interface OnRead {
  buffer: () => Uint8Array;
  callback: (bytesRead: number, buffer: Uint8Array) => boolean;
}

/**
 * Reads a pipe, socket or terminal until its end or until `cap` bytes, without blocking a thread
 * (a SIGTERM can always stop it): Node reads each chunk into the part of our buffer that is left
 * (`onread`), so no read can go past `cap`; at `cap` the stream is destroyed.
 */
export function readStreamAtMost(open: (onread: OnRead) => CappedStream, cap: number, signal?: AbortSignal, during = READING_STDIN): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const store = Buffer.alloc(cap);
    let total = 0;
    let done = false;
    let stream: CappedStream | undefined;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      stream?.destroy();
      if (err) reject(err);
      else resolvePromise(store.subarray(0, total));
    };
    const onAbort = () => finish(new InterruptedError(undefined, during));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      stream = open({
        buffer: () => store.subarray(total),
        callback: (n) => {
          total += n;
          if (total < cap) return true;
          finish();
          return false;
        },
      });
    } catch (err) {
      return finish(err as Error);
    }
    stream.on('end', () => finish());
    stream.on('close', () => finish());
    stream.on('error', (err) => finish(err));
    stream.resume();
  });
}

/** Standard input, `cap` bytes at most: a pipe, socket or terminal through readStreamAtMost, anything else with plain reads. */
async function readStdinAtMost(cap: number, signal?: AbortSignal): Promise<Buffer> {
  let info: Stats;
  try {
    info = await promisify(fstat)(0);
  } catch (err) {
    throw new NspawnctlError(`cannot read standard input: ${(err as Error).message}`, { exitCode: 2, cause: err });
  }
  if (info.isDirectory()) throw new NspawnctlError('cannot read standard input: it is a directory; a manifest must be a regular file or a pipe', { exitCode: 2 });
  if (info.isFIFO() || info.isSocket()) {
    return readStreamAtMost((onread) => new Socket({ fd: 0, readable: true, writable: false, onread } as ConstructorParameters<typeof Socket>[0]), cap, signal);
  }
  if (isatty(0)) return readStreamAtMost((onread) => new ReadStream(0, { onread } as ConstructorParameters<typeof ReadStream>[1]), cap, signal);
  // A regular file or a device such as /dev/zero: reads return at once.
  const readFd = promisify(read);
  return readAtMost((into, offset, length) => readFd(0, into, offset, length, null).then((r) => r.bytesRead), cap, signal);
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
