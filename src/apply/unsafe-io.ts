// Building a root filesystem that nothing uses yet (a base image under its hidden .KEY.building
// name, a machine's hidden staging directory) without dpkg's fsyncs, then syncing its filesystem
// once, just before the rename that publishes it. A crash or kill before that rename leaves only
// the hidden directory, which is never resumed and is removed by the next run; so the thousands of
// fsyncs dpkg makes while it unpacks (one per file, and more for its database) protect nothing
// there. The single syncfs(2) before the rename makes what is published durable, the copies of a
// base image included (cp never syncs).
import { findProgram, Host } from '../host/host';
import { RootfsHandle } from '../host/rootfs-handle';
import type { Bootstrapper } from './bootstrap';

/** mmdebstrap's own hook directory that runs dpkg under eatmydata (Debian's mmdebstrap package). */
export const EATMYDATA_HOOK_DIR = '/usr/share/mmdebstrap/hooks/eatmydata';

/**
 * What that hook runs on the host besides apt and dpkg: dpkg-architecture, from dpkg-dev. (It
 * downloads eatmydata into the tree being built, so the host needs no eatmydata package.)
 */
export const EATMYDATA_HOOK_NEEDS = 'dpkg-architecture';

/** The file mmdebstrap writes its --dpkgopt options into, inside the tree it builds. */
export const MMDEBSTRAP_DPKG_CFG = '/etc/dpkg/dpkg.cfg.d/99mmdebstrap';

/**
 * dpkg reads every file of /etc/dpkg/dpkg.cfg.d as options. debootstrap has no option to pass
 * dpkg one, so this file is put into its empty target before it starts (debootstrap's dpkg runs
 * inside the target and reads it there) and removed as soon as the bootstrap is done.
 */
export const UNSAFE_IO_DPKG_CFG = '/etc/dpkg/dpkg.cfg.d/00nspawnctl-unsafe-io';

/** dpkg's option: no fsync of each unpacked file (it still syncs its own database). */
export const FORCE_UNSAFE_IO = 'force-unsafe-io';

/** apt-get's way to give dpkg the same option, for packages installed on top of a copied base. */
export const APT_UNSAFE_IO = ['-o', `Dpkg::Options::=--${FORCE_UNSAFE_IO}`];

/**
 * How a bootstrap skips dpkg's syncs: `eatmydata` turns every fsync and sync of dpkg into
 * nothing (mmdebstrap's hook, when the host can run it); `force-unsafe-io` is dpkg's own option,
 * which needs nothing on the host but leaves dpkg's database syncs.
 */
export type UnsafeIo = 'eatmydata' | 'force-unsafe-io';

/** eatmydata for mmdebstrap when the host has its hook and what the hook runs; else dpkg's option. */
export async function chooseUnsafeIo(host: Host, tool: Bootstrapper): Promise<UnsafeIo> {
  if (tool !== 'mmdebstrap') return 'force-unsafe-io';
  if ((await host.fs.stat(EATMYDATA_HOOK_DIR))?.type !== 'dir') return 'force-unsafe-io';
  return (await findProgram(host, EATMYDATA_HOOK_NEEDS)) ? 'eatmydata' : 'force-unsafe-io';
}

/** mmdebstrap's arguments for the chosen way (debootstrap takes none: see UNSAFE_IO_DPKG_CFG). */
export function unsafeIoArgs(tool: Bootstrapper, unsafeIo: UnsafeIo): string[] {
  if (tool !== 'mmdebstrap') return [];
  return unsafeIo === 'eatmydata' ? [`--hook-dir=${EATMYDATA_HOOK_DIR}`] : [`--dpkgopt=${FORCE_UNSAFE_IO}`];
}

/** Puts dpkg's option into a tree before debootstrap runs in it (see UNSAFE_IO_DPKG_CFG). */
export async function writeUnsafeIoConfig(tree: RootfsHandle): Promise<void> {
  await tree.writeFile(UNSAFE_IO_DPKG_CFG, `# nspawnctl: removed once the bootstrap is done\n${FORCE_UNSAFE_IO}\n`, { mode: 0o644 });
}

/**
 * Removes what the bootstrap left of the unsafe I/O: a machine's own dpkg must sync as usual
 * once it runs, so neither file stays in a published tree.
 */
export async function dropUnsafeIoConfig(tree: RootfsHandle): Promise<void> {
  await tree.removeFile(MMDEBSTRAP_DPKG_CFG);
  await tree.removeFile(UNSAFE_IO_DPKG_CFG);
}

/**
 * syncfs(2) on the filesystem holding `dir` (coreutils' sync --file-system): everything written
 * there reaches the disk before the caller renames `dir` into place.
 */
export async function syncFilesystem(host: Host, dir: string): Promise<void> {
  await host.runner.run('sync', ['--file-system', dir]);
}
