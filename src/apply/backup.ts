// nspawnctl backup: one machine's tree, settings and record into one .tar.zst. A running machine
// is read from a read-only btrfs snapshot where its tree is a subvolume, otherwise it is stopped
// for the copy and started again (the downtime is measured). The tree is the machine's and
// hostile: only tar reads it, with flags that never follow a symlink, stay on its filesystem and
// never open a FIFO or device (backup-format.ts).
import type { ListrTask } from 'listr2';
import { posix } from 'node:path';
import { NspawnctlError, OwnershipError } from '../errors';
import type { ArchiveOutput } from '../host/archive-io';
import { findProgram, Host } from '../host/host';
import { autostartLinkPath, BACKUP_WORK_DIR, backupSnapshotPath, machineRecordPath, rootfsPath } from '../host/paths';
import { MACHINE_NAME } from '../manifest/schema';
import { isSystemdBooted, readMachineRecord } from '../plan/observe';
import { MachineRecord } from '../plan/records';
import { assertArchiveTools, checkArchive, describeBytes, formatBytes, formatSeconds, progressInterval, progressReporter } from './archive-check';
import { ARCHIVE_FORMAT, BackupMeta, encodeTrailer, MAX_SETTINGS_BYTES, META_MEMBER, settingsPaths, tarCreateCommand, ZSTD_COMPRESS } from './backup-format';
import { filesystemType } from './image-cache';
import { machineState, startMachine, stopMachine } from './machinectl';

/** How the tree is read: from a snapshot, while the machine is stopped for it, or as it is (not running). */
export type BackupMethod = 'snapshot' | 'stop' | 'as-is';

export interface BackupPlan {
  machine: string;
  rootfs: string;
  method: BackupMethod;
  running: boolean;
  enabled: boolean;
  record: MachineRecord;
  /** What will happen, said before anything does. */
  description: string;
}

export interface BackupOptions {
  /** The archive's path (relative to the working directory). */
  to: string;
  replace: boolean;
  stopTimeoutMs: number;
  startTimeoutMs: number;
  renderer: 'default' | 'simple' | 'silent';
  /** nspawnctl's version, recorded in the archive. */
  version: string;
  now?: () => number;
}

export interface BackupReport {
  machine: string;
  file: string;
  method: BackupMethod;
  /** Size of the archive. */
  bytes: number;
  /** Size of the tar stream (the tree as archived, holes left out). */
  treeBytes: number;
  sha256: string;
  members: number;
  seconds: number;
  /** From the moment the machine was asked to stop until it was ready again ('stop' only). */
  downtimeSeconds?: number;
}

/** Checks the name, the record and the tools, and decides how the tree will be read. Changes nothing. */
export async function planBackup(host: Host, name: string): Promise<BackupPlan> {
  if (!MACHINE_NAME.test(name)) throw new NspawnctlError(`"${name}" is not a machine name nspawnctl could have created (1-12 characters of a-z, 0-9 and -)`, { exitCode: 2 });
  const rootfs = rootfsPath(name);
  const { record, recordError } = await readMachineRecord(host, name);
  if (recordError) throw new NspawnctlError(recordError, { hint: `Fix or remove ${machineRecordPath(name)} by hand.` });
  const top = await host.fs.stat(rootfs);
  if (!record) {
    if (top) throw new OwnershipError(`machine ${name} was not created by nspawnctl (no record in ${machineRecordPath(name)}); backup works on the machines nspawnctl manages`);
    throw new NspawnctlError(`no machine named ${name}: nspawnctl has no record of it`, { hint: 'nspawnctl list shows the machines nspawnctl manages.' });
  }
  if (top?.type !== 'dir') throw new NspawnctlError(`machine ${name} has no root filesystem (${rootfs} ${top ? 'is not a directory' : 'is missing'}); there is nothing to back up`);
  await assertArchiveTools(host, 'backup');
  const booted = await isSystemdBooted(host);
  const running = booted && (await machineState(host, name)) !== undefined;
  const enabled = (await host.fs.stat(autostartLinkPath(name))) !== undefined;
  let method: BackupMethod = 'as-is';
  let description = `${name} is not running: its root filesystem is archived as it is.`;
  if (running && (await isSubvolume(host, rootfs))) {
    method = 'snapshot';
    description = `${name} is running and ${rootfs} is a btrfs subvolume: a read-only snapshot of it is archived, and ${name} keeps running (the copy is what a power cut at that moment would leave).`;
  } else if (running) {
    method = 'stop';
    description = `${name} is running and ${rootfs} is not a btrfs subvolume: ${name} is stopped for the copy and started again; it is down for as long as archiving takes, which is measured.`;
  }
  return { machine: name, rootfs, method, running, enabled, record, description };
}

/** A btrfs subvolume can be snapshotted while the machine runs. */
async function isSubvolume(host: Host, dir: string): Promise<boolean> {
  if (!(await findProgram(host, 'btrfs')) || (await filesystemType(host, dir)) !== 'btrfs') return false;
  return (await host.runner.run('btrfs', ['subvolume', 'show', dir], { allowFailure: true })).exitCode === 0;
}

/** Runs listr2 tasks one after another, plain lines off a terminal. */
async function runTasks(tasks: ListrTask[], renderer: BackupOptions['renderer']): Promise<void> {
  // listr2 costs about 0.1 s to load; loaded only when there is work.
  const { Listr } = require('listr2') as typeof import('listr2');
  // registerSignalListeners off: listr2 would exit(127) on SIGINT before nspawnctl cleans up.
  await new Listr(tasks, { renderer, exitOnError: true, registerSignalListeners: false, rendererOptions: { collapseErrors: false, showErrorMessage: false } } as never).run();
}

/**
 * Writes the archive. The caller holds the host lock. The archive file is created before the
 * machine is stopped (a path that cannot be written costs no downtime), committed only once it
 * passed restore's own checks, and removed on any failure; a stopped machine is started again
 * whatever happened, even after Ctrl-C.
 */
export async function backupMachine(host: Host, plan: BackupPlan, options: BackupOptions): Promise<BackupReport> {
  const now = options.now ?? Date.now;
  const began = now();
  const { machine, rootfs } = plan;
  const interval = progressInterval(options.renderer);
  const output = await host.createArchive(options.to, { replace: options.replace });
  const workDir = `${BACKUP_WORK_DIR}/backup-${host.pid}`;
  const snapshot = backupSnapshotPath(machine);
  let tree = rootfs;
  let stoppedAt: number | undefined;
  let downtime: number | undefined;
  let archived: { sha256: string; treeBytes: number; bytes: number } | undefined;
  try {
    await writeMeta(host, plan, workDir, options.version, new Date(now()).toISOString());
    let restartError: unknown;
    try {
      const tasks: ListrTask[] = [];
      if (plan.method === 'snapshot') {
        tasks.push({
          title: `snapshot ${rootfs} (read-only) at ${snapshot}`,
          task: async () => {
            await removeSnapshot(host, snapshot);
            await host.runner.run('btrfs', ['subvolume', 'snapshot', '-r', rootfs, snapshot]);
            tree = snapshot;
          },
        });
      }
      if (plan.method === 'stop') {
        tasks.push({
          title: `stop ${machine} for the copy (it is started again afterwards)`,
          task: async () => {
            stoppedAt = now();
            await stopMachine(host, machine, { timeoutMs: options.stopTimeoutMs });
          },
        });
      }
      tasks.push({
        title: `archive ${rootfs}`,
        task: async (_ctx, task) => {
          let written = 0;
          const report = progressReporter((line) => (task.output = line), interval, now, (done, _total, rate) => `${formatBytes(done)} read, ${formatBytes(written)} written, ${formatBytes(rate)}/s`);
          const r = await host.runner.pipeline([tarCreateCommand(workDir, tree), ZSTD_COMPRESS], {
            output: { kind: 'file', file: output },
            onProgress: (p) => {
              written = p.stages[1];
              report(p.stages[0]);
            },
          });
          // The last line has the totals (the pipeline reports them last) and the average rate: off
          // a terminal, lines come only every 10 s.
          report.flush();
          archived = { sha256: r.outputSha256 ?? '', treeBytes: r.progress.stages[0], bytes: r.progress.stages[1] };
          task.title = `archive ${rootfs}: ${formatBytes(archived.treeBytes)} into ${formatBytes(archived.bytes)}`;
        },
      });
      await runTasks(tasks, options.renderer);
    } finally {
      if (stoppedAt !== undefined) restartError = await startAgain(host, plan, options, () => (downtime = now() - stoppedAt!));
      if (plan.method === 'snapshot') await removeSnapshot(host, snapshot).catch(() => undefined);
    }
    if (!archived) throw new NspawnctlError('internal: the archive was not written');
    await output.append(encodeTrailer(archived.sha256));
    const written = archived;
    let members = 0;
    await runTasks(
      [
        {
          title: `check the archive as restore will (checksum, every member)`,
          task: async (_ctx, task) => {
            const file = await output.reopen();
            try {
              const report = progressReporter((line) => (task.output = line), interval, now, describeBytes);
              const checked = await checkArchive(host, file, report);
              if (checked.sha256 !== written.sha256) throw new NspawnctlError('internal: the archive read back differs from the one written');
              members = checked.members;
            } catch (err) {
              if (err instanceof NspawnctlError && err.exitCode === 2) {
                throw new NspawnctlError(`machine ${machine}: the archive does not pass restore's checks, so it was not kept: ${err.message.replace(/^.*?not a usable nspawnctl backup: /, '').replace(/; nothing was restored$/, '')}`, {
                  hint: 'Remove what it names from the machine (from inside it), then back it up again.',
                  cause: err,
                });
              }
              throw err;
            } finally {
              await file.close();
            }
            task.title = `check the archive: ${members} members, sha256 ${written.sha256.slice(0, 16)}...`;
          },
        },
        { title: `write ${output.path}`, task: () => output.commit({ replace: options.replace }) },
      ],
      options.renderer,
    );
    if (restartError !== undefined) {
      throw new NspawnctlError(`machine ${machine}: the backup was written to ${output.path}, but ${machine} did not start again: ${(restartError as Error).message}`, {
        hint: `Start it with: machinectl start ${machine}`,
        cause: restartError,
      });
    }
    return {
      machine,
      file: output.path,
      method: plan.method,
      bytes: written.bytes + encodeTrailer(written.sha256).length,
      treeBytes: written.treeBytes,
      sha256: written.sha256,
      members,
      seconds: (now() - began) / 1000,
      ...(downtime !== undefined ? { downtimeSeconds: downtime / 1000 } : {}),
    };
  } catch (err) {
    await discard(output);
    throw err;
  } finally {
    await host.fs.removeTree(workDir).catch(() => undefined);
  }
}

async function discard(output: ArchiveOutput): Promise<void> {
  await output.discard().catch(() => undefined);
}

/**
 * Starts the machine the backup stopped and waits until it is ready, as apply does. After
 * Ctrl-C it is only started (nothing waits on it). Returns the error, if it did not come back.
 */
async function startAgain(host: Host, plan: BackupPlan, options: BackupOptions, stopClock: () => void): Promise<unknown> {
  const { machine } = plan;
  if (host.signal?.aborted) {
    await host.runner.run('machinectl', ['start', machine], { afterInterrupt: true, allowFailure: true, timeoutMs: 60_000 });
    return undefined;
  }
  try {
    await runTasks(
      [
        {
          title: `start ${machine} again`,
          task: async () => {
            // Its network is waited for when its settings put it on a bridge.
            const nspawn = (await host.fs.readText(settingsPaths(machine)[0])) ?? '';
            await startMachine(host, machine, { timeoutMs: options.startTimeoutMs, network: /^Bridge=/m.test(nspawn) });
            stopClock();
          },
        },
      ],
      options.renderer,
    );
    return undefined;
  } catch (err) {
    stopClock();
    return err;
  }
}

/** Deletes a leftover or finished snapshot (a read-only subvolume; rm could not remove it). */
async function removeSnapshot(host: Host, snapshot: string): Promise<void> {
  if (!(await host.fs.stat(snapshot))) return;
  await host.runner.run('btrfs', ['subvolume', 'delete', snapshot]);
}

/** nspawnctl-backup.json, in a directory of root's under /run that tar reads it from. */
async function writeMeta(host: Host, plan: BackupPlan, dir: string, version: string, created: string): Promise<void> {
  const settings: BackupMeta['settings'] = [];
  for (const path of settingsPaths(plan.machine)) {
    if (!plan.record.files.includes(path) || (await host.fs.stat(path))?.type !== 'file') continue;
    const content = (await host.fs.readText(path)) ?? '';
    if (Buffer.byteLength(content) > MAX_SETTINGS_BYTES) throw new NspawnctlError(`${path} is larger than ${MAX_SETTINGS_BYTES} bytes; nspawnctl does not write such files`);
    settings.push({ path, content });
  }
  const meta: BackupMeta = {
    kind: 'nspawnctl-backup',
    format: ARCHIVE_FORMAT,
    machine: plan.machine,
    created,
    nspawnctl: version,
    consistency: plan.method === 'snapshot' ? 'snapshot' : plan.method === 'stop' ? 'stopped' : 'not-running',
    running: plan.running,
    enabled: plan.enabled,
    record: plan.record,
    settings,
  };
  if (await host.fs.stat(dir)) await host.fs.removeTree(dir);
  await host.fs.writeFile(posix.join(dir, META_MEMBER), `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600, dirMode: 0o700 });
}

/** What backup says it did, in one line. */
export function describeBackup(r: BackupReport): string {
  const down = r.downtimeSeconds !== undefined ? ` ${r.machine} was down for ${formatSeconds(r.downtimeSeconds * 1000)}.` : r.method === 'snapshot' ? ` ${r.machine} kept running (btrfs snapshot).` : '';
  return `Wrote ${r.file}: ${formatBytes(r.bytes)} (${formatBytes(r.treeBytes)} of tree, ${r.members} members) in ${formatSeconds(r.seconds * 1000)}, sha256 of content ${r.sha256}.${down}`;
}
