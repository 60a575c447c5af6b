// `host init`: what a fresh host needs before apply, as a pure plan over an observed state.
import { Manifest } from '../manifest/schema';
import { renderDesiredState } from '../render/desired';
import { renderHeader } from '../render/common';
import {
  describeShortfall,
  findShortfalls,
  HOST_LIMITS,
  LIMITS_PATH,
  machinesForMemory,
  MACHINE_MEMORY_MIB,
  renderLimitsFile,
  shortfallFix,
  sizedValue,
  SysctlValues,
} from './host-limits';
import { HostState } from './observe';
import { planChanges } from './plan';
import { describeStep, Step } from './steps';

export const HOST_RECORD_PATH = '/var/lib/nspawnctl/host.json';
export const SYSCTL_PATH = '/etc/sysctl.d/50-nspawnctl-forward.conf';
export const NETWORKD_CONF_PATH = '/etc/systemd/networkd.conf.d/50-nspawnctl.conf';
const VB_NETWORK_DIRS = ['/etc/systemd/network', '/run/systemd/network', '/usr/lib/systemd/network', '/lib/systemd/network'];

export interface HostInitObserved {
  /** systemd is PID 1 (/run/systemd/system exists): without it nothing nspawnctl does can work. */
  systemdBooted: boolean;
  /** Packages dpkg reports as installed, among those asked about. */
  installed: string[];
  networkdBinary: boolean;
  networkdEnabled: boolean;
  networkdActive: boolean;
  machinesTargetEnabled: boolean;
  ipForward: boolean;
  files: Record<string, string>;
  /** Paths of 80-container-vb.network found in networkd's search path. */
  vbNetworkFound: boolean;
  forwardPolicyDrop: boolean;
  firewalldActive: boolean;
  ubuntuKeyring: boolean;
  /** The network part of the regular observed state (files and records of the bridges, running machines). */
  networkState: HostState;
  record?: HostRecord;
  /** Current values of the kernel limits machines use up (src/plan/host-limits.ts); absent keys are unknown. */
  sysctls: SysctlValues;
  /** Keys of HOST_LIMITS that cannot be raised here: /proc/sys read-only (a container), or refused. */
  sysctlsUnwritable: Record<string, 'read-only' | 'denied'>;
  /** MemTotal of /proc/meminfo, in KiB. */
  memTotalKiB?: number;
}

export interface HostRecord {
  version: 1;
  kind: 'host';
  files: string[];
  enabledUnits: string[];
  installedPackages: string[];
  /** Bridges whose networkd files host init wrote. */
  bridges: string[];
  /** Kernel limits host init raised: the value before the first raise, and the one it set (for --undo). */
  sysctls?: Record<string, { before: number; set: number }>;
}

export type HostInitStep =
  | { kind: 'install-packages'; packages: string[]; reason: string }
  | { kind: 'write-file'; path: string; content: string; reason: string }
  | { kind: 'enable-unit'; unit: string; now: boolean; reason: string }
  | { kind: 'set-sysctl'; key: string; value: string; reason: string }
  /** Sets a sysctl now, unless it is already at least `value`: a limit is never lowered. */
  | { kind: 'raise-sysctl'; key: string; from: number; value: number; reason: string }
  | { kind: 'network'; step: Step; reason: string }
  | { kind: 'write-host-record'; record: HostRecord; reason: string };

export interface Finding {
  severity: 'error' | 'warning';
  what: string;
  fix: string;
  /** The step of this plan that fixes it (--check reports it; a run that did the step is past it). */
  fixedBy?: string;
}

export interface HostInitPlan {
  steps: HostInitStep[];
  findings: Finding[];
}

/** Packages the pipeline needs for this manifest (or for any manifest when there is none). */
export function requiredPackages(manifest: Manifest | undefined, observed: Pick<HostInitObserved, 'networkdBinary' | 'ubuntuKeyring'>): string[] {
  const machines = Object.values(manifest?.machines ?? {});
  // zstd: backup and restore compress with it (tar is in every Debian and Ubuntu).
  const pkgs = new Set(['systemd-container', 'dbus', 'zstd']);
  const tools = new Set(machines.map((m) => m.bootstrapper));
  if (tools.size === 0 || tools.has('auto') || tools.has('mmdebstrap')) pkgs.add('mmdebstrap');
  if (tools.has('debootstrap')) pkgs.add('debootstrap');
  if (Object.values(manifest?.networks ?? {}).some((n) => n.nat || n.isolated)) pkgs.add('nftables');
  // Debian 13 ships networkd in its own package; Debian 12 and Ubuntu have it in systemd.
  if (!observed.networkdBinary) pkgs.add('systemd-networkd');
  if (machines.some((m) => m.distribution === 'ubuntu') && !observed.ubuntuKeyring) pkgs.add('ubuntu-keyring');
  return [...pkgs].sort();
}

export function planHostInit(manifest: Manifest | undefined, o: HostInitObserved, options: { manifestPath: string; now: string }): HostInitPlan {
  const steps: HostInitStep[] = [];
  const findings: Finding[] = [];
  const record: HostRecord = { version: 1, kind: 'host', files: [], enabledUnits: [], installedPackages: [], bridges: [], ...o.record };
  const next: HostRecord = { ...record, files: [...record.files], enabledUnits: [...record.enabledUnits], installedPackages: [...record.installedPackages], bridges: [...record.bridges] };
  const header = renderHeader(manifest?.file ?? 'nspawnctl host init', 'this host');

  if (!o.systemdBooted) {
    // No step can fix this one: packages would install, but machinectl, networkd and
    // systemd-nspawn@.service all need systemd as PID 1.
    findings.push({
      severity: 'error',
      what: 'the host was not booted with systemd (no /run/systemd/system): machinectl, systemd-networkd and systemd-nspawn@.service need systemd as PID 1',
      fix: 'Run nspawnctl on a host (or VM, or container) whose PID 1 is systemd; Debian and Ubuntu boot with it by default. To try it here anyway: npm run sandbox -- up',
    });
  }

  const missing = requiredPackages(manifest, o).filter((p) => !o.installed.includes(p));
  if (missing.length > 0) {
    steps.push({ kind: 'install-packages', packages: missing, reason: 'needed by nspawnctl apply, backup and restore' });
    next.installedPackages = union(next.installedPackages, missing);
  }

  if (!o.networkdActive) {
    // networkd manages only links matched by a .network file; keeping it away from routes and
    // rules it did not make leaves the uplink to ifupdown or NetworkManager.
    const content = `${header}\n[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n`;
    if (o.files[NETWORKD_CONF_PATH] !== content) {
      steps.push({ kind: 'write-file', path: NETWORKD_CONF_PATH, content, reason: 'networkd must not touch routes of links it does not manage' });
      next.files = union(next.files, [NETWORKD_CONF_PATH]);
    }
  }
  if (!o.networkdEnabled || !o.networkdActive) {
    steps.push({ kind: 'enable-unit', unit: 'systemd-networkd.service', now: true, reason: 'it creates the bridges' });
    if (!o.networkdEnabled) next.enabledUnits = union(next.enabledUnits, ['systemd-networkd.service']);
  }

  if (manifest) {
    const desired = renderDesiredState({ ...manifest, machines: {} });
    const networkPlan = planChanges(desired, { ...o.networkState, networkdActive: true }, options);
    for (const c of networkPlan.conflicts) {
      // A network whose record a normal user could not read is unknown, not in conflict.
      const unseen = o.networkState.networks[c.owner.name]?.unreadable !== undefined;
      findings.push({ severity: 'error', what: c.message, fix: unseen ? 'Run nspawnctl host init --check as root.' : 'Move the file away or rename the network in the manifest.' });
    }
    for (const s of networkPlan.steps) {
      steps.push({ kind: 'network', step: s, reason: s.reason });
      if (s.kind === 'write-file' && s.change === 'create') {
        next.files = union(next.files, [s.entry.hostPath]);
        // Only a bridge whose .netdev host init created is its own to delete on --undo.
        if (s.entry.hostPath.endsWith('.netdev')) next.bridges = union(next.bridges, [s.owner.name]);
      }
      if (s.kind === 'write-record' && !o.networkState.networks[s.owner.name]?.record) next.files = union(next.files, [s.path]);
    }
  }

  const nat = Object.values(manifest?.networks ?? {}).filter((n) => n.nat);
  if (nat.length > 0) {
    const content = `${header}\nnet.ipv4.ip_forward = 1\n`;
    if (o.files[SYSCTL_PATH] !== content) {
      steps.push({ kind: 'write-file', path: SYSCTL_PATH, content, reason: `nat: true on ${nat.map((n) => n.name).join(', ')}` });
      next.files = union(next.files, [SYSCTL_PATH]);
    }
    if (!o.ipForward) steps.push({ kind: 'set-sysctl', key: 'net.ipv4.ip_forward', value: '1', reason: 'forward NATed traffic now, not only after a reboot' });
    if (o.forwardPolicyDrop) {
      findings.push({
        severity: 'error',
        what: 'the firewall FORWARD chain drops by default (Docker sets this), so NATed machines cannot reach beyond the host',
        fix: nat.map((n) => `iptables -I FORWARD -i ${n.name} -j ACCEPT && iptables -I FORWARD -o ${n.name} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`).join('\n'),
      });
    }
  }

  planHostLimits(manifest, o, header, steps, findings, record, next);

  if (!o.machinesTargetEnabled) {
    steps.push({ kind: 'enable-unit', unit: 'machines.target', now: false, reason: 'machines with autostart: true start at boot through it' });
    next.enabledUnits = union(next.enabledUnits, ['machines.target']);
  }

  if (!o.vbNetworkFound) {
    findings.push({
      severity: 'error',
      what: `80-container-vb.network is missing from ${VB_NETWORK_DIRS.join(', ')}: networkd may take machine veths (vb-*) off their bridge`,
      fix: 'Reinstall systemd (apt-get install --reinstall systemd), or create /etc/systemd/network/80-container-vb.network with [Match] Name=vb-* Driver=veth and [Network] KeepMaster=yes LinkLocalAddressing=no',
    });
  }
  if (o.firewalldActive) {
    for (const n of Object.values(manifest?.networks ?? {})) {
      findings.push({
        severity: 'warning',
        what: `firewalld is active: traffic on bridge ${n.name} is filtered by its zone`,
        fix: `firewall-cmd --permanent --zone=trusted --add-interface=${n.name} && firewall-cmd --reload`,
      });
    }
  }

  if (JSON.stringify(next) !== JSON.stringify(record) || (!o.record && steps.length > 0)) {
    steps.push({ kind: 'write-host-record', record: next, reason: 'remember what host init changed, for --undo' });
  }
  return { steps, findings };
}

/**
 * The kernel limits booted machines use up: LIMITS_PATH holds each at the value sized for this
 * host's memory (or for the manifest's machines and those running, when that is more), never
 * below the value the kernel has; a value below that is raised now. What cannot be raised here
 * (read-only /proc/sys) and leaves the manifest's machines without room is an error finding.
 */
function planHostLimits(manifest: Manifest | undefined, o: HostInitObserved, header: string, steps: HostInitStep[], findings: Finding[], record: HostRecord, next: HostRecord): void {
  const running = o.networkState.running ?? [];
  const inManifest = Object.keys(manifest?.machines ?? {});
  const count = new Set([...inManifest, ...running]).size;
  const fit = machinesForMemory(o.memTotalKiB);
  const room = count > fit ? `room for ${count} machines (${manifest ? `those of ${manifest.file} and ` : ''}those running)` : `room for ${fit} machines (${MACHINE_MEMORY_MIB} MiB each in ${formatGiB(o.memTotalKiB)} of memory)`;
  const lines: [string, number][] = [];
  const raised = new Map<string, HostInitStep>();
  const sysctls = { ...record.sysctls };
  for (const limit of HOST_LIMITS) {
    const current = o.sysctls[limit.key];
    if (current === undefined) continue;
    const target = sizedValue(limit, o.memTotalKiB, count);
    lines.push([limit.key, Math.max(target, current)]);
    if (current >= target) continue;
    const blocked = o.sysctlsUnwritable[limit.key];
    if (blocked) {
      // Without room for the manifest's machines this is the shortfall's error below; otherwise a warning.
      if (!manifest || current >= limit.host + limit.perMachine * count) {
        findings.push({
          severity: 'warning',
          what: `${limit.key} = ${current} cannot be raised to ${target} here (/proc/sys is ${blocked === 'read-only' ? 'read-only: a container' : 'not writable by root here'}): ${count > 0 ? `the ${count} machines have room, more may not boot` : 'few machines will boot'}`,
          fix: `On the host that runs this container: sysctl -w ${limit.key}=${target}, and keep it with the line "${limit.key} = ${target}" in a file in /etc/sysctl.d/`,
        });
      }
      continue;
    }
    const step: HostInitStep = { kind: 'raise-sysctl', key: limit.key, from: current, value: target, reason: `${room}: ${limit.perMachine} ${limit.unit} each, ${limit.host} for the host` };
    raised.set(limit.key, step);
    sysctls[limit.key] = { before: record.sysctls?.[limit.key]?.before ?? current, set: target };
  }
  if (lines.length > 0) {
    const content = renderLimitsFile(header, lines);
    if (o.files[LIMITS_PATH] !== content) {
      steps.push({ kind: 'write-file', path: LIMITS_PATH, content, reason: 'the kernel limits booted machines use up, for the next boot too' });
      next.files = union(next.files, [LIMITS_PATH]);
    }
  }
  steps.push(...raised.values());
  if (Object.keys(sysctls).length > 0) next.sysctls = Object.fromEntries(Object.entries(sysctls).sort(([a], [b]) => a.localeCompare(b)));

  if (!manifest || count === 0) return;
  const others = count - inManifest.length;
  const whose = `${count} would run (the ${inManifest.length} of ${manifest.file}${others > 0 ? ` and ${others} other running machine${others === 1 ? '' : 's'}` : ''})`;
  for (const s of findShortfalls(o.sysctls, count)) {
    const step = s.key === s.limit.key ? raised.get(s.key) : undefined;
    const value = step?.kind === 'raise-sysctl' ? step.value : sizedValue(s.limit, o.memTotalKiB, count);
    findings.push({
      severity: 'error',
      what: describeShortfall(s, whose),
      fix: shortfallFix(s, value, { manifest: manifest.file, readOnly: o.sysctlsUnwritable[s.key] !== undefined }),
      ...(step ? { fixedBy: describeHostInitStep(step) } : {}),
    });
  }
}

function formatGiB(kib: number | undefined): string {
  return kib === undefined ? 'an unknown amount' : `${(kib / 1024 / 1024).toFixed(1)} GiB`;
}

export function describeHostInitStep(step: HostInitStep): string {
  switch (step.kind) {
    case 'install-packages':
      return `install ${step.packages.join(' ')}`;
    case 'write-file':
      return `write ${step.path}`;
    case 'enable-unit':
      return `enable ${step.now ? 'and start ' : ''}${step.unit}`;
    case 'set-sysctl':
      return `set ${step.key}=${step.value}`;
    case 'raise-sysctl':
      return `raise ${step.key} from ${step.from} to ${step.value}`;
    case 'network':
      return describeStep(step.step);
    case 'write-host-record':
      return `record what host init changed in ${HOST_RECORD_PATH}`;
  }
}

function union(a: string[], b: string[]): string[] {
  return [...new Set([...a, ...b])].sort();
}

