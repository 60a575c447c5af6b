// What list and status report: managed machines, their state, address, and drift from the manifest.
import { Host } from '../host/host';
import { ManifestError, NspawnctlError } from '../errors';
import { machineLeader } from '../apply/machinectl';
import { loadManifestFile, planManifest } from '../pipeline';
import { isSystemdBooted, listManagedMachines, listRunningMachines, readMachineRecord } from './observe';
import { MachineRecord } from './records';
import { Summary } from './steps';

export interface MachineReport {
  name: string;
  state: 'running' | 'stopped';
  address?: string;
  leader?: number;
  manifest?: string;
  /** "in sync", "drift", or why it could not be compared. */
  sync: 'in sync' | 'drift' | 'not in manifest' | 'manifest unreadable';
  changes: string[];
  record?: MachineRecord;
}

/** Reports on the given managed machines (all of them when `names` is undefined). */
export async function inspectMachines(host: Host, cwd: string, names?: string[], manifestOverride?: string): Promise<MachineReport[]> {
  const managed = await listManagedMachines(host);
  const wanted = names ?? managed;
  for (const n of wanted) {
    if (!managed.includes(n)) throw new NspawnctlError(`no machine named ${n} is managed by nspawnctl`, { hint: 'nspawnctl list shows the machines nspawnctl manages.' });
  }
  const running = (await isSystemdBooted(host)) ? new Set(await listRunningMachines(host)) : new Set<string>();
  const records = new Map<string, MachineRecord | undefined>();
  for (const n of wanted) records.set(n, (await readMachineRecord(host, n)).record);

  // One plan per manifest file, shared by the machines recorded from it.
  const byManifest = new Map<string, string[]>();
  for (const n of wanted) {
    const file = manifestOverride ?? records.get(n)?.manifest;
    if (file) byManifest.set(file, [...(byManifest.get(file) ?? []), n]);
  }
  const summaries = new Map<string, { summary?: Summary; address?: string; sync: MachineReport['sync'] }>();
  for (const [file, machines] of byManifest) {
    try {
      const manifest = await loadManifestFile(host, file);
      // Comparing needs no mirror: a machine to create is reported as drift, not checked online.
      const { plan } = await planManifest(host, manifest, cwd, undefined, { checkArchives: false });
      for (const n of machines) {
        const summary = plan.summary.find((s) => s.owner.type === 'machine' && s.owner.name === n);
        const address = manifest.machines[n]?.network?.address;
        if (!summary) summaries.set(n, { sync: 'not in manifest' });
        else summaries.set(n, { summary, address, sync: summary.action === 'unchanged' ? 'in sync' : 'drift' });
      }
    } catch (err) {
      if (!(err instanceof ManifestError) && !(err instanceof NspawnctlError)) throw err;
      for (const n of machines) summaries.set(n, { sync: 'manifest unreadable' });
    }
  }

  const reports: MachineReport[] = [];
  for (const n of wanted) {
    const s = summaries.get(n) ?? { sync: 'manifest unreadable' as const };
    const isRunning = running.has(n);
    reports.push({
      name: n,
      state: isRunning ? 'running' : 'stopped',
      address: s.address,
      leader: isRunning ? await machineLeader(host, n) : undefined,
      manifest: manifestOverride ?? records.get(n)?.manifest,
      sync: s.sync,
      changes: s.summary?.changes ?? [],
      record: records.get(n),
    });
  }
  return reports;
}
