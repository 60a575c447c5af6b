// exec, shell and logs reach into a running machine only through its own systemd, with the exact
// command lines below, and never run anything for a machine that is not nspawnctl's or not running.
import { execArgs, execInMachine, journalctlCommand, machineLogs, parseEnvAssignment, requireRunningMachine, shellArgs, shellInMachine } from '../../src/apply/exec';
import { NspawnctlError } from '../../src/errors';
import { FakeHost } from '../helpers/fake-host';

const UNIT = 'nspawnctl-exec-4242-0a1b2c3d.service';
const RECORD = '/var/lib/nspawnctl/machines/web.json';
const STATE = ['machinectl', 'show', 'web', '--property=State', '--value'];
const SHOW_UNIT = ['systemctl', '--machine=web', 'show', UNIT, '--property=LoadState,Result,ExecMainCode,ExecMainStatus'];
const RESET = ['systemctl', '--machine=web', 'reset-failed', UNIT];
const isSystemdRun = (argv: string[]) => argv[0] === 'systemd-run';

/** The systemd-run argv of exec, spelled out here so that the test checks it. */
const EXEC_PREFIX = ['systemd-run', '--machine=web', `--unit=${UNIT}`, '--service-type=oneshot', '--property=TimeoutStartSec=infinity', '--wait', '--pipe', '--quiet', '--no-ask-password'];

/** A host where web is managed and running. */
function runningHost(): FakeHost {
  const host = new FakeHost();
  host.fs.addFile(RECORD, '{}\n');
  host.runner.on(STATE, { stdout: 'running\n' });
  return host;
}

describe('execArgs', () => {
  test('a oneshot service of the machine, named, waited for, our stdio passed, the command verbatim with "$" doubled', () => {
    expect(['systemd-run', ...execArgs('web', ['sh', '-c', 'echo "$HOME" $$', '--', '%h'], { unit: UNIT })]).toEqual([...EXEC_PREFIX, '--', 'sh', '-c', 'echo "$$HOME" $$$$', '--', '%h']);
  });

  test('--user, every --env in order, --cwd', () => {
    const args = execArgs('web', ['env'], { unit: UNIT, user: 'www-data', env: [['A', 'x $y=z'], ['EMPTY', '']], cwd: '/srv/app' });
    expect(args.slice(EXEC_PREFIX.length - 1)).toEqual(['--uid=www-data', '--setenv=A=x $y=z', '--setenv=EMPTY=', '--working-directory=/srv/app', '--', 'env']);
  });

  test.each([
    [{ user: '-x' }, '--user "-x" is not a user name or number'],
    [{ user: 'a b' }, '--user "a b" is not a user name or number'],
    [{ env: [['1A', 'x']] as [string, string][] }, '--env "1A": expected NAME=VALUE, NAME of letters, digits and _ (not starting with a digit)'],
    [{ cwd: 'srv' }, '--cwd "srv" is not an absolute path'],
  ])('%j is a usage error (exit 2)', (options, message) => {
    expect(() => execArgs('web', ['true'], { unit: UNIT, ...options })).toThrow(expect.objectContaining({ exitCode: 2, message }));
  });

  test('a program name with "$" is refused: systemd-run would use it as the path unexpanded but expand argv[0]', () => {
    expect(() => execArgs('web', ['$HOME/bin/x'], { unit: UNIT })).toThrow(expect.objectContaining({ exitCode: 2 }));
  });

  test('--env NAME=VALUE: the value may be empty or hold "="; no "=" at all is refused (systemd-run would copy our own variable)', () => {
    expect(parseEnvAssignment('A=b=c')).toEqual(['A', 'b=c']);
    expect(parseEnvAssignment('A=')).toEqual(['A', '']);
    expect(() => parseEnvAssignment('HOME')).toThrow(expect.objectContaining({ exitCode: 2, message: '--env "HOME": expected NAME=VALUE' }));
    expect(() => parseEnvAssignment('=x')).toThrow(expect.objectContaining({ exitCode: 2 }));
  });
});

describe('requireRunningMachine: nothing runs for a machine that is not nspawnctl\'s or not running', () => {
  test('no record: exit 1, no command at all', async () => {
    const host = new FakeHost();
    await expect(requireRunningMachine(host, 'web')).rejects.toThrow(expect.objectContaining({ exitCode: 1, message: 'no machine named web is managed by nspawnctl; nothing was run' }));
    expect(host.runner.calls).toEqual([]);
  });

  test('managed but not running: exit 1 after asking machined only', async () => {
    const host = new FakeHost();
    host.fs.addFile(RECORD, '{}\n');
    host.runner.on(STATE, { exitCode: 1, stderr: "No machine 'web' known\n" });
    const err = (await requireRunningMachine(host, 'web').catch((e: NspawnctlError) => e)) as NspawnctlError;
    expect([err.exitCode, err.message, err.hint]).toEqual([1, 'machine web is not running; nothing was run', 'Start it with: nspawnctl apply MANIFEST (or machinectl start web)']);
    expect(host.runner.argvs()).toEqual([STATE]);
  });

  test('a machine that is still starting or stopping is not running either; its state is shown escaped', async () => {
    const host = new FakeHost();
    host.fs.addFile(RECORD, '{}\n');
    host.runner.on(STATE, { stdout: 'closing\u001b[2J\n' });
    await expect(requireRunningMachine(host, 'web')).rejects.toThrow('machine web is not running (machined says "closing\\x1b[2J"); nothing was run');
  });

  test('a name no machine can have: exit 2, nothing read', async () => {
    const host = new FakeHost();
    await expect(requireRunningMachine(host, '../etc')).rejects.toThrow(expect.objectContaining({ exitCode: 2, message: '"../etc" is not a machine name' }));
    expect(host.runner.calls).toEqual([]);
  });

  test('managed and running: passes', async () => {
    await expect(requireRunningMachine(runningHost(), 'web')).resolves.toBeUndefined();
  });
});

describe('execInMachine: the exit status is the command\'s', () => {
  test('0: systemd-run with our stdio, in its own process group, and nothing else', async () => {
    const host = runningHost();
    host.runner.on(isSystemdRun, {});
    expect(await execInMachine(host, 'web', ['true'], { unit: UNIT })).toEqual({ exitCode: 0 });
    expect(host.runner.argvs()).toEqual([[...EXEC_PREFIX, '--', 'true']]);
    expect(host.runner.calls[0].options).toEqual({ inheritStdio: true, waitOnInterrupt: true, allowFailure: true });
  });

  test('an exit status: read from the unit (ExecMainStatus), then the failed unit is reset', async () => {
    const host = runningHost();
    host.runner.on(isSystemdRun, { exitCode: 3 }).on(SHOW_UNIT, { stdout: 'LoadState=loaded\nResult=exit-code\nExecMainCode=1\nExecMainStatus=3\n' }).on(RESET, {});
    expect(await execInMachine(host, 'web', ['false'], { unit: UNIT })).toEqual({ exitCode: 3 });
    expect(host.runner.argvs().slice(1)).toEqual([SHOW_UNIT, RESET]);
  });

  // systemd-run itself says 255 for any signal (and, for services that are not oneshot, 0 for SIGTERM).
  test.each([
    ['killed by SIGTERM', 2, 15, 143],
    ['killed by SIGKILL', 2, 9, 137],
    ['dumped core on SIGSEGV', 3, 11, 139],
  ])('%s: 128 + the signal, as a shell reports it', async (_what, code, status, expected) => {
    const host = runningHost();
    host.runner.on(isSystemdRun, { exitCode: 255 }).on(SHOW_UNIT, { stdout: `LoadState=loaded\nResult=signal\nExecMainCode=${code}\nExecMainStatus=${status}\n` }).on(RESET, {});
    expect(await execInMachine(host, 'web', ['sleep', '9'], { unit: UNIT })).toEqual({ exitCode: expected });
  });

  test.each([
    [203, 'the program was not found in the machine, or cannot be executed there'],
    [217, 'the user (--user) does not exist in the machine'],
    [200, 'the working directory (--cwd) does not exist in the machine or cannot be entered'],
  ])('%i, which systemd also uses when the command could not start, comes with a note', async (status, why) => {
    const host = runningHost();
    host.runner.on(isSystemdRun, { exitCode: status }).on(SHOW_UNIT, { stdout: `LoadState=loaded\nResult=exit-code\nExecMainCode=1\nExecMainStatus=${status}\n` }).on(RESET, {});
    expect(await execInMachine(host, 'web', ['nosuch'], { unit: UNIT })).toEqual({ exitCode: status, note: `exit status ${status} is also what systemd reports when ${why}` });
  });

  test('systemd-run failed before the unit existed (the machine went away): its own status, nothing to reset', async () => {
    const host = runningHost();
    host.runner.on(isSystemdRun, { exitCode: 1 }).on(SHOW_UNIT, { stdout: 'LoadState=not-found\nResult=success\nExecMainCode=0\nExecMainStatus=0\n' });
    expect(await execInMachine(host, 'web', ['true'], { unit: UNIT })).toEqual({ exitCode: 1 });
    expect(host.runner.argvs().slice(1)).toEqual([SHOW_UNIT]);
  });

  test('an interrupt is passed on to the command\'s processes in the machine (the signal nspawnctl got), and its status comes back', async () => {
    const host = runningHost();
    const interrupt = new AbortController();
    host.signal = interrupt.signal;
    const KILL = ['systemctl', '--machine=web', 'kill', '--signal=SIGINT', '--kill-whom=all', UNIT];
    host.runner
      .on(isSystemdRun, () => {
        interrupt.abort('SIGINT');
        return { exitCode: 255 };
      })
      .on(KILL, {})
      .on(SHOW_UNIT, { stdout: 'LoadState=loaded\nResult=signal\nExecMainCode=2\nExecMainStatus=2\n' })
      .on(RESET, {});
    expect(await execInMachine(host, 'web', ['sleep', 'infinity'], { unit: UNIT })).toEqual({ exitCode: 130 });
    expect(host.runner.argvs().slice(1)).toEqual([KILL, SHOW_UNIT, RESET]);
    // What follows the interrupt still runs (afterInterrupt), bounded.
    expect(host.runner.calls.slice(1).map((c) => c.options)).toEqual([
      { allowFailure: true, afterInterrupt: true, timeoutMs: 60_000 },
      { allowFailure: true, afterInterrupt: true, timeoutMs: 60_000 },
      { allowFailure: true, afterInterrupt: true, timeoutMs: 60_000 },
    ]);
  });

  test('SIGTERM is passed on as SIGTERM', async () => {
    const host = runningHost();
    const interrupt = new AbortController();
    host.signal = interrupt.signal;
    host.runner
      .on(isSystemdRun, () => {
        interrupt.abort('SIGTERM');
        return {};
      })
      .on((a) => a[2] === 'kill', {});
    await execInMachine(host, 'web', ['x'], { unit: UNIT });
    expect(host.runner.argvs()[1]).toEqual(['systemctl', '--machine=web', 'kill', '--signal=SIGTERM', '--kill-whom=all', UNIT]);
  });
});

describe('shell', () => {
  test('machinectl shell, as root or as --user, connected to our terminal', async () => {
    expect(shellArgs('web')).toEqual(['shell', 'web']);
    expect(shellArgs('db', 'postgres')).toEqual(['shell', '--uid=postgres', 'db']);
    const host = runningHost();
    host.runner.on(['machinectl', 'shell', 'web'], { exitCode: 0 });
    expect(await shellInMachine(host, 'web')).toBe(0);
    // In nspawnctl's own process group: machinectl reads the terminal.
    expect(host.runner.calls[0].options).toEqual({ inheritStdio: true, allowFailure: true });
  });

  test('a bad user is refused', () => {
    expect(() => shellArgs('web', '--help')).toThrow(expect.objectContaining({ exitCode: 2 }));
  });
});

describe('logs: the machine\'s own journalctl, run inside it', () => {
  const LOGS_UNIT = 'nspawnctl-logs-4242-0a1b2c3d.service';

  test('the journalctl command line for each option', () => {
    expect(journalctlCommand({})).toEqual(['journalctl', '--no-pager']);
    expect(journalctlCommand({ follow: true, lines: 50, since: '-1h $x', matchUnit: 'nginx*' })).toEqual(['journalctl', '--no-pager', '--follow', '--lines=50', '--since=-1h $x', '--unit=nginx*']);
  });

  test.each([
    [{ since: 'a\nb' }, '--since "a\\nb" is not a time'],
    [{ since: '' }, '--since "" is not a time'],
    [{ matchUnit: '-x' }, '--unit "-x" is not a unit name'],
    [{ matchUnit: 'a b' }, '--unit "a b" is not a unit name'],
  ])('%j is a usage error', (options, message) => {
    expect(() => journalctlCommand(options)).toThrow(expect.objectContaining({ exitCode: 2, message }));
  });

  test('through systemd-run in a named unit; every control character but newline and tab escaped on the way out', async () => {
    const host = runningHost();
    host.runner.on(isSystemdRun, ({ options }) => {
      options?.onOutput?.('Jan 01 web nginx[1]: ok\tfine\n', 'stdout');
      options?.onOutput?.('evil \u001b]0;title\u0007 \u009b2J\r\n', 'stdout');
      options?.onOutput?.('-- No entries --\n', 'stderr');
      return {};
    });
    const out: [string, string][] = [];
    const code = await machineLogs(host, 'web', { unit: LOGS_UNIT, lines: 5, since: 'today $HOME' }, (text, stream) => out.push([stream, text]));
    expect(code).toBe(0);
    expect(out).toEqual([
      ['stdout', 'Jan 01 web nginx[1]: ok\tfine\n'],
      ['stdout', 'evil \\x1b]0;title\\x07 \\u009b2J\\x0d\n'],
      ['stderr', '-- No entries --\n'],
    ]);
    expect(host.runner.argvs()).toEqual([
      ['systemd-run', '--machine=web', `--unit=${LOGS_UNIT}`, '--wait', '--pipe', '--quiet', '--collect', '--', 'journalctl', '--no-pager', '--lines=5', '--since=today $$HOME'],
    ]);
    expect(host.runner.calls[0].options).toEqual(expect.objectContaining({ allowFailure: true, waitOnInterrupt: true }));
  });

  test('an interrupt stops the journalctl inside the machine (--follow ends with Ctrl-C)', async () => {
    const host = runningHost();
    const interrupt = new AbortController();
    host.signal = interrupt.signal;
    const STOP = ['systemctl', '--machine=web', 'stop', LOGS_UNIT];
    host.runner
      .on(isSystemdRun, () => {
        interrupt.abort('SIGINT');
        return {};
      })
      .on(STOP, {});
    await machineLogs(host, 'web', { unit: LOGS_UNIT, follow: true }, () => undefined);
    expect(host.runner.argvs().slice(1)).toEqual([STOP]);
    expect(host.runner.calls[1].options).toEqual({ allowFailure: true, afterInterrupt: true, timeoutMs: 60_000 });
  });
});
