// status and list --json with hardened services: which ones (from the machine's record), and the
// score the machine's own systemd-analyze gives each, with the heaviest unmet settings in status.
import List from '../../src/commands/list';
import Status from '../../src/commands/status';
import { Host } from '../../src/host/host';
import { convergeFakeHost, desiredFrom, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { runCommand, TEST_CWD } from '../helpers/run-command';
import { inMachineArgv, simulateSystemd } from '../helpers/simulated-systemd';

const MANIFEST = `machines:
  web:
    packages: [nginx, cron]
    services:
      nginx: { preset: strict }
      cron: {}
  db: {}
`;

const with_ = <T extends typeof List | typeof Status>(Cmd: T, host: Host) =>
  class extends (Cmd as typeof List) {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

const analyze = (unit: string) => inMachineArgv('web', ['systemd-analyze', 'security', '--no-pager', '--', `${unit}.service`]);
const detail = (unit: string, score: string, unmet: [string, string][]) =>
  [...unmet.map(([name, e]) => `✗ ${name.padEnd(40)} something it may do   ${e}`), '', `→ Overall exposure level for ${unit}.service: ${score} :-)`, ''].join('\n');

function host(running = ['web']): FakeHost {
  const h = makeBootedHost(new FakeHost({ inputs: { [MANIFEST_PATH]: MANIFEST } }));
  h.runner.on(analyze('nginx'), { stdout: detail('nginx', '2.8 OK', [['UMask=', '0.1'], ['PrivateNetwork=', '0.5'], ['User=/DynamicUser=', '0.4'], ['IPAddressDeny=', '0.2']]) });
  h.runner.on(analyze('cron'), { exitCode: 1, stderr: 'Unit cron.service not found.\n' });
  simulateSystemd(h, { running });
  convergeFakeHost(h, desiredFrom(MANIFEST).desired, { queries: false });
  return h;
}

test('status: each hardened service with its score and the three heaviest unmet settings; one that cannot be rated says why', async () => {
  const h = host();
  const r = await runCommand(with_(Status, h), ['web']);
  expect(r.exitCode).toBe(0);
  expect(r.stdout).toContain(
    [
      'services:  exposure (systemd-analyze security inside the machine; 0 is best, 10 worst)',
      '  cron   - (machine web: systemd-analyze security cron.service exited with 1: Unit cron.service not found.)',
      '  nginx  2.8 OK  unmet: PrivateNetwork= 0.5, User=/DynamicUser= 0.4, IPAddressDeny= 0.2',
      '',
    ].join('\n'),
  );
  const json = JSON.parse((await runCommand(with_(Status, h), ['web', '--json'])).stdout);
  expect(json.services[1]).toEqual({
    name: 'nginx',
    exposure: 2.8,
    level: 'OK',
    unmet: [
      { name: 'PrivateNetwork=', description: 'something it may do', exposure: 0.5 },
      { name: 'User=/DynamicUser=', description: 'something it may do', exposure: 0.4 },
      { name: 'IPAddressDeny=', description: 'something it may do', exposure: 0.2 },
      { name: 'UMask=', description: 'something it may do', exposure: 0.1 },
    ],
  });
});

test('list --json: the scores of every hardened service; machines without services have none, and nothing is asked of them', async () => {
  const h = host();
  const r = await runCommand(with_(List, h), ['--json']);
  const reports = JSON.parse(r.stdout) as { name: string; services: unknown[] }[];
  expect(reports.map((m) => [m.name, m.services])).toEqual([
    ['db', []],
    ['web', [{ name: 'cron', note: 'machine web: systemd-analyze security cron.service exited with 1: Unit cron.service not found.' }, { name: 'nginx', exposure: 2.8, level: 'OK' }]],
  ]);
  expect(h.runner.argvs().filter((a) => a[0] === 'systemd-run').map((a) => a[1])).toEqual(['--machine=web', '--machine=web']);
  // The plain table is unchanged: scores are for --json, status and audit.
  expect((await runCommand(with_(List, h), [])).stdout.split('\n')[0]).toBe('MACHINE  STATE    ADDRESS  MANIFEST  UPGRADED');
});

test('a stopped machine: its services listed, no score, nothing run', async () => {
  const h = host([]);
  const r = await runCommand(with_(Status, h), ['web', '--json']);
  expect(JSON.parse(r.stdout).services).toEqual([
    { name: 'cron', note: 'machine not running' },
    { name: 'nginx', note: 'machine not running' },
  ]);
  expect(h.runner.argvs().filter((a) => a[0] === 'systemd-run')).toEqual([]);
});

test('a normal user cannot ask a machine: a note says so once, nothing is run', async () => {
  const h = host();
  h.uid = 1000;
  const r = await runCommand(with_(Status, h), ['web']);
  expect(r.stdout).toContain('  nginx  - (needs root)\n');
  expect(r.stderr).toContain('note: the exposure of hardened services is read inside their machines, which needs root\n');
  expect(h.runner.argvs().filter((a) => a[0] === 'systemd-run')).toEqual([]);
});
