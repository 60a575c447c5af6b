// `nspawnctl apply` through oclif with a fake Host: nothing on a converged host, preflight and
// conflicts refuse before any change, a full apply on a fresh host converges it, a failing
// machine fails alone, and the host lock keeps two runs apart.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Apply from '../../src/commands/apply';
import { Host } from '../../src/host/host';
import { LOCK_PATH } from '../../src/host/lock';
import { observeHost } from '../../src/plan/observe';
import { answerObserveQueries, convergedState, convergeFakeHost, desiredFrom, LIST_INTERFACES, LIST_MACHINES, makeBootedHost, NETWORKD_ACTIVE } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { changesBesidesLock, seedLockHolder } from '../helpers/lock';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';
import { inMachineArgv, readyCalls, simulateSystemd } from '../helpers/simulated-systemd';

const EXAMPLE = readFileSync(join(REPO_ROOT, 'machines.example.yaml'), 'utf8');
/** What observe asks on a host where the example's network is recorded. */
const OBSERVE_CALLS = [LIST_MACHINES, NETWORKD_ACTIVE];
/** On a fresh host the network is new: observe also asks for the host's interfaces (a bridge must not take one over). */
const FRESH_OBSERVE_CALLS = [...OBSERVE_CALLS, LIST_INTERFACES];

const applyWith = (host: Host) =>
  class extends Apply {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** A host with nothing of nspawnctl's; booted ones answer the queries observe makes. */
function freshHost(options: { uid?: number; booted?: boolean; manifest?: string } = {}): FakeHost {
  const host = new FakeHost({ uid: options.uid ?? 0, inputs: { 'machines.yaml': options.manifest ?? EXAMPLE } });
  if (options.booted !== false) answerObserveQueries(makeBootedHost(host));
  return host;
}

/**
 * The behaviour before the image cache and parallel apply: every new machine bootstrapped into its
 * own staging directory, one machine at a time; for the tests that assert exact command sequences.
 */
const SEQUENTIAL = ['--no-cache', '--jobs', '1'];
const STAGING = (n: string) => `/var/lib/machines/.nspawnctl-${n}.staging`;
// dpkg skips its syncs in the staging directory; it is synced once (SYNC) before it is renamed into place.
const MMDEBSTRAP = (n: string, include = 'dbus,iproute2,iputils-ping,systemd,systemd-sysv') => ['mmdebstrap', '--variant=minbase', `--include=${include}`, '--dpkgopt=force-unsafe-io', 'bookworm', STAGING(n), 'http://deb.debian.org/debian'];
const SYNC = (n: string) => ['sync', '--file-system', STAGING(n)];
const SHOW = (n: string) => ['machinectl', 'show', n, '--property=State', '--value'];
const CONVERGED_TEXT = '= network examplevlan: unchanged\n= machine db: unchanged\n= machine web: unchanged\n\nNo changes: the host matches machines.yaml.\n';
const HINT = 'hint: Fix the cause and run apply again: it continues from where this run stopped.\n';
const HOLDER = { pid: 777, command: 'apply /srv/conf/other.yaml', since: '2025-01-01T00:00:00.000Z' };

/** The example applied: both machines run. */
function convergedHost(): FakeHost {
  return convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } })), desiredFrom(EXAMPLE).desired);
}

/** A fresh booted host simulating systemd; mmdebstrap fails for `failing` machines (and leaves a partial staging tree). */
function hostWhereBootstrapFails(manifest: string, failing: string[]): FakeHost {
  const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } }));
  // Responses are tried in order: this one wins over the simulation's successful mmdebstrap.
  host.runner.on((argv) => argv[0] === 'mmdebstrap' && failing.some((n) => argv.includes(STAGING(n))), ({ args }) => {
    host.fs.addFile(`${args[args.length - 2]}/debootstrap/debootstrap.log`, 'partial\n');
    return { exitCode: 1, stderr: "I: chroot architecture amd64 is equal to the host's architecture\nE: cannot resolve deb.debian.org\n" };
  });
  simulateSystemd(host, { bridges: ['examplevlan'] });
  return host;
}

/** The report line of a failed mmdebstrap for machine `n`, as CommandFailedError words it. */
const bootstrapFailure = (n: string, include?: string) =>
  [
    `machine ${n}: command ${MMDEBSTRAP(n, include).join(' ')} exited with code 1:`,
    "    I: chroot architecture amd64 is equal to the host's architecture",
    '    E: cannot resolve deb.debian.org',
  ].join('\n');

/** The part of stderr from the error report on (progress lines and the plan come before it). */
const report = (stderr: string) => stderr.slice(stderr.indexOf('nspawnctl: '));

/** Two machines without a network: every step belongs to one machine or the other. */
const TWO_MACHINES = `defaults:
  packages: [iproute2, iputils-ping]
machines:
  db:
    autostart: true
  web:
    autostart: true
`;

/**
 * The example's network and web applied (web runs), db not yet: the manifest's db is new. A
 * systemd simulation answers the queries and creates and starts db.
 */
function hostWithWebOnly(manifest = EXAMPLE): FakeHost {
  const { desired } = desiredFrom(EXAMPLE);
  const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } }));
  convergeFakeHost(host, { ...desired, machines: desired.machines.filter((m) => m.machine.name === 'web') }, { queries: false });
  simulateSystemd(host, { running: ['web'], bridges: ['examplevlan'] });
  return host;
}

/** Every node below `dir`, copied: for "the host's files are untouched" comparisons. */
function nodesUnder(host: FakeHost, dir: string): Map<string, unknown> {
  return new Map([...host.fs.nodes].filter(([k]) => k === dir || k.startsWith(`${dir}/`)).map(([k, v]) => [k, { ...v }]));
}

/** What web's root did: its etc/systemd is now a symlink to the host's /etc. */
const SYMLINKED = "/var/lib/machines/web/etc/systemd is a symlink: nspawnctl will not follow or use it";
const FIFO = '/var/lib/machines/web/etc/hostname is a special file; nspawnctl will not replace it';
/** The manifest with a change for web only (its motd). */
const EXAMPLE_NEW_MOTD = EXAMPLE.replace('content: "web: managed by nspawnctl\\n"', 'content: "web: hello\\n"');
/** A network named like an interface the host already has (eth0). */
const ETH0 = `networks:
  eth0: { subnet: 10.9.0.0/24 }
machines:
  web:
    network: { bridge: eth0, address: 10.9.0.2 }
`;
const ETH0_TAKEN = 'a network interface named eth0 already exists on this host and nspawnctl did not create it; a bridge of that name would take it over (give the network another name)';

describe('nspawnctl apply', () => {
  test('on a converged host: prints no-change on stderr, runs nothing, changes only the lock', async () => {
    const host = convergedHost();
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(CONVERGED_TEXT);
    expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
    expect(changesBesidesLock(host)).toEqual([]);
  });

  test('on a converged host with --json: changes:false and nothing applied', async () => {
    const host = convergedHost();
    const r = await runCommand(applyWith(host), ['machines.yaml', '--json']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    const json = JSON.parse(r.stdout);
    expect([json.changes, json.steps, json.applied, json.conflicts]).toEqual([false, [], [], []]);
    expect(changesBesidesLock(host)).toEqual([]);
  });

  // Regression (newcomer issue): as a normal user, apply read /var/lib/machines to plan and died
  // with a raw EACCES (exit 1). It needs root whatever the plan, and says so before reading.
  test('as non-root: exit 3 naming what is missing, before the host is read or changed', async () => {
    const host = freshHost({ uid: 1000 });
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe('nspawnctl: this host is not ready:\n  - nspawnctl apply must run as root\nhint: Run it with sudo, or as root.\n');
    expect(r.stdout).toBe('');
    expect(host.runner.argvs()).toEqual([]);
    // Non-root takes no lock (it could not create it in /run anyway).
    expect(host.fs.changes).toEqual([]);
  });

  // Regression test for a fixed bug (it was in src/host/lock.ts acquireLock, via BaseCommand.withLock): the lock is taken before the root check, and
  // a non-root user cannot create /run/nspawnctl.lock (/run is root's, mode 0755): the real open
  // throws EACCES, which surfaces as "permission denied" (exit 1) instead of this preflight
  // report (exit 3). The FakeHost has no permissions, so this test gives its openLock the real
  // answer for /run. Same for destroy and host init --undo as non-root.
  test('as non-root on a real filesystem (no write access to /run): still exit 3 naming what is missing', async () => {
    const host = freshHost({ uid: 1000 });
    host.openLock = async (path: string) => {
      throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES', errno: -13, syscall: 'open', path });
    };
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect({ exitCode: r.exitCode, stderr: r.stderr, stdout: r.stdout }).toEqual({
      exitCode: 3,
      stderr: 'nspawnctl: this host is not ready:\n  - nspawnctl apply must run as root\nhint: Run it with sudo, or as root.\n',
      stdout: '',
    });
    expect(host.fs.changes).toEqual([]);
  });

  // As root (a normal user is refused first, above).
  test('on a host without systemd and tools: every missing thing is listed at once', async () => {
    const host = freshHost({ booted: false });
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe(
      [
        'nspawnctl: this host is not ready:',
        '  - the host was not booted with systemd (no /run/systemd/system)',
        '  - machinectl is not installed',
        '  - systemd-nspawn is not installed',
        '  - networkctl (systemd-networkd) is not installed',
        '  - neither mmdebstrap nor debootstrap is installed (needed for machine db)',
        'hint: Run nspawnctl on a host whose PID 1 is systemd; to try it anyway, use `npm run sandbox -- up`.',
        'apt-get install systemd-container',
        'apt-get install systemd-container',
        'apt-get install systemd (Debian 12) or systemd-networkd (Debian 13)',
        'apt-get install mmdebstrap',
        '',
      ].join('\n'),
    );
    expect(host.runner.calls).toEqual([]);
    expect(changesBesidesLock(host)).toEqual([]);
  });

  test('a misspelt suite: exit 2 under the lock before any step, nothing bootstrapped; --dry-run says the same', async () => {
    const host = freshHost({ manifest: EXAMPLE.replace('  suite: bookworm\n', '  suite: bookwrom\n') });
    host.http.on('http://deb.debian.org/debian/dists/bookwrom/Release', { status: 404 });
    const problem = 'machines.yaml:7:10: defaults.suite: bookwrom is not a suite of http://deb.debian.org/debian (http://deb.debian.org/debian/dists/bookwrom/Release answered HTTP 404); did you mean bookworm? (used by machines db and web)';
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toEqual({ exitCode: 2, stderr: `${problem}\nhint: Fix the manifest; nothing on the host was changed. See man nspawnctl.\n` });
    expect(host.runner.argvs()).toEqual(FRESH_OBSERVE_CALLS);
    expect(changesBesidesLock(host)).toEqual([]);
    const dry = await runCommand(applyWith(host), ['machines.yaml', '--dry-run']);
    expect(dry.exitCode).toBe(2);
    expect(dry.stderr.split('\n')[0]).toBe(problem);
  });

  test('a bind source that does not exist: exit 3 naming it, nothing run or changed but the lock', async () => {
    const host = freshHost({ manifest: EXAMPLE.replace('      - { host: /srv/www, machine: /var/www, readOnly: true, create: true }\n', '      - /srv/wwww:/var/www:ro\n') });
    const r = await runCommand(applyWith(host), ['machines.yaml']);
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
    expect(changesBesidesLock(host)).toEqual([]);
    expect(host.fs.nodes.has('/srv/wwww')).toBe(false);
  });

  // A machine's conflict stops only that machine; with nothing else to do, nothing is changed.
  test('a machine conflict and nothing else to do: exit 4, the plan shows it, nothing changes but the lock', async () => {
    const host = convergedHost();
    host.fs.nodes.delete('/var/lib/nspawnctl/machines/web.json');
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(4);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      [
        '= network examplevlan: unchanged',
        '= machine db: unchanged',
        '! machine web: conflict',
        '    /var/lib/machines/web exists and was not created by nspawnctl',
        '    /etc/systemd/nspawn/web.nspawn exists and was not created by nspawnctl',
        '',
        '2 conflict(s); apply leaves web alone:',
        '  ! machine web: /var/lib/machines/web exists and was not created by nspawnctl',
        '  ! machine web: /etc/systemd/nspawn/web.nspawn exists and was not created by nspawnctl',
        'nspawnctl: 2 conflict(s); nothing was changed',
        'hint: Resolve them (see above), or destroy the machine with --force if it is really yours.',
        '',
      ].join('\n'),
    );
    expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
    expect(changesBesidesLock(host)).toEqual([]);
  });

  test('--dry-run prints the plan on stdout, takes no lock and changes nothing', async () => {
    const host = freshHost();
    const r = await runCommand(applyWith(host), ['machines.yaml', '--dry-run']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      [
        '+ network examplevlan: create',
        '    create /etc/systemd/network/50-nspawnctl-examplevlan.netdev',
        '    create /etc/systemd/network/50-nspawnctl-examplevlan.network',
        '+ machine db: create',
        '    bootstrap debian bookworm with mmdebstrap or debootstrap',
        '    create /etc/systemd/nspawn/db.nspawn',
        '    enable at boot',
        '    start',
        '+ machine web: create',
        '    create directory /srv/www',
        '    bootstrap debian bookworm with mmdebstrap or debootstrap',
        '    create /etc/systemd/nspawn/web.nspawn',
        '    enable at boot',
        '    start',
        '',
        '13 step(s):',
        '  1. record network examplevlan as managed by nspawnctl  (new network)',
        '  2. create /etc/systemd/network/50-nspawnctl-examplevlan.netdev  (missing)',
        '  3. create /etc/systemd/network/50-nspawnctl-examplevlan.network  (missing)',
        '  4. reload systemd-networkd  (bridge configuration changed)',
        '  5. create machine db: bootstrap debian bookworm (5 packages), write 8 files inside  (not on this host yet)',
        '  6. create /etc/systemd/nspawn/db.nspawn  (new machine)',
        '  7. enable db (start at boot)  (autostart: true)',
        '  8. start db  (new machine)',
        '  9. create directory /srv/www (bind mount source of web)  (bind mount source does not exist)',
        '  10. create machine web: bootstrap debian bookworm (5 packages), write 8 files inside, run 1 provision commands  (not on this host yet)',
        '  11. create /etc/systemd/nspawn/web.nspawn  (new machine)',
        '  12. enable web (start at boot)  (autostart: true)',
        '  13. start web  (new machine)',
        '',
      ].join('\n'),
    );
    expect(host.runner.argvs()).toEqual(FRESH_OBSERVE_CALLS);
    expect(host.fs.changes).toEqual([]);
  });

  test('--dry-run --json prints the plan as JSON with nothing applied, and takes no lock', async () => {
    const host = freshHost();
    const r = await runCommand(applyWith(host), ['machines.yaml', '--dry-run', '--json']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    const json = JSON.parse(r.stdout);
    expect([json.changes, json.steps.length, json.applied, json.failures]).toEqual([true, 13, [], undefined]);
    expect(host.runner.argvs()).toEqual(FRESH_OBSERVE_CALLS);
    expect(host.fs.changes).toEqual([]);
  });

  test('--dry-run while another run holds the lock: still prints the plan, without waiting', async () => {
    const host = freshHost();
    const theirs = seedLockHolder(host, HOLDER, true);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--dry-run', '--no-wait']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('\n13 step(s):\n');
    expect(host.fs.changes).toEqual([]);
    expect([host.isLocked(LOCK_PATH), host.lockNote(LOCK_PATH)]).toEqual([true, theirs]);
  });

  test('--no-wait while another nspawnctl holds the lock: exit 5 naming it; nothing is observed, run or written', async () => {
    const host = freshHost();
    const theirs = seedLockHolder(host, HOLDER, true);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--no-wait']);
    expect(r.exitCode).toBe(5);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'nspawnctl: another nspawnctl is changing this host: PID 777 (apply /srv/conf/other.yaml, since 2025-01-01T00:00:00.000Z)\nhint: Wait for it, or run again with --wait (the default).\n',
    );
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
    expect([host.isLocked(LOCK_PATH), host.lockNote(LOCK_PATH)]).toEqual([true, theirs]);
  });

  test('--no-wait after a holder died (its note left behind): the lock is free, it applies', async () => {
    const host = convergedHost();
    seedLockHolder(host, HOLDER, false);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--no-wait']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe(CONVERGED_TEXT);
    expect(host.fs.changes).toEqual([`lock ${LOCK_PATH}`, `unlock ${LOCK_PATH}`]);
    expect([host.isLocked(LOCK_PATH), host.lockNote(LOCK_PATH)]).toEqual([false, '']);
  });

  test('by default it waits for a live holder, saying so once, then plans under the lock', async () => {
    const host = convergedHost();
    seedLockHolder(host, HOLDER, true);
    // The holder finishes as soon as apply waits for it.
    host.onLockWait = () => host.endLockHolder(LOCK_PATH);
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe(`nspawnctl: waiting for PID 777 (apply /srv/conf/other.yaml, since 2025-01-01T00:00:00.000Z) to finish...\n${CONVERGED_TEXT}`);
    expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
    expect(changesBesidesLock(host)).toEqual([]);
  });

  test('a staging directory left by an interrupted run is unmounted below and removed, first', async () => {
    const host = convergedHost();
    const old = STAGING('old');
    host.fs.addFile(`${old}/etc/hostname`, 'old\n');
    host.fs.addDir(`${old}/proc`);
    host.fs.addFile('/proc/self/mountinfo', `25 1 0:23 / / rw - ext4 /dev/sda1 rw\n98 25 0:46 / ${old}/proc rw,nosuid - proc proc rw\n`);
    // umount takes the mount out of mountinfo, as the kernel does.
    host.runner.on(['umount', '--lazy', `${old}/proc`], () => {
      host.fs.addFile('/proc/self/mountinfo', '25 1 0:23 / / rw - ext4 /dev/sda1 rw\n');
      return {};
    });
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe(
      `= network examplevlan: unchanged\n= machine db: unchanged\n= machine web: unchanged\n\n1 step(s):\n  1. remove ${old}  (left by an interrupted run)\n`,
    );
    expect(r.stdout.endsWith('Applied 1 of 1 step(s).\n')).toBe(true);
    expect(host.runner.argvs()).toEqual([...OBSERVE_CALLS, ['umount', '--lazy', `${old}/proc`]]);
    host.assertNoUnmatchedCalls();
    expect(changesBesidesLock(host)).toEqual([`remove-tree ${old}`]);
    expect(host.fs.paths().filter((p) => p.includes('.staging'))).toEqual([]);
  });

  test('a failing bootstrap fails only its machine: the other machine is still created and started, exit 1 with a summary', async () => {
    const host = hostWhereBootstrapFails(EXAMPLE, ['db']);
    const r = await runCommand(applyWith(host), ['machines.yaml', ...SEQUENTIAL]);
    expect(r.exitCode).toBe(1);
    // The summary's first line is asserted in the test.failing below (which groups it names).
    expect(r.stderr.endsWith(`):\n  - ${bootstrapFailure('db')}\n${HINT}`)).toBe(true);
    expect(r.stdout.endsWith('Applied 9 of 13 step(s).\n')).toBe(true);
    expect(host.runner.argvs()).toEqual([
      ...FRESH_OBSERVE_CALLS,
      ['networkctl', 'reload'],
      ['ip', 'link', 'show', 'dev', 'examplevlan'],
      MMDEBSTRAP('db'),
      MMDEBSTRAP('web'),
      [
        'systemd-nspawn',
        '--quiet',
        '--register=no',
        '--settings=no',
        '--console=pipe',
        '--resolv-conf=bind-host',
        '--timezone=off',
        '--machine=web',
        `--directory=${STAGING('web')}`,
        '--setenv=DEBIAN_FRONTEND=noninteractive',
        '--',
        'mkdir',
        '-p',
        '/var/www',
      ],
      SYNC('web'),
      ['machinectl', 'enable', 'web'],
      ['machinectl', 'start', 'web'],
      SHOW('web'),
      // Started means usable: its systemd is up and networkd inside configured host0 (within the default 90 s).
      ...readyCalls('web', 90),
    ]);
    host.assertNoUnmatchedCalls();
    // db: staging removed, no rootfs, no record, no .nspawn; web: complete.
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/') && !p.startsWith('/var/lib/machines/web'))).toEqual([]);
    expect(['/var/lib/nspawnctl/machines/db.json', '/etc/systemd/nspawn/db.nspawn'].map((p) => host.fs.nodes.has(p))).toEqual([false, false]);
    expect(['/var/lib/nspawnctl/machines/web.json', '/etc/systemd/nspawn/web.nspawn', '/var/lib/machines/web/etc/motd'].map((p) => host.fs.nodes.get(p)?.type)).toEqual(['file', 'file', 'file']);
    // The host steps before the failure did happen: the network is recorded and written.
    expect(host.fs.nodes.has('/var/lib/nspawnctl/networks/examplevlan.json')).toBe(true);
    expect(host.isLocked(LOCK_PATH)).toBe(false);
  });

  test('web fails, db is still created and started: exact commands, summary naming what was applied, exit 1', async () => {
    const host = hostWhereBootstrapFails(TWO_MACHINES, ['web']);
    const r = await runCommand(applyWith(host), ['machines.yaml', ...SEQUENTIAL]);
    expect(r.exitCode).toBe(1);
    expect(report(r.stderr)).toBe(`nspawnctl: apply failed (applied: db):\n  - ${bootstrapFailure('web')}\n${HINT}`);
    expect(r.stdout.endsWith('Applied 4 of 8 step(s).\n')).toBe(true);
    expect(host.runner.argvs()).toEqual([
      LIST_MACHINES,
      MMDEBSTRAP('db'),
      SYNC('db'),
      ['machinectl', 'enable', 'db'],
      ['machinectl', 'start', 'db'],
      SHOW('db'),
      // db has no network: only its systemd's startup is waited for.
      ...readyCalls('db'),
      MMDEBSTRAP('web'),
    ]);
    host.assertNoUnmatchedCalls();
    expect(host.fs.nodes.get('/var/lib/nspawnctl/machines/db.json')?.type).toBe('file');
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/') && !p.startsWith('/var/lib/machines/db'))).toEqual([]);
    expect(['/var/lib/nspawnctl/machines/web.json', '/etc/systemd/nspawn/web.nspawn'].map((p) => host.fs.nodes.has(p))).toEqual([false, false]);
  });

  test('web fails with --json: one JSON document with applied, failures and skipped; the error on stderr', async () => {
    const host = hostWhereBootstrapFails(TWO_MACHINES, ['web']);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--json', ...SEQUENTIAL]);
    expect(r.exitCode).toBe(1);
    const message = `apply failed (applied: db):\n  - ${bootstrapFailure('web')}`;
    expect(r.stderr).toBe(`nspawnctl: ${message}\n${HINT}`);
    // One JSON document: the apply result (with its failures); the error goes to stderr only.
    const result = JSON.parse(r.stdout);
    expect(`${JSON.stringify(result, null, 2)}\n`).toBe(r.stdout);
    expect(result.steps.map((s: { kind: string }) => s.kind)).toEqual(['create-machine', 'write-file', 'enable-machine', 'start-machine', 'create-machine', 'write-file', 'enable-machine', 'start-machine']);
    expect(result.applied).toEqual(result.steps.slice(0, 4));
    expect(result.failures).toEqual([{ group: 'web', step: result.steps[4], message: bootstrapFailure('web') }]);
    expect(result.steps[4]).toMatchObject({ kind: 'create-machine', machine: 'web' });
    expect(result.skipped).toEqual([]);

    expect(host.runner.argvs().map((a) => a.slice(0, 2).join(' '))).toEqual([
      'machinectl list',
      'mmdebstrap --variant=minbase',
      'sync --file-system',
      'machinectl enable',
      'machinectl start',
      'machinectl show',
      'systemctl --machine=db',
      'mmdebstrap --variant=minbase',
    ]);
  });

  // Regression test for a fixed bug (it was in src/apply/apply.ts summarizeFailures): "applied" lists the pseudo-group "host" (the
  // network steps) next to machine names: the example prints "apply failed (applied: host, db)",
  // where the intended summary is "apply failed (applied: db):\n  - machine web: ...". "host"
  // reads as a machine (and is a valid machine name, see the next test).
  test('the summary names the machines applied, not the "host" group of network steps', async () => {
    const host = hostWhereBootstrapFails(EXAMPLE, ['web']);
    const r = await runCommand(applyWith(host), ['machines.yaml', ...SEQUENTIAL]);
    expect(report(r.stderr)).toBe(`nspawnctl: apply failed (applied: db):\n  - ${bootstrapFailure('web')}\n${HINT}`);
  });

  // Regression test for a fixed bug (it was in src/apply/apply.ts stepGroup/applyPlan): the network steps' group is called "host", and
  // "host" is also a valid machine name. A failing machine "host" is then taken for a failure of
  // the host group: every later machine is "not attempted", and the summary says
  // "host: machine host: ..." instead of "machine host: ...".
  test('a machine named "host" that fails stops only itself', async () => {
    const manifest = 'machines:\n  a: {}\n  host: {}\n  z: {}\n';
    const host = hostWhereBootstrapFails(manifest, ['host']);
    const r = await runCommand(applyWith(host), ['machines.yaml', ...SEQUENTIAL]);
    expect(r.exitCode).toBe(1);
    expect(report(r.stderr)).toBe(`nspawnctl: apply failed (applied: a, z):\n  - ${bootstrapFailure('host', 'dbus,systemd,systemd-sysv')}\n${HINT}`);
    expect(host.runner.argvs().filter((a) => a[0] === 'mmdebstrap').map((a) => a[5])).toEqual([STAGING('a'), STAGING('host'), STAGING('z')]);
  });

  test('a failure in the host group (networkd) stops everything after it; the machines are not attempted', async () => {
    const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } }));
    host.runner.on(['networkctl', 'reload'], { exitCode: 1, stderr: 'Failed to reload network settings: Unit dbus-org.freedesktop.network1.service not found.\n' });
    simulateSystemd(host, { bridges: ['examplevlan'] });
    const r = await runCommand(applyWith(host), ['machines.yaml', '--json']);
    expect(r.exitCode).toBe(1);
    const message = [
      'apply failed:',
      '  - host (bridges, networkd): command networkctl reload exited with code 1:',
      '    Failed to reload network settings: Unit dbus-org.freedesktop.network1.service not found.',
      '  - not attempted: machine db, machine web',
    ].join('\n');
    expect(r.stderr).toBe(`nspawnctl: ${message}\n${HINT}`);
    const result = JSON.parse(r.stdout);
    expect(result.applied.map((s: { kind: string }) => s.kind)).toEqual(['write-record', 'write-file', 'write-file']);
    expect(result.failures).toEqual([{ group: ':host', step: result.steps[3], message: message.split('\n').slice(1, 3).join('\n').slice('  - host (bridges, networkd): '.length) }]);
    expect(result.steps[3].kind).toBe('reload-networkd');
    expect(result.skipped).toEqual(['db', 'web']);
    expect(host.runner.argvs()).toEqual([...FRESH_OBSERVE_CALLS, ['networkctl', 'reload']]);
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines') || p.startsWith('/etc/systemd/nspawn'))).toEqual([]);
    expect(host.isLocked(LOCK_PATH)).toBe(false);
  });

  // mmdebstrap keeps its --aptopt lines (the proxy) in the tree it builds; apt settings inside a
  // machine are the manifest's, so that file is removed and the rendered proxy file stays.
  test('--no-cache with an aptProxy: the bootstrap downloads through it, and only the machine\'s own proxy file stays in the rootfs', async () => {
    const manifest = 'machines:\n  web:\n    aptProxy: http://proxy.example:3142\n';
    const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } }));
    const staging = '/var/lib/machines/.nspawnctl-web.staging';
    host.runner.on(
      (argv) => argv[0] === 'mmdebstrap',
      ({ args }) => {
        const options = args.filter((a) => a.startsWith('--aptopt=')).map((a) => `${a.slice('--aptopt='.length)};\n`);
        host.fs.addFile(`${args[args.length - 2]}/etc/apt/apt.conf.d/99mmdebstrap`, options.join(''));
        return {};
      },
    );
    simulateSystemd(host);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5', ...SEQUENTIAL]);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(host.runner.argvs().filter((a) => a[0] === 'mmdebstrap')).toEqual([
      ['mmdebstrap', '--variant=minbase', '--include=dbus,systemd,systemd-sysv', '--dpkgopt=force-unsafe-io', '--aptopt=Acquire::http::Proxy "http://proxy.example:3142"', 'bookworm', staging, 'http://deb.debian.org/debian'],
    ]);
    const changes = changesBesidesLock(host).filter((c) => c.includes('/etc/apt/'));
    expect(changes).toEqual([`remove ${staging}/etc/apt/apt.conf.d/99mmdebstrap`, `write ${staging}/etc/apt/apt.conf.d/01nspawnctl-proxy`]);
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/web/etc/apt/apt.conf.d/'))).toEqual(['/var/lib/machines/web/etc/apt/apt.conf.d/01nspawnctl-proxy']);
    expect(host.fs.textAt('/var/lib/machines/web/etc/apt/apt.conf.d/01nspawnctl-proxy')).toBe(
      '// Generated by nspawnctl from machines.yaml for machine web.\n// Do not edit: nspawnctl apply rewrites this file; change the manifest instead.\n\nAcquire::http::Proxy "http://proxy.example:3142";\n',
    );
  });

  test('on a fresh host: runs exactly the expected commands, and a second apply plans nothing', async () => {
    const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': EXAMPLE } }));
    simulateSystemd(host, { bridges: ['examplevlan'] });
    const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5', ...SEQUENTIAL]);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout.endsWith('Applied 13 of 13 step(s).\n')).toBe(true);
    const nspawnMkdir = [
      'systemd-nspawn',
      '--quiet',
      '--register=no',
      '--settings=no',
      '--console=pipe',
      '--resolv-conf=bind-host',
      '--timezone=off',
      '--machine=web',
      `--directory=${STAGING('web')}`,
      '--setenv=DEBIAN_FRONTEND=noninteractive',
      '--',
      'mkdir',
      '-p',
      '/var/www',
    ];
    expect(host.runner.argvs()).toEqual([
      ...FRESH_OBSERVE_CALLS,
      ['networkctl', 'reload'],
      ['ip', 'link', 'show', 'dev', 'examplevlan'],
      MMDEBSTRAP('db'),
      SYNC('db'),
      ['machinectl', 'enable', 'db'],
      ['machinectl', 'start', 'db'],
      SHOW('db'),
      ...readyCalls('db', 5),
      MMDEBSTRAP('web'),
      nspawnMkdir,
      SYNC('web'),
      ['machinectl', 'enable', 'web'],
      ['machinectl', 'start', 'web'],
      SHOW('web'),
      ...readyCalls('web', 5),
    ]);
    host.assertNoUnmatchedCalls();
    // The long-running commands ask the real runner to die with nspawnctl (setpriv --pdeathsig);
    // the quick queries do not.
    expect(host.runner.calls.filter((c) => c.options?.dieWithParent === true).map((c) => [c.file, ...c.args])).toEqual([MMDEBSTRAP('db'), MMDEBSTRAP('web'), nspawnMkdir]);
    expect(host.runner.calls.filter((c) => c.options?.dieWithParent !== undefined).length).toBe(3);

    // Every generated file is in place with its mode, the records are written, the staging
    // directories and the temporary policy-rc.d are gone; the lock was held throughout.
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
    expect(changesBesidesLock(host)).toContain(`rename ${STAGING('web')} -> /var/lib/machines/web`);
    // The records name every file of a machine: root's alone, in directories only root can list.
    const modeOf = (p: string) => {
      const node = host.fs.nodes.get(p);
      return node && node.type !== 'symlink' ? `${node.type} 0${node.mode.toString(8)}` : node?.type;
    };
    expect(['/var/lib/nspawnctl', '/var/lib/nspawnctl/networks', '/var/lib/nspawnctl/machines'].map(modeOf)).toEqual(['dir 0700', 'dir 0700', 'dir 0700']);
    expect(['/var/lib/nspawnctl/networks/examplevlan.json', '/var/lib/nspawnctl/machines/db.json', '/var/lib/nspawnctl/machines/web.json'].map(modeOf)).toEqual([
      'file 0600',
      'file 0600',
      'file 0600',
    ]);

    // The host now observes exactly as converged (records say mmdebstrap), and apply is a no-op.
    const state = await observeHost(host, desired);
    const expected = { ...convergedState(desired), stagingDirs: [] };
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
    expect(again.stderr).toBe(CONVERGED_TEXT);
    expect(changesBesidesLock(host, changesBefore)).toEqual([]);
    expect(host.runner.argvs().slice(callsBefore)).toEqual(OBSERVE_CALLS);
  });

  test('a package added to a running machine is installed by the machine itself (systemd-run; nsenter is not even installed here)', async () => {
    const manifest = EXAMPLE.replace('    hostname: web\n', '    hostname: web\n    packages: [iproute2, iputils-ping, curl]\n');
    expect(manifest).not.toBe(EXAMPLE);
    const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } }));
    convergeFakeHost(host, desiredFrom(EXAMPLE).desired, { queries: false });
    simulateSystemd(host, { running: ['db', 'web'], bridges: ['examplevlan'] });
    expect(host.fs.nodes.has('/usr/bin/nsenter')).toBe(false);
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    const apt = { DEBIAN_FRONTEND: 'noninteractive' };
    expect(host.runner.argvs().filter((a) => !OBSERVE_CALLS.some((o) => o.join(' ') === a.join(' ')))).toEqual([
      SHOW('web'),
      inMachineArgv('web', ['apt-get', 'update'], apt),
      inMachineArgv('web', ['apt-get', 'install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', 'curl'], apt),
    ]);
    host.assertNoUnmatchedCalls();
    expect(host.runner.argvs().some((a) => a[0] === 'nsenter' || a[0] === 'chroot')).toBe(false);
  });

  describe('a machine whose root filesystem turned hostile', () => {
    test.each([
      ['a symlink where generated files go (etc/systemd -> /etc)', (host: FakeHost) => host.fs.swapForSymlink('/var/lib/machines/web/etc/systemd', '/etc'), SYMLINKED],
      ['a FIFO where its hostname file is', (host: FakeHost) => host.fs.addFifo('/var/lib/machines/web/etc/hostname'), FIFO],
    ])('%s: web gets no step, the new db is created and started, exit 1 naming web and why', async (_name, plant, reason) => {
      expect(EXAMPLE_NEW_MOTD).not.toBe(EXAMPLE);
      const host = hostWithWebOnly(EXAMPLE_NEW_MOTD);
      plant(host);
      const etc = nodesUnder(host, '/etc');
      const web = nodesUnder(host, '/var/lib/machines/web');
      const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5', ...SEQUENTIAL]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`! machine web: conflict\n    ${reason}\n`);
      expect(r.stderr).toContain(
        [
          `1 conflict(s); apply leaves web alone and applies the rest:`,
          `  ! machine web: ${reason}`,
          '',
          '4 step(s):',
          '  1. create machine db: bootstrap debian bookworm (5 packages), write 8 files inside  (not on this host yet)',
          '  2. create /etc/systemd/nspawn/db.nspawn  (new machine)',
          '  3. enable db (start at boot)  (autostart: true)',
          '  4. start db  (new machine)',
          '',
        ].join('\n'),
      );
      expect(report(r.stderr)).toBe(`nspawnctl: apply left machines with conflicts alone (applied: db):\n  - machine web: left alone, conflict: ${reason}\n${HINT}`);
      expect(r.stdout.endsWith('Applied 4 of 4 step(s).\n')).toBe(true);
      expect(host.runner.argvs()).toEqual([
        ...OBSERVE_CALLS,
        MMDEBSTRAP('db'),
        SYNC('db'),
        ['machinectl', 'enable', 'db'],
        ['machinectl', 'start', 'db'],
        SHOW('db'),
        ...readyCalls('db', 5),
      ]);
      host.assertNoUnmatchedCalls();
      // web was looked at through its handle only, and nothing of it changed; nor did anything on
      // the host that the symlink points to. The changes are db's alone.
      expect(host.fs.opened).toContain('/var/lib/machines/web');
      expect(nodesUnder(host, '/var/lib/machines/web')).toEqual(web);
      const changes = changesBesidesLock(host);
      // Inside db's staging tree: its directories, the generated files and symlinks, nothing else.
      const inStaging = changes.filter((c) => /^(mkdir|write|symlink|remove) /.test(c) && c.split(' ')[1].startsWith(`${STAGING('db')}/`));
      const dbEntries = desiredFrom(EXAMPLE_NEW_MOTD).desired.machines.find((m) => m.machine.name === 'db')!.rootfsEntries;
      expect(inStaging.filter((c) => !c.startsWith('mkdir '))).toEqual(
        dbEntries.map((e) => (e.kind === 'symlink' ? `symlink ${STAGING('db')}${e.path} -> ${e.target}` : `write ${STAGING('db')}${e.path}`)),
      );
      expect(changes.filter((c) => !inStaging.includes(c))).toEqual([
        // The staging tree is synced once, after its last write and before its record and rename.
        `syncfs ${STAGING('db')}`,
        'write /var/lib/nspawnctl/machines/db.json',
        `rename ${STAGING('db')} -> /var/lib/machines/db`,
        'write /etc/systemd/nspawn/db.nspawn',
      ]);
      const etcNow = nodesUnder(host, '/etc');
      etcNow.delete('/etc/systemd/nspawn/db.nspawn');
      etcNow.delete('/etc/systemd/system/machines.target.wants/systemd-nspawn@db.service');
      expect(etcNow).toEqual(etc);
    });

    test('--json: one document with the conflict, the steps applied and no failure; the summary on stderr; exit 1', async () => {
      const host = hostWithWebOnly();
      host.fs.swapForSymlink('/var/lib/machines/web/etc/systemd', '/etc');
      const r = await runCommand(applyWith(host), ['machines.yaml', '--json', '--start-timeout', '5', ...SEQUENTIAL]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toBe(`nspawnctl: apply left machines with conflicts alone (applied: db):\n  - machine web: left alone, conflict: ${SYMLINKED}\n${HINT}`);
      const json = JSON.parse(r.stdout);
      expect(json.conflicts).toEqual([{ owner: { type: 'machine', name: 'web' }, path: '/var/lib/machines/web/etc/systemd/network/10-nspawnctl-host0.network', message: SYMLINKED }]);
      expect(json.applied.map((s: { kind: string; machine?: string }) => `${s.kind} ${s.machine ?? ''}`.trim())).toEqual(['create-machine db', 'write-file', 'enable-machine db', 'start-machine db']);
      expect([json.failures, json.skipped]).toEqual([[], []]);
    });

    test('when web is the only machine with work: exit 4 and nothing changes but the lock', async () => {
      const host = convergedHost();
      host.inputs.set('machines.yaml', EXAMPLE_NEW_MOTD);
      host.fs.swapForSymlink('/var/lib/machines/web/etc/systemd', '/etc');
      const r = await runCommand(applyWith(host), ['machines.yaml']);
      expect(r.exitCode).toBe(4);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        [
          '= network examplevlan: unchanged',
          '= machine db: unchanged',
          '! machine web: conflict',
          `    ${SYMLINKED}`,
          '',
          '1 conflict(s); apply leaves web alone:',
          `  ! machine web: ${SYMLINKED}`,
          'nspawnctl: 1 conflict(s); nothing was changed',
          'hint: Resolve them (see above), or destroy the machine with --force if it is really yours.',
          '',
        ].join('\n'),
      );
      expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
      expect(changesBesidesLock(host)).toEqual([]);
    });
  });

  describe('a network named like an interface the host already has', () => {
    test('no record of it: a network conflict, exit 4, nothing changes but the lock', async () => {
      const host = freshHost({ manifest: ETH0 });
      const r = await runCommand(applyWith(host), ['machines.yaml']);
      expect(r.exitCode).toBe(4);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        [
          '! network eth0: conflict',
          `    ${ETH0_TAKEN}`,
          '+ machine web: create',
          '    bootstrap debian bookworm with mmdebstrap or debootstrap',
          '    create /etc/systemd/nspawn/web.nspawn',
          '    start',
          '',
          '1 conflict(s); apply will not change anything until they are resolved:',
          `  ! network eth0: ${ETH0_TAKEN}`,
          'nspawnctl: 1 conflict(s); nothing was changed',
          'hint: Resolve them (see above), or destroy the machine with --force if it is really yours.',
          '',
        ].join('\n'),
      );
      expect(host.runner.argvs()).toEqual(FRESH_OBSERVE_CALLS);
      expect(changesBesidesLock(host)).toEqual([]);
    });

    test('recorded (nspawnctl made that bridge): no conflict, and the interfaces are not even asked', async () => {
      const host = convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': ETH0 } })), desiredFrom(ETH0).desired);
      const r = await runCommand(applyWith(host), ['machines.yaml']);
      expect(r.exitCode).toBe(0);
      expect(r.stderr).toBe('= network eth0: unchanged\n= machine web: unchanged\n\nNo changes: the host matches machines.yaml.\n');
      expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
      expect(changesBesidesLock(host)).toEqual([]);
    });
  });

  describe('credentials', () => {
    const SECRET = 'S3CR3T-7f3a9c-never-leaves-the-file';
    const CREDS = '/etc/nspawnctl/credentials';
    const MANIFEST = `defaults:
  credentials: { ca.pem: ${CREDS}/ca.pem }
machines:
  web:
    credentials:
      db-password: ${CREDS}/db-password
      tls.key: /etc/letsencrypt/live/web.example.org/privkey.pem
  db: {}
`;
    const DROPIN = (n: string) => `/etc/systemd/system/systemd-nspawn@${n}.service.d/50-nspawnctl-credentials.conf`;

    /** A booted host simulating systemd, with the three credential files (one behind certbot's symlink); `mode` for db-password. */
    function hostWithSecrets(mode = 0o600): { host: FakeHost; sources: string[] } {
      const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': MANIFEST } }));
      host.fs.addFile(`${CREDS}/ca.pem`, `${SECRET}-ca\n`, { mode: 0o600 });
      host.fs.addFile(`${CREDS}/db-password`, `${SECRET}-db\n`, { mode });
      host.fs.addFile('/etc/letsencrypt/archive/web.example.org/privkey1.pem', `${SECRET}-tls\n`, { mode: 0o600 });
      host.fs.addSymlink('/etc/letsencrypt/live/web.example.org/privkey.pem', '../../archive/web.example.org/privkey1.pem');
      simulateSystemd(host);
      // The drop-in is new: units are reloaded before the machine starts.
      host.runner.on(['systemctl', 'daemon-reload'], {});
      return { host, sources: [`${CREDS}/ca.pem`, `${CREDS}/db-password`, '/etc/letsencrypt/archive/web.example.org/privkey1.pem'] };
    }

    test('a world-readable credential file: exit 3 naming machine, credential, file and fix; nothing run or changed but the lock', async () => {
      const { host } = hostWithSecrets(0o644);
      const r = await runCommand(applyWith(host), ['machines.yaml']);
      expect(r.exitCode).toBe(3);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `nspawnctl: this host is not ready:\n  - machine web, credential db-password: ${CREDS}/db-password is readable by every user on this host (mode 0644)\nhint: chmod o-r ${CREDS}/db-password\n`,
      );
      expect(host.runner.calls).toEqual([]);
      expect(changesBesidesLock(host)).toEqual([]);
    });

    test("the secrets' content is never read and appears nowhere: not in the plan, the output, the commands, the generated files or the records", async () => {
      const { host, sources } = hostWithSecrets();
      const read: string[] = [];
      const readText = host.fs.readText.bind(host.fs);
      host.fs.readText = async (path: string) => {
        read.push(path);
        return readText(path);
      };
      const dry = await runCommand(applyWith(host), ['machines.yaml', '--dry-run', '--json']);
      const applied = await runCommand(applyWith(host), ['machines.yaml', '--json', '--start-timeout', '5', ...SEQUENTIAL]);
      const again = await runCommand(applyWith(host), ['machines.yaml']);
      expect([dry.exitCode, applied.exitCode, again.exitCode, applied.stderr]).toEqual([0, 0, 0, '']);
      expect(again.stderr).toBe('= machine db: unchanged\n= machine web: unchanged\n\nNo changes: the host matches machines.yaml.\n');
      host.assertNoUnmatchedCalls();

      // Only the paths went where systemd-nspawn will find them.
      expect(await host.fs.readText(DROPIN('web'))).toContain(
        ' --load-credential=ca.pem:/etc/nspawnctl/credentials/ca.pem --load-credential=db-password:/etc/nspawnctl/credentials/db-password --load-credential=tls.key:/etc/letsencrypt/live/web.example.org/privkey.pem\n',
      );
      expect(await host.fs.readText(DROPIN('db'))).toContain(' --load-credential=ca.pem:/etc/nspawnctl/credentials/ca.pem\n');
      expect(JSON.parse(dry.stdout).steps.filter((s: { path?: string }) => s.path === DROPIN('web'))).toHaveLength(1);
      expect(host.fs.nodes.get('/var/lib/nspawnctl/machines/web.json')?.type).toBe('file');

      const leaks = [
        ...[dry, applied, again].flatMap((r, i) => [`run ${i} stdout: ${r.stdout}`, `run ${i} stderr: ${r.stderr}`]),
        ...host.runner.argvs().map((a) => `argv: ${a.join(' ')}`),
        ...[...host.fs.nodes.entries()].filter(([path, node]) => node.type === 'file' && !sources.includes(path)).map(([path, node]) => `${path}: ${node.type === 'file' ? node.content : ''}`),
      ].filter((text) => text.includes(SECRET));
      expect(leaks).toEqual([]);
      const resolved = [...sources, '/etc/letsencrypt/live/web.example.org/privkey.pem'];
      expect(read.filter((p) => resolved.includes(p))).toEqual([]);
    });
  });
});

describe('nspawnctl apply: the machines must fit under the kernel limits', () => {
  /** N machines without a network. */
  const many = (n: number, prefix = 'm') => `machines:\n${Array.from({ length: n }, (_, i) => `  ${prefix}${i}: {}\n`).join('')}`;
  function hostWithLimit(manifest: string, instances: number, running: string[] = []): FakeHost {
    // Booted, and `running` registered with machined (not nspawnctl's: they have no records).
    const host = answerObserveQueries(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } })), { running });
    host.fs.addFile('/proc/sys/fs/inotify/max_user_instances', `${instances}\n`);
    host.fs.addFile('/proc/sys/user/max_inotify_instances', `${instances}\n`);
    host.fs.addFile('/proc/sys/fs/inotify/max_user_watches', '32861\n');
    host.fs.addFile('/proc/sys/kernel/pty/max', '4096\n');
    host.fs.addFile('/proc/meminfo', 'MemTotal:        4194304 kB\n');
    return host;
  }

  test('15 new machines on the default 128: exit 3 before anything is created or started; nothing run but the query, nothing changed but the lock', async () => {
    const host = hostWithLimit(many(15), 128);
    const before = host.fs.paths();
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }).toEqual({
      exitCode: 3,
      stdout: '',
      stderr: [
        'nspawnctl: this host is not ready:',
        '  - fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 15 would run (0 running now, 15 to start): they need 136 inotify instances (8 per machine, 16 for the host)',
        'hint: nspawnctl host init machines.yaml (raises it to 4096 now and keeps it in /etc/sysctl.d/50-nspawnctl.conf), or by hand: sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
        '',
      ].join('\n'),
    });
    expect(host.runner.argvs()).toEqual([LIST_MACHINES]);
    expect(host.http.calls).toEqual([]);
    expect(changesBesidesLock(host)).toEqual([]);
    expect(host.fs.paths()).toEqual(before);
    // --dry-run says the same.
    const dry = await runCommand(applyWith(host), ['machines.yaml', '--dry-run']);
    expect([dry.exitCode, dry.stderr]).toEqual([3, r.stderr]);
  });

  test('machines already running count: 10 running (not in the manifest) and 5 new is 15, refused; 9 and 5 is 14, applied', async () => {
    const refused = hostWithLimit(many(5, 'new'), 128, Array.from({ length: 10 }, (_, i) => `other${i}`));
    const r = await runCommand(applyWith(refused), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain('and 15 would run (10 running now, 5 to start): they need 136 inotify instances');
    expect(changesBesidesLock(refused)).toEqual([]);

    const fits = hostWithLimit(many(5, 'new'), 128, Array.from({ length: 9 }, (_, i) => `other${i}`));
    simulateSystemd(fits);
    const ok = await runCommand(applyWith(fits), ['machines.yaml', ...SEQUENTIAL]);
    expect(ok.error).toBeUndefined();
    expect(ok.exitCode).toBe(0);
    expect(fits.runner.argvs()).toContainEqual(['machinectl', 'start', 'new4']);
  });

  test('a converged host already over the limit: apply starts nothing, so it has nothing to refuse (exit 0, no change)', async () => {
    const { desired } = desiredFrom(many(20));
    const host = convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': many(20) } })), desired);
    host.fs.addFile('/proc/sys/fs/inotify/max_user_instances', '128\n');
    const r = await runCommand(applyWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(changesBesidesLock(host)).toEqual([]);
  });
});
