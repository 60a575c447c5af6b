// The exposure of every service in the machines nspawnctl manages, hardened by it or not, as the
// machines' own systemd-analyze rates them: what `nspawnctl audit` prints and gates on.
import { NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { isSystemdBooted, listManagedMachines, listRunningMachines, readMachineRecord } from '../plan/observe';
import { managedServices } from '../plan/service-report';
import { listServiceExposures, readServiceExposure } from './exposure';

export interface AuditRow {
  machine: string;
  unit: string;
  exposure: number;
  level: string;
  /** nspawnctl hardens it (services: of the manifest, as applied). */
  hardened: boolean;
}

export interface Audit {
  /** Worst first. */
  rows: AuditRow[];
  /** Machines (or hardened services of one) that could not be audited, and why. */
  skipped: { machine: string; unit?: string; why: string }[];
}

/**
 * Audits the named managed machines, or every managed one that runs. A hardened service the
 * machine's systemd has not loaded (so not in its listing) is rated on its own.
 */
export async function auditMachines(host: Host, names?: string[]): Promise<Audit> {
  const managed = await listManagedMachines(host);
  for (const n of names ?? []) {
    if (!managed.includes(n)) throw new NspawnctlError(`no machine named ${n} is managed by nspawnctl`, { hint: 'nspawnctl list shows the machines nspawnctl manages.' });
  }
  const running = (await isSystemdBooted(host)) ? new Set(await listRunningMachines(host)) : new Set<string>();
  const rows: AuditRow[] = [];
  const skipped: Audit['skipped'] = [];
  for (const machine of names ?? managed) {
    if (!running.has(machine)) {
      skipped.push({ machine, why: 'not running' });
      continue;
    }
    const hardened = new Set(managedServices((await readMachineRecord(host, machine)).record).map((n) => `${n}.service`));
    let listed: Awaited<ReturnType<typeof listServiceExposures>>;
    try {
      listed = await listServiceExposures(host, machine);
    } catch (err) {
      if (!(err instanceof NspawnctlError)) throw err;
      skipped.push({ machine, why: err.message });
      continue;
    }
    for (const r of listed) rows.push({ machine, ...r, hardened: hardened.has(r.unit) });
    for (const unit of [...hardened].filter((u) => !listed.some((r) => r.unit === u))) {
      try {
        const e = await readServiceExposure(host, machine, unit.slice(0, -'.service'.length));
        rows.push({ machine, unit, exposure: e.exposure, level: e.level, hardened: true });
      } catch (err) {
        if (!(err instanceof NspawnctlError)) throw err;
        skipped.push({ machine, unit, why: err.message });
      }
    }
  }
  rows.sort((a, b) => b.exposure - a.exposure || a.machine.localeCompare(b.machine) || a.unit.localeCompare(b.unit));
  return { rows, skipped };
}
