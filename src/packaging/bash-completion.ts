// The bash completion file, generated from the command list: command words and topics, each
// command's flags (and the values of flags that list their options), manifest files for FILE
// arguments, and the names of managed machines (their records) for NAME and MACHINE arguments.
import { ArgDoc, CommandDoc, FlagDoc } from './commands';

export interface CompletionInput {
  bin: string;
  commands: CommandDoc[];
  /** The directory of the machine records: one NAME.json per managed machine. */
  machineRecordsDir: string;
  source: string;
}

/** How an argument's value is completed. */
type ValueKind = 'machine' | 'manifest' | 'dir' | 'file' | 'none' | { options: readonly string[] };

function argKind(arg: ArgDoc): ValueKind {
  if (arg.options?.length) return { options: arg.options };
  if (/^(name|machine)s?$/i.test(arg.name)) return 'machine';
  if (/file|manifest/i.test(arg.name)) return 'manifest';
  if (/dir/i.test(arg.name)) return 'dir';
  return 'none';
}

function flagKind(flag: FlagDoc): ValueKind {
  if (flag.options?.length) return { options: flag.options };
  if (/(^|-)(manifest|file)$/.test(flag.name)) return 'manifest';
  if (/(^|-)(dir|out)$/.test(flag.name)) return 'dir';
  if (/(^|-)(machine|name)$/.test(flag.name)) return 'machine';
  return 'none';
}

/** A bash single-quoted word. */
function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Option values that survive bash's word splitting unquoted (the others are not offered). */
function plainOptions(options: readonly string[]): string[] {
  return options.filter((o) => /^[A-Za-z0-9_.,:@+=%/-]+$/.test(o));
}

/** The words that name a kind to FN_values, e.g. "machine" or "options a b". */
function kindWords(kind: ValueKind): string {
  return typeof kind === 'object' ? ['options', ...plainOptions(kind.options)].join(' ') : kind;
}

function flagWords(flag: FlagDoc): string[] {
  return [`--${flag.name}`, ...(flag.negatable ? [`--no-${flag.name}`] : []), ...(flag.char ? [`-${flag.char}`] : [])];
}

/** The case branch that completes after a command's words. */
function commandBranch(fn: string, command: CommandDoc): string[] {
  const flags = command.flags.flatMap(flagWords);
  const valueFlags = command.flags.filter((f) => f.takesValue);
  const lines = [`    ${quote(command.words.join(' '))})`];
  lines.push(`      flags=(${[...flags, '--help'].map(quote).join(' ')})`);
  if (valueFlags.length) {
    lines.push('      case $prev in');
    for (const flag of valueFlags) {
      const names = [`--${flag.name}`, ...(flag.char ? [`-${flag.char}`] : [])];
      lines.push(`        ${names.map(quote).join('|')}) ${fn}_values ${kindWords(flagKind(flag))}; return ;;`);
    }
    lines.push('      esac');
    lines.push(`      value_flags=(${valueFlags.flatMap((f) => [`--${f.name}`, ...(f.char ? [`-${f.char}`] : [])]).map(quote).join(' ')})`);
  }
  lines.push(`      args=(${command.args.map((a) => quote(kindWords(argKind(a)))).join(' ')})`);
  if (!command.strict) lines.push('      strict=no');
  lines.push('      ;;');
  return lines;
}

/** Bash source for /usr/share/bash-completion/completions/BIN. */
export function renderBashCompletion(input: CompletionInput): string {
  const { bin } = input;
  const fn = `_${bin.replace(/[^A-Za-z0-9_]/g, '_')}`;
  // Every prefix of every command's words: what may follow it ("" -> top-level words).
  const next = new Map<string, Set<string>>();
  for (const command of input.commands) {
    for (let i = 0; i < command.words.length; i++) {
      const prefix = command.words.slice(0, i).join(' ');
      if (!next.has(prefix)) next.set(prefix, new Set());
      next.get(prefix)?.add(command.words[i]);
    }
  }
  const prefixes = [...next.keys()].sort();
  const known = [...new Set([...prefixes.filter((p) => p !== ''), ...input.commands.map((c) => c.words.join(' '))])].sort();
  const lines = [
    `# bash completion for ${bin}(1). Generated from ${input.source} by scripts/package.sh; do not edit.`,
    '',
    `# Managed machines: the records in ${input.machineRecordsDir} (readable by root only is fine:`,
    '# then nothing is offered).',
    `${fn}_machines() {`,
    '  local f',
    `  for f in ${input.machineRecordsDir}/*.json; do`,
    '    [[ -e $f ]] || continue',
    '    f=${f##*/}',
    '    printf \'%s\\n\' "${f%.json}"',
    '  done',
    '}',
    '',
    '# Fills COMPREPLY for a value of kind $1 (machine, manifest, dir, file, none, options WORD...).',
    `${fn}_values() {`,
    '  local kind=$1; shift',
    '  case $kind in',
    `    machine) mapfile -t COMPREPLY < <(compgen -W "$(${fn}_machines)" -- "$cur") ;;`,
    '    manifest)',
    '      compopt -o filenames 2>/dev/null',
    '      mapfile -t COMPREPLY < <(compgen -d -- "$cur"; compgen -f -X \'!*.@(yaml|yml)\' -- "$cur") ;;',
    '    dir) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;',
    '    file) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;',
    '    options) mapfile -t COMPREPLY < <(compgen -W "$*" -- "$cur") ;;',
    '    *) COMPREPLY=() ;;',
    '  esac',
    '}',
    '',
    `${fn}() {`,
    '  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}',
    '  local -a words=() flags=() value_flags=() args=()',
    '  local strict=yes i f w path="" positional=0 skip=no',
    '  shopt -s extglob',
    '  COMPREPLY=()',
    '  # The command: the longest run of known command words after the binary.',
    '  for ((i = 1; i < COMP_CWORD; i++)); do',
    '    w=${COMP_WORDS[i]}',
    '    [[ $w == -* ]] && break',
    `    case "\${path:+$path }$w" in`,
    ...(known.length ? [`      ${known.map(quote).join('|')}) path="\${path:+$path }$w" ;;`] : []),
    '      *) break ;;',
    '    esac',
    '  done',
    '  case $path in',
    ...input.commands.flatMap((c) => commandBranch(fn, c)),
    '    *)',
    '      # A topic or nothing yet: the words that may follow.',
    '      case $path in',
    ...prefixes.map((p) => `        ${quote(p)}) words=(${[...(next.get(p) ?? [])].sort().map(quote).join(' ')}) ;;`),
    '      esac',
    `      if [[ -z $path ]]; then words+=(--help --version); fi`,
    '      mapfile -t COMPREPLY < <(compgen -W "${words[*]}" -- "$cur")',
    '      return ;;',
    '  esac',
    '  # Count the positional arguments before the cursor (a value flag eats the next word).',
    '  local -a typed=($path)',
    '  for ((i = ${#typed[@]} + 1; i < COMP_CWORD; i++)); do',
    '    w=${COMP_WORDS[i]}',
    '    if [[ $skip == yes ]]; then skip=no; continue; fi',
    '    if [[ $w == -- ]]; then [[ $strict == no ]] && { compopt -o default 2>/dev/null; COMPREPLY=(); return; }; continue; fi',
    '    if [[ $w == -* ]]; then',
    '      for f in "${value_flags[@]}"; do [[ $w == "$f" ]] && skip=yes; done',
    '      continue',
    '    fi',
    '    positional=$((positional + 1))',
    '  done',
    '  if [[ $cur == -* ]]; then',
    '    mapfile -t COMPREPLY < <(compgen -W "${flags[*]}" -- "$cur")',
    '  elif ((positional < ${#args[@]})); then',
    `    ${fn}_values \${args[positional]}`,
    '  fi',
    '}',
    `complete -F ${fn} ${bin}`,
  ];
  return `${lines.join('\n')}\n`;
}
