// How the real host reads a manifest (Host.readInput): only a regular file is opened, and that
// without blocking; and no reading function ever takes more than the limit + 1 bytes from a source
// that does not end. Regression tests for the newcomer issue: `plan /dev/zero` read without limit
// (24 GB in 11 minutes), a FIFO hung even through two SIGINTs, a directory gave a raw EISDIR.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InterruptedError, ManifestError, NspawnctlError } from '../../src/errors';
import { CappedStream, createRealHost, OnRead, readAtMost, readStreamAtMost } from '../../src/host/host';

const LIMIT = 1024 * 1024;
const NOT_REGULAR_HINT = 'A manifest is a YAML file such as machines.yaml. To give one through a pipe, pass - and write it to standard input: nspawnctl plan - < machines.yaml';

/** What readInput threw (or undefined when it returned). */
async function readError(path: string, limit = LIMIT): Promise<NspawnctlError | undefined> {
  return createRealHost().readInput(path, limit).then(
    () => undefined,
    (e: NspawnctlError) => e,
  );
}

describe('readAtMost: plain reads, each asking only for what is left', () => {
  /** A source that never ends (/dev/zero), counting what it hands out and what it was asked for. */
  function endless() {
    const counts = { calls: 0, delivered: 0, lastAsk: 0 };
    const read = async (into: Buffer, offset: number, length: number) => {
      counts.calls++;
      counts.lastAsk = length;
      // Like a device: at most 64 KiB per read, however much is asked.
      const n = Math.min(length, 65536);
      into.fill(0x61, offset, offset + n);
      counts.delivered += n;
      return n;
    };
    return { read, counts };
  }

  test('an endless source gives exactly cap bytes, never one more', async () => {
    const source = endless();
    const bytes = await readAtMost(source.read, LIMIT + 1);
    expect(bytes.length).toBe(LIMIT + 1);
    expect(source.counts.delivered).toBe(LIMIT + 1);
    // Seventeen reads: sixteen of 64 KiB, then one asking for the single byte left.
    expect([source.counts.calls, source.counts.lastAsk]).toEqual([17, 1]);
  });

  test('a short source is read to its end', async () => {
    let left = Buffer.from('machines: {}\n');
    const bytes = await readAtMost(async (into, offset, length) => {
      const n = Math.min(length, 5, left.length);
      left.copy(into, offset, 0, n);
      left = left.subarray(n);
      return n;
    }, LIMIT + 1);
    expect(bytes.toString()).toBe('machines: {}\n');
  });

  test('an aborted signal stops it before the next read', async () => {
    const source = endless();
    const controller = new AbortController();
    const reading = readAtMost(
      async (into, offset, length) => {
        // SIGTERM arrives during the second read.
        if (source.counts.calls === 1) controller.abort();
        return source.read(into, offset, length);
      },
      LIMIT + 1,
      controller.signal,
    );
    await expect(reading).rejects.toThrow(new InterruptedError(undefined, 'reading the manifest from standard input'));
    expect(source.counts.calls).toBe(2);
  });
});

describe('readStreamAtMost: pipes, sockets and terminals, read into what is left of one buffer', () => {
  /**
   * A stream that keeps producing, the way Node's `onread` works: before each chunk it takes the
   * buffer onread.buffer() gives, writes at most its length, and reports the count to the callback.
   */
  function endlessStream(chunk = 65536) {
    const counts = { written: 0, destroyed: false };
    let onread: OnRead;
    let stopped = false;
    const stream: CappedStream & { destroy(): void } = {
      on: () => stream,
      resume: () => {
        const pump = () => {
          if (stopped || counts.destroyed) return;
          const buffer = onread.buffer();
          const n = Math.min(buffer.length, chunk);
          counts.written += n;
          if (onread.callback(n, buffer) === false) stopped = true;
          setImmediate(pump);
        };
        setImmediate(pump);
        return stream;
      },
      destroy: () => {
        counts.destroyed = true;
      },
    };
    return {
      open: (o: OnRead) => {
        onread = o;
        return stream;
      },
      counts,
    };
  }

  // 100,000-byte chunks do not divide the cap: the last read can only be as long as what is left.
  test('an endless pipe gives exactly cap bytes, then the stream is destroyed', async () => {
    const source = endlessStream(100_000);
    const bytes = await readStreamAtMost(source.open, LIMIT + 1);
    expect(bytes.length).toBe(LIMIT + 1);
    expect(source.counts.written).toBe(LIMIT + 1);
    expect(source.counts.destroyed).toBe(true);
  });

  test('a signal ends the wait: InterruptedError, and the stream is destroyed', async () => {
    const controller = new AbortController();
    let destroyed = false;
    // A pipe nobody ever writes to.
    const silent: CappedStream = { on: () => silent, resume: () => silent, destroy: () => (destroyed = true) };
    const reading = readStreamAtMost(() => silent, LIMIT + 1, controller.signal);
    controller.abort();
    await expect(reading).rejects.toThrow('interrupted while reading the manifest from standard input; nothing was changed');
    await expect(reading).rejects.toBeInstanceOf(InterruptedError);
    expect(destroyed).toBe(true);
  });
});

describe('readInput on the real filesystem', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nspawnctl-input-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a directory: exit 2 saying a manifest must be a regular file (was a raw EISDIR)', async () => {
    const sub = join(dir, 'conf');
    mkdirSync(sub);
    const err = await readError(sub);
    expect(err).toBeInstanceOf(NspawnctlError);
    expect([err?.message, err?.exitCode, err?.hint]).toEqual([`cannot read ${sub}: it is a directory; a manifest must be a regular file`, 2, NOT_REGULAR_HINT]);
  });

  // Opened with O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a
  // writer, and fstat refuses it. Were it opened plainly, this await would never end.
  test('a FIFO nobody writes to: refused (exit 2), not waited on', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const err = await readError(fifo);
    expect([err?.message, err?.exitCode, err?.hint]).toEqual([`cannot read ${fifo}: it is a FIFO (named pipe); a manifest must be a regular file`, 2, NOT_REGULAR_HINT]);
  });

  test('/dev/zero: refused as a device (exit 2) before anything is read', async () => {
    const err = await readError('/dev/zero');
    expect([err?.message, err?.exitCode]).toEqual(['cannot read /dev/zero: it is a character device; a manifest must be a regular file', 2]);
  });

  test('a socket: refused (exit 2), saying what it is', async () => {
    const path = join(dir, 'sock');
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      const err = await readError(path);
      expect([err?.message, err?.exitCode]).toEqual([`cannot read ${path}: it is a socket; a manifest must be a regular file`, 2]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('a missing file: exit 2, no such file', async () => {
    const err = await readError(join(dir, 'nope.yaml'));
    expect([err?.message, err?.exitCode]).toEqual([`cannot read ${join(dir, 'nope.yaml')}: no such file`, 2]);
  });

  test('a regular file one byte over the limit: the size problem at 1:1 (exit 2); one at the limit is read', async () => {
    const file = join(dir, 'big.yaml');
    writeFileSync(file, Buffer.alloc(101, 0x23));
    const err = await readError(file, 100);
    expect(err).toBeInstanceOf(ManifestError);
    expect([err?.message, err?.exitCode]).toEqual([`${file}:1:1: file is larger than 100 bytes; a manifest is hand-written text`, 2]);
    writeFileSync(file, Buffer.alloc(100, 0x23));
    await expect(createRealHost().readInput(file, 100)).resolves.toBe('#'.repeat(100));
  });

  test('a symlink to a regular file is read (only what it leads to must be regular)', async () => {
    const file = join(dir, 'real.yaml');
    writeFileSync(file, 'machines: {}\n');
    execFileSync('ln', ['-s', file, join(dir, 'link.yaml')]);
    await expect(createRealHost().readInput(join(dir, 'link.yaml'), LIMIT)).resolves.toBe('machines: {}\n');
  });

  test('an aborted Host signal: nothing is read', async () => {
    const file = join(dir, 'small.yaml');
    writeFileSync(file, 'machines: {}\n');
    const controller = new AbortController();
    controller.abort();
    await expect(createRealHost('/', controller.signal).readInput(file, LIMIT)).rejects.toThrow(`interrupted while reading ${file}; nothing was changed`);
  });
});
