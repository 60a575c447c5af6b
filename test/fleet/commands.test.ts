// plan and apply over a fleet, against a FakeHost runner that answers the ssh calls: one section
// per host and a total, per-host JSON, rolling apply stopping at --max-fail without contacting the
// rest, the remote command lines, version notes, and fleet flags refused without hosts:.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NspawnctlError } from '../../src/errors';
import { FleetApplyFlags, fleetApply, fleetHostInit, FleetIo, fleetPlan, refuseFleetFlags } from '../../src/fleet/commands';
import { hostSlice } from '../../src/fleet/slice';
import { remoteCommand } from '../../src/fleet/ssh';
import { parseManifest } from '../../src/manifest/load';
import { FakeHost, RunCall } from '../helpers/fake-host';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
const VERSION = '0.1.0';
const ALPHA = 'root@10.0.0.5';
const BETA = 'deploy@beta.example';

const manifest = parseManifest(
  'fleet.yaml',
  yaml(
    'hosts:',
    `  alpha: { ssh: ${ALPHA} }`,
    `  beta: { ssh: ${BETA}, port: 2222, sudo: true }`,
    'networks:',
    '  lan: { subnet: 10.77.0.0/24 }',
    'machines:',
    '  web: { host: alpha, network: { bridge: lan, address: 10.77.0.10 } }',
    '  db: { host: alpha, network: { bridge: lan, address: 10.77.0.11 } }',
    '  api: { host: beta, network: { bridge: lan, address: 10.77.0.10 } }',
  ),
);
const fleet = manifest.fleet!;

/** The ssh calls that run a command on `dest` (not the -O exit that closes its connection). */
const on = (dest: string, remote?: (cmd: string) => boolean) => (argv: string[]) =>
  argv[0] === 'ssh' && !argv.includes('-O') && argv[argv.indexOf('--') + 1] === dest && (remote === undefined || remote(argv[argv.length - 1]));
const asks = (word: string) => (cmd: string) => cmd.includes(`'${word}'`);
const closing = (argv: string[]) => argv[0] === 'ssh' && argv.includes('-O');
/** Each host asked which machines it has: `nspawnctl list --json`, without a manifest. */
const locating = (argv: string[]) => argv[0] === 'ssh' && !argv.includes('-O') && argv[argv.length - 1].endsWith(`'list' '--json'`);
const remoteOf = (c: RunCall) => c.args[c.args.length - 1];
const versionOut = (v: string) => ({ stdout: `nspawnctl/${v} linux-x64 node-v20.20.2\n` });

const PLAN_JSON = {
  changes: true,
  steps: [
    { kind: 'create-network', description: 'create network lan', reason: 'not on the host' },
    { kind: 'create-machine', description: 'create machine web' },
  ],
  conflicts: [],
  notices: [],
};

// The same object src/fleet/ssh.ts calls tmpdir() on (a TMPDIR set here would not reach it: jest
// gives a test file its own copy of process.env, Node's os module reads the real one).
const nodeOs = require('node:os') as typeof import('node:os');

let base: string;
let host: FakeHost;
let out: string[];
let err: string[];
beforeEach(() => {
  // The transport's control directory goes under os.tmpdir(): a fresh one per test, checked empty at the end.
  base = mkdtempSync(join(tmpdir(), 'nspawnctl-fleet-cmd-'));
  jest.spyOn(nodeOs, 'tmpdir').mockReturnValue(base);
  host = new FakeHost();
  host.runner.on(closing);
  // Where the machines are now (plan and apply look for moved machines first): nowhere yet.
  host.runner.on(locating, { stdout: '[]\n' });
  out = [];
  err = [];
});
afterEach(() => {
  jest.restoreAllMocks();
  rmSync(base, { recursive: true, force: true });
});

const io = (json = false): FleetIo => ({ runner: host.runner, out: (t) => out.push(t), err: (t) => err.push(t), json, version: VERSION, renderer: 'silent' });
const callsTo = (dest: string) => host.runner.calls.filter((c) => c.file === 'ssh' && c.args.includes(dest));

/** alpha answers a plan with PLAN_JSON; beta cannot be reached. */
function scriptPlan(alphaVersion = VERSION): void {
  host.runner.on(on(ALPHA, asks('--version')), versionOut(alphaVersion));
  host.runner.on(on(ALPHA, asks('plan')), { stdout: `${JSON.stringify(PLAN_JSON, null, 2)}\n` });
  host.runner.on(on(BETA), { exitCode: 255, stderr: 'ssh: connect to host beta.example port 2222: Connection refused\r\n' });
}

describe('fleetPlan', () => {
  test('one section per host and a total; an unreachable host makes it exit 1', async () => {
    scriptPlan();
    expect(await fleetPlan(io(), manifest, {})).toBe(1);
    expect(out).toEqual([
      [
        '== host alpha (root@10.0.0.5): 2 step(s) (2 machine(s): db, web)',
        '  1. create network lan  (not on the host)',
        '  2. create machine web',
        '== host beta (deploy@beta.example:2222): unreachable: ssh: connect to host beta.example port 2222: Connection refused',
        'Total: 2 step(s) on 1 host(s); 1 host(s) could not be planned: beta.',
      ].join('\n'),
    ]);
    expect(err).toEqual([]);
    host.assertNoUnmatchedCalls();
  });

  test("each host gets its own slice on stdin, and the plan command line, nothing else", async () => {
    scriptPlan();
    await fleetPlan(io(), manifest, {});
    const plan = host.runner.calls.find((c) => on(ALPHA, asks('plan'))([c.file, ...c.args]))!;
    expect(remoteOf(plan)).toBe(remoteCommand(['nspawnctl', 'plan', '--json', '-']));
    expect(plan.options?.input).toBe(hostSlice(fleet, 'alpha'));
    // beta was asked which machines it has (for moves), then failed at the version: no plan was asked of it.
    expect(callsTo(BETA).filter((c) => !c.args.includes('-O')).map(remoteOf)).toEqual([remoteCommand(['sudo', '-n', '--', 'nspawnctl', 'list', '--json']), remoteCommand(['sudo', '-n', '--', 'nspawnctl', '--version'])]);
  });

  test('all hosts planned: exit 0 and no failure in the total', async () => {
    host.runner.on(on(ALPHA, asks('--version')), versionOut(VERSION));
    host.runner.on(on(ALPHA, asks('plan')), { stdout: JSON.stringify({ steps: [] }) });
    host.runner.on(on(BETA, asks('--version')), versionOut(VERSION));
    host.runner.on(on(BETA, asks('plan')), { stdout: JSON.stringify(PLAN_JSON) });
    expect(await fleetPlan(io(), manifest, {})).toBe(0);
    expect(out.join('')).toContain('== host alpha (root@10.0.0.5): no changes (2 machine(s): db, web)');
    expect(out.join('')).toMatch(/\nTotal: 2 step\(s\) on 2 host\(s\)\.$/);
  });

  test("a remote's control characters do not reach the terminal raw", async () => {
    host.runner.on(on(ALPHA, asks('--version')), versionOut(VERSION));
    host.runner.on(on(ALPHA, asks('plan')), { stdout: JSON.stringify({ steps: [{ description: 'create machine \x1b[2Jweb' }], notices: [{ message: '\x07bell' }] }) });
    await fleetPlan(io(), manifest, { host: ['alpha'] });
    expect(out.join('')).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(out.join('')).toContain('  1. create machine \\x1b[2Jweb');
    expect(out.join('')).toContain('  note: \\x07bell');
  });

  test('--json: hosts.NAME with its result (and the remote plan), and the total', async () => {
    scriptPlan();
    expect(await fleetPlan(io(true), manifest, {})).toBe(1);
    const doc = JSON.parse(out.join(''));
    expect(Object.keys(doc.hosts)).toEqual(['alpha', 'beta']);
    expect(doc.hosts.alpha).toEqual({ result: 'ok', exitCode: 0, json: PLAN_JSON, version: VERSION });
    expect(doc.hosts.beta).toEqual({ result: 'unreachable', exitCode: 255, error: 'ssh: connect to host beta.example port 2222: Connection refused' });
    expect(doc.total).toEqual({ steps: 2, moves: 0, hosts: 2, failed: ['beta'] });
  });

  test('--host: only that host is planned; the others are only asked which machines they have (a machine may move from there)', async () => {
    scriptPlan();
    await fleetPlan(io(), manifest, { host: ['alpha'] });
    expect(callsTo(BETA).filter((c) => !c.args.includes('-O')).map(remoteOf)).toEqual([remoteCommand(['sudo', '-n', '--', 'nspawnctl', 'list', '--json'])]);
    expect(out.join('')).toMatch(/^== host alpha .*\n[\s\S]*Total: 2 step\(s\) on 1 host\(s\)\.$/);
  });

  test('a host running another version gets a note on stderr', async () => {
    scriptPlan('0.0.9');
    await fleetPlan(io(), manifest, {});
    expect(err).toEqual([`note: host alpha runs nspawnctl 0.0.9, this is ${VERSION}; upgrade it: nspawnctl host init fleet.yaml --host alpha --package PKG\n`]);
  });

  test("a remote's version string cannot put control characters on the terminal either", async () => {
    host.runner.on(on(ALPHA, asks('--version')), { stdout: 'nspawnctl/0.1.0\x1b]0;owned\x07\x9b2J linux-x64\n' });
    host.runner.on(on(ALPHA, asks('plan')), { stdout: JSON.stringify({ steps: [] }) });
    await fleetPlan(io(), manifest, { host: ['alpha'] });
    expect(err.join('')).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
    expect(err).toEqual([`note: host alpha runs nspawnctl 0.1.0\\x1b]0;owned\\x07\\u009b2J, this is ${VERSION}; upgrade it: nspawnctl host init fleet.yaml --host alpha --package PKG\n`]);
  });

  test('a --version answer that is not nspawnctl\'s: that host failed, saying what it printed, escaped', async () => {
    host.runner.on(on(ALPHA, asks('--version')), { stdout: 'welcome \x9b2J\n' });
    expect(await fleetPlan(io(), manifest, { host: ['alpha'] })).toBe(1);
    expect(out.join('')).toBe('== host alpha (root@10.0.0.5): failed: nspawnctl --version printed "welcome \\u009b2J\\n"\nTotal: 0 step(s) on 0 host(s); 1 host(s) could not be planned: alpha.');
  });

  test('a host without nspawnctl: not-installed, with how to install it', async () => {
    host.runner.on(on(ALPHA), { exitCode: 127, stderr: 'sh: 1: nspawnctl: not found\n' });
    await fleetPlan(io(true), manifest, { host: ['alpha'] });
    expect(JSON.parse(out.join('')).hosts.alpha).toEqual({
      result: 'not-installed',
      exitCode: 127,
      error: 'nspawnctl is not installed there (sh: 1: nspawnctl: not found); install it: nspawnctl host init FILE --host alpha --package PKG',
    });
  });

  test('every connection used is closed with ssh -O exit, and the control directory is removed', async () => {
    scriptPlan();
    await fleetPlan(io(), manifest, {});
    const closed = host.runner.argvs().filter(closing).map((a) => a[a.length - 1]);
    expect(closed.sort()).toEqual([BETA, ALPHA].sort());
    // The sockets were in a directory of its own under the temporary directory, gone now.
    const controlPath = host.runner.argvs()[0].find((a) => a.startsWith('ControlPath='));
    expect(controlPath).toMatch(new RegExp(`^ControlPath=${base}/nspawnctl-ssh-[A-Za-z0-9]{6}/%C$`));
    expect(readdirSync(base)).toEqual([]);
  });

  test('an --ssh-option that turns host key checking off is refused before any ssh runs', async () => {
    scriptPlan();
    const p = fleetPlan(io(), manifest, { 'ssh-option': ['StrictHostKeyChecking=no'] });
    await expect(p).rejects.toThrow(/would weaken host key checking/);
    await expect(p).rejects.toMatchObject({ exitCode: 2 });
    expect(host.runner.calls).toEqual([]);
    expect(readdirSync(base)).toEqual([]);
  });

  test('an --ssh-option reaches every ssh call, -O exit included', async () => {
    scriptPlan();
    await fleetPlan(io(), manifest, { 'ssh-option': ['ServerAliveInterval=7'] });
    for (const argv of host.runner.argvs()) expect(argv.join(' ')).toContain('-o ServerAliveInterval=7');
  });
});

describe('fleetApply', () => {
  const flags = (o: Partial<FleetApplyFlags> = {}): FleetApplyFlags => ({ forks: 5, yes: false, wait: false, 'start-timeout': 120, jobs: 4, ...o });
  const APPLY_OK = JSON.stringify({ steps: [{}, {}], applied: [{}, {}] });

  function scriptApply(alpha: { exitCode?: number; stdout: string }, beta: { exitCode?: number; stdout: string } = { stdout: APPLY_OK }): void {
    host.runner.on(on(ALPHA, asks('--version')), versionOut(VERSION));
    host.runner.on(on(ALPHA, asks('apply')), alpha);
    host.runner.on(on(BETA, asks('--version')), versionOut(VERSION));
    host.runner.on(on(BETA, asks('apply')), beta);
  }

  test('--serial 1 --max-fail 1: the first host fails, the second is skipped: asked only which machines it has, before anything, never applied', async () => {
    scriptApply({ exitCode: 1, stdout: JSON.stringify({ error: { message: 'machine web did not start' } }) });
    expect(await fleetApply(io(), manifest, flags({ serial: 1, 'max-fail': 1 }))).toBe(1);
    expect(callsTo(BETA).filter((c) => !c.args.includes('-O')).map(remoteOf)).toEqual([remoteCommand(['sudo', '-n', '--', 'nspawnctl', 'list', '--json'])]);
    expect(out).toEqual(['alpha: failed: machine web did not start\nbeta: skipped: not started: 1 host(s) failed (--max-fail 1)']);
    host.assertNoUnmatchedCalls();
  });

  test('without --max-fail the second batch still runs after a failure', async () => {
    scriptApply({ exitCode: 1, stdout: JSON.stringify({ error: { message: 'boom' } }) });
    expect(await fleetApply(io(), manifest, flags({ serial: 1 }))).toBe(1);
    expect(out).toEqual(['alpha: failed: boom\nbeta: applied 2 of 2 step(s)']);
  });

  test('the remote apply: --no-wait by default, no --yes, the slice on stdin', async () => {
    scriptApply({ stdout: APPLY_OK });
    expect(await fleetApply(io(), manifest, flags())).toBe(0);
    const apply = host.runner.calls.find((c) => on(ALPHA, asks('apply'))([c.file, ...c.args]))!;
    expect(remoteOf(apply)).toBe(remoteCommand(['nspawnctl', 'apply', '--json', '--events', '--start-timeout=120', '--jobs=4', '--no-wait', '-']));
    expect(apply.options?.input).toBe(hostSlice(fleet, 'alpha'));
    expect(out).toEqual(['alpha: applied 2 of 2 step(s)\nbeta: applied 2 of 2 step(s)']);
  });

  test('--yes is passed on only when given, --wait drops --no-wait; a sudo host gets sudo -n -- first', async () => {
    scriptApply({ stdout: APPLY_OK });
    await fleetApply(io(), manifest, flags({ yes: true, wait: true }));
    const beta = host.runner.calls.find((c) => on(BETA, asks('apply'))([c.file, ...c.args]))!;
    expect(remoteOf(beta)).toBe(remoteCommand(['sudo', '-n', '--', 'nspawnctl', 'apply', '--json', '--events', '--start-timeout=120', '--jobs=4', '--yes', '-']));
  });

  test('--json: each host with its result, and ok', async () => {
    scriptApply({ stdout: JSON.stringify({ steps: [] }) }, { exitCode: 5, stdout: JSON.stringify({ error: { message: 'another nspawnctl holds the host lock' } }) });
    expect(await fleetApply(io(true), manifest, flags())).toBe(1);
    const doc = JSON.parse(out.join(''));
    expect(doc.ok).toBe(false);
    expect(doc.hosts.alpha).toMatchObject({ result: 'ok', version: VERSION });
    expect(doc.hosts.beta).toMatchObject({ result: 'busy', exitCode: 5, error: 'another nspawnctl holds the host lock' });
  });

  test('a version mismatch prints a note', async () => {
    host.runner.on(on(ALPHA, asks('--version')), versionOut('0.2.0'));
    host.runner.on(on(ALPHA, asks('apply')), { stdout: APPLY_OK });
    await fleetApply(io(), manifest, flags({ host: ['alpha'] }));
    expect(err).toEqual([`note: host alpha runs nspawnctl 0.2.0, this is ${VERSION}; upgrade it: nspawnctl host init fleet.yaml --host alpha --package PKG\n`]);
    expect(readdirSync(base)).toEqual([]);
  });
});

describe('refuseFleetFlags', () => {
  function refusal(flags: Parameters<typeof refuseFleetFlags>[0]): NspawnctlError {
    try {
      refuseFleetFlags(flags, 'machines.yaml');
    } catch (e) {
      if (e instanceof NspawnctlError) return e;
      throw e;
    }
    throw new Error('expected the flags to be refused');
  }

  test('no fleet flag (and the default --forks) is fine for a one-host manifest', () => {
    expect(() => refuseFleetFlags({ forks: 5, host: [], 'hosts-label': [] }, 'machines.yaml')).not.toThrow();
  });

  test('each fleet flag is refused with exit code 2, naming the file', () => {
    const e = refusal({ host: ['alpha'] });
    expect(e.message).toBe('--host need(s) a manifest with hosts: (machines.yaml has none)');
    expect(e.exitCode).toBe(2);
    expect(refusal({ serial: 1 }).message).toMatch(/^--serial need/);
    expect(refusal({ 'max-fail': 1 }).message).toMatch(/^--max-fail need/);
    expect(refusal({ 'ssh-option': ['ConnectTimeout=5'] }).message).toMatch(/^--ssh-option need/);
  });

  test('several at once are all named', () => {
    expect(refusal({ host: ['a'], 'hosts-label': ['eu'], serial: 2 }).message).toBe('--host, --hosts-label, --serial need(s) a manifest with hosts: (machines.yaml has none)');
  });
});

describe('fleetHostInit', () => {
  test('--check on hosts at this version: nothing installed; a host with something missing fails saying what, exit 1', async () => {
    host.runner.on(on(ALPHA, asks('--version')), versionOut(VERSION));
    host.runner.on(on(ALPHA, asks('init')), { exitCode: 1, stdout: JSON.stringify({ ready: false, steps: [{ description: 'install systemd-container' }], findings: [{ what: 'the FORWARD policy is DROP' }] }) });
    host.runner.on(on(BETA, asks('--version')), versionOut(VERSION));
    host.runner.on(on(BETA, asks('init')), { stdout: JSON.stringify({ ready: true, steps: [], findings: [] }) });
    expect(await fleetHostInit(io(), manifest, { check: true, 'dry-run': false })).toBe(1);
    expect(out).toEqual(['alpha: failed: not ready: install systemd-container; the FORWARD policy is DROP\nbeta: ready']);
    const remotes = host.runner.calls.filter((c) => c.file === 'ssh' && !c.args.includes('-O')).map(remoteOf);
    expect(remotes.some((c) => c.includes("'apt-get'") || c.includes("'dd'"))).toBe(false);
    expect(remotes).toContain(remoteCommand(['nspawnctl', 'host', 'init', '--json', '--check', '-']));
    host.assertNoUnmatchedCalls();
  });
});

describe('fleetApply progress: one listr2 group per host, its machines inside', () => {
  test('each machine is a task of its host\'s group, showing its steps from the host\'s --events; a failed machine is marked, the others are not', async () => {
    const event = (group: string, status: string, step: string) => JSON.stringify({ event: 'step', status, group, step });
    host.runner.on(on(ALPHA, asks('--version')), versionOut(VERSION));
    host.runner.on(on(ALPHA, asks('apply')), (call) => {
      for (const line of [event(':host', 'start', 'create network lan'), event(':host', 'done', 'create network lan'), event('db', 'start', 'start db'), event('db', 'done', 'start db'), event('web', 'start', 'start web'), event('web', 'failed', 'start web')]) call.options?.onLine?.(line);
      return { exitCode: 1, stdout: JSON.stringify({ error: { message: '1 machine failed' } }) };
    });
    host.runner.on(on(BETA, asks('--version')), { exitCode: 255, stderr: 'ssh: connect to host beta.example port 2222: Connection refused\n' });
    // The simple renderer writes progress on stdout and failures on stderr: both are what a user sees.
    const shown: string[] = [];
    const capture = ((chunk: unknown) => {
      shown.push(String(chunk));
      return true;
    }) as never;
    const writes = [jest.spyOn(process.stdout, 'write').mockImplementation(capture), jest.spyOn(process.stderr, 'write').mockImplementation(capture)];
    try {
      expect(await fleetApply({ ...io(), renderer: 'simple' }, manifest, { forks: 1, yes: false, wait: false, 'start-timeout': 120, jobs: 4 })).toBe(1);
    } finally {
      for (const w of writes) w.mockRestore();
    }
    const text = shown.join('');
    // alpha's group: networks and host failed (the host's apply exited 1), db done, web failed at its step.
    expect(text).toMatch(/✔ db/);
    expect(text).toMatch(/✖ web/);
    expect(text).toContain('start web [failed]');
    expect(text).toMatch(/✖ networks and host/);
    // beta could not be reached: its machine was not applied.
    expect(text).toMatch(/✖ api/);
    expect(out).toEqual(['alpha: failed: 1 machine failed\nbeta: unreachable: ssh: connect to host beta.example port 2222: Connection refused']);
  });
});
