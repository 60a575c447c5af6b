// Running a machine's own programs. Its binaries and its configuration (apt hooks, a planted
// /bin/true) are its root's to change, so they never run with more than the machine has. In a
// running machine they run as a transient service of the machine's own systemd (systemd-run
// --machine): in its namespaces, network included, its cgroup and limits, its user namespace,
// its seccomp filter and capability bounding set. (A stopped machine: see maintenance.ts. A
// freshly bootstrapped root filesystem that never booted is trusted: see bootstrap.ts.)
import { CommandFailedError, escapeControl, NspawnctlError, tailLines } from '../errors';
import { Host } from '../host/host';
import { RunOptions, RunResult } from '../host/runner';

/** systemd expands $VAR and ${VAR} in a transient unit's command line; "$$" is a literal "$". */
export function escapeForExec(arg: string): string {
  return arg.replace(/\$/g, '$$$$');
}

/**
 * The command's arguments as systemd-run must be given them. systemd-run sends its first one
 * twice: as the program's path, which systemd uses as it is, and as argv[0], which it expands
 * like every other argument. No spelling of a "$" there comes out right in both, so such a
 * program name is refused (exit 2) instead of running something else.
 */
export function execArgv(command: string[]): string[] {
  if (command.length === 0) throw new NspawnctlError('internal: no command to run inside the machine');
  if (command[0].includes('$')) {
    throw new NspawnctlError(`cannot run a program whose name contains "$" (${JSON.stringify(command[0])}) through systemd-run`, {
      exitCode: 2,
      hint: 'Name the program without "$", or run it through a shell inside the machine: sh -c \'...\'',
    });
  }
  return command.map(escapeForExec);
}

export interface InMachineOptions extends Pick<RunOptions, 'input' | 'onLine' | 'allowFailure' | 'timeoutMs' | 'dieWithParent'> {
  /** Environment variables for the command (values are passed verbatim). */
  env?: Record<string, string>;
  /** A name for the transient unit (a listing of the machine's services can then leave it out). */
  unit?: string;
  /** Unit properties of the transient service, like PrivateTmp=yes. */
  properties?: string[];
}

/** The systemd-run arguments that run `command` inside the running machine `name`, verbatim. */
export function inMachineArgs(name: string, command: string[], env: Record<string, string> = {}, unit?: { unit?: string; properties?: string[] }): string[] {
  return [
    `--machine=${name}`,
    ...(unit?.unit ? [`--unit=${unit.unit}`] : []),
    ...(unit?.properties ?? []).map((p) => `--property=${p}`),
    // --wait returns the command's exit status; --pipe connects our stdin, stdout and stderr;
    // --collect lets a failed run vanish instead of leaving the machine "degraded".
    '--wait',
    '--pipe',
    '--quiet',
    '--collect',
    ...Object.entries(env).map(([k, v]) => `--setenv=${k}=${v}`),
    '--',
    ...execArgv(command),
  ];
}

/** Runs `command` inside the running machine `name` as a transient service of its own systemd. */
export function runInMachine(host: Host, name: string, command: string[], options: InMachineOptions = {}): Promise<RunResult> {
  const { env, unit, properties, ...run } = options;
  return host.runner.run('systemd-run', inMachineArgs(name, command, env, { unit, properties }), run);
}

/**
 * Makes the machine's journald write out what it has before its journal is read: a unit's output
 * arrives over a stream that journald reads on its own time, so a process that has exited may
 * still have lines queued. journald handles a sync after everything queued before it, and
 * `journalctl --sync` returns when that is done. A machine that cannot sync is read as it is.
 */
export async function syncMachineJournal(host: Host, name: string): Promise<void> {
  await runInMachine(host, name, ['journalctl', '--sync'], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS }).catch(() => undefined);
}

export interface Readiness {
  /** What the machine's systemd says once its startup finished. */
  state: 'running' | 'degraded';
  /** Units that failed, when degraded. */
  failedUnits: string[];
}

export interface ReadyOptions {
  /** Date.now() value by which the machine must be ready. */
  deadline: number;
  /** Also wait until networkd configured host0 (the machine has a network). */
  network: boolean;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * How long apt may run inside a machine. What runs inside is the machine's to control (a hook
 * may never return); nspawnctl holds the host lock meanwhile, so it gives up on that machine.
 */
export const APT_TIMEOUT_MS = 30 * 60_000;

/** How long a short command inside a machine (test, cat, rm, a listing) may take. */
export const SHORT_TIMEOUT_MS = 60_000;

/** How long one `is-system-running --wait` may take before it is asked again. */
export const READY_ATTEMPT_MS = 2000;

/**
 * Waits until a started machine is usable: its systemd finished starting up (running or
 * degraded: systemctl is-system-running --wait, which blocks inside systemd until then), and,
 * with a network, its host0 is configured (systemd-networkd-wait-online, run inside it). The
 * only polling is for the machine's system bus to appear, right after the machine registered.
 */
export async function waitUntilReady(host: Host, name: string, options: ReadyOptions): Promise<Readiness> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const secondsLeft = () => Math.max(1, Math.ceil((options.deadline - now()) / 1000));
  let last = '';
  for (;;) {
    let r: RunResult;
    try {
      // Each wait is short: systemctl --wait of systemd 252 can miss a startup that finishes
      // while it subscribes (seen with read-only machines, which start up in 0.2 s) and then
      // waits forever; asking again returns at once.
      r = await host.runner.run('systemctl', [`--machine=${name}`, 'is-system-running', '--wait'], { allowFailure: true, timeoutMs: Math.min(READY_ATTEMPT_MS, secondsLeft() * 1000) });
    } catch (err) {
      if (err instanceof CommandFailedError && err.timedOut && now() < options.deadline) continue;
      throw notReady(name, `its system manager did not finish starting up within the start timeout${await pendingJobs(host, name)}`, err);
    }
    const state = r.stdout.trim();
    if (state === 'running' || state === 'degraded') {
      const failedUnits = state === 'degraded' ? await listFailedUnits(host, name) : [];
      if (options.network) await waitForNetwork(host, name, secondsLeft());
      return { state, failedUnits };
    }
    if (['maintenance', 'stopping', 'offline'].includes(state)) throw notReady(name, `its system manager is in state "${state}"`);
    last = (r.stderr || r.stdout).trim();
    if (now() >= options.deadline) throw notReady(name, `its system manager could not be reached${last ? ` (${tailLines(last, 1)})` : ''}`);
    // Not reachable yet: the machine registered before its systemd opened its bus.
    await sleep(100);
  }
}

function notReady(name: string, why: string, cause?: unknown): NspawnctlError {
  return new NspawnctlError(`machine ${name} is not ready: ${why}`, {
    hint: `Look at its boot: journalctl -M ${name} -b (or systemctl status systemd-nspawn@${name}.service)`,
    cause,
  });
}

/** What the machine's systemd is still waiting for, for a message (empty when it cannot say). */
async function pendingJobs(host: Host, name: string): Promise<string> {
  const r = await host.runner.run('systemctl', [`--machine=${name}`, 'list-jobs', '--no-legend', '--no-pager', '--full'], { allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
  const jobs = tailLines(r?.stdout ?? '', 10);
  return jobs ? `; jobs still waiting:\n${jobs}` : '';
}

/** The failed units of a running machine, as its own systemd lists them. */
export async function listFailedUnits(host: Host, name: string): Promise<string[]> {
  const r = await host.runner.run('systemctl', [`--machine=${name}`, 'list-units', '--failed', '--output=json', '--no-pager'], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  return r.exitCode === 0 ? parseFailedUnits(r.stdout) : [];
}

/** At most this many failed units are named, each cut to MAX_UNIT_NAME characters. */
export const MAX_FAILED_UNITS = 20;
const MAX_UNIT_NAME = 256;

/**
 * The unit names in `systemctl list-units --output=json`. The list comes from the machine's own
 * systemd, so it is read as untrusted: JSON rather than columns (a unit's description may hold a
 * newline, which the plain listing prints as a line of its own), only string names, control
 * characters escaped, the length of the list and of each name capped.
 */
export function parseFailedUnits(json: string): string[] {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(data)) return [];
  const names = data.flatMap((u: unknown) => {
    const unit = u !== null && typeof u === 'object' ? (u as { unit?: unknown }).unit : undefined;
    return typeof unit === 'string' && unit !== '' ? [escapeControl(unit.length > MAX_UNIT_NAME ? `${unit.slice(0, MAX_UNIT_NAME)}...` : unit)] : [];
  });
  return names.length > MAX_FAILED_UNITS ? [...names.slice(0, MAX_FAILED_UNITS), `(${names.length - MAX_FAILED_UNITS} more)`] : names;
}

async function waitForNetwork(host: Host, name: string, seconds: number): Promise<void> {
  const r = await runInMachine(host, name, ['/lib/systemd/systemd-networkd-wait-online', '--interface=host0', `--timeout=${seconds}`], {
    allowFailure: true,
    timeoutMs: (seconds + 15) * 1000,
  });
  if (r.exitCode !== 0) {
    const detail = tailLines(r.stderr || r.stdout, 3);
    throw new NspawnctlError(`machine ${name} is not ready: networkd inside it did not configure host0 within ${seconds} s${detail ? `:\n${detail}` : ''}`, {
      hint: `Look inside: systemd-run --machine=${name} --wait --pipe networkctl status host0`,
    });
  }
}

/**
 * Makes the running machine's own systemd re-read its unit files, then restarts (starting them
 * if inactive) or stops the given units: how generated units inside a machine (autoUpgrade's
 * timer) take effect without restarting it. systemctl talks to the machine's manager over its
 * bus; none of the machine's programs runs on the host.
 */
export async function reloadMachineUnits(host: Host, name: string, restart: string[], stop: string[]): Promise<void> {
  const options = { timeoutMs: SHORT_TIMEOUT_MS };
  const systemctl = (...args: string[]) => host.runner.run('systemctl', [`--machine=${name}`, ...args], options);
  // Units whose files are gone are stopped before the reload: once reloaded, a running timer
  // whose unit file vanished turns "failed" (seen with systemd 252), and one failed unit makes
  // the whole machine "degraded". reset-failed clears whatever failed state is left anyway.
  if (stop.length > 0) await systemctl('stop', ...stop);
  await systemctl('daemon-reload');
  if (stop.length > 0) await host.runner.run('systemctl', [`--machine=${name}`, 'reset-failed', ...stop], { ...options, allowFailure: true });
  if (restart.length > 0) await systemctl('restart', ...restart);
}
