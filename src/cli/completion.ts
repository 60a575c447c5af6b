// Shell completion scripts, built from the command list oclif has (oclif.manifest.json): commands
// and topics, each command's flags, option values, and machine names (machine-names.ts). The
// script needs no nspawnctl at TAB time, so completing costs nothing.
import { MACHINE_ARGUMENTS, MACHINE_NAMES_FUNCTION, renderMachineNamesFunction } from './machine-names';

export type CompletionShell = 'bash' | 'zsh';
export const COMPLETION_SHELLS: readonly CompletionShell[] = ['bash', 'zsh'];

/** What a completion needs of a command: oclif's cached command (manifest entry) has these. */
export interface CompletableCommand {
  id: string;
  hidden?: boolean;
  flags: Record<string, { name: string; char?: string; type: string; allowNo?: boolean; hidden?: boolean; options?: readonly string[] }>;
  args: Record<string, { name: string; options?: readonly string[] }>;
}

export interface CompletionOptions {
  bin: string;
  version: string;
  /** Where the machine records are (tests point it elsewhere). */
  machinesDir?: string;
}

/** One `case` branch per (what, command): "sub:host" -> "init", "flags:apply" -> "--cache ...". */
function completionTable(commands: readonly CompletableCommand[]): [string, string][] {
  const visible = commands.filter((c) => !c.hidden);
  const rows: [string, string][] = [];
  const spaced = (id: string) => id.split(':').join(' ');
  // Subcommands: the next word after each prefix (the empty prefix is the top level).
  const next = new Map<string, Set<string>>();
  for (const c of visible) {
    const words = c.id.split(':');
    for (let k = 0; k < words.length; k++) {
      const prefix = words.slice(0, k).join(' ');
      if (!next.has(prefix)) next.set(prefix, new Set());
      next.get(prefix)!.add(words[k]);
    }
  }
  for (const prefix of [...next.keys()].sort()) rows.push([`sub:${prefix}`, [...next.get(prefix)!].sort().join(' ')]);
  rows.push(['flags:', '--help --version']);
  for (const c of [...visible].sort((a, b) => a.id.localeCompare(b.id))) {
    const flags = Object.values(c.flags).filter((f) => !f.hidden);
    const names = ['--help', ...flags.flatMap((f) => [`--${f.name}`, ...(f.allowNo ? [`--no-${f.name}`] : []), ...(f.char ? [`-${f.char}`] : [])])];
    rows.push([`flags:${spaced(c.id)}`, [...new Set(names)].sort().join(' ')]);
    const valued = flags.filter((f) => f.type === 'option');
    if (valued.length) rows.push([`values:${spaced(c.id)}`, valued.flatMap((f) => [`--${f.name}`, ...(f.char ? [`-${f.char}`] : [])]).sort().join(' ')]);
    for (const f of valued.filter((v) => v.options?.length)) rows.push([`value--${f.name}:${spaced(c.id)}`, [...f.options!].join(' ')]);
    Object.values(c.args).forEach((a, i) => {
      if (MACHINE_ARGUMENTS[c.id] === a.name) rows.push([`arg${i}:${spaced(c.id)}`, `$(${MACHINE_NAMES_FUNCTION})`]);
      else if (a.options?.length) rows.push([`arg${i}:${spaced(c.id)}`, a.options.join(' ')]);
    });
  }
  return rows;
}

/** The bash completion script; zsh's is this behind bashcompinit. */
export function renderBashCompletion(commands: readonly CompletableCommand[], options: CompletionOptions): string {
  const bin = options.bin;
  const fn = `_${bin.replace(/[^A-Za-z0-9_]/g, '_')}`;
  for (const [, words] of completionTable(commands)) {
    if (!/^[A-Za-z0-9 _.:=@%+,/$()-]*$/.test(words)) throw new Error(`internal: cannot quote completion words ${JSON.stringify(words)}`);
  }
  const cases = completionTable(commands).map(([key, words]) => `    '${key}') echo ${words.startsWith('$(') ? `"${words}"` : `'${words}'`} ;;`);
  return [
    `${fn}_words() {`,
    '  # $1: sub (the words that may follow the command words in $2), flags, values (the flags that',
    '  # take a value), value--FLAG (the values of --FLAG), argN (completions of argument N).',
    '  case "$1:$2" in',
    ...cases,
    '  esac',
    '}',
    '',
    renderMachineNamesFunction(options.machinesDir),
    '',
    `${fn}() {`,
    '  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}',
    "  local cmd='' nargs=0 helping=0 i w words=''",
    '  COMPREPLY=()',
    '  # Which command the words before the cursor name, and how many of its arguments they hold.',
    '  for ((i = 1; i < COMP_CWORD; i++)); do',
    '    w=${COMP_WORDS[i]}',
    '    if [[ $w == -- ]]; then',
    "      return 0 # the rest is another program's command line (profile syscalls): files",
    '    elif [[ $w == -* ]]; then',
    '      if [[ ${COMP_WORDS[i+1]} == = ]]; then',
    '        ((i += 2)) # --flag=value (bash splits the word at "=")',
    `      elif [[ " $(${fn}_words values "$cmd") " == *" $w "* ]]; then`,
    '        ((i += 1)) # --flag value',
    '      fi',
    `    elif [[ $nargs == 0 && -z $cmd && $helping == 0 && $w == help ]]; then`,
    '      helping=1 # help COMMAND...: complete command words only',
    `    elif [[ $nargs == 0 && " $(${fn}_words sub "$cmd") " == *" $w "* ]]; then`,
    '      cmd=${cmd:+$cmd }$w',
    '    else',
    '      ((nargs += 1))',
    '    fi',
    '  done',
    '  if [[ $prev == = ]]; then',
    `    prev=\${COMP_WORDS[COMP_CWORD-2]}`,
    `    words=$(${fn}_words "value$prev" "$cmd")`,
    '  elif [[ $cur == = ]]; then',
    `    words=$(${fn}_words "value$prev" "$cmd")`,
    '    cur=',
    `  elif [[ " $(${fn}_words values "$cmd") " == *" $prev "* ]]; then`,
    `    words=$(${fn}_words "value$prev" "$cmd")`,
    '  elif [[ $cur == -* ]]; then',
    `    [[ $helping == 1 ]] || words=$(${fn}_words flags "$cmd")`,
    '  else',
    `    [[ $nargs == 0 ]] && words=$(${fn}_words sub "$cmd")`,
    `    [[ $helping == 1 || -z $cmd ]] || words="$words $(${fn}_words "arg$nargs" "$cmd")"`,
    '  fi',
    '  COMPREPLY=($(compgen -W "$words" -- "$cur"))',
    '  return 0',
    '}',
    '',
    // Nothing to offer (a manifest FILE, --out DIR): the shell completes file names.
    `complete -o default -F ${fn} ${bin}`,
    '',
  ].join('\n');
}

/** The script for `shell`, with a header saying how to load it. */
export function renderCompletion(shell: CompletionShell, commands: readonly CompletableCommand[], options: CompletionOptions): string {
  const { bin, version } = options;
  const machines = Object.keys(MACHINE_ARGUMENTS).map((id) => id.split(':').join(' '));
  const what = `commands, flags, and the managed machines for ${machines.slice(0, -1).join(', ')} and ${machines[machines.length - 1]}`;
  if (shell === 'bash') {
    return [
      `# bash completion for ${bin} ${version}: ${what}.`,
      `# Printed by \`${bin} autocomplete bash\`. Load it into this shell with`,
      `#   source <(${bin} autocomplete bash)`,
      '# and into every new one by saving it where bash-completion looks:',
      `#   ${bin} autocomplete bash > ~/.local/share/bash-completion/completions/${bin}`,
      '',
      renderBashCompletion(commands, options),
    ].join('\n');
  }
  return [
    `# zsh completion for ${bin} ${version}: ${what}.`,
    `# Printed by \`${bin} autocomplete zsh\`. Load it from ~/.zshrc with`,
    `#   source <(${bin} autocomplete zsh)`,
    "# It is the bash completion run by zsh's bashcompinit, so both shells complete alike.",
    '(( $+functions[compdef] )) || { autoload -U compinit && compinit }',
    'autoload -U +X bashcompinit && bashcompinit',
    '',
    renderBashCompletion(commands, options),
  ].join('\n');
}
