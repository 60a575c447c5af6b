// The commands as the packaging generators (man page, bash completion) see them: read from
// oclif.manifest.json files, so a command added to the CLI appears in both without editing them.

/** A flag as oclif.manifest.json stores it (the keys the generators use). */
export interface ManifestFlag {
  name: string;
  type: 'boolean' | 'option';
  char?: string;
  summary?: string;
  description?: string;
  helpValue?: string | string[];
  options?: readonly string[];
  default?: unknown;
  allowNo?: boolean;
  hidden?: boolean;
  multiple?: boolean;
  required?: boolean;
}

/** A positional argument as oclif.manifest.json stores it. */
export interface ManifestArg {
  name: string;
  description?: string;
  required?: boolean;
  options?: readonly string[];
  hidden?: boolean;
}

export type ManifestExample = string | { description?: string; command: string };

/** A command as oclif.manifest.json stores it. */
export interface ManifestCommand {
  id: string;
  summary?: string;
  description?: string;
  examples?: ManifestExample[];
  flags?: Record<string, ManifestFlag>;
  args?: Record<string, ManifestArg>;
  hidden?: boolean;
  aliases?: string[];
  strict?: boolean;
}

/** The whole oclif.manifest.json of the CLI or of one of its plugins. */
export interface OclifManifest {
  version?: string;
  commands: Record<string, ManifestCommand>;
}

export interface FlagDoc {
  /** Long name without dashes. */
  name: string;
  char?: string;
  /** True when the flag takes a value. */
  takesValue: boolean;
  /** The value's placeholder in help, e.g. "FILE" or "a|b". */
  valueName?: string;
  options?: readonly string[];
  /** Also accepted as --no-NAME. */
  negatable: boolean;
  description: string;
  default?: string;
}

export interface ArgDoc {
  name: string;
  description: string;
  required: boolean;
  options?: readonly string[];
}

export interface CommandDoc {
  /** The words typed after the binary: ["host", "init"]. */
  words: string[];
  summary: string;
  /** The longer text, without the summary; may be empty. */
  description: string;
  args: ArgDoc[];
  flags: FlagDoc[];
  examples: { command: string; description?: string }[];
  /** False when the command takes arguments after its own (e.g. `-- CMD ARGS...`). */
  strict: boolean;
}

/** Replaces the EJS placeholders oclif expands in help text. */
function expandTemplates(text: string, bin: string, words: string[]): string {
  return text.replace(/<%=\s*config\.bin\s*%>/g, bin).replace(/<%=\s*command\.id\s*%>/g, words.join(' '));
}

function defaultText(value: unknown): string | undefined {
  if (value === undefined || value === null || value === false || typeof value === 'function') return undefined;
  if (Array.isArray(value)) return value.length ? value.join(',') : undefined;
  return String(value);
}

/**
 * The visible commands of the CLI's manifest and its plugins' manifests, sorted by the words
 * typed; a command id defined twice is taken from the first manifest that has it.
 */
export function commandDocs(manifests: OclifManifest[], bin: string): CommandDoc[] {
  const seen = new Map<string, CommandDoc>();
  for (const manifest of manifests) {
    for (const command of Object.values(manifest.commands)) {
      if (command.hidden || seen.has(command.id)) continue;
      seen.set(command.id, commandDoc(command, bin));
    }
  }
  return [...seen.values()].sort((a, b) => a.words.join(' ').localeCompare(b.words.join(' ')));
}

function commandDoc(command: ManifestCommand, bin: string): CommandDoc {
  const words = command.id.split(':');
  const expand = (text: string) => expandTemplates(text, bin, words);
  // oclif's rule: without a summary, the description's first line is the summary.
  const description = (command.description ?? '').trim();
  let summary = (command.summary ?? '').trim();
  let rest = description;
  if (!summary) {
    const [first, ...others] = description.split('\n');
    summary = first.trim();
    rest = others.join('\n').trim();
  }
  const flags = Object.values(command.flags ?? {})
    .filter((f) => !f.hidden)
    .map((f): FlagDoc => {
      const takesValue = f.type === 'option';
      const helpValue = Array.isArray(f.helpValue) ? f.helpValue.join(' ') : f.helpValue;
      return {
        name: f.name,
        char: f.char,
        takesValue,
        valueName: takesValue ? (helpValue ?? (f.options?.length ? f.options.join('|') : f.name.toUpperCase().replace(/-/g, '_'))) : undefined,
        options: f.options,
        negatable: f.type === 'boolean' && f.allowNo === true,
        description: expand((f.summary ?? f.description ?? '').trim()),
        default: takesValue ? defaultText(f.default) : undefined,
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  const args = Object.values(command.args ?? {})
    .filter((a) => !a.hidden)
    .map((a): ArgDoc => ({ name: a.name, description: expand((a.description ?? '').trim()), required: a.required === true, options: a.options }));
  const examples = (command.examples ?? []).map((e) => (typeof e === 'string' ? { command: expand(e) } : { command: expand(e.command), description: e.description ? expand(e.description) : undefined }));
  return { words, summary: expand(summary), description: expand(rest), args, flags, examples, strict: command.strict !== false };
}

/** The usage line of a command: `nspawnctl host init [FILE] [--check] [--json]`. */
export function usageLine(bin: string, command: CommandDoc): string {
  const parts = [bin, ...command.words];
  for (const arg of command.args) parts.push(arg.required ? arg.name.toUpperCase() : `[${arg.name.toUpperCase()}]`);
  for (const flag of command.flags) {
    const name = flag.negatable ? `--[no-]${flag.name}` : `--${flag.name}`;
    parts.push(`[${name}${flag.takesValue ? ` ${flag.valueName}` : ''}]`);
  }
  if (!command.strict) parts.push('[-- ARGS...]');
  return parts.join(' ');
}
