// `nspawnctl list` and `nspawnctl status` through oclif with a fake Host.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import List from '../../src/commands/list';
import Status from '../../src/commands/status';
import { Host } from '../../src/host/host';
import { convergeFakeHost, desiredFrom, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';
import { simulateSystemd } from '../helpers/simulated-systemd';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');

const listWith = (host: Host) =>
  class extends List {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

const statusWith = (host: Host) =>
  class extends Status {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** The example applied from /srv/conf/machines.yaml; web runs, db is stopped. */
function exampleHost(): FakeHost {
  const host = makeBootedHost(new FakeHost({ inputs: { [MANIFEST_PATH]: EXAMPLE } }));
  simulateSystemd(host, { running: ['web'], leaderPid: 4321 });
  convergeFakeHost(host, desiredFrom(EXAMPLE).desired, { queries: false });
  return host;
}

describe('nspawnctl list', () => {
  test('with no records prints that no machine is managed', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host);
    const r = await runCommand(listWith(host), []);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('No machines are managed by nspawnctl on this host.\n');
    expect(r.stderr).toBe('');
    expect(host.fs.changes).toEqual([]);
  });

  test('with no records and --json prints an empty list', async () => {
    const r = await runCommand(listWith(new FakeHost()), ['--json']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });

  test('a table of managed machines with state, address and drift', async () => {
    const host = exampleHost();
    const r = await runCommand(listWith(host), []);
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe(['MACHINE  STATE    ADDRESS     MANIFEST  UPGRADED', 'db       stopped  10.77.0.12  drift     never', 'web      running  10.77.0.11  in sync   never', ''].join('\n'));
    expect(host.fs.changes).toEqual([]);
    host.assertNoUnmatchedCalls();
  });

  test('a manifest that can no longer be read is reported per machine', async () => {
    const host = exampleHost();
    host.inputs.clear();
    const r = await runCommand(listWith(host), []);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(['MACHINE  STATE    ADDRESS  MANIFEST             UPGRADED', 'db       stopped  -        manifest unreadable  never', 'web      running  -        manifest unreadable  never', ''].join('\n'));
  });
});

describe('nspawnctl status', () => {
  test('shows one machine with its pending changes', async () => {
    const host = exampleHost();
    const r = await runCommand(statusWith(host), ['db']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(
      [
        'machine:   db',
        'state:     stopped',
        'address:   10.77.0.12',
        'users:     -',
        'manifest:  /srv/conf/machines.yaml (drift)',
        'built:     debian bookworm with mmdebstrap, 2024-05-06T07:08:09.000Z',
        'files:     9 managed',
        'upgraded:  never (by nspawnctl upgrade)',
        'pending:',
        '  start',
        '',
      ].join('\n'),
    );
  });

  test('a running machine: its leader and the host UIDs its root is (from /proc/LEADER/uid_map)', async () => {
    const host = exampleHost();
    host.fs.addFile('/proc/4321/uid_map', '         0    1507328      65536\n');
    const r = await runCommand(statusWith(host), ['web', '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: 'running', leader: 4321, users: { base: 1507328, count: 65536 } });
    const text = await runCommand(statusWith(host), ['web']);
    expect(text.stdout).toContain('\nusers:     host UIDs 1507328-1572863 (root inside is 1507328:1507328)\n');
    host.fs.addFile('/proc/4321/uid_map', '         0          0 4294967295\n');
    expect((await runCommand(statusWith(host), ['web'])).stdout).toContain('\nusers:     host UIDs (no user namespace: root inside is host root)\n');
  });

  test('an unmanaged name is an error, exit 1', async () => {
    const host = exampleHost();
    const r = await runCommand(statusWith(host), ['ghost']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('nspawnctl: no machine named ghost is managed by nspawnctl\nhint: nspawnctl list shows the machines nspawnctl manages.\n');
  });
});

/** The example with a health check on web (with onFailure: restart when `restart`). */
function manifestWithCheck(restart = false): string {
  const extra = restart ? ', onFailure: restart' : '';
  const text = EXAMPLE.replace('    hostname: web\n', `    hostname: web\n    health: { command: [curl, -fsS, http://localhost/], retries: 2${extra} }\n`);
  expect(text).not.toBe(EXAMPLE);
  return text;
}
const HEALTH_SHOW = ['systemctl', '--machine=web', 'show', 'nspawnctl-health.service', '--property=LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,ExecMainExitTimestampMonotonic,ExecMainPID'];
const MAIN_PID = '77';
const props = (p: Record<string, string>) => ({ stdout: `${Object.entries(p).map(([k, v]) => `${k}=${v}`).join('\n')}\n` });
const FAILED = { LoadState: 'loaded', ActiveState: 'failed', SubState: 'failed', Result: 'exit-code', ExecMainCode: '1', ExecMainStatus: '22', ExecMainExitTimestampMonotonic: '9', ExecMainPID: MAIN_PID };
const PASSED = { LoadState: 'loaded', ActiveState: 'inactive', SubState: 'dead', Result: 'success', ExecMainCode: '1', ExecMainStatus: '0', ExecMainExitTimestampMonotonic: '9', ExecMainPID: MAIN_PID };
const journalOf = (a: string[]) => a[0] === 'systemd-run' && a[1] === '--machine=web' && a.includes('journalctl') && a.includes(`_PID=${MAIN_PID}`);

/** web (with the check) and db applied; `running` run; the check's service answers with `show`. */
function healthHost(show: Record<string, string> | undefined, options: { running?: string[]; restart?: boolean; journal?: string } = {}): FakeHost {
  const text = manifestWithCheck(options.restart);
  const host = makeBootedHost(new FakeHost({ inputs: { [MANIFEST_PATH]: text } }));
  if (show) host.runner.on(HEALTH_SHOW, props(show));
  host.runner.on(journalOf, { stdout: options.journal ?? '' });
  simulateSystemd(host, { running: options.running ?? ['web'], leaderPid: 4321 });
  convergeFakeHost(host, desiredFrom(text).desired, { queries: false });
  return host;
}

describe('health in list and status', () => {
  test('list: a HEALTH column once a machine has a check ("-" for one without); --json has state and detail', async () => {
    const host = healthHost(FAILED);
    const r = await runCommand(listWith(host), []);
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe(
      ['MACHINE  STATE    ADDRESS     MANIFEST  UPGRADED  HEALTH', 'db       stopped  10.77.0.12  drift     never     -', 'web      running  10.77.0.11  in sync   never     unhealthy', ''].join('\n'),
    );
    const json = JSON.parse((await runCommand(listWith(healthHost(FAILED)), ['--json'])).stdout);
    expect(json.map((m: { name: string; health?: unknown }) => [m.name, m.health])).toEqual([
      ['db', undefined],
      ['web', { state: 'unhealthy', detail: 'the last check failed (exit status 22), and the retries are used up' }],
    ]);
    // list does not read the journal (one question per machine); status does.
    expect(host.runner.calls.some((c) => journalOf([c.file, ...c.args]))).toBe(false);
  });

  test('status: unhealthy with the last output from the machine\'s journal, escaped; --json too', async () => {
    const journal = 'curl: (22) The requested URL returned error: 503\n\u001b[31mred\n';
    const r = await runCommand(statusWith(healthHost(FAILED, { journal })), ['web']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(
      [
        'system:    running',
        'health:    unhealthy: the last check failed (exit status 22), and the retries are used up',
        '  | curl: (22) The requested URL returned error: 503',
        '  | \\x1b[31mred',
        '',
      ].join('\n'),
    );
    const json = JSON.parse((await runCommand(statusWith(healthHost(FAILED, { journal })), ['web', '--json'])).stdout);
    expect(json.health).toEqual({
      state: 'unhealthy',
      detail: 'the last check failed (exit status 22), and the retries are used up',
      output: ['curl: (22) The requested URL returned error: 503', '\\x1b[31mred'],
    });
    expect(json.system).toEqual({ state: 'running', failedUnits: [] });
  });

  test('status: healthy after a passing run; a failing run with retries left is unhealthy too', async () => {
    expect(JSON.parse((await runCommand(statusWith(healthHost(PASSED)), ['web', '--json'])).stdout).health).toEqual({ state: 'healthy', detail: 'the last check passed' });
    const retrying = { ...FAILED, ActiveState: 'activating', SubState: 'auto-restart' };
    const r = await runCommand(statusWith(healthHost(retrying)), ['web']);
    expect(r.stdout).toContain('\nhealth:    unhealthy: the last check failed (exit status 22); it runs again after the interval\n');
  });

  test('a machine whose systemd does not answer, or a stopped one, is unknown', async () => {
    const silent = healthHost(undefined);
    silent.runner.on(HEALTH_SHOW, { exitCode: 1, stderr: 'Failed to connect to bus\n' });
    expect(JSON.parse((await runCommand(statusWith(silent), ['web', '--json'])).stdout).health).toEqual({ state: 'unknown', detail: "the machine's systemd did not answer" });
    const stopped = healthHost(undefined, { running: [] });
    const r = await runCommand(statusWith(stopped), ['web', '--json']);
    expect(JSON.parse(r.stdout).health).toEqual({ state: 'unknown', detail: 'the machine is not running' });
    // Nothing was asked of a machine that does not run.
    expect(stopped.runner.calls.some((c) => c.args.includes('--machine=web'))).toBe(false);
  });

  test('onFailure: restart, stopped by its start limit: unhealthy, from the host unit\'s Result', async () => {
    const host = healthHost(undefined, { running: [], restart: true });
    host.runner.on(['systemctl', 'show', 'systemd-nspawn@web.service', '--property=Result', '--value'], { stdout: 'start-limit-hit\n' });
    const r = await runCommand(statusWith(host), ['web']);
    expect(r.stdout).toContain('\nhealth:    unhealthy: the machine is not running: its failing check restarted it until its restart limit was hit (apply starts it again)\n');
    const other = healthHost(undefined, { running: [], restart: true });
    other.runner.on(['systemctl', 'show', 'systemd-nspawn@web.service', '--property=Result', '--value'], { stdout: 'success\n' });
    expect(JSON.parse((await runCommand(statusWith(other), ['web', '--json'])).stdout).health.state).toBe('unknown');
  });

  test('as a normal user: unknown, and the machine\'s systemd is not asked', async () => {
    const host = healthHost(FAILED);
    host.uid = 1000;
    const r = await runCommand(listWith(host), ['--json']);
    const web = JSON.parse(r.stdout).find((m: { name: string }) => m.name === 'web');
    expect(web.health).toEqual({ state: 'unknown', detail: "only root can ask the machine's systemd" });
    expect(host.runner.calls.some((c) => c.args[1] === 'show' && c.args.includes('nspawnctl-health.service'))).toBe(false);
  });
});
