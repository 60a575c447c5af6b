// rebuild and rollback with a fake host: a fresh root filesystem is built in staging and swapped in
// with one stop and one start, the old one kept as the recorded previous; rollback exchanges the
// two; a root filesystem that does not reach readiness is swapped back; destroy removes the
// previous; and the plan says which pending changes rebuild would not make.
import { destroyMachine } from '../../src/apply/destroy';
import { rebuildMachine, rollbackMachine, RolledBackError } from '../../src/apply/rebuild';
import { machineRecordPath, previousRootfsPath, rootfsPath, stagingPath } from '../../src/host/paths';
import { newMachineRecord, planChanges } from '../../src/plan/plan';
import { changesBlockingRebuild } from '../../src/plan/rebuild';
import { MachineRecord } from '../../src/plan/records';
import { convergedState, convergeFakeHost, CREATED, desiredFrom, makeBootedHost, MANIFEST_PATH, machineRecordFor } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { simulateSystemd } from '../helpers/simulated-systemd';

const MANIFEST = `networks:
  br0: { subnet: 10.0.0.0/24 }
machines:
  web:
    network: { bridge: br0, address: 10.0.0.2 }
    bind:
      - { host: /srv/data, machine: /var/data, create: true }
    files:
      - { path: /etc/motd, content: "v1\\n" }
`;
const V2 = MANIFEST.replace('v1', 'v2');
const ROOTFS = rootfsPath('web');
const PREVIOUS = previousRootfsPath('web');
const STAGING = stagingPath('web');
const IS_RUNNING = (a: string[]) => a[0] === 'systemctl' && a[1] === '--machine=web' && a[2] === 'is-system-running';

/** A booted fake host where MANIFEST was applied and web runs with a marker in its root and data in its bind. */
function appliedHost(before: (host: FakeHost) => void = () => undefined) {
  const host = makeBootedHost(new FakeHost());
  before(host);
  const sim = simulateSystemd(host, { running: ['web'] });
  convergeFakeHost(host, desiredFrom(MANIFEST).desired, { queries: false });
  host.fs.addFile(`${ROOTFS}/marker`, 'old\n');
  host.fs.addFile('/srv/data/keep', 'kept\n');
  return { host, sim };
}

/** What the rebuild command hands rebuildMachine for `text`. */
function rebuildInput(text: string) {
  const { manifest, desired } = desiredFrom(text);
  const m = desired.machines[0];
  let t = 0;
  return {
    spec: manifest.machines.web,
    entries: m.rootfsEntries,
    record: newMachineRecord(m, MANIFEST_PATH, '2030-01-01T00:00:00.000Z'),
    timeoutMs: 5000,
    // Every reading of the clock is one second later.
    now: () => (t += 1000),
    isoNow: () => '2030-02-03T04:05:06.000Z',
  };
}

/** A file's content in the fake filesystem (undefined when it is not a file). */
function read(host: FakeHost, path: string): string | undefined {
  const node = host.fs.nodes.get(path);
  return node?.type === 'file' ? node.content : undefined;
}

function record(host: FakeHost): MachineRecord {
  return JSON.parse(read(host, machineRecordPath('web'))!);
}

const machinectl = (host: FakeHost, verb: string) => host.runner.argvs().filter((a) => a[0] === 'machinectl' && a[1] === verb);

describe('rebuildMachine', () => {
  test('builds in staging, then one stop, the swap and one start; the old root is the recorded previous; binds untouched', async () => {
    const { host, sim } = appliedHost();
    const report = await rebuildMachine(host, rebuildInput(V2));
    expect(sim.running.has('web')).toBe(true);
    expect(machinectl(host, 'poweroff')).toEqual([['machinectl', 'poweroff', 'web']]);
    expect(machinectl(host, 'start')).toEqual([['machinectl', 'start', 'web']]);
    // The new tree was bootstrapped into staging before the machine was stopped.
    const argvs = host.runner.argvs();
    expect(argvs.findIndex((a) => a[0] === 'mmdebstrap' && a.includes(STAGING))).toBeLessThan(argvs.findIndex((a) => a[1] === 'poweroff'));
    const renames = host.fs.changes.filter((c) => c.startsWith('rename '));
    expect(renames).toEqual([`rename ${ROOTFS} -> ${PREVIOUS}`, `rename ${STAGING} -> ${ROOTFS}`]);
    expect(host.fs.nodes.has(`${ROOTFS}/marker`)).toBe(false);
    expect(read(host, `${PREVIOUS}/marker`)).toBe('old\n');
    expect(read(host, `${ROOTFS}/etc/motd`)).toBe('v2\n');
    expect(read(host, '/srv/data/keep')).toBe('kept\n');
    expect(host.fs.changes.filter((c) => c.includes('/srv/data'))).toEqual([]);
    const old = machineRecordFor(desiredFrom(MANIFEST).desired.machines[0]);
    expect(record(host)).toEqual({
      ...newMachineRecord(desiredFrom(V2).desired.machines[0], MANIFEST_PATH, CREATED),
      bootstrap: { ...old.bootstrap, bootstrapper: 'mmdebstrap' },
      rebuilt: '2030-02-03T04:05:06.000Z',
      previous: { path: PREVIOUS, kept: '2030-02-03T04:05:06.000Z', bootstrap: old.bootstrap, packages: old.packages, provision: old.provision },
    });
    // Clock readings: before the stop, after it, after readiness.
    expect(report).toEqual({ machine: 'web', wasRunning: true, downtimeMs: 2000, stopMs: 1000, startMs: 1000, readiness: { state: 'running', failedUnits: [] }, previous: PREVIOUS });
  });

  test('an earlier previous root is replaced', async () => {
    const { host } = appliedHost();
    host.fs.addFile(`${PREVIOUS}/older`, 'x\n');
    await rebuildMachine(host, rebuildInput(V2));
    expect(host.fs.nodes.has(`${PREVIOUS}/older`)).toBe(false);
    expect(read(host, `${PREVIOUS}/marker`)).toBe('old\n');
  });

  test('a new root that does not reach readiness is swapped back and the old one started; RolledBackError names why', async () => {
    const { host, sim } = appliedHost((h) => h.runner.on(IS_RUNNING, { stdout: 'maintenance\n' }, 1));
    const before = read(host, machineRecordPath('web'));
    const err = await rebuildMachine(host, rebuildInput(V2)).catch((e) => e);
    expect(err).toBeInstanceOf(RolledBackError);
    expect(err.message).toBe('machine web: rolled back: the new root filesystem did not reach readiness (machine web is not ready: its system manager is in state "maintenance"); the old root filesystem runs again');
    expect(sim.running.has('web')).toBe(true);
    expect(machinectl(host, 'start')).toHaveLength(2);
    expect(read(host, `${ROOTFS}/marker`)).toBe('old\n');
    expect(read(host, `${ROOTFS}/etc/motd`)).toBe('v1\n');
    expect(host.fs.nodes.has(STAGING)).toBe(false);
    expect(host.fs.nodes.has(PREVIOUS)).toBe(false);
    expect(read(host, machineRecordPath('web'))).toBe(before);
  });

  test('a failed build changes nothing: the machine keeps running, no stop', async () => {
    const host = makeBootedHost(new FakeHost());
    host.runner.on((a) => a[0] === 'mmdebstrap', ({ args }) => {
      host.fs.addDir(args[args.length - 2]);
      return { exitCode: 100, stderr: 'E: cannot download\n' };
    });
    simulateSystemd(host, { running: ['web'] });
    convergeFakeHost(host, desiredFrom(MANIFEST).desired, { queries: false });
    const before = new Map(host.fs.nodes);
    await expect(rebuildMachine(host, rebuildInput(V2))).rejects.toThrow('E: cannot download');
    expect(machinectl(host, 'poweroff')).toEqual([]);
    expect(host.fs.nodes).toEqual(before);
  });

  test('a read-only machine: the new root is shifted and given its mount points while the machine is down, then started', async () => {
    const ro = MANIFEST.replace('    files:', '    security: { readOnly: true, privateUsers: pick }\n    files:');
    const { host, sim } = appliedHost((h) => h.runner.on((a) => a[0] === 'systemd-nspawn', {}));
    const ready = desiredFrom(ro).desired.machines[0];
    convergeFakeHost(host, desiredFrom(ro).desired, { queries: false });
    await rebuildMachine(host, rebuildInput(ro));
    const argvs = host.runner.argvs();
    const stop = argvs.findIndex((a) => a[0] === 'machinectl' && a[1] === 'poweroff');
    const shift = argvs.findIndex((a) => a[0] === 'systemd-nspawn');
    const start = argvs.findIndex((a) => a[0] === 'machinectl' && a[1] === 'start');
    // Down, then the shift of the new tree (only /bin/true, ownership chown), then the start.
    expect([stop < shift, shift < start]).toEqual([true, true]);
    expect(argvs[shift]).toEqual(expect.arrayContaining([`--directory=${ROOTFS}`, '--private-users=pick', '--private-users-ownership=chown', '/bin/true']));
    // The bind's mount point is made in the new tree, which is the one that runs.
    expect(host.fs.nodes.get(`${ROOTFS}/var/data`)?.type).toBe('dir');
    expect(host.fs.nodes.has(`${ROOTFS}/marker`)).toBe(false);
    expect(read(host, `${PREVIOUS}/marker`)).toBe('old\n');
    expect(sim.running.has('web')).toBe(true);
    expect(ready.machine.security.readOnly).toBe(true);
  });

  test('a read-only machine whose new root cannot be shifted is swapped back and started as it was', async () => {
    const ro = MANIFEST.replace('    files:', '    security: { readOnly: true, privateUsers: pick }\n    files:');
    const { host, sim } = appliedHost((h) => h.runner.on((a) => a[0] === 'systemd-nspawn', { exitCode: 1, stderr: 'Failed to shift\n' }));
    convergeFakeHost(host, desiredFrom(ro).desired, { queries: false });
    const err = await rebuildMachine(host, rebuildInput(ro)).catch((e) => e);
    expect(err).toBeInstanceOf(RolledBackError);
    expect(err.message).toContain('Failed to shift');
    expect(read(host, `${ROOTFS}/marker`)).toBe('old\n');
    expect(host.fs.nodes.has(STAGING)).toBe(false);
    expect(sim.running.has('web')).toBe(true);
  });
});

describe('rollbackMachine', () => {
  test('exchanges the root and the previous with one stop and one start; twice is back where it was', async () => {
    const { host } = appliedHost();
    await rebuildMachine(host, rebuildInput(V2));
    const rebuilt = record(host);
    await rollbackMachine(host, 'web', { timeoutMs: 5000, isoNow: () => '2030-03-01T00:00:00.000Z' });
    expect(read(host, `${ROOTFS}/marker`)).toBe('old\n');
    expect(host.fs.nodes.has(`${PREVIOUS}/marker`)).toBe(false);
    expect(read(host, `${PREVIOUS}/etc/motd`)).toBe('v2\n');
    expect(record(host).bootstrap).toEqual(rebuilt.previous!.bootstrap);
    expect(record(host).previous).toEqual({ ...rebuilt.previous, kept: '2030-03-01T00:00:00.000Z', bootstrap: rebuilt.bootstrap });
    expect(machinectl(host, 'poweroff')).toHaveLength(2);
    expect(machinectl(host, 'start')).toHaveLength(2);
    await rollbackMachine(host, 'web', { timeoutMs: 5000 });
    expect(host.fs.nodes.has(`${ROOTFS}/marker`)).toBe(false);
    expect(read(host, `${PREVIOUS}/marker`)).toBe('old\n');
    expect(host.fs.nodes.has('/var/lib/machines/.nspawnctl-web.swap')).toBe(false);
  });

  test('without a previous root it is an error and nothing is stopped', async () => {
    const { host } = appliedHost();
    await expect(rollbackMachine(host, 'web', { timeoutMs: 5000 })).rejects.toThrow('machine web has no previous root filesystem to roll back to');
    expect(machinectl(host, 'poweroff')).toEqual([]);
  });

  test('a previous root that does not reach readiness is swapped back', async () => {
    let fail = false;
    const { host } = appliedHost((h) => h.runner.on((a) => fail && IS_RUNNING(a), () => ((fail = false), { stdout: 'maintenance\n' })));
    await rebuildMachine(host, rebuildInput(V2));
    const before = read(host, machineRecordPath('web'));
    fail = true;
    await expect(rollbackMachine(host, 'web', { timeoutMs: 5000 })).rejects.toThrow('machine web: rolled back: the previous root filesystem did not reach readiness');
    expect(read(host, `${ROOTFS}/etc/motd`)).toBe('v2\n');
    expect(read(host, `${PREVIOUS}/marker`)).toBe('old\n');
    expect(read(host, machineRecordPath('web'))).toBe(before);
  });
});

test('destroy removes the previous root too', async () => {
  const { host } = appliedHost();
  await rebuildMachine(host, rebuildInput(V2));
  const report = await destroyMachine(host, 'web', { force: false, stopTimeoutMs: 5000 });
  expect(report.removed).toContain(PREVIOUS);
  expect([...host.fs.nodes.keys()].filter((k) => k.startsWith('/var/lib/machines/'))).toEqual([]);
});

describe('changesBlockingRebuild', () => {
  const plan = (text: string) => {
    const { desired } = desiredFrom(MANIFEST);
    return planChanges(desiredFrom(text).desired, convergedState(desired), { manifestPath: MANIFEST_PATH, now: CREATED });
  };

  test('changes inside the root, packages and provision are rebuild\'s own', () => {
    const changed = MANIFEST.replace('v1', 'v2').replace('    bind:', '    packages: [bc]\n    provision: [["true"]]\n    bind:');
    expect(changesBlockingRebuild(plan(changed), 'web')).toEqual([]);
  });

  test('host files (the .nspawn file) and network changes must be applied first', () => {
    const changed = MANIFEST.replace('10.0.0.0/24 }', '10.0.0.0/24, nat: true }').replace('create: true }', 'create: true, readOnly: true }');
    expect(changesBlockingRebuild(plan(changed), 'web')).toEqual([
      'update /etc/systemd/network/50-nspawnctl-br0.network',
      'reload systemd-networkd and reconfigure br0',
      'update /etc/systemd/nspawn/web.nspawn',
    ]);
  });
});
