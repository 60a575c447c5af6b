// nspawnctl(1), generated: the commands' own help (summaries, descriptions, flags, examples, from
// oclif.manifest.json) plus the exit codes and files sections of docs/. Pure: text in, roff out.
import { CommandDoc, FlagDoc, usageLine } from './commands';
import { Entry } from './docs-sections';

export interface ManPageInput {
  bin: string;
  version: string;
  /** One line: what the program is (package.json's description). */
  description: string;
  /** YYYY-MM-DD, shown in the footer. */
  date: string;
  commands: CommandDoc[];
  /** Topic (first word) -> what its commands are about. */
  topics: Record<string, string>;
  exitCodes: Entry[];
  files: Entry[];
  /** Where the generated page came from, for its header comment. */
  source: string;
}

/** Escapes plain text for roff: backslashes, and a leading dot or quote that roff would read as a request. */
function escapeText(text: string): string {
  return text.replace(/\\/g, '\\e').replace(/^([.'])/gm, '\\&$1');
}

/** Text in which options and code appear: every hyphen is a minus (copy-pasteable). */
function escapeCode(text: string): string {
  return escapeText(text).replace(/-/g, '\\-');
}

/** Plain text with option-looking words (--flag, -j) written with real minus signs. */
function escapeProse(text: string): string {
  return escapeText(text).replace(/(^|[\s("'[/])(-{1,2}[A-Za-z[][\w[\]=-]*)/g, (_m, before: string, option: string) => before + option.replace(/-/g, '\\-'));
}

/** Markdown inline text (code spans, links, bold) to roff. */
function inlineMarkdown(text: string): string {
  const out: string[] = [];
  const re = /`([^`]+)`|\[([^\]]+)\]\([^)]*\)|\*\*([^*]+)\*\*/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    out.push(escapeProse(text.slice(last, m.index)));
    if (m[1] !== undefined) out.push(`\\fB${escapeCode(m[1])}\\fR`);
    else if (m[2] !== undefined) out.push(escapeProse(m[2]));
    else out.push(`\\fB${escapeProse(m[3])}\\fR`);
    last = m.index + m[0].length;
  }
  out.push(escapeProse(text.slice(last)));
  return out.join('').replace(/^([.'])/gm, '\\&$1');
}

/** Paragraphs of help text: blank lines separate paragraphs, single newlines break lines. */
function paragraphs(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter(Boolean)
    .flatMap((p, i) => [...(i ? ['.PP'] : []), p.split('\n').map((l) => escapeProse(l.trim())).join('\n.br\n')]);
}

function flagTerm(flag: FlagDoc): string {
  const names = [...(flag.char ? [`\\fB\\-${flag.char}\\fR`] : []), `\\fB\\-\\-${flag.negatable ? '[no\\-]' : ''}${escapeCode(flag.name)}\\fR`];
  return names.join(', ') + (flag.takesValue ? ` \\fI${escapeCode(flag.valueName ?? 'VALUE')}\\fR` : '');
}

function flagText(flag: FlagDoc): string {
  const extra: string[] = [];
  if (flag.options?.length) extra.push(`one of: ${flag.options.join(', ')}`);
  if (flag.default !== undefined) extra.push(`default: ${flag.default}`);
  const text = flag.description + (extra.length ? ` (${extra.join('; ')})` : '');
  return escapeProse(text);
}

function commandSection(bin: string, command: CommandDoc): string[] {
  const lines = [`.SS "${escapeCode(command.words.join(' '))}"`, escapeProse(command.summary)];
  // Each [group] of the usage line stays on one output line (unbreakable spaces inside it).
  const usage = usageLine(bin, command).replace(/\[[^\]]*\]/g, (group) => group.replace(/ /g, '\u0000'));
  lines.push('.PP', `.B ${escapeCode(usage).replace(/\u0000/g, '\\ ')}`);
  if (command.description) lines.push('.PP', ...paragraphs(command.description));
  for (const arg of command.args) {
    lines.push('.TP', `.I ${escapeCode(arg.name.toUpperCase())}`, escapeProse(arg.description + (arg.required ? '' : ' (optional)')));
  }
  for (const flag of command.flags) lines.push('.TP', flagTerm(flag), flagText(flag));
  if (command.examples.length) {
    lines.push('.PP', 'Examples:', '.RS', '.nf');
    for (const example of command.examples) {
      if (example.description) lines.push(`# ${escapeCode(example.description)}`);
      lines.push(escapeCode(example.command));
    }
    lines.push('.fi', '.RE');
  }
  return lines;
}

/** The whole page, ready to be gzipped into /usr/share/man/man1. */
export function renderManPage(input: ManPageInput): string {
  const { bin } = input;
  const title = bin.toUpperCase();
  const topics = [...new Set(input.commands.filter((c) => c.words.length > 1).map((c) => c.words[0]))].sort();
  const lines = [
    `.\\" Generated from ${input.source} by scripts/package.sh; do not edit.`,
    `.TH ${title} 1 "${input.date}" "${bin} ${input.version}" "User Commands"`,
    // Left-aligned, no hyphenation: usage lines and paths break at spaces only.
    '.ad l',
    '.nh',
    '.SH NAME',
    `${bin} \\- ${escapeProse(input.description.charAt(0).toLowerCase() + input.description.slice(1))}`,
    '.SH SYNOPSIS',
    `.B ${bin}`,
    '.I command',
    '.RI [ arguments ]',
    '.RI [ flags ]',
    '.br',
    `.B ${bin}`,
    '.I command',
    '.B \\-\\-help',
    '.br',
    `.B ${bin}`,
    '.B \\-\\-version',
    '.SH DESCRIPTION',
    `.B ${bin}`,
    `turns one YAML manifest into systemd\\-nspawn machines: it bootstraps each machine's root file system, writes its settings and the networkd files of its bridge, and starts it with machinectl.`,
    'Run again, it changes only what differs from the manifest.',
    '.PP',
    'The commands that change the host run as root on a host booted with systemd.',
    'Output meant for scripts goes to standard output with',
    '.BR \\-\\-json ;',
    'progress and messages go to standard error.',
    ...(topics.length
      ? ['.PP', 'Commands are grouped in topics:', ...topics.flatMap((t) => ['.TP', `.B ${escapeCode(t)}`, escapeProse(input.topics[t] ?? input.commands.find((c) => c.words[0] === t)?.summary ?? '')])]
      : []),
    '.SH COMMANDS',
    ...input.commands.flatMap((c) => commandSection(bin, c)),
    '.SH "EXIT STATUS"',
    ...input.exitCodes.flatMap((e) => ['.TP', `.B ${escapeCode(e.term)}`, inlineMarkdown(e.text)]),
    '.SH FILES',
    ...input.files.flatMap((e) => ['.TP', inlineMarkdown(e.term), inlineMarkdown(e.text)]),
    '.SH "SEE ALSO"',
    '.BR systemd\\-nspawn (1),',
    '.BR machinectl (1),',
    '.BR systemd.nspawn (5),',
    '.BR systemd\\-networkd (8),',
    '.BR mmdebstrap (1),',
    '.BR debootstrap (8)',
    '.PP',
    `The manifest reference and the guides: /usr/share/doc/${bin}/.`,
  ];
  return `${lines.join('\n')}\n`;
}
