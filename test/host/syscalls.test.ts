// The host's table of system call groups and names, parsed from `systemd-analyze syscall-filter`.
import { expandGroup, parseSyscallTable, readSyscallTable } from '../../src/host/syscalls';
import { FakeHost } from '../helpers/fake-host';

// An excerpt in the layout systemd 252 prints: a group name at the left margin, its description
// as an indented comment, its members (names and nested @groups) indented, a blank line between
// groups, and at the end the system calls no group but @known lists and those the kernel has but
// no group lists, as "#   name" comments (or a note when the kernel's list cannot be read).
const LISTING = [
  '@default',
  '    # System calls that are always permitted',
  '    arch_prctl',
  '    brk',
  '    exit_group',
  '',
  '@aio',
  '    # Asynchronous IO',
  '    io_cancel',
  '    io_setup',
  '',
  '@basic-io',
  '    # Basic IO',
  '    _llseek',
  '    close',
  '    read',
  '    write',
  '',
  '@file-system',
  '    # File system operations',
  '    close',
  '    openat',
  '',
  '@mount',
  '    # Mounting and unmounting of file systems',
  '    chroot',
  '    mount',
  '    umount2',
  '',
  '@system-service',
  '    # General system service operations',
  '    @aio',
  '    @basic-io',
  '    @default',
  '    @file-system',
  '    capget',
  '    prctl',
  '',
  '@known',
  '    # All known syscalls declared in the kernel',
  '    @system-service',
  '    @mount',
  '    reboot',
  '',
  '# Ungrouped System Calls (known but not included in any of the groups except @known):',
  '#   execv',
  '#   utrap_install',
  '',
  '# Unlisted System Calls (supported by the local kernel, but not included in any of the groups listed above):',
  '#   afs_syscall',
  '#   _sysctl',
  '',
  "# Not showing unlisted system calls, couldn't retrieve kernel system call list: No such file or directory",
  '',
].join('\n');

describe('parseSyscallTable', () => {
  const table = parseSyscallTable(LISTING);

  test('every group with its direct members, in order, nested groups kept as @names', () => {
    expect([...table.groups.entries()]).toEqual([
      ['@default', ['arch_prctl', 'brk', 'exit_group']],
      ['@aio', ['io_cancel', 'io_setup']],
      ['@basic-io', ['_llseek', 'close', 'read', 'write']],
      ['@file-system', ['close', 'openat']],
      ['@mount', ['chroot', 'mount', 'umount2']],
      ['@system-service', ['@aio', '@basic-io', '@default', '@file-system', 'capget', 'prctl']],
      ['@known', ['@system-service', '@mount', 'reboot']],
    ]);
  });

  test('names: every member that is not a group, and the unlisted ones; never a description or a group', () => {
    expect([...table.names].sort()).toEqual([
      '_llseek',
      '_sysctl',
      'afs_syscall',
      'arch_prctl',
      'brk',
      'capget',
      'chroot',
      'close',
      'execv',
      'exit_group',
      'io_cancel',
      'io_setup',
      'mount',
      'openat',
      'prctl',
      'read',
      'reboot',
      'umount2',
      'utrap_install',
      'write',
    ]);
  });

  test('CRLF line ends and no trailing newline change nothing', () => {
    const crlf = parseSyscallTable(LISTING.trimEnd().replace(/\n/g, '\r\n'));
    expect(crlf).toEqual(table);
  });

  test('indented lines outside a group (after a blank line) belong to no group', () => {
    const t = parseSyscallTable(['@aio', '    io_setup', '', '    stray', '@mount', '    mount'].join('\n'));
    expect([...t.groups.entries()]).toEqual([
      ['@aio', ['io_setup']],
      ['@mount', ['mount']],
    ]);
    expect([...t.names].sort()).toEqual(['io_setup', 'mount']);
  });

  test('empty output: no groups, no names', () => {
    expect(parseSyscallTable('')).toEqual({ groups: new Map(), names: new Set() });
  });
});

describe('expandGroup', () => {
  const table = parseSyscallTable(LISTING);

  test('a group of names', () => {
    expect([...expandGroup(table, '@mount')].sort()).toEqual(['chroot', 'mount', 'umount2']);
  });

  test('nested groups are followed, and a name in two of them counted once', () => {
    expect([...expandGroup(table, '@system-service')].sort()).toEqual([
      '_llseek',
      'arch_prctl',
      'brk',
      'capget',
      'close',
      'exit_group',
      'io_cancel',
      'io_setup',
      'openat',
      'prctl',
      'read',
      'write',
    ]);
  });

  test('two levels deep', () => {
    const all = expandGroup(table, '@known');
    expect(all.size).toBe(16);
    for (const n of ['reboot', 'mount', 'io_setup', 'arch_prctl']) expect(all.has(n)).toBe(true);
    expect([...all].some((n) => n.startsWith('@'))).toBe(false);
  });

  test('an unknown group is empty; a cycle ends', () => {
    expect(expandGroup(table, '@nope')).toEqual(new Set());
    const cyclic = parseSyscallTable(['@a', '    x', '    @b', '', '@b', '    y', '    @a', ''].join('\n'));
    expect([...expandGroup(cyclic, '@a')].sort()).toEqual(['x', 'y']);
  });
});

describe('readSyscallTable', () => {
  const ARGV = ['systemd-analyze', 'syscall-filter', '--no-pager'];

  test('systemd-analyze missing: undefined, and nothing is run', async () => {
    const host = new FakeHost();
    expect(await readSyscallTable(host)).toBeUndefined();
    expect(host.runner.calls).toEqual([]);
  });

  test('systemd-analyze present: its listing, parsed', async () => {
    const host = new FakeHost();
    host.fs.addFile('/usr/bin/systemd-analyze', '', { mode: 0o755 });
    host.runner.on(ARGV, { stdout: LISTING });
    expect(await readSyscallTable(host)).toEqual(parseSyscallTable(LISTING));
    expect(host.runner.argvs()).toEqual([ARGV]);
    expect(host.runner.calls[0].options).toEqual({ allowFailure: true });
  });

  test('a failing or empty systemd-analyze: undefined (nothing to check against)', async () => {
    const failing = new FakeHost();
    failing.fs.addFile('/usr/bin/systemd-analyze', '', { mode: 0o755 });
    failing.runner.on(ARGV, { exitCode: 1, stderr: 'Unknown command verb syscall-filter.' });
    expect(await readSyscallTable(failing)).toBeUndefined();

    const empty = new FakeHost();
    empty.fs.addFile('/bin/systemd-analyze', '', { mode: 0o755 });
    empty.runner.on(ARGV, { stdout: '' });
    expect(await readSyscallTable(empty)).toBeUndefined();
    expect(empty.runner.argvs()).toEqual([ARGV]);
  });
});
