// An in-memory Host for unit tests: a filesystem with the semantics of createNodeFs, and a
// runner that records every call and answers only from scripted responses.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { CommandFailedError, InterruptedError, NspawnctlError, UnsafePathError } from '../../src/errors';
import { assertHostPath, FileInfo, HostFs, WriteAccess, WriteOptions } from '../../src/host/fs';
import { Host, LockFile } from '../../src/host/host';
import { HeadOptions, HeadResult, Http, HttpError } from '../../src/host/http';
import { isWithin } from '../../src/host/paths';
import { MAX_ROOTFS_READ, RootfsEntryState, RootfsHandle, rootfsPathParts, RootfsWriteOptions } from '../../src/host/rootfs-handle';
import { RunOptions, RunResult, Runner } from '../../src/host/runner';
import { ArchiveFile, ArchiveOutput, PipeCommand, PipelineOptions, PipelineResult } from '../../src/host/archive-io';
import { insideMachinePath } from '../../src/host/paths';

export type FakeNode =
  | { type: 'file'; content: string; mode: number; uid: number; gid: number }
  | { type: 'symlink'; target: string; uid: number; gid: number }
  | { type: 'dir'; mode: number; uid: number; gid: number }
  /** A FIFO, socket or device: never read. */
  | { type: 'other'; mode: number; uid: number; gid: number };

/** In-memory filesystem; `changes` logs every mutation ("write /etc/x", "remove /y", ...). */
export class FakeFs implements HostFs {
  readonly root = '/';
  readonly nodes = new Map<string, FakeNode>([['/', { type: 'dir', mode: 0o755, uid: 0, gid: 0 }]]);
  readonly changes: string[] = [];
  /** Paths (and everything below them) on a read-only mount, and paths the kernel refuses to let this process write. */
  readonly readOnly = new Set<string>();
  readonly writeDenied = new Set<string>();

  async createExclusive(path: string, content: string, mode: number): Promise<boolean> {
    assertHostPath(path);
    const p = this.resolveParents(path);
    if (this.nodes.has(p)) return false;
    // createNodeFs makes the parent with mkdir -p, which fails on a file in the way.
    for (let dir = posix.dirname(p); !this.nodes.has(dir) || this.nodes.get(dir)?.type !== 'dir'; dir = posix.dirname(dir)) {
      if (this.nodes.has(dir)) throw new NspawnctlError(`${dir} exists and is not a directory`);
    }
    this.ensureParents(p);
    this.nodes.set(p, { type: 'file', content, mode, uid: 0, gid: 0 });
    this.changes.push(`create ${norm(path)}`);
    return true;
  }

  // --- seeding helpers (not part of HostFs; they do not log changes) ---
  addDir(path: string, opts: { mode?: number; uid?: number } = {}): this {
    this.ensureParents(path);
    this.nodes.set(norm(path), { type: 'dir', mode: opts.mode ?? 0o755, uid: opts.uid ?? 0, gid: opts.uid ?? 0 });
    return this;
  }

  addFile(path: string, content: string, opts: { mode?: number; uid?: number } = {}): this {
    this.ensureParents(path);
    this.nodes.set(norm(path), { type: 'file', content, mode: opts.mode ?? 0o644, uid: opts.uid ?? 0, gid: opts.uid ?? 0 });
    return this;
  }

  addSymlink(path: string, target: string): this {
    this.ensureParents(path);
    this.nodes.set(norm(path), { type: 'symlink', target, uid: 0, gid: 0 });
    return this;
  }

  /**
   * What a machine's root can do to its own tree at any moment: the directory (or file) at `path`
   * and everything below it replaced by a symlink to `target`.
   */
  swapForSymlink(path: string, target: string): this {
    const p = norm(path);
    for (const key of [...this.nodes.keys()]) if (isWithin(key, p)) this.nodes.delete(key);
    return this.addSymlink(p, target);
  }

  /** A FIFO (or any special file) at `path`. */
  addFifo(path: string): this {
    this.ensureParents(path);
    this.nodes.set(norm(path), { type: 'other', mode: 0o644, uid: 0, gid: 0 });
    return this;
  }

  /**
   * The content of the regular file at exactly `path` (no symlink followed), or undefined: for
   * looking at files inside a machine, which the HostFs methods refuse to read.
   */
  textAt(path: string): string | undefined {
    const node = this.nodes.get(norm(path));
    return node?.type === 'file' ? node.content : undefined;
  }

  /** Every path below `/`, sorted: for comparing whole trees. */
  paths(): string[] {
    return [...this.nodes.keys()].filter((p) => p !== '/').sort();
  }

  // --- HostFs ---
  async readText(path: string): Promise<string | undefined> {
    assertHostPath(path);
    const node = this.nodes.get(this.realpath(path));
    return node?.type === 'file' ? node.content : undefined;
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    assertHostPath(path);
    const node = this.nodes.get(this.resolveParents(path));
    return node ? infoOf(node) : undefined;
  }

  async statResolved(path: string): Promise<{ path: string; info: FileInfo } | undefined> {
    assertHostPath(path);
    // Like the real one: wherever the path leads (even into a machine), only metadata is read.
    const resolved = this.realpath(path);
    const node = this.nodes.get(resolved);
    return node ? { path: resolved, info: infoOf(node) } : undefined;
  }

  async readLink(path: string): Promise<string | undefined> {
    assertHostPath(path);
    const node = this.nodes.get(this.resolveParents(path));
    return node?.type === 'symlink' ? node.target : undefined;
  }

  async listDir(path: string): Promise<string[]> {
    assertHostPath(path);
    const dir = this.realpath(path);
    if (this.nodes.get(dir)?.type !== 'dir') return [];
    return this.children(dir).map((p) => posix.basename(p)).sort();
  }

  async writeFile(path: string, content: string, options: WriteOptions): Promise<boolean> {
    assertHostPath(path);
    const p = this.resolveParents(path);
    const node = this.nodes.get(p);
    if (node?.type === 'file') {
      const ownerOk = options.uid === undefined || (node.uid === options.uid && node.gid === (options.gid ?? options.uid));
      if (node.content === content && node.mode === options.mode && ownerOk) return false;
    } else if (node?.type === 'dir') {
      throw new NspawnctlError(`refusing to replace ${path}: it is a directory`);
    }
    this.mkdirp(posix.dirname(p), options.dirMode ?? 0o755, options.uid, options.gid);
    const uid = options.uid ?? 0;
    this.nodes.set(p, { type: 'file', content, mode: options.mode, uid, gid: options.gid ?? uid });
    this.changes.push(`write ${norm(path)}`);
    return true;
  }

  async writeSymlink(path: string, target: string, options: Omit<WriteOptions, 'mode'>): Promise<boolean> {
    assertHostPath(path);
    const p = this.resolveParents(path);
    const node = this.nodes.get(p);
    if (node?.type === 'symlink' && node.target === target) return false;
    if (node?.type === 'dir') throw new NspawnctlError(`refusing to replace ${path}: it is a directory or special file`);
    this.mkdirp(posix.dirname(p), options.dirMode ?? 0o755, options.uid, options.gid);
    const uid = options.uid ?? 0;
    this.nodes.set(p, { type: 'symlink', target, uid, gid: options.gid ?? uid });
    this.changes.push(`symlink ${norm(path)} -> ${target}`);
    return true;
  }

  async removeFile(path: string): Promise<boolean> {
    assertHostPath(path);
    const p = this.resolveParents(path);
    const node = this.nodes.get(p);
    if (!node) return false;
    if (node.type === 'dir') throw new NspawnctlError(`refusing to remove ${path}: it is a directory`);
    this.nodes.delete(p);
    this.changes.push(`remove ${norm(path)}`);
    return true;
  }

  async removeTree(path: string): Promise<void> {
    if (posix.normalize(path) === '/' || path === '') throw new NspawnctlError('refusing to remove /');
    assertHostPath(path);
    const p = this.resolveParents(path);
    for (const key of [...this.nodes.keys()]) if (isWithin(key, p)) this.nodes.delete(key);
    this.changes.push(`remove-tree ${norm(path)}`);
  }

  async rename(from: string, to: string): Promise<void> {
    assertHostPath(from);
    assertHostPath(to);
    const src = this.resolveParents(from);
    const dst = this.resolveParents(to);
    if (!this.nodes.has(src)) throw enoent('rename', from);
    if (this.nodes.get(posix.dirname(dst))?.type !== 'dir') throw enoent('rename', to);
    if (this.nodes.get(dst)?.type === 'dir' && this.children(dst).length > 0) throw Object.assign(new Error(`ENOTEMPTY: rename ${to}`), { code: 'ENOTEMPTY' });
    const moved = [...this.nodes.entries()].filter(([k]) => isWithin(k, src));
    for (const [k] of moved) this.nodes.delete(k);
    for (const [k, v] of moved) this.nodes.set(dst + k.slice(src.length), v);
    this.changes.push(`rename ${norm(from)} -> ${norm(to)}`);
  }

  async mkdir(path: string, mode: number, options: { uid?: number; gid?: number } = {}): Promise<void> {
    assertHostPath(path);
    this.mkdirp(this.resolveParents(path), mode, options.uid, options.gid);
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    assertHostPath(path);
    const p = this.resolveParents(path);
    const node = this.nodes.get(p);
    if (!node) throw enoent('lchown', path);
    this.nodes.set(p, { ...node, uid, gid });
    this.changes.push(`chown ${norm(path)} ${uid}:${gid}`);
  }

  async openRootfs(dir: string): Promise<RootfsHandle> {
    assertHostPath(dir);
    const top = this.nodes.get(norm(dir));
    if (top?.type !== 'dir') throw new UnsafePathError(dir, 'is not a directory (or is a symlink)');
    this.opened.push(norm(dir));
    return new FakeRootfsHandle(this, norm(dir));
  }

  async writeAccess(path: string): Promise<WriteAccess> {
    assertHostPath(path);
    const p = this.realpath(path);
    if (!this.nodes.has(p)) return 'missing';
    if ([...this.readOnly].some((r) => isWithin(p, norm(r)))) return 'read-only';
    return this.writeDenied.has(p) ? 'denied' : 'ok';
  }

  /** Every directory a RootfsHandle was opened on, in order. */
  readonly opened: string[] = [];

  /** For FakeRootfsHandle: logs a change the way the HostFs methods do. */
  logChange(change: string): void {
    this.changes.push(change);
  }

  // --- internals ---
  private children(dir: string): string[] {
    return [...this.nodes.keys()].filter((k) => k !== dir && posix.dirname(k) === dir);
  }

  private ensureParents(path: string): void {
    let dir = posix.dirname(norm(path));
    const missing: string[] = [];
    while (!this.nodes.has(dir)) {
      missing.push(dir);
      dir = posix.dirname(dir);
    }
    for (const d of missing) this.nodes.set(d, { type: 'dir', mode: 0o755, uid: 0, gid: 0 });
  }

  /** mkdir -p like createNodeFs: an existing symlink to a directory counts as a directory. */
  private mkdirp(dir: string, mode: number, uid?: number, gid?: number): void {
    const node = this.nodes.get(dir);
    if (node) {
      if (node.type === 'dir') return;
      if (node.type === 'symlink' && this.nodes.get(this.realpath(dir))?.type === 'dir') return;
      throw new NspawnctlError(`${dir} exists and is not a directory`);
    }
    this.mkdirp(posix.dirname(dir), mode, uid, gid);
    this.nodes.set(dir, { type: 'dir', mode, uid: uid ?? 0, gid: gid ?? uid ?? 0 });
    this.changes.push(`mkdir ${dir}`);
  }

  /** The path with every symlink resolved except the last component (what lstat sees). */
  private resolveParents(path: string): string {
    const p = norm(path);
    if (p === '/') return p;
    return posix.join(this.realpath(posix.dirname(p)), posix.basename(p));
  }

  /** The path with every symlink resolved, like realpath(3) (missing parts kept as they are). */
  private realpath(path: string, depth = 0): string {
    if (depth > 40) throw new Error(`ELOOP: ${path}`);
    let current = '/';
    const parts = norm(path).split('/').filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      const next = posix.join(current, parts[i]);
      const node = this.nodes.get(next);
      if (node?.type === 'symlink') {
        const target = posix.resolve(current, node.target);
        return this.realpath(posix.join(target, ...parts.slice(i + 1)), depth + 1);
      }
      current = next;
    }
    return current;
  }
}

function infoOf(node: FakeNode): FileInfo {
  const mode = node.type === 'symlink' ? 0o777 : node.mode;
  const size = node.type === 'file' ? Buffer.byteLength(node.content) : node.type === 'symlink' ? node.target.length : 4096;
  return { type: node.type, mode, uid: node.uid, gid: node.gid, mtimeMs: 0, size };
}

/**
 * RootfsHandle over a FakeFs: the same rules as the real one. Every directory on the way must be
 * a real directory (a symlink or file there is an UnsafePathError), nothing is followed, special
 * files are reported as "other" and never read, writes replace a symlink instead of writing
 * through it. Changes are logged in the FakeFs's `changes` like its own methods do.
 */
export class FakeRootfsHandle implements RootfsHandle {
  private closed = false;

  constructor(
    private readonly fs: FakeFs,
    readonly path: string,
  ) {}

  private full(parts: string[]): string {
    return posix.join(this.path, ...parts);
  }

  /** The directory at `parts` (created with `create`), or undefined when missing. */
  private dir(parts: string[], create?: { mode: number; uid?: number; gid?: number }): string | undefined {
    if (this.closed) throw new NspawnctlError(`internal: the handle of ${this.path} is closed`);
    for (let i = 0; i <= parts.length; i++) {
      const p = this.full(parts.slice(0, i));
      const node = this.fs.nodes.get(p);
      if (!node) {
        if (!create) return undefined;
        const uid = create.uid ?? 0;
        this.fs.nodes.set(p, { type: 'dir', mode: create.mode, uid, gid: create.gid ?? uid });
        this.fs.logChange(`mkdir ${p}`);
        continue;
      }
      if (node.type === 'symlink') throw new UnsafePathError(p, 'is a symlink');
      if (node.type !== 'dir') throw new UnsafePathError(p, 'is not a directory');
    }
    return this.full(parts);
  }

  async top(): Promise<FileInfo> {
    return infoOf(this.fs.nodes.get(this.path)!);
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    const parts = rootfsPathParts(path);
    if (this.dir(parts.slice(0, -1)) === undefined) return undefined;
    const node = this.fs.nodes.get(this.full(parts));
    return node ? infoOf(node) : undefined;
  }

  async inspect(path: string, maxBytes = MAX_ROOTFS_READ): Promise<RootfsEntryState | undefined> {
    const parts = rootfsPathParts(path);
    if (this.dir(parts.slice(0, -1)) === undefined) return undefined;
    return this.entry(parts, maxBytes);
  }

  private entry(parts: string[], maxBytes: number): RootfsEntryState | undefined {
    const node = this.fs.nodes.get(this.full(parts));
    if (!node) return undefined;
    if (node.type === 'symlink') return { type: 'symlink', target: node.target };
    if (node.type === 'dir' || node.type === 'other') return { type: node.type };
    if (Buffer.byteLength(node.content) > maxBytes) throw new UnsafePathError(this.full(parts), `is larger than ${maxBytes} bytes`);
    return { type: 'file', content: node.content, mode: node.mode, uid: node.uid, gid: node.gid };
  }

  async writeFile(path: string, content: string, options: RootfsWriteOptions): Promise<boolean> {
    const parts = rootfsPathParts(path);
    this.dir(parts.slice(0, -1), { mode: options.dirMode ?? 0o755, uid: options.uid, gid: options.gid });
    const current = this.entry(parts, Math.max(MAX_ROOTFS_READ, Buffer.byteLength(content)));
    const uid = options.uid ?? 0;
    const gid = options.gid ?? uid;
    if (current?.type === 'file') {
      const ownerOk = options.uid === undefined || (current.uid === uid && current.gid === gid);
      if (current.content === content && current.mode === options.mode && ownerOk) return false;
    } else if (current && current.type !== 'symlink') {
      throw new UnsafePathError(this.full(parts), current.type === 'dir' ? 'is a directory' : 'is a special file (FIFO, socket or device)');
    }
    this.fs.nodes.set(this.full(parts), { type: 'file', content, mode: options.mode, uid, gid });
    this.fs.logChange(`write ${this.full(parts)}`);
    return true;
  }

  async writeSymlink(path: string, target: string, options: Omit<RootfsWriteOptions, 'mode'>): Promise<boolean> {
    const parts = rootfsPathParts(path);
    this.dir(parts.slice(0, -1), { mode: options.dirMode ?? 0o755, uid: options.uid, gid: options.gid });
    const current = this.entry(parts, MAX_ROOTFS_READ);
    if (current?.type === 'symlink' && current.target === target) return false;
    if (current && current.type !== 'symlink' && current.type !== 'file') {
      throw new UnsafePathError(this.full(parts), current.type === 'dir' ? 'is a directory' : 'is a special file (FIFO, socket or device)');
    }
    const uid = options.uid ?? 0;
    this.fs.nodes.set(this.full(parts), { type: 'symlink', target, uid, gid: options.gid ?? uid });
    this.fs.logChange(`symlink ${this.full(parts)} -> ${target}`);
    return true;
  }

  async removeFile(path: string): Promise<boolean> {
    const parts = rootfsPathParts(path);
    if (this.dir(parts.slice(0, -1)) === undefined) return false;
    const node = this.fs.nodes.get(this.full(parts));
    if (!node) return false;
    if (node.type === 'dir') throw new UnsafePathError(this.full(parts), 'is a directory, not a file nspawnctl wrote');
    this.fs.nodes.delete(this.full(parts));
    this.fs.logChange(`remove ${this.full(parts)}`);
    return true;
  }

  async mkdir(path: string, options: Omit<RootfsWriteOptions, 'mode'> & { mode: number }): Promise<void> {
    this.dir(rootfsPathParts(path), { mode: options.mode, uid: options.uid, gid: options.gid });
  }

  async listDir(path: string): Promise<string[]> {
    const dir = this.dir(rootfsPathParts(path));
    if (dir === undefined) return [];
    return [...this.fs.nodes.keys()].filter((k) => k !== dir && posix.dirname(k) === dir).map((k) => posix.basename(k)).sort();
  }

  async removeEmptyDir(path: string): Promise<boolean> {
    const parts = rootfsPathParts(path);
    if (this.dir(parts.slice(0, -1)) === undefined) return false;
    const p = this.full(parts);
    if (this.fs.nodes.get(p)?.type !== 'dir' || (await this.listDir(path)).length > 0) return false;
    this.fs.nodes.delete(p);
    this.fs.logChange(`rmdir ${p}`);
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export interface RunCall {
  file: string;
  args: string[];
  options?: RunOptions;
  /** For a pipeline: its options (its argv is every program's, joined by "|"). */
  pipeline?: PipelineOptions;
}

/** Matches an exact argv (file first), or any argv a predicate accepts. */
export type ArgvMatcher = string[] | ((argv: string[]) => boolean);
export type Response = Partial<RunResult> | ((call: RunCall) => Partial<RunResult>);

interface Scripted {
  matcher: ArgvMatcher;
  response: Response;
  remaining: number;
}

/** Records every call; answers from scripted responses, tried in order; unmatched calls throw. */
export class FakeRunner implements Runner {
  readonly calls: RunCall[] = [];
  readonly unmatched: string[][] = [];
  private readonly scripted: Scripted[] = [];

  /** Adds a response; `times` limits how often it answers (forever by default). */
  on(matcher: ArgvMatcher, response: Response = {}, times = Infinity): this {
    this.scripted.push({ matcher, response, remaining: times });
    return this;
  }

  /** The argv of every call, file first. */
  argvs(): string[][] {
    return this.calls.map((c) => [c.file, ...c.args]);
  }

  /**
   * A pipeline is one call whose argv is each program's argv joined by "|", answered by the same
   * scripted responses: `stdout` is what the last program prints (fed line by line to a `lines`
   * output, written into a `file` output as latin1 bytes). Its input is read from the fake
   * archive and hashed for real; progress is reported once, at the end.
   */
  async pipeline(commands: PipeCommand[], options: PipelineOptions): Promise<PipelineResult> {
    const argv = commands.flatMap((c, i) => [...(i > 0 ? ['|'] : []), c.file, ...c.args]);
    const call: RunCall = { file: argv[0], args: argv.slice(1), pipeline: options };
    this.calls.push(call);
    const s = this.scripted.find((x) => x.remaining > 0 && matches(x.matcher, argv));
    if (!s) {
      this.unmatched.push(argv);
      throw new Error(`FakeRunner: unexpected command ${JSON.stringify(argv)}`);
    }
    s.remaining--;
    const r = typeof s.response === 'function' ? s.response(call) : s.response;
    const input = options.input ? (await options.input.file.read(options.input.start, options.input.end - options.input.start)) : undefined;
    if ((r.exitCode ?? 0) !== 0) throw new CommandFailedError(argv, r.exitCode, r.stderr ?? '');
    const stdout = r.stdout ?? '';
    // Every program is taken to have written as much as the last one printed.
    const progress = { input: input?.length ?? 0, stages: commands.map(() => Buffer.byteLength(stdout, 'latin1')) };
    options.onProgress?.(progress);
    const out = options.output;
    let outputSha256: string | undefined;
    if (out.kind === 'lines') {
      const lines = stdout.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      for (const line of lines) out.onLine(line);
    } else if (out.kind === 'text' && Buffer.byteLength(stdout) > out.maxBytes) {
      throw new NspawnctlError(`output is larger than ${out.maxBytes} bytes`, { exitCode: 2 });
    } else if (out.kind === 'file') {
      const bytes = Buffer.from(stdout, 'latin1');
      await (out.file as FakeArchiveOutput).write(bytes);
      outputSha256 = createHash('sha256').update(bytes).digest('hex');
    }
    return {
      stdout: out.kind === 'text' ? stdout : '',
      inputSha256: input ? createHash('sha256').update(input).digest('hex') : undefined,
      outputSha256,
      progress,
    };
  }

  async run(file: string, args: string[], options?: RunOptions): Promise<RunResult> {
    const call: RunCall = { file, args: [...args], options };
    this.calls.push(call);
    const argv = [file, ...args];
    const s = this.scripted.find((x) => x.remaining > 0 && matches(x.matcher, argv));
    if (!s) {
      this.unmatched.push(argv);
      throw new Error(`FakeRunner: unexpected command ${JSON.stringify(argv)}`);
    }
    s.remaining--;
    const r = typeof s.response === 'function' ? s.response(call) : s.response;
    const result: RunResult = { exitCode: r.exitCode ?? 0, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    if (result.exitCode !== 0 && !options?.allowFailure) {
      throw new CommandFailedError(argv, result.exitCode, result.stderr || result.stdout);
    }
    return result;
  }
}

function matches(m: ArgvMatcher, argv: string[]): boolean {
  return typeof m === 'function' ? m(argv) : m.length === argv.length && m.every((a, i) => a === argv[i]);
}

/** One HEAD request a FakeHttp answered: the URL, and the proxy and timeout it was asked with. */
export interface HttpCall {
  url: string;
  proxy?: string;
  timeoutMs: number;
}

/** An answer: a status (and a redirect's location), or `fail` for "no answer came" (an HttpError). */
export type HttpResponse = { status: number; location?: string } | { fail: string };

/**
 * Records every HEAD request. Scripted answers are tried in order (an exact URL or a predicate);
 * any other URL answers 200, like a mirror that has every suite, so tests that are not about
 * mirrors need no script.
 */
export class FakeHttp implements Http {
  readonly calls: HttpCall[] = [];
  private readonly scripted: { matcher: string | ((url: string) => boolean); response: HttpResponse }[] = [];

  on(matcher: string | ((url: string) => boolean), response: HttpResponse): this {
    this.scripted.push({ matcher, response });
    return this;
  }

  /** The URLs asked, in order. */
  urls(): string[] {
    return this.calls.map((c) => c.url);
  }

  async head(url: string, options: HeadOptions): Promise<HeadResult> {
    this.calls.push({ url, ...(options.proxy !== undefined ? { proxy: options.proxy } : {}), timeoutMs: options.timeoutMs });
    const s = this.scripted.find((x) => (typeof x.matcher === 'string' ? x.matcher === url : x.matcher(url)));
    const r = s?.response ?? { status: 200 };
    if ('fail' in r) throw new HttpError(url, r.fail, options.proxy);
    return { status: r.status, ...(r.location ? { location: r.location } : {}), ...(options.proxy ? { via: options.proxy } : {}) };
  }
}

/** A backup archive of a FakeHost: bytes, owner and mode. */
export interface FakeArchive {
  data: Buffer;
  uid: number;
  mode: number;
}

/** Reads a FakeArchive; `changeAfterReads` makes it report a change once it was read that often. */
export class FakeArchiveFile implements ArchiveFile {
  reads = 0;
  constructor(
    readonly path: string,
    private readonly archive: FakeArchive,
    private readonly changeAfterReads = Infinity,
  ) {}

  get size(): number {
    return this.archive.data.length;
  }

  get uid(): number {
    return this.archive.uid;
  }

  get mode(): number {
    return this.archive.mode;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    return Buffer.from(this.archive.data.subarray(offset, offset + length));
  }

  stream(start: number, end: number): Readable {
    return Readable.from([this.archive.data.subarray(start, end)]);
  }

  async unchanged(): Promise<boolean> {
    return this.reads <= this.changeAfterReads;
  }

  async close(): Promise<void> {}
}

/** Writes a FakeArchive under a temporary key of FakeHost.archives, moved to its path by commit(). */
export class FakeArchiveOutput implements ArchiveOutput {
  private data = Buffer.alloc(0);
  private done = false;

  constructor(
    private readonly host: FakeHost,
    readonly path: string,
    readonly tempPath: string,
  ) {
    host.archives.set(tempPath, { data: this.data, uid: 0, mode: 0o600 });
  }

  async write(bytes: Buffer): Promise<void> {
    this.data = Buffer.concat([this.data, bytes]);
    this.host.archives.set(this.tempPath, { data: this.data, uid: 0, mode: 0o600 });
  }

  writable(): Writable {
    return new Writable({ write: (chunk: Buffer, _e, cb) => void this.write(chunk).then(() => cb(), cb) });
  }

  async append(bytes: Buffer): Promise<void> {
    await this.write(bytes);
  }

  async reopen(): Promise<ArchiveFile> {
    return new FakeArchiveFile(this.tempPath, this.host.archives.get(this.tempPath)!);
  }

  async commit({ replace }: { replace: boolean }): Promise<void> {
    if (this.host.archives.has(this.path) && !replace) throw new NspawnctlError(`${this.path} appeared while the backup was written; nothing was replaced`, { exitCode: 2 });
    this.host.archives.set(this.path, this.host.archives.get(this.tempPath)!);
    this.host.archives.delete(this.tempPath);
    this.host.fs.changes.push(`archive ${this.path}`);
    this.done = true;
  }

  async discard(): Promise<void> {
    if (this.done) return;
    this.host.archives.delete(this.tempPath);
    this.done = true;
  }
}

/** One lock file of a FakeHost: its text, who holds it, and who waits for it (in order). */
interface FakeLock {
  note: string;
  holder?: object;
  waiters: { opener: object; take: () => void }[];
}

/**
 * A Host whose effects all stay in memory. Input files (manifests) live in `inputs`.
 *
 * Lock files live in `locks`, not in `fs` (the real one is reached through a descriptor, not
 * HostFs). Each openLock is one open file description: two of them exclude each other, like
 * flock(2). Taking and releasing a lock is logged in `fs.changes` as "lock PATH" and "unlock PATH",
 * so tests see where it happened among the filesystem's changes.
 */
export class FakeHost implements Host {
  readonly fs = new FakeFs();
  readonly runner = new FakeRunner();
  readonly http = new FakeHttp();
  readonly inputs = new Map<string, string>();
  readonly locks = new Map<string, FakeLock>();
  /** Backup archives by path as given (relative paths are the working directory's). */
  readonly archives = new Map<string, FakeArchive>();
  /** The archive opened next reports a change after this many reads (a file changed under us). */
  archiveChangesAfterReads = Infinity;
  uid = 0;
  pid = 4242;
  signal?: AbortSignal;
  /** Called when an opener starts to wait for a held lock (after it is queued): tests release the holder here. */
  onLockWait?: (path: string) => void;

  constructor(options: { uid?: number; inputs?: Record<string, string> } = {}) {
    if (options.uid !== undefined) this.uid = options.uid;
    for (const [k, v] of Object.entries(options.inputs ?? {})) this.inputs.set(k, v);
  }

  async readInput(path: string): Promise<string> {
    const text = this.inputs.get(path);
    if (text === undefined) throw new NspawnctlError(`cannot read ${path}: no such file`, { exitCode: 2 });
    return text;
  }

  async openArchive(path: string): Promise<ArchiveFile> {
    const archive = this.archives.get(path);
    if (!archive) throw new NspawnctlError(`cannot read ${path}: no such file`, { exitCode: 2 });
    return new FakeArchiveFile(path, archive, this.archiveChangesAfterReads);
  }

  async createArchive(path: string, options: { replace: boolean }): Promise<ArchiveOutput> {
    if (insideMachinePath(posix.resolve('/srv/conf', path))) throw new NspawnctlError(`refusing to write ${path}: ${posix.dirname(posix.resolve('/srv/conf', path))} is inside a machine's root filesystem`, { exitCode: 2 });
    if (this.archives.has(path) && !options.replace) throw new NspawnctlError(`${path} already exists; nothing was written`, { exitCode: 2 });
    return new FakeArchiveOutput(this, path, posix.join(posix.dirname(path), `.${posix.basename(path)}.nspawnctl-tmp`));
  }

  async openLock(path: string): Promise<LockFile> {
    const p = norm(path);
    const lock = this.lockAt(p);
    const opener = {};
    let closed = false;
    const take = () => {
      lock.holder = opener;
      this.fs.changes.push(`lock ${p}`);
    };
    const open = (what: string) => {
      if (closed) throw new Error(`FakeHost: ${what} on a closed lock file ${p}`);
    };
    return {
      tryLock: async () => {
        open('tryLock');
        if (lock.holder === opener) return true;
        if (lock.holder) return false;
        take();
        return true;
      },
      waitLock: () =>
        new Promise<void>((resolve, reject) => {
          open('waitLock');
          if (this.signal?.aborted) return reject(new InterruptedError());
          if (lock.holder === opener) return resolve();
          if (!lock.holder) {
            take();
            return resolve();
          }
          const signal = this.signal;
          const onAbort = () => {
            lock.waiters = lock.waiters.filter((w) => w !== waiter);
            reject(new InterruptedError());
          };
          const waiter = {
            opener,
            take: () => {
              signal?.removeEventListener('abort', onAbort);
              take();
              resolve();
            },
          };
          lock.waiters.push(waiter);
          signal?.addEventListener('abort', onAbort, { once: true });
          this.onLockWait?.(p);
        }),
      readNote: async () => {
        open('readNote');
        return lock.note;
      },
      writeNote: async (text: string) => {
        open('writeNote');
        // Legal on a real descriptor, but nspawnctl writes its note only while it holds the lock.
        if (lock.holder !== opener) throw new Error(`FakeHost: writeNote on ${p} without holding its lock`);
        lock.note = text;
      },
      close: async () => {
        if (closed) return;
        closed = true;
        lock.waiters = lock.waiters.filter((w) => w.opener !== opener);
        if (lock.holder === opener) {
          this.fs.changes.push(`unlock ${p}`);
          this.handOver(lock);
        }
      },
    };
  }

  // --- seeding helpers for locks (not part of Host; they log nothing) ---
  /** Another process holds the lock at `path` and has written `note`. */
  holdLock(path: string, note: string): void {
    const lock = this.lockAt(norm(path));
    if (lock.holder) throw new Error(`FakeHost: ${path} is already locked`);
    lock.holder = { seeded: true };
    lock.note = note;
  }

  /** The process seeded with holdLock ends: its lock is released (its note stays, as after a SIGKILL). */
  endLockHolder(path: string): void {
    const lock = this.lockAt(norm(path));
    if (!lock.holder || !('seeded' in lock.holder)) throw new Error(`FakeHost: ${path} is not held by a seeded process`);
    this.handOver(lock);
  }

  /** Whether anyone (we or a seeded process) holds the lock at `path`. */
  isLocked(path: string): boolean {
    return this.locks.get(norm(path))?.holder !== undefined;
  }

  /** The text of the lock file at `path` ('' if it was never written). */
  lockNote(path: string): string {
    return this.locks.get(norm(path))?.note ?? '';
  }

  private lockAt(path: string): FakeLock {
    let lock = this.locks.get(path);
    if (!lock) {
      lock = { note: '', waiters: [] };
      this.locks.set(path, lock);
    }
    return lock;
  }

  /** The holder is gone: the first waiter, if any, gets the lock. */
  private handOver(lock: FakeLock): void {
    lock.holder = undefined;
    lock.waiters.shift()?.take();
  }

  /** Fails the test when a command ran that no response was scripted for. */
  assertNoUnmatchedCalls(): void {
    if (this.runner.unmatched.length > 0) {
      throw new Error(`unscripted commands ran:\n${this.runner.unmatched.map((a) => `  ${JSON.stringify(a)}`).join('\n')}`);
    }
  }
}

function norm(path: string): string {
  return posix.normalize(posix.join('/', path)).replace(/(.)\/$/, '$1');
}

function enoent(op: string, path: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, ${op} '${path}'`), { code: 'ENOENT' });
}
