// The profiler: strace -c's table, the filter made from the calls, its YAML; and the run itself,
// whose every command (strace, reading its summary, removing it) runs inside the machine through
// its own systemd, never through a host path of the machine.
import { filterFromSyscalls, formatProfile, parseStraceSummary, PROFILE_CANDIDATE_GROUPS, profileSyscalls } from '../../src/apply/profile';
import { NspawnctlError } from '../../src/errors';
import { RunResult } from '../../src/host/runner';
import { parseSyscallTable } from '../../src/host/syscalls';
import { makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { inMachineArgv, simulateSystemd } from '../helpers/simulated-systemd';

const SUMMARY = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 46.47    0.000949          27        34        14 openat
 20.00    0.000400          10        40           read
  1.00    0.000020          20         1         1 ptrace
------ ----------- ----------- --------- --------- ----------------
100.00    0.002042          14        75        15 total
`;

const LISTING = ['@aio', '    io_setup', '    io_submit', '', '@debug', '    ptrace', '    perf_event_open', '', '@clock', '    adjtimex', '', '@swap', '    swapon', ''].join('\n');
const TABLE = parseSyscallTable(LISTING);

test('parseStraceSummary takes the syscall column of every row, not the total, with or without errors', () => {
  expect(parseStraceSummary(SUMMARY)).toEqual(['openat', 'ptrace', 'read']);
  expect(parseStraceSummary('')).toEqual([]);
});

test('a candidate group is denied only when the command called none of its calls; unknown groups are skipped', () => {
  expect(PROFILE_CANDIDATE_GROUPS).toEqual(['@aio', '@clock', '@cpu-emulation', '@debug', '@memlock', '@module', '@obsolete', '@pkey', '@raw-io', '@swap']);
  expect(filterFromSyscalls(TABLE, ['openat', 'ptrace', 'read'])).toEqual({
    denied: ['@aio', '@clock', '@swap'],
    kept: [{ group: '@debug', because: ['ptrace'] }],
    systemCallFilter: ['~@aio', '~@clock', '~@swap'],
  });
});

test('formatProfile prints pasteable YAML with the warning, what kept each group, and every call', () => {
  const text = formatProfile({ machine: 'web', command: ['/bin/x', 'a b'], exitCode: 3, syscalls: ['openat', 'ptrace'], ...filterFromSyscalls(TABLE, ['openat', 'ptrace']) });
  expect(text).toBe(
    [
      '# nspawnctl profile syscalls web -- "/bin/x" "a b"',
      '# The command made 2 distinct system calls and exited with 3.',
      '# WARNING: a profile covers only the code paths that ran. Exercise the service fully',
      '# (start, reload, every request type, shutdown) before you trust it.',
      '# kept @debug: used ptrace',
      '# Paste under machines.NAME (it replaces any systemCallFilter there or in a preset):',
      'security:',
      '  systemCallFilter:',
      '    - "~@aio"',
      '    - "~@clock"',
      '    - "~@swap"',
      '# all calls: openat ptrace',
      '',
    ].join('\n'),
  );
});

describe('profileSyscalls', () => {
  const NOW = 1_700_000_000_000;
  const INNER = `/run/nspawnctl-profile-${process.pid}-${NOW}.txt`;
  const COMMAND = ['sh', '-c', 'exec nginx -t -c $CONF'];
  const SHOW = ['machinectl', 'show', 'web', '--property=State', '--value'];
  const ANALYZE = ['systemd-analyze', 'syscall-filter', '--no-pager'];
  const HAS_STRACE = inMachineArgv('web', ['test', '-x', '/usr/bin/strace']);
  const STRACE = inMachineArgv('web', ['strace', '-f', '-c', '-o', INNER, '--', ...COMMAND]);
  const CAT = inMachineArgv('web', ['cat', '--', INNER]);
  const RM = inMachineArgv('web', ['rm', '-f', '--', INNER]);
  const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive' };

  beforeEach(() => jest.spyOn(Date, 'now').mockReturnValue(NOW));
  afterEach(() => jest.restoreAllMocks());

  /**
   * web runs (unless `running` is false); systemd-analyze lists LISTING; strace is in the machine
   * (unless `hasStrace` is false), its run and the read of its summary answer `strace` and `cat`.
   * Every path the host's filesystem is asked about is kept in `looked`.
   */
  function profilingHost(
    options: { hasStrace?: boolean; running?: boolean; strace?: Partial<RunResult>; cat?: Partial<RunResult> } = {},
  ): { host: FakeHost; looked: string[] } {
    const host = makeBootedHost(new FakeHost());
    host.fs.addFile('/usr/bin/systemd-analyze', '', { mode: 0o755 });
    host.runner.on(ANALYZE, { stdout: LISTING });
    host.runner.on(HAS_STRACE, { exitCode: options.hasStrace === false ? 1 : 0 });
    host.runner.on(STRACE, options.strace ?? { stderr: 'nginx: configuration file /etc/nginx/nginx.conf test is successful\n' });
    host.runner.on(CAT, options.cat ?? { stdout: SUMMARY });
    simulateSystemd(host, { running: options.running === false ? [] : ['web'] });
    const looked: string[] = [];
    for (const method of ['stat', 'readText', 'readLink', 'listDir'] as const) {
      const original = host.fs[method].bind(host.fs) as (p: string) => Promise<unknown>;
      (host.fs as unknown as Record<string, unknown>)[method] = (p: string) => {
        looked.push(p);
        return original(p);
      };
    }
    return { host, looked };
  }

  test('strace, then cat and rm of its summary, all inside the running machine; "$" in the command kept verbatim', async () => {
    const { host, looked } = profilingHost();
    const lines: string[] = [];
    const profile = await profileSyscalls(host, 'web', COMMAND, { installStrace: false, onLine: (l) => lines.push(l) });
    expect(profile).toEqual({ machine: 'web', command: COMMAND, exitCode: 0, syscalls: ['openat', 'ptrace', 'read'], ...filterFromSyscalls(TABLE, ['openat', 'ptrace', 'read']) });
    expect(host.runner.argvs()).toEqual([SHOW, ANALYZE, HAS_STRACE, STRACE, CAT, RM]);
    expect(STRACE).toContain('exec nginx -t -c $$CONF');
    host.assertNoUnmatchedCalls();
    // The host never looked at a path of the machine (its rootfs, or /proc/PID/root).
    expect(looked.filter((p) => p.startsWith('/var/lib/machines') || p.startsWith('/proc'))).toEqual([]);
    expect(host.fs.opened).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('strace missing: with --install-strace it is installed by the machine\'s own apt, then used', async () => {
    const { host } = profilingHost({ hasStrace: false });
    await profileSyscalls(host, 'web', COMMAND, { installStrace: true });
    expect(host.runner.argvs()).toEqual([
      SHOW,
      ANALYZE,
      HAS_STRACE,
      inMachineArgv('web', ['apt-get', 'update'], APT_ENV),
      inMachineArgv('web', ['apt-get', 'install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', 'strace'], APT_ENV),
      STRACE,
      CAT,
      RM,
    ]);
  });

  test('strace missing and the install declined: an error naming the flag, and nothing run in the machine', async () => {
    const { host } = profilingHost({ hasStrace: false });
    const err = (await profileSyscalls(host, 'web', COMMAND, { installStrace: false, confirmInstall: async () => false }).catch((e: unknown) => e)) as NspawnctlError;
    expect([err.message, err.hint]).toEqual([
      'strace is not installed in machine web',
      'Rerun with --install-strace to install it into the machine (apt-get install strace), or add strace to its packages.',
    ]);
    expect(host.runner.argvs()).toEqual([SHOW, ANALYZE, HAS_STRACE]);
  });

  test('no summary to read: an error with strace\'s last words (escaped), and the file is still removed', async () => {
    const { host } = profilingHost({
      strace: { exitCode: 1, stderr: 'strace: exec: Permission denied\n\x1b[2J\n' },
      cat: { exitCode: 1, stderr: 'cat: /run/x: No such file or directory\n' },
    });
    const err = (await profileSyscalls(host, 'web', COMMAND, { installStrace: false }).catch((e: unknown) => e)) as NspawnctlError;
    expect(err.message).toBe('strace wrote no summary (exit 1): strace: exec: Permission denied | \\x1b[2J');
    expect(host.runner.argvs().slice(-3)).toEqual([STRACE, CAT, RM]);
  });

  test('a machine that is not running: an error before anything else', async () => {
    const { host } = profilingHost({ running: false });
    const err = (await profileSyscalls(host, 'web', COMMAND, { installStrace: true }).catch((e: unknown) => e)) as NspawnctlError;
    expect([err.message, err.hint]).toEqual(['machine web is not running', 'Start it first: nspawnctl apply MANIFEST (or machinectl start web)']);
    expect(host.runner.argvs()).toEqual([SHOW]);
  });
});
