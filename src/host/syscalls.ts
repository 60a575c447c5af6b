// The system call groups and names this host's systemd knows, from `systemd-analyze
// syscall-filter`: what SystemCallFilter= will accept, and what each @group stands for.
import { findProgram, Host } from './host';

export interface SyscallTable {
  /** Each group's direct members (names and other @groups), as systemd lists them. */
  groups: Map<string, string[]>;
  /** Every system call name systemd knows (group members and the "unlisted" ones). */
  names: Set<string>;
}

/** Parses systemd-analyze's listing: "@group" lines, indented members, "#" comments. */
export function parseSyscallTable(text: string): SyscallTable {
  const groups = new Map<string, string[]>();
  const names = new Set<string>();
  let current: string[] | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    const header = /^(@[a-z0-9-]+)$/.exec(line);
    if (header) {
      current = [];
      groups.set(header[1], current);
      continue;
    }
    const trimmed = line.trim();
    // "Unlisted" system calls are printed as comments: "#   name".
    const unlisted = /^#\s+([a-z0-9_]+)$/.exec(trimmed);
    if (unlisted) {
      names.add(unlisted[1]);
      continue;
    }
    if (trimmed === '') current = undefined;
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const member = /^(@?[a-z0-9_-]+)$/.exec(trimmed);
    if (member && current && /^\s/.test(line)) {
      current.push(member[1]);
      if (!member[1].startsWith('@')) names.add(member[1]);
    }
  }
  return { groups, names };
}

/** Every system call a group stands for, following nested groups. */
export function expandGroup(table: SyscallTable, group: string, seen = new Set<string>()): Set<string> {
  const out = new Set<string>();
  if (seen.has(group)) return out;
  seen.add(group);
  for (const member of table.groups.get(group) ?? []) {
    if (member.startsWith('@')) expandGroup(table, member, seen).forEach((n) => out.add(n));
    else out.add(member);
  }
  return out;
}

/** The host's table, or undefined when systemd-analyze is not there (nothing to check against). */
export async function readSyscallTable(host: Host): Promise<SyscallTable | undefined> {
  if (!(await findProgram(host, 'systemd-analyze'))) return undefined;
  const r = await host.runner.run('systemd-analyze', ['syscall-filter', '--no-pager'], { allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  const table = parseSyscallTable(r.stdout);
  return table.groups.size > 0 ? table : undefined;
}
