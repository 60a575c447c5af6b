// `nspawnctl exec`, `shell` and `logs` through oclif with a fake Host: what they parse, what they
// refuse before anything runs (usage, non-root, a machine that is not nspawnctl's or not
// running), the exact command run inside the machine, and the exit status passed back.
import './helpers/oclif-listeners';
import Exec from '../../src/commands/exec';
import Logs from '../../src/commands/logs';
import Shell from '../../src/commands/shell';
import { Host } from '../../src/host/host';
import { FakeHost } from '../helpers/fake-host';
import { runCommand, TEST_CWD } from '../helpers/run-command';

const RECORD = '/var/lib/nspawnctl/machines/web.json';
const STATE = ['machinectl', 'show', 'web', '--property=State', '--value'];
const UNIT = /^--unit=nspawnctl-exec-4242-[0-9a-f]{8}\.service$/;
const isSystemdRun = (argv: string[]) => argv[0] === 'systemd-run';

function withHost<T extends new (...args: never[]) => object>(Cmd: T, host: Host, terminal = false): T {
  return class extends (Cmd as unknown as typeof Exec) {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }

    protected onTerminal(): boolean {
      return terminal;
    }
  } as unknown as T;
}

/** A host where web is managed by nspawnctl; running unless `running` is false. */
function hostWithWeb(options: { running?: boolean; uid?: number } = {}): FakeHost {
  const host = new FakeHost({ uid: options.uid ?? 0 });
  host.fs.addFile(RECORD, '{}\n');
  host.runner.on(STATE, options.running === false ? { exitCode: 1, stderr: "No machine 'web' known\n" } : { stdout: 'running\n' });
  return host;
}

describe('nspawnctl exec', () => {
  test('runs CMD after "--" verbatim (its own flags and a second "--" included) with --user, --env, --cwd; exit 0', async () => {
    const host = hostWithWeb();
    host.runner.on(isSystemdRun, {});
    const r = await runCommand(withHost(Exec, host), ['web', '-u', 'app', '--env', 'A=1', '-e', 'B=x y', '--cwd', '/srv', '--', 'grep', '-c', '--', '--json', '$HOME']);
    expect([r.exitCode, r.stdout, r.stderr]).toEqual([0, '', '']);
    const argv = host.runner.argvs()[1];
    expect(argv[2]).toMatch(UNIT);
    expect([...argv.slice(0, 2), ...argv.slice(3)]).toEqual([
      'systemd-run',
      '--machine=web',
      '--service-type=oneshot',
      '--property=TimeoutStartSec=infinity',
      '--wait',
      '--pipe',
      '--quiet',
      '--no-ask-password',
      '--uid=app',
      '--setenv=A=1',
      '--setenv=B=x y',
      '--working-directory=/srv',
      '--',
      'grep',
      '-c',
      '--',
      '--json',
      '$$HOME',
    ]);
  });

  test("the command's exit status is nspawnctl's, and systemd's own statuses come with a note", async () => {
    const host = hostWithWeb();
    host.runner
      .on(isSystemdRun, { exitCode: 203 })
      .on((a) => a[2] === 'show', { stdout: 'LoadState=loaded\nResult=exit-code\nExecMainCode=1\nExecMainStatus=203\n' })
      .on((a) => a[2] === 'reset-failed', {});
    const r = await runCommand(withHost(Exec, host), ['web', '--', 'nosuchprogram']);
    expect(r.exitCode).toBe(203);
    expect(r.stderr).toBe('nspawnctl: note: exit status 203 is also what systemd reports when the program was not found in the machine, or cannot be executed there\n');
  });

  test('a command killed by a signal: 128 + N', async () => {
    const host = hostWithWeb();
    host.runner
      .on(isSystemdRun, { exitCode: 255 })
      .on((a) => a[2] === 'show', { stdout: 'LoadState=loaded\nResult=signal\nExecMainCode=2\nExecMainStatus=9\n' })
      .on((a) => a[2] === 'reset-failed', {});
    expect((await runCommand(withHost(Exec, host), ['web', '--', 'sleep', '100'])).exitCode).toBe(137);
  });

  test('a machine nspawnctl does not manage: exit 1, nothing runs (not even a query)', async () => {
    const host = new FakeHost();
    const r = await runCommand(withHost(Exec, host), ['other', '--', 'touch', '/tmp/x']);
    expect([r.exitCode, r.stderr]).toEqual([1, 'nspawnctl: no machine named other is managed by nspawnctl; nothing was run\nhint: nspawnctl list shows the machines nspawnctl manages.\n']);
    expect(host.runner.calls).toEqual([]);
  });

  test('a stopped machine: exit 1, only machined was asked', async () => {
    const host = hostWithWeb({ running: false });
    const r = await runCommand(withHost(Exec, host), ['web', '--', 'touch', '/tmp/x']);
    expect([r.exitCode, r.stderr]).toEqual([1, 'nspawnctl: machine web is not running; nothing was run\nhint: Start it with: nspawnctl apply MANIFEST (or machinectl start web)\n']);
    expect(host.runner.argvs()).toEqual([STATE]);
  });

  test('as a normal user: exit 3 before anything is read', async () => {
    const host = hostWithWeb({ uid: 1000 });
    const r = await runCommand(withHost(Exec, host), ['web', '--', 'id']);
    expect([r.exitCode, r.stderr]).toEqual([3, 'nspawnctl: this host is not ready:\n  - nspawnctl exec must run as root\nhint: Run it with sudo, or as root.\n']);
    expect(host.runner.calls).toEqual([]);
  });

  test.each([
    [['web'], 'nspawnctl: no command to run\nhint: nspawnctl exec web -- CMD [ARGS...]\n'],
    [['web', '--env', 'HOME', '--', 'env'], 'nspawnctl: --env "HOME": expected NAME=VALUE\n'],
    [['web', '--cwd', 'srv', '--', 'ls'], 'nspawnctl: --cwd "srv" is not an absolute path\nhint: Name the directory inside the machine from its root: --cwd /srv/app\n'],
    [['web', '--', '$PROG'], 'nspawnctl: cannot run a program whose name contains "$" ("$PROG") through systemd-run\nhint: Name the program without "$", or run it through a shell inside the machine: sh -c \'...\'\n'],
  ])('%j: usage error (exit 2), nothing runs', async (argv, stderr) => {
    const host = hostWithWeb();
    const r = await runCommand(withHost(Exec, host), argv);
    expect([r.exitCode, r.stderr]).toEqual([2, stderr]);
    expect(host.runner.argvs().filter(isSystemdRun)).toEqual([]);
  });
});

describe('nspawnctl shell', () => {
  test('on a terminal: machinectl shell, as --user; its exit status', async () => {
    const host = hostWithWeb();
    host.runner.on(['machinectl', 'shell', '--uid=postgres', 'web'], { exitCode: 0 });
    const r = await runCommand(withHost(Shell, host, true), ['web', '--user', 'postgres']);
    expect(r.exitCode).toBe(0);
    expect(host.runner.argvs()).toEqual([STATE, ['machinectl', 'shell', '--uid=postgres', 'web']]);
  });

  test('without a terminal: exit 2 saying so, nothing runs', async () => {
    const host = hostWithWeb();
    const r = await runCommand(withHost(Shell, host, false), ['web']);
    expect([r.exitCode, r.stderr]).toEqual([
      2,
      'nspawnctl: a shell needs a terminal, and standard input or output is not one; nothing was run\nhint: To run a command without a terminal: nspawnctl exec web -- CMD [ARGS...]\n',
    ]);
    expect(host.runner.calls).toEqual([]);
  });

  test('a stopped machine: exit 1', async () => {
    const host = hostWithWeb({ running: false });
    const r = await runCommand(withHost(Shell, host, true), ['web']);
    expect(r.exitCode).toBe(1);
    expect(host.runner.argvs()).toEqual([STATE]);
  });
});

describe('nspawnctl logs', () => {
  test("the machine's journalctl with -n, --since, -u; its output escaped on stdout", async () => {
    const host = hostWithWeb();
    host.runner.on(isSystemdRun, ({ options }) => {
      options?.onOutput?.('web nginx[7]: \u001b[31mred\u001b[0m\n', 'stdout');
      return {};
    });
    const r = await runCommand(withHost(Logs, host), ['web', '-n', '20', '--since', '-1h', '-u', 'nginx.service']);
    expect([r.exitCode, r.stdout]).toEqual([0, 'web nginx[7]: \\x1b[31mred\\x1b[0m\n']);
    const argv = host.runner.argvs()[1];
    expect(argv[2]).toMatch(/^--unit=nspawnctl-logs-4242-[0-9a-f]{8}\.service$/);
    expect([...argv.slice(0, 2), ...argv.slice(3)]).toEqual(['systemd-run', '--machine=web', '--wait', '--pipe', '--quiet', '--collect', '--', 'journalctl', '--no-pager', '--lines=20', '--since=-1h', '--unit=nginx.service']);
  });

  test('an unmanaged machine: exit 1, nothing runs', async () => {
    const host = new FakeHost();
    const r = await runCommand(withHost(Logs, host), ['web', '-f']);
    expect(r.exitCode).toBe(1);
    expect(host.runner.calls).toEqual([]);
  });

  test('a bad --unit: exit 2, nothing runs', async () => {
    const host = hostWithWeb();
    const r = await runCommand(withHost(Logs, host), ['web', '-u', '--all']);
    expect(r.exitCode).toBe(2);
    expect(host.runner.calls).toEqual([]);
  });
});
