// A running machine's own programs run as transient services of its own systemd (systemd-run
// --machine), with "$" escaped; "started" means its systemd finished starting up and, with a
// network, host0 is configured. The waits poll only through the injected sleep and clock.
import { runStep } from '../../src/apply/apply';
import { escapeForExec, execArgv, inMachineArgs, MAX_FAILED_UNITS, parseFailedUnits, READY_ATTEMPT_MS, runInMachine, SHORT_TIMEOUT_MS, waitUntilReady } from '../../src/apply/in-machine';
import { startMachine } from '../../src/apply/machinectl';
import { CommandFailedError, NspawnctlError } from '../../src/errors';
import { desiredFrom } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { inMachineArgv, readyCalls } from '../helpers/simulated-systemd';

const IS_RUNNING = ['systemctl', '--machine=web', 'is-system-running', '--wait'];
const FAILED_UNITS = ['systemctl', '--machine=web', 'list-units', '--failed', '--output=json', '--no-pager'];
/** What systemctl list-units --output=json prints for these failed units (systemd 252's keys). */
const failedJson = (...units: [unit: string, description: string][]) =>
  `${JSON.stringify(units.map(([unit, description]) => ({ unit, load: 'loaded', active: 'failed', sub: 'failed', description })))}\n`;
const WAIT_ONLINE = (seconds: number) => [
  'systemd-run',
  '--machine=web',
  '--wait',
  '--pipe',
  '--quiet',
  '--collect',
  '--',
  '/lib/systemd/systemd-networkd-wait-online',
  '--interface=host0',
  `--timeout=${seconds}`,
];
const NO_BUS = 'Failed to connect to bus: No such file or directory\n';
const HINT = 'Look at its boot: journalctl -M web -b (or systemctl status systemd-nspawn@web.service)';

/** A clock that only the injected sleep moves; every sleep is recorded. */
function fakeTime(start = 1_000_000): { now: () => number; sleep: (ms: number) => Promise<void>; pass: (ms: number) => void; slept: number[] } {
  let t = start;
  const slept: number[] = [];
  return {
    now: () => t,
    sleep: async (ms: number) => {
      slept.push(ms);
      t += ms;
    },
    /** Time spent in a command (not a sleep of ours). */
    pass: (ms: number) => {
      t += ms;
    },
    slept,
  };
}

describe('inMachineArgs', () => {
  test('systemd-run into the machine, waiting for the command and connecting its output, and the command verbatim', () => {
    expect(inMachineArgs('web', ['apt-get', 'install', '-y', 'curl'])).toEqual(['--machine=web', '--wait', '--pipe', '--quiet', '--collect', '--', 'apt-get', 'install', '-y', 'curl']);
  });

  test('one --setenv per variable, in order, before the command', () => {
    expect(inMachineArgs('db', ['env'], { DEBIAN_FRONTEND: 'noninteractive', GREETING: 'a b=c' })).toEqual([
      '--machine=db',
      '--wait',
      '--pipe',
      '--quiet',
      '--collect',
      '--setenv=DEBIAN_FRONTEND=noninteractive',
      '--setenv=GREETING=a b=c',
      '--',
      'env',
    ]);
  });

  test('"$" in the command is doubled, so systemd passes it on instead of expanding a variable', () => {
    expect(escapeForExec('$HOME ${PATH} $$ a$')).toBe('$$HOME $${PATH} $$$$ a$$');
    expect(inMachineArgs('web', ['sh', '-c', 'echo "$HOME" > /tmp/$$'])).toEqual(['--machine=web', '--wait', '--pipe', '--quiet', '--collect', '--', 'sh', '-c', 'echo "$$HOME" > /tmp/$$$$']);
    // The test helper spells out the same argv (other tests rely on it).
    expect(inMachineArgv('web', ['sh', '-c', 'echo $x'], { A: 'b' })).toEqual(['systemd-run', ...inMachineArgs('web', ['sh', '-c', 'echo $x'], { A: 'b' })]);
  });

  test('a program name with "$" is refused (exit 2): systemd-run sends it as the path, taken as it is, and as argv[0], expanded', () => {
    expect(() => inMachineArgs('web', ['/opt/$app/run'])).toThrow(expect.objectContaining({ exitCode: 2, message: 'cannot run a program whose name contains "$" ("/opt/$app/run") through systemd-run' }));
    expect(execArgv(['sh', '-c', 'echo $1', 'a$b'])).toEqual(['sh', '-c', 'echo $$1', 'a$$b']);
  });

  test('runInMachine runs systemd-run with the run options, and the environment only as --setenv', async () => {
    const host = new FakeHost();
    const onLine = () => undefined;
    host.runner.on(['systemd-run', '--machine=web', '--wait', '--pipe', '--quiet', '--collect', '--setenv=X=1', '--', 'true'], { stdout: 'ok\n' });
    const r = await runInMachine(host, 'web', ['true'], { env: { X: '1' }, allowFailure: true, onLine, dieWithParent: true, timeoutMs: 5000 });
    expect(r).toEqual({ exitCode: 0, stdout: 'ok\n', stderr: '' });
    expect(host.runner.calls[0].options).toEqual({ allowFailure: true, onLine, dieWithParent: true, timeoutMs: 5000 });
  });
});

describe('parseFailedUnits: the list of a machine\'s own systemd, read as untrusted', () => {
  test('the unit names of systemctl list-units --output=json', () => {
    expect(parseFailedUnits(failedJson(['nginx.service', 'web'], ['srv-data.mount', '/srv/data']))).toEqual(['nginx.service', 'srv-data.mount']);
    expect(parseFailedUnits('[]\n')).toEqual([]);
  });

  test('a description with a newline (which the plain listing prints as a line of its own) is no unit', () => {
    expect(parseFailedUnits(failedJson(['bad.service', 'bad\ndesc.service loaded failed failed x']))).toEqual(['bad.service']);
  });

  test('control characters in a name are escaped; names and the list are capped', () => {
    expect(parseFailedUnits(failedJson(['x\u001b]0;owned\u0007.service', '']))).toEqual(['x\\x1b]0;owned\\x07.service']);
    const long = 'a'.repeat(300);
    expect(parseFailedUnits(failedJson([long, '']))).toEqual([`${'a'.repeat(256)}...`]);
    const many = Array.from({ length: MAX_FAILED_UNITS + 5 }, (_, i): [string, string] => [`u${i}.service`, '']);
    const parsed = parseFailedUnits(failedJson(...many));
    expect(parsed).toHaveLength(MAX_FAILED_UNITS + 1);
    expect(parsed[MAX_FAILED_UNITS]).toBe('(5 more)');
  });

  test('anything else is no list: not JSON, not an array, entries without a string name', () => {
    expect(parseFailedUnits('nginx.service loaded failed failed nginx\n')).toEqual([]);
    expect(parseFailedUnits('{"unit":"x.service"}')).toEqual([]);
    expect(parseFailedUnits('[null, 3, {"unit": 5}, {"unit": ""}, {"unit": "ok.service"}]')).toEqual(['ok.service']);
  });
});

describe('waitUntilReady', () => {
  test('the bus is not up yet: asked again after 100 ms (injected sleep) until the machine says running', async () => {
    const host = new FakeHost();
    host.runner.on(IS_RUNNING, { exitCode: 1, stderr: NO_BUS }, 2).on(IS_RUNNING, { stdout: 'running\n' });
    const time = fakeTime();
    const ready = await waitUntilReady(host, 'web', { deadline: time.now() + 30_000, network: false, sleep: time.sleep, now: time.now });
    expect(ready).toEqual({ state: 'running', failedUnits: [] });
    expect(time.slept).toEqual([100, 100]);
    expect(host.runner.argvs()).toEqual([IS_RUNNING, IS_RUNNING, IS_RUNNING]);
    // Each ask may block inside the machine's systemd until it is done, for at most READY_ATTEMPT_MS.
    expect(host.runner.calls.map((c) => c.options)).toEqual([
      { allowFailure: true, timeoutMs: READY_ATTEMPT_MS },
      { allowFailure: true, timeoutMs: READY_ATTEMPT_MS },
      { allowFailure: true, timeoutMs: READY_ATTEMPT_MS },
    ]);
  });

  // systemd 252's --wait can miss a startup that finishes while it subscribes, and then blocks for
  // good (seen on read-only machines in the e2e host): an ask that times out is asked again.
  test('an ask that hangs is given up after READY_ATTEMPT_MS and asked again, which returns at once', async () => {
    const host = new FakeHost();
    const time = fakeTime();
    const hung = new CommandFailedError(IS_RUNNING, undefined, `timed out after ${READY_ATTEMPT_MS} ms`, undefined, { timedOut: true });
    let asks = 0;
    host.runner.on(IS_RUNNING, ({ options }) => {
      asks++;
      if (asks === 1) {
        time.pass(options?.timeoutMs ?? 0);
        throw hung;
      }
      return { exitCode: 1, stdout: 'degraded\n' };
    });
    host.runner.on(FAILED_UNITS, { stdout: failedJson(['systemd-logind.service', 'User Login Management']) });
    const ready = await waitUntilReady(host, 'web', { deadline: time.now() + 30_000, network: false, sleep: time.sleep, now: time.now });
    expect(ready).toEqual({ state: 'degraded', failedUnits: ['systemd-logind.service'] });
    expect(host.runner.calls.map((c) => [c.args.join(' '), c.options?.timeoutMs])).toEqual([
      [IS_RUNNING.slice(1).join(' '), READY_ATTEMPT_MS],
      [IS_RUNNING.slice(1).join(' '), READY_ATTEMPT_MS],
      [FAILED_UNITS.slice(1).join(' '), SHORT_TIMEOUT_MS],
    ]);
    expect(time.slept).toEqual([]);
  });

  test('with a network: then networkd-wait-online inside the machine, for host0, with the seconds left', async () => {
    const host = new FakeHost();
    host.runner.on(IS_RUNNING, { stdout: 'running\n' }).on(WAIT_ONLINE(12), {});
    const time = fakeTime();
    expect(await waitUntilReady(host, 'web', { deadline: time.now() + 11_500, network: true, sleep: time.sleep, now: time.now })).toEqual({ state: 'running', failedUnits: [] });
    expect(host.runner.argvs()).toEqual([IS_RUNNING, WAIT_ONLINE(12)]);
    expect(host.runner.calls[1].options).toEqual({ allowFailure: true, timeoutMs: 27_000 });
    expect(time.slept).toEqual([]);
  });

  test('degraded: it runs, and its failed units are listed', async () => {
    const host = new FakeHost();
    host.runner
      .on(IS_RUNNING, { exitCode: 1, stdout: 'degraded\n' })
      .on(FAILED_UNITS, { stdout: failedJson(['nginx.service', 'A high performance web server'], ['srv-data.mount', '/srv/data']) })
      .on(WAIT_ONLINE(30), {});
    const time = fakeTime();
    const ready = await waitUntilReady(host, 'web', { deadline: time.now() + 30_000, network: true, sleep: time.sleep, now: time.now });
    expect(ready).toEqual({ state: 'degraded', failedUnits: ['nginx.service', 'srv-data.mount'] });
    expect(host.runner.argvs()).toEqual([IS_RUNNING, FAILED_UNITS, WAIT_ONLINE(30)]);
  });

  test.each(['maintenance', 'stopping', 'offline'])('state "%s": not ready, at once, without asking again', async (state) => {
    const host = new FakeHost();
    host.runner.on(IS_RUNNING, { exitCode: 1, stdout: `${state}\n` });
    const time = fakeTime();
    const err = await waitUntilReady(host, 'web', { deadline: time.now() + 30_000, network: true, sleep: time.sleep, now: time.now }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NspawnctlError);
    expect([(err as NspawnctlError).message, (err as NspawnctlError).hint]).toEqual([`machine web is not ready: its system manager is in state "${state}"`, HINT]);
    expect(host.runner.argvs()).toEqual([IS_RUNNING]);
    expect(time.slept).toEqual([]);
  });

  test('the bus never comes up before the deadline: not ready, naming the last answer (control characters escaped)', async () => {
    const host = new FakeHost();
    host.runner.on(IS_RUNNING, { exitCode: 1, stderr: 'Failed to connect to bus: \x1b[31mHost is down\n' });
    const time = fakeTime();
    const err = await waitUntilReady(host, 'web', { deadline: time.now() + 250, network: false, sleep: time.sleep, now: time.now }).catch((e: unknown) => e);
    expect((err as NspawnctlError).message).toBe('machine web is not ready: its system manager could not be reached (Failed to connect to bus: \\x1b[31mHost is down)');
    expect((err as NspawnctlError).hint).toBe(HINT);
    expect(time.slept).toEqual([100, 100, 100]);
    expect(host.runner.argvs()).toEqual([IS_RUNNING, IS_RUNNING, IS_RUNNING, IS_RUNNING]);
  });

  test('every ask times out until the deadline (systemd never finished): not ready, naming the jobs it still waits for, with the failure as cause', async () => {
    const host = new FakeHost();
    const time = fakeTime();
    const timedOut = new CommandFailedError(IS_RUNNING, undefined, `timed out after ${READY_ATTEMPT_MS} ms`, undefined, { timedOut: true });
    host.runner.on(IS_RUNNING, ({ options }) => {
      time.pass(options?.timeoutMs ?? 0);
      throw timedOut;
    });
    host.runner.on(['systemctl', '--machine=web', 'list-jobs', '--no-legend', '--no-pager', '--full'], { stdout: '42 nginx.service start running\n' });
    const err = (await waitUntilReady(host, 'web', { deadline: time.now() + 5000, network: false, sleep: time.sleep, now: time.now }).catch((e: unknown) => e)) as NspawnctlError;
    expect([err.message, err.hint, err.cause]).toEqual(['machine web is not ready: its system manager did not finish starting up within the start timeout; jobs still waiting:\n42 nginx.service start running', HINT, timedOut]);
    // 2 s, 2 s, then the 1 s that was left.
    expect(host.runner.calls.filter((c) => c.args[1] === 'is-system-running').map((c) => c.options?.timeoutMs)).toEqual([READY_ATTEMPT_MS, READY_ATTEMPT_MS, 1000]);
  });

  test('networkd does not configure host0 in time: not ready, naming host0 and what wait-online said', async () => {
    const host = new FakeHost();
    host.runner.on(IS_RUNNING, { stdout: 'running\n' }).on(WAIT_ONLINE(30), { exitCode: 1, stderr: 'Timeout occurred while waiting for network connectivity.\n' });
    const time = fakeTime();
    const err = (await waitUntilReady(host, 'web', { deadline: time.now() + 30_000, network: true, sleep: time.sleep, now: time.now }).catch((e: unknown) => e)) as NspawnctlError;
    expect(err).toBeInstanceOf(NspawnctlError);
    expect([err.message, err.hint]).toEqual([
      'machine web is not ready: networkd inside it did not configure host0 within 30 s:\nTimeout occurred while waiting for network connectivity.',
      'Look inside: systemd-run --machine=web --wait --pipe networkctl status host0',
    ]);
  });
});

describe('startMachine and the start-machine step', () => {
  /** machinectl start, the state already "running", the machine's systemd degraded. */
  function degradedHost(): FakeHost {
    const host = new FakeHost();
    host.runner
      .on(['machinectl', 'start', 'web'], {})
      .on(['machinectl', 'show', 'web', '--property=State', '--value'], { stdout: 'running\n' })
      .on(IS_RUNNING, { exitCode: 1, stdout: 'degraded\n' })
      .on(FAILED_UNITS, { stdout: failedJson(['nginx.service', 'nginx']) })
      .on((argv) => argv[0] === 'systemd-run' && argv[1] === '--machine=web', {});
    return host;
  }

  test('startMachine returns what the machine\'s systemd says, after the same calls apply makes', async () => {
    const host = degradedHost();
    const slept: number[] = [];
    const ready = await startMachine(host, 'web', { timeoutMs: 60_000, network: true, sleep: async (ms) => void slept.push(ms) });
    expect(ready).toEqual({ state: 'degraded', failedUnits: ['nginx.service'] });
    const [isRunning, waitOnline] = readyCalls('web', 60);
    expect(host.runner.argvs()).toEqual([['machinectl', 'start', 'web'], ['machinectl', 'show', 'web', '--property=State', '--value'], isRunning, FAILED_UNITS, waitOnline]);
    expect(slept).toEqual([]);
  });

  test('a degraded machine is started (the step succeeds) and its failed units are shown as a progress line', async () => {
    const host = degradedHost();
    const lines: string[] = [];
    const { manifest } = desiredFrom('networks:\n  br0: { subnet: 10.0.0.0/24 }\nmachines:\n  web:\n    network: { bridge: br0, address: 10.0.0.2 }\n');
    await runStep(host, { kind: 'start-machine', machine: 'web', reason: 'r' }, { startTimeoutMs: 60_000, machines: manifest.machines }, (l) => lines.push(l));
    expect(lines).toEqual(['machine web is running but degraded; failed units: nginx.service']);
    // The machine has a network: networkd inside it is waited for.
    expect(host.runner.argvs().filter((a) => a[0] === 'systemd-run').map((a) => a.slice(-2))).toEqual([['--interface=host0', '--timeout=60']]);
  });
});
