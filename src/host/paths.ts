// Every path nspawnctl reads or writes on a host, in one place. All are host-absolute; the
// Host's filesystem joins them onto its root prefix.
import { posix } from 'node:path';

export const MACHINES_DIR = '/var/lib/machines';
export const NSPAWN_DIR = '/etc/systemd/nspawn';
export const NETWORKD_DIR = '/etc/systemd/network';
export const SYSTEMD_SYSTEM_DIR = '/etc/systemd/system';
export const STATE_DIR = '/var/lib/nspawnctl';

/** Directories destroy may remove files from; anything else is refused. */
export const CONFIG_DIR = '/etc/nspawnctl';
export const OWNED_ROOTS = [MACHINES_DIR, NSPAWN_DIR, NETWORKD_DIR, SYSTEMD_SYSTEM_DIR, STATE_DIR, CONFIG_DIR];

export function rootfsPath(machine: string): string {
  return `${MACHINES_DIR}/${machine}`;
}

// Staging directories start with a dot: machinectl list-images hides them, so a half-made
// rootfs never looks like a machine.
export function stagingPath(machine: string): string {
  return `${MACHINES_DIR}/.nspawnctl-${machine}.staging`;
}

/**
 * A read-only btrfs snapshot of a running machine's tree, made by backup and deleted when it is
 * archived (hidden like staging directories; a leftover is deleted by the next backup or destroy).
 */
export function backupSnapshotPath(machine: string): string {
  return `${MACHINES_DIR}/.nspawnctl-${machine}.snapshot`;
}

/** Root's scratch space for a backup's metadata file, on /run (gone at reboot). */
export const BACKUP_WORK_DIR = '/run/nspawnctl';

/**
 * The root filesystem a rebuild set aside (hidden like staging), until the next rebuild replaces
 * it or a rollback swaps it back; the machine's record names it.
 */
export function previousRootfsPath(machine: string): string {
  return `${MACHINES_DIR}/.nspawnctl-${machine}.previous`;
}

/** Where a rollback parks the current root filesystem for a moment while the two change places. */
export function swapRootfsPath(machine: string): string {
  return `${MACHINES_DIR}/.nspawnctl-${machine}.swap`;
}

export function nspawnFilePath(machine: string): string {
  return `${NSPAWN_DIR}/${machine}.nspawn`;
}

export function netdevPath(bridge: string): string {
  return `${NETWORKD_DIR}/50-nspawnctl-${bridge}.netdev`;
}

export function bridgeNetworkPath(bridge: string): string {
  return `${NETWORKD_DIR}/50-nspawnctl-${bridge}.network`;
}

/** The symlink `machinectl enable` creates. */
export function autostartLinkPath(machine: string): string {
  return `${SYSTEMD_SYSTEM_DIR}/machines.target.wants/systemd-nspawn@${machine}.service`;
}

export function machineRecordPath(machine: string): string {
  return `${STATE_DIR}/machines/${machine}.json`;
}

export function networkRecordPath(network: string): string {
  return `${STATE_DIR}/networks/${network}.json`;
}

export const MACHINE_RECORDS_DIR = `${STATE_DIR}/machines`;
export const NETWORK_RECORDS_DIR = `${STATE_DIR}/networks`;

/** Joins a path inside a machine onto its rootfs (both absolute; no ".." allowed by the schema). */
export function inRootfs(rootfs: string, inner: string): string {
  return posix.join(rootfs, inner);
}

/** The machine directory (/var/lib/machines/NAME) a host path lies in, or undefined. */
export function machineDirOf(path: string): string | undefined {
  return /^\/var\/lib\/machines\/[^/]+/.exec(path)?.[0];
}

/**
 * True for a path strictly inside a machine's root filesystem or staging directory
 * (/var/lib/machines/NAME/...), or inside a process's root (/proc/PID/root/...): places a
 * machine's root can change, reached only through a RootfsHandle.
 */
export function insideMachinePath(path: string): boolean {
  const p = posix.normalize(`/${path}`);
  return /^\/var\/lib\/machines\/[^/]+\/./.test(p) || /^\/proc\/[^/]+\/root\/./.test(p);
}

/** The machine directory a host path inside a machine lies in, and the path inside it. */
export function splitMachinePath(hostPath: string): { dir: string; path: string } | undefined {
  const dir = machineDirOf(hostPath);
  if (!dir || dir === hostPath) return undefined;
  return { dir, path: hostPath.slice(dir.length) };
}

/** True when `path` is `dir` itself or below it. */
export function isWithin(path: string, dir: string): boolean {
  const p = posix.normalize(path);
  const d = posix.normalize(dir).replace(/\/$/, '');
  return p === d || p.startsWith(`${d}/`);
}

/** Drop-in directory of the machine's unit; nspawnctl's files in it start with 50-nspawnctl-. */
export function unitDropInDir(machine: string): string {
  return `${SYSTEMD_SYSTEM_DIR}/systemd-nspawn@${machine}.service.d`;
}

export function limitsDropInPath(machine: string): string {
  return `${unitDropInDir(machine)}/50-nspawnctl-limits.conf`;
}

export function appArmorDropInPath(machine: string): string {
  return `${unitDropInDir(machine)}/50-nspawnctl-apparmor.conf`;
}

export function credentialsDropInPath(machine: string): string {
  return `${unitDropInDir(machine)}/50-nspawnctl-credentials.conf`;
}

/** The start limit of the machine's unit: how often a failing health check may restart it. */
export function healthDropInPath(machine: string): string {
  return `${unitDropInDir(machine)}/50-nspawnctl-health.conf`;
}
