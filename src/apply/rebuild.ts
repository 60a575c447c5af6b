// Rebuild and rollback: a machine gets a fresh root filesystem built from the manifest, swapped
// in with one stop and one start, while the old one is kept as a hidden, recorded sibling that
// rollback swaps back. A new root filesystem that does not reach readiness is swapped back at
// once. Binds are the place for data: they are never touched.
import { NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { isWithin, machineRecordPath, MACHINES_DIR, previousRootfsPath, rootfsPath, stagingPath, swapRootfsPath } from '../host/paths';
import { Machine } from '../manifest/schema';
import { shiftFor } from '../manifest/security';
import { readMachineRecord, readOnlyMountPoints } from '../plan/observe';
import { MachineRecord, RECORD_MODE, serializeRecord } from '../plan/records';
import { DesiredEntry } from '../render/desired';
import { buildRootfs, prepareReadOnly } from './bootstrap';
import { ImageCache } from './image-cache';
import { Readiness } from './in-machine';
import { machineState, startMachine, stopMachine } from './machinectl';
import { mountsUnder, removeStaging } from './staging';

export interface RebuildInput {
  spec: Machine;
  /** The files the manifest puts inside the machine. */
  entries: DesiredEntry[];
  /** The record as the new root filesystem makes it (from the manifest; `created` is kept). */
  record: MachineRecord;
  /** How long the machine may take to stop, and to become ready after its start. */
  timeoutMs: number;
  onLine?: (line: string) => void;
  cache?: { images: ImageCache; architecture: () => Promise<string> };
  /** Clock (for the downtime) and timestamp source, injectable for tests. */
  now?: () => number;
  isoNow?: () => string;
}

/** What a rebuild or rollback did, and how long the machine was down. */
export interface SwapReport {
  machine: string;
  /** Whether the machine was running before (a stopped machine is started, and had no downtime). */
  wasRunning: boolean;
  /** From the stop's start until the new root filesystem's systemd was ready, in milliseconds. */
  downtimeMs: number;
  stopMs: number;
  startMs: number;
  readiness: Readiness;
  /** Where the root filesystem that was replaced is kept now. */
  previous: string;
}

/** A swap that was undone because the new root filesystem did not reach readiness (exit 1). */
export class RolledBackError extends NspawnctlError {}

/**
 * Builds a fresh root filesystem for `spec` in staging, then swaps it in: stop, rename the
 * current one to the previous sibling (replacing an earlier one), rename staging into place,
 * start and wait for readiness. When the new one is not ready, the old one is swapped back and
 * started, and RolledBackError says why.
 */
export async function rebuildMachine(host: Host, input: RebuildInput): Promise<SwapReport> {
  const { spec } = input;
  const name = spec.name;
  const say = input.onLine ?? (() => undefined);
  const current = await readRecordOf(host, name);
  const rootfs = rootfsPath(name);
  if (!(await host.fs.stat(rootfs))) throw new NspawnctlError(`machine ${name} has no root filesystem at ${rootfs}; apply creates it`);
  say(`building a new root filesystem in ${stagingPath(name)}`);
  const tool = await buildRootfs(host, { spec, entries: input.entries, onLine: input.onLine, cache: input.cache });
  const isoNow = input.isoNow ?? (() => new Date().toISOString());
  const previous = previousRootfsPath(name);
  try {
    if (await host.fs.stat(previous)) {
      say(`removing the earlier previous root filesystem ${previous}`);
      await removeRootfsTree(host, previous);
    }
  } catch (err) {
    await removeStaging(host, stagingPath(name)).catch(() => undefined);
    throw err;
  }
  const rebuilt: MachineRecord = {
    ...input.record,
    created: current.created,
    bootstrap: { ...input.record.bootstrap, bootstrapper: tool },
    rebuilt: isoNow(),
    previous: { path: previous, kept: isoNow(), bootstrap: current.bootstrap, packages: current.packages, provision: current.provision },
  };
  const { previous: _gone, ...restored } = current;
  return swapAndStart(host, name, {
    network: spec.network !== undefined,
    timeoutMs: input.timeoutMs,
    now: input.now,
    say,
    what: 'the new root filesystem',
    // A read-only root cannot be shifted or given mount points by nspawn at start: the new tree
    // gets them while the machine is down, as apply does for a new read-only machine.
    ...(spec.security.readOnly
      ? { prepare: () => prepareReadOnly(host, spec, shiftFor(spec.security.privateUsers, undefined), readOnlyMountPoints(spec), input.timeoutMs, input.onLine) }
      : {}),
    swap: async () => {
      await writeRecord(host, rebuilt);
      await host.fs.rename(rootfs, previous);
      await host.fs.rename(stagingPath(name), rootfs);
    },
    // The failed tree goes back to staging (removed after), the old one into place; the earlier
    // previous was removed, so none is recorded.
    unswap: async () => {
      await host.fs.rename(rootfs, stagingPath(name));
      await host.fs.rename(previous, rootfs);
      await writeRecord(host, restored);
      await removeStaging(host, stagingPath(name));
    },
  });
}

export interface RollbackOptions {
  timeoutMs: number;
  onLine?: (line: string) => void;
  now?: () => number;
  isoNow?: () => string;
}

/**
 * Swaps the recorded previous root filesystem back in (one stop, one start, readiness); the one
 * it replaces becomes the previous, so a second rollback returns to it. When the previous one
 * does not reach readiness, the swap is undone and RolledBackError says why.
 */
export async function rollbackMachine(host: Host, name: string, options: RollbackOptions): Promise<SwapReport> {
  const say = options.onLine ?? (() => undefined);
  const current = await readRecordOf(host, name);
  const previous = previousRootfsPath(name);
  if (!current.previous || !(await host.fs.stat(previous))) {
    throw new NspawnctlError(`machine ${name} has no previous root filesystem to roll back to${current.previous ? ` (${previous} is gone)` : ''}`, {
      hint: `nspawnctl rebuild ${name} keeps the one it replaces.`,
    });
  }
  const rootfs = rootfsPath(name);
  const swap = swapRootfsPath(name);
  if (await host.fs.stat(swap)) throw new NspawnctlError(`${swap} exists (left by an interrupted rollback?); move it away by hand first`);
  const isoNow = options.isoNow ?? (() => new Date().toISOString());
  const { previous: kept, ...rest } = current;
  const swapped: MachineRecord = {
    ...rest,
    bootstrap: kept.bootstrap,
    packages: kept.packages,
    provision: kept.provision,
    rebuilt: isoNow(),
    previous: { path: previous, kept: isoNow(), bootstrap: current.bootstrap, packages: current.packages, provision: current.provision },
  };
  const exchange = async () => {
    await host.fs.rename(rootfs, swap);
    await host.fs.rename(previous, rootfs);
    await host.fs.rename(swap, previous);
  };
  return swapAndStart(host, name, {
    // The machine has a network when nspawnctl configured host0 inside it.
    network: current.files.some((f) => f === `${rootfs}/etc/systemd/network/10-nspawnctl-host0.network`),
    timeoutMs: options.timeoutMs,
    now: options.now,
    say,
    what: 'the previous root filesystem',
    swap: async () => {
      await writeRecord(host, swapped);
      await exchange();
    },
    unswap: async () => {
      await exchange();
      await writeRecord(host, current);
    },
  });
}

interface SwapPlan {
  network: boolean;
  timeoutMs: number;
  now?: () => number;
  say: (line: string) => void;
  /** What is being put in place, for messages. */
  what: string;
  swap: () => Promise<void>;
  /** After the swap, before the start (the machine is down): a read-only root's preparation. */
  prepare?: () => Promise<void>;
  unswap: () => Promise<void>;
}

/** One stop, the swap, one start with readiness; undone (and the old tree started) when not ready. */
async function swapAndStart(host: Host, name: string, p: SwapPlan): Promise<SwapReport> {
  const now = p.now ?? Date.now;
  const wait = { timeoutMs: p.timeoutMs, network: p.network };
  const wasRunning = (await machineState(host, name)) !== undefined;
  const t0 = now();
  if (wasRunning) {
    p.say(`stopping ${name}`);
    await stopMachine(host, name, wait);
  }
  const t1 = now();
  await p.swap();
  let readiness: Readiness;
  try {
    if (p.prepare) {
      p.say(`preparing ${p.what} for a read-only start`);
      await p.prepare();
    }
    p.say(`starting ${name} with ${p.what}`);
    readiness = await startMachine(host, name, wait);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    p.say(`${p.what} did not reach readiness; swapping the old one back`);
    await stopMachine(host, name, wait).catch(() => undefined);
    await p.unswap();
    let restarted = 'it was stopped before and stays stopped';
    if (wasRunning) {
      try {
        await startMachine(host, name, wait);
        restarted = 'the old root filesystem runs again';
      } catch (again) {
        restarted = `the old root filesystem is back in place but did not start either: ${again instanceof Error ? again.message : String(again)}`;
      }
    }
    throw new RolledBackError(`machine ${name}: rolled back: ${p.what} did not reach readiness (${why}); ${restarted}`, {
      hint: `Look at what broke its boot (provision, files) and try again; journalctl -u systemd-nspawn@${name}.service shows the failed start.`,
      cause: err,
    });
  }
  const t2 = now();
  return { machine: name, wasRunning, downtimeMs: t2 - t0, stopMs: t1 - t0, startMs: t2 - t1, readiness, previous: previousRootfsPath(name) };
}

async function readRecordOf(host: Host, name: string): Promise<MachineRecord> {
  const { record, recordError } = await readMachineRecord(host, name);
  if (recordError) throw new NspawnctlError(recordError, { hint: `Fix or remove ${machineRecordPath(name)} by hand.` });
  if (!record) throw new NspawnctlError(`no machine named ${name} is managed by nspawnctl (no record in ${machineRecordPath(name)})`, { hint: 'nspawnctl list shows the machines nspawnctl manages.' });
  return record;
}

async function writeRecord(host: Host, record: MachineRecord): Promise<void> {
  await host.fs.writeFile(machineRecordPath(record.name), serializeRecord(record), { mode: RECORD_MODE, dirMode: 0o700 });
}

/** Removes a set-aside root filesystem; refuses when something is mounted in it. */
export async function removeRootfsTree(host: Host, dir: string): Promise<void> {
  if (!isWithin(dir, MACHINES_DIR) || dir === MACHINES_DIR) throw new NspawnctlError(`refusing to remove ${dir}: outside ${MACHINES_DIR}`);
  const mounted = await mountsUnder(host, dir);
  if (mounted.length > 0) {
    throw new NspawnctlError(`refusing to remove ${dir}: something is still mounted under it (${mounted.join(', ')})`, { hint: `Unmount it first: umount ${mounted[0]}` });
  }
  await host.fs.removeTree(dir);
}
