// The profiler's pure parts: strace -c's table, the filter made from the calls, its YAML.
import { filterFromSyscalls, formatProfile, parseStraceSummary, PROFILE_CANDIDATE_GROUPS } from '../../src/apply/profile';
import { parseSyscallTable } from '../../src/host/syscalls';

const SUMMARY = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 46.47    0.000949          27        34        14 openat
 20.00    0.000400          10        40           read
  1.00    0.000020          20         1         1 ptrace
------ ----------- ----------- --------- --------- ----------------
100.00    0.002042          14        75        15 total
`;

const TABLE = parseSyscallTable(
  ['@aio', '    io_setup', '    io_submit', '', '@debug', '    ptrace', '    perf_event_open', '', '@clock', '    adjtimex', '', '@swap', '    swapon', ''].join('\n'),
);

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
