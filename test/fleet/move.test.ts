// Moving machines between a fleet's hosts: which machines move (only this fleet's, only into the
// hosts acted on, never from two places), how a move is described, and that an archive holding
// another machine than the one asked for is never restored.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeMove, Location, plannedMoves, transferMachine } from '../../src/fleet/move';
import { SshTransport } from '../../src/fleet/ssh';
import { parseManifest } from '../../src/manifest/load';
import { FakeHost } from '../helpers/fake-host';

const manifest = parseManifest(
  'fleet.yaml',
  [
    'hosts:',
    '  alpha: { ssh: root@10.0.0.5 }',
    '  beta: { ssh: root@10.0.0.6 }',
    'networks:',
    '  lan: { subnet: 10.77.0.0/24 }',
    'machines:',
    '  web: { host: beta, network: { bridge: lan, address: 10.77.0.10 }, bind: [/srv/www] }',
    '  db: { host: alpha, network: { bridge: lan, address: 10.77.0.11 } }',
    '',
  ].join('\n'),
);
const fleet = manifest.fleet!;
const all = Object.values(fleet.hosts);
const at = (where: Record<string, string[]>, foreign: Record<string, string[]> = {}): Location => ({ where: new Map(Object.entries(where)), foreign: new Map(Object.entries(foreign)), unknown: [] });

describe('plannedMoves', () => {
  test('a machine of this fleet on another host, not on its own: one move', () => {
    expect(plannedMoves(fleet, at({ web: ['alpha'], db: ['alpha'] }), all)).toEqual({ moves: [{ machine: 'web', from: 'alpha', to: 'beta' }], problems: [] });
  });

  test('nowhere yet, or already on its host: no move', () => {
    expect(plannedMoves(fleet, at({ db: ['alpha'] }), all)).toEqual({ moves: [], problems: [] });
    expect(plannedMoves(fleet, at({ web: ['beta'], db: ['alpha'] }), all)).toEqual({ moves: [], problems: [] });
  });

  test('only into the hosts acted on: --host alpha does not move web into beta', () => {
    expect(plannedMoves(fleet, at({ web: ['alpha'] }), [fleet.hosts.alpha])).toEqual({ moves: [], problems: [] });
  });

  test('on its host and on another one too (a move stopped half-way): a problem naming the old copy, never silence', () => {
    const { moves, problems } = plannedMoves(fleet, at({ web: ['alpha', 'beta'] }), all);
    expect(moves).toEqual([]);
    expect(problems.map((p) => p.error)).toEqual(['machine web runs on beta and also on alpha; destroy the old copy (nspawnctl destroy web --manifest FILE --host alpha --yes)']);
  });

  test('a machine of the same name made from a manifest file on another host is not this fleet\'s: never moved, a problem', () => {
    const { moves, problems } = plannedMoves(fleet, at({}, { web: ['alpha'] }), all);
    expect(moves).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(problems[0].error).toMatch(/^host alpha has a machine web that this fleet did not make/);
  });

  test('the description says what a move does, and that bind mounts stay behind', () => {
    expect(describeMove({ machine: 'web', from: 'alpha', to: 'beta' }, fleet)).toBe(
      'move web: host alpha -> host beta (backup on alpha, copied over ssh, restored and started on beta, then destroyed on alpha; its bind mounts are not carried: their data stays on alpha)',
    );
    expect(describeMove({ machine: 'db', from: 'beta', to: 'alpha' }, fleet)).not.toContain('bind');
  });
});

describe('transferMachine', () => {
  let base: string;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'nspawnctl-move-test-'));
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  const remote = (argv: string[]) => argv[argv.length - 1];
  const asking = (...words: string[]) => (argv: string[]) => argv[0] === 'ssh' && words.every((w) => remote(argv).includes(`'${w}'`));

  test('an archive that holds another machine than the one moving is never restored; the temporary directories are removed', async () => {
    const host = new FakeHost();
    host.runner.on(asking('mktemp'), { stdout: '/var/tmp/nspawnctl-move.AbCdEf12\n' });
    host.runner.on(asking('backup', 'web'), { stdout: '{}' });
    // The copy: ssh cat on the old host piped into ssh dd on the new one.
    host.runner.on((argv) => argv.includes('|') && argv.includes('root@10.0.0.5') && argv.includes('root@10.0.0.6'), {});
    host.runner.on(asking('sha256sum'), { stdout: `${'a'.repeat(64)}  /var/tmp/nspawnctl-move.AbCdEf12/web.tar.zst\n` });
    // The old host (compromised, say) handed over an archive of a machine named evil.
    host.runner.on(asking('restore', '--dry-run'), { stdout: JSON.stringify({ machine: 'evil', from: 'evil' }) });
    host.runner.on(asking('rm'), {});
    const t = new SshTransport(host.runner, {}, base);
    const lines: string[] = [];
    const r = await transferMachine(host.runner, t, fleet, { machine: 'web', from: 'alpha', to: 'beta' }, { startTimeoutSec: 90, say: (l) => lines.push(l) });
    expect(r).toEqual({ machine: 'web', from: 'alpha', to: 'beta', result: 'failed', error: 'the archive host alpha gave for web holds machine "evil"; nothing was restored' });
    const remotes = host.runner.calls.filter((c) => c.file === 'ssh').map((c) => c.args[c.args.length - 1]);
    expect(remotes.some((c) => c.includes("'restore'") && !c.includes("'--dry-run'"))).toBe(false);
    expect(remotes.filter((c) => c.startsWith("'rm' '-rf' '--' '/var/tmp/nspawnctl-move.AbCdEf12'"))).toHaveLength(2);
    await t.close();
  });
});
