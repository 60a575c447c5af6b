// The kernel limits that booted machines use up, what each machine costs of them, and how high
// `host init` sets them. Debian's fs.inotify.max_user_instances = 128 lets a host boot about 15
// machines: the 16th or 17th fails with "Failed to allocate manager object: Too many open files".
//
// Whose budget it is: inotify instances and watches are counted per user, in the kernel's
// per-user-namespace "ucounts". A machine with its own user namespace (PrivateUsers=pick) is
// owned by host root, and every charge made inside it is also charged, one level up, to root of
// the namespace nspawnctl runs in; a machine without one runs as host UIDs, mostly root. So all
// machines draw on one budget: that of root in nspawnctl's own user namespace, against that
// namespace's limit (user.max_inotify_*, which is fs.inotify.max_user_* in the initial one). When
// nspawnctl itself runs in a user namespace (a container), the same charges go on up to the
// container's owner, against fs.inotify.max_user_*, which every namespace reads as the initial
// namespace's value. The limit in force is therefore the lower of the two.
import { PermissionDeniedError, PreflightError } from '../errors';
import { Host } from '../host/host';
import { HostState } from './observe';
import { Plan } from './steps';

export interface HostLimit {
  /** The sysctl host init writes (and raises) in LIMITS_PATH. */
  key: string;
  /** Keys that limit the same count at another level of the ucounts hierarchy: read, never written. */
  alsoLimitedBy: string[];
  /** What is counted, for messages ("inotify instances"). */
  unit: string;
  /** What one booted machine takes (measured: docs/performance.md#host-limits). */
  perMachine: number;
  /** What the host takes of it besides the machines (measured in the test host, with room for a real one's daemons). */
  host: number;
  /** The largest value the kernel accepts. */
  max: number;
}

// Measured on Debian 12 machines (minbase, systemd 252) in the test host: each booted machine
// held 8 inotify instances (its systemd 5, dbus-daemon, systemd-logind, agetty 1 each), 25 watches
// (plus 1 of the host's systemd, on the machine's unit) and 1 pseudo-terminal (its console, made
// on the host). The test host's own root held 7 instances and 29 watches; a real host runs more
// (udevd, cron, polkit), hence the larger host shares.
export const HOST_LIMITS: HostLimit[] = [
  { key: 'fs.inotify.max_user_instances', alsoLimitedBy: ['user.max_inotify_instances'], unit: 'inotify instances', perMachine: 8, host: 16, max: 2 ** 31 - 1 },
  { key: 'fs.inotify.max_user_watches', alsoLimitedBy: ['user.max_inotify_watches'], unit: 'inotify watches', perMachine: 26, host: 1024, max: 2 ** 31 - 1 },
  { key: 'kernel.pty.max', alsoLimitedBy: [], unit: 'pseudo-terminals', perMachine: 1, host: 64, max: 1048576 },
];

/**
 * Memory per machine that host init sizes the limits for: an idle minbase machine took about
 * 21 MiB here, so a host runs out of memory before it runs out of these limits.
 */
export const MACHINE_MEMORY_MIB = 16;

export const LIMITS_PATH = '/etc/sysctl.d/50-nspawnctl.conf';

/** Every key nspawnctl reads, written or not. */
export const LIMIT_KEYS = HOST_LIMITS.flatMap((l) => [l.key, ...l.alsoLimitedBy]);

/** Current values by key; a key the kernel does not have (or that could not be read) is absent. */
export type SysctlValues = Record<string, number>;

/** Where the kernel shows a sysctl: `fs.inotify.max_user_instances` -> `/proc/sys/fs/inotify/max_user_instances`. */
export function sysctlPath(key: string): string {
  return `/proc/sys/${key.replace(/\./g, '/')}`;
}

/** A sysctl file's text as a number, or undefined when it is not one. */
export function parseSysctl(text: string | undefined): number | undefined {
  const t = text?.trim();
  return t !== undefined && /^\d+$/.test(t) ? Number(t) : undefined;
}

/** MemTotal of /proc/meminfo in KiB, or undefined. */
export function parseMemTotal(meminfo: string | undefined): number | undefined {
  const m = /^MemTotal:\s+(\d+)\s+kB$/m.exec(meminfo ?? '');
  return m ? Number(m[1]) : undefined;
}

/** How many minimal machines the memory holds (0 when unknown). */
export function machinesForMemory(memTotalKiB: number | undefined): number {
  return memTotalKiB === undefined ? 0 : Math.floor(memTotalKiB / 1024 / MACHINE_MEMORY_MIB);
}

/** What `machines` booted machines and the host need of a limit. */
export function neededFor(limit: HostLimit, machines: number): number {
  return limit.host + limit.perMachine * machines;
}

/**
 * The value host init sets: enough for what the memory holds, or for `machines` when that is more,
 * rounded up to a power of two (so a small change in memory does not change it), at most the
 * kernel's maximum.
 */
export function sizedValue(limit: HostLimit, memTotalKiB: number | undefined, machines = 0): number {
  const needed = neededFor(limit, Math.max(machinesForMemory(memTotalKiB), machines));
  return Math.min(limit.max, 2 ** Math.ceil(Math.log2(needed)));
}

/** The limit in force and the key that sets it: the lowest of the levels this process can see. */
export function limitInForce(limit: HostLimit, values: SysctlValues): { key: string; value: number } | undefined {
  let found: { key: string; value: number } | undefined;
  for (const key of [limit.key, ...limit.alsoLimitedBy]) {
    const value = values[key];
    if (value !== undefined && (found === undefined || value < found.value)) found = { key, value };
  }
  return found;
}

/** How many machines fit under a limit of `value` (beside the host's share). */
export function machinesThatFit(limit: HostLimit, value: number): number {
  return Math.max(0, Math.floor((value - limit.host) / limit.perMachine));
}

/** One limit too low for the machines that would run. */
export interface LimitShortfall {
  limit: HostLimit;
  /** The key whose value is too low (the written key, or a level above or below it). */
  key: string;
  value: number;
  needed: number;
  machines: number;
}

/** Every limit that `machines` booted machines would exceed, in HOST_LIMITS order. */
export function findShortfalls(values: SysctlValues, machines: number): LimitShortfall[] {
  const out: LimitShortfall[] = [];
  for (const limit of HOST_LIMITS) {
    const inForce = limitInForce(limit, values);
    const needed = neededFor(limit, machines);
    if (inForce && inForce.value < needed) out.push({ limit, key: inForce.key, value: inForce.value, needed, machines });
  }
  return out;
}

/** "fs.inotify.max_user_instances = 128 leaves room for 14 machines; 20 would run, ...". */
export function describeShortfall(s: LimitShortfall, whose: string): string {
  const room = machinesThatFit(s.limit, s.value);
  return `${s.key} = ${s.value} leaves room for ${room} machine${room === 1 ? '' : 's'}, and ${whose}: they need ${s.needed} ${s.limit.unit} (${s.limit.perMachine} per machine, ${s.limit.host} for the host)`;
}

/**
 * The exact fix: host init for the key it writes, or the sysctl by hand (a key of another
 * ucounts level is not in the file; one in a container is set where the container runs).
 */
export function shortfallFix(s: LimitShortfall, value: number, options: { manifest?: string; readOnly?: boolean } = {}): string {
  const byHand = `sysctl -w ${s.key}=${value}`;
  const keep = `and keep it with the line "${s.key} = ${value}" in a file in /etc/sysctl.d/`;
  if (options.readOnly) {
    return `/proc/sys is read-only here (nspawnctl runs in a container, and the limit is the kernel's): on the host that runs this container, ${byHand}, ${keep}`;
  }
  if (s.key !== s.limit.key) return `${byHand} (the limit of the user namespace nspawnctl runs in), ${keep}`;
  return `nspawnctl host init${options.manifest ? ` ${options.manifest}` : ''} (raises it to ${value} now and keeps it in ${LIMITS_PATH}), or by hand: ${byHand}, ${keep}`;
}

/**
 * The machines that would run once `plan` is applied: those running now (nspawnctl's or not) and
 * those it starts, creates, rebuilds or boots to install packages into.
 */
export function machinesAfter(plan: Plan, running: string[]): { running: string[]; starting: string[] } {
  const now = new Set(running);
  const starting = new Set<string>();
  for (const s of plan.steps) {
    // A rebuild starts the machine on its new root filesystem, whether it ran before or not.
    const starts = s.kind === 'create-machine' || s.kind === 'start-machine' || s.kind === 'restart-machine' || s.kind === 'install-packages' || s.kind === 'rebuild-machine';
    if (starts && !now.has(s.machine)) starting.add(s.machine);
  }
  return { running: [...now].sort(), starting: [...starting].sort() };
}

/** The text of LIMITS_PATH: one line per key, after the generated-file header and a comment. */
export function renderLimitsFile(header: string, values: [string, number][]): string {
  const lines = values.map(([key, value]) => `${key} = ${value}`);
  return `${header}\n# Kernel limits that every booted machine uses up, sized for this host's memory by nspawnctl host init\n# (docs/fresh-host.md). A value the kernel already had higher is kept as it was.\n${lines.join('\n')}\n`;
}

export const MEMINFO_PATH = '/proc/meminfo';

/** Reads the current value of each key; what is missing or unreadable is left out. */
export async function readSysctls(host: Host, keys: string[] = LIMIT_KEYS): Promise<SysctlValues> {
  const values: SysctlValues = {};
  for (const key of keys) {
    try {
      const value = parseSysctl(await host.fs.readText(sysctlPath(key)));
      if (value !== undefined) values[key] = value;
    } catch (err) {
      if (!(err instanceof PermissionDeniedError)) throw err;
    }
  }
  return values;
}

/**
 * Keys of HOST_LIMITS this process cannot raise: /proc/sys read-only (a container), or refused to
 * root. As a normal user only a read-only mount counts: root, whom host init needs, may write the rest.
 */
export async function findUnwritableSysctls(host: Host): Promise<Record<string, 'read-only' | 'denied'>> {
  const out: Record<string, 'read-only' | 'denied'> = {};
  for (const { key } of HOST_LIMITS) {
    const access = await host.fs.writeAccess(sysctlPath(key));
    if (access === 'read-only' || (access === 'denied' && host.uid === 0)) out[key] = access;
  }
  return out;
}

export interface LimitProblem {
  what: string;
  fix: string;
}

/**
 * The budget check of plan and apply: when the plan starts machines that do not run yet, the
 * machines running now plus those, times what each takes, plus the host's share, must fit under
 * every limit in force. Reads nothing when the plan starts no new machine. `manifest` (the file
 * as the user named it) goes into the fix: host init sizes the limits for its machines and those
 * running, where without it only for the memory, which may hold fewer.
 */
export async function findLimitProblems(host: Host, plan: Plan, state: HostState, manifest?: string): Promise<LimitProblem[]> {
  const { running, starting } = machinesAfter(plan, state.running ?? []);
  if (starting.length === 0) return [];
  const total = running.length + starting.length;
  const shortfalls = findShortfalls(await readSysctls(host), total);
  if (shortfalls.length === 0) return [];
  const memTotal = parseMemTotal(await host.fs.readText(MEMINFO_PATH));
  const problems: LimitProblem[] = [];
  for (const s of shortfalls) {
    const access = await host.fs.writeAccess(sysctlPath(s.key));
    const readOnly = access === 'read-only' || (access === 'denied' && host.uid === 0);
    problems.push({
      what: describeShortfall(s, `${total} would run (${running.length} running now, ${starting.length} to start)`),
      fix: shortfallFix(s, sizedValue(s.limit, memTotal, total), { manifest, readOnly }),
    });
  }
  return problems;
}

/** Throws PreflightError (exit 3) naming each limit too low; nothing has been started or created yet. */
export async function assertMachinesFit(host: Host, plan: Plan, state: HostState, manifest?: string): Promise<void> {
  const problems = await findLimitProblems(host, plan, state, manifest);
  if (problems.length > 0) throw new PreflightError(problems);
}
