// Did-you-mean for mistyped commands and flags: the known name closest to what was typed.
import { escapeControl, NspawnctlError } from '../errors';

/** Exit code of a usage error (unknown command or flag), as for an invalid manifest: nothing was done. */
export const USAGE_EXIT_CODE = 2;

/**
 * Edit distance counting an insertion, a deletion, a substitution or a swap of two adjacent
 * characters as one edit (optimal string alignment), so "destory" is one edit from "destroy".
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate `typed` most likely meant: the one fewest edits away when that is at most a
 * third of its length (at least one edit), else the only candidate that starts with it.
 * Case is ignored; ties go to the first candidate.
 */
export function closestName(typed: string, candidates: readonly string[]): string | undefined {
  const t = typed.toLowerCase();
  if (t === '') return undefined;
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(t.length / 3)) + 1;
  for (const c of candidates) {
    const distance = editDistance(t, c.toLowerCase());
    if (distance < bestDistance) {
      best = c;
      bestDistance = distance;
    }
  }
  if (best !== undefined) return best;
  const starting = candidates.filter((c) => c.toLowerCase().startsWith(t));
  return starting.length === 1 ? starting[0] : undefined;
}

/** What the CLI knows: command ids and topic names, words joined with ":" as oclif stores them. */
export interface CommandNames {
  commands: readonly string[];
  topics: readonly string[];
}

/** The visible commands and topics of oclif's Config (which also lists every command as a topic). */
export function commandNamesOf(config: { commands: readonly { id: string; hidden?: boolean }[]; topics: readonly { name: string; hidden?: boolean }[] }): CommandNames {
  const commands = config.commands.filter((c) => !c.hidden).map((c) => c.id);
  const topics = config.topics.filter((t) => !t.hidden && !commands.includes(t.name)).map((t) => t.name);
  return { commands, topics };
}

/**
 * For words that name no command (oclif's id, split at ":"), the part that went wrong and the
 * command or topic it most likely meant, both with spaces: ["host", "inti"] -> "host inti",
 * "host init"; ["aply", "machines.yaml"] -> "aply", "apply". Topics are followed word by word.
 */
export function suggestCommand(words: readonly string[], names: CommandNames): { typed: string; suggestion?: string } {
  const topics = new Set(names.topics);
  const all = [...new Set([...names.commands, ...names.topics])];
  const prefix: string[] = [];
  let i = 0;
  while (i < words.length - 1 && topics.has([...prefix, words[i]].join(':'))) prefix.push(words[i++]);
  const typed = [...prefix, words[i] ?? ''].join(' ');
  const suggested = [...prefix];
  for (; i < words.length; i++) {
    const next = nextWords(all, suggested);
    const word = next.includes(words[i]) ? words[i] : closestName(words[i], next);
    if (word === undefined) break;
    suggested.push(word);
    // Go on into a topic only while the typed words go on.
    if (!topics.has(suggested.join(':')) || i === words.length - 1) break;
  }
  return suggested.length > prefix.length ? { typed, suggestion: suggested.join(' ') } : { typed };
}

/** The words that may follow `prefix` in a command or topic id, sorted. */
function nextWords(ids: readonly string[], prefix: readonly string[]): string[] {
  const words = new Set<string>();
  for (const id of ids) {
    const parts = id.split(':');
    if (parts.length > prefix.length && prefix.every((p, k) => parts[k] === p)) words.add(parts[prefix.length]);
  }
  return [...words].sort();
}

/** The usage error for words that name no command. */
export function unknownCommandError(bin: string, words: readonly string[], names: CommandNames): NspawnctlError {
  const { typed, suggestion } = suggestCommand(words, names);
  return new NspawnctlError(`unknown command ${shown(typed)}${suggestion ? `; did you mean ${suggestion}?` : ''}`, {
    exitCode: USAGE_EXIT_CODE,
    hint: `${bin} help lists every command.`,
  });
}

/** What suggestFlag needs of a command's flag (oclif's flag definitions have these). */
export interface FlagName {
  name: string;
  char?: string;
  allowNo?: boolean;
}

/**
 * The flag an unknown one most likely meant: "--dryrun" -> "--dry-run", "-dry-run" -> "--dry-run",
 * "--no-wiat" -> "--no-wait". A value given with "=" is ignored. Single letters get no suggestion.
 */
export function suggestFlag(typed: string, flags: readonly FlagName[]): string | undefined {
  const name = typed.replace(/^--?/, '').split('=')[0];
  if (name.length < 2) return undefined;
  const longs = ['help', ...flags.flatMap((f) => (f.allowNo ? [f.name, `no-${f.name}`] : [f.name]))];
  const match = closestName(name, longs);
  return match === undefined ? undefined : `--${match}`;
}

/** The usage error for flags `command` does not have. */
export function unknownFlagsError(bin: string, command: string, typed: readonly string[], flags: readonly FlagName[]): NspawnctlError {
  const suggestions = typed.map((t) => suggestFlag(t, flags));
  // oclif always knows the command's id; a command class run on its own (tests) may not.
  const forCommand = command ? ` for ${command}` : '';
  const message =
    typed.length === 1
      ? `unknown flag ${shown(typed[0])}${forCommand}${suggestions[0] ? `; did you mean ${suggestions[0]}?` : ''}`
      : `unknown flags${forCommand}: ${typed.map((t, i) => `${shown(t)}${suggestions[i] ? ` (did you mean ${suggestions[i]}?)` : ''}`).join(', ')}`;
  return new NspawnctlError(message, { exitCode: USAGE_EXIT_CODE, hint: `${bin} ${command ? `${command} ` : ''}--help lists its flags.` });
}

/** The usage error for a flag before any command ("nspawnctl --verison"): only --help and --version exist there. */
export function unknownTopLevelFlagError(bin: string, typed: string): NspawnctlError {
  const suggestion = closestName(typed.replace(/^--?/, '').split('=')[0], ['help', 'version']);
  return new NspawnctlError(`unknown flag ${shown(typed)}${suggestion ? `; did you mean --${suggestion}?` : ''}`, {
    exitCode: USAGE_EXIT_CODE,
    hint: `${bin} help lists every command; flags go after the command.`,
  });
}

/** A typed word as a message shows it: plain when it is plain, quoted and escaped otherwise. */
function shown(word: string): string {
  return /^[A-Za-z0-9_.:=@%+,/-]+( [A-Za-z0-9_.:=@%+,/-]+)*$/.test(word) ? word : JSON.stringify(escapeControl(word));
}
