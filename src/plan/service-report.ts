// What status and list say about the services nspawnctl hardens in a machine: which ones (from the
// machine's record, so what was applied), and the exposure its own systemd gives each now.
import { ExposureItem, readServiceExposure } from '../apply/exposure';
import { NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { splitMachinePath } from '../host/paths';
import { serviceOfDropIn } from '../manifest/services';
import { MachineRecord } from './records';

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
