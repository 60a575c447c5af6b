// nspawnctl restore: a machine back from an archive. The archive is checked whole before anything
// is written (archive-check.ts), extracted into the machine's staging directory, given its record
// and settings, and only then renamed into place, as apply does with a new machine: killed at any
// moment, there is no half-made machine under its name, only a staging directory the next run
// removes. With --as, the copy gets the new name and is left stopped.
import type { ListrTask } from 'listr2';
import { NspawnctlError, OwnershipError } from '../errors';
import type { ArchiveFile } from '../host/archive-io';
import { Host, withRootfs } from '../host/host';
import { autostartLinkPath, MACHINES_DIR, machineRecordPath, rootfsPath, stagingPath, unitDropInDir, isWithin } from '../host/paths';
import { MACHINE_NAME } from '../manifest/schema';
import { isSystemdBooted, readMachineRecord } from '../plan/observe';
import { MachineRecord, RECORD_MODE, serializeRecord } from '../plan/records';
import { HOSTNAME_FILE, HOST0_NETWORK_FILE } from '../render/rootfs-paths';
import { assertArchiveTools, CheckedArchive, checkArchive, describeBytes, formatBytes, progressInterval, progressReporter } from './archive-check';
import { BackupMeta, recordFor, settingsFor, tarExtractCommand, ZSTD_DECOMPRESS } from './backup-format';
import { daemonReload, enableMachine, machineState, startMachine } from './machinectl';
import { removeStaging } from './staging';
import { syncFilesystem } from './unsafe-io';

export interface RestorePlan {
  file: ArchiveFile;
  archive: CheckedArchive;
  /** The name it is restored as. */
  machine: string;
  /** The name it had. */
  from: string;
  record: MachineRecord;
  settings: { path: string; content: string }[];
  /** Start it once it is in place (it ran when it was backed up, same name, no --no-start). */
  start: boolean;
  /** Enable it at boot (it was enabled, same name). */
  enable: boolean;
  /** What will happen, said before anything does. */
  lines: string[];
}

export interface RestoreOptions {
  /** --as NAME. */
  as?: string;
  /** --no-start. */
  noStart: boolean;
  /** --no-enable: not enabled at boot even when it was (a fleet move leaves that to the new host's apply). */
  noEnable?: boolean;
  /** Only reading the archive (--dry-run): its owner does not matter. */
  dryRun: boolean;
  renderer: 'default' | 'simple' | 'silent';
  startTimeoutMs: number;
  now?: () => number;
}

export interface RestoreReport {
  machine: string;
  from: string;
  file: string;
  sha256: string;
  members: number;
  started: boolean;
  enabled: boolean;
  /** The address its host0 has (from its network file), when it has one. */
  address?: string;
}

/** Opens and checks the archive, and plans the restore; writes nothing. The caller closes `file`. */
export async function planRestore(host: Host, path: string, options: RestoreOptions): Promise<RestorePlan> {
  if (options.as !== undefined && !MACHINE_NAME.test(options.as)) {
    throw new NspawnctlError(`"${options.as}" is not a machine name (1-12 characters of a-z, 0-9 and -, not starting or ending with -)`, { exitCode: 2 });
  }
  await assertArchiveTools(host, 'restore');
  const file = await host.openArchive(path);
  try {
    // Root extracts what this file says: nobody else may be able to change it meanwhile.
    if (!options.dryRun && (file.uid !== 0 || (file.mode & 0o022) !== 0)) {
      throw new NspawnctlError(`refusing to restore ${path}: ${file.uid !== 0 ? `it belongs to UID ${file.uid}` : 'its group or others may write it'}, so it could change while root reads it`, {
        exitCode: 2,
        hint: `Copy it somewhere only root writes, then restore the copy: install -m 600 ${path} /root/`,
      });
    }
    const interval = progressInterval(options.renderer);
    let archive: CheckedArchive | undefined;
    await runTasks(
      [
        {
          title: `check ${path}: checksum, every member, metadata`,
          task: async (_ctx, task) => {
            archive = await checkArchive(host, file, progressReporter((line) => (task.output = line), interval, options.now ?? Date.now, describeBytes));
            task.title = `check ${path}: ${archive.members} members, sha256 ${archive.sha256.slice(0, 16)}...`;
          },
        },
      ],
      options.renderer,
    );
    const checked = archive!;
    const meta = checked.meta;
    const machine = options.as ?? meta.machine;
    const renamed = machine !== meta.machine;
    const record = recordFor(meta, machine);
    const settings = settingsFor(meta, machine);
    const start = !renamed && meta.running && !options.noStart;
    const enable = !renamed && meta.enabled && !options.noEnable;
    return { file, archive: checked, machine, from: meta.machine, record, settings, start, enable, lines: describePlan(meta, machine, start, enable, options) };
  } catch (err) {
    await file.close();
    throw err;
  }
}

function describePlan(meta: BackupMeta, machine: string, start: boolean, enable: boolean, options: RestoreOptions): string[] {
  const renamed = machine !== meta.machine;
  const lines = [
    `restore machine ${machine}${renamed ? ` (a copy of ${meta.machine})` : ''} from a backup made ${meta.created} by nspawnctl ${meta.nspawnctl} (${meta.consistency === 'snapshot' ? 'from a snapshot of the running machine' : meta.consistency === 'stopped' ? 'while it was stopped for it' : 'while it was not running'}):`,
    `  - extract its root filesystem into ${stagingPath(machine)}`,
  ];
  if (renamed) lines.push(`  - hostname ${meta.machine} becomes ${machine} (where it was the name), and /etc/machine-id is emptied so it gets its own identity at first boot`);
  lines.push(`  - write its record and settings (${meta.settings.length} file(s): ${meta.settings.map((s) => s.path.split('/').pop()).join(', ') || 'none'})`, `  - rename it to ${rootfsPath(machine)}`);
  if (enable) lines.push(`  - enable it (it started at boot)`);
  if (start) lines.push(`  - start it and wait until it is ready (it was running)`);
  else if (renamed) {
    lines.push(
      `  - leave it stopped: it keeps ${meta.machine}'s network address and settings, and belongs to no manifest until one names it.`,
      `    Add "${machine}:" with its own address to a manifest and apply it: apply rewrites its hostname, address and settings and starts it.`,
    );
  } else if (meta.running && options.noStart) lines.push('  - leave it stopped (--no-start)');
  return lines;
}

/** Runs listr2 tasks one after another, plain lines off a terminal. */
async function runTasks(tasks: ListrTask[], renderer: RestoreOptions['renderer']): Promise<void> {
  const { Listr } = require('listr2') as typeof import('listr2');
  await new Listr(tasks, { renderer, exitOnError: true, registerSignalListeners: false, rendererOptions: { collapseErrors: false, showErrorMessage: false } } as never).run();
}

/** Refuses (exit 4) when anything of the machine's name exists: restore never replaces a machine. */
export async function assertNameFree(host: Host, plan: RestorePlan): Promise<void> {
  const name = plan.machine;
  const found: string[] = [];
  const { record, recordError } = await readMachineRecord(host, name);
  if (record || recordError) found.push(machineRecordPath(name));
  if (await host.fs.stat(rootfsPath(name))) found.push(rootfsPath(name));
  for (const s of plan.settings) if (await host.fs.stat(s.path)) found.push(s.path);
  if ((await isSystemdBooted(host)) && (await machineState(host, name)) !== undefined) found.push(`a running machine named ${name} (machinectl)`);
  if (found.length > 0) {
    throw new OwnershipError(`machine ${name} exists (${found.join(', ')}); restore never replaces a machine`, `Restore it under another name with --as NAME, or remove it first: nspawnctl destroy ${name}`);
  }
}

/**
 * Restores a planned archive. The caller holds the host lock and has checked the name is free.
 * The tree goes into the staging directory, then the record, then the settings, then one rename
 * puts the tree in place; a failure before the rename removes all three again.
 */
export async function restoreMachine(host: Host, plan: RestorePlan, options: RestoreOptions): Promise<RestoreReport> {
  const { machine, file, archive } = plan;
  const staging = stagingPath(machine);
  const rootfs = rootfsPath(machine);
  const interval = progressInterval(options.renderer);
  const now = options.now ?? Date.now;
  const written: string[] = [];
  let address: string | undefined;
  const tasks: ListrTask[] = [
    {
      title: `extract into ${staging}`,
      task: async (_ctx, task) => {
        await host.fs.mkdir(MACHINES_DIR, 0o700);
        // A staging directory is never resumed: one left by a killed run is removed first.
        await removeStaging(host, staging);
        await host.fs.mkdir(staging, 0o700);
        const report = progressReporter((line) => (task.output = line), interval, now, describeBytes);
        const r = await host.runner.pipeline([ZSTD_DECOMPRESS, tarExtractCommand(staging)], {
          input: { file, start: 0, end: archive.contentLength },
          output: { kind: 'discard' },
          onProgress: (p) => report(p.input, archive.contentLength),
        });
        // The last line has the total and the average rate (off a terminal, lines come every 10 s).
        report.flush();
        if (r.inputSha256 !== archive.sha256 || !(await file.unchanged())) {
          throw new NspawnctlError(`${file.path} changed while it was being restored; nothing was restored`, { exitCode: 2 });
        }
        task.title = `extract into ${staging}: ${formatBytes(r.progress.stages[0])}`;
      },
    },
    {
      title: `write the record and settings of ${machine}`,
      task: async () => {
        // The tree came from an archive: it is read and written only through its handle.
        await withRootfs(host, staging, async (tree) => {
          if (plan.from !== machine) await renameInside(tree, plan.from, machine);
          address = await readAddress(tree);
        });
        if (await host.fs.stat(rootfs)) throw new NspawnctlError(`${rootfs} appeared while machine ${machine} was being restored`);
        // The record first: killed before the rename, destroy (or a manifest's apply) finds a
        // recorded machine without a tree, never settings nobody owns.
        await host.fs.writeFile(machineRecordPath(machine), serializeRecord(plan.record), { mode: RECORD_MODE, dirMode: 0o700 });
        written.push(machineRecordPath(machine));
        for (const s of plan.settings) {
          await host.fs.writeFile(s.path, s.content, { mode: 0o644 });
          written.push(s.path);
        }
      },
    },
    {
      title: `rename ${staging} to ${rootfs}`,
      task: async () => {
        // What is renamed into place has reached the disk first (docs/guarantees.md).
        await syncFilesystem(host, staging);
        await host.fs.rename(staging, rootfs);
      },
    },
  ];
  try {
    await runTasks(tasks, options.renderer);
  } catch (err) {
    await removeStaging(host, staging).catch(() => undefined);
    for (const p of written.reverse()) await host.fs.removeFile(p).catch(() => undefined);
    throw err;
  }
  const after: ListrTask[] = [];
  const booted = await isSystemdBooted(host);
  if (booted && plan.settings.some((s) => isWithin(s.path, unitDropInDir(machine)))) after.push({ title: `reload systemd units (drop-ins of ${machine})`, task: () => daemonReload(host) });
  if (plan.enable && !(await host.fs.stat(autostartLinkPath(machine)))) after.push({ title: `enable ${machine} (start at boot)`, task: () => enableMachine(host, machine) });
  if (plan.start) {
    const network = plan.settings.some((s) => /^Bridge=/m.test(s.content));
    after.push({ title: `start ${machine}`, task: async () => void (await startMachine(host, machine, { timeoutMs: options.startTimeoutMs, network })) });
  }
  if (after.length > 0) {
    try {
      await runTasks(after, options.renderer);
    } catch (err) {
      const e = err as NspawnctlError;
      throw new NspawnctlError(`machine ${machine} was restored, but: ${e.message}`, { hint: e.hint, cause: err, exitCode: e.exitCode });
    }
  }
  return { machine, from: plan.from, file: file.path, sha256: archive.sha256, members: archive.members, started: plan.start, enabled: plan.enable, ...(address ? { address } : {}) };
}

/** The new name where the tree carried the old one: /etc/hostname, and a fresh machine-id. */
async function renameInside(tree: import('../host/rootfs-handle').RootfsHandle, from: string, to: string): Promise<void> {
  const hostname = await tree.inspect(HOSTNAME_FILE);
  if (hostname?.type === 'file' && hostname.content.trim() === from) {
    await tree.writeFile(HOSTNAME_FILE, `${to}\n`, { mode: hostname.mode, uid: hostname.uid, gid: hostname.gid });
  }
  // Two machines with one machine-id clash in journals and DHCP; an empty one is filled in at first boot.
  const id = await tree.inspect('/etc/machine-id');
  if (id?.type === 'file' && id.content !== '') await tree.writeFile('/etc/machine-id', '', { mode: id.mode, uid: id.uid, gid: id.gid });
}

/** The static address of host0 that nspawnctl configured, if any. */
async function readAddress(tree: import('../host/rootfs-handle').RootfsHandle): Promise<string | undefined> {
  try {
    const e = await tree.inspect(HOST0_NETWORK_FILE);
    return e?.type === 'file' ? /^Address=(\S+?)(?:\/\d+)?$/m.exec(e.content)?.[1] : undefined;
  } catch {
    return undefined;
  }
}
