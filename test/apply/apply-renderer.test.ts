// applyPlan's use of listr2 beyond the silent renderer the other apply tests use: the plain-line
// renderer apply prints when stdout is not a terminal, a step's progress line, failures, and no
// signal handlers of listr2's own. Written when listr2 went back from 9 to 8 (9 needs Node 20):
// these are the options apply.ts passes, checked against the listr2 that is installed.
import { applyPlan } from '../../src/apply/apply';
import { planChanges } from '../../src/plan/plan';
import { desiredFrom, freshState, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { simulateSystemd } from '../helpers/simulated-systemd';

const MACHINES_ONLY = 'machines:\n  db: {}\n  web: {}\n';

function freshPlan() {
  return planChanges(desiredFrom(MACHINES_ONLY).desired, freshState({}), { manifestPath: MANIFEST_PATH, now: '2025-01-01T00:00:00.000Z' });
}

/** Runs fn with process.stdout and process.stderr captured; returns what was written to each. */
async function captured<T>(fn: () => Promise<T>): Promise<{ value: T; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const spyOut = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => (out.push(String(chunk)), true));
  const spyErr = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (err.push(String(chunk)), true));
  try {
    const value = await fn();
    return { value, stdout: out.join(''), stderr: err.join('') };
  } finally {
    spyOut.mockRestore();
    spyErr.mockRestore();
  }
}

describe('applyPlan with the simple renderer (stdout not a terminal)', () => {
  test('one plain line per started and finished step, grouped by machine; a failure is marked and the other machine still completes', async () => {
    const host = makeBootedHost(new FakeHost());
    host.runner.on((argv) => argv[0] === 'mmdebstrap' && argv.includes('/var/lib/machines/.nspawnctl-db.staging'), { exitCode: 1, stderr: 'E: boom\n' });
    simulateSystemd(host);
    const plan = freshPlan();
    const { value: result, stdout, stderr } = await captured(() => applyPlan(host, plan, { renderer: 'simple', startTimeoutMs: 5000, jobs: 1 }));
    expect(result.failures.map((f) => f.group)).toEqual(['db']);
    expect(result.done.length).toBe(3);
    const text = stdout + stderr;
    const lines = text.split('\n').filter(Boolean);
    // No cursor movement or line erasing: a log file gets plain lines.
    expect(text).not.toMatch(/\x1b\[\d*[ABCDGJK]/);
    // Each machine is a group; web's steps start and finish in plan order, and the group finishes.
    const web = lines.filter((l) => / web|web\.nspawn/.test(l));
    expect(web).toEqual([
      '❯ machine web',
      expect.stringMatching(/^❯ create machine web: bootstrap debian bookworm/),
      expect.stringMatching(/^✔ create machine web: bootstrap debian bookworm/),
      '❯ create /etc/systemd/nspawn/web.nspawn',
      '✔ create /etc/systemd/nspawn/web.nspawn',
      '❯ start web',
      '✔ start web',
      '✔ machine web',
    ]);
    // db's failing step is marked with the command's error, and none of db's later steps start.
    expect(text).toMatch(/✖ create machine db: bootstrap debian bookworm [^\n]*\[FAILED: machine db: command mmdebstrap [^\n]* exited with code 1:\n\s*E: boom\]/);
    expect(lines.filter((l) => /db\.nspawn|start db/.test(l))).toEqual([]);
  });

  test('a step\'s progress (task.output) is printed as its own line', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host);
    const plan = freshPlan();
    const { stdout, stderr } = await captured(() => applyPlan(host, plan, { renderer: 'simple', startTimeoutMs: 5000, jobs: 2 }));
    // createMachine reports what it is doing while it bootstraps.
    expect((stdout + stderr).split('\n').filter((l) => l.startsWith('› '))).toEqual(['› mmdebstrap bookworm (3 packages)', '› mmdebstrap bookworm (3 packages)']);
  });

  test('the silent renderer prints nothing', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host);
    const { value, stdout, stderr } = await captured(() => applyPlan(host, freshPlan(), { renderer: 'silent', startTimeoutMs: 5000, jobs: 2 }));
    expect(value.failures).toEqual([]);
    expect(stdout + stderr).toBe('');
  });
});

describe('applyPlan leaves signals to nspawnctl', () => {
  test('no SIGINT or SIGTERM listener is added while steps run (listr2 would exit(127) on SIGINT)', async () => {
    const host = makeBootedHost(new FakeHost());
    const before = { int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM') };
    const during: { int: number; term: number }[] = [];
    host.runner.on(
      (argv) => argv[0] === 'mmdebstrap',
      ({ args }) => {
        during.push({ int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM') });
        host.fs.addDir(args[args.length - 2]);
        return {};
      },
    );
    simulateSystemd(host);
    const { value } = await captured(() => applyPlan(host, freshPlan(), { renderer: 'simple', startTimeoutMs: 5000, jobs: 2 }));
    expect(value.failures).toEqual([]);
    expect(during.length).toBe(2);
    expect(during).toEqual([before, before]);
  });
});
