// The profiler for a running service: strace attached to every process of its unit inside the
// machine for a while, the filter made from what they called, and what stops it in a machine
// whose root may not trace (the strict machine preset), said before anything is installed.
import { formatServiceProfile, parseDuration, profileService, SERVICE_DENIED_CANDIDATES, SERVICE_OPTIONAL_CANDIDATES, serviceFilterFromSyscalls } from '../../src/apply/profile-service';
import { NspawnctlError } from '../../src/errors';
import { RunCall } from '../helpers/fake-host';
import { parseSyscallTable } from '../../src/host/syscalls';
import { makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { inMachineArgv, simulateSystemd } from '../helpers/simulated-systemd';

// A small @system-service: its members, and groups beside it, as systemd-analyze lists them.
const LISTING = [
  '@system-service',
  '    @aio',
  '    @basic-io',
  '    @keyring',
  '    @resources',
  '    @setuid',
  '    accept4',
  '',
  '@aio',
  '    io_setup',
  '',
  '@basic-io',
  '    read',
  '    write',
  '',
  '@keyring',
  '    add_key',
  '',
  '@resources',
  '    setrlimit',
  '',
  '@setuid',
  '    setuid',
  '',
  '@privileged',
  '    @setuid',
  '    chroot',
  '',
  '@debug',
  '    ptrace',
  '',
  '# Unlisted',
  '#   mysterycall',
  '',
].join('\n');
const TABLE = parseSyscallTable(LISTING);

const SUMMARY = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 50.00    0.000060           6        10           accept4
 30.00    0.000040           4        20           read
 10.00    0.000010           1         2           write
 10.00    0.000010           1         1           ptrace
  0.00    0.000000           0         1           io_setup
  0.00    0.000000           0         1         1 weirdcall
------ ----------- ----------- --------- --------- ----------------
100.00    0.000120           3        35         1 total
`;

test('the filter: @system-service, calls outside it by name, unused @aio and @keyring denied, unused start-up groups offered', () => {
  expect([SERVICE_DENIED_CANDIDATES, SERVICE_OPTIONAL_CANDIDATES]).toEqual([['@aio', '@keyring'], ['@chown', '@memlock', '@privileged', '@resources', '@setuid', '@sync', '@timer']]);
  expect(serviceFilterFromSyscalls(TABLE, ['accept4', 'io_setup', 'ptrace', 'read', 'weirdcall', 'write'])).toEqual({
    extra: ['ptrace'],
    unknown: ['weirdcall'],
    denied: ['@keyring'],
    optional: ['@privileged', '@resources', '@setuid'],
    kept: [{ group: '@aio', because: ['io_setup'] }],
    systemCallFilter: ['@system-service', 'ptrace', '~@keyring'],
  });
  // A start-up group it did call is kept, and says why.
  expect(serviceFilterFromSyscalls(TABLE, ['setuid']).kept).toEqual([
    { group: '@privileged', because: ['setuid'] },
    { group: '@setuid', because: ['setuid'] },
  ]);
});

test('parseDuration: seconds or minutes, 1 s to 1 h', () => {
  expect(['60s', '2m', '90', '1s', '60m'].map(parseDuration)).toEqual([60, 120, 90, 1, 3600]);
  expect(['0s', '61m', '1h', '-5', '1.5m', '', '3601'].map(parseDuration)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined, undefined]);
});

test('the profile as YAML to paste, with the caveats and the offered groups commented out', () => {
  const text = formatServiceProfile({ machine: 'web', service: 'nginx', durationS: 30, processes: 3, syscalls: ['accept4', 'io_setup', 'ptrace', 'read'], ...serviceFilterFromSyscalls(TABLE, ['accept4', 'io_setup', 'ptrace', 'read']) });
  expect(text).toBe(
    [
      '# nspawnctl profile syscalls web --service nginx --duration 30s',
      '# nginx.service (3 processes) made 4 distinct system calls while traced.',
      '# WARNING: a profile covers only the code paths that ran. Exercise the service fully',
      '# (every kind of request, a reload) while it is traced, and keep a margin.',
      '# It was already running, so its start and stop were not traced: the filter starts from',
      '# @system-service, which covers what services ordinarily need, and denies only groups a',
      '# service uses while it works, if at all. The commented groups were not called either: deny',
      '# them only if the service still restarts and reloads with them denied (apply restarts it).',
      '# kept @aio: used io_setup',
      '# outside @system-service, allowed by name: ptrace',
      '# Under machines.web (it replaces the systemCallFilter of services.nginx and of its preset):',
      'services:',
      '  nginx:',
      '    systemCallFilter:',
      '      - "@system-service"',
      '      - "ptrace"',
      '      - "~@keyring"',
      '      # - "~@privileged"',
      '      # - "~@resources"',
      '      # - "~@setuid"',
      '# all calls: accept4 io_setup ptrace read',
      '',
    ].join('\n'),
  );
});

test('a service that made no call while traced: the profile says nothing was seen', () => {
  const text = formatServiceProfile({ machine: 'web', service: 'nginx', durationS: 5, processes: 2, syscalls: [], ...serviceFilterFromSyscalls(TABLE, []) });
  expect(text.split('\n').slice(1, 3)).toEqual([
    '# nginx.service (2 processes) made 0 distinct system calls while traced.',
    '# NOTE: it made no system call while traced (nothing exercised it), so nothing of it was seen: trace it again and send it requests meanwhile.',
  ]);
  expect(formatServiceProfile({ machine: 'web', service: 'nginx', durationS: 5, processes: 2, syscalls: ['read'], ...serviceFilterFromSyscalls(TABLE, ['read']) })).not.toContain('NOTE: it made no system call');
});

describe('profileService', () => {
  const SHOW_STATE = ['machinectl', 'show', 'web', '--property=State', '--value'];
  const LEADER = ['machinectl', 'show', 'web', '--property=Leader', '--value'];
  const UNIT = ['systemctl', '--machine=web', 'show', '--property=Id,LoadState,ActiveState,DropInPaths,MainPID', '--', 'nginx.service'];
  const ANALYZE = ['systemd-analyze', 'syscall-filter', '--no-pager'];
  const HAS_STRACE = inMachineArgv('web', ['test', '-x', '/usr/bin/strace']);
  const BUSCTL = ['busctl', '--machine=web', '--json=short', 'call', 'org.freedesktop.systemd1', '/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager', 'GetUnitProcesses', 's', 'nginx.service'];
  const NOW = 1_700_000_000_000;
  const INNER = `/run/nspawnctl-profile-4242-${NOW}.txt`;
  const STRACE = inMachineArgv('web', ['timeout', '--signal=INT', '20s', 'strace', '-f', '-c', '-o', INNER, '-p', '185', '-p', '186', '-p', '187']);
  const CAT = inMachineArgv('web', ['cat', '--', INNER]);
  const RM = inMachineArgv('web', ['rm', '-f', '--', INNER]);
  const ALL_CAPS = '000001ffffffffff';
  const NO_PTRACE = (BigInt(`0x${ALL_CAPS}`) & ~(1n << 19n)).toString(16).padStart(16, '0');
  const PROCESSES = JSON.stringify({
    type: 'a(sus)',
    data: [[['/system.slice/nginx.service', 185, '"nginx: master process"'], ['/system.slice/nginx.service', 186, '"nginx: worker process"'], ['/system.slice/nginx.service', 187, '"nginx: worker process"']]],
  });

  beforeEach(() => jest.spyOn(Date, 'now').mockReturnValue(NOW));
  afterEach(() => jest.restoreAllMocks());

  const attachLines = (call: RunCall, lines: string[]) => lines.forEach((l) => call.options?.onLine?.(l));

  function host(o: { capBnd?: string; active?: string; strace?: (call: RunCall) => { exitCode?: number; stderr?: string } } = {}): FakeHost {
    const h = makeBootedHost(new FakeHost());
    h.fs.addFile('/usr/bin/systemd-analyze', '', { mode: 0o755 });
    h.fs.addFile('/proc/4321/status', `Name:\tsystemd\nCapInh:\t0000000000000000\nCapBnd:\t${o.capBnd ?? ALL_CAPS}\n`);
    h.runner.on(UNIT, { stdout: `Id=nginx.service\nLoadState=loaded\nActiveState=${o.active ?? 'active'}\nDropInPaths=\nMainPID=185\n` });
    h.runner.on(ANALYZE, { stdout: LISTING });
    h.runner.on(HAS_STRACE, {});
    h.runner.on(BUSCTL, { stdout: `${PROCESSES}\n` });
    h.runner.on(STRACE, (call) => {
      if (o.strace) return o.strace(call);
      attachLines(call, ['strace: Process 185 attached', 'strace: Process 186 attached', 'strace: Process 187 attached', 'strace: Process 185 detached']);
      return { exitCode: 124 };
    });
    h.runner.on(CAT, { stdout: SUMMARY });
    h.runner.on(RM, {});
    simulateSystemd(h, { running: ['web'], leaderPid: 4321 });
    return h;
  }

  test('every process of the unit traced inside the machine for the duration; ready once all are attached; the file read and removed in the machine', async () => {
    const h = host();
    const ready: number[] = [];
    const lines: string[] = [];
    const p = await profileService(h, 'web', 'nginx', { durationS: 20, installStrace: false, onReady: (n) => ready.push(n), onLine: (l) => lines.push(l) });
    expect(h.runner.argvs()).toEqual([SHOW_STATE, UNIT, LEADER, ANALYZE, HAS_STRACE, BUSCTL, STRACE, CAT, RM]);
    expect(ready).toEqual([3]);
    expect(lines).toEqual(['strace: Process 185 detached']);
    expect(p).toMatchObject({ machine: 'web', service: 'nginx', durationS: 20, processes: 3, syscalls: ['accept4', 'io_setup', 'ptrace', 'read', 'weirdcall', 'write'], systemCallFilter: ['@system-service', 'ptrace', '~@keyring'] });
    expect(h.fs.changes).toEqual([]);
    h.assertNoUnmatchedCalls();
  });

  test('a machine whose bounding set lacks CAP_SYS_PTRACE (the strict preset): said before strace is looked for, with the fix', async () => {
    const h = host({ capBnd: NO_PTRACE });
    const err = (await profileService(h, 'web', 'nginx', { durationS: 20, installStrace: true }).catch((e: unknown) => e)) as NspawnctlError;
    expect(err.message).toBe("nothing in machine web can trace nginx.service: CAP_SYS_PTRACE is not in the machine's capability bounding set");
    expect(err.hint).toBe(
      'To profile a service, machine web must let its root trace: add CAP_SYS_PTRACE to security.capabilities.add and take ~@debug out of its security.systemCallFilter (the strict preset has both), apply (it restarts the machine), profile, then put them back and apply again.',
    );
    expect(h.runner.argvs()).toEqual([SHOW_STATE, UNIT, LEADER]);
  });

  test("ptrace refused by the machine's seccomp filter: the same fix, and the summary file still removed", async () => {
    const h = host({
      strace: (call) => {
        attachLines(call, ['strace: attach: ptrace(PTRACE_SEIZE, 185): Operation not permitted']);
        return { exitCode: 1 };
      },
    });
    const err = (await profileService(h, 'web', 'nginx', { durationS: 20, installStrace: false }).catch((e: unknown) => e)) as NspawnctlError;
    expect(err.message).toBe('ptrace was refused inside machine web: its seccomp filter denies it (ptrace is in @debug)');
    expect(err.hint).toContain('add CAP_SYS_PTRACE to security.capabilities.add and take ~@debug out');
    expect(h.runner.argvs().slice(-1)).toEqual([RM]);
  });

  test('a service that does not run is not traced', async () => {
    const h = host({ active: 'failed' });
    await expect(profileService(h, 'web', 'nginx', { durationS: 20, installStrace: false })).rejects.toThrow('nginx.service is not running in machine web (ActiveState=failed); a profile traces a running service');
    expect(h.runner.argvs()).toEqual([SHOW_STATE, UNIT]);
  });

  test('an answer about its processes that is not the expected JSON is refused, not guessed', async () => {
    const h = makeBootedHost(new FakeHost());
    h.fs.addFile('/usr/bin/systemd-analyze', '', { mode: 0o755 });
    h.fs.addFile('/proc/4321/status', `CapBnd:\t${ALL_CAPS}\n`);
    h.runner.on(UNIT, { stdout: 'Id=nginx.service\nLoadState=loaded\nActiveState=active\nDropInPaths=\nMainPID=185\n' });
    h.runner.on(ANALYZE, { stdout: LISTING });
    h.runner.on(HAS_STRACE, {});
    h.runner.on(BUSCTL, { stdout: '{"type":"a(sus)","data":[[["x",-1,"y"]]]}\n' });
    simulateSystemd(h, { running: ['web'], leaderPid: 4321 });
    await expect(profileService(h, 'web', 'nginx', { durationS: 20, installStrace: false })).rejects.toThrow('machine web: could not list the processes of nginx.service (unexpected answer)');
  });
});
