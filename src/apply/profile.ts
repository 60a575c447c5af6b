// The syscall profiler: runs a command inside a running machine under strace -f -c and turns
// what it called into a systemCallFilter: every candidate group the command never touched is
// denied. It only sees the code paths that ran.
import { NspawnctlError, tailLines } from '../errors';
import { Host } from '../host/host';
import { expandGroup, readSyscallTable, SyscallTable } from '../host/syscalls';
import { STRICT_DENIED_GROUPS } from '../manifest/security';
import { runInMachine, SHORT_TIMEOUT_MS } from './in-machine';
import { machineState } from './machinectl';
import { aptInstallInMachine } from './packages';

/**
 * Groups a profile may deny: none of them is needed by systemd to boot a machine or by a
 * typical network service, so denying an unused one costs nothing.
 */
export const PROFILE_CANDIDATE_GROUPS = [...STRICT_DENIED_GROUPS, '@aio', '@memlock', '@pkey'].sort();

export interface SyscallProfile {
  machine: string;
  command: string[];
  exitCode: number;
  /** Every system call the command (and its children) made, sorted. */
  syscalls: string[];
  /** Candidate groups the command never used: what the filter denies. */
  denied: string[];
  /** Candidate groups it did use, with the calls that keep each one allowed. */
  kept: { group: string; because: string[] }[];
  systemCallFilter: string[];
}

/** System call names from strace -c's table (the last column of each row but "total"). */
export function parseStraceSummary(text: string): string[] {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+(?:\d+\s+)?([a-z0-9_]+)\s*$/.exec(line);
    if (m && m[1] !== 'total') names.add(m[1]);
  }
  return [...names].sort();
}

/** Which candidate groups the calls leave unused, and which they keep. */
export function filterFromSyscalls(table: SyscallTable, syscalls: string[]): Pick<SyscallProfile, 'denied' | 'kept' | 'systemCallFilter'> {
  const used = new Set(syscalls);
  const denied: string[] = [];
  const kept: { group: string; because: string[] }[] = [];
  for (const group of PROFILE_CANDIDATE_GROUPS.filter((g) => table.groups.has(g))) {
    const because = [...expandGroup(table, group)].filter((n) => used.has(n)).sort();
    if (because.length === 0) denied.push(group);
    else kept.push({ group, because });
  }
  return { denied, kept, systemCallFilter: denied.map((g) => `~${g}`) };
}

export interface ProfileOptions {
  /** Install strace into the machine when it is missing (the user agreed). */
  installStrace: boolean;
  /** Asked when strace is missing and installStrace is false (a terminal's yes/no). */
  confirmInstall?: () => Promise<boolean>;
  onLine?: (line: string) => void;
}

/** strace in the machine: there already, or installed by its own apt when the user agreed. */
export async function ensureStrace(host: Host, machine: string, options: ProfileOptions): Promise<void> {
  const hasStrace = (await runInMachine(host, machine, ['test', '-x', '/usr/bin/strace'], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS })).exitCode === 0;
  if (hasStrace) return;
  if (!options.installStrace && !(await options.confirmInstall?.())) {
    throw new NspawnctlError(`strace is not installed in machine ${machine}`, {
      hint: 'Rerun with --install-strace to install it into the machine (apt-get install strace), or add strace to its packages.',
    });
  }
  await aptInstallInMachine(host, machine, ['strace'], options.onLine);
}

/**
 * Runs the command under strace inside the running machine, as a service of its own systemd:
 * with the machine's privileges and under its seccomp filter (strace still sees a call the
 * filter refuses, as an attempt). The summary is written to a file in the machine's /run and
 * read back by `cat` run inside the machine too; the host never opens a path of the machine.
 */
export async function profileSyscalls(host: Host, machine: string, command: string[], options: ProfileOptions): Promise<SyscallProfile> {
  if ((await machineState(host, machine)) !== 'running') {
    throw new NspawnctlError(`machine ${machine} is not running`, { hint: `Start it first: nspawnctl apply MANIFEST (or machinectl start ${machine})` });
  }
  const table = await readSyscallTable(host);
  if (!table) throw new NspawnctlError('systemd-analyze syscall-filter gave no groups; the profile needs them', { hint: 'apt-get install systemd' });
  await ensureStrace(host, machine, options);
  const inner = `/run/nspawnctl-profile-${process.pid}-${Date.now()}.txt`;
  try {
    const r = await runInMachine(host, machine, ['strace', '-f', '-c', '-o', inner, '--', ...command], { allowFailure: true, onLine: options.onLine, dieWithParent: true });
    const read = await runInMachine(host, machine, ['cat', '--', inner], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
    if (read.exitCode !== 0) {
      throw new NspawnctlError(`strace wrote no summary (exit ${r.exitCode}): ${tailLines(r.stderr || r.stdout, 3).split('\n').join(' | ')}`);
    }
    const syscalls = parseStraceSummary(read.stdout);
    return { machine, command, exitCode: r.exitCode, syscalls, ...filterFromSyscalls(table, syscalls) };
  } finally {
    await runInMachine(host, machine, ['rm', '-f', '--', inner], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  }
}

/** The profile as manifest YAML, with the caveats as comments. */
export function formatProfile(p: SyscallProfile): string {
  const lines = [
    `# nspawnctl profile syscalls ${p.machine} -- ${p.command.map((a) => JSON.stringify(a)).join(' ')}`,
    `# The command made ${p.syscalls.length} distinct system calls${p.exitCode !== 0 ? ` and exited with ${p.exitCode}` : ''}.`,
    '# WARNING: a profile covers only the code paths that ran. Exercise the service fully',
    '# (start, reload, every request type, shutdown) before you trust it.',
    ...p.kept.map((k) => `# kept ${k.group}: used ${k.because.join(' ')}`),
    '# Paste under machines.NAME (it replaces any systemCallFilter there or in a preset):',
    'security:',
    ...(p.systemCallFilter.length
      ? ['  systemCallFilter:', ...p.systemCallFilter.map((e) => `    - "${e}"`)]
      : ['  # every candidate group was used: nothing to deny', '  systemCallFilter: []']),
    `# all calls: ${p.syscalls.join(' ')}`,
  ];
  return `${lines.join('\n')}\n`;
}
