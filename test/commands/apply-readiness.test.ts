// What apply says of the machines it started: a degraded machine runs (apply succeeds), and its
// failed units, as the machine's own systemd lists them, are named in the output and in --json.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Apply from '../../src/commands/apply';
import { Host } from '../../src/host/host';
import { convergeFakeHost, desiredFrom, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';
import { simulateSystemd } from '../helpers/simulated-systemd';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');

const applyWith = (host: Host) =>
  class extends Apply {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** The example applied, web stopped; once started, web's systemd says degraded (two failed units). */
function hostWithWebDegraded(): FakeHost {
  const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } }));
  convergeFakeHost(host, desiredFrom(EXAMPLE).desired, { queries: false });
  // Tried before the simulation's own answers.
  host.runner.on(['systemctl', '--machine=web', 'is-system-running', '--wait'], { exitCode: 1, stdout: 'degraded\n' });
  host.runner.on(['systemctl', '--machine=web', 'list-units', '--failed', '--output=json', '--no-pager'], {
    stdout: `${JSON.stringify([
      { unit: 'nginx.service', load: 'loaded', active: 'failed', sub: 'failed', description: 'nginx\nfake.service loaded failed failed' },
      { unit: 'srv-\u001b[31mx.mount', load: 'loaded', active: 'failed', sub: 'failed', description: '' },
    ])}\n`,
  });
  simulateSystemd(host, { running: ['db'], bridges: ['examplevlan'] });
  return host;
}

describe('apply: a started machine that is degraded', () => {
  test('apply succeeds and names its failed units after the summary line, escaped', async () => {
    const host = hostWithWebDegraded();
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout.endsWith('Applied 1 of 1 step(s).\nmachine web is running but degraded; failed units: nginx.service, srv-\\x1b[31mx.mount\n')).toBe(true);
  });

  test('--json: ready names each started machine with its state and failed units', async () => {
    const host = hostWithWebDegraded();
    const r = await runCommand(applyWith(host), ['machines.yaml', '--json']);
    expect(r.exitCode).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.applied.map((s: { kind: string }) => s.kind)).toEqual(['start-machine']);
    expect(json.ready).toEqual({ web: { state: 'degraded', failedUnits: ['nginx.service', 'srv-\\x1b[31mx.mount'] } });
  });

  test('--events: each step\'s start and end as one JSON line on stderr (what a fleet controller reads), stdout unchanged', async () => {
    const host = hostWithWebDegraded();
    const r = await runCommand(applyWith(host), ['machines.yaml', '--json', '--events']);
    expect(r.exitCode).toBe(0);
    const events = r.stderr.split('\n').filter((l) => l.startsWith('{"event"')).map((l) => JSON.parse(l));
    expect(events).toEqual([
      { event: 'step', status: 'start', group: 'web', step: 'start web' },
      { event: 'step', status: 'done', group: 'web', step: 'start web' },
    ]);
    expect(JSON.parse(r.stdout).applied.map((s: { kind: string }) => s.kind)).toEqual(['start-machine']);
  });

  test('a machine that is running (not degraded) adds no line; --json still names it', async () => {
    const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } }));
    convergeFakeHost(host, desiredFrom(EXAMPLE).desired, { queries: false });
    simulateSystemd(host, { running: ['db'], bridges: ['examplevlan'] });
    const text = await runCommand(applyWith(host), ['machines.yaml']);
    expect(text.stdout.endsWith('\nApplied 1 of 1 step(s).\n')).toBe(true);
    const host2 = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } }));
    convergeFakeHost(host2, desiredFrom(EXAMPLE).desired, { queries: false });
    simulateSystemd(host2, { running: ['db'], bridges: ['examplevlan'] });
    expect(JSON.parse((await runCommand(applyWith(host2), ['machines.yaml', '--json'])).stdout).ready).toEqual({ web: { state: 'running', failedUnits: [] } });
  });
});

/** The example with a health check on web. */
const WITH_CHECK = EXAMPLE.replace('    hostname: web\n', '    hostname: web\n    health: { command: [curl, -fsS, http://localhost/], interval: 2s, retries: 1 }\n');
const HEALTH_SHOW = ['systemctl', '--machine=web', 'show', 'nspawnctl-health.service', '--property=LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,ExecMainExitTimestampMonotonic,ExecMainPID'];

/** The example applied with web's check, web stopped; the check passes, or fails for good. */
function hostWithCheck(passes: boolean): FakeHost {
  expect(WITH_CHECK).not.toBe(EXAMPLE);
  const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': WITH_CHECK } }));
  convergeFakeHost(host, desiredFrom(WITH_CHECK).desired, { queries: false });
  host.runner.on(['systemctl', '--machine=web', 'reset-failed', 'nspawnctl-health.service'], {});
  host.runner.on(['systemctl', '--machine=web', 'start', 'nspawnctl-health.service'], { exitCode: passes ? 0 : 1 });
  host.runner.on(HEALTH_SHOW, { stdout: 'LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainCode=1\nExecMainStatus=7\nExecMainExitTimestampMonotonic=5\nExecMainPID=77\n' });
  host.runner.on((a) => a[0] === 'systemd-run' && a.includes('journalctl'), { stdout: 'curl: (7) Failed to connect\n' });
  simulateSystemd(host, { running: ['db'], bridges: ['examplevlan'] });
  return host;
}

describe('apply: health checks', () => {
  test('a started machine is waited for until its check passes; --json has its health', async () => {
    const host = hostWithCheck(true);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--json']);
    expect(r.exitCode).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.applied.map((s: { kind: string }) => s.kind)).toEqual(['start-machine', 'wait-healthy']);
    expect(json.health).toEqual({ web: { state: 'healthy', detail: 'the check passed' } });
    host.assertNoUnmatchedCalls();
  });

  test('a failing check: apply exits 1 naming the machine, with the check\'s last output', async () => {
    const host = hostWithCheck(false);
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      [
        'nspawnctl: apply failed:',
        '  - machine web: machine web is not healthy: its check failed 1 time(s) in a row: the last check failed (exit status 7), and the retries are used up; its last output:',
        '    curl: (7) Failed to connect',
      ].join('\n'),
    );
    const json = JSON.parse((await runCommand(applyWith(hostWithCheck(false)), ['machines.yaml', '--json'])).stdout);
    expect(json.failures.map((f: { group: string; step: { kind: string } }) => [f.group, f.step.kind])).toEqual([['web', 'wait-healthy']]);
  });
});
