// `nspawnctl plan` through oclif with a fake Host: exit codes, located errors, text and JSON.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Plan from '../../src/commands/plan';
import { Host } from '../../src/host/host';
import { answerObserveQueries, convergeFakeHost, desiredFrom, LIST_INTERFACES, LIST_MACHINES, makeBootedHost, NETWORKD_ACTIVE } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');

const planWith = (host: Host) =>
  class extends Plan {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** A booted host where systemd-networkd runs and no machine is registered yet. */
function freshBootedHost(manifest: string): FakeHost {
  return answerObserveQueries(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } })));
}

const BAD = 'networks:\n  br0: { subnet: 10.0.0.0/24 }\nmachines:\n  web:\n    network: { bridge: br0, address: 10.0.1.5 }\n    autostrat: true\n';
const BAD_LINES = [
  'machines.yaml:5:38: machines.web.network.address: 10.0.1.5 is outside network br0 (10.0.0.0/24) or is its network/broadcast address',
  'machines.yaml:6:5: machines.web.autostrat: unknown key (did you mean autostart?); expected one of: distribution, suite, mirror, variant, bootstrapper, packages, aptProxy, dns, authorizedKeys, environment, credentials, security, limits, health, autoUpgrade, hostname, network, bind, ports, files, provision, autostart, host, services',
];

describe('nspawnctl plan', () => {
  test('a bad manifest exits 2 with every located problem on stderr, touching nothing', async () => {
    const host = freshBootedHost(BAD);
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(`${BAD_LINES.join('\n')}\nhint: Fix the manifest; nothing on the host was changed. See man nspawnctl.\n`);
    expect(r.stdout).toBe('');
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('a bad manifest with --json also prints the problems as data on stdout', async () => {
    const host = freshBootedHost(BAD);
    const r = await runCommand(planWith(host), ['machines.yaml', '--json']);
    expect(r.exitCode).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      error: {
        kind: 'ManifestError',
        message: BAD_LINES.join('\n'),
        hint: 'Fix the manifest; nothing on the host was changed. See man nspawnctl.',
        exitCode: 2,
        problems: [
          { file: 'machines.yaml', line: 5, col: 38, path: 'machines.web.network.address', message: '10.0.1.5 is outside network br0 (10.0.0.0/24) or is its network/broadcast address' },
          { file: 'machines.yaml', line: 6, col: 5, path: 'machines.web.autostrat', message: BAD_LINES[1].split('machines.web.autostrat: ')[1] },
        ],
      },
    });
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('a missing manifest file exits 2 naming it', async () => {
    const host = freshBootedHost(BAD);
    const r = await runCommand(planWith(host), ['nope.yaml']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('nspawnctl: cannot read nope.yaml: no such file\n');
    expect(host.runner.calls).toEqual([]);
  });

  test('--json on a fresh host: changes:true and the step kinds', async () => {
    const host = freshBootedHost(EXAMPLE);
    const r = await runCommand(planWith(host), ['machines.yaml', '--json']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    const json = JSON.parse(r.stdout);
    expect(json.manifest).toBe('/srv/conf/machines.yaml');
    expect(json.changes).toBe(true);
    expect(json.steps.map((s: { kind: string }) => s.kind)).toEqual([
      'write-record',
      'write-file',
      'write-file',
      'reload-networkd',
      'create-machine',
      'write-file',
      'enable-machine',
      'start-machine',
      'create-bind-source',
      'create-machine',
      'write-file',
      'enable-machine',
      'start-machine',
    ]);
    expect(json.conflicts).toEqual([]);
    expect(json.unmanaged).toEqual([]);
    // plan only looks: the read-only queries (the interfaces, as the network is new), and no write.
    expect(host.runner.argvs()).toEqual([LIST_MACHINES, NETWORKD_ACTIVE, LIST_INTERFACES]);
    expect(host.fs.changes).toEqual([]);
    host.assertNoUnmatchedCalls();
    // Two machines are created from one mirror and suite: one question, whether it has the suite.
    expect(host.http.urls()).toEqual(['http://deb.debian.org/debian/dists/bookworm/Release']);
  });

  test('on a converged host prints the no-change text', async () => {
    const host = convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } })), desiredFrom(EXAMPLE).desired);
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('= network examplevlan: unchanged\n= machine db: unchanged\n= machine web: unchanged\n\nNo changes: the host matches machines.yaml.\n');
    expect(host.fs.changes).toEqual([]);
    // Nothing to bootstrap: no mirror is asked, so the no-op plan stays offline.
    expect(host.http.calls).toEqual([]);
  });

  test('a credential file that is missing, a directory, or readable by every user: exit 3 before anything is asked, with --json too', async () => {
    const manifest = 'machines:\n  web:\n    credentials:\n      a: /etc/nspawnctl/credentials/missing\n      b: /etc/nspawnctl/credentials\n      c: /etc/nspawnctl/credentials/open\n';
    const host = freshBootedHost(manifest);
    host.fs.addFile('/etc/nspawnctl/credentials/open', 'secret\n', { mode: 0o644 });
    const what = [
      'this host is not ready:',
      '  - machine web, credential a: /etc/nspawnctl/credentials/missing does not exist',
      '  - machine web, credential b: /etc/nspawnctl/credentials is a directory, not a regular file',
      '  - machine web, credential c: /etc/nspawnctl/credentials/open is readable by every user on this host (mode 0644)',
    ].join('\n');
    const hint = [
      'Create /etc/nspawnctl/credentials/missing (owned by root, chmod 0600), or correct credentials.a of machine web.',
      'Point credentials.b of machine web at a regular file: systemd-nspawn loads one file per credential.',
      'chmod o-r /etc/nspawnctl/credentials/open',
    ].join('\n');
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`nspawnctl: ${what}\nhint: ${hint}\n`);
    const json = await runCommand(planWith(host), ['machines.yaml', '--json']);
    expect(json.exitCode).toBe(3);
    expect(JSON.parse(json.stdout)).toEqual({ error: { kind: 'PreflightError', message: what, hint, exitCode: 3 } });
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test("the newcomer's misspelt suite: exit 2 at once, located at the key, with the codename meant; the mirror asked once", async () => {
    const manifest = EXAMPLE.replace('  suite: bookworm\n', '  suite: bookwrom\n');
    const host = freshBootedHost(manifest);
    host.http.on('http://deb.debian.org/debian/dists/bookwrom/Release', { status: 404 });
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      [
        'machines.yaml:7:10: defaults.suite: bookwrom is not a suite of http://deb.debian.org/debian (http://deb.debian.org/debian/dists/bookwrom/Release answered HTTP 404); did you mean bookworm? (used by machines db and web)',
        'hint: Fix the manifest; nothing on the host was changed. See man nspawnctl.',
        '',
      ].join('\n'),
    );
    expect(host.http.urls()).toEqual(['http://deb.debian.org/debian/dists/bookwrom/Release']);
    expect(host.fs.changes).toEqual([]);
  });

  test('a mirror that does not answer: exit 3 naming the URL', async () => {
    const host = freshBootedHost(EXAMPLE);
    host.http.on(() => true, { fail: 'deb.debian.org does not resolve (EAI_AGAIN)' });
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe(
      [
        'nspawnctl: this host is not ready:',
        '  - cannot reach http://deb.debian.org/debian/dists/bookworm/Release: deb.debian.org does not resolve (EAI_AGAIN) (needed to create machines db and web)',
        "hint: Check the mirror URL and this host's network. Where the mirror is reached only through a proxy, set aptProxy in the manifest or the http_proxy environment variable.",
        '',
      ].join('\n'),
    );
  });

  test('a bind source that does not exist: exit 3 naming machine, entry and path, before anything is asked; the mirror is not asked either', async () => {
    const manifest = EXAMPLE.replace('      - { host: /srv/www, machine: /var/www, readOnly: true, create: true }\n', '      - /srv/wwww:/var/www:ro\n');
    const host = freshBootedHost(manifest);
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe(
      [
        'nspawnctl: this host is not ready:',
        '  - machine web, bind[0] (/srv/wwww -> /var/www): /srv/wwww does not exist on this host',
        'hint: Create /srv/wwww, correct machines.web.bind[0], or let apply create it empty: { host: /srv/wwww, machine: /var/www, readOnly: true, create: true }',
        '',
      ].join('\n'),
    );
    expect(host.runner.calls).toEqual([]);
    expect(host.http.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('an unknown flag is a usage error, before any host access', async () => {
    const host = freshBootedHost(EXAMPLE);
    const r = await runCommand(planWith(host), ['machines.yaml', '--jsn']);
    expect(r.exitCode).toBe(2);
    // (the message names the command when oclif runs it: test/commands/cli.test.ts)
    expect(r.stderr).toMatch(/^nspawnctl: unknown flag --jsn( for plan)?; did you mean --json\?\n/);
    expect(host.runner.calls).toEqual([]);
  });
});

describe('nspawnctl plan: the machines must fit under the kernel limits', () => {
  /** N machines without a network. */
  const many = (n: number, prefix = 'm') => `machines:\n${Array.from({ length: n }, (_, i) => `  ${prefix}${i}: {}\n`).join('')}`;
  function hostWithLimit(manifest: string, instances: number, running: string[] = []): FakeHost {
    const host = answerObserveQueries(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } })), { running });
    host.fs.addFile('/proc/sys/fs/inotify/max_user_instances', `${instances}\n`);
    host.fs.addFile('/proc/sys/user/max_inotify_instances', `${instances}\n`);
    host.fs.addFile('/proc/meminfo', 'MemTotal:        4194304 kB\n');
    return host;
  }
  const TOO_MANY = [
    'nspawnctl: this host is not ready:',
    '  - fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 15 would run (0 running now, 15 to start): they need 136 inotify instances (8 per machine, 16 for the host)',
    'hint: nspawnctl host init machines.yaml (raises it to 4096 now and keeps it in /etc/sysctl.d/50-nspawnctl.conf), or by hand: sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
    '',
  ].join('\n');

  test('15 new machines on Debian\'s default of 128 inotify instances: exit 3 naming the sysctl, the numbers and the fix; the mirror is not asked', async () => {
    const host = hostWithLimit(many(15), 128);
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }).toEqual({ exitCode: 3, stdout: '', stderr: TOO_MANY });
    expect(host.runner.argvs()).toEqual([LIST_MACHINES]);
    expect(host.http.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
    const json = await runCommand(planWith(host), ['machines.yaml', '--json']);
    expect(json.exitCode).toBe(3);
    expect(JSON.parse(json.stdout).error).toMatchObject({ kind: 'PreflightError', exitCode: 3 });
  });

  test('14 fit exactly (16 + 8 x 14 = 128): the plan is shown, exit 0', async () => {
    const r = await runCommand(planWith(hostWithLimit(many(14), 128)), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('+ machine m13: create');
  });

  test('machines already running count, though they are not in this manifest', async () => {
    const host = hostWithLimit(many(5, 'new'), 128, Array.from({ length: 10 }, (_, i) => `other${i}`));
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain('  - fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 15 would run (10 running now, 5 to start):');
  });

  test('a converged host over the limit starts nothing: no problem, the plan is empty (exit 0)', async () => {
    const { desired } = desiredFrom(many(20));
    const host = convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': many(20) } })), desired);
    host.fs.addFile('/proc/sys/fs/inotify/max_user_instances', '128\n');
    const r = await runCommand(planWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('No changes');
  });
});
