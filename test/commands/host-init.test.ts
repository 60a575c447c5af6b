// `nspawnctl host init` through oclif with a fake Debian host: --check and --dry-run change nothing,
// a real run does exactly the needed commands and writes, a second run nothing, and --undo removes
// exactly what the record lists.
import HostInit from '../../src/commands/host/init';
import { Host } from '../../src/host/host';
import { parseManifest } from '../../src/manifest/load';
import { NETWORKD_CONF_PATH, SYSCTL_PATH } from '../../src/plan/host-init';
import { LIMITS_PATH } from '../../src/plan/host-limits';
import { renderDesiredState } from '../../src/render/desired';
import { LIST_INTERFACES } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { HOST_RECORD, LIMITS_CONF, LIMITS_CONF_NO_MANIFEST, makeDebianHost, makeReadyDebianHost, NETWORKD_CONF, SYSCTL_CONF } from '../helpers/host-init-state';
import { runCommand, TEST_CWD } from '../helpers/run-command';

const MANIFEST = `networks:
  br0: { subnet: 10.0.0.0/24, nat: true }
machines:
  web:
    network: { bridge: br0, address: 10.0.0.2 }
`;
const INPUTS = { 'machines.yaml': MANIFEST };
const PACKAGES = ['dbus', 'mmdebstrap', 'nftables', 'systemd-container', 'zstd'];
const P = {
  netdev: '/etc/systemd/network/50-nspawnctl-br0.netdev',
  network: '/etc/systemd/network/50-nspawnctl-br0.network',
  netRecord: '/var/lib/nspawnctl/networks/br0.json',
};

/** The read-only queries host init makes for MANIFEST once br0 is recorded (iptables and nft are not installed). */
const OBSERVE_CALLS = [
  ['dpkg-query', '-W', '-f=${Package} ${Status}\\n', ...PACKAGES],
  ['systemctl', 'is-enabled', 'systemd-networkd.service'],
  ['systemctl', 'is-active', 'systemd-networkd.service'],
  ['systemctl', 'is-enabled', 'machines.target'],
  ['systemctl', 'is-active', 'firewalld.service'],
  ['machinectl', 'list', '--no-legend', '--no-pager', '--full'],
  ['systemctl', 'is-active', 'systemd-networkd.service'],
];
/** Before br0 is recorded, observe also lists the host's interfaces (a bridge must not take one over). */
const FRESH_OBSERVE_CALLS = [...OBSERVE_CALLS, LIST_INTERFACES];

const initWith = (host: Host) =>
  class extends HostInit {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

const freshHost = (uid = 0) => makeDebianHost({ uid, inputs: INPUTS });
const readyHost = (uid = 0) => makeReadyDebianHost(parseManifest('machines.yaml', MANIFEST), { uid, inputs: INPUTS });

/** Every file and symlink with its content: for "nothing changed" comparisons. */
function snapshot(host: FakeHost): Map<string, unknown> {
  return new Map([...host.fs.nodes].map(([k, v]) => [k, { ...v }]));
}

/** What the fake filesystem saw change, without the host lock (/run/nspawnctl.lock) a run takes and releases. */
const changes = (host: FakeHost) => host.fs.changes.filter((c) => c.split(' ')[1] !== '/run/nspawnctl.lock');

/** Read-only queries (observation may run more than once, e.g. again under the lock). */
const isQuery = (a: string[]) =>
  a[0] === 'dpkg-query' ||
  (a[0] === 'systemctl' && ['is-enabled', 'is-active'].includes(a[1])) ||
  (a[0] === 'machinectl' && a[1] === 'list') ||
  (a[0] === 'ip' && a[1] === '-json');
/** The commands that are not queries, in order. */
const effects = (host: FakeHost) => host.runner.argvs().filter((a) => !isQuery(a));

/** Commands that would change the host (for asserting that --check ran none). */
const CHANGING = (argv: string[]) =>
  argv[0] === 'apt-get' || (argv[0] === 'systemctl' && ['enable', 'disable', 'start'].includes(argv[1])) || argv[0] === 'sysctl' || (argv[0] === 'networkctl' && argv[1] !== 'status');

const FRESH_REPORT = [
  '  - install dbus mmdebstrap nftables systemd-container zstd  (needed by nspawnctl apply, backup and restore)',
  '  - write /etc/systemd/networkd.conf.d/50-nspawnctl.conf  (networkd must not touch routes of links it does not manage)',
  '  - enable and start systemd-networkd.service  (it creates the bridges)',
  '  - record network br0 as managed by nspawnctl  (new network)',
  '  - create /etc/systemd/network/50-nspawnctl-br0.netdev  (missing)',
  '  - create /etc/systemd/network/50-nspawnctl-br0.network  (missing)',
  '  - reload systemd-networkd  (bridge configuration changed)',
  '  - write /etc/sysctl.d/50-nspawnctl-forward.conf  (nat: true on br0)',
  '  - set net.ipv4.ip_forward=1  (forward NATed traffic now, not only after a reboot)',
  '  - write /etc/sysctl.d/50-nspawnctl.conf  (the kernel limits booted machines use up, for the next boot too)',
  '  - raise fs.inotify.max_user_instances from 128 to 4096  (room for 256 machines (16 MiB each in 4.0 GiB of memory): 8 inotify instances each, 16 for the host)',
  '  - enable machines.target  (machines with autostart: true start at boot through it)',
  '  - record what host init changed in /var/lib/nspawnctl/host.json  (remember what host init changed, for --undo)',
];

describe('nspawnctl host init --check', () => {
  test('on a fresh host: exit 1, lists what is missing, runs only queries and writes nothing', async () => {
    const { host } = freshHost();
    const before = snapshot(host);
    const r = await runCommand(initWith(host), ['machines.yaml', '--check']);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe(`Missing:\n${FRESH_REPORT.join('\n')}\n`);
    expect(host.runner.argvs()).toEqual(FRESH_OBSERVE_CALLS);
    expect(host.runner.argvs().filter(CHANGING)).toEqual([]);
    expect(changes(host)).toEqual([]);
    expect(snapshot(host)).toEqual(before);
    host.assertNoUnmatchedCalls();
  });

  test('as non-root on a fresh host: still only reports (exit 1), it needs no privileges', async () => {
    const { host } = freshHost(1000);
    const r = await runCommand(initWith(host), ['machines.yaml', '--check']);
    expect(r.exitCode).toBe(1);
    expect(r.stdout.startsWith('Missing:\n')).toBe(true);
    expect(changes(host)).toEqual([]);
  });

  test('on a ready host: exit 0, says so, changes nothing', async () => {
    const { host } = readyHost();
    const r = await runCommand(initWith(host), ['machines.yaml', '--check']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('The host is ready for nspawnctl.\n');
    expect(host.runner.argvs()).toEqual(OBSERVE_CALLS);
    expect(changes(host)).toEqual([]);
    host.assertNoUnmatchedCalls();
  });

  test('on a ready host whose FORWARD policy is DROP: exit 1 with the fix naming the bridge', async () => {
    const { host } = readyHost();
    host.fs.addFile('/usr/sbin/iptables', '', { mode: 0o755 });
    host.runner.on(['iptables', '-S', 'FORWARD'], { stdout: '-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n' });
    const r = await runCommand(initWith(host), ['machines.yaml', '--check']);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe(
      'Nothing to install or write, but the host is not ready:\n' +
        'error: the firewall FORWARD chain drops by default (Docker sets this), so NATed machines cannot reach beyond the host\n' +
        '  fix: iptables -I FORWARD -i br0 -j ACCEPT && iptables -I FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n',
    );
    expect(changes(host)).toEqual([]);
  });

  test('on a host not booted with systemd: the missing systemd is an error finding, exit 1, with or without other steps', async () => {
    const error = [
      'error: the host was not booted with systemd (no /run/systemd/system): machinectl, systemd-networkd and systemd-nspawn@.service need systemd as PID 1',
      '  fix: Run nspawnctl on a host (or VM, or container) whose PID 1 is systemd; Debian and Ubuntu boot with it by default. To try it here anyway: npm run sandbox -- up',
    ].join('\n');
    const ready = readyHost().host;
    ready.fs.nodes.delete('/run/systemd/system');
    const r = await runCommand(initWith(ready), ['machines.yaml', '--check']);
    expect({ exitCode: r.exitCode, stdout: r.stdout }).toEqual({ exitCode: 1, stdout: `Nothing to install or write, but the host is not ready:\n${error}\n` });
    const fresh = freshHost().host;
    fresh.fs.nodes.delete('/run/systemd/system');
    const f = await runCommand(initWith(fresh), ['machines.yaml', '--check']);
    expect({ exitCode: f.exitCode, stdout: f.stdout }).toEqual({ exitCode: 1, stdout: `Missing:\n${FRESH_REPORT.join('\n')}\n${error}\n` });
    const json = await runCommand(initWith(fresh), ['machines.yaml', '--check', '--json']);
    expect(JSON.parse(json.stdout).findings).toEqual([{ severity: 'error', what: 'the host was not booted with systemd (no /run/systemd/system): machinectl, systemd-networkd and systemd-nspawn@.service need systemd as PID 1', fix: 'Run nspawnctl on a host (or VM, or container) whose PID 1 is systemd; Debian and Ubuntu boot with it by default. To try it here anyway: npm run sandbox -- up' }]);
    expect(changes(ready)).toEqual([]);
    expect(changes(fresh)).toEqual([]);
  });

  test('firewalld active on a ready host: a warning only, exit 0', async () => {
    const { host, sim } = readyHost();
    sim.active.add('firewalld.service');
    const r = await runCommand(initWith(host), ['machines.yaml', '--check']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(
      'The host is ready for nspawnctl.\nwarning: firewalld is active: traffic on bridge br0 is filtered by its zone\n  fix: firewall-cmd --permanent --zone=trusted --add-interface=br0 && firewall-cmd --reload\n',
    );
  });
});

describe('nspawnctl host init --dry-run', () => {
  test('--json on a fresh host: {ready:false, steps}, and nothing changes', async () => {
    const { host } = freshHost();
    const before = snapshot(host);
    const r = await runCommand(initWith(host), ['machines.yaml', '--dry-run', '--json']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    const json = JSON.parse(r.stdout);
    expect(json.ready).toBe(false);
    expect(json.findings).toEqual([]);
    expect(json.steps.map((s: { kind: string }) => s.kind)).toEqual([
      'install-packages',
      'write-file',
      'enable-unit',
      'network',
      'network',
      'network',
      'network',
      'write-file',
      'set-sysctl',
      'write-file',
      'raise-sysctl',
      'enable-unit',
      'write-host-record',
    ]);
    expect(json.steps.map((s: { description: string; reason: string }) => `  - ${s.description}  (${s.reason})`)).toEqual(FRESH_REPORT);
    expect(host.runner.argvs()).toEqual(FRESH_OBSERVE_CALLS);
    expect(changes(host)).toEqual([]);
    expect(snapshot(host)).toEqual(before);
  });

  test('text on a fresh host: "Would do:" and the steps, exit 0', async () => {
    const { host } = freshHost();
    const r = await runCommand(initWith(host), ['machines.yaml', '--dry-run']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`Would do:\n${FRESH_REPORT.join('\n')}\n`);
    expect(changes(host)).toEqual([]);
  });

  test('--json on a ready host: ready:true, no steps', async () => {
    const { host } = readyHost();
    const r = await runCommand(initWith(host), ['machines.yaml', '--dry-run', '--json']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ready: true, steps: [], findings: [] });
  });
});

describe('nspawnctl host init', () => {
  test('on a fresh host: runs exactly the needed commands, writes the files and the record', async () => {
    const { host, sim } = freshHost();
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout.endsWith('Host init done: 13 step(s).\n')).toBe(true);
    expect(r.stderr).toBe(`host init:\n${FRESH_REPORT.join('\n')}\n`);
    expect(host.runner.argvs().slice(0, FRESH_OBSERVE_CALLS.length)).toEqual(FRESH_OBSERVE_CALLS);
    expect(effects(host)).toEqual([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', ...PACKAGES],
      ['systemctl', 'enable', '--now', 'systemd-networkd.service'],
      ['networkctl', 'reload'],
      ['ip', 'link', 'show', 'dev', 'br0'],
      ['sysctl', '-w', 'net.ipv4.ip_forward=1'],
      ['sysctl', '-w', 'fs.inotify.max_user_instances=4096'],
      ['systemctl', 'enable', 'machines.target'],
    ]);
    host.assertNoUnmatchedCalls();
    const apt = host.runner.calls.filter((c) => c.file === 'apt-get');
    expect(apt.map((c) => c.options?.env)).toEqual([{ DEBIAN_FRONTEND: 'noninteractive' }, { DEBIAN_FRONTEND: 'noninteractive' }]);

    // The files, in the order the steps wrote them, with their exact content and mode.
    expect(changes(host).filter((c) => c.startsWith('write '))).toEqual([
      `write ${NETWORKD_CONF_PATH}`,
      `write ${P.netRecord}`,
      `write ${P.netdev}`,
      `write ${P.network}`,
      `write ${SYSCTL_PATH}`,
      `write ${LIMITS_PATH}`,
      `write ${HOST_RECORD}`,
    ]);
    const file = (p: string) => host.fs.nodes.get(p);
    expect(file(NETWORKD_CONF_PATH)).toEqual({ type: 'file', content: NETWORKD_CONF, mode: 0o644, uid: 0, gid: 0 });
    expect(file(SYSCTL_PATH)).toEqual({ type: 'file', content: SYSCTL_CONF, mode: 0o644, uid: 0, gid: 0 });
    expect(file(LIMITS_PATH)).toEqual({ type: 'file', content: LIMITS_CONF, mode: 0o644, uid: 0, gid: 0 });
    // Raised now too: fs.inotify.max_user_instances and, the same value in the initial user namespace, user.max_inotify_instances.
    expect([host.fs.textAt('/proc/sys/fs/inotify/max_user_instances'), host.fs.textAt('/proc/sys/user/max_inotify_instances')]).toEqual(['4096\n', '4096\n']);
    for (const e of renderDesiredState({ ...parseManifest('machines.yaml', MANIFEST), machines: {} }).networks[0].entries) {
      expect(file(e.hostPath)).toEqual({ type: 'file', content: e.kind === 'file' ? e.content : undefined, mode: 0o644, uid: 0, gid: 0 });
    }
    const record = host.fs.nodes.get(HOST_RECORD);
    expect(record?.type === 'file' && JSON.parse(record.content)).toEqual({
      version: 1,
      kind: 'host',
      files: [SYSCTL_PATH, LIMITS_PATH, P.netdev, P.network, NETWORKD_CONF_PATH, P.netRecord],
      enabledUnits: ['machines.target', 'systemd-networkd.service'],
      installedPackages: PACKAGES,
      bridges: ['br0'],
      sysctls: { 'fs.inotify.max_user_instances': { before: 128, set: 4096 } },
    });
    expect([...sim.installed].sort()).toEqual(PACKAGES);
    expect([...sim.enabled].sort()).toEqual(['machines.target', 'systemd-networkd.service']);
    expect([...sim.bridges]).toEqual(['br0']);
  });

  test('a second run plans nothing, and --check then exits 0', async () => {
    const { host } = freshHost();
    expect((await runCommand(initWith(host), ['machines.yaml'])).exitCode).toBe(0);
    const calls = host.runner.calls.length;
    const changed = host.fs.changes.length;
    const again = await runCommand(initWith(host), ['machines.yaml']);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toBe('The host is ready for nspawnctl.\n');
    const check = await runCommand(initWith(host), ['machines.yaml', '--check']);
    expect(check.exitCode).toBe(0);
    expect(host.runner.argvs().slice(calls)).toEqual([...OBSERVE_CALLS, ...OBSERVE_CALLS]);
    expect(host.fs.changes.length).toBe(changed);
  });

  test('without a manifest on Debian 13: installs systemd-networkd too, no bridges or forwarding', async () => {
    const { host, sim } = makeDebianHost({ networkdBinary: false });
    const r = await runCommand(initWith(host), []);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    const packages = ['dbus', 'mmdebstrap', 'systemd-container', 'systemd-networkd', 'zstd'];
    expect(host.runner.argvs().slice(0, 6)).toEqual([
      ['dpkg-query', '-W', '-f=${Package} ${Status}\\n', ...packages],
      ['systemctl', 'is-enabled', 'systemd-networkd.service'],
      ['systemctl', 'is-active', 'systemd-networkd.service'],
      ['systemctl', 'is-enabled', 'machines.target'],
      ['systemctl', 'is-active', 'firewalld.service'],
      ['machinectl', 'list', '--no-legend', '--no-pager', '--full'],
    ]);
    expect(effects(host)).toEqual([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', ...packages],
      ['systemctl', 'enable', '--now', 'systemd-networkd.service'],
      ['sysctl', '-w', 'fs.inotify.max_user_instances=4096'],
      ['systemctl', 'enable', 'machines.target'],
    ]);
    expect(changes(host).filter((c) => c.startsWith('write '))).toEqual([`write ${NETWORKD_CONF_PATH}`, `write ${LIMITS_PATH}`, `write ${HOST_RECORD}`]);
    expect(host.fs.textAt(LIMITS_PATH)).toBe(LIMITS_CONF_NO_MANIFEST);
    expect(sim.bridges.size).toBe(0);
  });

  // Regression (newcomer issue): as a normal user, host init read /var/lib/machines first and died
  // with a raw EACCES (exit 1). It needs root to change anything, and says so before reading.
  test('as non-root on a fresh host: exit 3 before the host is even read', async () => {
    const { host } = freshHost(1000);
    const before = snapshot(host);
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe('nspawnctl: this host is not ready:\n  - nspawnctl host init must run as root\nhint: Run it with sudo, or as root.\n');
    expect(r.stdout).toBe('');
    expect(host.runner.argvs()).toEqual([]);
    expect(changes(host)).toEqual([]);
    expect(snapshot(host)).toEqual(before);
  });

  // A normal user cannot read enough of a real host (/var/lib/nspawnctl is 0700) to know that
  // nothing is to do, so host init asks for root even then; --check is what runs as anyone.
  test('as non-root on a ready host: host init still needs root, host init --check runs and says what it could not check', async () => {
    const { host } = readyHost(1000);
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect([r.exitCode, r.stderr]).toEqual([3, 'nspawnctl: this host is not ready:\n  - nspawnctl host init must run as root\nhint: Run it with sudo, or as root.\n']);
    const check = await runCommand(initWith(readyHost(1000).host), ['machines.yaml', '--check']);
    expect(check).toMatchObject({
      exitCode: 0,
      stdout: 'The host is ready for nspawnctl.\n',
      stderr: 'note: could not read the firewall rules (iptables -S FORWARD, nft list ruleset): permission denied; run as root to see everything host init checks\n',
    });
  });

  test('a failing apt-get install stops the run: nothing after it, exit 1 with argv and stderr', async () => {
    const { host } = makeDebianHost({
      inputs: INPUTS,
      before: (h) => h.runner.on(['apt-get', 'install', '-y', ...PACKAGES], { exitCode: 100, stderr: 'E: Unable to locate package mmdebstrap\n' }),
    });
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('nspawnctl: command apt-get install -y dbus mmdebstrap nftables systemd-container zstd exited with code 100:\n    E: Unable to locate package mmdebstrap\n');
    expect(effects(host)).toEqual([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', ...PACKAGES],
    ]);
    expect(changes(host)).toEqual([]);
  });

  // Regression test for a fixed bug (it was in src/commands/host/init.ts): when the plan has no steps, a plain run returns early and
  // exits 0 printing "The host is ready for nspawnctl." followed by the error findings, while
  // --check on the same host exits 1, --json says ready:false, and a run that had steps ends
  // with exit 1 "N problem(s) need a manual fix". An unresolved error finding must fail the run.
  test('a plain run on a host with no steps but an error finding exits 1 (like --check)', async () => {
    const { host } = readyHost();
    host.fs.addFile('/usr/sbin/iptables', '', { mode: 0o755 });
    host.runner.on(['iptables', '-S', 'FORWARD'], { stdout: '-P FORWARD DROP\n' });
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.stdout.startsWith('The host is ready')).toBe(false);
    expect(r.exitCode).toBe(1);
  });
});

describe('nspawnctl host init --undo', () => {
  const RECORD = {
    version: 1,
    kind: 'host',
    files: [SYSCTL_PATH, P.netdev, P.network, NETWORKD_CONF_PATH, P.netRecord],
    enabledUnits: ['machines.target', 'systemd-networkd.service'],
    installedPackages: PACKAGES,
    bridges: ['br0'],
  };

  /** A host that host init prepared (its record and files), plus a file of the admin's own. */
  function initializedHost() {
    const made = readyHost();
    made.host.fs.addFile(HOST_RECORD, `${JSON.stringify(RECORD, null, 2)}\n`);
    made.host.fs.addFile('/etc/systemd/network/10-uplink.network', '[Match]\nName=eth0\n');
    return made;
  }

  test('with managed machines present: exit 4, nothing removed, nothing run', async () => {
    const { host } = initializedHost();
    host.fs.addFile('/var/lib/nspawnctl/machines/web.json', '{}\n');
    const before = snapshot(host);
    const r = await runCommand(initWith(host), ['--undo']);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toBe(
      'nspawnctl: machines managed by nspawnctl still exist (web); undoing host init would break them\nhint: Destroy them first, or pass --force.\n',
    );
    expect(host.runner.calls).toEqual([]);
    expect(changes(host)).toEqual([]);
    expect(snapshot(host)).toEqual(before);
  });

  test('without managed machines: removes exactly the recorded files, deletes the bridge, disables the units', async () => {
    const { host, sim } = initializedHost();
    const before = host.fs.paths();
    const r = await runCommand(initWith(host), ['--undo']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('Undone: removed 5 file(s), disabled 2 unit(s). Packages host init installed are kept; remove them with: apt-get remove dbus mmdebstrap nftables systemd-container zstd\n');
    expect(changes(host)).toEqual([...RECORD.files.map((p) => `remove ${p}`), `remove ${HOST_RECORD}`]);
    expect(host.fs.paths()).toEqual(before.filter((p) => !RECORD.files.includes(p) && p !== HOST_RECORD));
    expect(host.fs.nodes.has('/etc/systemd/network/10-uplink.network')).toBe(true);
    expect(host.runner.argvs()).toEqual([
      ['systemctl', 'is-active', 'systemd-networkd.service'],
      ['networkctl', 'reload'],
      ['networkctl', 'delete', 'br0'],
      ['systemctl', 'disable', 'machines.target'],
      ['systemctl', 'disable', 'systemd-networkd.service'],
    ]);
    expect(sim.bridges.size).toBe(0);
    expect([...sim.enabled]).toEqual([]);
  });

  test('--json: what was removed, disabled and kept', async () => {
    const { host } = initializedHost();
    const r = await runCommand(initWith(host), ['--undo', '--json']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ removed: RECORD.files, disabled: RECORD.enabledUnits, bridges: ['br0'], packages: PACKAGES, restored: [], leftAlone: [], nothingToUndo: false });
  });

  test('a recorded path outside the directories host init writes is never removed', async () => {
    const { host } = initializedHost();
    host.fs.addFile('/etc/passwd', 'root:x:0:0::/root:/bin/sh\n');
    host.fs.addFile(HOST_RECORD, JSON.stringify({ ...RECORD, files: ['/etc/passwd', SYSCTL_PATH], enabledUnits: [], bridges: [] }));
    const r = await runCommand(initWith(host), ['--undo']);
    expect(r.exitCode).toBe(0);
    expect(host.fs.nodes.has('/etc/passwd')).toBe(true);
    expect(changes(host)).toEqual([`remove ${SYSCTL_PATH}`, `remove ${HOST_RECORD}`]);
  });

  test('without a record: exit 0, saying there is nothing to undo; nothing run or changed', async () => {
    const { host } = readyHost();
    const r = await runCommand(initWith(host), ['--undo']);
    expect({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }).toEqual({
      exitCode: 0,
      stdout: 'Nothing to undo: host init has not changed this host (no record in /var/lib/nspawnctl/host.json).\n',
      stderr: '',
    });
    expect(changes(host)).toEqual([]);
    expect(host.runner.calls).toEqual([]);
    const json = await runCommand(initWith(host), ['--undo', '--json']);
    expect(JSON.parse(json.stdout)).toEqual({ removed: [], disabled: [], bridges: [], packages: [], restored: [], leftAlone: [], nothingToUndo: true });
  });

  test('--undo twice: the second finds nothing to undo and exits 0, changing nothing', async () => {
    const { host } = freshHost();
    expect((await runCommand(initWith(host), ['machines.yaml'])).exitCode).toBe(0);
    expect((await runCommand(initWith(host), ['--undo'])).exitCode).toBe(0);
    const before = snapshot(host);
    const calls = host.runner.calls.length;
    const second = await runCommand(initWith(host), ['--undo']);
    expect({ exitCode: second.exitCode, stdout: second.stdout }).toEqual({ exitCode: 0, stdout: 'Nothing to undo: host init has not changed this host (no record in /var/lib/nspawnctl/host.json).\n' });
    expect(snapshot(host)).toEqual(before);
    expect(host.runner.calls.slice(calls)).toEqual([]);
  });

  test('after a real run on a fresh host, undo leaves no file host init wrote', async () => {
    const { host, sim } = freshHost();
    const filesBefore = host.fs.paths().filter((p) => host.fs.nodes.get(p)?.type === 'file');
    expect((await runCommand(initWith(host), ['machines.yaml'])).exitCode).toBe(0);
    const r = await runCommand(initWith(host), ['--undo']);
    expect(r.exitCode).toBe(0);
    expect(host.fs.paths().filter((p) => host.fs.nodes.get(p)?.type === 'file' && !p.startsWith('/proc/'))).toEqual(filesBefore.filter((p) => !p.startsWith('/proc/')));
    expect([...sim.enabled]).toEqual([]);
    expect([...sim.bridges]).toEqual([]);
  });

  test('--force with managed machines present: undoes anyway, leaving the machine records alone', async () => {
    const { host } = initializedHost();
    host.fs.addFile('/var/lib/nspawnctl/machines/web.json', '{}\n');
    const r = await runCommand(initWith(host), ['--undo', '--force']);
    expect(r.exitCode).toBe(0);
    expect(changes(host)).toEqual([...RECORD.files.map((p) => `remove ${p}`), `remove ${HOST_RECORD}`]);
    expect(host.fs.nodes.has('/var/lib/nspawnctl/machines/web.json')).toBe(true);
  });

  // Regression test for a fixed bug (it was in src/plan/host-init.ts, planHostInit): with the admin's own .netdev for br0 (a conflict,
  // reported as an error finding), host init still writes br0's .network and records br0 in
  // host.json's bridges; --undo then runs `networkctl delete br0`, removing an interface that
  // host init never created.
  test('undo never deletes a bridge whose .netdev was not written by host init', async () => {
    const { host, sim } = makeDebianHost({ inputs: INPUTS, bridges: ['br0'] });
    host.fs.addFile(P.netdev, '[NetDev]\nName=br0\nKind=bridge\n');
    const init = await runCommand(initWith(host), ['machines.yaml']);
    expect(init.stderr).toContain(`error: ${P.netdev} exists and was not created by nspawnctl`);
    const r = await runCommand(initWith(host), ['--undo']);
    expect(r.exitCode).toBe(0);
    expect(host.runner.argvs()).not.toContainEqual(['networkctl', 'delete', 'br0']);
    expect(sim.bridges.has('br0')).toBe(true);
    expect(host.fs.nodes.has(P.netdev)).toBe(true);
  });

  test('--undo with --check is refused by the parser (exit 2), nothing runs', async () => {
    const { host } = initializedHost();
    const r = await runCommand(initWith(host), ['--undo', '--check']);
    expect(r.exitCode).toBe(2);
    expect(host.runner.calls).toEqual([]);
    expect(changes(host)).toEqual([]);
  });
});

describe('nspawnctl host init: kernel limits for many machines', () => {
  /** 20 machines on br0: more than Debian's 128 inotify instances leave room for (14). */
  const MANY = `networks:\n  br0: { subnet: 10.0.0.0/24 }\nmachines:\n${Array.from({ length: 20 }, (_, i) => `  m${i}:\n    network: { bridge: br0, address: 10.0.0.${i + 10} }\n`).join('')}`;
  const FINDING = [
    'error: fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 20 would run (the 20 of machines.yaml): they need 176 inotify instances (8 per machine, 16 for the host)',
    '  fix: nspawnctl host init machines.yaml (raises it to 4096 now and keeps it in /etc/sysctl.d/50-nspawnctl.conf), or by hand: sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
  ].join('\n');
  const INSTANCES = '/proc/sys/fs/inotify/max_user_instances';
  /** A host ready but for the kernel limits (Debian's defaults, no 50-nspawnctl.conf). */
  function defaultLimitsHost() {
    const made = makeReadyDebianHost(parseManifest('machines.yaml', MANY), { inputs: { 'machines.yaml': MANY }, sysctls: { 'fs.inotify.max_user_instances': 128, 'user.max_inotify_instances': 128, 'fs.inotify.max_user_watches': 32861, 'user.max_inotify_watches': 32861, 'kernel.pty.max': 4096 } });
    made.host.fs.nodes.delete(LIMITS_PATH);
    return made;
  }

  test('--check: the raise is missing, and the limit too low for the manifest is an error finding with the exact fix (exit 1, nothing changed)', async () => {
    const { host } = defaultLimitsHost();
    const before = snapshot(host);
    const r = await runCommand(initWith(host), ['machines.yaml', '--check']);
    expect({ exitCode: r.exitCode, stdout: r.stdout }).toEqual({
      exitCode: 1,
      stdout: [
        'Missing:',
        '  - write /etc/sysctl.d/50-nspawnctl.conf  (the kernel limits booted machines use up, for the next boot too)',
        '  - raise fs.inotify.max_user_instances from 128 to 4096  (room for 256 machines (16 MiB each in 4.0 GiB of memory): 8 inotify instances each, 16 for the host)',
        '  - record what host init changed in /var/lib/nspawnctl/host.json  (remember what host init changed, for --undo)',
        FINDING,
        '',
      ].join('\n'),
    });
    const json = JSON.parse((await runCommand(initWith(host), ['machines.yaml', '--check', '--json'])).stdout);
    expect(json.ready).toBe(false);
    expect(json.findings).toEqual([expect.objectContaining({ severity: 'error', fixedBy: 'raise fs.inotify.max_user_instances from 128 to 4096' })]);
    expect(snapshot(host)).toEqual(before);
    expect(host.runner.argvs().filter(CHANGING)).toEqual([]);
  });

  test('a run raises it and keeps it: the finding its step fixed is not reported, exit 0; a second run changes nothing', async () => {
    const { host } = defaultLimitsHost();
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stderr).not.toContain('error:');
    expect(effects(host)).toEqual([['sysctl', '-w', 'fs.inotify.max_user_instances=4096']]);
    expect(host.fs.textAt(INSTANCES)).toBe('4096\n');
    expect(host.fs.textAt(LIMITS_PATH)).toBe(LIMITS_CONF);
    const record = JSON.parse(host.fs.textAt(HOST_RECORD)!);
    expect(record.sysctls).toEqual({ 'fs.inotify.max_user_instances': { before: 128, set: 4096 } });
    expect(record.files).toEqual([LIMITS_PATH]);

    const changed = host.fs.changes.length;
    const again = await runCommand(initWith(host), ['machines.yaml']);
    expect({ exitCode: again.exitCode, stdout: again.stdout }).toEqual({ exitCode: 0, stdout: 'The host is ready for nspawnctl.\n' });
    expect(changes(host).slice(changed).filter((c) => !c.startsWith('lock') && !c.startsWith('unlock'))).toEqual([]);
    expect((await runCommand(initWith(host), ['machines.yaml', '--check'])).exitCode).toBe(0);
  });

  test('a value raised further by someone between the plan and the step is left where it is (never lowered)', async () => {
    const { host } = defaultLimitsHost();
    // The admin raises it after host init planned (under the lock), just before the raise runs.
    const write = host.fs.writeFile.bind(host.fs);
    host.fs.writeFile = async (path, content, options) => {
      const written = await write(path, content, options);
      if (path === LIMITS_PATH) host.fs.addFile(INSTANCES, '100000\n');
      return written;
    };
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(0);
    expect(effects(host)).toEqual([]);
    expect(host.fs.textAt(INSTANCES)).toBe('100000\n');
  });

  test('/proc/sys read-only and the values too low: the file is written, nothing is set, exit 1 with the fix from outside', async () => {
    const { host } = defaultLimitsHost();
    host.fs.readOnly.add('/proc/sys');
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(1);
    expect(effects(host)).toEqual([]);
    expect(host.fs.textAt(LIMITS_PATH)).toContain('fs.inotify.max_user_instances = 4096\n');
    expect(host.fs.textAt(INSTANCES)).toBe('128\n');
    expect(r.stderr).toContain(
      'error: fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 20 would run (the 20 of machines.yaml): they need 176 inotify instances (8 per machine, 16 for the host)\n' +
        "  fix: /proc/sys is read-only here (nspawnctl runs in a container, and the limit is the kernel's): on the host that runs this container, sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line \"fs.inotify.max_user_instances = 4096\" in a file in /etc/sysctl.d/\n",
    );
    expect(r.stderr).toContain('nspawnctl: 1 problem(s) need a manual fix (see above)\n');
  });

  // Regression: with --json the report was followed by the error as a second JSON document, so
  // stdout did not parse. The report is the one document; the error goes to stderr.
  test('--json, /proc/sys read-only and the values too low: stdout is one document (the report), exit 1; a second run the same, with no steps', async () => {
    const { host } = defaultLimitsHost();
    host.fs.readOnly.add('/proc/sys');
    const fix = "/proc/sys is read-only here (nspawnctl runs in a container, and the limit is the kernel's): on the host that runs this container, sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line \"fs.inotify.max_user_instances = 4096\" in a file in /etc/sysctl.d/";
    for (const applied of [true, false]) {
      const r = await runCommand(initWith(host), ['machines.yaml', '--json']);
      expect({ exitCode: r.exitCode, error: r.stderr.split('\n').filter((l) => l.startsWith('nspawnctl:')) }).toEqual({ exitCode: 1, error: ['nspawnctl: 1 problem(s) need a manual fix (see above)'] });
      const json = JSON.parse(r.stdout);
      expect({ ...json, steps: json.steps.map((s: { kind: string }) => s.kind) }).toEqual({
        ready: false,
        steps: applied ? ['write-file', 'write-host-record'] : [],
        findings: [{ severity: 'error', what: 'fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 20 would run (the 20 of machines.yaml): they need 176 inotify instances (8 per machine, 16 for the host)', fix }],
        ...(applied ? { applied: true } : {}),
      });
    }
    expect(effects(host)).toEqual([]);
  });

  test('/proc/sys read-only and the values already sufficient (set from outside): the file only, exit 0', async () => {
    const { host } = defaultLimitsHost();
    host.fs.addFile(INSTANCES, '4096\n');
    host.fs.addFile('/proc/sys/user/max_inotify_instances', '4096\n');
    host.fs.readOnly.add('/proc/sys');
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(effects(host)).toEqual([]);
    expect(host.fs.textAt(LIMITS_PATH)).toBe(LIMITS_CONF);
    expect(JSON.parse(host.fs.textAt(HOST_RECORD)!).sysctls).toBeUndefined();
  });

  test('sysctl -w failing anyway: exit 1 naming the key, the values and the fix; the file is written already', async () => {
    const { host } = makeReadyDebianHost(parseManifest('machines.yaml', MANY), {
      inputs: { 'machines.yaml': MANY },
      sysctls: { 'fs.inotify.max_user_instances': 128, 'user.max_inotify_instances': 128, 'fs.inotify.max_user_watches': 32861, 'kernel.pty.max': 4096 },
      before: (h) => h.runner.on(['sysctl', '-w', 'fs.inotify.max_user_instances=4096'], { exitCode: 255, stderr: 'sysctl: permission denied on key "fs.inotify.max_user_instances"\n' }),
    });
    host.fs.nodes.delete(LIMITS_PATH);
    const r = await runCommand(initWith(host), ['machines.yaml']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      'nspawnctl: could not raise fs.inotify.max_user_instances from 128 to 4096: command sysctl -w fs.inotify.max_user_instances=4096 exited with code 255:\n    sysctl: permission denied on key "fs.inotify.max_user_instances"\n' +
        'hint: /etc/sysctl.d/50-nspawnctl.conf already holds the value for the next boot. To raise it now: sysctl -w fs.inotify.max_user_instances=4096 (in a container whose /proc/sys is read-only, on the host that runs it).\n',
    );
    expect(host.fs.textAt(LIMITS_PATH)).toContain('fs.inotify.max_user_instances = 4096\n');
  });

  test('--undo removes the file and sets the limit back to its value from before', async () => {
    const { host } = defaultLimitsHost();
    expect((await runCommand(initWith(host), ['machines.yaml'])).exitCode).toBe(0);
    const calls = host.runner.calls.length;
    const r = await runCommand(initWith(host), ['--undo']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('Undone: removed 1 file(s), disabled 0 unit(s), restored fs.inotify.max_user_instances = 128.\n');
    expect(r.stderr).toBe(`removed ${LIMITS_PATH}\nrestored fs.inotify.max_user_instances = 128\n`);
    expect(host.runner.argvs().slice(calls)).toEqual([['sysctl', '-w', 'fs.inotify.max_user_instances=128']]);
    expect([host.fs.textAt(INSTANCES), host.fs.nodes.has(LIMITS_PATH), host.fs.nodes.has(HOST_RECORD)]).toEqual(['128\n', false, false]);
    // And --check names what is missing again.
    expect((await runCommand(initWith(host), ['machines.yaml', '--check'])).exitCode).toBe(1);
  });

  test('--undo leaves a limit alone that someone changed after host init raised it', async () => {
    const { host } = defaultLimitsHost();
    expect((await runCommand(initWith(host), ['machines.yaml'])).exitCode).toBe(0);
    host.fs.addFile(INSTANCES, '65536\n');
    const calls = host.runner.calls.length;
    const r = await runCommand(initWith(host), ['--undo', '--json']);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      removed: [LIMITS_PATH],
      restored: [],
      leftAlone: [{ key: 'fs.inotify.max_user_instances', value: 65536, reason: 'it is 65536 now, not the 4096 host init set: someone changed it since' }],
    });
    expect(host.runner.argvs().slice(calls)).toEqual([]);
    expect(host.fs.textAt(INSTANCES)).toBe('65536\n');
  });
});
