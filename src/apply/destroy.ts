// Removes a machine and exactly what nspawnctl recorded for it, nothing else.
import { NspawnctlError, OwnershipError, PreflightError } from '../errors';
import { Host } from '../host/host';
import { appArmorDropInPath, autostartLinkPath, backupSnapshotPath, credentialsDropInPath, isWithin, limitsDropInPath, machineRecordPath, MACHINES_DIR, nspawnFilePath, previousRootfsPath, rootfsPath, stagingPath, swapRootfsPath, unitDropInDir } from '../host/paths';
import { MACHINE_NAME } from '../manifest/schema';
import { isSystemdBooted, readMachineRecord } from '../plan/observe';
import { removeOwnedFile } from './files';
import { daemonReload, disableMachine, machineState, stopMachine } from './machinectl';
import { mountsUnder, removeStaging } from './staging';

export interface DestroyOptions {
  force: boolean;
  stopTimeoutMs: number;
  onLine?: (line: string) => void;
}

export interface DestroyReport {
  machine: string;
  stopped: 'stopped' | 'terminated' | 'not-running';
  removed: string[];
}

/** Validates the name and checks ownership before anything is touched. */
export async function checkDestroyable(host: Host, name: string, force: boolean) {
  if (!MACHINE_NAME.test(name)) {
    throw new NspawnctlError(`"${name}" is not a machine name nspawnctl could have created (1-12 characters of a-z, 0-9 and -)`, { exitCode: 2 });
  }
  const { record, recordError } = await readMachineRecord(host, name);
  if (recordError) throw new NspawnctlError(recordError, { hint: `Fix or remove ${machineRecordPath(name)} by hand.` });
  const booted = await isSystemdBooted(host);
  const registered = booted ? (await machineState(host, name)) !== undefined : false;
  const rootfs = await host.fs.stat(rootfsPath(name));
  const nspawn = await host.fs.stat(nspawnFilePath(name));
  if (!record) {
    if (!rootfs && !nspawn && !registered) {
      throw new NspawnctlError(`no machine named ${name}: nspawnctl has no record of it and nothing of that name exists`, {
        hint: 'nspawnctl list shows the machines nspawnctl manages.',
      });
    }
    if (!force) {
      throw new OwnershipError(`machine ${name} was not created by nspawnctl (no record in ${machineRecordPath(name)}); refusing to touch it`, `If it is really yours to delete, run: nspawnctl destroy ${name} --force`);
    }
  }
  return { record, registered, booted };
}

export async function destroyMachine(host: Host, name: string, options: DestroyOptions): Promise<DestroyReport> {
  const { record, registered, booted } = await checkDestroyable(host, name, options.force);
  if (host.uid !== 0) throw new PreflightError([{ what: 'nspawnctl destroy must run as root', fix: 'Run it with sudo, or as root.' }]);
  const say = options.onLine ?? (() => undefined);
  let stopped: DestroyReport['stopped'] = 'not-running';
  if (registered) {
    say(`powering off ${name}`);
    stopped = await stopMachine(host, name, { timeoutMs: options.stopTimeoutMs });
  }
  const removed: string[] = [];
  if (booted && (await host.fs.stat(autostartLinkPath(name)))) {
    say(`disabling ${name}`);
    await disableMachine(host, name);
    removed.push(autostartLinkPath(name));
  }
  const rootfs = rootfsPath(name);
  // With --force and no record, only the standard paths nspawnctl would have used are removed.
  const files = record ? record.files : [nspawnFilePath(name), limitsDropInPath(name), appArmorDropInPath(name), credentialsDropInPath(name)];
  for (const path of files.filter((p) => !isWithin(p, rootfs))) {
    if (await removeOwnedFile(host, path)) removed.push(path);
  }
  // The unit's drop-ins (limits, AppArmor) are gone: systemd must forget them too.
  if (booted && removed.some((p) => isWithin(p, unitDropInDir(name)))) await daemonReload(host);
  if (await host.fs.stat(rootfs)) {
    await assertNothingMounted(host, rootfs);
    say(`removing ${rootfs}`);
    await host.fs.removeTree(rootfs);
    removed.push(rootfs);
  }
  if (await host.fs.stat(stagingPath(name))) {
    await removeStaging(host, stagingPath(name));
    removed.push(stagingPath(name));
  }
  // A read-only snapshot a killed backup left (rm cannot remove one; btrfs can).
  if (await host.fs.stat(backupSnapshotPath(name))) {
    await host.runner.run('btrfs', ['subvolume', 'delete', backupSnapshotPath(name)]);
    removed.push(backupSnapshotPath(name));
  }
  // The root filesystem a rebuild set aside (and one a killed rollback left parked) go with it.
  for (const dir of [previousRootfsPath(name), swapRootfsPath(name)]) {
    if (!(await host.fs.stat(dir))) continue;
    await assertNothingMounted(host, dir);
    say(`removing ${dir}`);
    await host.fs.removeTree(dir);
    removed.push(dir);
  }
  if (await host.fs.removeFile(machineRecordPath(name))) removed.push(machineRecordPath(name));
  return { machine: name, stopped, removed };
}

/** A mount under the rootfs (a bind mount left by a crash) would make rm reach into the host. */
async function assertNothingMounted(host: Host, dir: string): Promise<void> {
  if (!isWithin(dir, MACHINES_DIR)) throw new NspawnctlError(`refusing to remove ${dir}: outside ${MACHINES_DIR}`);
  const mounted = await mountsUnder(host, dir);
  if (mounted.length > 0) {
    throw new NspawnctlError(`refusing to remove ${dir}: something is still mounted under it (${mounted.join(', ')})`, {
      hint: `Unmount it first: umount ${mounted[0]}`,
    });
  }
}
