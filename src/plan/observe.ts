// Reads what exists on the host into a plain HostState value, for the pure planner.
import { z } from 'zod';
import { NspawnctlError, PermissionDeniedError, UnsafePathError } from '../errors';
import { findProgram, Host, withRootfs } from '../host/host';
import { RootfsHandle } from '../host/rootfs-handle';
import { Machine } from '../manifest/schema';
import { FILTER_DIR, FILTER_TABLE, filterChain, parseFilterTag } from '../render/filter';
import {
  autostartLinkPath,
  MACHINE_RECORDS_DIR,
  MACHINES_DIR,
  machineRecordPath,
  networkRecordPath,
  rootfsPath,
  splitMachinePath,
  stagingPath,
} from '../host/paths';
import { DesiredState } from '../render/desired';
import { HostResolver } from '../render/nspawn';
import { MachineRecord, machineRecordSchema, NetworkRecord, networkRecordSchema } from './records';

export type ObservedEntry =
  | { type: 'file'; content: string; mode: number }
  | { type: 'symlink'; target: string }
  | { type: 'dir' | 'other' }
  /** Inside a machine: a path nspawnctl will not use (a symlink on the way, a file too large). */
  | { type: 'unsafe'; reason: string };

export interface ObservedMachine {
  rootfsExists: boolean;
  /** Owner of the rootfs' top directory: the UID base when user namespaces shifted it. */
  rootfsUid?: number;
  stagingExists: boolean;
  record?: MachineRecord;
  recordText?: string;
  /** Set when a record exists but cannot be read. */
  recordError?: string;
  enabled: boolean;
  running: boolean;
  /** For a read-only machine: mount points (bind and tmpfs targets) missing from its rootfs. */
  missingMountPoints?: string[];
  /** What was wrong inside its rootfs (it is planned as a conflict of this machine alone). */
  problems?: string[];
  /** Its paths that could not be read (permission denied); `problems` says so too. */
  unreadable?: string[];
}

export interface ObservedNetwork {
  record?: NetworkRecord;
  recordText?: string;
  recordError?: string;
  /** Its paths that could not be read (permission denied); `recordError` says so too. */
  unreadable?: string[];
}

/** The nameservers machines without `dns:` get from the host, and the file they come from. */
export interface HostDns {
  resolver: HostResolver;
  file: string;
  nameservers: string[];
}

export interface HostState {
  systemdBooted: boolean;
  /** Where machines without `dns:` get their nameservers; undefined when it was not looked at. */
  dns?: HostDns;
  /** undefined when it was not asked (no networks in the manifest, or systemd not booted). */
  networkdActive?: boolean;
  machines: Record<string, ObservedMachine>;
  networks: Record<string, ObservedNetwork>;
  /**
   * Every machine machinectl lists as running, nspawnctl's or not (they all use up the same kernel
   * limits: src/plan/host-limits.ts); undefined when systemd is not PID 1.
   */
  running?: string[];
  /** Every path the plan compares, keyed by host path; missing paths are absent. */
  files: Record<string, ObservedEntry>;
  /** Machine names of staging directories left by interrupted runs. */
  stagingDirs?: string[];
  /** Bind mount sources that exist on the host. */
  existingBindSources: string[];
  /** Owner (UID) of each existing bind source a machine mounts read-write. */
  bindSourceOwners?: Record<string, number>;
  /** Every machine that has an nspawnctl record, whether in this manifest or not. */
  managedMachines: string[];
  /**
   * Digest of each bridge's filter chain loaded in the kernel (from its tagged last rule).
   * undefined when not asked (no isolated network) or when nft could not be asked.
   */
  liveFilters?: Record<string, string>;
  /**
   * Network interfaces that exist on the host (`ip link`). Asked only when the manifest has a
   * network nspawnctl has no record of, whose bridge could take over an interface of that name.
   */
  interfaces?: string[];
  /**
   * What could not be read because the kernel refused it (nspawnctl run as a normal user:
   * /var/lib/machines and /var/lib/nspawnctl are root's alone). Absent when everything was read.
   * A machine or network behind one of them is planned as a conflict that says so, never as
   * missing: the plan does not claim what it could not see.
   */
  unreadable?: string[];
}

/** "could not read PATH: permission denied; run as root to see WHAT", for plans and notices. */
export function deniedMessage(path: string, what: string): string {
  return `could not read ${path}: permission denied; run as root to see ${what}`;
}

/** One notice for everything that could not be read, or undefined when everything was. */
export function describeUnreadable(unreadable: string[] | undefined, what = 'the machines and networks'): string | undefined {
  if (!unreadable || unreadable.length === 0) return undefined;
  // A path below another unreadable one adds nothing.
  const top = [...new Set(unreadable)].sort().filter((p, _i, all) => !all.some((q) => q !== p && p.startsWith(`${q}/`)));
  const shown = top.length > 4 ? `${top.slice(0, 4).join(', ')} and ${top.length - 4} more` : top.join(', ');
  return `could not read ${shown}: permission denied; run as root to see ${what}`;
}

/** Runs a read; when the kernel refuses it, notes the path in `denied` and returns `fallback`. */
async function unlessDenied<T>(denied: string[], fallback: T, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (!(err instanceof PermissionDeniedError)) throw err;
    denied.push(err.path);
    return fallback;
  }
}

export const HOST_RESOLV_CONF = '/etc/resolv.conf';
/** systemd-resolved's list of the upstream servers it uses (not its 127.0.0.53 stub). */
export const UPLINK_RESOLV_CONF = '/run/systemd/resolve/resolv.conf';

/** The nameserver addresses of a resolv.conf text. */
export function nameserversOf(text: string | undefined): string[] {
  return (text ?? '').split('\n').flatMap((line) => {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    return m ? [m[1]] : [];
  });
}

/** 127.0.0.0/8, ::1 and 0.0.0.0 mean the host itself: a machine's own network namespace has its own. */
export function isLoopbackNameserver(address: string): boolean {
  return /^127\./.test(address) || address === '::1' || address === '0.0.0.0';
}

/**
 * Which file machines without `dns:` copy their nameservers from: /etc/resolv.conf, unless it
 * names only loopback servers (systemd-resolved's 127.0.0.53 stub) and resolved keeps a list of
 * its upstream servers; then that list.
 */
export async function observeHostResolver(host: Host): Promise<HostDns> {
  const etc = nameserversOf(await host.fs.readText(HOST_RESOLV_CONF));
  if (etc.every(isLoopbackNameserver)) {
    const uplink = await host.fs.readText(UPLINK_RESOLV_CONF);
    if (uplink !== undefined) return { resolver: 'uplink', file: UPLINK_RESOLV_CONF, nameservers: nameserversOf(uplink) };
  }
  return { resolver: 'host', file: HOST_RESOLV_CONF, nameservers: etc };
}

/** True when systemd is PID 1 (the same test sd_booted() makes). */
export async function isSystemdBooted(host: Host): Promise<boolean> {
  return (await host.fs.stat('/run/systemd/system'))?.type === 'dir';
}

/** Names of running machines, from one machinectl call. */
export async function listRunningMachines(host: Host): Promise<string[]> {
  const r = await host.runner.run('machinectl', ['list', '--no-legend', '--no-pager', '--full'], { allowFailure: true });
  if (r.exitCode !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n !== undefined && n !== '' && !n.startsWith('No'));
}

export async function readEntry(host: Host, path: string): Promise<ObservedEntry | undefined> {
  const info = await host.fs.stat(path);
  if (!info) return undefined;
  if (info.type === 'symlink') return { type: 'symlink', target: (await host.fs.readLink(path)) ?? '' };
  if (info.type === 'file') return { type: 'file', content: (await host.fs.readText(path)) ?? '', mode: info.mode };
  return { type: info.type };
}

/** Reads a record and checks it against its schema; a broken record is reported, not used. */
async function readRecord<T>(host: Host, path: string, schema: z.ZodType<T>): Promise<{ record?: T; recordText?: string; recordError?: string }> {
  const text = await host.fs.readText(path);
  if (text === undefined) return {};
  try {
    return { record: schema.parse(JSON.parse(text)), recordText: text };
  } catch (err) {
    return { recordText: text, recordError: `${path} is not a valid nspawnctl record: ${(err as Error).message.split('\n')[0]}` };
  }
}

export function readMachineRecord(host: Host, name: string): Promise<Pick<ObservedMachine, 'record' | 'recordText' | 'recordError'>> {
  return readRecord(host, machineRecordPath(name), machineRecordSchema);
}

async function readNetworkRecord(host: Host, name: string): Promise<ObservedNetwork> {
  try {
    return await readRecord(host, networkRecordPath(name), networkRecordSchema);
  } catch (err) {
    if (!(err instanceof PermissionDeniedError)) throw err;
    return { recordError: deniedMessage(err.path, `network ${name}`), unreadable: [err.path] };
  }
}

/** Machine names of leftover staging directories (".nspawnctl-NAME.staging"). */
export async function listStagingDirs(host: Host): Promise<string[]> {
  return (await host.fs.listDir(MACHINES_DIR)).map((f) => /^\.nspawnctl-(.+)\.staging$/.exec(f)?.[1]).filter((n): n is string => n !== undefined);
}

/** Names of machines nspawnctl has records for. */
export async function listManagedMachines(host: Host): Promise<string[]> {
  return (await host.fs.listDir(MACHINE_RECORDS_DIR)).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length));
}

export async function observeMachine(host: Host, name: string, running: boolean): Promise<ObservedMachine> {
  const rootfs = await host.fs.stat(rootfsPath(name));
  return {
    rootfsExists: rootfs !== undefined,
    rootfsUid: rootfs?.uid,
    stagingExists: (await host.fs.stat(stagingPath(name))) !== undefined,
    ...(await readMachineRecord(host, name)),
    enabled: (await host.fs.stat(autostartLinkPath(name))) !== undefined,
    running,
  };
}

/**
 * Reads everything the planner needs for this desired state, and nothing else. What the kernel
 * refuses (a normal user) is listed in `unreadable`, and each machine or network it belongs to
 * gets a problem naming it: plan, list and status still run and say what they could not see.
 */
export async function observeHost(host: Host, desired: DesiredState): Promise<HostState> {
  const systemdBooted = await isSystemdBooted(host);
  const running = systemdBooted ? new Set(await listRunningMachines(host)) : new Set<string>();
  let networkdActive: boolean | undefined;
  if (systemdBooted && desired.networks.length > 0) {
    const r = await host.runner.run('systemctl', ['is-active', 'systemd-networkd.service'], { allowFailure: true });
    networkdActive = r.stdout.trim() === 'active';
  }

  const denied: string[] = [];
  const state: HostState = {
    systemdBooted,
    networkdActive,
    machines: {},
    networks: {},
    ...(systemdBooted ? { running: [...running].sort() } : {}),
    files: {},
    existingBindSources: [],
    managedMachines: await unlessDenied(denied, [], () => listManagedMachines(host)),
    stagingDirs: await unlessDenied(denied, [], () => listStagingDirs(host)),
  };
  const deniedSources = new Set<string>();
  const writableSources = new Set(desired.machines.flatMap((m) => m.machine.bind.filter((b) => !b.readOnly).map((b) => b.source)));
  for (const source of new Set(desired.machines.flatMap((m) => m.machine.bind.map((b) => b.source)))) {
    try {
      const info = await host.fs.stat(source);
      if (!info) continue;
      state.existingBindSources.push(source);
      // A symlinked source is the admin's to own: what it leads to is not handed to anyone.
      if (writableSources.has(source) && info.type === 'dir') state.bindSourceOwners = { ...state.bindSourceOwners, [source]: info.uid };
    } catch (err) {
      if (!(err instanceof PermissionDeniedError)) throw err;
      denied.push(err.path);
      deniedSources.add(source);
    }
  }
  const paths = new Set<string>();
  // Who each compared host path belongs to, to say whose plan a refused read leaves unknown.
  const owners = new Map<string, { type: 'machine' | 'network'; name: string }[]>();
  const own = (path: string, owner: { type: 'machine' | 'network'; name: string }) => {
    paths.add(path);
    owners.set(path, [...(owners.get(path) ?? []), owner]);
  };
  for (const n of desired.networks) {
    const observed = await readNetworkRecord(host, n.network.name);
    state.networks[n.network.name] = observed;
    denied.push(...(observed.unreadable ?? []));
    n.entries.forEach((e) => own(e.hostPath, { type: 'network', name: n.network.name }));
    observed.record?.files.forEach((p) => own(p, { type: 'network', name: n.network.name }));
  }
  // Like every other query, only on a systemd host: without networkd no bridge takes anything over.
  if (systemdBooted && desired.networks.some((n) => !state.networks[n.network.name].record)) state.interfaces = await listInterfaces(host);
  for (const m of desired.machines) {
    const name = m.machine.name;
    let observed: ObservedMachine;
    try {
      observed = await observeMachine(host, name, running.has(name));
    } catch (err) {
      if (!(err instanceof PermissionDeniedError)) throw err;
      observed = { rootfsExists: false, stagingExists: false, enabled: false, running: running.has(name), problems: [deniedMessage(err.path, `machine ${name}`)], unreadable: [err.path] };
      denied.push(err.path);
    }
    for (const source of m.machine.bind.map((b) => b.source).filter((s) => deniedSources.has(s))) {
      observed.problems = [...(observed.problems ?? []), deniedMessage(source, `whether bind mount source ${source} exists`)];
      observed.unreadable = [...(observed.unreadable ?? []), source];
    }
    state.machines[name] = observed;
    // Without its record, its files cannot be told from someone else's: they are not compared.
    if (observed.unreadable) continue;
    m.hostEntries.forEach((e) => own(e.hostPath, { type: 'machine', name }));
    const inside = observed.rootfsExists ? [...m.rootfsEntries.map((e) => e.hostPath), ...(observed.record?.files ?? []).filter((p) => splitMachinePath(p)?.dir === m.rootfs)] : [];
    for (const p of observed.record?.files ?? []) if (!splitMachinePath(p)) own(p, { type: 'machine', name });
    if (inside.length > 0 || (m.machine.security.readOnly && observed.rootfsExists)) {
      // One machine's tree is read through its own handle; whatever is wrong in it is this
      // machine's conflict and never stops the others from being planned.
      try {
        await withRootfs(host, m.rootfs, async (tree) => {
          for (const p of [...new Set(inside)].sort()) {
            const entry = await readRootfsEntry(tree, splitMachinePath(p)!.path);
            if (entry) state.files[p] = entry;
          }
          if (m.machine.security.readOnly) observed.missingMountPoints = await missingMountPoints(tree, m.machine, observed);
        });
      } catch (err) {
        // Whatever went wrong inside one machine's tree is that machine's problem alone.
        const denial = err instanceof PermissionDeniedError;
        const message = err instanceof NspawnctlError ? (denial ? deniedMessage(err.path, `machine ${name}`) : err.message) : `${m.rootfs} could not be read: ${(err as Error).message}`;
        observed.problems = [...(observed.problems ?? []), message];
        if (denial) {
          observed.unreadable = [...(observed.unreadable ?? []), err.path];
          denied.push(err.path);
        }
      }
    }
  }
  for (const p of [...paths].sort()) {
    let entry: ObservedEntry | undefined;
    try {
      entry = await readEntry(host, p);
    } catch (err) {
      if (!(err instanceof PermissionDeniedError)) throw err;
      denied.push(err.path);
      for (const owner of owners.get(p) ?? []) {
        const message = deniedMessage(err.path, `${owner.type} ${owner.name}`);
        if (owner.type === 'machine') {
          const o = state.machines[owner.name];
          o.problems = [...(o.problems ?? []), message];
          o.unreadable = [...(o.unreadable ?? []), err.path];
        } else {
          const o = state.networks[owner.name];
          o.recordError ??= message;
          o.unreadable = [...(o.unreadable ?? []), err.path];
        }
      }
    }
    if (entry) state.files[p] = entry;
  }
  const filtered = desired.networks.some((n) => n.network.isolated) || [...paths].some((p) => p.startsWith(`${FILTER_DIR}/`));
  if (systemdBooted && filtered) {
    // Listing nftables needs CAP_NET_ADMIN: a normal user's plan leaves the loaded filters unknown.
    if (host.uid === 0) state.liveFilters = await readLiveFilters(host);
    else denied.push(`the loaded packet filters (nft list table bridge ${FILTER_TABLE})`);
  }
  if (denied.length > 0) state.unreadable = [...new Set(denied)].sort();
  return state;
}

/** What is at a path inside a machine, never following anything; `unsafe` for what nspawnctl will not use. */
export async function readRootfsEntry(tree: RootfsHandle, path: string): Promise<ObservedEntry | undefined> {
  try {
    const e = await tree.inspect(path);
    if (e?.type === 'file') return { type: 'file', content: e.content, mode: e.mode };
    return e;
  } catch (err) {
    if (err instanceof UnsafePathError) return { type: 'unsafe', reason: err.message };
    throw err;
  }
}

async function missingMountPoints(tree: RootfsHandle, machine: Machine, observed: ObservedMachine): Promise<string[]> {
  const missing: string[] = [];
  for (const p of readOnlyMountPoints(machine)) {
    try {
      if (!(await tree.stat(p))) missing.push(p);
    } catch (err) {
      if (!(err instanceof UnsafePathError)) throw err;
      observed.problems = [...(observed.problems ?? []), err.message];
    }
  }
  return missing;
}

/** Names of the host's network interfaces, from one `ip` call. */
export async function listInterfaces(host: Host): Promise<string[]> {
  const r = await host.runner.run('ip', ['-json', 'link', 'show'], { allowFailure: true });
  if (r.exitCode !== 0) return [];
  try {
    return (JSON.parse(r.stdout) as { ifname?: string }[]).map((l) => l.ifname).filter((n): n is string => typeof n === 'string');
  } catch {
    return [];
  }
}

/** Paths nspawn mounts over inside a machine; on a read-only root they must already exist. */
export function readOnlyMountPoints(machine: Machine): string[] {
  return [...new Set([...machine.bind.map((b) => b.target), ...machine.security.tmpfs])].sort();
}

/** One nft call lists every chain of nspawnctl's table; a missing table is an empty result. */
export async function readLiveFilters(host: Host): Promise<Record<string, string> | undefined> {
  if (!(await findProgram(host, 'nft'))) return undefined;
  const r = await host.runner.run('nft', ['-j', 'list', 'table', 'bridge', FILTER_TABLE], { allowFailure: true });
  if (r.exitCode !== 0) return {};
  const live: Record<string, string> = {};
  try {
    const items = (JSON.parse(r.stdout) as { nftables?: { rule?: { chain?: string; comment?: string } }[] }).nftables ?? [];
    for (const item of items) {
      const tag = parseFilterTag(item.rule?.comment ?? '');
      if (tag && item.rule?.chain === filterChain(tag.bridge)) live[tag.bridge] = tag.digest;
    }
  } catch {
    return {};
  }
  return live;
}
