// autoUpgrade in the plan: its three files go into the machine like any generated file, and a
// running machine takes them live (its own systemd reloads and restarts or stops the timer), with
// no restart of the machine. Removing the key removes the files and stops the timer. apply runs
// that step as systemctl --machine calls, never a program of the machine's.
import { runStep } from '../../src/apply/apply';
import { formatPlanText, stepToJson } from '../../src/plan/format';
import { HostState } from '../../src/plan/observe';
import { planChanges } from '../../src/plan/plan';
import { describeStep, Step } from '../../src/plan/steps';
import { DesiredState } from '../../src/render/desired';
import { convergedState, desiredFrom, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';

const NOW = '2025-01-01T00:00:00.000Z';
const BASE = `networks:
  br0: { subnet: 10.0.0.0/24 }
machines:
  web:
    network: { bridge: br0, address: 10.0.0.2 }
  db:
    network: { bridge: br0, address: 10.0.0.3 }
`;
const WITH = BASE.replace('    network: { bridge: br0, address: 10.0.0.2 }\n', '    network: { bridge: br0, address: 10.0.0.2 }\n    autoUpgrade: { schedule: daily }\n');
const WEEKLY = WITH.replace('schedule: daily', 'schedule: weekly');

const ROOT = '/var/lib/machines/web';
const SERVICE = `${ROOT}/etc/systemd/system/nspawnctl-upgrade.service`;
const TIMER = `${ROOT}/etc/systemd/system/nspawnctl-upgrade.timer`;
const LINK = `${ROOT}/etc/systemd/system/timers.target.wants/nspawnctl-upgrade.timer`;
const RECORD = '/var/lib/nspawnctl/machines/web.json';

function key(s: Step): string {
  switch (s.kind) {
    case 'write-file':
      return `write-file ${s.change} ${s.entry.hostPath}`;
    case 'remove-file':
    case 'write-record':
      return `${s.kind} ${s.path}`;
    case 'reload-machine-units':
      return `reload-machine-units ${s.machine} restart=[${s.restart.join(' ')}] stop=[${s.stop.join(' ')}]`;
    default:
      return `${s.kind} ${'machine' in s ? s.machine : ''}`;
  }
}

function planFrom(applied: string, wanted: string, edit: (s: HostState) => void = () => undefined) {
  const state = convergedState(desiredFrom(applied).desired);
  edit(state);
  const desired: DesiredState = desiredFrom(wanted).desired;
  return planChanges(desired, state, { manifestPath: MANIFEST_PATH, now: NOW });
}

describe('planning autoUpgrade', () => {
  test('added to a running machine: its files, the record, and a live reload that restarts the timer; no machine restart', () => {
    const p = planFrom(BASE, WITH);
    expect(p.steps.map(key)).toEqual([
      `write-file create ${SERVICE}`,
      `write-file create ${TIMER}`,
      `write-file create ${LINK}`,
      `write-record ${RECORD}`,
      'reload-machine-units web restart=[nspawnctl-upgrade.timer] stop=[]',
    ]);
    expect(p.summary.find((s) => s.owner.name === 'web')).toEqual({
      owner: { type: 'machine', name: 'web' },
      action: 'update',
      changes: [`create ${SERVICE}`, `create ${TIMER}`, `create ${LINK}`, 'reload units inside, restart nspawnctl-upgrade.timer'],
    });
    expect(p.summary.find((s) => s.owner.name === 'db')?.action).toBe('unchanged');
  });

  test('a converged machine with autoUpgrade plans nothing', () => {
    expect(planFrom(WITH, WITH).steps).toEqual([]);
  });

  test('a changed schedule rewrites the timer and restarts it', () => {
    expect(planFrom(WITH, WEEKLY).steps.map(key)).toEqual([`write-file update ${TIMER}`, 'reload-machine-units web restart=[nspawnctl-upgrade.timer] stop=[]']);
  });

  test('removed: the three files go, the timer is stopped, nothing restarts (no package was installed for it)', () => {
    const p = planFrom(WITH, BASE);
    expect(p.steps.map(key)).toEqual([`remove-file ${SERVICE}`, `remove-file ${TIMER}`, `remove-file ${LINK}`, `write-record ${RECORD}`, 'reload-machine-units web restart=[] stop=[nspawnctl-upgrade.timer]']);
    expect(p.notices).toEqual([]);
  });

  test('a stopped machine gets the files and starts with the timer enabled: no reload step', () => {
    const p = planFrom(BASE, WITH, (s) => {
      s.machines.web.running = false;
    });
    expect(p.steps.map(key)).toEqual([`write-file create ${SERVICE}`, `write-file create ${TIMER}`, `write-file create ${LINK}`, `write-record ${RECORD}`, 'start-machine web']);
  });

  test('a machine that restarts anyway (its .nspawn changed) needs no reload: it boots with the timer', () => {
    const ports = WITH.replace('    autoUpgrade:', '    ports: [{ host: 8080, container: 80 }]\n    autoUpgrade:');
    expect(planFrom(BASE, ports).steps.map(key)).toEqual([
      'write-file update /etc/systemd/nspawn/web.nspawn',
      `write-file create ${SERVICE}`,
      `write-file create ${TIMER}`,
      `write-file create ${LINK}`,
      `write-record ${RECORD}`,
      'restart-machine web',
    ]);
  });

  test('a new machine with autoUpgrade gets the files at creation (the timer starts with its first boot)', () => {
    const state = convergedState(desiredFrom(BASE).desired);
    delete state.machines.web;
    for (const path of Object.keys(state.files)) if (path.includes('/web')) delete state.files[path];
    const p = planChanges(desiredFrom(WITH).desired, state, { manifestPath: MANIFEST_PATH, now: NOW });
    const create = p.steps.find((s): s is Extract<Step, { kind: 'create-machine' }> => s.kind === 'create-machine')!;
    expect(create.entries.map((e) => e.hostPath).filter((h) => h.includes('nspawnctl-upgrade'))).toEqual([SERVICE, TIMER, LINK]);
    expect(p.steps.map((s) => s.kind)).not.toContain('reload-machine-units');
  });

  test('text and JSON of the step', () => {
    const p = planFrom(BASE, WITH);
    const step = p.steps[p.steps.length - 1];
    expect(describeStep(step)).toBe("reload the units of web's own systemd, restart nspawnctl-upgrade.timer");
    expect(stepToJson(step)).toEqual({
      kind: 'reload-machine-units',
      description: "reload the units of web's own systemd, restart nspawnctl-upgrade.timer",
      reason: "units of the machine's own systemd changed; they take effect without a restart",
      machine: 'web',
      restart: ['nspawnctl-upgrade.timer'],
      stop: [],
    });
    expect(formatPlanText(p)).toContain("  5. reload the units of web's own systemd, restart nspawnctl-upgrade.timer  (units of the machine's own systemd changed; they take effect without a restart)\n");
    expect(describeStep({ kind: 'reload-machine-units', machine: 'web', restart: [], stop: ['nspawnctl-upgrade.timer'], reason: 'r' })).toBe("reload the units of web's own systemd, stop nspawnctl-upgrade.timer");
  });
});

describe('apply runs reload-machine-units through the machine\'s own systemd', () => {
  const run = async (restart: string[], stop: string[]) => {
    const host = makeBootedHost(new FakeHost());
    host.runner.on((a) => a[0] === 'systemctl' && a[1] === '--machine=web', {});
    await runStep(host, { kind: 'reload-machine-units', machine: 'web', restart, stop, reason: 'r' }, { startTimeoutMs: 1000 }, () => undefined);
    host.assertNoUnmatchedCalls();
    expect(host.fs.changes).toEqual([]);
    return host.runner.calls.map((c) => [[c.file, ...c.args], c.options?.timeoutMs]);
  };

  test('daemon-reload, then restart: exact argv, each bounded by the short-command timeout', async () => {
    expect(await run(['nspawnctl-upgrade.timer'], [])).toEqual([
      [['systemctl', '--machine=web', 'daemon-reload'], 60_000],
      [['systemctl', '--machine=web', 'restart', 'nspawnctl-upgrade.timer'], 60_000],
    ]);
  });

  test('stop before the reload (a running timer whose file is gone would turn failed), then reset-failed', async () => {
    expect(await run([], ['nspawnctl-upgrade.timer'])).toEqual([
      [['systemctl', '--machine=web', 'stop', 'nspawnctl-upgrade.timer'], 60_000],
      [['systemctl', '--machine=web', 'daemon-reload'], 60_000],
      [['systemctl', '--machine=web', 'reset-failed', 'nspawnctl-upgrade.timer'], 60_000],
    ]);
  });

  test('a machine whose systemd does not answer fails the step, naming the machine', async () => {
    const host = makeBootedHost(new FakeHost());
    host.runner.on((a) => a[0] === 'systemctl', { exitCode: 1, stderr: 'Failed to connect to bus: Host is down\n' });
    await expect(runStep(host, { kind: 'reload-machine-units', machine: 'web', restart: ['nspawnctl-upgrade.timer'], stop: [], reason: 'r' }, { startTimeoutMs: 1000 }, () => undefined)).rejects.toThrow(
      /^machine web: .*systemctl --machine=web daemon-reload.*\n?.*Host is down/s,
    );
  });
});
