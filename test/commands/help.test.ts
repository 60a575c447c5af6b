// Every command's --help shows its usage and at least one example (DESIGN.md: every command
// documented with an example).
import Apply from '../../src/commands/apply';
import CacheList from '../../src/commands/cache/list';
import CachePrune from '../../src/commands/cache/prune';
import Destroy from '../../src/commands/destroy';
import HostInit from '../../src/commands/host/init';
import List from '../../src/commands/list';
import Plan from '../../src/commands/plan';
import Render from '../../src/commands/render';
import Status from '../../src/commands/status';
import { commandHelp } from '../helpers/run-command';

// [id as typed (topic separator is a space), oclif's command id, class]
const commands: [string, string, { examples?: unknown; summary?: string }][] = [
  ['apply', 'apply', Apply],
  ['cache list', 'cache:list', CacheList],
  ['cache prune', 'cache:prune', CachePrune],
  ['destroy', 'destroy', Destroy],
  ['host init', 'host:init', HostInit],
  ['list', 'list', List],
  ['plan', 'plan', Plan],
  ['render', 'render', Render],
  ['status', 'status', Status],
];

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
      '  $ nspawnctl plan FILE [--json]',
      '',
      'ARGUMENTS',
      '  FILE  manifest file',
      '',
      'FLAGS',
      '  --json  Print machine-readable JSON on stdout.',
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
      '',
    ].join('\n'),
  );
});
