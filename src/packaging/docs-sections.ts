// The parts of the man page that come from docs/ rather than from the commands' help: the exit
// codes (docs/commands.md) and the files nspawnctl writes (docs/design.md). Read from the
// Markdown so that the man page says what the docs say; a section that moved is an error here,
// not a man page that silently lost it.

export interface Entry {
  /** Markdown inline text (code spans, links). */
  term: string;
  text: string;
}

export class DocsSectionError extends Error {}

/**
 * The exit codes from the paragraph that starts with "Exit codes:" in docs/commands.md:
 * "Exit codes: `0` success, `1` failure, `2` invalid manifest or usage (nothing changed), ...".
 */
export function exitCodesFrom(markdown: string, file = 'docs/commands.md'): Entry[] {
  const paragraph = markdown.split(/\n\s*\n/).find((p) => p.trimStart().startsWith('Exit codes:'));
  if (!paragraph) throw new DocsSectionError(`${file}: no paragraph starting with "Exit codes:"`);
  const body = paragraph.trim().slice('Exit codes:'.length).replace(/\s+/g, ' ').trim();
  // Split before each "`N` " that starts an item; the text before the first is empty.
  const pieces = body.split(/(?:^|,\s*)`(\d+)`\s+/);
  const entries: Entry[] = [];
  for (let i = 1; i + 1 < pieces.length; i += 2) entries.push({ term: pieces[i], text: pieces[i + 1].replace(/[.,]\s*$/, '').trim() });
  if (entries.length === 0 || pieces[0].trim() !== '') throw new DocsSectionError(`${file}: the "Exit codes:" paragraph is not a list of \`N\` meaning items`);
  return entries;
}

/** The rows of the first table under the heading `heading` ("## Files nspawnctl writes"). */
export function tableUnder(markdown: string, heading: string, file = 'docs/design.md'): Entry[] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start < 0) throw new DocsSectionError(`${file}: no heading "${heading}"`);
  const level = /^#+/.exec(heading)?.[0].length ?? 0;
  const rows: Entry[] = [];
  let inTable = false;
  for (const line of lines.slice(start + 1)) {
    const nextHeading = /^(#+)\s/.exec(line);
    if (nextHeading && nextHeading[1].length <= level) break;
    if (!line.trimStart().startsWith('|')) {
      if (inTable) break;
      continue;
    }
    const cells = splitRow(line);
    if (!inTable) {
      inTable = true; // the header row
      continue;
    }
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue; // the separator row
    if (cells.length < 2) throw new DocsSectionError(`${file}: a row of the table under "${heading}" has fewer than two cells: ${line}`);
    rows.push({ term: cells[0], text: cells.slice(1).join(' ') });
  }
  if (rows.length === 0) throw new DocsSectionError(`${file}: no table rows under "${heading}"`);
  return rows;
}

/** The cells of a Markdown table row; "\|" and pipes inside code spans stay in their cell. */
function splitRow(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let code = false;
  const text = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\\' && text[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (ch === '`') {
      code = !code;
      cell += ch;
    } else if (ch === '|' && !code) {
      cells.push(cell.trim());
      cell = '';
    } else {
      cell += ch;
    }
  }
  cells.push(cell.trim());
  return cells;
}
