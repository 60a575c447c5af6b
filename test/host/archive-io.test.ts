// The host side of backup archives with real files and real programs (no root needed): one
// descriptor per archive read, new archives that appear whole or not at all, and pipelines that
// hash, count, cap, and name the program that failed.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createArchiveOutput, openArchiveFile, runPipeline } from '../../src/host/archive-io';
import { CommandFailedError, InterruptedError, NspawnctlError } from '../../src/errors';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nspawnctl-archive-io-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
function bytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7) % 251;
  return b;
}

describe('runPipeline', () => {
  test('feeds a range of the file through every program; hashes the input and counts each stage', async () => {
    const data = bytes(3 * 1024 * 1024 + 17);
    writeFileSync(join(dir, 'in'), data);
    const file = await openArchiveFile(join(dir, 'in'));
    const seen: number[] = [];
    const r = await runPipeline([{ file: 'cat', args: [] }, { file: 'od', args: ['-An', '-v', '-tx1'] }, { file: 'wc', args: ['-c'] }], {
      input: { file, start: 5, end: data.length - 3 },
      output: { kind: 'text', maxBytes: 100 },
      onProgress: (p) => seen.push(p.input),
    });
    await file.close();
    const range = data.subarray(5, data.length - 3);
    expect(r.inputSha256).toBe(sha256(range));
    expect(r.progress.input).toBe(range.length);
    expect(r.progress.stages[0]).toBe(range.length);
    expect(Number(r.stdout.trim())).toBe(r.progress.stages[1]);
    expect(seen[seen.length - 1]).toBe(range.length);
    expect(seen.length).toBeGreaterThan(1);
  });

  test('a file output is hashed, and lines reach onLine as latin1 (one character per byte)', async () => {
    writeFileSync(join(dir, 'in'), Buffer.from('a\nb\xff\nlast', 'latin1'));
    const file = await openArchiveFile(join(dir, 'in'));
    const lines: string[] = [];
    await runPipeline([{ file: 'cat', args: [] }], { input: { file, start: 0, end: file.size }, output: { kind: 'lines', onLine: (l) => lines.push(l), maxLineBytes: 100 } });
    expect(lines).toEqual(['a', 'b\xff', 'last']);
    const out = await createArchiveOutput(join(dir, 'copy'), { replace: false });
    const r = await runPipeline([{ file: 'cat', args: [] }], { input: { file, start: 0, end: file.size }, output: { kind: 'file', file: out } });
    await out.commit({ replace: false });
    await file.close();
    expect(r.outputSha256).toBe(sha256(readFileSync(join(dir, 'in'))));
    expect(readFileSync(join(dir, 'copy'))).toEqual(readFileSync(join(dir, 'in')));
  });

  test('the failure names the program that caused it, not the one that lost its pipe', async () => {
    writeFileSync(join(dir, 'in'), bytes(4 * 1024 * 1024));
    const file = await openArchiveFile(join(dir, 'in'));
    const input = { file, start: 0, end: file.size };
    // The first program fails; the next one sees a short input and is content.
    await expect(runPipeline([{ file: 'false', args: [] }, { file: 'cat', args: [] }], { output: { kind: 'discard' } })).rejects.toMatchObject({ argv: ['false'], code: 1 });
    // The last program fails at once; cat, still writing, dies of SIGPIPE and is not blamed.
    const err = await runPipeline([{ file: 'cat', args: [] }, { file: 'sh', args: ['-c', 'echo refused >&2; exit 3'] }], { input, output: { kind: 'discard' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandFailedError);
    expect(err).toMatchObject({ argv: ['sh', '-c', 'echo refused >&2; exit 3'], code: 3 });
    expect((err as Error).message).toContain('refused');
    await file.close();
  });

  test('a program that succeeded after closing its input early fails nothing when the one before it also succeeded (tar leaving padding unread)', async () => {
    const done = join(dir, 'writer-done');
    // The writer's few bytes are written and it exits 0; the reader has closed its input and waits
    // until the writer is done, then exits 0: Node's copy between them finds the reader gone.
    const writer = { file: 'sh', args: ['-c', 'printf 0123456789; : > "$1"', 'sh', done] };
    const reader = { file: 'sh', args: ['-c', 'exec 0<&-; while [ ! -e "$1" ]; do sleep 0.01; done', 'sh', done] };
    const r = await runPipeline([writer, reader], { output: { kind: 'text', maxBytes: 10 } });
    expect(r.stdout).toBe('');
    // The input file's link is not excused: a first program that closes its input early fails it.
    writeFileSync(join(dir, 'in'), bytes(4 * 1024 * 1024));
    const file = await openArchiveFile(join(dir, 'in'));
    await expect(runPipeline([{ file: 'sh', args: ['-c', 'exec 0<&-; exit 0'] }], { input: { file, start: 0, end: file.size }, output: { kind: 'discard' } })).rejects.toBeInstanceOf(NspawnctlError);
    await file.close();
  });

  test('lastMayStopEarly: the last program may be done before the rest (tar --occurrence)', async () => {
    writeFileSync(join(dir, 'in'), bytes(4 * 1024 * 1024));
    const file = await openArchiveFile(join(dir, 'in'));
    const input = { file, start: 0, end: file.size };
    const r = await runPipeline([{ file: 'cat', args: [] }, { file: 'head', args: ['-c', '4'] }], { input, output: { kind: 'text', maxBytes: 10 }, lastMayStopEarly: true });
    expect(Buffer.from(r.stdout, 'utf8')).toEqual(bytes(4));
    // Without it, the same early end is a failure of whoever lost its pipe.
    await expect(runPipeline([{ file: 'cat', args: [] }, { file: 'head', args: ['-c', '4'] }], { input, output: { kind: 'text', maxBytes: 10 } })).rejects.toThrow();
    // The file is still usable afterwards.
    expect((await file.read(0, 3)).length).toBe(3);
    await file.close();
  });

  test('more output than allowed, or a line too long, fails (exit 2) instead of filling memory', async () => {
    writeFileSync(join(dir, 'in'), 'x'.repeat(5000));
    const file = await openArchiveFile(join(dir, 'in'));
    const input = { file, start: 0, end: file.size };
    await expect(runPipeline([{ file: 'cat', args: [] }], { input, output: { kind: 'text', maxBytes: 100 } })).rejects.toMatchObject({ message: 'output is larger than 100 bytes', exitCode: 2 });
    await expect(runPipeline([{ file: 'cat', args: [] }], { input, output: { kind: 'lines', onLine: () => undefined, maxLineBytes: 100 } })).rejects.toMatchObject({ exitCode: 2 });
    await file.close();
  });

  test('an interrupt stops every program and throws InterruptedError', async () => {
    const abort = new AbortController();
    const p = runPipeline([{ file: 'sleep', args: ['30'] }, { file: 'cat', args: [] }], { output: { kind: 'discard' } }, abort.signal);
    setTimeout(() => abort.abort(), 100);
    await expect(p).rejects.toBeInstanceOf(InterruptedError);
  });

  test('a program that is not installed is named', async () => {
    await expect(runPipeline([{ file: 'no-such-program-nspawnctl', args: [] }], { output: { kind: 'discard' } })).rejects.toThrow(/no-such-program-nspawnctl: not found in/);
  });
});

describe('openArchiveFile', () => {
  test('reads a regular file through one descriptor, whatever happens to its name', async () => {
    writeFileSync(join(dir, 'a'), 'original content');
    const file = await openArchiveFile(join(dir, 'a'));
    rmSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a'), 'another file entirely');
    expect((await file.read(0, 8)).toString()).toBe('original');
    await file.close();
  });

  test('notices a change to the file it holds: a write, or its removal', async () => {
    writeFileSync(join(dir, 'a'), 'original content');
    writeFileSync(join(dir, 'b'), 'original content');
    const a = await openArchiveFile(join(dir, 'a'));
    const b = await openArchiveFile(join(dir, 'b'));
    expect([await a.unchanged(), await b.unchanged()]).toEqual([true, true]);
    writeFileSync(join(dir, 'a'), 'changed content!');
    rmSync(join(dir, 'b'));
    expect([await a.unchanged(), await b.unchanged()]).toEqual([false, false]);
    await a.close();
    await b.close();
  });

  test('a FIFO is refused without waiting for a writer; so are a directory and a missing file (exit 2)', async () => {
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    mkdirSync(join(dir, 'd'));
    await expect(openArchiveFile(join(dir, 'fifo'))).rejects.toMatchObject({ exitCode: 2, message: expect.stringContaining('not a regular file') });
    await expect(openArchiveFile(join(dir, 'd'))).rejects.toMatchObject({ exitCode: 2, message: expect.stringContaining('not a regular file') });
    await expect(openArchiveFile(join(dir, 'none'))).rejects.toMatchObject({ exitCode: 2, message: `cannot read ${join(dir, 'none')}: no such file` });
  });
});

describe('createArchiveOutput', () => {
  const write = async (path: string, text: string, replace = false) => {
    const out = await createArchiveOutput(path, { replace });
    await out.append(Buffer.from(text));
    await out.commit({ replace });
  };

  test('the temporary is hidden, 0600, beside the file; the file appears only at commit', async () => {
    const out = await createArchiveOutput(join(dir, 'web.tar.zst'), { replace: false });
    await out.append(Buffer.from('part'));
    const names = readdirSync(dir);
    expect(names).toEqual([expect.stringMatching(/^\.web\.tar\.zst\.nspawnctl-[0-9a-f]{12}$/)]);
    expect(execFileSync('stat', ['-c', '%a', join(dir, names[0])], { encoding: 'utf8' }).trim()).toBe('600');
    const back = await out.reopen();
    expect((await back.read(0, 10)).toString()).toBe('part');
    await back.close();
    await out.commit({ replace: false });
    expect(readdirSync(dir)).toEqual(['web.tar.zst']);
    expect(readFileSync(join(dir, 'web.tar.zst'), 'utf8')).toBe('part');
  });

  test('an existing file is refused (exit 2) unless replace; then it is replaced whole', async () => {
    await write(join(dir, 'a'), 'first');
    await expect(createArchiveOutput(join(dir, 'a'), { replace: false })).rejects.toMatchObject({ exitCode: 2, message: `${join(dir, 'a')} already exists; nothing was written` });
    await write(join(dir, 'a'), 'second', true);
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('second');
    expect(readdirSync(dir)).toEqual(['a']);
  });

  test('a file that appears meanwhile is not replaced (link, not rename); a dangling symlink counts', async () => {
    const out = await createArchiveOutput(join(dir, 'a'), { replace: false });
    await out.append(Buffer.from('mine'));
    symlinkSync('/nonexistent-target', join(dir, 'a'));
    await expect(out.commit({ replace: false })).rejects.toMatchObject({ exitCode: 2 });
    expect(readdirSync(dir)).toEqual(['a']);
    expect(existsSync('/nonexistent-target')).toBe(false);
  });

  test('a directory is never replaced; discard leaves nothing', async () => {
    mkdirSync(join(dir, 'd'));
    await expect(createArchiveOutput(join(dir, 'd'), { replace: true })).rejects.toMatchObject({ exitCode: 2, message: `refusing to write ${join(dir, 'd')}: it is a directory` });
    const out = await createArchiveOutput(join(dir, 'x'), { replace: false });
    await out.append(Buffer.from('half'));
    await out.discard();
    expect(readdirSync(dir)).toEqual(['d']);
  });

  test('a missing directory is a clear error (exit 2)', async () => {
    await expect(createArchiveOutput(join(dir, 'no', 'x'), { replace: false })).rejects.toMatchObject({ exitCode: 2, message: `cannot write ${join(dir, 'no', 'x')}: its directory ${join(dir, 'no')} does not exist` });
  });

  test('the directory is opened once: swapping it for a symlink afterwards does not redirect the write', async () => {
    mkdirSync(join(dir, 'out'));
    mkdirSync(join(dir, 'elsewhere'));
    const out = await createArchiveOutput(join(dir, 'out', 'a'), { replace: false });
    await out.append(Buffer.from('x'));
    execFileSync('mv', [join(dir, 'out'), join(dir, 'moved')]);
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'out'));
    await out.commit({ replace: false });
    expect(readdirSync(join(dir, 'elsewhere'))).toEqual([]);
    expect(readdirSync(join(dir, 'moved'))).toEqual(['a']);
  });
});

test('a pipeline of a program that ignores its input does not hang on a large one', async () => {
  writeFileSync(join(dir, 'in'), bytes(4 * 1024 * 1024));
  chmodSync(join(dir, 'in'), 0o600);
  const file = await openArchiveFile(join(dir, 'in'));
  await expect(runPipeline([{ file: 'true', args: [] }], { input: { file, start: 0, end: file.size }, output: { kind: 'discard' } })).rejects.toBeInstanceOf(NspawnctlError);
  await file.close();
});
