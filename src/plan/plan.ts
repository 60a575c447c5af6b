// The planner: a pure function from (desired state, observed host) to the steps apply will run.
// Nothing is done twice: an unchanged manifest on a converged host plans no step.
import { appArmorDropInPath, credentialsDropInPath, healthDropInPath, inRootfs, isWithin, machineRecordPath, netdevPath, NETWORKD_DIR, networkRecordPath, splitMachinePath, stagingPath, unitDropInDir } from '../host/paths';
import { liveUnitOf } from '../render/auto-upgrade';
import { serviceOfDropIn } from '../manifest/services';
import { shiftFor, shiftsUids } from '../manifest/security';
import { FILTER_TABLE, filterChain, filterDigestOf, filterFilePath } from '../render/filter';
import { HEALTH_ROOTFS_PATHS } from '../render/rootfs-paths';
import { DesiredEntry, DesiredMachine, DesiredNetwork, DesiredState } from '../render/desired';
import { HostState, isLoopbackNameserver, ObservedEntry, ObservedMachine, readOnlyMountPoints } from './observe';
import { MachineRecord, NetworkRecord, serializeRecord } from './records';
import { Action, Conflict, Notice, Owner, Plan, Step, Summary } from './steps';

export interface PlanOptions {
  /** Absolute path of the manifest, stored in records. */
  manifestPath: string;
  /** Timestamp for new records (passed in to keep planning pure). */
  now: string;
}

export function planChanges(desired: DesiredState, state: HostState, options: PlanOptions): Plan {
  const steps: Step[] = [];
  const conflicts: Conflict[] = [];
  const notices: Notice[] = [];
  const summary: Summary[] = [];

  const reconfigure: string[] = [];
  let networkFilesChanged = false;
  for (const n of desired.networks) {
    const r = planNetwork(n, state, options);
    steps.push(...r.steps);
    conflicts.push(...r.conflicts);
    summary.push(r.summary);
    if (r.filesChanged) {
      networkFilesChanged = true;
      if (state.networks[n.network.name]?.record) reconfigure.push(n.network.name);
    }
  }
  const needsNetworkd = desired.networks.length > 0 && state.networkdActive === false;
  const bridges = desired.networks.map((n) => n.network.name);
  if (needsNetworkd) steps.push({ kind: 'enable-networkd', bridges, reason: 'systemd-networkd creates the bridges and is not running' });
  if (networkFilesChanged) {
    steps.push({ kind: 'reload-networkd', reconfigure, bridges, reason: 'bridge configuration changed' });
  }

  // A read-write source can belong to one machine's UID range only: of the machines that mount it
  // read-write, the first by name gets it (the order of desired.machines).
  const firstWriter = new Map<string, string>();
  for (const m of desired.machines) {
    if (!shiftsUids(m.machine.security)) continue;
    for (const b of m.machine.bind) if (!b.readOnly && !firstWriter.has(b.source)) firstWriter.set(b.source, m.machine.name);
  }

  for (const m of desired.machines) {
    const r = planMachine(m, state.machines[m.machine.name], state, options);
    // systemd-nspawn refuses to start when a bind source is missing. Only an entry with
    // `create: true` is made, as an empty directory; any other missing one stops plan before this
    // (assertBindSourcesExist), so that a typo is never mounted as a new, empty directory.
    const missingSources = m.machine.bind.filter((b) => b.create).map((b) => b.source).filter((src) => !state.existingBindSources.includes(src));
    if (r.conflicts.length === 0) {
      for (const path of [...new Set(missingSources)]) {
        steps.push({ kind: 'create-bind-source', machine: m.machine.name, path, reason: 'bind mount source does not exist' });
        r.summary.changes.unshift(`create directory ${path}`);
      }
    }
    steps.push(...r.steps);
    if (r.conflicts.length === 0) {
      const handed = planBindOwnership(m, state, firstWriter);
      steps.push(...handed.steps);
      r.summary.changes.push(...handed.paths.map((p) => `give ${p} to the machine's root`));
      if (handed.steps.length > 0 && r.summary.action === 'unchanged') r.summary.action = 'update';
      notices.push(...handed.notices);
    }
    conflicts.push(...r.conflicts);
    notices.push(...r.notices);
    const dns = unreachableDnsNotice(m, state);
    if (dns) notices.push(dns);
    summary.push(r.summary);
  }

  // A staging directory is never resumed; one whose machine is not being created now is removed.
  const creating = new Set(steps.flatMap((s) => (s.kind === 'create-machine' ? [s.machine] : [])));
  const stale = (state.stagingDirs ?? []).filter((n) => !creating.has(n));
  steps.unshift(...stale.map((n): Step => ({ kind: 'remove-staging', machine: n, path: stagingPath(n), reason: 'left by an interrupted run' })));

  const inManifest = new Set(desired.machines.map((m) => m.machine.name));
  const unmanaged = state.managedMachines.filter((n) => !inManifest.has(n));
  return { manifest: options.manifestPath, steps, conflicts, notices, summary, unmanaged };
}

function planNetwork(n: DesiredNetwork, state: HostState, options: PlanOptions) {
  const owner: Owner = { type: 'network', name: n.network.name };
  const observed = state.networks[n.network.name] ?? {};
  const steps: Step[] = [];
  const conflicts: Conflict[] = [];
  if (observed.recordError) {
    conflicts.push({ owner, path: networkRecordPath(n.network.name), message: observed.recordError });
  }
  if (!observed.record && state.interfaces?.includes(n.network.name)) {
    conflicts.push({
      owner,
      path: netdevPath(n.network.name),
      message: `a network interface named ${n.network.name} already exists on this host and nspawnctl did not create it; a bridge of that name would take it over (give the network another name)`,
    });
  }
  const changes: string[] = [];
  for (const entry of n.entries) {
    const current = state.files[entry.hostPath];
    const diff = compareEntry(entry, current);
    if (diff === 'same') continue;
    if (diff === 'update' && !observed.record) {
      conflicts.push({ owner, path: entry.hostPath, message: `${entry.hostPath} exists and was not created by nspawnctl` });
      continue;
    }
    if (diff === 'blocked') {
      conflicts.push({ owner, path: entry.hostPath, message: blockedMessage(entry.hostPath, current) });
      continue;
    }
    steps.push({ kind: 'write-file', owner, entry, change: diff, reason: diff === 'create' ? 'missing' : 'content differs from the manifest' });
    changes.push(`${diff} ${entry.hostPath}`);
  }
  const wanted = new Set(n.entries.map((e) => e.hostPath));
  for (const path of observed.record?.files ?? []) {
    if (!wanted.has(path) && state.files[path]) {
      steps.push({ kind: 'remove-file', owner, path, reason: 'no longer generated for this network' });
      changes.push(`remove ${path}`);
    }
  }
  if (conflicts.length > 0) {
    // Nothing is written for a network with a conflict: not even its other files.
    return { steps: [], conflicts, filesChanged: false, summary: { owner, action: 'conflict', changes: conflicts.map((c) => c.message) } as Summary };
  }
  const record: NetworkRecord = {
    version: 1,
    kind: 'network',
    name: n.network.name,
    manifest: options.manifestPath,
    created: observed.record?.created ?? options.now,
    files: [...wanted].sort(),
  };
  const filesChanged = steps.some((s) => (s.kind === 'write-file' && isWithin(s.entry.hostPath, NETWORKD_DIR)) || (s.kind === 'remove-file' && isWithin(s.path, NETWORKD_DIR)));
  steps.push(...planFilter(n, state, steps, owner, changes));
  if (conflicts.length === 0 && serializeRecord(record) !== observed.recordText) {
    steps.unshift({ kind: 'write-record', owner, path: networkRecordPath(n.network.name), record, reason: observed.record ? 'record out of date' : 'new network' });
  }
  const action: Action = conflicts.length ? 'conflict' : !observed.record ? 'create' : changes.length > 0 ? 'update' : 'unchanged';
  return { steps, conflicts, filesChanged, summary: { owner, action, changes } as Summary };
}

/**
 * The kernel's copy of an isolated network's filter must match its file: it is loaded when the
 * file changes, and also when the chain in the kernel is missing or stale (a flushed ruleset).
 */
function planFilter(n: DesiredNetwork, state: HostState, fileSteps: Step[], owner: Owner, changes: string[]): Step[] {
  const path = filterFilePath(n.network.name);
  const entry = n.entries.find((e) => e.hostPath === path);
  const live = state.liveFilters?.[n.network.name];
  if (entry && entry.kind === 'file') {
    const written = fileSteps.some((s) => s.kind === 'write-file' && s.entry.hostPath === path);
    if (!written && live === filterDigestOf(entry.content)) return [];
    changes.push('load packet filter');
    const reason = written ? 'filter rules changed' : live === undefined ? 'the filter is not loaded in the kernel' : `the loaded filter differs from ${path}`;
    return [{ kind: 'load-filter', owner, path, reason }];
  }
  if (live === undefined) return [];
  changes.push('remove packet filter');
  return [{ kind: 'unload-filter', owner, table: FILTER_TABLE, chain: filterChain(n.network.name), reason: 'network is no longer isolated' }];
}

function planMachine(m: DesiredMachine, observed: ObservedMachine | undefined, state: HostState, options: PlanOptions) {
  const name = m.machine.name;
  const owner: Owner = { type: 'machine', name };
  const steps: Step[] = [];
  const conflicts: Conflict[] = [];
  const notices: Notice[] = [];
  const o: ObservedMachine = observed ?? { rootfsExists: false, stagingExists: false, enabled: false, running: false };
  const allEntries = [...m.hostEntries, ...m.rootfsEntries];
  const files = allEntries.map((e) => e.hostPath).sort();

  if (o.recordError) conflicts.push({ owner, path: machineRecordPath(name), message: o.recordError });
  for (const problem of o.problems ?? []) conflicts.push({ owner, path: m.rootfs, message: problem });
  if (!o.record && o.rootfsExists) {
    conflicts.push({ owner, path: m.rootfs, message: `${m.rootfs} exists and was not created by nspawnctl` });
  }
  if (!o.record) {
    for (const e of m.hostEntries) {
      if (state.files[e.hostPath]) conflicts.push({ owner, path: e.hostPath, message: `${e.hostPath} exists and was not created by nspawnctl` });
    }
  }
  if (conflicts.length > 0) {
    return { steps, conflicts, notices, summary: { owner, action: 'conflict', changes: conflicts.map((c) => c.message) } as Summary };
  }

  // A new machine (or one whose rootfs vanished): bootstrap, configure, start.
  if (!o.record || !o.rootfsExists) {
    const record = newMachineRecord(m, options.manifestPath, o.record?.created ?? options.now);
    const reason = o.record ? `its root filesystem ${m.rootfs} is missing` : 'not on this host yet';
    steps.push({ kind: 'create-machine', machine: name, spec: m.machine, entries: m.rootfsEntries, record, reason });
    for (const e of m.hostEntries) {
      const diff = compareEntry(e, state.files[e.hostPath]);
      if (diff !== 'same') steps.push({ kind: 'write-file', owner, entry: e, change: diff === 'create' ? 'create' : 'update', reason: 'new machine' });
    }
    if (m.machine.security.readOnly) {
      steps.push({ kind: 'prepare-read-only', machine: name, shift: shiftFor(m.machine.security.privateUsers, undefined), mountPoints: readOnlyMountPoints(m.machine), stopFirst: false, reason: 'nspawn can neither shift nor add mount points on a read-only root' });
    }
    if (m.hostEntries.some((e) => isWithin(e.hostPath, unitDropInDir(name)))) {
      steps.push({ kind: 'reload-units', machine: name, reason: 'new drop-in for systemd-nspawn@' + name + '.service' });
    }
    if (m.machine.autostart && !o.enabled) steps.push({ kind: 'enable-machine', machine: name, reason: 'autostart: true' });
    if (o.running) steps.push({ kind: 'restart-machine', machine: name, reason: 'root filesystem was recreated' });
    else steps.push({ kind: 'start-machine', machine: name, reason: 'new machine' });
    if (m.machine.services.length > 0) {
      steps.push({ kind: 'restart-services', machine: name, units: m.machine.services.map((s) => s.name), released: [], afterBoot: true, reason: 'new machine: its services must exist and run with their hardening' });
    }
    if (m.machine.health) steps.push({ kind: 'wait-healthy', machine: name, reason: 'apply returns once the check passes' });
    return { steps, conflicts, notices, summary: { owner, action: 'create', changes: steps.map(summarize) } as Summary };
  }

  const record = o.record;
  // What only a fresh root filesystem brings. A read-only root takes no package while it is in
  // use, so its added packages come with a rebuild too (the old root is kept for rollback).
  const why = rebuildReasons(m, record);
  if (m.machine.security.readOnly) {
    const added = m.machine.packages.filter((p) => !record.packages.includes(p));
    if (added.length > 0) why.push(`packages added to a read-only root: ${added.join(' ')}`);
  }
  if (why.length > 0) return planRebuild(m, o, record, why, state, options);
  const changes: string[] = [];
  let needsRestart = false;
  let needsReload = false;
  // The health check's units inside a running machine changed: its own systemd reloads them.
  let otherDropIns = false;
  let healthWritten = false;
  let healthRemoved = false;
  const healthPaths = new Set(HEALTH_ROOTFS_PATHS.map((p) => inRootfs(m.rootfs, p)));
  // Units of the machine's own systemd whose files change (autoUpgrade's timer): they take effect
  // live, with a daemon-reload inside and the unit restarted, or stopped once its files are gone.
  const restartUnits = new Set<string>();
  const stopUnits = new Set<string>();
  const liveUnitAt = (hostPath: string) => {
    const inside = isWithin(hostPath, m.rootfs) ? splitMachinePath(hostPath) : undefined;
    return inside ? liveUnitOf(inside.path) : undefined;
  };
  // Services whose hardening drop-in is written or removed: restarted inside the machine, not the machine.
  const hardened = new Set<string>();
  const released = new Set<string>();
  for (const e of allEntries) {
    const diff = compareEntry(e, state.files[e.hostPath]);
    if (diff === 'same') continue;
    if (healthPaths.has(e.hostPath) && diff !== 'blocked') healthWritten = true;
    if (diff === 'blocked') {
      conflicts.push({ owner, path: e.hostPath, message: blockedMessage(e.hostPath, state.files[e.hostPath]) });
      continue;
    }
    steps.push({
      kind: 'write-file',
      owner,
      entry: e,
      change: diff,
      reason: diff === 'create' ? 'missing' : record.files.includes(e.hostPath) ? 'differs from the manifest (changed by hand, or the manifest changed)' : 'content differs from the manifest',
    });
    changes.push(`${diff} ${e.hostPath}`);
    const service = e.inRootfs ? serviceOfDropIn(e.path) : undefined;
    if (service) hardened.add(service);
    if (e.restart) needsRestart = true;
    if (isWithin(e.hostPath, unitDropInDir(name))) {
      needsReload = true;
      if (e.hostPath !== healthDropInPath(name)) otherDropIns = true;
    }
    const unit = liveUnitAt(e.hostPath);
    if (unit) restartUnits.add(unit);
  }
  const wanted = new Set(files);
  for (const path of record.files) {
    const current = state.files[path];
    if (!wanted.has(path) && current?.type === 'unsafe') {
      conflicts.push({ owner, path, message: current.reason });
    } else if (!wanted.has(path) && current) {
      steps.push({ kind: 'remove-file', owner, path, reason: 'no longer in the manifest' });
      changes.push(`remove ${path}`);
      const service = isWithin(path, m.rootfs) ? serviceOfDropIn(splitMachinePath(path)?.path ?? '') : undefined;
      if (service) {
        released.add(service);
      } else if (isWithin(path, unitDropInDir(name))) {
        needsReload = true;
        if (path !== healthDropInPath(name)) otherDropIns = true;
        // Limits go back live on reload; an AppArmor profile and credentials only change with a
        // new systemd-nspawn process.
        if (path === appArmorDropInPath(name) || path === credentialsDropInPath(name)) needsRestart = true;
      } else if (healthPaths.has(path)) {
        // The check goes: the machine's systemd stops it and forgets its units, no restart.
        healthRemoved = true;
      } else if (liveUnitAt(path)) {
        stopUnits.add(liveUnitAt(path)!);
      } else if (path.endsWith('.nspawn') || (isWithin(path, m.rootfs) && path.includes('/etc/systemd/'))) {
        // Files that take effect at start: the .nspawn file and systemd/networkd config inside.
        needsRestart = true;
      }
    }
  }

  const installed = new Set(record.packages);
  const missing = m.machine.packages.filter((p) => !installed.has(p));
  if (missing.length > 0) {
    // A volatile root cannot take packages while the machine runs: it is stopped, they go into
    // its rootfs, and it starts again. (A read-only root's added packages are a rebuild, above.)
    const stopFirst = o.running && m.machine.security.volatile !== 'no';
    steps.push({ kind: 'install-packages', machine: name, packages: missing, aptProxy: m.machine.aptProxy, ...(stopFirst ? { stopFirst } : {}), reason: 'added to the manifest' });
    changes.push(`install ${missing.join(' ')}`);
    if (stopFirst) needsRestart = true;
  }
  if (m.machine.autostart && !o.enabled) {
    steps.push({ kind: 'enable-machine', machine: name, reason: 'autostart: true' });
    changes.push('enable at boot');
  } else if (!m.machine.autostart && o.enabled) {
    steps.push({ kind: 'disable-machine', machine: name, reason: 'autostart: false' });
    changes.push('disable at boot');
  }

  const desiredRecord: MachineRecord = {
    ...record,
    manifest: options.manifestPath,
    packages: [...new Set([...record.packages, ...m.machine.packages])].sort(),
    files,
  };
  if (serializeRecord(desiredRecord) !== o.recordText) {
    steps.push({ kind: 'write-record', owner, path: machineRecordPath(name), record: desiredRecord, reason: 'record out of date' });
  }

  let action: Action = changes.length > 0 ? 'update' : 'unchanged';
  if (m.machine.security.readOnly) {
    const shift = shiftFor(m.machine.security.privateUsers, o.rootfsUid);
    const mountPoints = o.missingMountPoints ?? [];
    if (shift !== undefined || mountPoints.length > 0) {
      const stopFirst = o.running && shift !== undefined;
      steps.push({ kind: 'prepare-read-only', machine: name, shift, mountPoints, stopFirst, reason: 'nspawn can neither shift nor add mount points on a read-only root' });
      changes.push('prepare read-only root');
      if (o.running) needsRestart = true;
    }
  }
  for (const unit of restartUnits) stopUnits.delete(unit);
  if (o.running && !needsRestart && (restartUnits.size > 0 || stopUnits.size > 0)) {
    const restart = [...restartUnits].sort();
    const stop = [...stopUnits].sort();
    steps.push({ kind: 'reload-machine-units', machine: name, restart, stop, reason: 'units of the machine\'s own systemd changed; they take effect without a restart' });
    changes.push(`reload units inside${restart.length ? `, restart ${restart.join(' ')}` : ''}${stop.length ? `, stop ${stop.join(' ')}` : ''}`);
  }
  if (needsReload) {
    const live = otherDropIns ? 'limits changed; systemd applies them to the running machine' : 'the start limit of its unit changed (health restartLimit, restartWindow)';
    steps.push({ kind: 'reload-units', machine: name, reason: o.running && !needsRestart ? live : 'drop-ins of its unit changed' });
  }
  const health = m.machine.health;
  // After the machine and its services are (re)started: the check may need them.
  let waitForHealth = false;
  if (!o.running) {
    steps.push({ kind: 'start-machine', machine: name, reason: 'not running' });
    changes.push('start');
    action = changes.length > 1 ? 'update' : 'start';
    waitForHealth = Boolean(health);
  } else if (needsRestart) {
    steps.push({ kind: 'restart-machine', machine: name, reason: 'settings that only apply at start changed' });
    changes.push('restart');
    action = 'restart';
    waitForHealth = Boolean(health);
  } else if (healthWritten && health) {
    steps.push({ kind: 'reload-health', machine: name, action: 'start', reason: 'the health check changed in a running machine' });
    waitForHealth = true;
  } else if (healthRemoved) {
    steps.push({ kind: 'reload-health', machine: name, action: 'stop', reason: 'the health check was removed from the manifest' });
  }
  if (hardened.size > 0 || released.size > 0) {
    // A machine (re)started by this plan boots its services with the new drop-ins already.
    const afterBoot = !o.running || needsRestart;
    const units = [...hardened].sort();
    const gone = [...released].sort();
    if (units.length > 0 || (gone.length > 0 && !afterBoot)) {
      steps.push({ kind: 'restart-services', machine: name, units, released: gone, afterBoot, reason: afterBoot ? 'their hardening changed; the machine starts with it' : 'their hardening changed' });
      changes.push(afterBoot ? `check services ${units.join(' ')}` : `restart services ${[...units, ...gone].join(' ')}`);
    }
  }
  if (waitForHealth) steps.push({ kind: 'wait-healthy', machine: name, reason: 'apply returns once the check passes' });
  if (conflicts.length > 0) {
    // Nothing is done to a machine with a conflict; the other machines are planned as usual.
    // One symlink on the way to several files is one conflict.
    const unique = conflicts.filter((c, i) => conflicts.findIndex((d) => d.message === c.message) === i);
    return { steps: [], conflicts: unique, notices, summary: { owner, action: 'conflict', changes: unique.map((c) => c.message) } as Summary };
  }
  return { steps, conflicts, notices, summary: { owner, action, changes } as Summary };
}

/** Why the machine needs a fresh root filesystem: what apply cannot change in the one it has. */
function rebuildReasons(m: DesiredMachine, record: MachineRecord): string[] {
  const why: string[] = [];
  for (const key of ['distribution', 'suite', 'variant'] as const) {
    if (record.bootstrap[key] !== m.machine[key]) why.push(`${key} ${record.bootstrap[key]} -> ${m.machine[key]}`);
  }
  if (JSON.stringify(record.provision) !== JSON.stringify(m.machine.provision)) why.push('provision commands changed');
  const dropped = record.packages.filter((p) => !m.machine.packages.includes(p));
  if (dropped.length > 0) why.push(`packages removed: ${dropped.join(' ')}`);
  return why;
}

/**
 * A machine rebuilt by apply: its host files first (they take effect at the rebuild's start), then
 * the rebuild, which writes the files inside the new root, installs the packages, records it and
 * starts the machine (one stop, one start) with the old root kept for rollback.
 */
function planRebuild(m: DesiredMachine, o: ObservedMachine, record: MachineRecord, why: string[], state: HostState, options: PlanOptions) {
  const name = m.machine.name;
  const owner: Owner = { type: 'machine', name };
  const steps: Step[] = [];
  const conflicts: Conflict[] = [];
  const changes: string[] = [];
  let needsReload = false;
  for (const e of m.hostEntries) {
    const diff = compareEntry(e, state.files[e.hostPath]);
    if (diff === 'same') continue;
    if (diff === 'blocked') {
      conflicts.push({ owner, path: e.hostPath, message: blockedMessage(e.hostPath, state.files[e.hostPath]) });
      continue;
    }
    steps.push({ kind: 'write-file', owner, entry: e, change: diff, reason: diff === 'create' ? 'missing' : 'content differs from the manifest' });
    changes.push(`${diff} ${e.hostPath}`);
    if (isWithin(e.hostPath, unitDropInDir(name))) needsReload = true;
  }
  const wanted = new Set([...m.hostEntries, ...m.rootfsEntries].map((e) => e.hostPath));
  for (const path of record.files) {
    // Files inside the old root go with it; host files no longer generated are removed.
    if (wanted.has(path) || isWithin(path, m.rootfs) || !state.files[path]) continue;
    if (state.files[path]?.type === 'unsafe') {
      conflicts.push({ owner, path, message: (state.files[path] as { reason: string }).reason });
      continue;
    }
    steps.push({ kind: 'remove-file', owner, path, reason: 'no longer in the manifest' });
    changes.push(`remove ${path}`);
    if (isWithin(path, unitDropInDir(name))) needsReload = true;
  }
  if (conflicts.length > 0) {
    return { steps: [], conflicts, notices: [] as Notice[], summary: { owner, action: 'conflict', changes: conflicts.map((c) => c.message) } as Summary };
  }
  if (needsReload) steps.push({ kind: 'reload-units', machine: name, reason: 'drop-ins of its unit changed' });
  steps.push({ kind: 'rebuild-machine', machine: name, spec: m.machine, entries: m.rootfsEntries, record: newMachineRecord(m, options.manifestPath, record.created), why, reason: 'only a fresh root filesystem brings these changes' });
  changes.push(`rebuild (${why.join('; ')}); the old root filesystem is kept for rollback`);
  if (m.machine.autostart && !o.enabled) {
    steps.push({ kind: 'enable-machine', machine: name, reason: 'autostart: true' });
    changes.push('enable at boot');
  } else if (!m.machine.autostart && o.enabled) {
    steps.push({ kind: 'disable-machine', machine: name, reason: 'autostart: false' });
    changes.push('disable at boot');
  }
  // The rebuilt machine's check runs in its new root: apply returns once it passes there.
  if (m.machine.health) steps.push({ kind: 'wait-healthy', machine: name, reason: 'apply returns once the check passes' });
  return { steps, conflicts, notices: [] as Notice[], summary: { owner, action: 'rebuild', changes } as Summary };
}

/** The record of a root filesystem built from the manifest (by create-machine, or by rebuild). */
export function newMachineRecord(m: DesiredMachine, manifestPath: string, created: string): MachineRecord {
  return {
    version: 1,
    kind: 'machine',
    name: m.machine.name,
    manifest: manifestPath,
    created,
    bootstrap: {
      distribution: m.machine.distribution,
      suite: m.machine.suite,
      mirror: m.machine.mirror,
      variant: m.machine.variant,
      bootstrapper: m.machine.bootstrapper,
    },
    packages: m.machine.packages,
    provision: m.machine.provision,
    files: [...m.hostEntries, ...m.rootfsEntries].map((e) => e.hostPath).sort(),
  };
}

/**
 * A machine without `dns:` gets the host's nameservers at each start; say so when none of them
 * can answer it (none listed, or only the host's loopback, like a local dnsmasq on 127.0.0.1).
 */
function unreachableDnsNotice(m: DesiredMachine, state: HostState): Notice | undefined {
  if (!state.dns || !m.machine.network || m.machine.dns.length > 0) return undefined;
  const { file, nameservers } = state.dns;
  if (nameservers.some((n) => !isLoopbackNameserver(n))) return undefined;
  const names = nameservers.length === 0 ? `${file} names no nameserver` : `${file} names only ${nameservers.join(', ')}, the host's own loopback, which the machine cannot reach`;
  return { owner: { type: 'machine', name: m.machine.name }, message: `without dns: the machine gets the host's nameservers, but ${names}; set dns: to nameservers the machine can reach` };
}

/** Why nspawnctl will not replace what is at `path`. */
function blockedMessage(path: string, current: ObservedEntry | undefined): string {
  if (current?.type === 'unsafe') return current.reason;
  return `${path} is a ${current?.type === 'dir' ? 'directory' : 'special file'}; nspawnctl will not replace it`;
}

function summarize(step: Step): string {
  switch (step.kind) {
    case 'create-machine':
      return `bootstrap ${step.spec.distribution} ${step.spec.suite} with ${step.spec.bootstrapper === 'auto' ? 'mmdebstrap or debootstrap' : step.spec.bootstrapper}`;
    case 'write-file':
      return `${step.change} ${step.entry.hostPath}`;
    case 'enable-machine':
      return 'enable at boot';
    case 'start-machine':
      return 'start';
    case 'restart-machine':
      return 'restart';
    case 'wait-healthy':
      return 'wait until its health check passes';
    default:
      return step.kind;
  }
}

/**
 * Read-write binds are not idmapped (src/render/nspawn.ts), so their source must belong to the
 * machine's UID range for its root to write there. A source nspawnctl creates (`create: true`)
 * is handed to the machine once it runs (the step reads the range the machine got); one that
 * still belongs to host root and that nspawnctl did not create is the admin's to hand over.
 */
function planBindOwnership(m: DesiredMachine, state: HostState, firstWriter: Map<string, string>): { steps: Step[]; paths: string[]; notices: Notice[] } {
  const steps: Step[] = [];
  const paths: string[] = [];
  const notices: Notice[] = [];
  if (!shiftsUids(m.machine.security)) return { steps, paths, notices };
  const owner: Owner = { type: 'machine', name: m.machine.name };
  for (const [i, b] of m.machine.bind.entries()) {
    if (b.readOnly) continue;
    const writer = firstWriter.get(b.source);
    if (writer !== m.machine.name) {
      notices.push({
        owner,
        message: `bind[${i}]: ${b.source} is also mounted read-write by ${writer}, whose root owns it; ${m.machine.name} has its own UID range, so its root can only read it (give each machine its own directory, or mount it readOnly here)`,
      });
      continue;
    }
    const uid = state.bindSourceOwners?.[b.source];
    const missing = !state.existingBindSources.includes(b.source);
    if (b.create && (missing || uid === 0)) {
      if (!paths.includes(b.source)) {
        paths.push(b.source);
        steps.push({ kind: 'hand-bind-source', machine: m.machine.name, path: b.source, reason: "a read-write bind is not idmapped: the machine's root must own its source" });
      }
    } else if (uid === 0) {
      notices.push({
        owner,
        message: `bind[${i}]: ${b.source} is mounted read-write but belongs to host root, so the machine's root can only read it (read-write binds are not idmapped: through one it could create files owned by host root, setuid ones too); chown it to the machine's UID range (the users line of nspawnctl status ${m.machine.name}), or let nspawnctl create it with create: true`,
      });
    }
  }
  return { steps, paths, notices };
}

/** How a desired entry relates to what is on disk. */
export function compareEntry(entry: DesiredEntry, current: ObservedEntry | undefined): 'same' | 'create' | 'update' | 'blocked' {
  if (!current) return 'create';
  if (current.type === 'dir' || current.type === 'other' || current.type === 'unsafe') return 'blocked';
  if (entry.kind === 'symlink') return current.type === 'symlink' && current.target === entry.target ? 'same' : 'update';
  return current.type === 'file' && current.content === entry.content && current.mode === entry.mode ? 'same' : 'update';
}
