// Day-two access to a running machine: a command (exec), a login shell (shell) and its journal
// (logs). Everything runs inside the machine, through its own systemd, as nspawnctl runs any of a
// machine's programs (in-machine.ts): its namespaces, cgroup, user namespace, seccomp filter and
// capability bounding set. A name nspawnctl does not manage, or a machine that is not running,
// is refused before anything runs, and nothing is ever run on the host instead.
import { escapeControl, NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { machineRecordPath } from '../host/paths';
import { MACHINE_NAME } from '../manifest/schema';
import { execArgv, inMachineArgs, SHORT_TIMEOUT_MS } from './in-machine';
import { machineState } from './machinectl';

/** A user inside the machine, by name or number (--uid of systemd-run and machinectl). */
export const MACHINE_USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/;
/** An environment variable name (--setenv of systemd-run). */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A unit name or glob for journalctl --unit: what systemd allows in unit names, and glob characters. */
export const UNIT_PATTERN = /^[A-Za-z0-9:_.@\\*?[\]][A-Za-z0-9:_.@\\*?[\]-]{0,255}$/;

/**
 * Refuses a machine nspawnctl does not manage (no record) or that is not running (exit 1), and a
 * name that cannot be a machine's (exit 2), before anything runs.
 */
export async function requireRunningMachine(host: Host, name: string): Promise<void> {
  if (!MACHINE_NAME.test(name)) throw new NspawnctlError(`${JSON.stringify(escapeControl(name))} is not a machine name`, { exitCode: 2 });
  if ((await host.fs.stat(machineRecordPath(name))) === undefined) {
    throw new NspawnctlError(`no machine named ${name} is managed by nspawnctl; nothing was run`, { hint: 'nspawnctl list shows the machines nspawnctl manages.' });
  }
  const state = await machineState(host, name);
  if (state !== 'running') {
    throw new NspawnctlError(`machine ${name} is not running${state ? ` (machined says "${escapeControl(state)}")` : ''}; nothing was run`, {
      hint: `Start it with: nspawnctl apply MANIFEST (or machinectl start ${name})`,
    });
  }
}

export interface ExecOptions {
  /** The transient unit the command runs as (nspawnctl-exec-...service): how an interrupt reaches it. */
  unit: string;
  /** A user of the machine (systemd-run --uid); root by default. */
  user?: string;
  /** Environment variables, in order (systemd-run --setenv=NAME=VALUE). */
  env?: [name: string, value: string][];
  /** The working directory inside the machine, absolute (systemd-run --working-directory). */
  cwd?: string;
}

/** Checks exec's options; a problem is a usage error (exit 2), found before anything runs. */
export function checkExecOptions(options: Omit<ExecOptions, 'unit'>): void {
  const usage = (message: string, hint?: string) => new NspawnctlError(message, { exitCode: 2, hint });
  if (options.user !== undefined && !MACHINE_USER.test(options.user)) {
    throw usage(`--user ${JSON.stringify(escapeControl(options.user))} is not a user name or number`, 'A user of the machine: letters, digits, _ . - (not starting with - or .), or a UID.');
  }
  for (const [name] of options.env ?? []) {
    // systemd-run --setenv=NAME (no "=") would copy nspawnctl's own variable from the host.
    if (!ENV_NAME.test(name)) throw usage(`--env ${JSON.stringify(escapeControl(name))}: expected NAME=VALUE, NAME of letters, digits and _ (not starting with a digit)`);
  }
  if (options.cwd !== undefined && (!options.cwd.startsWith('/') || /[\0\n]/.test(options.cwd))) {
    // systemd-run would make a relative directory absolute against the host's working directory.
    throw usage(`--cwd ${JSON.stringify(escapeControl(options.cwd))} is not an absolute path`, 'Name the directory inside the machine from its root: --cwd /srv/app');
  }
}

/** Parses one --env value: NAME=VALUE (the value may be empty or hold "="). */
export function parseEnvAssignment(text: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new NspawnctlError(`--env ${JSON.stringify(escapeControl(text))}: expected NAME=VALUE`, { exitCode: 2 });
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/**
 * systemd-run's arguments for exec: the command verbatim (its "$" doubled, in-machine.ts), as a
 * oneshot service of the machine's own systemd, named so that an interrupt can reach it. Oneshot,
 * because for any other type systemd counts death by SIGTERM, SIGINT, SIGHUP or SIGPIPE as a clean
 * exit, and systemd-run would then report 0; no start timeout, since a command may run for hours.
 * Without --collect: a failed unit stays until its exit status is read (then reset-failed).
 */
export function execArgs(name: string, command: string[], options: ExecOptions): string[] {
  checkExecOptions(options);
  return [
    `--machine=${name}`,
    `--unit=${options.unit}`,
    '--service-type=oneshot',
    '--property=TimeoutStartSec=infinity',
    '--wait',
    '--pipe',
    '--quiet',
    '--no-ask-password',
    ...(options.user !== undefined ? [`--uid=${options.user}`] : []),
    ...(options.env ?? []).map(([k, v]) => `--setenv=${k}=${v}`),
    ...(options.cwd !== undefined ? [`--working-directory=${options.cwd}`] : []),
    '--',
    ...execArgv(command),
  ];
}

/** Exit statuses systemd itself uses when it cannot start the command, and what each means here. */
const SYSTEMD_EXEC_FAILURES: Record<number, string> = {
  200: 'the working directory (--cwd) does not exist in the machine or cannot be entered',
  203: 'the program was not found in the machine, or cannot be executed there',
  217: 'the user (--user) does not exist in the machine',
};

export interface ExecResult {
  /** The command's exit status; 128 + N when it was killed by signal N (as a shell reports it). */
  exitCode: number;
  /** Said on stderr when the status is probably systemd's own (the command did not start). */
  note?: string;
}

/**
 * Runs the command inside the running machine with nspawnctl's own stdin, stdout and stderr, and
 * returns its exit status. systemd-run reports a command killed by a signal as 255 (and, for
 * other service types, SIGTERM as success), so a failure is read from the unit itself:
 * ExecMainCode and ExecMainStatus. An interrupt of nspawnctl (Ctrl-C, SIGTERM) is passed on to
 * the command's processes inside the machine: systemd-run runs in its own process group, so the
 * terminal's signal reaches nspawnctl alone, and nspawnctl asks the machine's systemd to signal
 * the unit; systemd-run then returns when the command has ended.
 */
export async function execInMachine(host: Host, name: string, command: string[], options: ExecOptions): Promise<ExecResult> {
  const forward = () => {
    const reason = host.signal?.reason;
    const signal = reason === 'SIGINT' || reason === 'SIGTERM' ? reason : 'SIGTERM';
    void host.runner
      .run('systemctl', [`--machine=${name}`, 'kill', `--signal=${signal}`, '--kill-whom=all', options.unit], { allowFailure: true, afterInterrupt: true, timeoutMs: SHORT_TIMEOUT_MS })
      .catch(() => undefined);
  };
  host.signal?.addEventListener('abort', forward, { once: true });
  let r;
  try {
    r = await host.runner.run('systemd-run', execArgs(name, command, options), { inheritStdio: true, waitOnInterrupt: true, allowFailure: true });
  } finally {
    host.signal?.removeEventListener('abort', forward);
  }
  if (r.exitCode === 0) return { exitCode: 0 };
  // A oneshot that failed stays loaded (failed) until it is reset: read how it ended, then reset it.
  const after = { allowFailure: true, afterInterrupt: true, timeoutMs: SHORT_TIMEOUT_MS };
  const shown = await host.runner.run('systemctl', [`--machine=${name}`, 'show', options.unit, '--property=LoadState,Result,ExecMainCode,ExecMainStatus'], after);
  const props = parseProperties(shown.stdout);
  if (props.LoadState === 'loaded') await host.runner.run('systemctl', [`--machine=${name}`, 'reset-failed', options.unit], after);
  const code = Number(props.ExecMainCode);
  const status = Number(props.ExecMainStatus);
  if (props.LoadState !== 'loaded' || !Number.isInteger(status)) return { exitCode: r.exitCode };
  // CLD_EXITED = 1, CLD_KILLED = 2, CLD_DUMPED = 3 (waitid(2)).
  if (code === 1) {
    const why = SYSTEMD_EXEC_FAILURES[status];
    return { exitCode: status, ...(why ? { note: `exit status ${status} is also what systemd reports when ${why}` } : {}) };
  }
  if ((code === 2 || code === 3) && status > 0 && status < 128) return { exitCode: 128 + status };
  return { exitCode: r.exitCode };
}

/** `systemctl show` output (KEY=VALUE lines) as a map; values from a machine, so only read, never shown raw. */
export function parseProperties(text: string): Record<string, string> {
  const props: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) props[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return props;
}

/**
 * machinectl's arguments for an interactive login shell in the machine. machined asks the
 * machine's own systemd to start the shell (a transient service there, on a pseudo-terminal of
 * the machine), so nothing of the machine runs on the host; it needs a terminal on our side.
 */
export function shellArgs(name: string, user?: string): string[] {
  if (user !== undefined) checkExecOptions({ user });
  return ['shell', ...(user !== undefined ? [`--uid=${user}`] : []), name];
}

/** Opens the shell; returns machinectl's exit status. */
export async function shellInMachine(host: Host, name: string, user?: string): Promise<number> {
  const r = await host.runner.run('machinectl', shellArgs(name, user), { inheritStdio: true, allowFailure: true });
  return r.exitCode;
}

export interface LogsOptions {
  /** The transient unit journalctl runs as inside the machine (nspawnctl-logs-...service). */
  unit: string;
  follow?: boolean;
  lines?: number;
  since?: string;
  /** Only this unit's messages (journalctl --unit; a glob is allowed). */
  matchUnit?: string;
}

/** Checks logs' options; a problem is a usage error (exit 2). */
export function checkLogsOptions(options: Omit<LogsOptions, 'unit'>): void {
  if (options.since !== undefined && (options.since === '' || options.since.length > 100 || /[\u0000-\u001f\u007f]/.test(options.since))) {
    throw new NspawnctlError(`--since ${JSON.stringify(escapeControl(options.since))} is not a time`, { exitCode: 2, hint: 'A time journalctl understands: "2025-01-31 12:00", yesterday, "-1h", "10 min ago".' });
  }
  if (options.matchUnit !== undefined && !UNIT_PATTERN.test(options.matchUnit)) {
    throw new NspawnctlError(`--unit ${JSON.stringify(escapeControl(options.matchUnit))} is not a unit name`, { exitCode: 2, hint: 'A unit of the machine, like nginx.service (or nginx, or a glob: nginx*).' });
  }
}

/** The machine's own journalctl, as it is run inside the machine. */
export function journalctlCommand(options: Omit<LogsOptions, 'unit'>): string[] {
  checkLogsOptions(options);
  return [
    'journalctl',
    '--no-pager',
    ...(options.follow ? ['--follow'] : []),
    ...(options.lines !== undefined ? [`--lines=${options.lines}`] : []),
    ...(options.since !== undefined ? [`--since=${options.since}`] : []),
    ...(options.matchUnit !== undefined ? [`--unit=${options.matchUnit}`] : []),
  ];
}

/**
 * Shows the machine's journal by running the machine's own journalctl inside it (not the host's
 * journalctl -M, which would parse the journal files the machine wrote, as host root). What it
 * prints is the machine's, so every control character but newline and tab is escaped before it
 * reaches `write` (no escape sequence reaches the terminal), piece by piece as it arrives, so
 * --follow keeps nothing in memory. An interrupt stops the journalctl inside the machine.
 */
export async function machineLogs(host: Host, name: string, options: LogsOptions, write: (text: string, stream: 'stdout' | 'stderr') => void): Promise<number> {
  const stop = () => {
    void host.runner
      .run('systemctl', [`--machine=${name}`, 'stop', options.unit], { allowFailure: true, afterInterrupt: true, timeoutMs: SHORT_TIMEOUT_MS })
      .catch(() => undefined);
  };
  host.signal?.addEventListener('abort', stop, { once: true });
  try {
    const args = inMachineArgs(name, journalctlCommand(options));
    // Named, so that an interrupt can stop it: --unit goes before the command.
    const r = await host.runner.run('systemd-run', [args[0], `--unit=${options.unit}`, ...args.slice(1)], {
      allowFailure: true,
      waitOnInterrupt: true,
      onOutput: (text, stream) => write(escapeControl(text), stream),
    });
    return r.exitCode;
  } finally {
    host.signal?.removeEventListener('abort', stop);
  }
}
