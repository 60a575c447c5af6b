// nspawnctl run by a normal user (regression tests for the newcomer issue: plan, apply, destroy
// and host init --check died with a raw "EACCES: permission denied, scandir '/var/lib/machines'",
// exit 1). What changes the host needs root (exit 3, before the host is read); what only looks
// (plan, apply --dry-run, list, status, host init --check) runs and says what it could not see.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Apply from '../../src/commands/apply';
import CachePrune from '../../src/commands/cache/prune';
import HostInit from '../../src/commands/host/init';
import List from '../../src/commands/list';
import Plan from '../../src/commands/plan';
import Status from '../../src/commands/status';
import { PermissionDeniedError } from '../../src/errors';
import { Host } from '../../src/host/host';
import { MACHINES_DIR, STATE_DIR } from '../../src/host/paths';
import { convergeFakeHost, desiredFrom, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { REPO_ROOT, RunnableCommand, runCommand, TEST_CWD } from '../helpers/run-command';
import { simulateSystemd } from '../helpers/simulated-systemd';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');

/** The command class, given `host` (and the test's working directory). */
function withHost<C extends abstract new (...args: never[]) => object>(Cmd: C, host: Host): RunnableCommand {
  // @ts-expect-error -- a mixin over the command class; oclif's static run stays
  return class extends Cmd {
    protected createHost(): Host {
      return host;
    }

    protected cwd(): string {
      return TEST_CWD;
    }
  };
}

/**
 * The fake host as a normal user sees a real one: /var/lib/machines and /var/lib/nspawnctl are
 * root's, mode 0700. The directories themselves can be looked at; listing them, and anything
 * below them, is refused (EACCES, which createNodeFs turns into PermissionDeniedError).
 */
function asNormalUser(host: FakeHost, privateDirs = [MACHINES_DIR, STATE_DIR]): FakeHost {
  host.uid = 1000;
  const fs = host.fs;
  const below = (p: string) => privateDirs.some((d) => p.startsWith(`${d}/`));
  const refuse = (p: string) => new PermissionDeniedError('read', p, { code: 'EACCES', asRoot: false });
  const guard = <A extends [string, ...unknown[]], R>(method: (...args: A) => Promise<R>, denied: (p: string) => boolean) =>
    async (...args: A): Promise<R> => {
      if (denied(args[0])) throw refuse(args[0]);
      return method.apply(fs, args);
    };
  fs.stat = guard(fs.stat, below);
  fs.statResolved = guard(fs.statResolved, below);
  fs.readText = guard(fs.readText, below);
  fs.readLink = guard(fs.readLink, below);
  fs.openRootfs = guard(fs.openRootfs, below);
  fs.listDir = guard(fs.listDir, (p) => below(p) || privateDirs.includes(p));
  return host;
}

/** The example applied from /srv/conf/machines.yaml; web runs, db is stopped. */
function exampleHost(): FakeHost {
  const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE, [MANIFEST_PATH]: EXAMPLE } }));
  simulateSystemd(host, { running: ['web'], leaderPid: 4321 });
  convergeFakeHost(host, desiredFrom(EXAMPLE).desired, { queries: false });
  return host;
}

const MUST_BE_ROOT = (command: string) => `nspawnctl: this host is not ready:\n  - nspawnctl ${command} must run as root\nhint: Run it with sudo, or as root.\n`;
const PLAN_NOTE =
  'note: could not read /var/lib/machines, /var/lib/nspawnctl/machines, /var/lib/nspawnctl/networks/examplevlan.json: permission denied; run as root to see the machines and networks\n';
const NOT_SEEN = (what: string, path: string) => `could not read ${path}: permission denied; run as root to see ${what}`;

describe('plan as a normal user', () => {
  test('runs (exit 0), notes what it could not read, and shows those machines and networks as unknown, never as missing', async () => {
    const host = asNormalUser(exampleHost());
    const r = await runCommand(withHost(Plan, host), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe(PLAN_NOTE);
    const network = NOT_SEEN('network examplevlan', '/var/lib/nspawnctl/networks/examplevlan.json');
    const db = NOT_SEEN('machine db', '/var/lib/machines/db');
    const web = NOT_SEEN('machine web', '/var/lib/machines/web');
    expect(r.stdout).toBe(
      [
        '! network examplevlan: conflict',
        `    ${network}`,
        '! machine db: conflict',
        `    ${db}`,
        '! machine web: conflict',
        `    ${web}`,
        '',
        '3 conflict(s); apply will not change anything until they are resolved:',
        `  ! network examplevlan: ${network}`,
        `  ! machine db: ${db}`,
        `  ! machine web: ${web}`,
        '',
      ].join('\n'),
    );
    expect(host.fs.changes).toEqual([]);
  });

  test('with --json: the same note on stderr, the plan as data on stdout', async () => {
    const r = await runCommand(withHost(Plan, asNormalUser(exampleHost())), ['machines.yaml', '--json']);
    expect([r.exitCode, r.stderr]).toEqual([0, PLAN_NOTE]);
    const json = JSON.parse(r.stdout);
    expect(json.steps).toEqual([]);
    expect(json.conflicts.map((c: { path: string }) => c.path)).toEqual(['/var/lib/nspawnctl/networks/examplevlan.json', '/var/lib/machines/db', '/var/lib/machines/web']);
  });

  test('apply --dry-run is the same plan with the same note', async () => {
    const r = await runCommand(withHost(Apply, asNormalUser(exampleHost())), ['machines.yaml', '--dry-run']);
    expect([r.exitCode, r.stderr]).toEqual([0, PLAN_NOTE]);
    expect(r.stdout.split('\n')[0]).toBe('! network examplevlan: conflict');
  });

  // Only the permission problem is turned into a note: any other failure to read still fails.
  test('another error reading the host is not hidden: plan fails with it', async () => {
    const host = exampleHost();
    host.uid = 1000;
    const stat = host.fs.stat.bind(host.fs);
    host.fs.stat = async (p: string) => {
      if (p === '/var/lib/machines/web') throw Object.assign(new Error(`EIO: i/o error, lstat '${p}'`), { code: 'EIO' });
      return stat(p);
    };
    const r = await runCommand(withHost(Plan, host), ['machines.yaml']);
    expect(r.exitCode).toBe(1);
    expect(r.error?.message).toBe("EIO: i/o error, lstat '/var/lib/machines/web'");
  });
});

describe('what changes the host needs root: exit 3 before the host is read', () => {
  test.each([
    ['apply', Apply, ['machines.yaml']],
    ['cache prune', CachePrune, []],
    ['host init', HostInit, ['machines.yaml']],
    ['host init --undo', HostInit, ['--undo']],
  ] as const)('%s', async (command, Cmd, argv) => {
    const host = asNormalUser(exampleHost());
    const r = await runCommand(withHost(Cmd, host), [...argv]);
    expect({ exitCode: r.exitCode, stderr: r.stderr, stdout: r.stdout }).toEqual({ exitCode: 3, stderr: MUST_BE_ROOT(command), stdout: '' });
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });
});

describe('list and status as a normal user', () => {
  const RECORDS_NOTE = 'note: could not read /var/lib/nspawnctl/machines: permission denied; run as root to see the machines nspawnctl manages\n';

  test('list: the note instead of a claim that no machine is managed (exit 0)', async () => {
    const r = await runCommand(withHost(List, asNormalUser(exampleHost())), []);
    expect({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }).toEqual({ exitCode: 0, stdout: '', stderr: RECORDS_NOTE });
    const json = await runCommand(withHost(List, asNormalUser(exampleHost())), ['--json']);
    expect({ exitCode: json.exitCode, stdout: json.stdout, stderr: json.stderr }).toEqual({ exitCode: 0, stdout: '[]\n', stderr: RECORDS_NOTE });
  });

  test('status NAME: what machinectl shows (running, leader), the rest "needs root" (exit 0)', async () => {
    const r = await runCommand(withHost(Status, asNormalUser(exampleHost())), ['web']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe(RECORDS_NOTE);
    expect(r.stdout).toBe(
      ['machine:   web', 'state:     running (leader PID 4321)', 'address:   -', 'users:     -', 'manifest:  - (needs root)', 'built:     -', 'files:     0 managed', 'upgraded:  -', ''].join('\n'),
    );
  });

  // Records readable (say, a host where /var/lib/nspawnctl was opened up), machines not: each
  // machine's comparison is unknown ("needs root"), not "drift".
  test('list with readable records but /var/lib/machines private: each machine "needs root"', async () => {
    const host = asNormalUser(exampleHost(), [MACHINES_DIR]);
    const r = await runCommand(withHost(List, host), []);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('note: could not read /var/lib/machines: permission denied; run as root to see the machines and networks\n');
    expect(r.stdout).toBe(['MACHINE  STATE    ADDRESS     MANIFEST    UPGRADED', 'db       stopped  10.77.0.12  needs root  never', 'web      running  10.77.0.11  needs root  never', ''].join('\n'));
  });
});

describe('host init --check as a normal user', () => {
  // Everything it asks of systemd, dpkg, iptables and nft fails as it would for a normal user.
  test('runs and notes what it could not check; a network it could not see is an error that says to run it as root', async () => {
    const host = asNormalUser(exampleHost());
    host.runner.on(() => true, { exitCode: 1, stderr: 'Permission denied (you must be root)\n' });
    const r = await runCommand(withHost(HostInit, host), ['machines.yaml', '--check']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(
      'note: could not read /var/lib/machines, /var/lib/nspawnctl/host.json, /var/lib/nspawnctl/machines, /var/lib/nspawnctl/networks/examplevlan.json and 1 more: permission denied; run as root to see everything host init checks\n',
    );
    expect(r.stdout).toContain(
      `error: ${NOT_SEEN('network examplevlan', '/var/lib/nspawnctl/networks/examplevlan.json')}\n  fix: Run nspawnctl host init --check as root.\n`,
    );
    expect(host.fs.changes).toEqual([]);
  });
});
