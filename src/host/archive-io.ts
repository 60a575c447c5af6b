// Backup archives on the host's side. An archive that is read is opened once, and every pass
// (checksum, member list, extraction) reads that one descriptor, whatever happens to its name
// meanwhile. A new archive is written as a hidden O_EXCL temporary beside its final name, through
// a descriptor of that directory, and linked (or, with --force, renamed) into place whole, so
// the final name never holds half an archive. The system's tar and zstd run in pipelines with
// Node in every link: it hashes and counts the bytes, caps what it collects, and never lets a
// shell near an argument.
import { ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants, promises as fsp, readlinkSync, Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { posix, resolve } from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CommandFailedError, InterruptedError, NspawnctlError } from '../errors';
import { insideMachinePath } from './paths';
import { PROGRAM_DIRS, resolveProgram } from './runner';

/** An archive opened for reading: its metadata at open time, and reads from that one descriptor. */
export interface ArchiveFile {
  /** The absolute path it was opened as (for messages). */
  readonly path: string;
  readonly size: number;
  readonly uid: number;
  /** Permission bits. */
  readonly mode: number;
  /** Up to `length` bytes from `offset`. */
  read(offset: number, length: number): Promise<Buffer>;
  /** The bytes from `start` up to (not including) `end`, as a stream. */
  stream(start: number, end: number): Readable;
  /** True while the file has the size, mtime and ctime it had when it was opened. */
  unchanged(): Promise<boolean>;
  close(): Promise<void>;
}

/** A new archive being written: a hidden temporary beside `path`, made visible by commit(). */
export interface ArchiveOutput {
  /** The final absolute path. */
  readonly path: string;
  /** A stream that writes from the start of the temporary (a pipeline's output). */
  writable(): Writable;
  /** Adds bytes at the end of what was written. */
  append(bytes: Buffer): Promise<void>;
  /** The temporary as written so far, for reading it back before it is committed. */
  reopen(): Promise<ArchiveFile>;
  /**
   * fsyncs the file and links it at `path` (refusing an existing file), or with `replace`
   * renames it over whatever file is there; then fsyncs the directory.
   */
  commit(options: { replace: boolean }): Promise<void>;
  /** Removes the temporary (after a failure); harmless after commit. */
  discard(): Promise<void>;
}

/** A program in a pipeline: an argument array, never a shell line. */
export interface PipeCommand {
  file: string;
  args: string[];
}

/** Where the last program's standard output goes. */
export type PipeOutput =
  /** Split at "\n" (a listing); a line longer than maxLineBytes fails the pipeline. */
  | { kind: 'lines'; onLine: (line: string) => void; maxLineBytes: number }
  /** Collected, up to maxBytes (more fails the pipeline). */
  | { kind: 'text'; maxBytes: number }
  /** Written into a new archive (and hashed). */
  | { kind: 'file'; file: ArchiveOutput }
  | { kind: 'discard' };

/** Bytes so far: read from the input file, and written by each program in turn. */
export interface PipeProgress {
  input: number;
  stages: number[];
}

export interface PipelineOptions {
  /** The first program's standard input: bytes [start, end) of an open archive. Empty otherwise. */
  input?: { file: ArchiveFile; start: number; end: number };
  output: PipeOutput;
  onProgress?: (progress: PipeProgress) => void;
  /**
   * The last program may be done before it has read everything (tar --occurrence): once it exits
   * 0, the programs before it are stopped and their SIGPIPE is no failure.
   */
  lastMayStopEarly?: boolean;
}

export interface PipelineResult {
  /** What `text` output collected ('' otherwise). */
  stdout: string;
  /** sha256 (hex) of the input bytes, when there was an input. */
  inputSha256?: string;
  /** sha256 (hex) of what a `file` output wrote. */
  outputSha256?: string;
  progress: PipeProgress;
}

const CHUNK = 1024 * 1024;

/**
 * Opens an archive (relative to the working directory) for reading: a regular file, opened
 * without blocking (a FIFO or device is refused, never waited on).
 */
export async function openArchiveFile(path: string): Promise<ArchiveFile> {
  const full = resolve(path);
  let handle: FileHandle;
  try {
    handle = await fsp.open(full, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'ENXIO' ? 'it is a socket' : (err as Error).message;
    throw new NspawnctlError(`cannot read ${path}: ${why}`, { exitCode: 2, cause: err });
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new NspawnctlError(`cannot read ${path}: it is not a regular file; a backup archive is one`, { exitCode: 2 });
  }
  return fileOf(handle, full, info);
}

function fileOf(handle: FileHandle, path: string, info: Stats): ArchiveFile {
  const identity = (s: Stats) => `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  const opened = identity(info);
  return {
    path,
    size: info.size,
    uid: info.uid,
    mode: info.mode & 0o7777,
    async read(offset, length) {
      const buf = Buffer.alloc(length);
      let n = 0;
      while (n < length) {
        const r = await handle.read(buf, n, length - n, offset + n);
        if (r.bytesRead === 0) break;
        n += r.bytesRead;
      }
      return buf.subarray(0, n);
    },
    stream(start, end) {
      if (end <= start) return Readable.from([]);
      return rangeReader(handle, start, end);
    },
    async unchanged() {
      return identity(await handle.stat()) === opened;
    },
    async close() {
      await handle.close();
    },
  };
}

/**
 * Starts a new archive at `path` (relative to the working directory). Its directory is opened
 * once; the temporary is created in it with O_EXCL and mode 0600 (an archive holds the machine's
 * /etc/shadow). A path inside a machine's root filesystem is refused, wherever a symlink in the
 * given path leads; so is an existing directory, and an existing file unless `replace`.
 */
export async function createArchiveOutput(path: string, options: { replace: boolean }): Promise<ArchiveOutput> {
  const full = resolve(path);
  const base = posix.basename(full);
  if (base === '' || base === '.' || base === '..') throw new NspawnctlError(`${path} is not a file name`, { exitCode: 2 });
  let dir: FileHandle;
  try {
    dir = await fsp.open(posix.dirname(full), constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    throw new NspawnctlError(`cannot write ${path}: its directory ${posix.dirname(full)} ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'cannot be opened'}`, { exitCode: 2, cause: err });
  }
  const at = (name: string) => `/proc/self/fd/${dir.fd}/${name}`;
  const fail = async (message: string) => {
    await dir.close();
    return new NspawnctlError(message, { exitCode: 2 });
  };
  // Where the directory really is, once every symlink of the given path was followed.
  const realDir = readlinkSync(`/proc/self/fd/${dir.fd}`);
  if (insideMachinePath(posix.join(realDir, base)) || insideMachinePath(`${realDir}/x`)) {
    throw await fail(`refusing to write ${path}: ${realDir} is inside a machine's root filesystem`);
  }
  const existing = await fsp.lstat(at(base)).catch(() => undefined);
  if (existing?.isDirectory()) throw await fail(`refusing to write ${path}: it is a directory`);
  if (existing && !options.replace) throw await fail(`${path} already exists; nothing was written`);
  const tmp = `.${base.slice(0, 200)}.nspawnctl-${randomBytes(6).toString('hex')}`;
  let file: FileHandle;
  try {
    file = await fsp.open(at(tmp), constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw await fail(`cannot write ${path}: ${(err as Error).message}`);
  }
  let length = 0;
  let gone = false;
  const removeTmp = async () => {
    if (gone) return;
    gone = true;
    await fsp.unlink(at(tmp)).catch(() => undefined);
  };
  return {
    path: full,
    writable() {
      return positionalWriter(file, 0, (end) => (length = Math.max(length, end)));
    },
    async append(bytes) {
      const { size } = await file.stat();
      length = size;
      let n = 0;
      while (n < bytes.length) n += (await file.write(bytes, n, bytes.length - n, length + n)).bytesWritten;
      length += bytes.length;
    },
    async reopen() {
      const handle = await fsp.open(at(tmp), constants.O_RDONLY | constants.O_NOFOLLOW);
      return fileOf(handle, posix.join(realDir, tmp), await handle.stat());
    },
    async commit({ replace }) {
      try {
        await file.sync();
        await file.close();
        if (replace) {
          const now = await fsp.lstat(at(base)).catch(() => undefined);
          if (now?.isDirectory()) throw new NspawnctlError(`refusing to replace ${path}: it is a directory`, { exitCode: 2 });
          await fsp.rename(at(tmp), at(base));
          gone = true;
        } else {
          try {
            // link() fails when anything exists at the name, a dangling symlink included.
            await fsp.link(at(tmp), at(base));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new NspawnctlError(`${path} appeared while the backup was written; nothing was replaced`, { exitCode: 2 });
            throw err;
          } finally {
            await removeTmp();
          }
        }
        await dir.sync().catch(() => undefined);
      } finally {
        await dir.close().catch(() => undefined);
      }
    },
    async discard() {
      await file.close().catch(() => undefined);
      await removeTmp();
      await dir.close().catch(() => undefined);
    },
  };
}

// Streams over a FileHandle with positional reads and writes. Node's own file streams do not
// fit: one made from a FileHandle keeps close() waiting until it closes itself, and one made on
// the descriptor number closes that descriptor when it is destroyed early, autoClose or not.

/** Bytes [start, end) of an open file. */
function rangeReader(handle: FileHandle, start: number, end: number): Readable {
  let pos = start;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (pos >= end) {
        this.push(null);
        return;
      }
      const length = Math.min(CHUNK, end - pos);
      handle.read(Buffer.allocUnsafe(length), 0, length, pos).then(
        ({ bytesRead, buffer }) => {
          if (bytesRead === 0) {
            this.push(null);
            return;
          }
          pos += bytesRead;
          this.push(buffer.subarray(0, bytesRead));
        },
        (err: Error) => this.destroy(err),
      );
    },
  });
}

/** Writes from `start` on, in order; `onEnd` learns where the writes ended. */
function positionalWriter(handle: FileHandle, start: number, onEnd: (end: number) => void): Writable {
  let pos = start;
  return new Writable({
    highWaterMark: CHUNK,
    write(chunk: Buffer, _enc, cb) {
      const write = async () => {
        for (let n = 0; n < chunk.length; ) n += (await handle.write(chunk, n, chunk.length - n, pos + n)).bytesWritten;
        pos += chunk.length;
        onEnd(pos);
      };
      write().then(() => cb(), cb);
    },
  });
}

/** Counts (and optionally hashes) what passes through. */
function tap(onChunk: (chunk: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onChunk(chunk);
      cb(null, chunk);
    },
  });
}

/** Splits a byte stream into lines (latin1, so every byte is one character) for `onLine`. */
function lineSink(onLine: (line: string) => void, maxLineBytes: number): Writable {
  let rest = '';
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      const text = rest + chunk.toString('latin1');
      const lines = text.split('\n');
      rest = lines.pop() ?? '';
      if (rest.length > maxLineBytes) return cb(new NspawnctlError(`a line of output is longer than ${maxLineBytes} bytes`, { exitCode: 2 }));
      try {
        for (const line of lines) onLine(line);
      } catch (err) {
        return cb(err as Error);
      }
      cb();
    },
    final(cb) {
      try {
        if (rest !== '') onLine(rest);
      } catch (err) {
        return cb(err as Error);
      }
      cb();
    },
  });
}

function textSink(into: Buffer[], maxBytes: number): Writable {
  let total = 0;
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      total += chunk.length;
      if (total > maxBytes) return cb(new NspawnctlError(`output is larger than ${maxBytes} bytes`, { exitCode: 2 }));
      into.push(chunk);
      cb();
    },
  });
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function isEpipe(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED';
}

/**
 * Runs `commands` with each one's standard output piped (through Node) into the next one's
 * standard input. Programs are found in PROGRAM_DIRS, run without a shell and with LC_ALL=C
 * (tar's listing is parsed). On a failure the error names the program that caused it: the sink,
 * else the first program that did not just lose its output pipe. SIGINT/SIGTERM (`signal`) stops
 * every program.
 */
export async function runPipeline(commands: PipeCommand[], options: PipelineOptions, signal?: AbortSignal): Promise<PipelineResult> {
  if (commands.length === 0) throw new NspawnctlError('internal: an empty pipeline');
  const argv = commands.flatMap((c, i) => [...(i > 0 ? ['|'] : []), c.file, ...c.args]);
  const programs = commands.map((c) => {
    const program = resolveProgram(c.file);
    if (!program) throw new CommandFailedError([c.file, ...c.args], undefined, `${c.file}: not found in ${PROGRAM_DIRS.join(':')}`);
    return program;
  });
  if (signal?.aborted) throw new InterruptedError(argv);
  const progress: PipeProgress = { input: 0, stages: commands.map(() => 0) };
  const report = () => options.onProgress?.({ input: progress.input, stages: [...progress.stages] });
  const children: ChildProcess[] = commands.map((c, i) =>
    spawn(programs[i], c.args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } }),
  );
  const stderr = children.map(() => '');
  children.forEach((child, i) =>
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr[i] = (stderr[i] + chunk.toString('utf8')).slice(-64 * 1024);
    }),
  );
  const exits: Promise<Exit>[] = children.map(
    (child) =>
      new Promise((resolveExit) => {
        child.on('error', () => resolveExit({ code: 127, signal: null }));
        child.on('close', (code, sig) => resolveExit({ code, signal: sig }));
      }),
  );
  const stopAll = () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  const onAbort = () => {
    stopAll();
    setTimeout(() => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')), 5000).unref();
  };
  signal?.addEventListener('abort', onAbort, { once: true });

  const inputHash = createHash('sha256');
  const outputHash = createHash('sha256');
  let inputStream: Readable | undefined;
  const links: Promise<void>[] = [];
  // links[k] feeds program linkInto[k]: the input file feeds the first, program i feeds i + 1.
  const linkInto: number[] = [];
  if (options.input) {
    const { file, start, end } = options.input;
    inputStream = file.stream(start, end);
    linkInto.push(0);
    links.push(
      pipeline(
        inputStream,
        tap((chunk) => {
          inputHash.update(chunk);
          progress.input += chunk.length;
          report();
        }),
        children[0].stdin!,
      ),
    );
  } else {
    children[0].stdin!.end();
  }
  for (let i = 0; i + 1 < children.length; i++) {
    linkInto.push(i + 1);
    links.push(
      pipeline(
        children[i].stdout!,
        tap((chunk) => {
          progress.stages[i] += chunk.length;
          report();
        }),
        children[i + 1].stdin!,
      ),
    );
  }
  const last = children.length - 1;
  const collected: Buffer[] = [];
  const out = options.output;
  const sink: Writable =
    out.kind === 'lines'
      ? lineSink(out.onLine, out.maxLineBytes)
      : out.kind === 'text'
        ? textSink(collected, out.maxBytes)
        : out.kind === 'file'
          ? out.file.writable()
          : new Writable({ write: (_c, _e, cb) => cb() });
  let sinkError: unknown;
  const sinkDone = pipeline(
    children[last].stdout!,
    tap((chunk) => {
      progress.stages[last] += chunk.length;
      if (out.kind === 'file') outputHash.update(chunk);
      report();
    }),
    sink,
  ).catch((err) => {
    sinkError = err;
    // Nothing more can be taken: stop every program instead of letting them block.
    stopAll();
  });

  // The last program is done early (tar --occurrence): the others need not finish.
  let stoppedEarly = false;
  if (options.lastMayStopEarly) {
    void exits[last].then((e) => {
      if (e.code === 0) {
        stoppedEarly = true;
        inputStream?.destroy();
        for (let i = 0; i < last; i++) if (children[i].exitCode === null && children[i].signalCode === null) children[i].kill('SIGTERM');
      }
    });
  }
  const linkErrors = await Promise.all(links.map((l) => l.then(() => undefined, (err: unknown) => err)));
  await sinkDone;
  const results = await Promise.all(exits);
  signal?.removeEventListener('abort', onAbort);

  if (signal?.aborted) throw new InterruptedError(argv);
  if (sinkError !== undefined && !(stoppedEarly && isEpipe(sinkError))) {
    if (sinkError instanceof NspawnctlError) throw sinkError;
    throw new NspawnctlError(`${formatCommand(commands[last])}: its output could not be ${out.kind === 'file' ? 'written' : 'read'}: ${(sinkError as Error).message}`, { cause: sinkError });
  }
  const failed = results
    .map((r, i) => ({ r, i }))
    .filter(({ r, i }) => (r.code !== 0 || r.signal !== null) && !(stoppedEarly && i < last));
  if (failed.length > 0) {
    // A program that lost its output (killed by SIGPIPE, or reporting the write error itself, in
    // English under LC_ALL=C: Node's stdio pipes are socket pairs, so a closed reader can also be
    // "Connection reset by peer") did not cause the failure.
    const victim = ({ r, i }: { r: Exit; i: number }) => r.signal === 'SIGPIPE' || r.signal === 'SIGTERM' || /broken pipe|connection reset by peer/i.test(stderr[i]);
    const cause = failed.find((f) => !victim(f)) ?? failed[0];
    const c = commands[cause.i];
    const why = cause.r.signal ? `${stderr[cause.i]}\nkilled by ${cause.r.signal}` : stderr[cause.i];
    throw new CommandFailedError([c.file, ...c.args], cause.r.code ?? undefined, why);
  }
  // A broken link with every program content (the input file could not be read, say). Not one
  // between two programs that both succeeded, when the reader had simply closed its input: tar
  // stops reading at the end-of-archive blocks and may leave the last record's padding unread,
  // as a shell pipeline would let it. The input file's link is never excused: its hash must be
  // of every byte.
  const closedByContentReader = (e: unknown, k: number) => linkInto[k] > 0 && isEpipe(e) && results[linkInto[k]].code === 0 && results[linkInto[k]].signal === null;
  const linkError = linkErrors.find((e, k) => e !== undefined && !(stoppedEarly && isEpipe(e)) && !closedByContentReader(e, k));
  if (linkError !== undefined) throw new NspawnctlError(`pipeline ${argv.join(' ')} failed: ${(linkError as Error).message}`, { cause: linkError });
  report();
  return {
    stdout: Buffer.concat(collected).toString('utf8'),
    inputSha256: options.input && !stoppedEarly ? inputHash.digest('hex') : undefined,
    outputSha256: out.kind === 'file' ? outputHash.digest('hex') : undefined,
    progress,
  };
}

function formatCommand(c: PipeCommand): string {
  return [c.file, ...c.args].join(' ');
}
