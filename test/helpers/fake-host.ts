// An in-memory Host for unit tests: a filesystem with the semantics of createNodeFs, and a
// runner that records every call and answers only from scripted responses.
import { posix } from 'node:path';
import { CommandFailedError, NspawnctlError } from '../../src/errors';
import { FileInfo, HostFs, WriteOptions } from '../../src/host/fs';
import { Host } from '../../src/host/host';
import { isWithin } from '../../src/host/paths';
import { RunOptions, RunResult, Runner } from '../../src/host/runner';

export type FakeNode =
  | { type: 'file'; content: string; mode: number; uid: number; gid: number }
  | { type: 'symlink'; target: string; uid: number; gid: number }
  | { type: 'dir'; mode: number; uid: number; gid: number };

/** In-memory filesystem; `changes` logs every mutation ("write /etc/x", "remove /y", ...). */
export class FakeFs implements HostFs {
  readonly root = '/';
  readonly nodes = new Map<string, FakeNode>([['/', { type: 'dir', mode: 0o755, uid: 0, gid: 0 }]]);
  readonly changes: string[] = [];

  async createExclusive(path: string, content: string, mode: number): Promise<boolean> {
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

  /** Every path below `/`, sorted: for comparing whole trees. */
  paths(): string[] {
    return [...this.nodes.keys()].filter((p) => p !== '/').sort();
  }

  // --- HostFs ---
  async readText(path: string): Promise<string | undefined> {
    const node = this.nodes.get(this.realpath(path));
    return node?.type === 'file' ? node.content : undefined;
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    const node = this.nodes.get(this.resolveParents(path));
    if (!node) return undefined;
    const mode = node.type === 'symlink' ? 0o777 : node.mode;
    const size = node.type === 'file' ? Buffer.byteLength(node.content) : node.type === 'symlink' ? node.target.length : 4096;
    return { type: node.type, mode, uid: node.uid, gid: node.gid, mtimeMs: 0, size };
  }

  async statResolved(path: string): Promise<{ path: string; info: FileInfo } | undefined> {
    const resolved = this.realpath(path);
    const info = await this.stat(resolved);
    return info ? { path: resolved, info } : undefined;
  }

  async readLink(path: string): Promise<string | undefined> {
    const node = this.nodes.get(this.resolveParents(path));
    return node?.type === 'symlink' ? node.target : undefined;
  }

  async listDir(path: string): Promise<string[]> {
    const dir = this.realpath(path);
    if (this.nodes.get(dir)?.type !== 'dir') return [];
    return this.children(dir).map((p) => posix.basename(p)).sort();
  }

  async writeFile(path: string, content: string, options: WriteOptions): Promise<boolean> {
    const p = this.resolveParents(path);
    const node = this.nodes.get(p);
    if (node?.type === 'file') {
      const ownerOk = options.uid === undefined || (node.uid === options.uid && node.gid === (options.gid ?? options.uid));
      if (node.content === content && node.mode === options.mode && ownerOk) return false;
    } else if (node?.type === 'dir') {
      throw new NspawnctlError(`refusing to replace ${path}: it is a directory`);
    }
    this.mkdirp(posix.dirname(p), options.dirMode ?? 0o755, options.uid, options.gid);
    this.checkConfined(path, options.confineTo);
    const uid = options.uid ?? 0;
    this.nodes.set(p, { type: 'file', content, mode: options.mode, uid, gid: options.gid ?? uid });
    this.changes.push(`write ${norm(path)}`);
    return true;
  }

  async writeSymlink(path: string, target: string, options: Omit<WriteOptions, 'mode'>): Promise<boolean> {
    const p = this.resolveParents(path);
    const node = this.nodes.get(p);
    if (node?.type === 'symlink' && node.target === target) return false;
    if (node?.type === 'dir') throw new NspawnctlError(`refusing to replace ${path}: it is a directory or special file`);
    this.mkdirp(posix.dirname(p), options.dirMode ?? 0o755, options.uid, options.gid);
    this.checkConfined(path, options.confineTo);
    const uid = options.uid ?? 0;
    this.nodes.set(p, { type: 'symlink', target, uid, gid: options.gid ?? uid });
    this.changes.push(`symlink ${norm(path)} -> ${target}`);
    return true;
  }

  async removeFile(path: string, options: { confineTo?: string } = {}): Promise<boolean> {
    const p = this.resolveParents(path);
    const node = this.nodes.get(p);
    if (!node) return false;
    this.checkConfined(path, options.confineTo);
    if (node.type === 'dir') throw new NspawnctlError(`refusing to remove ${path}: it is a directory`);
    this.nodes.delete(p);
    this.changes.push(`remove ${norm(path)}`);
    return true;
  }

  async removeTree(path: string): Promise<void> {
    if (posix.normalize(path) === '/' || path === '') throw new NspawnctlError('refusing to remove /');
    const p = this.resolveParents(path);
    for (const key of [...this.nodes.keys()]) if (isWithin(key, p)) this.nodes.delete(key);
    this.changes.push(`remove-tree ${norm(path)}`);
  }

  async rename(from: string, to: string): Promise<void> {
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

  async mkdir(path: string, mode: number, options: { uid?: number; gid?: number; confineTo?: string } = {}): Promise<void> {
    if (options.confineTo) this.checkConfined(path, options.confineTo);
    this.mkdirp(this.resolveParents(path), mode, options.uid, options.gid);
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

  private checkConfined(path: string, confineTo: string | undefined): void {
    if (!confineTo) return;
    const base = this.realpath(confineTo);
    const parent = this.realpath(posix.dirname(path));
    if (!isWithin(parent, base)) {
      throw new NspawnctlError(`refusing to write ${path}: its directory resolves to ${parent}, outside ${confineTo}`);
    }
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

export interface RunCall {
  file: string;
  args: string[];
  options?: RunOptions;
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

/** A Host whose effects all stay in memory. Input files (manifests) live in `inputs`. */
export class FakeHost implements Host {
  readonly fs = new FakeFs();
  readonly runner = new FakeRunner();
  readonly inputs = new Map<string, string>();
  uid = 0;
  pid = 4242;

  constructor(options: { uid?: number; inputs?: Record<string, string> } = {}) {
    if (options.uid !== undefined) this.uid = options.uid;
    for (const [k, v] of Object.entries(options.inputs ?? {})) this.inputs.set(k, v);
  }

  async readInput(path: string): Promise<string> {
    const text = this.inputs.get(path);
    if (text === undefined) throw new NspawnctlError(`cannot read ${path}: no such file`, { exitCode: 2 });
    return text;
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
