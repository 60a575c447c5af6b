// `nspawnctl list` and `nspawnctl status` through oclif with a fake Host.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import List from '../../src/commands/list';
import Status from '../../src/commands/status';
import { Host } from '../../src/host/host';
import { convergeFakeHost, desiredFrom, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';
import { simulateSystemd } from '../helpers/simulated-systemd';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');

const listWith = (host: Host) =>
  class extends List {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

const statusWith = (host: Host) =>
  class extends Status {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** The example applied from /srv/conf/machines.yaml; web runs, db is stopped. */
function exampleHost(): FakeHost {
  const host = makeBootedHost(new FakeHost({ inputs: { [MANIFEST_PATH]: EXAMPLE } }));
  simulateSystemd(host, { running: ['web'], leaderPid: 4321 });
  convergeFakeHost(host, desiredFrom(EXAMPLE).desired, { queries: false });
  return host;
}

describe('nspawnctl list', () => {
  test('with no records prints that no machine is managed', async () => {
    const host = makeBootedHost(new FakeHost());
    simulateSystemd(host);
    const r = await runCommand(listWith(host), []);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('No machines are managed by nspawnctl on this host.\n');
    expect(r.stderr).toBe('');
    expect(host.fs.changes).toEqual([]);
  });

  test('with no records and --json prints an empty list', async () => {
    const r = await runCommand(listWith(new FakeHost()), ['--json']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });

  test('a table of managed machines with state, address and drift', async () => {
    const host = exampleHost();
    const r = await runCommand(listWith(host), []);
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe(['MACHINE  STATE    ADDRESS     MANIFEST  UPGRADED', 'db       stopped  10.77.0.12  drift     never', 'web      running  10.77.0.11  in sync   never', ''].join('\n'));
    expect(host.fs.changes).toEqual([]);
    host.assertNoUnmatchedCalls();
  });

  test('a manifest that can no longer be read is reported per machine', async () => {
    const host = exampleHost();
    host.inputs.clear();
    const r = await runCommand(listWith(host), []);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(['MACHINE  STATE    ADDRESS  MANIFEST             UPGRADED', 'db       stopped  -        manifest unreadable  never', 'web      running  -        manifest unreadable  never', ''].join('\n'));
  });
});

describe('nspawnctl status', () => {
  test('shows one machine with its pending changes', async () => {
    const host = exampleHost();
    const r = await runCommand(statusWith(host), ['db']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(
      [
        'machine:   db',
        'state:     stopped',
        'address:   10.77.0.12',
        'users:     -',
        'manifest:  /srv/conf/machines.yaml (drift)',
        'built:     debian bookworm with mmdebstrap, 2024-05-06T07:08:09.000Z',
        'files:     9 managed',
        'upgraded:  never (by nspawnctl upgrade)',
        'pending:',
        '  start',
        '',
      ].join('\n'),
    );
  });

  test('a running machine: its leader and the host UIDs its root is (from /proc/LEADER/uid_map)', async () => {
    const host = exampleHost();
    host.fs.addFile('/proc/4321/uid_map', '         0    1507328      65536\n');
    const r = await runCommand(statusWith(host), ['web', '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: 'running', leader: 4321, users: { base: 1507328, count: 65536 } });
    const text = await runCommand(statusWith(host), ['web']);
    expect(text.stdout).toContain('\nusers:     host UIDs 1507328-1572863 (root inside is 1507328:1507328)\n');
    host.fs.addFile('/proc/4321/uid_map', '         0          0 4294967295\n');
    expect((await runCommand(statusWith(host), ['web'])).stdout).toContain('\nusers:     host UIDs (no user namespace: root inside is host root)\n');
  });

  test('an unmanaged name is an error, exit 1', async () => {
    const host = exampleHost();
    const r = await runCommand(statusWith(host), ['ghost']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('nspawnctl: no machine named ghost is managed by nspawnctl\nhint: nspawnctl list shows the machines nspawnctl manages.\n');
  });
});
