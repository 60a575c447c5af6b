// applyPlan groups the steps (the host's network steps, then one group per machine): a failing
// machine stops only its own steps, a host failure or an interrupt stops everything after it;
// summarizeFailures turns the result into the error apply exits with.
import { applyPlan, stepGroup, summarizeFailures } from '../../src/apply/apply';
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
const OPTIONS = { renderer: 'silent' as const, startTimeoutMs: 5000 };

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
    expect(host.runner.argvs().map((a) => a[0])).toEqual(['mmdebstrap']);
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

  // BUG (src/apply/apply.ts applyPlan): the task checks the interrupt before `current = step`, so
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
