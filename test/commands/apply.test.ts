// `nspawnctl apply` through oclif with a fake Host: nothing on a converged host, preflight and
// conflicts refuse before any change, and a full apply on a fresh host converges it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Apply from '../../src/commands/apply';
import { Host } from '../../src/host/host';
import { observeHost } from '../../src/plan/observe';
import { convergedState, convergeFakeHost, desiredFrom, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';
import { simulateSystemd } from '../helpers/simulated-systemd';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');
const OBSERVE_CALLS = [
  ['machinectl', 'list', '--no-legend', '--no-pager', '--full'],
  ['systemctl', 'is-active', 'systemd-networkd.service'],
];

const applyWith = (host: Host) =>
  class extends Apply {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** A host with nothing of nspawnctl's; booted ones answer the two queries observe makes. */
function freshHost(options: { uid?: number; booted?: boolean } = {}): FakeHost {
  const host = new FakeHost({ uid: options.uid ?? 0, inputs: { 'machines.yaml': EXAMPLE } });
  if (options.booted !== false) {
    makeBootedHost(host);
    host.runner.on(OBSERVE_CALLS[0], { stdout: '' });
    host.runner.on(OBSERVE_CALLS[1], { stdout: 'active\n' });
  }
  return host;
}

describe('nspawnctl apply', () => {
  test('on a converged host: prints no-change and runs nothing', async () => {
    const host = convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } })), desiredFrom(EXAMPLE).desired);
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('= network examplevlan: unchanged\n= machine db: unchanged\n= machine web: unchanged\n\nNo changes: the host matches machines.yaml.\n');
    expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
    expect(host.fs.changes).toEqual([]);
  });

  test('on a converged host with --json: changes:false and nothing applied', async () => {
    const host = convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } })), desiredFrom(EXAMPLE).desired);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--json']);
    expect(r.exitCode).toBe(0);
    const json = JSON.parse(r.stdout);
    expect([json.changes, json.steps, json.applied, json.conflicts]).toEqual([false, [], [], []]);
    expect(host.fs.changes).toEqual([]);
  });

  test('as non-root with pending steps: exit 3 naming what is missing, before any change', async () => {
    const host = freshHost({ uid: 1000 });
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe('nspawnctl: this host is not ready:\n  - nspawnctl apply must run as root\nhint: Run it with sudo, or as root.\n');
    expect(r.stdout).toBe('');
    expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
    expect(host.fs.changes).toEqual([]);
  });

  test('on a host without systemd and tools: every missing thing is listed at once', async () => {
    const host = freshHost({ uid: 1000, booted: false });
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe(
      [
        'nspawnctl: this host is not ready:',
        '  - nspawnctl apply must run as root',
        '  - the host was not booted with systemd (no /run/systemd/system)',
        '  - machinectl is not installed',
        '  - systemd-nspawn is not installed',
        '  - networkctl (systemd-networkd) is not installed',
        '  - neither mmdebstrap nor debootstrap is installed (needed for machine db)',
        'hint: Run it with sudo, or as root.',
        'Run nspawnctl on a host whose PID 1 is systemd; to try it anyway, use `npm run sandbox -- up`.',
        'apt-get install systemd-container',
        'apt-get install systemd-container',
        'apt-get install systemd (Debian 12) or systemd-networkd (Debian 13)',
        'apt-get install mmdebstrap',
        '',
      ].join('\n'),
    );
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('with conflicts: exit 4, the plan shows them, nothing changes', async () => {
    const host = freshHost();
    host.fs.addDir('/var/lib/machines/web');
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain('! machine web: conflict\n    /var/lib/machines/web exists and was not created by nspawnctl\n');
    expect(r.stderr.endsWith(
      [
        '1 conflict(s); apply will not change anything until they are resolved:',
        '  ! machine web: /var/lib/machines/web exists and was not created by nspawnctl',
        'nspawnctl: 1 conflict(s); nothing was changed',
        'hint: Resolve them (see above), or destroy the machine with --force if it is really yours.',
        '',
      ].join('\n'),
    )).toBe(true);
    expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
    expect(host.fs.changes).toEqual([]);
  });

  test('--dry-run shows the plan and changes nothing', async () => {
    const host = freshHost();
    const r = await runCommand(applyWith(host), ['machines.yaml', '--dry-run']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain('\n13 step(s):\n');
    expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
    expect(host.fs.changes).toEqual([]);
  });

  test('a failing bootstrap stops apply: argv, exit code and stderr reported, staging removed, nothing after it runs', async () => {
    const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } }));
    // Responses are tried in order: this one wins over the simulation's successful mmdebstrap.
    host.runner.on((argv) => argv[0] === 'mmdebstrap', ({ args }) => {
      host.fs.addFile(`${args[args.length - 2]}/debootstrap/debootstrap.log`, 'partial\n');
      return { exitCode: 1, stderr: 'I: chroot architecture amd64 is equal to the host\'s architecture\nE: cannot resolve deb.debian.org\n' };
    });
    simulateSystemd(host, { bridges: ['examplevlan'] });
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.endsWith(
      [
        'nspawnctl: machine db: command mmdebstrap --variant=minbase --include=dbus,iproute2,iputils-ping,systemd,systemd-sysv bookworm /var/lib/machines/.nspawnctl-db.staging http://deb.debian.org/debian exited with code 1:',
        "    I: chroot architecture amd64 is equal to the host's architecture",
        '    E: cannot resolve deb.debian.org',
        '',
      ].join('\n'),
    )).toBe(true);
    expect(host.runner.argvs().map((a) => a[0])).toEqual(['machinectl', 'systemctl', 'networkctl', 'ip', 'mmdebstrap']);
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/'))).toEqual([]);
    expect(host.fs.nodes.has('/var/lib/nspawnctl/machines/db.json')).toBe(false);
    // The steps before the failure did happen: the network is recorded and written.
    expect(host.fs.nodes.has('/var/lib/nspawnctl/networks/examplevlan.json')).toBe(true);
  });

  test('on a fresh host: runs exactly the expected commands, and a second apply plans nothing', async () => {
    const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } }));
    simulateSystemd(host, { bridges: ['examplevlan'] });
    const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout.endsWith('Applied 13 step(s).\n')).toBe(true);
    const staging = (n: string) => `/var/lib/machines/.nspawnctl-${n}.staging`;
    const mmdebstrap = (n: string) => ['mmdebstrap', '--variant=minbase', '--include=dbus,iproute2,iputils-ping,systemd,systemd-sysv', 'bookworm', staging(n), 'http://deb.debian.org/debian'];
    expect(host.runner.argvs()).toEqual([
      ...OBSERVE_CALLS,
      ['networkctl', 'reload'],
      ['ip', 'link', 'show', 'dev', 'examplevlan'],
      mmdebstrap('db'),
      ['machinectl', 'enable', 'db'],
      ['machinectl', 'start', 'db'],
      ['machinectl', 'show', 'db', '--property=State', '--value'],
      mmdebstrap('web'),
      [
        'systemd-nspawn',
        '--quiet',
        '--register=no',
        '--settings=no',
        '--console=pipe',
        '--resolv-conf=off',
        '--timezone=off',
        '--machine=web',
        `--directory=${staging('web')}`,
        '--setenv=DEBIAN_FRONTEND=noninteractive',
        '--',
        'mkdir',
        '-p',
        '/var/www',
      ],
      ['machinectl', 'enable', 'web'],
      ['machinectl', 'start', 'web'],
      ['machinectl', 'show', 'web', '--property=State', '--value'],
    ]);
    host.assertNoUnmatchedCalls();

    // Every generated file is in place with its mode, the records are written, the staging
    // directories and the temporary policy-rc.d are gone.
    const { desired } = desiredFrom(EXAMPLE);
    for (const e of [...desired.networks.flatMap((n) => n.entries), ...desired.machines.flatMap((m) => [...m.hostEntries, ...m.rootfsEntries])]) {
      const node = host.fs.nodes.get(e.hostPath);
      expect({ path: e.hostPath, node }).toEqual({
        path: e.hostPath,
        node: e.kind === 'symlink' ? { type: 'symlink', target: e.target, uid: 0, gid: 0 } : { type: 'file', content: e.content, mode: e.mode, uid: 0, gid: 0 },
      });
    }
    expect(host.fs.paths().filter((p) => p.includes('.staging') || p.endsWith('policy-rc.d'))).toEqual([]);
    expect(host.fs.nodes.get('/srv/www')?.type).toBe('dir');

    // The host now observes exactly as converged (records say mmdebstrap), and apply is a no-op.
    const state = await observeHost(host, desired);
    const expected = convergedState(desired);
    for (const m of Object.values(expected.machines)) m.record!.created = state.machines[m.record!.name].record!.created;
    for (const [name, n] of Object.entries(expected.networks)) n.record!.created = state.networks[name].record!.created;
    expected.machines.db.recordText = state.machines.db.recordText;
    expected.machines.web.recordText = state.machines.web.recordText;
    expected.networks.examplevlan.recordText = state.networks.examplevlan.recordText;
    expect(state).toEqual(expected);

    const changesBefore = host.fs.changes.length;
    const callsBefore = host.runner.calls.length;
    const again = await runCommand(applyWith(host), ['machines.yaml']);
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toBe('= network examplevlan: unchanged\n= machine db: unchanged\n= machine web: unchanged\n\nNo changes: the host matches machines.yaml.\n');
    expect(host.fs.changes.length).toBe(changesBefore);
    expect(host.runner.argvs().slice(callsBefore)).toEqual(OBSERVE_CALLS);
  });
});
