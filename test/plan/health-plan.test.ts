// The planner and health checks, as a table of (manifest applied before, manifest now, host) ->
// steps: a started or restarted machine is waited for until its check passes; a check that
// changes in a running machine is reloaded by the machine's own systemd, without a restart; one
// that goes is stopped there; the host drop-in of onFailure: restart is reloaded live.
import { HostState } from '../../src/plan/observe';
import { formatPlanText, stepToJson } from '../../src/plan/format';
import { planChanges } from '../../src/plan/plan';
import { describeStep, Step } from '../../src/plan/steps';
import { DesiredState } from '../../src/render/desired';
import { convergedState, desiredFrom, freshState, MANIFEST_PATH } from '../helpers/converged';

const NO_CHECK = `machines:
  web: {}
`;
const CHECK = `machines:
  web:
    health: { command: [curl, -fsS, http://localhost/] }
`;
const CHECK_CHANGED = CHECK.replace('http://localhost/', 'http://localhost/ok');
const RESTARTING = CHECK.replace(' }', ', onFailure: restart }');

const SERVICE = '/var/lib/machines/web/etc/systemd/system/nspawnctl-health.service';
const TIMER = '/var/lib/machines/web/etc/systemd/system/nspawnctl-health.timer';
const LINK = '/var/lib/machines/web/etc/systemd/system/timers.target.wants/nspawnctl-health.timer';
const DROPIN = '/etc/systemd/system/systemd-nspawn@web.service.d/50-nspawnctl-health.conf';
const RECORD = '/var/lib/nspawnctl/machines/web.json';

function key(s: Step): string {
  switch (s.kind) {
    case 'write-file':
      return `write-file ${s.change} ${s.entry.hostPath}`;
    case 'remove-file':
    case 'write-record':
      return `${s.kind} ${s.path}`;
    case 'reload-health':
      return `reload-health ${s.action}`;
    case 'reload-units':
      return `reload-units (${s.reason})`;
    default:
      return `${s.kind} ${'machine' in s ? s.machine : ''}`;
  }
}

const rows: { name: string; applied: string; now: string; state?: (s: HostState) => void; steps: string[] }[] = [
  {
    name: 'a new machine with a check: started, then waited for',
    applied: NO_CHECK,
    now: CHECK,
    state: (s) => Object.assign(s, freshState()),
    steps: ['create-machine web', 'write-file create /etc/systemd/nspawn/web.nspawn', 'start-machine web', 'wait-healthy web'],
  },
  { name: 'converged, check unchanged: nothing', applied: CHECK, now: CHECK, steps: [] },
  {
    name: 'a rebuild (provision changed): the new root is waited for until its check passes',
    applied: CHECK,
    now: CHECK.replace('    health:', '    provision: [[mkdir, /srv/app]]\n    health:'),
    steps: ['rebuild-machine web', 'wait-healthy web'],
  },
  {
    name: 'a new machine with services and a check: its services checked first, then the wait (the check may need them)',
    applied: NO_CHECK,
    now: CHECK.replace('    health:', '    services: { cron: {} }\n    health:'),
    state: (s) => Object.assign(s, freshState()),
    steps: ['create-machine web', 'write-file create /etc/systemd/nspawn/web.nspawn', 'start-machine web', 'restart-services web', 'wait-healthy web'],
  },
  {
    name: 'a stopped machine whose service hardening changed: started, services checked, then the wait',
    applied: CHECK.replace('    health:', '    services: { cron: {} }\n    health:'),
    now: CHECK.replace('    health:', '    services: { cron: { preset: strict } }\n    health:'),
    state: (s) => void (s.machines.web.running = false),
    steps: ['write-file update /var/lib/machines/web/etc/systemd/system/cron.service.d/50-nspawnctl-hardening.conf', 'start-machine web', 'restart-services web', 'wait-healthy web'],
  },
  {
    name: 'a check added to a running machine: its units written, its systemd reloads them, no restart',
    applied: NO_CHECK,
    now: CHECK,
    steps: [`write-file create ${SERVICE}`, `write-file create ${TIMER}`, `write-file create ${LINK}`, `write-record ${RECORD}`, 'reload-health start', 'wait-healthy web'],
  },
  {
    name: 'a changed command: the service rewritten, reloaded, waited for',
    applied: CHECK,
    now: CHECK_CHANGED,
    steps: [`write-file update ${SERVICE}`, 'reload-health start', 'wait-healthy web'],
  },
  {
    name: 'a check removed: its units removed and stopped inside, no restart',
    applied: CHECK,
    now: NO_CHECK,
    steps: [`remove-file ${SERVICE}`, `remove-file ${TIMER}`, `remove-file ${LINK}`, `write-record ${RECORD}`, 'reload-health stop'],
  },
  {
    name: 'a stopped machine with a check: started, then waited for',
    applied: CHECK,
    now: CHECK,
    state: (s) => {
      s.machines.web.running = false;
    },
    steps: ['start-machine web', 'wait-healthy web'],
  },
  {
    name: 'a restart for another reason: the wait follows the restart, no reload',
    applied: CHECK,
    now: CHECK_CHANGED.replace('  web:\n', '  web:\n    hostname: www\n'),
    steps: [`write-file update /etc/systemd/nspawn/web.nspawn`, 'write-file update /var/lib/machines/web/etc/hostname', `write-file update ${SERVICE}`, 'restart-machine web', 'wait-healthy web'],
  },
  {
    name: 'onFailure: restart added: the host drop-in (reloaded live) and the service inside',
    applied: CHECK,
    now: RESTARTING,
    steps: [
      `write-file create ${DROPIN}`,
      `write-file update ${SERVICE}`,
      `write-record ${RECORD}`,
      'reload-units (the start limit of its unit changed (health restartLimit, restartWindow))',
      'reload-health start',
      'wait-healthy web',
    ],
  },
  {
    name: 'a service file changed by hand inside the machine: restored, reloaded, waited for',
    applied: CHECK,
    now: CHECK,
    state: (s) => {
      s.files[SERVICE] = { type: 'file', content: '[Service]\nExecStart=/bin/true\n', mode: 0o644 };
    },
    steps: [`write-file update ${SERVICE}`, 'reload-health start', 'wait-healthy web'],
  },
];

describe('plan: health checks', () => {
  test.each(rows)('$name', ({ applied, now, state, steps }) => {
    const before: DesiredState = desiredFrom(applied).desired;
    const observed = convergedState(before);
    state?.(observed);
    const plan = planChanges(desiredFrom(now).desired, observed, { manifestPath: MANIFEST_PATH, now: '2025-01-01T00:00:00.000Z' });
    expect(plan.conflicts).toEqual([]);
    expect(plan.steps.map(key)).toEqual(steps);
  });

  test('the steps as plan shows them, and as JSON', () => {
    const plan = planChanges(desiredFrom(CHECK_CHANGED).desired, convergedState(desiredFrom(CHECK).desired), { manifestPath: MANIFEST_PATH, now: '2025-01-01T00:00:00.000Z' });
    const [, reload, wait] = plan.steps;
    expect(reload).toEqual({ kind: 'reload-health', machine: 'web', action: 'start', reason: 'the health check changed in a running machine' });
    expect(wait).toEqual({ kind: 'wait-healthy', machine: 'web', reason: 'apply returns once the check passes' });
    expect(formatPlanText(plan).split('\n').slice(-4)).toEqual([
      `  1. update ${SERVICE}  (differs from the manifest (changed by hand, or the manifest changed))`,
      "  2. reload the units of web's own systemd and restart its health check timer  (the health check changed in a running machine)",
      '  3. wait until the health check of web passes  (apply returns once the check passes)',
      '',
    ]);
    expect([stepToJson(reload), stepToJson(wait)]).toEqual([
      { kind: 'reload-health', description: "reload the units of web's own systemd and restart its health check timer", reason: 'the health check changed in a running machine', machine: 'web', action: 'start' },
      { kind: 'wait-healthy', description: 'wait until the health check of web passes', reason: 'apply returns once the check passes', machine: 'web' },
    ]);
    const removed = planChanges(desiredFrom(NO_CHECK).desired, convergedState(desiredFrom(CHECK).desired), { manifestPath: MANIFEST_PATH, now: '2025-01-01T00:00:00.000Z' });
    expect(describeStep(removed.steps[removed.steps.length - 1])).toBe("stop web's health check and reload its own systemd's units");
  });
});
