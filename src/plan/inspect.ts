// What list and status report: managed machines, their state, address, and drift from the manifest.
import { Host } from '../host/host';
import { escapeControl, ManifestError, NspawnctlError, PermissionDeniedError } from '../errors';
import { HealthReport, readHealth } from '../apply/health';
import { listFailedUnits, SHORT_TIMEOUT_MS } from '../apply/in-machine';
import { healthDropInPath, inRootfs, rootfsPath } from '../host/paths';
import { HEALTH_SERVICE_FILE } from '../render/rootfs-paths';
import { machineLeader, machineUserRange } from '../apply/machinectl';
import { loadManifestFile, planManifest } from '../pipeline';
import { deniedMessage, describeUnreadable, isSystemdBooted, listManagedMachines, listRunningMachines, readMachineRecord } from './observe';
import { MachineRecord } from './records';
import { reportServices, ServiceReport } from './service-report';
import { Summary } from './steps';

export interface MachineReport {
  name: string;
  state: 'running' | 'stopped';
  address?: string;
  leader?: number;
  /** Host UIDs of a running machine's user namespace: its root is `base` on the host. */
  users?: { base: number; count: number };
  manifest?: string;
  /** "in sync", "drift", or why it could not be compared ("needs root": its files could not be read). */
  sync: 'in sync' | 'drift' | 'not in manifest' | 'manifest unreadable' | 'needs root';
  changes: string[];
  /** When `nspawnctl upgrade` last brought its packages up to date (from its record); absent: never. */
  upgraded?: string;
  record?: MachineRecord;
  /** Services nspawnctl hardens in it, with their exposure when it runs. */
  services: ServiceReport[];
  /** Its health check, when it has one (status adds the last check's output). */
  health?: HealthReport;
  /** What a running machine's own systemd says (status only, as root). */
  system?: { state: string; failedUnits: string[] };
}

export interface InspectOptions {
  /** One machine in full (status): the health check's last output and the machine's systemd state. */
  detail?: boolean;
}

export interface Inspection {
  machines: MachineReport[];
  /** What could not be read (run as a normal user), one line each, for the command to show. */
  notices: string[];
}

/** Reports on the given managed machines (all of them when `names` is undefined). */
export async function inspectMachines(host: Host, cwd: string, names?: string[], manifestOverride?: string, options: InspectOptions = {}): Promise<Inspection> {
  const notices: string[] = [];
  const notice = (text: string | undefined) => {
    if (text !== undefined && !notices.includes(text)) notices.push(text);
  };
  // A normal user cannot list root's records: say so, and report only on the machines named.
  let managed: string[] | undefined;
  try {
    managed = await listManagedMachines(host);
  } catch (err) {
    if (!(err instanceof PermissionDeniedError)) throw err;
    notice(deniedMessage(err.path, 'the machines nspawnctl manages'));
  }
  const wanted = names ?? managed ?? [];
  for (const n of managed ? wanted : []) {
    if (!managed!.includes(n)) throw new NspawnctlError(`no machine named ${n} is managed by nspawnctl`, { hint: 'nspawnctl list shows the machines nspawnctl manages.' });
  }
  const running = (await isSystemdBooted(host)) ? new Set(await listRunningMachines(host)) : new Set<string>();
  const records = new Map<string, MachineRecord | undefined>();
  const hidden = new Set<string>();
  for (const n of wanted) {
    try {
      records.set(n, (await readMachineRecord(host, n)).record);
    } catch (err) {
      if (!(err instanceof PermissionDeniedError)) throw err;
      hidden.add(n);
      // Once the list itself was refused, every record is: that one notice says it.
      if (managed) notice(deniedMessage(err.path, `machine ${n}`));
    }
  }

  // One plan per manifest file, shared by the machines recorded from it.
  const byManifest = new Map<string, string[]>();
  for (const n of wanted) {
    const file = manifestOverride ?? records.get(n)?.manifest;
    if (file) byManifest.set(file, [...(byManifest.get(file) ?? []), n]);
  }
  const summaries = new Map<string, { summary?: Summary; address?: string; sync: MachineReport['sync'] }>();
  for (const [file, machines] of byManifest) {
    // A manifest applied from standard input cannot be read again.
    if (!file.startsWith('/') && !manifestOverride) {
      for (const n of machines) summaries.set(n, { sync: 'manifest unreadable' });
      continue;
    }
    try {
      const manifest = await loadManifestFile(host, file);
      // Comparing needs no mirror and no kernel limit: a machine to create is reported as drift.
      const { plan, state } = await planManifest(host, manifest, cwd, undefined, { checkArchives: false, checkLimits: false });
      notice(describeUnreadable(state.unreadable));
      for (const n of machines) {
        const summary = plan.summary.find((s) => s.owner.type === 'machine' && s.owner.name === n);
        const address = manifest.machines[n]?.network?.address;
        if (!summary) summaries.set(n, { sync: 'not in manifest' });
        // What could not be read is not drift: the comparison is unknown.
        else if (hidden.has(n) || state.machines[n]?.unreadable) summaries.set(n, { address, sync: 'needs root' });
        else summaries.set(n, { summary, address, sync: summary.action === 'unchanged' ? 'in sync' : 'drift' });
      }
    } catch (err) {
      if (!(err instanceof ManifestError) && !(err instanceof NspawnctlError)) throw err;
      for (const n of machines) summaries.set(n, { sync: 'manifest unreadable' });
    }
  }

  const reports: MachineReport[] = [];
  for (const n of wanted) {
    const s = summaries.get(n) ?? { sync: hidden.has(n) ? ('needs root' as const) : ('manifest unreadable' as const) };
    const isRunning = running.has(n);
    const leader = isRunning ? await machineLeader(host, n) : undefined;
    const record = records.get(n);
    const health = record?.files.includes(inRootfs(rootfsPath(n), HEALTH_SERVICE_FILE)) ? await healthOf(host, n, isRunning, record, options) : undefined;
    const system = options.detail && isRunning && host.uid === 0 ? await systemOf(host, n) : undefined;
    reports.push({
      name: n,
      state: isRunning ? 'running' : 'stopped',
      address: s.address,
      leader,
      users: leader === undefined ? undefined : await machineUserRange(host, n, leader).catch(() => undefined),
      manifest: manifestOverride ?? records.get(n)?.manifest,
      sync: s.sync,
      changes: s.summary?.changes ?? [],
      upgraded: records.get(n)?.upgraded,
      record: records.get(n),
      ...(health ? { health } : {}),
      ...(system ? { system } : {}),
      services: await reportServices(host, n, records.get(n), isRunning, notice),
    });
  }
  return { machines: reports, notices };
}

/**
 * A machine's health, as its own systemd has it. Unknown when it is not running (then, for a
 * machine whose failing check restarts it, whether its unit's start limit stopped it) or when
 * only root could ask.
 */
async function healthOf(host: Host, name: string, running: boolean, record: MachineRecord, options: InspectOptions): Promise<HealthReport> {
  if (!running) {
    if (!record.files.includes(healthDropInPath(name))) return { state: 'unknown', detail: 'the machine is not running' };
    const unit = await host.runner.run('systemctl', ['show', `systemd-nspawn@${name}.service`, '--property=Result', '--value'], { allowFailure: true });
    return unit.stdout.trim() === 'start-limit-hit'
      ? { state: 'unhealthy', detail: 'the machine is not running: its failing check restarted it until its restart limit was hit (apply starts it again)' }
      : { state: 'unknown', detail: 'the machine is not running' };
  }
  if (host.uid !== 0) return { state: 'unknown', detail: "only root can ask the machine's systemd" };
  return readHealth(host, name, { output: options.detail });
}

/** What a running machine's systemd says of itself: running, degraded (with its failed units), ... */
async function systemOf(host: Host, name: string): Promise<{ state: string; failedUnits: string[] } | undefined> {
  const r = await host.runner.run('systemctl', [`--machine=${name}`, 'is-system-running'], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  const state = escapeControl(r.stdout.trim().slice(0, 40));
  if (!state) return undefined;
  return { state, failedUnits: state === 'degraded' ? await listFailedUnits(host, name) : [] };
}
