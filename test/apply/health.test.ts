// Health checks at apply time and for status: the state read from the check's service (as the
// machine's systemd reports it), waiting for a pass (bounded, polled through an injected clock),
// the last output read inside the machine and escaped, and the exact systemctl calls.
import { runStep } from '../../src/apply/apply';
import { capOutput, interpretHealth, readHealth, reloadHealth, waitHealthy } from '../../src/apply/health';
import { NspawnctlError } from '../../src/errors';
import { HealthCheck } from '../../src/manifest/health';
import { desiredFrom } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { inMachineArgv } from '../helpers/simulated-systemd';

const PID = '4242';
const SHOW = ['systemctl', '--machine=web', 'show', 'nspawnctl-health.service', '--property=LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,ExecMainExitTimestampMonotonic,ExecMainPID'];
const RESET = ['systemctl', '--machine=web', 'reset-failed', 'nspawnctl-health.service'];
const START = ['systemctl', '--machine=web', 'start', 'nspawnctl-health.service'];
// The run's lines by the PID that opened its output stream: there even when journald saw the process gone.
const JOURNAL = inMachineArgv('web', ['journalctl', '--no-pager', '--quiet', '--output=cat', '--boot', '_SYSTEMD_UNIT=nspawnctl-health.service', `_PID=${PID}`]);
const SYNC = inMachineArgv('web', ['journalctl', '--sync']);
const CHECK: HealthCheck = { command: ['curl', '-fsS', 'http://localhost/'], intervalSec: 2, timeoutSec: 2, retries: 2, onFailure: 'none', restartLimit: 3, restartWindowSec: 3600 };

/** systemctl show output for these properties. */
const props = (p: Record<string, string | number>) =>
  `${Object.entries({ LoadState: 'loaded', Result: 'success', ExecMainCode: 0, ExecMainStatus: 0, ExecMainExitTimestampMonotonic: 0, ExecMainPID: PID, ...p })
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`;
const PASSED = props({ ActiveState: 'inactive', SubState: 'dead', ExecMainCode: 1, ExecMainExitTimestampMonotonic: 5_000_000 });
const RETRYING = props({ ActiveState: 'activating', SubState: 'auto-restart', Result: 'exit-code', ExecMainCode: 1, ExecMainStatus: 7, ExecMainExitTimestampMonotonic: 5_000_000 });
const USED_UP = props({ ActiveState: 'failed', SubState: 'failed', Result: 'exit-code', ExecMainCode: 1, ExecMainStatus: 7, ExecMainExitTimestampMonotonic: 9_000_000 });

/** A clock that only the injected sleep moves. */
function fakeTime(start = 1_000_000) {
  let t = start;
  const slept: number[] = [];
  return { now: () => t, sleep: async (ms: number) => void (slept.push(ms), (t += ms)), slept };
}

describe('interpretHealth', () => {
  const parse = (text: string) => Object.fromEntries(text.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
  test.each([
    ['the last run passed', PASSED, 'healthy', 'the last check passed'],
    ['never ran', props({ ActiveState: 'inactive', SubState: 'dead' }), 'unknown', 'no check has run since the machine started'],
    ['failed, to be run again', RETRYING, 'unhealthy', 'the last check failed (exit status 7); it runs again after the interval'],
    ['failed, retries used up', USED_UP, 'unhealthy', 'the last check failed (exit status 7), and the retries are used up'],
    ['timed out', props({ ActiveState: 'activating', SubState: 'auto-restart', Result: 'timeout', ExecMainCode: 2, ExecMainStatus: 15 }), 'unhealthy', 'the last check timed out; it runs again after the interval'],
    ['killed', props({ ActiveState: 'failed', SubState: 'failed', Result: 'signal', ExecMainCode: 2, ExecMainStatus: 9 }), 'unhealthy', 'the last check was killed by signal 9, and the retries are used up'],
    ['running now', props({ ActiveState: 'activating', SubState: 'start' }), 'unknown', 'a check is running'],
    ['passed, its count being reset', props({ ActiveState: 'activating', SubState: 'start-post', ExecMainCode: 1, ExecMainStatus: 0, ExecMainExitTimestampMonotonic: 5_000_000 }), 'healthy', 'the last check passed'],
    ['start-post without a passing check', props({ ActiveState: 'activating', SubState: 'start-post', ExecMainCode: 1, ExecMainStatus: 1 }), 'unknown', 'a check is running'],
    ['not loaded', props({ LoadState: 'not-found', ActiveState: 'inactive', SubState: 'dead' }), 'unknown', 'the check is not loaded in the machine (apply installs it)'],
    ['something else, escaped', props({ ActiveState: 'reloading\u001b[2J', SubState: 'x' }), 'unknown', "the check's service is reloading\\x1b[2J/x"],
  ])('%s: %s', (_what, text, state, detail) => {
    expect(interpretHealth(parse(text))).toEqual({ state, detail });
  });
});

describe('readHealth', () => {
  test('with its last output: the journal of that run, read by the machine\'s journalctl inside it, escaped and capped', async () => {
    const host = new FakeHost();
    const long = 'x'.repeat(300);
    host.runner.on(SHOW, { stdout: RETRYING }).on(JOURNAL, { stdout: `${Array.from({ length: 12 }, (_, i) => `line ${i}`).join('\n')}\ncurl: (7) \u001b[31mrefused\n${long}\n` });
    expect(await readHealth(host, 'web', { output: true })).toEqual({
      state: 'unhealthy',
      detail: 'the last check failed (exit status 7); it runs again after the interval',
      output: ['line 4', 'line 5', 'line 6', 'line 7', 'line 8', 'line 9', 'line 10', 'line 11', 'curl: (7) \\x1b[31mrefused', `${'x'.repeat(200)}...`],
    });
  });

  test('a main PID that is not one is not put on a command line', async () => {
    const host = new FakeHost();
    host.runner.on(SHOW, { stdout: props({ ActiveState: 'inactive', ExecMainExitTimestampMonotonic: 1, ExecMainPID: '1 --all' }) });
    expect(await readHealth(host, 'web', { output: true })).toEqual({ state: 'healthy', detail: 'the last check passed' });
    expect(host.runner.argvs()).toEqual([SHOW]);
  });

  test("the machine's systemd does not answer: unknown", async () => {
    const host = new FakeHost();
    host.runner.on(SHOW, { exitCode: 1, stderr: 'Failed to connect to bus\n' });
    expect(await readHealth(host, 'web')).toEqual({ state: 'unknown', detail: "the machine's systemd did not answer" });
  });

  test('capOutput drops blank lines and keeps the last ten', () => {
    expect(capOutput('a\r\n\n  \nb\n')).toEqual(['a', 'b']);
  });
});

describe('waitHealthy', () => {
  test('the first run passes: a fresh count, one start, done', async () => {
    const host = new FakeHost();
    host.runner.on(RESET, {}).on(START, {});
    const time = fakeTime();
    expect(await waitHealthy(host, 'web', CHECK, { timeoutMs: 90_000, ...time })).toEqual({ state: 'healthy', detail: 'the check passed' });
    expect(host.runner.argvs()).toEqual([RESET, START]);
    // The start is a oneshot's: it returns when the run is over, bounded by the time left.
    expect(host.runner.calls[1].options).toEqual({ allowFailure: true, timeoutMs: 90_000 });
    expect(time.slept).toEqual([]);
  });

  test('the first run fails, a retry passes: healthy, after looking once a second', async () => {
    const host = new FakeHost();
    host.runner.on(RESET, {}).on(START, { exitCode: 1 }).on(SHOW, { stdout: RETRYING }, 3).on(SHOW, { stdout: PASSED });
    const time = fakeTime();
    expect(await waitHealthy(host, 'web', CHECK, { timeoutMs: 90_000, ...time })).toEqual({ state: 'healthy', detail: 'the last check passed' });
    expect(time.slept).toEqual([1000, 1000, 1000]);
  });

  test('the retries are used up: not healthy, naming the machine, with the last output and how to run the check', async () => {
    const host = new FakeHost();
    host.runner.on(RESET, {}).on(START, { exitCode: 1 }).on(SHOW, { stdout: RETRYING }, 1).on(SHOW, { stdout: USED_UP }).on(SYNC, {}).on(JOURNAL, { stdout: 'curl: (7) Failed to connect to localhost port 80\n' });
    const err = (await waitHealthy(host, 'web', CHECK, { timeoutMs: 90_000, ...fakeTime() }).catch((e: unknown) => e)) as NspawnctlError;
    expect([err.message, err.hint]).toEqual([
      'machine web is not healthy: its check failed 2 time(s) in a row: the last check failed (exit status 7), and the retries are used up; its last output:\n    curl: (7) Failed to connect to localhost port 80',
      'Run the check by hand: nspawnctl exec web -- curl -fsS http://localhost/',
    ]);
  });

  test('still failing when the time is up: not healthy within the timeout', async () => {
    const host = new FakeHost();
    host.runner.on(RESET, {}).on(START, { exitCode: 1 }).on(SHOW, { stdout: RETRYING }).on(SYNC, {}).on(JOURNAL, {});
    const time = fakeTime();
    await expect(waitHealthy(host, 'web', CHECK, { timeoutMs: 5000, ...time })).rejects.toThrow(
      'machine web is not healthy: its check did not pass within 5 s: the last check failed (exit status 7); it runs again after the interval',
    );
    // A check that printed nothing: the journal is synced and read once, with no waiting.
    expect(time.slept).toEqual([1000, 1000, 1000, 1000, 1000]);
    expect(host.runner.argvs().slice(-2)).toEqual([SYNC, JOURNAL]);
  });

  test("a failed run's output: the machine's journal is synced first (journald writes out what was queued before), then read once", async () => {
    const host = new FakeHost();
    host.runner.on(RESET, {}).on(START, { exitCode: 1 }).on(SHOW, { stdout: USED_UP }).on(SYNC, {}).on(JOURNAL, { stdout: 'curl: (7) Failed to connect\n' });
    const time = fakeTime();
    const err = (await waitHealthy(host, 'web', CHECK, { timeoutMs: 90_000, ...time }).catch((e: unknown) => e)) as NspawnctlError;
    expect(err.message).toBe('machine web is not healthy: its check failed 2 time(s) in a row: the last check failed (exit status 7), and the retries are used up; its last output:\n    curl: (7) Failed to connect');
    expect(host.runner.argvs()).toEqual([RESET, START, SHOW, SYNC, JOURNAL]);
    expect(time.slept).toEqual([]);
  });

  test('with onFailure: restart the machine goes down to reboot: its systemd stops answering', async () => {
    const host = new FakeHost();
    host.runner.on(RESET, {}).on(START, { exitCode: 1 }).on(SHOW, { stdout: RETRYING }, 1).on(SHOW, { exitCode: 1, stderr: 'Failed to connect to bus: Host is down\n' });
    await expect(waitHealthy(host, 'web', { ...CHECK, onFailure: 'restart' }, { timeoutMs: 90_000, ...fakeTime() })).rejects.toThrow(
      'machine web is not healthy: its systemd stopped answering while its check was failing; onFailure: restart makes the machine reboot itself',
    );
  });

  test('a check that is not loaded in the machine: not healthy at once', async () => {
    const host = new FakeHost();
    host.runner.on(RESET, { exitCode: 1 }).on(START, { exitCode: 5 }).on(SHOW, { stdout: props({ LoadState: 'not-found', ActiveState: 'inactive', SubState: 'dead' }) });
    const time = fakeTime();
    await expect(waitHealthy(host, 'web', CHECK, { timeoutMs: 90_000, ...time })).rejects.toThrow('machine web is not healthy: the check is not loaded in the machine (apply installs it)');
    expect(time.slept).toEqual([]);
  });
});

describe('reloadHealth', () => {
  test('start: the machine\'s systemd reloads, a fresh count, the timer restarted', async () => {
    const host = new FakeHost();
    host.runner.on((a) => a[0] === 'systemctl', {});
    await reloadHealth(host, 'web', 'start');
    expect(host.runner.argvs()).toEqual([['systemctl', '--machine=web', 'daemon-reload'], RESET, ['systemctl', '--machine=web', 'restart', 'nspawnctl-health.timer']]);
  });

  test('stop: timer and service stopped while still loaded, then the reload forgets them', async () => {
    const host = new FakeHost();
    host.runner.on((a) => a[0] === 'systemctl', {});
    await reloadHealth(host, 'web', 'stop');
    expect(host.runner.argvs()).toEqual([['systemctl', '--machine=web', 'stop', 'nspawnctl-health.timer', 'nspawnctl-health.service'], ['systemctl', '--machine=web', 'daemon-reload'], RESET]);
  });
});

describe('runStep', () => {
  const MANIFEST = 'machines:\n  web:\n    health: { command: [curl, -fsS, http://localhost/], onFailure: restart }\n';

  test('starting a machine whose check restarts it: its unit\'s start count is reset first (apply\'s start is not a health restart)', async () => {
    const host = new FakeHost();
    host.runner
      .on(['systemctl', 'reset-failed', 'systemd-nspawn@web.service'], {})
      .on(['machinectl', 'start', 'web'], {})
      .on(['machinectl', 'show', 'web', '--property=State', '--value'], { stdout: 'running\n' })
      .on(['systemctl', '--machine=web', 'is-system-running', '--wait'], { stdout: 'running\n' });
    await runStep(host, { kind: 'start-machine', machine: 'web', reason: 'r' }, { startTimeoutMs: 60_000, machines: desiredFrom(MANIFEST).manifest.machines }, () => undefined);
    expect(host.runner.argvs().slice(0, 2)).toEqual([['systemctl', 'reset-failed', 'systemd-nspawn@web.service'], ['machinectl', 'start', 'web']]);
  });

  test('wait-healthy reports the health it waited for', async () => {
    const host = new FakeHost();
    host.runner.on(RESET, {}).on(START, {});
    const seen: unknown[] = [];
    await runStep(host, { kind: 'wait-healthy', machine: 'web', reason: 'r' }, { startTimeoutMs: 60_000, machines: desiredFrom(MANIFEST).manifest.machines, onHealthy: (m, r) => seen.push([m, r]) }, () => undefined);
    expect(seen).toEqual([['web', { state: 'healthy', detail: 'the check passed' }]]);
  });
});
