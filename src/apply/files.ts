// Writes generated files and symlinks: host files through the rooted filesystem, files inside a
// machine through its RootfsHandle, with the ownership its user namespace needs.
import { posix } from 'node:path';
import { NspawnctlError } from '../errors';
import { Host, withRootfs } from '../host/host';
import { isWithin, OWNED_ROOTS, splitMachinePath } from '../host/paths';
import { RootfsHandle } from '../host/rootfs-handle';
import { DesiredEntry } from '../render/desired';
import { RootfsEntry } from '../render/rootfs-files';
import { FILTER_DIR } from '../render/filter';
import { serviceOfDropIn } from '../manifest/services';

/** Writes one entry outside any machine (a .nspawn file, a drop-in, a networkd file). */
export async function writeHostEntry(host: Host, entry: DesiredEntry): Promise<boolean> {
  if (entry.kind === 'symlink') return host.fs.writeSymlink(entry.hostPath, entry.target, {});
  return host.fs.writeFile(entry.hostPath, entry.content, { mode: entry.mode, dirMode: entry.dirMode });
}

/**
 * Writes one entry inside a machine. Its owner is the rootfs' top directory owner: 0 on disk
 * when nspawn maps the tree with an idmapped mount, the UID base once the tree was shifted, so
 * root inside the machine owns what nspawnctl wrote either way.
 */
export async function writeRootfsEntry(rootfs: RootfsHandle, entry: RootfsEntry): Promise<boolean> {
  const top = await rootfs.top();
  const owner = { uid: top.uid, gid: top.gid };
  if (entry.kind === 'symlink') return rootfs.writeSymlink(entry.path, entry.target, owner);
  return rootfs.writeFile(entry.path, entry.content, { mode: entry.mode, dirMode: entry.dirMode, ...owner });
}

/** Removes a file nspawnctl recorded; refuses anything outside the directories it manages. */
export async function removeOwnedFile(host: Host, path: string): Promise<boolean> {
  if (!OWNED_ROOTS.some((root) => isWithin(path, root)) || path.includes('/../')) {
    throw new NspawnctlError(`refusing to remove ${path}: outside the directories nspawnctl manages`);
  }
  const inside = splitMachinePath(path);
  if (inside) {
    return withRootfs(host, inside.dir, async (rootfs) => {
      const removed = await rootfs.removeFile(inside.path);
      // A service's drop-in directory goes with nspawnctl's drop-in when nothing else is in it.
      if (removed && serviceOfDropIn(inside.path)) await rootfs.removeEmptyDir(posix.dirname(inside.path));
      return removed;
    });
  }
  const removed = await host.fs.removeFile(path);
  // Directories only nspawnctl's files live in go with their last file.
  const dir = posix.dirname(path);
  if (removed && EMPTIED_DIRS.some((re) => re.test(dir)) && (await host.fs.listDir(dir)).length === 0) await host.fs.removeTree(dir);
  return removed;
}

const EMPTIED_DIRS = [/^\/etc\/systemd\/system\/systemd-nspawn@[a-z0-9-]+\.service\.d$/, new RegExp(`^${FILTER_DIR}$`)];
