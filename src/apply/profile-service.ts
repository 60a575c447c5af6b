// The profiler for one running service: strace -f -c attached to every process of its unit,
// inside the machine, for a while the user exercises it, turned into a services.UNIT.systemCallFilter.
// The service was already running, so its start and stop were not seen: the filter starts from
// @system-service and denies outright only groups a service would use while it works.
import { z } from 'zod';
import { escapeControl, NspawnctlError, tailLines } from '../errors';
import { Host } from '../host/host';
import { expandGroup, readSyscallTable, SyscallTable } from '../host/syscalls';
import { ensureStrace, parseStraceSummary, ProfileOptions } from './profile';
import { runInMachine, SHORT_TIMEOUT_MS } from './in-machine';
import { machineLeader, machineState } from './machinectl';
import { showUnits } from './services';

/** The allow list a service's filter starts from: systemd's set for ordinary system services. */
export const SERVICE_BASE = '@system-service';

/** Groups of @system-service denied when unused while traced: services use them while they work, if at all. */
export const SERVICE_DENIED_CANDIDATES = ['@aio', '@keyring'];

/**
 * Groups of @system-service (or overlapping it) often called only to start or stop (dropping
 * privileges, setting limits, syncing state): when unused while traced they are offered, not denied.
 */
export const SERVICE_OPTIONAL_CANDIDATES = ['@chown', '@memlock', '@privileged', '@resources', '@setuid', '@sync', '@timer'];

/** At most this many processes are traced (strace takes one -p each). */
export const MAX_TRACED = 256;

/** The bit of CAP_SYS_PTRACE in a capability mask. */
const CAP_SYS_PTRACE = 19n;

export interface ServiceProfile {
  machine: string;
  service: string;
  durationS: number;
  /** How many processes of the unit were traced. */
  processes: number;
  syscalls: string[];
  /** Calls outside @system-service it made: allowed by name. */
  extra: string[];
  /** Names strace reported that this host's systemd does not know (left out of the filter). */
  unknown: string[];
  /** Groups denied. */
  denied: string[];
  /** Unused groups only offered (commented out), since start-up was not traced. */
  optional: string[];
  /** Candidate groups it did use, with the calls that keep each one. */
  kept: { group: string; because: string[] }[];
  systemCallFilter: string[];
}

/** The filter for a service that made `syscalls` while traced. */
export function serviceFilterFromSyscalls(table: SyscallTable, syscalls: string[]): Pick<ServiceProfile, 'extra' | 'unknown' | 'denied' | 'optional' | 'kept' | 'systemCallFilter'> {
  const used = new Set(syscalls);
  const base = expandGroup(table, SERVICE_BASE);
  const extra = syscalls.filter((n) => !base.has(n) && table.names.has(n)).sort();
  const unknown = syscalls.filter((n) => !table.names.has(n)).sort();
  const denied: string[] = [];
  const optional: string[] = [];
  const kept: { group: string; because: string[] }[] = [];
  for (const group of [...SERVICE_DENIED_CANDIDATES, ...SERVICE_OPTIONAL_CANDIDATES].filter((g) => table.groups.has(g)).sort()) {
    const because = [...expandGroup(table, group)].filter((n) => used.has(n)).sort();
    if (because.length > 0) kept.push({ group, because });
    else if (SERVICE_DENIED_CANDIDATES.includes(group)) denied.push(group);
    else optional.push(group);
  }
  return { extra, unknown, denied, optional, kept, systemCallFilter: [SERVICE_BASE, ...extra, ...denied.map((g) => `~${g}`)] };
}

/** "60s", "2m" or "90" (seconds) as seconds, 1 s to 1 h; undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const m = /^([1-9][0-9]{0,4})(s|m)?$/.exec(text);
  if (!m) return undefined;
  const seconds = Number(m[1]) * (m[2] === 'm' ? 60 : 1);
  return seconds <= 3600 ? seconds : undefined;
}

const unitProcesses = z.object({ data: z.tuple([z.array(z.tuple([z.string(), z.number().int().positive(), z.string()]))]) });

/** The PIDs (in the machine's PID namespace) of every process in the unit's cgroup, from its systemd. */
async function processesOf(host: Host, machine: string, unit: string): Promise<number[]> {
  const r = await host.runner.run(
    'busctl',
    [`--machine=${machine}`, '--json=short', 'call', 'org.freedesktop.systemd1', '/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager', 'GetUnitProcesses', 's', unit],
    { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS },
  );
  let parsed: z.infer<typeof unitProcesses> | undefined;
  try {
    parsed = r.exitCode === 0 ? unitProcesses.parse(JSON.parse(r.stdout)) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!parsed) throw new NspawnctlError(`machine ${machine}: could not list the processes of ${unit}${r.exitCode !== 0 ? `: ${tailLines(r.stderr, 1)}` : ' (unexpected answer)'}`);
  return [...new Set(parsed.data[0].map(([, pid]) => pid))].sort((a, b) => a - b);
}

/** Whether the machine's processes may have CAP_SYS_PTRACE at all: its leader's bounding set, read on the host. */
async function machineMayTrace(host: Host, machine: string): Promise<boolean | undefined> {
  const leader = await machineLeader(host, machine);
  const status = leader === undefined ? undefined : await host.fs.readText(`/proc/${leader}/status`);
  const bnd = /^CapBnd:\s*([0-9a-f]{1,16})$/m.exec(status ?? '')?.[1];
  return bnd === undefined ? undefined : ((BigInt(`0x${bnd}`) >> CAP_SYS_PTRACE) & 1n) === 1n;
}

const LOOSEN = (machine: string) =>
  `To profile a service, machine ${machine} must let its root trace: add CAP_SYS_PTRACE to security.capabilities.add and take ~@debug out of its security.systemCallFilter (the strict preset has both), apply (it restarts the machine), profile, then put them back and apply again.`;

export interface ServiceProfileOptions extends ProfileOptions {
  durationS: number;
  /** Called once strace has attached to every process: the user may exercise the service now. */
  onReady?: (processes: number) => void;
}

/**
 * Attaches strace -f -c to every process of `service` (without .service) inside the running
 * machine, as a transient service of the machine's own systemd, for `durationS` seconds, then
 * makes the filter from what they called. Tracing needs CAP_SYS_PTRACE in the machine's bounding
 * set and ptrace allowed by its seccomp filter, which the strict machine preset takes away: that
 * is said before anything is installed, or when strace's attach is refused.
 */
export async function profileService(host: Host, machine: string, service: string, options: ServiceProfileOptions): Promise<ServiceProfile> {
  if ((await machineState(host, machine)) !== 'running') {
    throw new NspawnctlError(`machine ${machine} is not running`, { hint: `Start it first: nspawnctl apply MANIFEST (or machinectl start ${machine})` });
  }
  const unit = `${service}.service`;
  const state = (await showUnits(host, machine, [service])).get(service)!;
  if (state.loadState !== 'loaded') throw new NspawnctlError(`machine ${machine} has no unit ${unit} (LoadState=${escapeControl(state.loadState || 'unknown')})`);
  if (state.activeState !== 'active' && state.activeState !== 'reloading') {
    throw new NspawnctlError(`${unit} is not running in machine ${machine} (ActiveState=${escapeControl(state.activeState || 'unknown')}); a profile traces a running service`, { hint: `Start it: systemctl --machine=${machine} start ${unit}` });
  }
  if ((await machineMayTrace(host, machine)) === false) {
    throw new NspawnctlError(`nothing in machine ${machine} can trace ${unit}: CAP_SYS_PTRACE is not in the machine's capability bounding set`, { hint: LOOSEN(machine) });
  }
  const table = await readSyscallTable(host);
  if (!table) throw new NspawnctlError('systemd-analyze syscall-filter gave no groups; the profile needs them', { hint: 'apt-get install systemd' });
  await ensureStrace(host, machine, options);
  const pids = await processesOf(host, machine, unit);
  if (pids.length === 0) throw new NspawnctlError(`${unit} has no process in machine ${machine} to trace`);
  if (pids.length > MAX_TRACED) throw new NspawnctlError(`${unit} has ${pids.length} processes in machine ${machine}; at most ${MAX_TRACED} are traced`);

  const inner = `/run/nspawnctl-profile-${host.pid}-${Date.now()}.txt`;
  let attached = 0;
  let refused = false;
  const onLine = (line: string) => {
    if (/^strace: Process \d+ attached( with \d+ threads)?$/.test(line)) {
      attached++;
      if (attached === pids.length) options.onReady?.(pids.length);
      return;
    }
    if (/^strace: attach: ptrace\(PTRACE_SEIZE, \d+\): Operation not permitted$/.test(line)) refused = true;
    options.onLine?.(line);
  };
  try {
    // timeout stops strace with SIGINT, on which it detaches and writes its summary.
    const r = await runInMachine(host, machine, ['timeout', '--signal=INT', `${options.durationS}s`, 'strace', '-f', '-c', '-o', inner, ...pids.flatMap((p) => ['-p', String(p)])], {
      allowFailure: true,
      onLine,
      dieWithParent: true,
      timeoutMs: (options.durationS + 60) * 1000,
    });
    if (refused) {
      throw new NspawnctlError(`ptrace was refused inside machine ${machine}: its seccomp filter denies it (ptrace is in @debug)${attached > 0 ? ', for some processes' : ''}`, { hint: LOOSEN(machine) });
    }
    const read = await runInMachine(host, machine, ['cat', '--', inner], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
    if (read.exitCode !== 0 || attached === 0) {
      throw new NspawnctlError(`strace traced nothing (exit ${r.exitCode}): ${tailLines(r.stderr || r.stdout, 3).split('\n').join(' | ')}`);
    }
    const syscalls = parseStraceSummary(read.stdout);
    return { machine, service, durationS: options.durationS, processes: pids.length, syscalls, ...serviceFilterFromSyscalls(table, syscalls) };
  } finally {
    await runInMachine(host, machine, ['rm', '-f', '--', inner], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  }
}

/** The profile as manifest YAML, with what it covers and what it does not as comments. */
export function formatServiceProfile(p: ServiceProfile): string {
  const lines = [
    `# nspawnctl profile syscalls ${p.machine} --service ${p.service} --duration ${p.durationS}s`,
    `# ${p.service}.service (${p.processes} process${p.processes === 1 ? '' : 'es'}) made ${p.syscalls.length} distinct system calls while traced.`,
    // An idle service makes no call: the filter then rests on @system-service alone, which the user should know.
    ...(p.syscalls.length === 0 ? [`# NOTE: it made no system call while traced (nothing exercised it), so nothing of it was seen: trace it again and send it requests meanwhile.`] : []),
    '# WARNING: a profile covers only the code paths that ran. Exercise the service fully',
    '# (every kind of request, a reload) while it is traced, and keep a margin.',
    '# It was already running, so its start and stop were not traced: the filter starts from',
    `# ${SERVICE_BASE}, which covers what services ordinarily need, and denies only groups a`,
    '# service uses while it works, if at all. The commented groups were not called either: deny',
    '# them only if the service still restarts and reloads with them denied (apply restarts it).',
    ...p.kept.map((k) => `# kept ${k.group}: used ${k.because.join(' ')}`),
    ...(p.extra.length ? [`# outside ${SERVICE_BASE}, allowed by name: ${p.extra.join(' ')}`] : []),
    ...(p.unknown.length ? [`# unknown to this host's systemd, left out: ${p.unknown.join(' ')}`] : []),
    `# Under machines.${p.machine} (it replaces the systemCallFilter of services.${p.service} and of its preset):`,
    'services:',
    `  ${p.service}:`,
    '    systemCallFilter:',
    ...p.systemCallFilter.map((e) => `      - "${e}"`),
    ...p.optional.map((g) => `      # - "~${g}"`),
    `# all calls: ${p.syscalls.join(' ')}`,
  ];
  return `${lines.join('\n')}\n`;
}
