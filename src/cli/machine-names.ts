// Machine-name completion in one place: which arguments are managed machines, and the shell
// function that lists them. `nspawnctl autocomplete` builds its bash and zsh scripts from this,
// and so can any static completion file (the Debian package's): its output for bash is one.
import { MACHINE_RECORDS_DIR } from '../host/paths';
import { MACHINE_NAME } from '../manifest/schema';

/** Command id -> the argument that names a machine nspawnctl manages. */
export const MACHINE_ARGUMENTS: Readonly<Record<string, string>> = {
  audit: 'machines',
  backup: 'name',
  destroy: 'name',
  exec: 'name',
  logs: 'name',
  rebuild: 'name',
  rollback: 'name',
  shell: 'name',
  status: 'name',
  'profile:syscalls': 'machine',
};

/** The shell function that prints the managed machines, one per line. */
export const MACHINE_NAMES_FUNCTION = '_nspawnctl_machines';

/**
 * A bash function (zsh runs it through bashcompinit) printing the machines nspawnctl manages: the
 * names of the records in `dir` (MACHINE_RECORDS_DIR, /var/lib/nspawnctl/machines, readable by root).
 * Only names a machine can have are printed, so nothing else in the directory reaches a completion
 * (compgen -W expands what it is given).
 */
export function renderMachineNamesFunction(dir: string = MACHINE_RECORDS_DIR): string {
  const pattern = MACHINE_NAME.source;
  if (pattern.includes("'") || dir.includes("'")) throw new Error('internal: a quote in the machine name pattern or records directory');
  return [
    `${MACHINE_NAMES_FUNCTION}() {`,
    `  local f n re='${pattern}'`,
    `  for f in '${dir}'/*.json; do`,
    '    n=${f##*/}',
    '    n=${n%.json}',
    `    [[ -f $f && $n =~ $re ]] && printf '%s\\n' "$n"`,
    '  done',
    '  return 0',
    '}',
  ].join('\n');
}
