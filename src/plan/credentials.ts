// Checks, before anything changes, that each credential's host file can be handed to its machine:
// it exists, is a regular file once symlinks are followed, is not open to every user, and does
// not lie where a machine could swap it. Only metadata is looked at; the content is never read.
import { PreflightError } from '../errors';
import { FileInfo } from '../host/fs';
import { Host } from '../host/host';
import { isWithin, MACHINES_DIR } from '../host/paths';
import { Manifest } from '../manifest/schema';

export interface CredentialProblem {
  what: string;
  fix: string;
}

/** Problems of every credential file in `manifest`, one per file and credential name. */
export async function findCredentialProblems(host: Host, manifest: Manifest): Promise<CredentialProblem[]> {
  // A credential from `defaults:` is the same file for every machine: it is checked and reported once.
  const uses = new Map<string, { name: string; file: string; machines: string[] }>();
  for (const m of Object.values(manifest.machines)) {
    for (const name of Object.keys(m.credentials).sort()) {
      const file = m.credentials[name];
      const key = `${name}\0${file}`;
      if (!uses.has(key)) uses.set(key, { name, file, machines: [] });
      uses.get(key)!.machines.push(m.name);
    }
  }
  // A machine may replace files in what it mounts read-write (the schema checks the paths as
  // written; this checks where their symlinks lead).
  const writable = Object.values(manifest.machines).flatMap((m) => m.bind.filter((b) => !b.readOnly).map((b) => ({ machine: m.name, dir: b.source })));
  // And a machine reads what it mounts: a credential inside another machine's bind (read-only
  // too; its root sees the file as its own through the idmapped mount) is that machine's too.
  const mounted = Object.values(manifest.machines).flatMap((m) => m.bind.map((b) => ({ machine: m.name, dir: b.source })));

  const problems: CredentialProblem[] = [];
  for (const { name, file, machines } of uses.values()) {
    const where = `${machines.length === 1 ? 'machine' : 'machines'} ${machines.join(', ')}, credential ${name}: ${file}`;
    const inManifest = `credentials.${name} of machine ${machines[0]}`;
    let found: { path: string; info: FileInfo } | undefined;
    try {
      found = await host.fs.statResolved(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const reason = code === 'EACCES' ? 'permission denied' : (code ?? (err as Error).message);
      problems.push({ what: `${where} cannot be checked (${reason})`, fix: `Run nspawnctl as root (credential files are usually readable by root only), and check ${file} and the symlinks on its way.` });
      continue;
    }
    if (!found) {
      problems.push({ what: `${where} does not exist`, fix: `Create ${file} (owned by root, chmod 0600), or correct ${inManifest}.` });
      continue;
    }
    const target = found.path;
    const via = target === file ? '' : ` (a symlink to ${target})`;
    if (found.info.type !== 'file') {
      const kind = found.info.type === 'dir' ? 'a directory' : 'a special file';
      problems.push({ what: `${where}${via} is ${kind}, not a regular file`, fix: `Point ${inManifest} at a regular file: systemd-nspawn loads one file per credential.` });
      continue;
    }
    const rw = writable.find((w) => isWithin(target, w.dir));
    const swappable = isWithin(target, MACHINES_DIR)
      ? `inside ${MACHINES_DIR}: a machine could replace it`
      : rw
        ? `inside ${rw.dir}, which machine ${rw.machine} mounts read-write: that machine could replace it`
        : undefined;
    if (swappable) {
      problems.push({
        what: `${where}${via} is ${swappable} with a symlink to any host file`,
        fix: 'Keep credential files in a directory only root can write, outside every machine, such as /etc/nspawnctl/credentials.',
      });
      continue;
    }
    const seenBy = mounted.find((b) => !machines.includes(b.machine) && isWithin(target, b.dir));
    if (seenBy) {
      problems.push({
        what: `${where}${via} is inside ${seenBy.dir}, which machine ${seenBy.machine} mounts: that machine could read it`,
        fix: 'Keep credential files in a directory only root can read, outside every bind mount source, such as /etc/nspawnctl/credentials.',
      });
      continue;
    }
    const open = [found.info.mode & 0o004 ? 'readable' : '', found.info.mode & 0o002 ? 'writable' : ''].filter((o) => o !== '');
    if (open.length > 0) {
      const mode = `0${found.info.mode.toString(8).padStart(3, '0')}`;
      problems.push({ what: `${where}${via} is ${open.join(' and ')} by every user on this host (mode ${mode})`, fix: `chmod o-${open.map((o) => o[0]).join('')} ${file}` });
    }
  }
  return problems;
}

/** Throws PreflightError (exit 3, "this host is not ready") when a credential file cannot be used. */
export async function assertCredentialsUsable(host: Host, manifest: Manifest): Promise<void> {
  const problems = await findCredentialProblems(host, manifest);
  if (problems.length > 0) throw new PreflightError(problems);
}
