// The real CLI (node bin/run.js, built by `npm run build`) run as a child process on input that
// never ends or never comes: it must exit with the right code and message, and a SIGTERM or SIGINT
// must stop it while it waits. Every test waits for the child's exit, never for a time.
// Regression tests for the newcomer issue (plan /dev/zero read without limit; a FIFO as manifest
// hung through two SIGINTs; `plan -` did not read standard input).
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/run-command';

const BIN = join(REPO_ROOT, 'bin', 'run.js');
const BUILT = join(REPO_ROOT, 'oclif.manifest.json');
const SIZE_PROBLEM = '<stdin>:1:1: standard input is larger than 1048576 bytes; a manifest is hand-written text\nhint: Fix the manifest; nothing on the host was changed. See man nspawnctl.\n';
const INTERRUPTED = 'nspawnctl: interrupted while reading the manifest from standard input; nothing was changed\n';

/** The newest modification time of any file below `dir`. */
function newest(dir: string): number {
  return Math.max(...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)));
}

beforeAll(() => {
  // These tests run what `npm run build` made; an old build would test old code.
  if (!existsSync(BUILT) || newest(join(REPO_ROOT, 'src')) > statSync(BUILT).mtimeMs) {
    throw new Error('dist/ is missing or older than src/: run `npm run build` before these tests');
  }
});

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the CLI; `stdin` is a pipe the test holds (never closed unless it closes it), or an fd. */
function start(args: string[], stdin: 'pipe' | number = 'pipe', cwd = REPO_ROOT): Run {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: [stdin, 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  const run: Run = { child, stdout: '', stderr: '', exited: new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal }))) };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (run.stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (run.stderr += d));
  // Writes to a child that has exited fail with EPIPE; that is expected here.
  child.stdin?.on('error', () => undefined);
  return run;
}

/**
 * A FIFO as the CLI's standard input, with our end to write to. A pipe holds 64 KiB: a longer
 * write completes only once the reader has taken the rest (spawn's own 'pipe' is a socket pair,
 * whose buffers hold far more, so it could not tell).
 */
function fifoStdin(name: string): { readFd: number; writer: Socket } {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  // Non-blocking opens: the read end first, so that opening the write end does not wait.
  const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = new Socket({ fd: openSync(path, constants.O_WRONLY | constants.O_NONBLOCK), readable: false, writable: true });
  writer.on('error', () => undefined);
  return { readFd, writer };
}

/** Resolves once the reader has taken at least `bytes` - 64 KiB of `bytes` written (see fifoStdin). */
function feed(writer: Socket, bytes: number): Promise<void> {
  const line = '# a comment that fills the pipe\n';
  const text = line.repeat(Math.ceil(bytes / line.length));
  return new Promise((resolve, reject) => writer.write(text, (err) => (err ? reject(err) : resolve())));
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nspawnctl-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a manifest that never ends or never comes', () => {
  test('plan FIFO (nobody writes to it): exit 2 without waiting for a writer, saying a manifest must be a regular file', async () => {
    const fifo = join(dir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    const run = start(['plan', fifo]);
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.stderr).toBe(
      `nspawnctl: cannot read ${fifo}: it is a FIFO (named pipe); a manifest must be a regular file\n` +
        'hint: A manifest is a YAML file such as machines.yaml. To give one through a pipe, pass - and write it to standard input: nspawnctl plan - < machines.yaml\n',
    );
  });

  test('plan /dev/zero: exit 2, a device is not read at all', async () => {
    const run = start(['plan', '/dev/zero']);
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.stderr.split('\n')[0]).toBe('nspawnctl: cannot read /dev/zero: it is a character device; a manifest must be a regular file');
  });

  test('plan DIR: exit 2 with a message, not a raw EISDIR', async () => {
    const run = start(['plan', dir]);
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.stderr.split('\n')[0]).toBe(`nspawnctl: cannot read ${dir}: it is a directory; a manifest must be a regular file`);
  });

  // The read is capped (test/host/read-input.test.ts counts the bytes): it ends with the size problem.
  test('plan - < /dev/zero: exit 2 with the size problem', async () => {
    const zero = openSync('/dev/zero', constants.O_RDONLY);
    try {
      const run = start(['plan', '-'], zero);
      expect(await run.exited).toEqual({ code: 2, signal: null });
      expect(run.stderr).toBe(SIZE_PROBLEM);
    } finally {
      closeSync(zero);
    }
  });

  test('plan - with a pipe that never ends: exit 2 with the size problem', async () => {
    const run = start(['plan', '-']);
    let writing = true;
    void run.exited.then(() => (writing = false));
    const chunk = '#'.repeat(65536);
    const pump = () => {
      if (writing) run.child.stdin!.write(chunk, (err) => !err && pump());
    };
    pump();
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.stderr).toBe(SIZE_PROBLEM);
  });

  test.each(['SIGTERM', 'SIGINT'] as const)('plan - with stdin open and then silent: %s stops it while it reads (exit 130)', async (signal) => {
    const { readFd, writer } = fifoStdin(`stdin-${signal}`);
    const run = start(['plan', '-'], readFd);
    closeSync(readFd);
    try {
      // 200 KiB of comments (within the limit): once the write completes, the CLI has read at
      // least 136 KiB of them and is inside its read, waiting for more that never comes.
      await feed(writer, 200 * 1024);
      run.child.kill(signal);
      expect(await run.exited).toEqual({ code: 130, signal: null });
      expect(run.stderr).toBe(`nspawnctl: ${signal} received, stopping (again to force)\n${INTERRUPTED}`);
    } finally {
      writer.destroy();
    }
  });
});

describe('plan - reads the manifest from standard input', () => {
  test('its problems are located in <stdin>', async () => {
    const run = start(['plan', '-']);
    run.child.stdin!.end('machines:\n  Web: {}\n');
    expect(await run.exited).toEqual({ code: 2, signal: null });
    expect(run.stderr).toBe(
      '<stdin>:2:3: machines.Web: machine names are 1-12 characters of a-z, 0-9 and -, not starting or ending with - (vb-NAME must fit in 15 characters)\n' +
        'hint: Fix the manifest; nothing on the host was changed. See man nspawnctl.\n',
    );
  });

  // render touches nothing of the host, so a valid manifest can go all the way here.
  test('render - --out DIR renders the manifest given on standard input', async () => {
    const out = join(dir, 'rendered');
    const run = start(['render', '-', '--out', out]);
    run.child.stdin!.end('machines:\n  web: {}\n');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.stdout.split('\n').slice(-2)).toEqual([`2 file(s), 2 written (${out}: created).`, '']);
    expect(existsSync(join(out, 'etc/systemd/nspawn/web.nspawn'))).toBe(true);
  });
});
