// The host lock. With a FakeHost: a free lock is taken; a busy one is refused with --no-wait
// (exit 5, naming the holder) or waited for (announced once) and taken when the holder ends; an
// interrupt ends the wait. For real, with flock(1) and separate node processes in a temporary
// directory (no root needed): eight runs started at once hold it one at a time; a holder killed
// with SIGKILL leaves nothing that blocks the next run; --no-wait names a live holder's PID.
import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import * as ts from 'typescript';
import { InterruptedError, NspawnctlError } from '../../src/errors';
import { createRealHost } from '../../src/host/host';
import { acquireLock, Holder, LOCK_PATH, LockOptions } from '../../src/host/lock';
import { FakeHost } from '../helpers/fake-host';
import { seedLockHolder } from '../helpers/lock';

const NOW = '2025-01-01T00:00:00.000Z';
const HOLDER: Holder = { pid: 777, command: 'apply /srv/conf/machines.yaml', since: '2024-12-31T23:59:00.000Z' };
/** What our note holds: FakeHost's pid 4242. */
const OURS = `${JSON.stringify({ pid: 4242, command: 'destroy web', since: NOW })}\n`;
const BUSY = 'another nspawnctl is changing this host: PID 777 (apply /srv/conf/machines.yaml, since 2024-12-31T23:59:00.000Z)';

/** Options that record every onWait call. */
function options(over: Partial<LockOptions> = {}) {
  const waits: (Holder | undefined)[] = [];
  const opts: LockOptions = { command: 'destroy web', wait: true, now: () => NOW, onWait: (h) => waits.push(h), ...over };
  return { opts, waits };
}

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('acquireLock with a FakeHost', () => {
  test('a free lock is taken without waiting and names us; release clears the note and unlocks, once', async () => {
    const h = new FakeHost();
    const { opts, waits } = options();
    const release = await acquireLock(h, opts);
    expect([h.isLocked(LOCK_PATH), h.lockNote(LOCK_PATH), h.fs.changes, waits]).toEqual([true, OURS, [`lock ${LOCK_PATH}`], []]);
    await release();
    await release();
    expect([h.isLocked(LOCK_PATH), h.lockNote(LOCK_PATH), h.fs.changes]).toEqual([false, '', [`lock ${LOCK_PATH}`, `unlock ${LOCK_PATH}`]]);
  });

  test('the note of a holder that died is no obstacle, even with wait: false: it is replaced by ours', async () => {
    const h = new FakeHost();
    seedLockHolder(h, HOLDER, false);
    const { opts, waits } = options({ wait: false });
    await acquireLock(h, opts);
    expect([h.lockNote(LOCK_PATH), h.fs.changes, waits]).toEqual([OURS, [`lock ${LOCK_PATH}`], []]);
  });

  test('a live holder with wait: false: exit code 5 naming its PID, command and start; nothing changes', async () => {
    const h = new FakeHost();
    const theirs = seedLockHolder(h, HOLDER, true);
    const { opts, waits } = options({ wait: false });
    const err = await rejection(acquireLock(h, opts));
    expect(err).toBeInstanceOf(NspawnctlError);
    expect(err).toMatchObject({ message: BUSY, exitCode: 5, hint: 'Wait for it, or run again with --wait (the default).' });
    expect([h.isLocked(LOCK_PATH), h.lockNote(LOCK_PATH), h.fs.changes, waits]).toEqual([true, theirs, [], []]);
    // Our file was closed: once the holder ends, nobody holds the lock.
    h.endLockHolder(LOCK_PATH);
    expect(h.isLocked(LOCK_PATH)).toBe(false);
  });

  test.each([
    ['empty (it has just taken the lock)', ''],
    ['half-written', '{"pid":77'],
    ['not a holder', '{"pid":"777"}\n'],
  ])('a holder whose note is %s is refused without a name, and waited for as "undefined"', async (_name, note) => {
    const h = new FakeHost();
    h.holdLock(LOCK_PATH, note);
    expect(await rejection(acquireLock(h, options({ wait: false }).opts))).toMatchObject({
      message: 'another nspawnctl is changing this host (it has just taken the lock and not named itself yet)',
      exitCode: 5,
    });
    h.onLockWait = () => h.endLockHolder(LOCK_PATH);
    const { opts, waits } = options();
    await acquireLock(h, opts);
    expect(waits).toEqual([undefined]);
  });

  test('a live holder with wait: announced once, then it waits, and takes the lock when the holder ends', async () => {
    const h = new FakeHost();
    seedLockHolder(h, HOLDER, true);
    const events: string[] = [];
    const { opts } = options({ onWait: (holder) => events.push(`onWait ${holder?.pid}`) });
    h.onLockWait = () => {
      // Queued and not holding it yet; the holder ends now.
      events.push(`waiting, changes: ${h.fs.changes.length}`);
      h.endLockHolder(LOCK_PATH);
    };
    const release = await acquireLock(h, opts);
    expect(events).toEqual(['onWait 777', 'waiting, changes: 0']);
    expect([h.lockNote(LOCK_PATH), h.fs.changes]).toEqual([OURS, [`lock ${LOCK_PATH}`]]);
    await release();
    expect(h.isLocked(LOCK_PATH)).toBe(false);
  });

  test('an interrupt while waiting ends it with InterruptedError (exit 130); the holder keeps the lock, we never get it', async () => {
    const h = new FakeHost();
    const theirs = seedLockHolder(h, HOLDER, true);
    const interrupt = new AbortController();
    h.signal = interrupt.signal;
    h.onLockWait = () => interrupt.abort();
    const { opts, waits } = options();
    const err = await rejection(acquireLock(h, opts));
    expect(err).toBeInstanceOf(InterruptedError);
    expect(err).toMatchObject({ exitCode: 130 });
    expect([waits, h.isLocked(LOCK_PATH), h.lockNote(LOCK_PATH), h.fs.changes]).toEqual([[HOLDER], true, theirs, []]);
    h.endLockHolder(LOCK_PATH);
    expect([h.isLocked(LOCK_PATH), h.fs.changes]).toEqual([false, []]);
  });

  test('an interrupt that came before the wait: InterruptedError without waiting', async () => {
    const h = new FakeHost();
    seedLockHolder(h, HOLDER, true);
    const interrupt = new AbortController();
    interrupt.abort();
    h.signal = interrupt.signal;
    let queued = false;
    h.onLockWait = () => (queued = true);
    expect(await rejection(acquireLock(h, options().opts))).toBeInstanceOf(InterruptedError);
    expect([queued, h.fs.changes]).toEqual([false, []]);
  });

  test('two runs in one FakeHost exclude each other, like two open files: the second is refused naming the first', async () => {
    const h = new FakeHost();
    const release = await acquireLock(h, options().opts);
    expect(await rejection(acquireLock(h, options({ wait: false, command: 'apply x.yaml' }).opts))).toMatchObject({
      message: `another nspawnctl is changing this host: PID 4242 (destroy web, since ${NOW})`,
    });
    await release();
    await acquireLock(h, options({ wait: false }).opts);
    expect(h.fs.changes).toEqual([`lock ${LOCK_PATH}`, `unlock ${LOCK_PATH}`, `lock ${LOCK_PATH}`]);
  });

  test('when our note cannot be written, the lock is released again and the error is reported', async () => {
    const h = new FakeHost();
    const open = h.openLock.bind(h);
    h.openLock = async (path) => ({
      ...(await open(path)),
      writeNote: async () => {
        throw new Error('ENOSPC: no space left on device, write');
      },
    });
    await expect(acquireLock(h, options().opts)).rejects.toThrow('ENOSPC');
    expect([h.isLocked(LOCK_PATH), h.fs.changes]).toEqual([false, [`lock ${LOCK_PATH}`, `unlock ${LOCK_PATH}`]]);
  });
});

/** Finds two holders at once in a log of "enter PID" / "exit PID" lines; returns what it saw. */
function checkLog(log: string): { problems: string[]; entered: number[]; most: number } {
  const problems: string[] = [];
  const entered: number[] = [];
  const inside = new Set<number>();
  let most = 0;
  for (const line of log.split('\n').filter(Boolean)) {
    const [what, pidText] = line.split(' ');
    const pid = Number(pidText);
    if (what === 'enter') {
      if (inside.size > 0) problems.push(`${pid} entered while ${[...inside].join(', ')} held the lock`);
      inside.add(pid);
      entered.push(pid);
      most = Math.max(most, inside.size);
    } else if (what === 'exit' && inside.has(pid)) {
      inside.delete(pid);
    } else {
      problems.push(`unexpected line: ${line}`);
    }
  }
  if (inside.size > 0) problems.push(`never left: ${[...inside].join(', ')}`);
  return { problems, entered, most };
}

test('the log check finds two holders at once (so the race test below can fail)', () => {
  expect(checkLog('enter 1\nexit 1\nenter 2\nexit 2\n')).toEqual({ problems: [], entered: [1, 2], most: 1 });
  expect(checkLog('enter 1\nenter 2\nexit 1\nexit 2\n')).toEqual({ problems: ['2 entered while 1 held the lock'], entered: [1, 2], most: 2 });
  expect(checkLog('enter 1\n').problems).toEqual(['never left: 1']);
});

// A child process running the real acquireLock (createRealHost, so flock(1)) on the lock file
// given on its command line. It reports on stdout: "ready", "locked", "waited"/"free", or the
// error message. Modes:
//   race LOCK LOG  prints "ready", waits for a line on stdin, takes the lock (waiting), appends
//                  "enter PID" to LOG, holds it a moment, appends "exit PID", releases
//   hold LOCK      takes the lock, collects garbage, prints "locked", and holds the lock until stdin
//                  closes or it is killed
//   try LOCK       takes the lock with wait: false; exits with the error's exit code when refused
const CHILD = `
const { appendFileSync } = require('node:fs');
const { createRealHost } = require('./src/host/host.js');
const { acquireLock } = require('./src/host/lock.js');
const [mode, path, log] = process.argv.slice(2);
const host = createRealHost('/');
const say = (text) => process.stdout.write(text + '\\n');
const stdinLine = () => new Promise((resolve) => process.stdin.once('data', resolve));
const stdinEnd = () => new Promise((resolve) => process.stdin.on('end', resolve).resume());
async function main() {
  if (mode === 'race') {
    say('ready');
    await stdinLine();
    let waited = false;
    const release = await acquireLock(host, { command: 'race', wait: true, path, onWait: () => (waited = true) });
    appendFileSync(log, 'enter ' + process.pid + '\\n');
    // Held a moment, so the others pile up behind it (nothing waits on this time).
    await new Promise((resolve) => setTimeout(resolve, 10));
    appendFileSync(log, 'exit ' + process.pid + '\\n');
    await release();
    say(waited ? 'waited' : 'free');
  } else if (mode === 'hold') {
    // The release function is dropped at once: nothing but our descriptor keeps the lock, and a
    // garbage collection must not close it.
    await acquireLock(host, { command: 'hold', wait: false, path });
    await new Promise((resolve) => setImmediate(resolve));
    global.gc();
    say('locked');
    await stdinEnd();
  } else if (mode === 'try') {
    try {
      await acquireLock(host, { command: 'try', wait: false, path });
      say('got it');
    } catch (err) {
      say(err.message);
      process.exitCode = err.exitCode;
    }
  }
}
main().catch((err) => {
  process.stderr.write(String(err && err.stack));
  process.exitCode = 99;
});
`;

/** A child process with its stdout lines, a promise for a given line, and one for its exit. */
class Child {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';
  private readonly listeners: (() => void)[] = [];

  constructor(dir: string, args: string[]) {
    this.proc = spawn(process.execPath, ['--expose-gc', join(dir, 'child.js'), ...args], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    let pending = '';
    this.proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (pending + chunk).split('\n');
      pending = parts.pop()!;
      this.lines.push(...parts);
      for (const l of this.listeners) l();
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => this.proc.on('close', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Resolves when the child has printed `line`; rejects if it exits first. */
  until(line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => this.lines.includes(line) && resolve();
      this.listeners.push(check);
      check();
      void this.exited.then(() => {
        check();
        reject(new Error(`child ${this.pid} exited before printing "${line}"; stdout: ${JSON.stringify(this.lines)}, stderr: ${this.stderr}`));
      });
    });
  }
}

describe('the real lock: flock(1) on a file in a temporary directory, separate processes', () => {
  let dir: string;
  let lock: string;
  const children: Child[] = [];
  const start = (...args: string[]) => {
    const c = new Child(dir, args);
    children.push(c);
    return c;
  };

  beforeAll(() => {
    // The children run src/ as JavaScript: transpiled here once, beside their script.
    dir = mkdtempSync(join(tmpdir(), 'nspawnctl-lock-'));
    const src = join(__dirname, '..', '..', 'src');
    const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : []));
    for (const file of walk(src)) {
      const out = join(dir, 'src', relative(src, file)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(out), { recursive: true });
      const js = ts.transpileModule(readFileSync(file, 'utf8'), { fileName: file, compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } });
      writeFileSync(out, js.outputText);
    }
    writeFileSync(join(dir, 'child.js'), CHILD);
  });

  beforeEach(() => {
    lock = join(mkdtempSync(join(dir, 'run-')), 'nspawnctl.lock');
  });

  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
      await c.exited;
    }
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('eight runs started at once, over the note a dead holder left: each holds the lock in turn, never two at once', async () => {
    writeFileSync(lock, `${JSON.stringify({ pid: 999999, command: 'apply dead.yaml', since: NOW })}\n`);
    const log = join(dirname(lock), 'holders.log');
    writeFileSync(log, '');
    const racers = Array.from({ length: 8 }, () => start('race', lock, log));
    await Promise.all(racers.map((c) => c.until('ready')));
    for (const c of racers) c.proc.stdin!.end('go\n');
    const exits = await Promise.all(racers.map((c) => c.exited));
    expect(exits).toEqual(racers.map(() => ({ code: 0, signal: null })));

    const seen = checkLog(readFileSync(log, 'utf8'));
    expect(seen.problems).toEqual([]);
    expect(seen.most).toBe(1);
    expect([...seen.entered].sort()).toEqual(racers.map((c) => c.pid).sort());
    const outcomes = racers.map((c) => c.lines[c.lines.length - 1]);
    expect(outcomes.every((o) => o === 'waited' || o === 'free')).toBe(true);
    // Let the numbers show in the test output, for the record.
    process.stderr.write(`lock race: ${seen.entered.length} of ${racers.length} held the lock, at most ${seen.most} at once; ${outcomes.filter((o) => o === 'waited').length} had to wait\n`);
    // The file stays (never removed), empty, mode 0600.
    expect([readFileSync(lock, 'utf8'), statSync(lock).mode & 0o777]).toEqual(['', 0o600]);
  }, 60_000);

  test('a holder killed with SIGKILL leaves its note but no lock: the next run gets it at once, even with wait: false', async () => {
    const holder = start('hold', lock);
    await holder.until('locked');
    expect(JSON.parse(readFileSync(lock, 'utf8'))).toMatchObject({ pid: holder.pid, command: 'hold' });
    holder.proc.kill('SIGKILL');
    expect(await holder.exited).toEqual({ code: null, signal: 'SIGKILL' });

    expect(JSON.parse(readFileSync(lock, 'utf8'))).toMatchObject({ pid: holder.pid });
    const release = await acquireLock(createRealHost('/'), { command: 'after', wait: false, path: lock, now: () => NOW });
    expect(readFileSync(lock, 'utf8')).toBe(`${JSON.stringify({ pid: process.pid, command: 'after', since: NOW })}\n`);
    await release();
  }, 60_000);

  test('--no-wait against a live holder in another process: exit code 5 naming its PID; free again once it exits', async () => {
    const holder = start('hold', lock);
    await holder.until('locked');
    const refused = start('try', lock);
    expect(await refused.exited).toEqual({ code: 5, signal: null });
    expect(refused.lines).toEqual([expect.stringMatching(new RegExp(`^another nspawnctl is changing this host: PID ${holder.pid} \\(hold, since \\S+\\)$`))]);

    holder.proc.stdin!.end();
    expect(await holder.exited).toEqual({ code: 0, signal: null });
    const again = start('try', lock);
    expect(await again.exited).toEqual({ code: 0, signal: null });
    expect(again.lines).toEqual(['got it']);
  }, 60_000);

  test('a run that waits announces the holder once and gets the lock when the holder ends', async () => {
    const holder = start('hold', lock);
    await holder.until('locked');
    const waits: (Holder | undefined)[] = [];
    const release = await acquireLock(createRealHost('/'), {
      command: 'waiter',
      wait: true,
      path: lock,
      onWait: (h) => {
        waits.push(h);
        holder.proc.stdin!.end();
      },
    });
    expect(waits).toEqual([{ pid: holder.pid, command: 'hold', since: expect.any(String) }]);
    expect(JSON.parse(readFileSync(lock, 'utf8'))).toMatchObject({ pid: process.pid, command: 'waiter' });
    await release();
    expect(await holder.exited).toEqual({ code: 0, signal: null });
  }, 60_000);

  test('an interrupt while waiting stops flock(1) and rejects with InterruptedError; the lock is not ours afterwards', async () => {
    const holder = start('hold', lock);
    await holder.until('locked');
    const interrupt = new AbortController();
    const err = await rejection(
      acquireLock(createRealHost('/', interrupt.signal), {
        command: 'waiter',
        wait: true,
        path: lock,
        // By the next turn of the event loop, flock(1) is running (spawned as the wait starts).
        onWait: () => setImmediate(() => interrupt.abort()),
      }),
    );
    expect(err).toBeInstanceOf(InterruptedError);
    holder.proc.stdin!.end();
    await holder.exited;
    const after = start('try', lock);
    expect(await after.exited).toEqual({ code: 0, signal: null });
  }, 60_000);

  test('a lock file left with mode 0644 (by an older nspawnctl) is made 0600: other users could hold a flock on it', async () => {
    writeFileSync(lock, '');
    chmodSync(lock, 0o644);
    const release = await acquireLock(createRealHost('/'), { command: 'x', wait: false, path: lock });
    expect(statSync(lock).mode & 0o777).toBe(0o600);
    await release();
  }, 60_000);
});
