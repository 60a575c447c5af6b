// Builds what a host looks like after a successful apply of a manifest: as a plain HostState for
// the planner, or written into a FakeHost for the commands.
import { autostartLinkPath, machineRecordPath, networkRecordPath } from '../../src/host/paths';
import { parseManifest } from '../../src/manifest/load';
import { Manifest } from '../../src/manifest/schema';
import { HostState, ObservedEntry } from '../../src/plan/observe';
import { MachineRecord, NetworkRecord, serializeRecord } from '../../src/plan/records';
import { DesiredEntry, DesiredMachine, DesiredNetwork, DesiredState, renderDesiredState } from '../../src/render/desired';
import { FakeHost } from './fake-host';
import { ipLinkJson } from './simulated-systemd';

/** Where the manifest lives in these tests (the command tests use cwd /srv/conf). */
export const MANIFEST_PATH = '/srv/conf/machines.yaml';
export const CREATED = '2024-05-06T07:08:09.000Z';

/** Loads manifest text under the fixed name machines.yaml and renders it. */
export function desiredFrom(text: string): { manifest: Manifest; desired: DesiredState } {
  const manifest = parseManifest('machines.yaml', text);
  return { manifest, desired: renderDesiredState(manifest) };
}

/** The record createMachine writes: `auto` becomes the bootstrapper that actually ran. */
export function machineRecordFor(m: DesiredMachine, manifestPath = MANIFEST_PATH): MachineRecord {
  const s = m.machine;
  return {
    version: 1,
    kind: 'machine',
    name: s.name,
    manifest: manifestPath,
    created: CREATED,
    bootstrap: {
      distribution: s.distribution,
      suite: s.suite,
      mirror: s.mirror,
      variant: s.variant,
      bootstrapper: s.bootstrapper === 'auto' ? 'mmdebstrap' : s.bootstrapper,
    },
    packages: s.packages,
    provision: s.provision,
    files: [...m.hostEntries, ...m.rootfsEntries].map((e) => e.hostPath).sort(),
  };
}

export function networkRecordFor(n: DesiredNetwork, manifestPath = MANIFEST_PATH): NetworkRecord {
  return { version: 1, kind: 'network', name: n.network.name, manifest: manifestPath, created: CREATED, files: n.entries.map((e) => e.hostPath).sort() };
}

function observed(e: DesiredEntry): ObservedEntry {
  return e.kind === 'symlink' ? { type: 'symlink', target: e.target } : { type: 'file', content: e.content, mode: e.mode };
}

/** The HostState of a booted host where `desired` was applied and every machine runs. */
export function convergedState(desired: DesiredState, manifestPath = MANIFEST_PATH): HostState {
  const state: HostState = {
    systemdBooted: true,
    networkdActive: desired.networks.length > 0 ? true : undefined,
    machines: {},
    networks: {},
    files: {},
    existingBindSources: [...new Set(desired.machines.flatMap((m) => m.machine.bind.map((b) => b.source)))],
    managedMachines: desired.machines.map((m) => m.machine.name).sort(),
    running: desired.machines.map((m) => m.machine.name).sort(),
  };
  for (const n of desired.networks) {
    const record = networkRecordFor(n, manifestPath);
    state.networks[n.network.name] = { record, recordText: serializeRecord(record) };
    for (const e of n.entries) state.files[e.hostPath] = observed(e);
  }
  for (const m of desired.machines) {
    const record = machineRecordFor(m, manifestPath);
    state.machines[m.machine.name] = {
      rootfsExists: true,
      rootfsUid: 0,
      stagingExists: false,
      record,
      recordText: serializeRecord(record),
      enabled: m.machine.autostart,
      running: true,
    };
    for (const e of [...m.hostEntries, ...m.rootfsEntries]) state.files[e.hostPath] = observed(e);
  }
  return state;
}

/** A fresh, booted host: nothing of nspawnctl's exists yet. */
export function freshState(overrides: Partial<HostState> = {}): HostState {
  return { systemdBooted: true, networkdActive: true, machines: {}, networks: {}, running: [], files: {}, existingBindSources: [], managedMachines: [], ...overrides };
}

/** Marks the fake host as booted with systemd and the tools apply needs installed (nsenter is not one of them). */
export function makeBootedHost(host: FakeHost, programs = ['machinectl', 'systemd-nspawn', 'networkctl', 'mmdebstrap']): FakeHost {
  host.fs.addDir('/run/systemd/system');
  // A nameserver machines without dns: can reach (TEST-NET-1), as a real host has one.
  host.fs.addFile('/etc/resolv.conf', 'nameserver 192.0.2.53\n');
  for (const p of programs) host.fs.addFile(`/usr/bin/${p}`, '', { mode: 0o755 });
  return host;
}

/**
 * Writes everything a converged host has into the fake: generated files, rootfs directories,
 * records, autostart links and bind sources; and, unless `queries` is false (a simulation answers
 * them), scripts the read-only queries observe makes (`running` machines, networkd active).
 */
export function convergeFakeHost(host: FakeHost, desired: DesiredState, options: { running?: string[]; manifestPath?: string; queries?: boolean } = {}): FakeHost {
  const manifestPath = options.manifestPath ?? MANIFEST_PATH;
  const running = options.running ?? desired.machines.map((m) => m.machine.name);
  const put = (e: DesiredEntry) => (e.kind === 'symlink' ? host.fs.addSymlink(e.hostPath, e.target) : host.fs.addFile(e.hostPath, e.content, { mode: e.mode }));
  for (const n of desired.networks) {
    n.entries.forEach(put);
    host.fs.addFile(networkRecordPath(n.network.name), serializeRecord(networkRecordFor(n, manifestPath)));
  }
  for (const m of desired.machines) {
    host.fs.addDir(m.rootfs);
    [...m.hostEntries, ...m.rootfsEntries].forEach(put);
    host.fs.addFile(machineRecordPath(m.machine.name), serializeRecord(machineRecordFor(m, manifestPath)));
    if (m.machine.autostart) host.fs.addSymlink(autostartLinkPath(m.machine.name), '/lib/systemd/system/systemd-nspawn@.service');
    for (const b of m.machine.bind) host.fs.addDir(b.source);
  }
  if (options.queries === false) return host;
  return answerObserveQueries(host, { running });
}

/** The read-only queries observe makes on a booted host, in the order it makes them. */
export const LIST_MACHINES = ['machinectl', 'list', '--no-legend', '--no-pager', '--full'];
export const NETWORKD_ACTIVE = ['systemctl', 'is-active', 'systemd-networkd.service'];
/** Asked only when the manifest has a network nspawnctl has no record of. */
export const LIST_INTERFACES = ['ip', '-json', 'link', 'show'];

/**
 * Scripts the answers to observe's queries: `running` machines are registered, networkd is
 * active, and the host has the network interfaces `interfaces` (lo and eth0 by default).
 */
export function answerObserveQueries(host: FakeHost, options: { running?: string[]; interfaces?: string[] } = {}): FakeHost {
  host.runner.on(LIST_MACHINES, { stdout: (options.running ?? []).map((n) => `${n} container systemd-nspawn debian 12 -\n`).join('') });
  host.runner.on(NETWORKD_ACTIVE, { stdout: 'active\n' });
  host.runner.on(LIST_INTERFACES, { stdout: ipLinkJson(options.interfaces ?? ['lo', 'eth0']) });
  return host;
}
