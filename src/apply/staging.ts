// Removing staging directories safely. mmdebstrap mounts /proc, /sys and /dev inside the
// directory it builds; if it was killed, those mounts may remain, and a recursive delete would
// reach into the host's /dev. They are unmounted first, deepest first.
import { NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { isWithin, MACHINES_DIR } from '../host/paths';

/** Mount points at or below `dir`, deepest first, from /proc/self/mountinfo. */
export async function mountsUnder(host: Host, dir: string): Promise<string[]> {
  const mountinfo = (await host.fs.readText('/proc/self/mountinfo')) ?? '';
  return mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined && p !== '')
    .map((p) => p.replace(/\\040/g, ' '))
    .filter((p) => isWithin(p, dir))
    .sort((a, b) => b.length - a.length);
}

/** Removes a staging directory (never anything outside /var/lib/machines), unmounting first. */
export async function removeStaging(host: Host, dir: string): Promise<void> {
  if (!isWithin(dir, MACHINES_DIR) || dir === MACHINES_DIR || !/\/\.nspawnctl-[^/]+\.staging$/.test(dir)) {
    throw new NspawnctlError(`internal: ${dir} is not a staging directory`);
  }
  if (!(await host.fs.stat(dir))) return;
  for (const mount of await mountsUnder(host, dir)) {
    await host.runner.run('umount', ['--lazy', mount]);
  }
  const left = await mountsUnder(host, dir);
  if (left.length > 0) throw new NspawnctlError(`cannot remove ${dir}: still mounted: ${left.join(', ')}`);
  await host.fs.removeTree(dir);
}
