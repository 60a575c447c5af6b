// Writes generated files and symlinks, inside a rootfs with the ownership its user namespace needs.
import { posix } from 'node:path';
import { Host } from '../host/host';
import { isWithin, machineDirOf, OWNED_ROOTS } from '../host/paths';
import { NspawnctlError } from '../errors';
import { DesiredEntry } from '../render/desired';
import { FILTER_DIR } from '../render/filter';

/**
 * Writes one entry at `hostPath`. Inside a rootfs the owner is the rootfs' top directory owner:
 * 0 before the first boot, the UID base after systemd-nspawn -U shifted the tree, so root inside
 * the machine owns what nspawnctl wrote.
 */
export async function writeEntry(host: Host, entry: DesiredEntry, hostPath: string, rootfs?: string): Promise<boolean> {
  let owner: { uid?: number; gid?: number; confineTo?: string } = {};
  if (rootfs) {
    const info = await host.fs.stat(rootfs);
    if (!info || info.type !== 'dir') throw new NspawnctlError(`root filesystem ${rootfs} is missing`);
    owner = { uid: info.uid, gid: info.gid, confineTo: rootfs };
  }
  if (entry.kind === 'symlink') return host.fs.writeSymlink(hostPath, entry.target, owner);
  return host.fs.writeFile(hostPath, entry.content, { mode: entry.mode, dirMode: entry.dirMode, ...owner });
}

/** Removes a file nspawnctl recorded; refuses anything outside the directories it manages. */
export async function removeOwnedFile(host: Host, path: string): Promise<boolean> {
  if (!OWNED_ROOTS.some((root) => isWithin(path, root)) || path.includes('/../')) {
    throw new NspawnctlError(`refusing to remove ${path}: outside the directories nspawnctl manages`);
  }
  const removed = await host.fs.removeFile(path, { confineTo: machineDirOf(path) });
  // Directories only nspawnctl's files live in go with their last file.
  const dir = posix.dirname(path);
  if (removed && EMPTIED_DIRS.some((re) => re.test(dir)) && (await host.fs.listDir(dir)).length === 0) await host.fs.removeTree(dir);
  return removed;
}

const EMPTIED_DIRS = [/^\/etc\/systemd\/system\/systemd-nspawn@[a-z0-9-]+\.service\.d$/, new RegExp(`^${FILTER_DIR}$`)];
