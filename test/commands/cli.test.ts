// The CLI's conventions through oclif's real entry point (test/commands/helpers/cli.ts):
// -h, --help, help and help COMMAND for every command and topic; did-you-mean with exit code 2.
import './helpers/oclif-listeners';
import { commandHelp } from '../helpers/run-command';
import { runCli } from './helpers/cli';
import { COMMANDS } from './helpers/src-commands';

const TOPICS = ['cache', 'host', 'profile'];
const spaced = (id: string) => id.split(':').join(' ');

describe('help for the whole CLI', () => {
  test('nspawnctl alone, -h, --help and help print the same list of topics and commands', async () => {
    const bare = await runCli([]);
    expect(bare.exitCode).toBe(0);
    expect(bare.stderr).toBe('');
    for (const argv of [['-h'], ['--help'], ['help']]) {
      const r = await runCli(argv);
      expect([r.exitCode, r.stderr, r.stdout]).toEqual([0, '', bare.stdout]);
    }
    const [, topics, commands] = bare.stdout.split(/\nTOPICS\n|\nCOMMANDS\n/);
    expect(topics.split('\n').filter((l) => /^ {2}\S/.test(l)).map((l) => l.trim().split(/\s+/)[0])).toEqual(TOPICS);
    const top = Object.keys(COMMANDS).filter((id) => !id.includes(':'));
    expect(commands.split('\n').filter((l) => /^ {2}\S/.test(l)).map((l) => l.trim().split(/\s+/)[0])).toEqual(top);
    expect(top).toEqual(['apply', 'audit', 'autocomplete', 'backup', 'destroy', 'exec', 'help', 'init', 'list', 'logs', 'plan', 'rebuild', 'render', 'restore', 'rollback', 'shell', 'status', 'upgrade']);
  });
});

// `help --help` is oclif's list of commands (its Help skips the word "help"); `help` is covered above.
describe.each(Object.entries(COMMANDS).filter(([id]) => id !== 'help'))('help for nspawnctl %s', (id, Cmd) => {
  test('-h, --help, help COMMAND: the same text, on stdout, exit 0', async () => {
    const expected = await commandHelp(Cmd as object, id);
    const words = id.split(':');
    for (const argv of [[...words, '-h'], [...words, '--help'], ['help', ...words]]) {
      const r = await runCli(argv);
      expect([argv, r.exitCode, r.stderr]).toEqual([argv, 0, '']);
      expect(r.stdout).toBe(expected);
    }
  });
});

describe.each(TOPICS)('help for the topic %s', (topic) => {
  test('the topic alone, -h, --help and help TOPIC: its commands, exit 0', async () => {
    const bare = await runCli([topic]);
    expect([bare.exitCode, bare.stderr]).toEqual([0, '']);
    for (const argv of [[topic, '-h'], [topic, '--help'], ['help', topic]]) {
      const r = await runCli(argv);
      expect([argv, r.exitCode, r.stderr, r.stdout]).toEqual([argv, 0, '', bare.stdout]);
    }
    const ids = Object.keys(COMMANDS).filter((id) => id.startsWith(`${topic}:`));
    expect(bare.stdout).toContain(`USAGE\n  $ nspawnctl ${topic} COMMAND\n`);
    for (const id of ids) expect(bare.stdout).toContain(`\n  ${spaced(id)}  `);
  });
});

test('nspawnctl profile --help, exactly: the topic says what it is for', async () => {
  expect((await runCli(['profile', '--help'])).stdout).toBe(
    [
      'Measure what a machine needs, to tighten its settings',
      '',
      'USAGE',
      '  $ nspawnctl profile COMMAND',
      '',
      'COMMANDS',
      '  profile syscalls  Run a command in a machine under strace and print a',
      '                    systemCallFilter that denies what it never called.',
      '',
      '',
    ].join('\n'),
  );
});

test('-h after "--" belongs to the profiled command, not to nspawnctl', async () => {
  const r = await runCli(['profile', 'syscalls', 'no_such', '--', 'ls', '-h']);
  expect(r.exitCode).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr).toBe('nspawnctl: "no_such" is not a machine name\n');
});

describe('did you mean: unknown commands exit 2 and name the likely one', () => {
  test.each([
    [['aply'], 'unknown command aply; did you mean apply?'],
    [['aply', 'machines.yaml', '--dry-run'], 'unknown command aply; did you mean apply?'],
    [['destory', 'web'], 'unknown command destory; did you mean destroy?'],
    [['stauts', 'web'], 'unknown command stauts; did you mean status?'],
    [['hots', 'init'], 'unknown command hots; did you mean host init?'],
    [['host', 'inti'], 'unknown command host inti; did you mean host init?'],
    [['cache', 'lst'], 'unknown command cache lst; did you mean cache list?'],
    [['profile', 'syscals', 'web'], 'unknown command profile syscals; did you mean profile syscalls?'],
    [['autocomplet', 'bash'], 'unknown command autocomplet; did you mean autocomplete?'],
    [['frobnicate'], 'unknown command frobnicate'],
    [['help', 'aply'], 'unknown command aply; did you mean apply?'],
    [['help', 'host', 'inti'], 'unknown command host inti; did you mean host init?'],
  ])('nspawnctl %j', async (argv, message) => {
    const r = await runCli(argv);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`nspawnctl: ${message}\nhint: nspawnctl help lists every command.\n`);
  });

  test('a mistyped flag before any command', async () => {
    const r = await runCli(['--verison']);
    expect([r.exitCode, r.stdout]).toEqual([2, '']);
    expect(r.stderr).toBe('nspawnctl: unknown flag --verison; did you mean --version?\nhint: nspawnctl help lists every command; flags go after the command.\n');
  });

  test('with --json, the error is also a JSON document on stdout', async () => {
    const r = await runCli(['lst', '--json']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('nspawnctl: unknown command lst; did you mean list?\nhint: nspawnctl help lists every command.\n');
    expect(JSON.parse(r.stdout)).toEqual({ error: { kind: 'NspawnctlError', message: 'unknown command lst; did you mean list?', hint: 'nspawnctl help lists every command.', exitCode: 2 } });
  });
});

describe('did you mean: unknown flags exit 2 and name the likely one', () => {
  test.each([
    [['apply', 'machines.yaml', '--dryrun'], 'unknown flag --dryrun for apply; did you mean --dry-run?', 'apply'],
    [['apply', '--dryrun', 'machines.yaml'], 'unknown flag --dryrun for apply; did you mean --dry-run?', 'apply'],
    [['apply', 'm.yaml', '--dryrun', '--jobz=3'], 'unknown flags for apply: --dryrun (did you mean --dry-run?), --jobz=3 (did you mean --jobs?)', 'apply'],
    [['destroy', 'web', '--yse'], 'unknown flag --yse for destroy; did you mean --yes?', 'destroy'],
    [['host', 'init', '--chekc'], 'unknown flag --chekc for host init; did you mean --check?', 'host init'],
    [['cache', 'prune', '--frobnicate'], 'unknown flag --frobnicate for cache prune', 'cache prune'],
    [['profile', 'syscalls', 'web', '--instal-strace', '--', 'ls'], 'unknown flag --instal-strace for profile syscalls; did you mean --install-strace?', 'profile syscalls'],
  ])('nspawnctl %j', async (argv, message, command) => {
    const r = await runCli(argv);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`nspawnctl: ${message}\nhint: nspawnctl ${command} --help lists its flags.\n`);
  });

  test('with --json, the error is also a JSON document on stdout', async () => {
    const r = await runCli(['plan', 'machines.yaml', '--json', '--jsno']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('nspawnctl: unknown flag --jsno for plan; did you mean --json?\nhint: nspawnctl plan --help lists its flags.\n');
    expect(JSON.parse(r.stdout).error).toEqual({ kind: 'NspawnctlError', message: 'unknown flag --jsno for plan; did you mean --json?', hint: 'nspawnctl plan --help lists its flags.', exitCode: 2 });
  });
});

test('profile syscalls --help shows "-- CMD [ARGS...]" and says the filter denies', async () => {
  const help = (await runCli(['profile', 'syscalls', '--help'])).stdout;
  expect(help).toContain('USAGE\n  $ nspawnctl profile syscalls MACHINE [FLAGS] -- CMD [ARGS...]\n');
  expect(help.startsWith('Run a command in a machine under strace and print a systemCallFilter that denies what it never called.\n')).toBe(true);
  expect(help).toContain('  [CMD...]  the command to profile and its arguments, after --\n');
  expect(help).not.toMatch(/allows/);
});

test('every read command keeps --json', () => {
  const reads = ['plan', 'list', 'status', 'cache:list', 'host:init', 'render', 'profile:syscalls'];
  for (const id of reads) {
    const flags = (COMMANDS[id] as { flags: Record<string, { type: string; description?: string }> }).flags;
    expect([id, flags.json?.type, flags.json?.description]).toEqual([id, 'boolean', 'Print machine-readable JSON on stdout.']);
  }
});
