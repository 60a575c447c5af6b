// A machine's health check, as its own systemd runs it (src/render/health.ts writes the units):
// reading its state for status and list, waiting for it to pass after apply started the machine
// or changed the check, and making a running machine's systemd pick the check up or drop it.
// Everything is asked of the machine's systemd over its bus (systemctl --machine) or run inside it
// (its own journalctl); what comes back is the machine's, so it is read as untrusted.
import { escapeControl, formatArgv, NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { HealthCheck } from '../manifest/health';
import { HEALTH_SERVICE, HEALTH_TIMER } from '../render/rootfs-paths';
import { parseProperties } from './exec';
import { runInMachine, SHORT_TIMEOUT_MS, syncMachineJournal } from './in-machine';

export type HealthState = 'healthy' | 'unhealthy' | 'unknown';

export interface HealthReport {
  state: HealthState;
  /** Why, in a few words: "the last check passed", "the last check failed (exit status 1); ...". */
  detail: string;
  /** The last check's output, from the machine's journal: at most 10 lines of 200 characters, escaped. */
  output?: string[];
}

/** The properties of the check's service that say how its last run ended. */
export const HEALTH_PROPERTIES = 'LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,ExecMainExitTimestampMonotonic,ExecMainPID';
/** ExecMainPID as systemctl show gives it for a run that happened (0: none). */
const MAIN_PID = /^[1-9][0-9]{0,9}$/;
const MAX_OUTPUT_LINES = 10;
const MAX_OUTPUT_LINE = 200;

/** How a run ended, from Result, ExecMainCode and ExecMainStatus. */
function describeRun(p: Record<string, string>): string {
  const status = Number(p.ExecMainStatus);
  if (p.Result === 'timeout') return 'timed out';
  if ((p.ExecMainCode === '2' || p.ExecMainCode === '3') && Number.isInteger(status)) return `was killed by signal ${status}`;
  if (p.ExecMainCode === '1' && Number.isInteger(status) && status !== 0) return `failed (exit status ${status})`;
  return p.Result && p.Result !== 'success' ? `failed (${escapeControl(p.Result.slice(0, 40))})` : 'failed';
}

/**
 * The state of the check from its service's properties. A run that passed leaves the service
 * inactive with Result=success; a failed one leaves it waiting to run again (auto-restart) until
 * `retries` failed in a row use up its start limit, and then failed.
 */
export function interpretHealth(p: Record<string, string>): Omit<HealthReport, 'output'> {
  if (p.LoadState !== 'loaded') return { state: 'unknown', detail: 'the check is not loaded in the machine (apply installs it)' };
  const ran = Number(p.ExecMainExitTimestampMonotonic) > 0;
  if (p.ActiveState === 'failed') return { state: 'unhealthy', detail: `the last check ${describeRun(p)}, and the retries are used up` };
  if (p.ActiveState === 'activating' && p.SubState === 'auto-restart') return { state: 'unhealthy', detail: `the last check ${describeRun(p)}; it runs again after the interval` };
  // ExecStartPost= (the reset of the count) runs only after the check itself exited 0.
  if (p.ActiveState === 'activating' && p.SubState === 'start-post' && p.ExecMainCode === '1' && p.ExecMainStatus === '0') return { state: 'healthy', detail: 'the last check passed' };
  if (p.ActiveState === 'activating') return { state: 'unknown', detail: 'a check is running' };
  if (p.ActiveState === 'inactive' && ran && p.Result === 'success') return { state: 'healthy', detail: 'the last check passed' };
  if (p.ActiveState === 'inactive' && !ran) return { state: 'unknown', detail: 'no check has run since the machine started' };
  return { state: 'unknown', detail: `the check's service is ${escapeControl(`${p.ActiveState ?? '?'}/${p.SubState ?? '?'}`.slice(0, 60))}` };
}

/** The properties of the check's service, or undefined when the machine's systemd did not answer. */
async function healthProperties(host: Host, name: string): Promise<Record<string, string> | undefined> {
  const r = await host.runner.run('systemctl', [`--machine=${name}`, 'show', HEALTH_SERVICE, `--property=${HEALTH_PROPERTIES}`], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  return r.exitCode === 0 ? parseProperties(r.stdout) : undefined;
}

/**
 * What the last run printed, read by the machine's own journalctl inside it, escaped and capped.
 * The run's output is what came over its standard output stream: journald stamps each line with
 * the PID that opened the stream (the run's main process, ExecMainPID; its children write to the
 * same stream) and the unit named in the stream's header. Both are there even when the process
 * exited before journald read its lines, which _SYSTEMD_INVOCATION_ID is not: journald looks that
 * up from the live process, and under load it was missing from 8 of 40 runs. `-b`: a PID is
 * unique within one boot of the machine.
 */
async function lastOutput(host: Host, name: string, mainPid: string | undefined): Promise<string[] | undefined> {
  if (!mainPid || !MAIN_PID.test(mainPid)) return undefined;
  const r = await runInMachine(host, name, ['journalctl', '--no-pager', '--quiet', '--output=cat', '--boot', `_SYSTEMD_UNIT=${HEALTH_SERVICE}`, `_PID=${mainPid}`], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  if (r.exitCode !== 0) return undefined;
  return capOutput(r.stdout);
}

/**
 * The failed run's output, for the error. The journal may not have it yet when systemd already
 * says the run failed (seen under load): the machine's journal is synced first, which waits until
 * journald has handled the run's stream, then read once.
 */
async function settledOutput(host: Host, name: string, mainPid: string | undefined): Promise<string[] | undefined> {
  if (!mainPid || !MAIN_PID.test(mainPid)) return undefined;
  await syncMachineJournal(host, name);
  return lastOutput(host, name, mainPid);
}

/** The last lines of a machine's output, each cut to a length, control characters escaped. */
export function capOutput(text: string): string[] {
  return text
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '')
    .slice(-MAX_OUTPUT_LINES)
    .map((l) => escapeControl(l.length > MAX_OUTPUT_LINE ? `${l.slice(0, MAX_OUTPUT_LINE)}...` : l));
}

/** The machine's health, as its systemd has it; with `output`, also what the last check printed. */
export async function readHealth(host: Host, name: string, options: { output?: boolean } = {}): Promise<HealthReport> {
  const p = await healthProperties(host, name);
  if (!p) return { state: 'unknown', detail: "the machine's systemd did not answer" };
  const report = interpretHealth(p);
  if (!options.output) return report;
  const output = await lastOutput(host, name, p.ExecMainPID);
  return output && output.length > 0 ? { ...report, output } : report;
}

export interface WaitHealthyOptions {
  timeoutMs: number;
  /** How long to wait between two looks at a failing check (1 s). */
  intervalMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs the check now and waits until it passes: at once when the first run passes, otherwise
 * while systemd runs it again every `interval`, until a run passes, the retries are used up
 * (unhealthy: the machine's check failed, or with onFailure: restart the machine went down to
 * reboot), or the time is up. The wait starts a fresh count (reset-failed): failures from before
 * this apply do not count. Throws naming the machine, with the last check's output.
 */
export async function waitHealthy(host: Host, name: string, check: HealthCheck, options: WaitHealthyOptions): Promise<HealthReport> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const deadline = now() + options.timeoutMs;
  const ctl = (args: string[], timeoutMs = SHORT_TIMEOUT_MS) => host.runner.run('systemctl', [`--machine=${name}`, ...args], { allowFailure: true, timeoutMs });
  await ctl(['reset-failed', HEALTH_SERVICE]);
  // A oneshot's start returns when its run is over: 0 when it passed.
  const first = await ctl(['start', HEALTH_SERVICE], Math.max(1000, deadline - now()));
  if (first.exitCode === 0) return { state: 'healthy', detail: 'the check passed' };
  const restarts = check.onFailure === 'restart' ? '; onFailure: restart makes the machine reboot itself' : '';
  for (;;) {
    const p = await healthProperties(host, name);
    if (!p) throw notHealthy(name, `its systemd stopped answering while its check was failing${restarts}`, check);
    const report = interpretHealth(p);
    if (report.state === 'healthy') return report;
    if (p.LoadState !== 'loaded') throw notHealthy(name, report.detail, check);
    if (p.ActiveState === 'failed') {
      throw notHealthy(name, `its check failed ${check.retries} time(s) in a row: ${report.detail}${restarts}`, check, await settledOutput(host, name, p.ExecMainPID));
    }
    if (now() >= deadline) {
      throw notHealthy(name, `its check did not pass within ${Math.round(options.timeoutMs / 1000)} s: ${report.detail}`, check, await settledOutput(host, name, p.ExecMainPID));
    }
    await sleep(options.intervalMs ?? 1000);
  }
}

function notHealthy(name: string, why: string, check: HealthCheck, output?: string[]): NspawnctlError {
  const shown = output && output.length > 0 ? `; its last output:\n${output.map((l) => `    ${l}`).join('\n')}` : '';
  return new NspawnctlError(`machine ${name} is not healthy: ${why}${shown}`, {
    hint: `Run the check by hand: nspawnctl exec ${name} -- ${formatArgv(check.command)}`,
  });
}

/**
 * Inside a running machine, after its check's units were written or removed: its systemd reloads
 * its unit files; a new or changed check gets its timer restarted (with a fresh count), a removed
 * one is stopped first (its units are still loaded until the reload).
 */
export async function reloadHealth(host: Host, name: string, action: 'start' | 'stop'): Promise<void> {
  const ctl = (args: string[], allowFailure = false) => host.runner.run('systemctl', [`--machine=${name}`, ...args], { allowFailure, timeoutMs: SHORT_TIMEOUT_MS });
  if (action === 'stop') await ctl(['stop', HEALTH_TIMER, HEALTH_SERVICE], true);
  await ctl(['daemon-reload']);
  await ctl(['reset-failed', HEALTH_SERVICE], true);
  if (action === 'start') await ctl(['restart', HEALTH_TIMER]);
}
