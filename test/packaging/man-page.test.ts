// The man page and the docs sections it takes from docs/: what the generated roff says, and that
// the real docs still have the sections (a moved section fails here, not in a package build).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode } from '../../src/errors';
import { commandDocs, usageLine } from '../../src/packaging/commands';
import { DocsSectionError, exitCodesFrom, tableUnder } from '../../src/packaging/docs-sections';
import { renderManPage } from '../../src/packaging/man-page';
import { CLI_MANIFEST, PLUGIN_MANIFEST } from './fixture';

const ROOT = join(__dirname, '..', '..');
const commands = commandDocs([CLI_MANIFEST, PLUGIN_MANIFEST], 'nspawnctl');

describe('commandDocs', () => {
  test('visible commands of the CLI and its plugins, sorted by the words typed; the CLI wins a clash', () => {
    expect(commands.map((c) => c.words.join(' '))).toEqual(['apply', 'destroy', 'help', 'host check', 'host init', 'profile syscalls']);
    expect(commands.find((c) => c.words[0] === 'destroy')?.summary).toBe('Remove a machine.');
  });

  test('templates expanded, hidden flags left out, flags sorted, oclif\'s summary rule', () => {
    const apply = commands[0];
    expect(apply.summary).toBe('Make the host match nspawnctl\'s manifest.');
    expect(apply.examples).toEqual([{ command: 'nspawnctl apply machines.yaml' }, { command: 'nspawnctl apply m.yaml --dry-run', description: 'Only look' }]);
    expect(apply.flags.map((f) => f.name)).toEqual(['dry-run', 'jobs', 'mode', 'wait']);
    expect(apply.flags.find((f) => f.name === 'mode')).toEqual({ name: 'mode', char: undefined, takesValue: true, valueName: 'fast|safe', options: ['fast', 'safe'], negatable: false, description: 'How to bootstrap.', default: 'safe' });
    const init = commands.find((c) => c.words.join(' ') === 'host init');
    expect([init?.summary, init?.description]).toEqual(['Prepare the host.', 'Installs packages and writes networkd files.']);
  });

  test('usage lines', () => {
    expect(commands.map((c) => usageLine('nspawnctl', c))).toEqual([
      'nspawnctl apply FILE [--dry-run] [--jobs JOBS] [--mode fast|safe] [--[no-]wait]',
      'nspawnctl destroy NAME [--manifest MANIFEST] [--yes]',
      'nspawnctl help [COMMAND]',
      'nspawnctl host check',
      'nspawnctl host init [FILE] [--out OUT]',
      'nspawnctl profile syscalls MACHINE [-- ARGS...]',
    ]);
  });
});

describe('renderManPage', () => {
  const page = renderManPage({
    bin: 'nspawnctl',
    version: '1.2.3',
    description: 'Declarative machines',
    date: '2025-01-02',
    commands,
    topics: { host: 'Prepare and check the host itself' },
    exitCodes: [{ term: '0', text: 'success' }, { term: '5', text: 'busy (`--no-wait`)' }],
    files: [{ term: '`/etc/systemd/nspawn/NAME.nspawn`', text: 'settings, see [manifest.md](manifest.md)' }],
    source: 'a fixture',
  });
  const lines = page.split('\n');

  test('header, name, topics; every visible command is a subsection with its usage', () => {
    expect(lines.slice(0, 6)).toEqual(['.\\" Generated from a fixture by scripts/package.sh; do not edit.', '.TH NSPAWNCTL 1 "2025-01-02" "nspawnctl 1.2.3" "User Commands"', '.ad l', '.nh', '.SH NAME', 'nspawnctl \\- declarative machines']);
    expect(lines.filter((l) => l.startsWith('.SH '))).toEqual(['.SH NAME', '.SH SYNOPSIS', '.SH DESCRIPTION', '.SH COMMANDS', '.SH "EXIT STATUS"', '.SH FILES', '.SH "SEE ALSO"']);
    expect(lines.filter((l) => l.startsWith('.SS '))).toEqual(['.SS "apply"', '.SS "destroy"', '.SS "help"', '.SS "host check"', '.SS "host init"', '.SS "profile syscalls"']);
    expect(page).toContain('.TP\n.B host\nPrepare and check the host itself\n');
    expect(page).toContain('.TP\n.B profile\nProfile a command.\n');
    expect(page).toContain('.B nspawnctl apply FILE [\\-\\-dry\\-run] [\\-\\-jobs\\ JOBS] [\\-\\-mode\\ fast|safe] [\\-\\-[no\\-]wait]\n');
  });

  test('flags with their short name, value, options and default; paragraphs; roff-safe text', () => {
    expect(page).toContain('.TP\n\\fB\\-j\\fR, \\fB\\-\\-jobs\\fR \\fIJOBS\\fR\nHow many at once. (default: 2)\n');
    expect(page).toContain('.TP\n\\fB\\-\\-[no\\-]wait\\fR\nWait for the lock.\n');
    expect(page).toContain('.TP\n\\fB\\-\\-mode\\fR \\fIfast|safe\\fR\nHow to bootstrap. (one of: fast, safe; default: safe)\n');
    expect(page).toContain('Plans, then applies.\n.PP\nSecond paragraph with \\-\\-dry\\-run.\n.br\n\\&.starts with a dot\n');
    expect(page).toContain('.nf\nnspawnctl apply machines.yaml\n# Only look\nnspawnctl apply m.yaml \\-\\-dry\\-run\n.fi\n');
    expect(page).not.toContain('secret');
    expect(page).not.toContain('Hidden.');
    expect(page).not.toContain('<%');
  });

  test('exit codes and files from the docs, Markdown made roff', () => {
    expect(page).toContain('.SH "EXIT STATUS"\n.TP\n.B 0\nsuccess\n.TP\n.B 5\nbusy (\\fB\\-\\-no\\-wait\\fR)\n');
    expect(page).toContain('.SH FILES\n.TP\n\\fB/etc/systemd/nspawn/NAME.nspawn\\fR\nsettings, see manifest.md\n');
  });

  // groff comes with man-db (lintian, which CI installs, pulls both in); without it this cannot run.
  const groff = ['/usr/bin/groff', '/usr/bin/nroff'].every(existsSync);
  (groff ? test : test.skip)('groff formats it without a warning', () => {
    const r = execFileSync('sh', ['-c', 'groff -man -Tutf8 -ww -z 2>&1'], { input: page, encoding: 'utf8' });
    expect(r).toBe('');
  });
});

describe('the sections taken from docs/', () => {
  test('docs/commands.md: the exit codes, the same as the codes the CLI uses', () => {
    const codes = exitCodesFrom(readFileSync(join(ROOT, 'docs', 'commands.md'), 'utf8'));
    expect(codes.map((c) => Number(c.term))).toEqual([0, ...Object.values(ExitCode)].sort((a, b) => a - b));
    expect(codes[0]).toEqual({ term: '0', text: 'success' });
    expect(codes.every((c) => c.text.length > 3 && !c.text.endsWith('.') && !c.text.endsWith(','))).toBe(true);
  });

  test('docs/design.md: the table of files nspawnctl writes', () => {
    const files = tableUnder(readFileSync(join(ROOT, 'docs', 'design.md'), 'utf8'), '## Files nspawnctl writes');
    expect(files[0].term).toBe('`/etc/systemd/nspawn/NAME.nspawn`');
    expect(files.map((f) => f.term)).toContain('`/var/lib/nspawnctl/`');
  });

  test('a table row keeps pipes inside code spans and escaped pipes in its cell', () => {
    const md = '## T\n\n| a | b |\n|---|---|\n| `x|y` | one \\| two | three |\n\n| other | table |\n';
    expect(tableUnder(md, '## T')).toEqual([{ term: '`x|y`', text: 'one | two three' }]);
  });

  test('a section that moved is an error naming the file and what is missing', () => {
    expect(() => exitCodesFrom('# Commands\n\nNo codes here.\n')).toThrow(new DocsSectionError('docs/commands.md: no paragraph starting with "Exit codes:"'));
    expect(() => exitCodesFrom('Exit codes: zero is fine.\n')).toThrow(new DocsSectionError('docs/commands.md: the "Exit codes:" paragraph is not a list of `N` meaning items'));
    expect(() => tableUnder('## Other\n| a | b |\n|-|-|\n| c | d |\n', '## Files nspawnctl writes')).toThrow(new DocsSectionError('docs/design.md: no heading "## Files nspawnctl writes"'));
    expect(() => tableUnder('## Files nspawnctl writes\n\nprose only\n\n## Next\n| a | b |\n|-|-|\n| c | d |\n', '## Files nspawnctl writes')).toThrow(new DocsSectionError('docs/design.md: no table rows under "## Files nspawnctl writes"'));
  });
});
