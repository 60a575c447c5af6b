// The kernel limits booted machines use up: sizing for memory, the limit in force across user
// namespace levels, the budget arithmetic, and which machines count.
import { parseManifest } from '../../src/manifest/load';
import {
  describeShortfall,
  findLimitProblems,
  findShortfalls,
  HOST_LIMITS,
  limitInForce,
  machinesAfter,
  machinesForMemory,
  machinesThatFit,
  parseMemTotal,
  parseSysctl,
  readSysctls,
  shortfallFix,
  sizedValue,
  sysctlPath,
} from '../../src/plan/host-limits';
import { planChanges } from '../../src/plan/plan';
import { renderDesiredState } from '../../src/render/desired';
import { convergedState, freshState, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';

const [INSTANCES, WATCHES, PTYS] = HOST_LIMITS;
const GiB = 1024 * 1024;

describe('what a machine costs', () => {
  // The measured costs (docs/performance.md#host-limits); a change here changes every sized value.
  test('the measured costs and host shares', () => {
    expect(HOST_LIMITS.map((l) => [l.key, l.alsoLimitedBy, l.perMachine, l.host])).toEqual([
      ['fs.inotify.max_user_instances', ['user.max_inotify_instances'], 8, 16],
      ['fs.inotify.max_user_watches', ['user.max_inotify_watches'], 26, 1024],
      ['kernel.pty.max', [], 1, 64],
    ]);
  });

  test('Debian\'s default of 128 inotify instances leaves room for 14 machines; the 15th does not fit', () => {
    expect(machinesThatFit(INSTANCES, 128)).toBe(14);
    expect(findShortfalls({ 'fs.inotify.max_user_instances': 128 }, 14)).toEqual([]);
    expect(findShortfalls({ 'fs.inotify.max_user_instances': 128 }, 15)).toEqual([
      { limit: INSTANCES, key: 'fs.inotify.max_user_instances', value: 128, needed: 136, machines: 15 },
    ]);
  });

  test('a value below the host\'s own share leaves room for none', () => {
    expect(machinesThatFit(INSTANCES, 10)).toBe(0);
  });
});

describe('sizing for memory', () => {
  test('machines of 16 MiB that the memory holds', () => {
    expect([machinesForMemory(undefined), machinesForMemory(GiB), machinesForMemory(24105 * 1024)]).toEqual([0, 64, 1506]);
  });

  // Each: the host's share plus what the machines that fit take, rounded up to a power of two.
  test.each<[string, number | undefined, number, [number, number, number]]>([
    ['unknown memory, no machines', undefined, 0, [16, 1024, 64]],
    ['1 GiB', GiB, 0, [1024, 4096, 128]],
    ['4 GiB', 4 * GiB, 0, [4096, 8192, 512]],
    ['24 GiB (this project\'s test machine: 24105 MiB)', 24105 * 1024, 0, [16384, 65536, 2048]],
    ['256 GiB', 256 * GiB, 0, [262144, 524288, 32768]],
    ['4 GiB, 600 machines wanted (more than fit)', 4 * GiB, 600, [8192, 32768, 1024]],
    ['4 GiB, 10 machines wanted (fewer than fit)', 4 * GiB, 10, [4096, 8192, 512]],
  ])('%s', (_name, mem, machines, expected) => {
    expect(HOST_LIMITS.map((l) => sizedValue(l, mem, machines))).toEqual(expected);
  });

  test('never above what the kernel accepts', () => {
    expect(sizedValue(PTYS, 64 * 1024 * GiB)).toBe(1048576);
    expect(sizedValue(INSTANCES, undefined, 200_000_000)).toBe(2 ** 31 - 1);
  });

  test('a few MiB more or less memory does not change the values', () => {
    for (const l of HOST_LIMITS) expect(sizedValue(l, 24105 * 1024)).toBe(sizedValue(l, 24000 * 1024));
  });
});

describe('the limit in force', () => {
  test('in the initial user namespace both keys are one value; the written key is named', () => {
    expect(limitInForce(INSTANCES, { 'fs.inotify.max_user_instances': 128, 'user.max_inotify_instances': 128 })).toEqual({ key: 'fs.inotify.max_user_instances', value: 128 });
  });

  test("in a container whose own namespace's limit is lower, that one is in force", () => {
    expect(limitInForce(INSTANCES, { 'fs.inotify.max_user_instances': 8192, 'user.max_inotify_instances': 100 })).toEqual({ key: 'user.max_inotify_instances', value: 100 });
  });

  test('in a container whose own limit is higher (the default there: 2^31-1), the initial one is', () => {
    expect(limitInForce(INSTANCES, { 'fs.inotify.max_user_instances': 128, 'user.max_inotify_instances': 2147483647 })).toEqual({ key: 'fs.inotify.max_user_instances', value: 128 });
  });

  test('an older kernel without user.*: the fs.inotify key alone; nothing known: undefined', () => {
    expect(limitInForce(WATCHES, { 'fs.inotify.max_user_watches': 8192 })).toEqual({ key: 'fs.inotify.max_user_watches', value: 8192 });
    expect(limitInForce(WATCHES, {})).toBeUndefined();
  });
});

describe('messages', () => {
  test('the shortfall names the key, the value, the room, what would run and the cost', () => {
    const [s] = findShortfalls({ 'fs.inotify.max_user_instances': 128 }, 20);
    expect(describeShortfall(s, '20 would run (5 running now, 15 to start)')).toBe(
      'fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 20 would run (5 running now, 15 to start): they need 176 inotify instances (8 per machine, 16 for the host)',
    );
  });

  test('the fix: host init for the key it writes; the sysctl by hand for another level; outside for a container', () => {
    const [s] = findShortfalls({ 'fs.inotify.max_user_instances': 128 }, 20);
    expect(shortfallFix(s, 4096, { manifest: 'machines.yaml' })).toBe(
      'nspawnctl host init machines.yaml (raises it to 4096 now and keeps it in /etc/sysctl.d/50-nspawnctl.conf), or by hand: sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
    );
    expect(shortfallFix(s, 4096, { readOnly: true })).toBe(
      '/proc/sys is read-only here (nspawnctl runs in a container, and the limit is the kernel\'s): on the host that runs this container, sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
    );
    const [user] = findShortfalls({ 'fs.inotify.max_user_instances': 8192, 'user.max_inotify_instances': 100 }, 20);
    expect(shortfallFix(user, 4096)).toBe(
      'sysctl -w user.max_inotify_instances=4096 (the limit of the user namespace nspawnctl runs in), and keep it with the line "user.max_inotify_instances = 4096" in a file in /etc/sysctl.d/',
    );
  });
});

describe('parsing what the kernel shows', () => {
  test('a sysctl value, MemTotal', () => {
    expect([parseSysctl('128\n'), parseSysctl(' 4096 '), parseSysctl('abc'), parseSysctl(undefined), parseSysctl('')]).toEqual([128, 4096, undefined, undefined, undefined]);
    expect(parseMemTotal('MemTotal:       24684292 kB\nMemFree:         1 kB\n')).toBe(24684292);
    expect(parseMemTotal('MemFree: 1 kB\n')).toBeUndefined();
    expect(sysctlPath('fs.inotify.max_user_instances')).toBe('/proc/sys/fs/inotify/max_user_instances');
  });

  test('readSysctls leaves out what is missing or not a number', async () => {
    const host = new FakeHost();
    host.fs.addFile(sysctlPath('fs.inotify.max_user_instances'), '128\n');
    host.fs.addFile(sysctlPath('kernel.pty.max'), 'garbage\n');
    expect(await readSysctls(host)).toEqual({ 'fs.inotify.max_user_instances': 128 });
  });
});

/** N machines without a network, m00..mNN. */
function manifestOf(n: number, prefix = 'm'): string {
  return `machines:\n${Array.from({ length: n }, (_, i) => `  ${prefix}${String(i).padStart(2, '0')}: {}\n`).join('')}`;
}

describe('which machines count', () => {
  const NOW = '2025-01-01T00:00:00.000Z';
  const planFor = (text: string, state = freshState()) => planChanges(renderDesiredState(parseManifest('machines.yaml', text)), state, { manifestPath: MANIFEST_PATH, now: NOW });

  test('on a fresh host: every machine of the manifest starts', () => {
    expect(machinesAfter(planFor(manifestOf(3)), [])).toEqual({ running: [], starting: ['m00', 'm01', 'm02'] });
  });

  test('machines running that are not in the manifest (another manifest, or not nspawnctl\'s) count too', () => {
    expect(machinesAfter(planFor(manifestOf(2)), ['other', 'zz'])).toEqual({ running: ['other', 'zz'], starting: ['m00', 'm01'] });
  });

  test('a converged host: nothing starts; a stopped machine is started', () => {
    const desired = renderDesiredState(parseManifest('machines.yaml', manifestOf(3)));
    const state = convergedState(desired);
    const converged = planChanges(desired, state, { manifestPath: MANIFEST_PATH, now: NOW });
    expect(machinesAfter(converged, state.running!)).toEqual({ running: ['m00', 'm01', 'm02'], starting: [] });
    const stopped = { ...state, machines: { ...state.machines, m01: { ...state.machines.m01, running: false } }, running: ['m00', 'm02'] };
    const plan = planChanges(desired, stopped, { manifestPath: MANIFEST_PATH, now: NOW });
    expect(machinesAfter(plan, stopped.running)).toEqual({ running: ['m00', 'm02'], starting: ['m01'] });
  });

  test('a rebuilt machine that is stopped now is started by the rebuild, and counts; a running one is not counted twice', () => {
    const desired = renderDesiredState(parseManifest('machines.yaml', manifestOf(2)));
    const state = convergedState(desired);
    const changed = renderDesiredState(parseManifest('machines.yaml', manifestOf(2).replace('m00: {}', 'm00: { suite: trixie }')));
    const stopped = { ...state, machines: { ...state.machines, m00: { ...state.machines.m00, running: false } }, running: ['m01'] };
    const plan = planChanges(changed, stopped, { manifestPath: MANIFEST_PATH, now: NOW });
    expect(plan.steps.filter((s) => s.kind.endsWith('-machine')).map((s) => s.kind)).toEqual(['rebuild-machine']);
    expect(machinesAfter(plan, stopped.running)).toEqual({ running: ['m01'], starting: ['m00'] });
    expect(machinesAfter(planChanges(changed, state, { manifestPath: MANIFEST_PATH, now: NOW }), state.running!)).toEqual({ running: ['m00', 'm01'], starting: [] });
  });

  test('a running machine that is restarted is not counted twice', () => {
    const desired = renderDesiredState(parseManifest('machines.yaml', manifestOf(2)));
    const state = convergedState(desired);
    const changed = renderDesiredState(parseManifest('machines.yaml', manifestOf(2).replace('m00: {}', 'm00: { hostname: other }')));
    const plan = planChanges(changed, state, { manifestPath: MANIFEST_PATH, now: NOW });
    expect(plan.steps.map((s) => s.kind)).toContain('restart-machine');
    expect(machinesAfter(plan, state.running!)).toEqual({ running: ['m00', 'm01'], starting: [] });
  });
});

describe('findLimitProblems (the budget check of plan and apply)', () => {
  const NOW = '2025-01-01T00:00:00.000Z';
  function hostWith(values: Record<string, number>): FakeHost {
    const host = new FakeHost();
    for (const [k, v] of Object.entries(values)) host.fs.addFile(sysctlPath(k), `${v}\n`);
    host.fs.addFile('/proc/meminfo', `MemTotal:       ${4 * GiB} kB\n`);
    return host;
  }
  const planFor = (text: string, running: string[] = []) => {
    const desired = renderDesiredState(parseManifest('machines.yaml', text));
    const state = freshState({ running });
    return { plan: planChanges(desired, state, { manifestPath: MANIFEST_PATH, now: NOW }), state };
  };

  test('running plus starting, times the cost, plus the host share, against the limit', async () => {
    const host = hostWith({ 'fs.inotify.max_user_instances': 128, 'user.max_inotify_instances': 128, 'fs.inotify.max_user_watches': 32861, 'kernel.pty.max': 4096 });
    // 10 running + 4 new = 14: 16 + 8 x 14 = 128 fits exactly.
    const fits = planFor(manifestOf(4, 'n'), Array.from({ length: 10 }, (_, i) => `r${i}`));
    expect(await findLimitProblems(host, fits.plan, fits.state)).toEqual([]);
    // One more running machine: 15 would run, 136 > 128.
    const over = planFor(manifestOf(4, 'n'), Array.from({ length: 11 }, (_, i) => `r${i}`));
    expect(await findLimitProblems(host, over.plan, over.state)).toEqual([
      {
        what: 'fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 15 would run (11 running now, 4 to start): they need 136 inotify instances (8 per machine, 16 for the host)',
        fix: 'nspawnctl host init (raises it to 4096 now and keeps it in /etc/sysctl.d/50-nspawnctl.conf), or by hand: sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
      },
    ]);
  });

  test('the fix names the manifest: host init sizes for its machines, where the memory alone holds fewer', async () => {
    // 256 MiB holds 16 machines of 16 MiB: host init without the manifest would raise to 256 (room for 30).
    const host = hostWith({ 'fs.inotify.max_user_instances': 128, 'user.max_inotify_instances': 128 });
    host.fs.addFile('/proc/meminfo', `MemTotal:       ${256 * 1024} kB\n`);
    expect(sizedValue(INSTANCES, 256 * 1024)).toBe(256);
    const { plan, state } = planFor(manifestOf(40));
    const [p] = await findLimitProblems(host, plan, state, 'fleet/machines.yaml');
    expect(p.fix).toBe(
      'nspawnctl host init fleet/machines.yaml (raises it to 512 now and keeps it in /etc/sysctl.d/50-nspawnctl.conf), or by hand: sysctl -w fs.inotify.max_user_instances=512, and keep it with the line "fs.inotify.max_user_instances = 512" in a file in /etc/sysctl.d/',
    );
    expect(machinesThatFit(INSTANCES, 512)).toBeGreaterThanOrEqual(40);
  });

  test('every limit too low is named, each with its fix', async () => {
    const host = hostWith({ 'fs.inotify.max_user_instances': 128, 'fs.inotify.max_user_watches': 512, 'kernel.pty.max': 4096 });
    const { plan, state } = planFor(manifestOf(20));
    expect((await findLimitProblems(host, plan, state)).map((p) => p.what.split(' = ')[0])).toEqual(['fs.inotify.max_user_instances', 'fs.inotify.max_user_watches']);
  });

  test('a plan that starts no new machine reads nothing, however low the limit (the machines run already)', async () => {
    const host = hostWith({ 'fs.inotify.max_user_instances': 16 });
    const desired = renderDesiredState(parseManifest('machines.yaml', manifestOf(20)));
    const state = convergedState(desired);
    const plan = planChanges(desired, state, { manifestPath: MANIFEST_PATH, now: NOW });
    const read = jest.spyOn(host.fs, 'readText');
    expect(await findLimitProblems(host, plan, state)).toEqual([]);
    expect(read).not.toHaveBeenCalled();
  });

  test('limits the kernel does not show are not checked', async () => {
    const { plan, state } = planFor(manifestOf(40));
    expect(await findLimitProblems(new FakeHost(), plan, state)).toEqual([]);
  });

  test('/proc/sys read-only (nspawnctl in a container): the fix is on the host that runs it', async () => {
    const host = hostWith({ 'fs.inotify.max_user_instances': 128 });
    host.fs.readOnly.add('/proc/sys');
    const { plan, state } = planFor(manifestOf(20));
    const [p] = await findLimitProblems(host, plan, state);
    expect(p.fix).toBe(
      '/proc/sys is read-only here (nspawnctl runs in a container, and the limit is the kernel\'s): on the host that runs this container, sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
    );
  });
});
