// flock(2) for Node, which has no binding for it. util-linux's flock(1) locks a descriptor it
// inherits from us (its fd 3 is our open file). A flock(2) lock belongs to the open file
// description, not to the process that asked: it stays ours after flock(1) exits, and the kernel
// drops it when our last descriptor for it closes: on release, or when we die, even by SIGKILL.
// So there is no stale lock to judge and take over.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { CommandFailedError, InterruptedError, NspawnctlError } from '../errors';
import { PROGRAM_DIRS, resolveProgram } from './runner';

/** An open lock file. The lock, once taken, is held until close() or the death of our process. */
export interface LockFile {
  /** Takes the exclusive lock if it is free; false when another open file holds it. */
  tryLock(): Promise<boolean>;
  /** Waits for the exclusive lock; InterruptedError when the Host's signal fires first. */
  waitLock(): Promise<void>;
  /** The file's text: the note its holder wrote (possibly empty or half-written). */
  readNote(): Promise<string>;
  /** Replaces the file's text (truncate, then write), for runs that wait or are refused. */
  writeNote(text: string): Promise<void>;
  /** Closes our descriptor, which releases the lock. The file stays: see openLockFile. */
  close(): Promise<void>;
}

/** flock(1)'s exit code when --nonblock finds the lock taken (EX_TEMPFAIL; its default 1 is ambiguous). */
const CONFLICT = 75;
/** The note is a line of JSON; anything longer is not ours. */
const MAX_NOTE = 64 * 1024;

// Plain descriptors, not FileHandles: Node closes an unreachable FileHandle when it is garbage-
// collected, which would drop the lock in the middle of a run. Node opens every file with
// O_CLOEXEC, so no other child of ours inherits the descriptor (and with it the lock).
const open = promisify(fs.open);
const fstat = promisify(fs.fstat);
const fchmod = promisify(fs.fchmod);
const read = promisify(fs.read);
const write = promisify(fs.write);
const ftruncate = promisify(fs.ftruncate);
const close = promisify(fs.close);

/**
 * Opens (creating, mode 0600) the lock file at `path`, a real path. The file is never removed:
 * a run that opened it before the removal would lock the old inode while the next run creates and
 * locks a new one, and both would hold "the" lock. Mode 0600 because flock(2) needs only a
 * descriptor, even a read-only one: anyone who can open the file can hold the lock forever.
 */
export async function openLockFile(path: string, signal?: AbortSignal): Promise<LockFile> {
  const flock = resolveProgram('flock');
  if (!flock) {
    throw new NspawnctlError(`cannot take the host lock: flock is not installed (looked in ${PROGRAM_DIRS.join(':')})`, { hint: 'apt-get install util-linux' });
  }
  let fd: number;
  try {
    fd = await open(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new NspawnctlError(`cannot open the host lock ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const info = await fstat(fd);
    if (!info.isFile()) throw new NspawnctlError(`cannot use ${path} as the host lock: it is not a regular file`);
    // A file left by an older nspawnctl (mode 0644) would let other users hold the lock.
    if ((info.mode & 0o077) !== 0) await fchmod(fd, 0o600);
  } catch (err) {
    await close(fd);
    throw err;
  }

  let closed = false;
  return {
    async tryLock() {
      const args = ['--exclusive', '--nonblock', '--conflict-exit-code', String(CONFLICT)];
      const r = await runFlock(flock, args, fd);
      if (r.code === 0) return true;
      if (r.code === CONFLICT) return false;
      throw failure(flock, args, r);
    },
    async waitLock() {
      if (signal?.aborted) throw new InterruptedError();
      const args = ['--exclusive'];
      const r = await runFlock(flock, args, fd, signal);
      // A terminal's Ctrl-C reaches flock(1) too (same process group), maybe before our own
      // handler aborts the signal: a wait that died by SIGINT or SIGTERM was interrupted.
      if (signal?.aborted || r.signal === 'SIGINT' || r.signal === 'SIGTERM') throw new InterruptedError();
      if (r.code !== 0) throw failure(flock, args, r);
    },
    async readNote() {
      const buffer = Buffer.alloc(MAX_NOTE);
      let length = 0;
      for (;;) {
        const { bytesRead } = await read(fd, buffer, length, buffer.length - length, length);
        if (bytesRead === 0 || length + bytesRead === buffer.length) return buffer.toString('utf8', 0, length + bytesRead);
        length += bytesRead;
      }
    },
    async writeNote(text) {
      await ftruncate(fd, 0);
      const bytes = Buffer.from(text, 'utf8');
      for (let done = 0; done < bytes.length; ) {
        const { bytesWritten } = await write(fd, bytes, done, bytes.length - done, done);
        done += bytesWritten;
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await close(fd);
    },
  };
}

interface FlockResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * Runs `flock ARGS 3` with our descriptor `fd` as its fd 3. When `signal` fires, flock(1) gets
 * SIGTERM, and this settles only once it has exited: a lock it took at that instant is then on
 * our descriptor, which the caller closes. (If we are killed while it waits, it waits on as an
 * orphan; should it get the lock, it exits at once and, our descriptor being gone, drops it.)
 */
function runFlock(program: string, args: string[], fd: number, signal?: AbortSignal): Promise<FlockResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, [...args, '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], shell: false });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const stop = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', stop, { once: true });
    let spawnError: Error | undefined;
    child.on('error', (err) => (spawnError = err));
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', stop);
      if (spawnError) reject(new CommandFailedError([program, ...args, '3'], undefined, spawnError.message, spawnError));
      else resolve({ code, signal: sig, stderr });
    });
  });
}

function failure(program: string, args: string[], r: FlockResult): CommandFailedError {
  return new CommandFailedError([program, ...args, '3'], r.code ?? undefined, r.signal ? `${r.stderr}\nkilled by ${r.signal}` : r.stderr);
}
