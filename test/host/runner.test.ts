// What progress shows of a program's output: lines split at every line end a program may use,
// blank ones dropped, and nothing a machine printed reaching the terminal raw.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LineSplitter, outputLines } from '../../src/host/runner';
import { REPO_ROOT } from '../helpers/run-command';

describe('outputLines', () => {
  test('splits at \\n, \\r\\n and a lone \\r, and drops blank lines', () => {
    expect(outputLines('Get:1 a\r\nGet:2 b\n\n  \nProgress 10%\rProgress 20%\r')).toEqual(['Get:1 a', 'Get:2 b', 'Progress 10%', 'Progress 20%']);
  });

  test('escapes control characters: ESC and CSI sequences, C1 controls, DEL, bell; keeps tabs', () => {
    expect(outputLines('\u001b[2J\u001b]0;owned\u0007title\tok\u009b31m\u007f')).toEqual(['\\x1b[2J\\x1b]0;owned\\x07title\tok\\u009b31m\\x7f']);
  });
});

// The real runner runs programs with execa, which Jest cannot load (an ES module imported on first
// use): these tests run the built runner (npm run build) in a child node and read back its result.
// Each waits for the child's exit; an interrupt is sent once the program said it runs.
describe('createExecaRunner (built, in a child process)', () => {
  const DIST = join(REPO_ROOT, 'dist');
  const node = process.execPath;

  beforeAll(() => {
    if (!existsSync(join(DIST, 'host', 'runner.js')) || statSync(join(REPO_ROOT, 'src', 'host', 'runner.ts')).mtimeMs > statSync(join(DIST, 'host', 'runner.js')).mtimeMs) {
      throw new Error('dist/ is missing or older than src/host/runner.ts: run `npm run build` before these tests');
    }
  });

  /** Runs `body` (an async function body with `runner`, `interrupt` and `node` in scope) in a child node; returns what it returned, or the error's class and message. */
  function inChild(body: string): unknown {
    const script = [
      `const { createExecaRunner } = require(${JSON.stringify(join(DIST, 'host', 'runner.js'))});`,
      'const interrupt = new AbortController();',
      'const runner = createExecaRunner(interrupt.signal);',
      `const node = ${JSON.stringify(node)};`,
      `(async () => { ${body} })().then((v) => process.stdout.write(JSON.stringify(v)), (e) => process.stdout.write(JSON.stringify({ error: e.constructor.name, ...(process.env.DEBUG_RUNNER ? { message: e.message } : {}) })));`,
    ].join('\n');
    return JSON.parse(execFileSync(node, ['-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  }

  test('onOutput: every piece of stdout and stderr as text as it comes, none kept in the result', () => {
    expect(
      inChild(`
        const seen = { stdout: '', stderr: '' };
        const r = await runner.run(node, ['-e', "process.stdout.write('out 1\\\\nout 2\\\\n'); process.stderr.write('err\\\\n')"], { onOutput: (t, s) => { seen[s] += t; } });
        return { r, seen };`),
    ).toEqual({ r: { exitCode: 0, stdout: '', stderr: '' }, seen: { stdout: 'out 1\nout 2\n', stderr: 'err\n' } });
  });

  test('onOutput: a character split between two chunks arrives whole', () => {
    // 1 + 2 * 100000 bytes: a pipe's 64 KiB chunks end in the middle of an "é".
    expect(
      inChild(`
        let text = '';
        await runner.run(node, ['-e', "process.stdout.write('a' + '\u00e9'.repeat(100000))"], { onOutput: (t) => { text += t; } });
        return text === 'a' + '\u00e9'.repeat(100000);`),
    ).toBe(true);
  });

  test('waitOnInterrupt: an interrupt does not stop the program; its own exit status comes back', () => {
    expect(
      inChild(`
        return await runner.run(node, ['-e', "process.stdout.write('ready'); setTimeout(() => process.exit(7), 300)"], {
          waitOnInterrupt: true, allowFailure: true, onOutput: (t) => { if (t.includes('ready')) interrupt.abort(); },
        });`),
    ).toEqual({ exitCode: 7, stdout: '', stderr: '' });
  });

  test('without waitOnInterrupt, an interrupt stops the program (InterruptedError)', () => {
    expect(
      inChild(`
        return await runner.run(node, ['-e', "process.stdout.write('ready'); setTimeout(() => process.exit(7), 60000)"], {
          allowFailure: true, onOutput: (t) => { if (t.includes('ready')) interrupt.abort(); },
        });`),
    ).toEqual({ error: 'InterruptedError' });
  });

  test('afterInterrupt: runs although the interrupt has fired, and is not stopped by it', () => {
    expect(
      inChild(`
        interrupt.abort('SIGINT');
        const refused = await runner.run(node, ['-e', '0']).then(() => 'ran', (e) => e.constructor.name);
        const r = await runner.run(node, ['-e', "setTimeout(() => process.exit(4), 100)"], { afterInterrupt: true, allowFailure: true, timeoutMs: 60000 });
        return { refused, r };`),
    ).toEqual({ refused: 'InterruptedError', r: { exitCode: 4, stdout: '', stderr: '' } });
  });

  test('waitOnInterrupt: the program runs in its own process group (a Ctrl-C at the terminal reaches nspawnctl alone)', () => {
    const groups = inChild(`
      const pgid = (pid) => require('child_process').execFileSync('ps', ['-o', 'pgid=', '-p', String(pid)], { encoding: 'utf8' }).trim();
      const r = await runner.run(node, ['-e', "process.stdout.write(require('child_process').execFileSync('ps', ['-o', 'pgid=', '-p', String(process.pid)], { encoding: 'utf8' }).trim())"], { waitOnInterrupt: true });
      return { child: r.stdout, ours: pgid(process.pid) };`) as { child: string; ours: string };
    expect(Number(groups.child)).toBeGreaterThan(0);
    expect(groups.child).not.toBe(groups.ours);
  });

  test('inheritStdio: the program writes to our own stdout; nothing is captured; its exit status comes back', () => {
    const out = execFileSync(
      node,
      ['-e', `require(${JSON.stringify(join(DIST, 'host', 'runner.js'))}).createExecaRunner().run(${JSON.stringify(node)}, ['-e', "process.stdout.write('direct'); process.exit(3)"], { inheritStdio: true, allowFailure: true }).then((r) => process.stdout.write(' ' + JSON.stringify(r)))`],
      { encoding: 'utf8' },
    );
    expect(out).toBe('direct {"exitCode":3,"stdout":"","stderr":""}');
  });
});

describe('LineSplitter: whole lines for onLine, however the output was cut into reads', () => {
  const split = (chunks: (string | Buffer)[]) => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    chunks.forEach((c) => s.write(c));
    const beforeEnd = [...lines];
    s.end();
    return { beforeEnd, lines };
  };

  test('a JSON line cut between two reads arrives once, whole', () => {
    const line = '{"event":"step","status":"start","group":"web","step":"start web"}';
    expect(split([`${line.slice(0, 20)}`, `${line.slice(20)}\nnext`]).lines).toEqual([line, 'next']);
  });

  test('a character cut between its bytes is not mangled', () => {
    const bytes = Buffer.from('café\n', 'utf8');
    expect(split([bytes.subarray(0, 4), bytes.subarray(4)]).lines).toEqual(['café']);
  });

  test('a carriage return ends a line (progress redraws); the unfinished rest waits for the end', () => {
    expect(split(['10%\r20%\r3', '0%'])).toEqual({ beforeEnd: ['10%', '20%'], lines: ['10%', '20%', '30%'] });
  });

  test('a line longer than 64 KiB without an end is passed on rather than held without bound', () => {
    const { beforeEnd } = split(['x'.repeat(40_000), 'y'.repeat(40_000)]);
    expect(beforeEnd).toEqual(['x'.repeat(40_000) + 'y'.repeat(40_000)]);
  });

  test('control characters are escaped, as outputLines does', () => {
    expect(split(['a\u001b[2Jb\n']).lines).toEqual(['a\\x1b[2Jb']);
  });
});
