// What status and list say about the services nspawnctl hardens in a machine: which ones (from the
// machine's record, so what was applied), and the exposure its own systemd gives each now.
import { estimateExposure, Exposure, ExposureItem, formatExposure, readServiceExposure } from '../apply/exposure';
import { NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { splitMachinePath } from '../host/paths';
import { serviceDropInPath, serviceOfDropIn } from '../manifest/services';
import { DesiredState } from '../render/desired';
import { HostState } from './observe';
import { MachineRecord } from './records';
import { Plan, Step } from './steps';

export interface ServiceReport {
  /** The unit name without .service. */
  name: string;
  /** From systemd-analyze security inside the running machine; absent when it was not asked. */
  exposure?: number;
  level?: string;
  /** Unmet settings, the heaviest first. */
  unmet?: ExposureItem[];
  /** Why there is no score (the machine is stopped, the unit is missing, ...). */
  note?: string;
}

/** The services whose hardening drop-in the record lists, sorted by name. */
export function managedServices(record: MachineRecord | undefined): string[] {
  const names = (record?.files ?? []).map((f) => serviceOfDropIn(splitMachinePath(f)?.path ?? '')).filter((n): n is string => n !== undefined);
  return [...new Set(names)].sort();
}

/**
 * The hardened services of one machine with their scores. Asking a machine's systemd needs root;
 * `notice` is told once when it could not be asked for that reason.
 */
export async function reportServices(host: Host, machine: string, record: MachineRecord | undefined, running: boolean, notice: (text: string) => void): Promise<ServiceReport[]> {
  const names = managedServices(record);
  if (names.length === 0) return [];
  if (!running) return names.map((name) => ({ name, note: 'machine not running' }));
  if (host.uid !== 0) {
    notice('the exposure of hardened services is read inside their machines, which needs root');
    return names.map((name) => ({ name, note: 'needs root' }));
  }
  const reports: ServiceReport[] = [];
  for (const name of names) {
    try {
      const e = await readServiceExposure(host, machine, name);
      reports.push({ name, exposure: e.exposure, level: e.level, unmet: e.unmet });
    } catch (err) {
      if (!(err instanceof NspawnctlError)) throw err;
      reports.push({ name, note: err.message });
    }
  }
  return reports;
}

/** "2.8 OK" or the note, for a table cell. */
export function exposureCell(s: ServiceReport): string {
  return s.exposure !== undefined ? `${s.exposure.toFixed(1)} ${s.level}` : `- (${s.note ?? 'unknown'})`;
}

/** What plan says about a service whose hardening changes. */
export interface ServiceEstimate {
  machine: string;
  service: string;
  /** Its drop-in is written (hardened) or removed (released). */
  change: 'hardened' | 'released';
  /** Scores of its unit files before and after, rated offline in the machine. */
  before?: Exposure;
  after?: Exposure;
  /** A warning (the unit is missing) or why there is no estimate. */
  warning?: string;
  note?: string;
}

/**
 * For each service whose hardening the plan changes in a running machine: its score now and
 * after, both estimated by the machine's systemd-analyze --offline, and a warning when the
 * machine has no such unit (apply would stop there). Changes nothing in the machine; needs root.
 */
export async function estimatePlannedServices(host: Host, plan: Plan, desired: DesiredState, state: HostState): Promise<{ estimates: ServiceEstimate[]; notices: string[] }> {
  const estimates: ServiceEstimate[] = [];
  const notices: string[] = [];
  const steps = plan.steps.filter((s): s is Extract<Step, { kind: 'restart-services' }> => s.kind === 'restart-services');
  if (steps.length === 0) return { estimates, notices };
  if (host.uid !== 0) return { estimates, notices: ['the exposure of services before and after is estimated inside their machines, which needs root'] };
  for (const step of steps) {
    const observed = state.machines[step.machine];
    if (!observed?.running || !observed.record) {
      notices.push(`machine ${step.machine} is not running: the exposure of its services is not estimated (nspawnctl status ${step.machine} shows it once it runs)`);
      continue;
    }
    const machine = desired.machines.find((m) => m.machine.name === step.machine);
    const installing = plan.steps.flatMap((s) => (s.kind === 'install-packages' && s.machine === step.machine ? s.packages : []));
    const targets = [...step.units.map((u) => [u, 'hardened'] as const), ...step.released.map((u) => [u, 'released'] as const)];
    for (const [service, change] of targets) {
      const dropIn = change === 'hardened' ? machine?.rootfsEntries.find((e) => e.path === serviceDropInPath(service)) : undefined;
      const e = await estimateExposure(host, step.machine, service, dropIn?.kind === 'file' ? dropIn.content : '');
      const base = { machine: step.machine, service, change };
      if ('before' in e) estimates.push({ ...base, before: e.before, after: e.after });
      else if ('missing' in e && change === 'hardened') {
        estimates.push({
          ...base,
          warning: installing.length > 0
            ? `no unit ${service}.service in machine ${step.machine} yet; it must come from the packages apply installs first (${installing.join(' ')}), or apply stops there`
            : `no unit ${service}.service in machine ${step.machine}: apply will stop there; add the package that ships it to packages:, or fix the name`,
        });
      } else if ('missing' in e) estimates.push({ ...base, note: 'no such unit in the machine any more' });
      else estimates.push({ ...base, note: e.unavailable });
    }
  }
  return { estimates, notices };
}

/** The lines plan prints after the plan itself. */
export function formatServiceEstimates(estimates: ServiceEstimate[]): string {
  if (estimates.length === 0) return '';
  const rated = estimates.filter((e) => e.before && e.after);
  const lines: string[] = [];
  if (rated.length > 0) {
    const width = Math.max(...rated.map((e) => `${e.machine} ${e.service}`.length));
    lines.push(
      '',
      'Exposure of services whose hardening changes (0.0 best, 10.0 worst), estimated before apply from their unit files',
      "(systemd-analyze --offline in the machine; the live score, after apply, is often a few tenths lower: nspawnctl status):",
      ...rated.map((e) => `  ${`${e.machine} ${e.service}`.padEnd(width)}  ${formatExposure(e.before!)} -> ${formatExposure(e.after!)}${e.change === 'released' ? '  (hardening removed)' : ''}`),
    );
  }
  for (const e of estimates.filter((x) => x.warning)) lines.push(`warning: machine ${e.machine}: service ${e.service}: ${e.warning}`);
  for (const e of estimates.filter((x) => x.note)) lines.push(`note: machine ${e.machine}: service ${e.service}: exposure not estimated: ${e.note}`);
  return `${lines.join('\n')}\n`;
}
