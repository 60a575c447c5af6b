// applyPlan groups the steps (the host's network steps, then one group per machine): a failing
// machine stops only its own steps, a host failure or an interrupt stops everything after it;
// summarizeFailures turns the result into the error apply exits with.
import { applyPlan, groupSteps, stepGroup, summarizeFailures } from '../../src/apply/apply';
import { InterruptedError, NspawnctlError } from '../../src/errors';
import { planChanges } from '../../src/plan/plan';
import { Step } from '../../src/plan/steps';
import { desiredFrom, freshState, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { simulateSystemd } from '../helpers/simulated-systemd';

const MANIFEST = `networks:
  br0: { subnet: 10.0.0.0/24 }
machines:
  db:
    network: { bridge: br0, address: 10.0.0.3 }
  web:
    network: { bridge: br0, address: 10.0.0.2 }
`;
/** Two machines and no network: every step belongs to a machine. */
const MACHINES_ONLY = 'machines:\n  db: {}\n  web: {}\n';
// One machine at a time and no image cache: the old, sequential bootstrap-per-machine behaviour.
const OPTIONS = { renderer: 'silent' as const, startTimeoutMs: 5000, jobs: 1 };

function freshPlan(manifest = MANIFEST, stagingDirs: string[] = []) {
  return planChanges(desiredFrom(manifest).desired, freshState({ stagingDirs }), { manifestPath: MANIFEST_PATH, now: '2025-01-01T00:00:00.000Z' });
}

describe('stepGroup', () => {
  test('network steps belong to "host", machine steps (and leftover staging) to their machine', () => {
    const p = freshPlan(MANIFEST, ['old']);
    expect(p.steps.map((s) => `${s.kind}:${stepGroup(s)}`)).toEqual([
      'remove-staging:old',
      'write-record::host',
      'write-file::host',
      'write-file::host',
      'reload-networkd::host',
      'create-machine:db',
      'write-file:db',
      'start-machine:db',
      'create-machine:web',
      'write-file:web',
      'start-machine:web',
    ]);
  });
});

describe('groupSteps', () => {
  test('one group per machine (and the host), in the order each first appears, each with its steps in plan order', () => {
    const p = freshPlan(MANIFEST, ['old']);
    const steps = [...p.steps, p.steps[0]];
    expect(groupSteps(steps).map((g) => [g.name, g.steps.map((s) => s.kind)])).toEqual([
      ['old', ['remove-staging', 'remove-staging']],
      [':host', ['write-record', 'write-file', 'write-file', 'reload-networkd']],
      ['db', ['create-machine', 'write-file', 'start-machine']],
      ['web', ['create-machine', 'write-file', 'start-machine']],
    ]);
  });
});

/** Applies MACHINES_ONLY on a fresh host where SIGINT arrives while db is being bootstrapped. */
async function applyInterruptedDuringBootstrap() {
  const host = makeBootedHost(new FakeHost());
  const interrupt = new AbortController();
  Object.assign(host, { signal: interrupt.signal });
  host.runner.on((argv) => argv[0] === 'mmdebstrap', ({ args }) => {
    host.fs.addDir(args[args.length - 2]);
    interrupt.abort();
    return {};
  });
  simulateSystemd(host);
  const plan = freshPlan(MACHINES_ONLY);
  return { host, plan, result: await applyPlan(host, plan, OPTIONS) };
}

describe('applyPlan', () => {
  test('an interrupt (the host signal aborted) lets the running step finish, then stops: the rest is not attempted', async () => {
    const { host, plan, result } = await applyInterruptedDuringBootstrap();
    expect(plan.steps.map((s) => `${s.kind}:${stepGroup(s)}`)).toEqual(['create-machine:db', 'write-file:db', 'start-machine:db', 'create-machine:web', 'write-file:web', 'start-machine:web']);
    expect(result.done).toEqual([plan.steps[0]]);
    expect(result.failures.map((f) => [f.group, f.error instanceof InterruptedError, f.error.message])).toEqual([['db', true, 'interrupted; the next apply continues from here']]);
    expect(result.skipped).toEqual(['web']);
    expect(host.runner.argvs().map((a) => a[0])).toEqual(['mmdebstrap', 'sync']);
    expect(host.fs.nodes.get('/var/lib/machines/db')?.type).toBe('dir');
    expect(host.fs.nodes.has('/etc/systemd/nspawn/db.nspawn')).toBe(false);

    const err = summarizeFailures(result);
    expect(err).toBeInstanceOf(NspawnctlError);
    expect([err.message, err.exitCode, err.hint, err.cause]).toEqual([
      'apply was interrupted:\n  - machine db: interrupted; the next apply continues from here\n  - not attempted: machine web',
      130,
      'Fix the cause and run apply again: it continues from where this run stopped.',
      result.failures[0].error,
    ]);
  });

  // Regression test for a fixed bug (it was in src/apply/apply.ts applyPlan): the task checks the interrupt before `current = step`, so
  // an interrupt between two steps is reported against the previous step, one that completed
  // (it is also in `done`): here create-machine db instead of the write-file that did not run.
  // `apply --json` then lists the same step under both "applied" and "failures".
  test('an interrupt is reported against the step that did not run, not the one that completed', async () => {
    const { plan, result } = await applyInterruptedDuringBootstrap();
    expect(result.failures.map((f) => f.step)).toEqual([plan.steps[1]]);
    expect(plan.steps[1]).toMatchObject({ kind: 'write-file', owner: { type: 'machine', name: 'db' } });
    expect(result.done).not.toContain(result.failures[0].step);
  });
});

/**
 * Counts how many mmdebstraps run at once. Each one, once started, lets every other pending task
 * run first (event-loop turns, not a timer), so every bootstrap the limit allows has started
 * before any finishes, whatever the machine's load.
 */
function trackConcurrentBootstraps(host: FakeHost): { max: number } {
  const seen = { max: 0 };
  let now = 0;
  const run = host.runner.run.bind(host.runner);
  host.runner.run = async (file, args, options) => {
    if (file !== 'mmdebstrap') return run(file, args, options);
    now++;
    seen.max = Math.max(seen.max, now);
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    now--;
    return run(file, args, options);
  };
  return seen;
}

describe('applyPlan with jobs', () => {
  const THREE = 'machines:\n  a: {}\n  b: {}\n  c: {}\n';

  test.each([
    [1, 1],
    [2, 2],
    [3, 3],
    [5, 3],
  ])('jobs %i: at most that many machines are created at once (here %i of 3)', async (jobs, expected) => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host);
    const seen = trackConcurrentBootstraps(host);
    const plan = freshPlan(THREE);
    const result = await applyPlan(host, plan, { ...OPTIONS, jobs });
    expect(result.failures).toEqual([]);
    expect(seen.max).toBe(expected);
    expect(new Set(result.done)).toEqual(new Set(plan.steps));
    expect(result.done.length).toBe(plan.steps.length);
  });

  test('jobs 2: every host step (network) is done before any machine step starts; each machine\'s steps stay in order', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host, { bridges: ['br0'] });
    const plan = freshPlan(MANIFEST);
    const result = await applyPlan(host, plan, { ...OPTIONS, jobs: 2 });
    expect(result.failures).toEqual([]);
    const hostSteps = plan.steps.filter((s) => stepGroup(s) === ':host');
    expect(hostSteps.map((s) => s.kind)).toEqual(['write-record', 'write-file', 'write-file', 'reload-networkd']);
    expect(result.done.slice(0, 4)).toEqual(hostSteps);
    for (const m of ['db', 'web']) expect(result.done.filter((s) => stepGroup(s) === m)).toEqual(plan.steps.filter((s) => stepGroup(s) === m));
    const argvs = host.runner.argvs().map((a) => a.join(' '));
    expect(argvs.indexOf('networkctl reload')).toBeLessThan(argvs.findIndex((a) => a.startsWith('mmdebstrap')));
    expect(argvs.filter((a) => a.startsWith('mmdebstrap')).length).toBe(2);
  });

  test('jobs 2: a failing machine stops only its own steps; the other one completes', async () => {
    const host = makeBootedHost(new FakeHost());
    host.runner.on((argv) => argv[0] === 'mmdebstrap' && argv.includes('/var/lib/machines/.nspawnctl-db.staging'), { exitCode: 1, stderr: 'E: boom\n' });
    simulateSystemd(host);
    const plan = freshPlan(MACHINES_ONLY);
    const result = await applyPlan(host, plan, { ...OPTIONS, jobs: 2 });
    expect(result.failures.map((f) => [f.group, f.step])).toEqual([['db', plan.steps[0]]]);
    expect(result.done).toEqual(plan.steps.filter((s) => stepGroup(s) === 'web'));
    expect(result.skipped).toEqual([]);
    expect(host.fs.nodes.get('/var/lib/machines/web')?.type).toBe('dir');
    expect(host.fs.nodes.has('/var/lib/machines/db')).toBe(false);
  });
});

describe('summarizeFailures', () => {
  const step = (machine: string): Step => ({ kind: 'start-machine', machine, reason: 'r' });
  test('one line per failure, the group name not repeated, exit 1, the first failure as cause', () => {
    const first = new NspawnctlError('machine a: machine a did not reach "running" within 5 s');
    const err = summarizeFailures({
      done: [step('b'), step('c')],
      failures: [
        { group: 'a', step: step('a'), error: first },
        { group: 'c', step: step('c'), error: new Error('boom') },
      ],
      skipped: [],
    });
    expect([err.message, err.exitCode, err.cause]).toEqual(['apply failed (applied: b):\n  - machine a: machine a did not reach "running" within 5 s\n  - machine c: boom', 1, first]);
  });
});
