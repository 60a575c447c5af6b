// Every command's --help shows its usage and at least one example (DESIGN.md: every command
// documented with an example).
import './helpers/oclif-listeners';
import Plan from '../../src/commands/plan';
import { commandHelp } from '../helpers/run-command';
import { COMMANDS } from './helpers/src-commands';

// [id as typed (topic separator is a space), oclif's command id, class]: every command in src/commands.
const commands = Object.entries(COMMANDS).map(([id, Cmd]) => [id.split(':').join(' '), id, Cmd] as [string, string, { examples?: unknown; summary?: string }]);

test('every command is covered', () => {
  expect(commands.map(([id]) => id)).toEqual(['apply', 'audit', 'autocomplete', 'backup', 'cache list', 'cache prune', 'destroy', 'exec', 'help', 'host init', 'init', 'list', 'logs', 'plan', 'profile syscalls', 'rebuild', 'render', 'restore', 'rollback', 'shell', 'status', 'upgrade']);
});

describe.each(commands)('nspawnctl %s --help', (id, oclifId, Cmd) => {
  test('shows the summary, the usage and every example with the real binary name', async () => {
    const help = await commandHelp(Cmd, oclifId);
    const examples = Cmd.examples as string[];
    expect(examples.length).toBeGreaterThan(0);
    expect(help.startsWith(`${Cmd.summary}\n`)).toBe(true);
    expect(help).toContain(`USAGE\n  $ nspawnctl ${id}`);
    expect(help).toContain('\nEXAMPLES\n');
    // oclif prefixes "$ " only to examples that run the CLI itself.
    for (const example of examples) {
      expect(help).toContain(example.startsWith('<%= config.bin %>') ? `\n  $ ${example.replace('<%= config.bin %>', 'nspawnctl')}\n` : `\n  ${example}\n`);
    }
    expect(help.split('\nEXAMPLES\n')[1]).toContain(`  $ nspawnctl ${id} `);
    expect(help).not.toContain('<%=');
  });
});

test('plan --help, exactly', async () => {
  expect(await commandHelp(Plan, 'plan')).toBe(
    [
      'Show what apply would do, without changing anything.',
      '',
      'USAGE',
      '  $ nspawnctl plan FILE [--json] [--host <value>...]',
      '    [--hosts-label <value>...] [--ssh-option <value>...]',
      '',
      'ARGUMENTS',
      '  FILE  manifest file',
      '',
      'FLAGS',
      '  --host=<value>...         Fleet: act on this host of hosts: (repeatable;',
      '                            default: every host).',
      '  --hosts-label=<value>...  Fleet: act on the hosts with this label',
      '                            (repeatable).',
      '  --json                    Print machine-readable JSON on stdout.',
      '  --ssh-option=<value>...   Fleet: an option for ssh, as ssh -o takes it',
      '                            (repeatable), e.g. ConnectTimeout=5.',
      '',
      'DESCRIPTION',
      '  Show what apply would do, without changing anything.',
      '',
      '  Compares the manifest with the host and lists, per network and machine, what',
      '  would be created, updated, restarted or left unchanged.',
      '',
      'EXAMPLES',
      '  $ nspawnctl plan machines.yaml',
      '',
      '  $ nspawnctl plan machines.yaml --json | jq .steps',
      '',
      '  $ nspawnctl plan fleet.yaml --host alpha',
      '',
      '',
    ].join('\n'),
  );
});
