// Checks, before anything changes, that every bind mount's host side exists: a mistyped source
// would otherwise be mounted into the machine as a new empty directory. An entry that says
// `create: true` is created by apply instead (the plan's create-bind-source step).
import { PreflightError } from '../errors';
import { Host } from '../host/host';
import { Manifest } from '../manifest/schema';

export interface BindProblem {
  what: string;
  fix: string;
}

/** One problem per bind whose host path is missing (or cannot be looked at), in manifest order. */
export async function findBindProblems(host: Host, manifest: Manifest): Promise<BindProblem[]> {
  const problems: BindProblem[] = [];
  for (const m of Object.values(manifest.machines)) {
    for (const [i, b] of m.bind.entries()) {
      const where = `machine ${m.name}, bind[${i}] (${b.source} -> ${b.target})`;
      let found;
      try {
        // Followed like systemd-nspawn will: a dangling symlink is as missing as no file at all.
        found = await host.fs.statResolved(b.source);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const reason = code === 'EACCES' ? 'permission denied' : (code ?? (err as Error).message);
        problems.push({ what: `${where}: ${b.source} cannot be checked (${reason})`, fix: `Run nspawnctl as root, and check ${b.source} and the directories above it.` });
        continue;
      }
      if (found || b.create) continue;
      problems.push({
        what: `${where}: ${b.source} does not exist on this host`,
        fix: `Create ${b.source}, correct machines.${m.name}.bind[${i}], or let apply create it empty: { host: ${b.source}, machine: ${b.target}${b.readOnly ? ', readOnly: true' : ''}, create: true }`,
      });
    }
  }
  return problems;
}

/** Throws PreflightError (exit 3: it is the host that lacks the directory, not the manifest that is malformed). */
export async function assertBindSourcesExist(host: Host, manifest: Manifest): Promise<void> {
  const problems = await findBindProblems(host, manifest);
  if (problems.length > 0) throw new PreflightError(problems);
}
