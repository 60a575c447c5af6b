// The planner for machines.NAME.services: (manifest, observed host) -> exact steps. A changed
// drop-in restarts its service inside the machine, never the machine; a machine that starts or
// restarts anyway only has its services checked afterwards.
import { HostState } from '../../src/plan/observe';
import { formatPlanText, planToJson } from '../../src/plan/format';
import { planChanges } from '../../src/plan/plan';
import { describeStep, Plan, Step } from '../../src/plan/steps';
import { DesiredState } from '../../src/render/desired';
import { convergedState, desiredFrom, freshState, MANIFEST_PATH } from '../helpers/converged';

const NOW = '2025-01-01T00:00:00.000Z';
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
const DROPIN = (unit: string) => `/var/lib/machines/web/etc/systemd/system/${unit}.service.d/50-nspawnctl-hardening.conf`;
const RECORD = '/var/lib/nspawnctl/machines/web.json';

function stepKey(s: Step): string {
  switch (s.kind) {
    case 'write-file':
      return `write-file ${s.change} ${s.entry.hostPath}`;
    case 'remove-file':
    case 'write-record':
      return `${s.kind} ${s.path}`;
    case 'install-packages':
      return `install-packages ${s.machine}: ${s.packages.join(' ')}`;
    case 'restart-services':
      return `restart-services ${s.machine} units=[${s.units.join(',')}] released=[${s.released.join(',')}] afterBoot=${s.afterBoot}`;
    default:
      return `${s.kind} ${'machine' in s ? s.machine : ''}`;
  }
}

function plan(desired: DesiredState, state: HostState): Plan {
  return planChanges(desired, state, { manifestPath: MANIFEST_PATH, now: NOW });
}

function stepsFor(applied: string, manifest: string, edit: (s: HostState) => void = () => {}): string[] {
  const state = convergedState(desiredFrom(applied).desired);
  edit(state);
  return plan(desiredFrom(manifest).desired, state).steps.map(stepKey);
}

const machine = (...lines: string[]) => yaml('machines:', '  web:', '    packages: [nginx, cron]', ...lines.map((l) => `    ${l}`));
const plain = machine();
const strict = machine('services: { nginx: { preset: strict } }');
const both = machine('services: { nginx: { preset: strict }, cron: {} }');

test('a new machine with services: written at creation, checked once it runs', () => {
  const steps = plan(desiredFrom(both).desired, freshState()).steps;
  expect(steps.map(stepKey)).toEqual(['create-machine web', 'write-file create /etc/systemd/nspawn/web.nspawn', 'start-machine web', 'restart-services web units=[cron,nginx] released=[] afterBoot=true']);
  const create = steps[0] as Extract<Step, { kind: 'create-machine' }>;
  expect(create.entries.map((e) => e.path)).toEqual(expect.arrayContaining(['/etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf', '/etc/systemd/system/cron.service.d/50-nspawnctl-hardening.conf']));
  expect(create.record.files).toEqual(expect.arrayContaining([DROPIN('nginx'), DROPIN('cron')]));
  expect(describeStep(steps[3])).toBe('check services in web: cron nginx (loaded with their hardening, not failed)');
});

test('hardening added to a running machine: the drop-in written and recorded, that service restarted, the machine left running', () => {
  expect(stepsFor(plain, strict)).toEqual([`write-file create ${DROPIN('nginx')}`, `write-record ${RECORD}`, 'restart-services web units=[nginx] released=[] afterBoot=false']);
});

test('hardening changed: only the changed service is restarted', () => {
  expect(stepsFor(both, both.replace('cron: {}', 'cron: { preset: strict }'))).toEqual([`write-file update ${DROPIN('cron')}`, 'restart-services web units=[cron] released=[] afterBoot=false']);
});

test('hardening removed: the drop-in goes and the service restarts without it', () => {
  const p = plan(desiredFrom(plain).desired, convergedState(desiredFrom(both).desired));
  expect(p.steps.map(stepKey)).toEqual([`remove-file ${DROPIN('cron')}`, `remove-file ${DROPIN('nginx')}`, `write-record ${RECORD}`, 'restart-services web units=[] released=[cron,nginx] afterBoot=false']);
  expect(describeStep(p.steps[3])).toBe('reload systemd in web and restart those that run: cron (hardening removed), nginx (hardening removed)');
  expect(p.summary.find((s) => s.owner.name === 'web')).toEqual({ owner: { type: 'machine', name: 'web' }, action: 'update', changes: [`remove ${DROPIN('cron')}`, `remove ${DROPIN('nginx')}`, 'restart services cron nginx'] });
});

test('one service added, one removed: restarted in one step', () => {
  expect(stepsFor(strict, machine('services: { cron: {} }'))).toEqual([`write-file create ${DROPIN('cron')}`, `remove-file ${DROPIN('nginx')}`, `write-record ${RECORD}`, 'restart-services web units=[cron] released=[nginx] afterBoot=false']);
});

test('a drop-in edited by hand inside the machine is rewritten and its service restarted', () => {
  expect(
    stepsFor(strict, strict, (s) => {
      s.files[DROPIN('nginx')] = { type: 'file', content: '[Service]\nProtectSystem=no\n', mode: 0o644 };
    }),
  ).toEqual([`write-file update ${DROPIN('nginx')}`, 'restart-services web units=[nginx] released=[] afterBoot=false']);
});

test('unchanged hardening: nothing, and nothing is restarted', () => {
  expect(stepsFor(both, both)).toEqual([]);
});

test('a stopped machine: the drop-in written, the machine started, its services checked', () => {
  expect(
    stepsFor(plain, strict, (s) => {
      s.machines.web.running = false;
    }),
  ).toEqual([`write-file create ${DROPIN('nginx')}`, `write-record ${RECORD}`, 'start-machine web', 'restart-services web units=[nginx] released=[] afterBoot=true']);
});

test('a machine restarted for another change checks its services after the restart instead of restarting them', () => {
  const withPort = (text: string) => text.replace('    packages: [nginx, cron]\n', '    packages: [nginx, cron]\n    hostname: www\n');
  expect(stepsFor(plain, withPort(strict))).toEqual([
    'write-file update /etc/systemd/nspawn/web.nspawn',
    'write-file update /var/lib/machines/web/etc/hostname',
    `write-file create ${DROPIN('nginx')}`,
    `write-record ${RECORD}`,
    'restart-machine web',
    'restart-services web units=[nginx] released=[] afterBoot=true',
  ]);
});

test('a service whose package is added in the same plan: installed first, then restarted', () => {
  const before = yaml('machines:', '  web: {}');
  const after = yaml('machines:', '  web:', '    packages: [nginx]', '    services: { nginx: { preset: strict } }');
  expect(stepsFor(before, after)).toEqual([`write-file create ${DROPIN('nginx')}`, 'install-packages web: nginx', `write-record ${RECORD}`, 'restart-services web units=[nginx] released=[] afterBoot=false']);
});

test('removing a drop-in never restarts the machine, unlike other systemd files inside it', () => {
  const p = plan(desiredFrom(plain).desired, convergedState(desiredFrom(strict).desired));
  expect(p.steps.map((s) => s.kind)).not.toContain('restart-machine');
});

test('the step in text and JSON', () => {
  const p = plan(desiredFrom(strict).desired, convergedState(desiredFrom(plain).desired));
  expect(formatPlanText(p)).toContain('  3. reload systemd in web and restart those that run: nginx (new hardening)  (their hardening changed)\n');
  expect((planToJson(p).steps as Record<string, unknown>[])[2]).toEqual({
    kind: 'restart-services',
    description: 'reload systemd in web and restart those that run: nginx (new hardening)',
    reason: 'their hardening changed',
    machine: 'web',
    units: ['nginx'],
    released: [],
    afterBoot: false,
  });
});
