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
  await removeUnmounting(host, dir);
}

/**
 * Processes still working in `dir` (their root, working directory or command line is in it):
 * the orphans of a killed run, such as mmdebstrap's apt and dpkg. Under the host lock no other
 * nspawnctl uses a staging or cache build directory, so these may be stopped.
 */
export async function processesUsing(host: Host, dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await host.fs.listDir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === host.pid) continue;
    const root = await host.fs.readLink(`/proc/${entry}/root`).catch(() => undefined);
    const cwd = await host.fs.readLink(`/proc/${entry}/cwd`).catch(() => undefined);
    const cmdline = ((await host.fs.readText(`/proc/${entry}/cmdline`).catch(() => undefined)) ?? '').split('\0');
    if ((root && root !== '/' && isWithin(root, dir)) || (cwd && isWithin(cwd, dir)) || cmdline.some((a) => isWithin(a, dir))) {
      pids.push(Number(entry));
    }
  }
  return pids;
}

/** Removes a directory tree that a killed bootstrapper may have left mounts and processes in. */
export async function removeUnmounting(host: Host, dir: string): Promise<void> {
  if (!(await host.fs.stat(dir))) return;
  const orphans = await processesUsing(host, dir);
  if (orphans.length > 0) {
    await host.runner.run('kill', ['-KILL', ...orphans.map(String)], { allowFailure: true });
    // Give the kernel a moment to tear them down before their files are removed.
    for (let i = 0; i < 50 && (await processesUsing(host, dir)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  }
  for (const mount of await mountsUnder(host, dir)) {
    await host.runner.run('umount', ['--lazy', mount]);
  }
  const left = await mountsUnder(host, dir);
  if (left.length > 0) throw new NspawnctlError(`cannot remove ${dir}: still mounted: ${left.join(', ')}`);
  await host.fs.removeTree(dir);
}
