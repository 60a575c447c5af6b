// Services hardened inside a machine (machines.NAME.services), proven in the disposable systemd
// host: a stock Debian nginx under the strict service preset still serves a page to the host, its
// processes really run with the restrictions, its exposure score drops and comes back when the
// hardening is removed, and a profile of it under requests yields a filter it still serves with.
import { e2eSuite, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-svc');
const inHost = sb.exec.bind(sb);
const nspawnctl = sb.nspawnctl.bind(sb);
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);

const ADDRESS = '10.81.0.11';
const DROP_IN = '/var/lib/machines/web/etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf';

// The test host has perl (perl-base) but no curl: one HTTP GET, printing the status line and body.
const GET = [
  '#!/usr/bin/perl',
  'use IO::Socket::INET;',
  'my $host = shift;',
  'my $c = IO::Socket::INET->new(PeerAddr => $host, PeerPort => 80, Timeout => 3) or do { print "failed: $@\\n"; exit 1 };',
  'print $c "GET / HTTP/1.0\\r\\nHost: $host\\r\\n\\r\\n";',
  'local $/; my $r = <$c>; print defined $r ? $r : "failed: no answer\\n";',
  'exit($r =~ m{^HTTP/1\\.[01] 200 } ? 0 : 1);',
  '',
].join('\n');

// The machine is on the strict machine preset, as in docs/security.md's worked example. To be
// profiled, it must let its root trace (CAP_SYS_PTRACE, @debug): "traceable" loosens exactly that.
const MACHINE_SECURITY = {
  strict: ['    security: { preset: strict }'],
  traceable: [
    '    security:',
    '      preset: strict',
    '      capabilities: { add: [CAP_SYS_PTRACE] }',
    '      systemCallFilter: ["~@clock", "~@cpu-emulation", "~@module", "~@obsolete", "~@raw-io", "~@swap"]',
  ],
};

/** services: of machine web, as YAML lines (already indented), or none. */
function manifest(proxy: string, services: string[] = [], security: keyof typeof MACHINE_SECURITY = 'strict'): string {
  return [
    'defaults:',
    `  mirror: http://${proxy}/deb.debian.org/debian`,
    'networks:',
    '  svcnet:',
    '    subnet: 10.81.0.0/24',
    'machines:',
    '  web:',
    `    network: { bridge: svcnet, address: ${ADDRESS} }`,
    ...MACHINE_SECURITY[security],
    // strace for the profiler.
    '    packages: [nginx, strace]',
    '    files:',
    '      - path: /home/alice/secret.txt',
    '        content: "alice\'s secret\\n"',
    ...(services.length ? ['    services:', ...services] : []),
    '',
  ].join('\n');
}

const write = (proxy: string, services: string[] = [], security: keyof typeof MACHINE_SECURITY = 'strict') => sb.write('/root/svc.yaml', manifest(proxy, services, security));

/** The page from the host, retried while networkd and nginx come up (30 tries). */
function pageFromHost(): string {
  const r = inHost(['sh', '-c', `for i in $(seq 1 30); do perl /root/get ${ADDRESS} && exit 0; sleep 1; done; exit 1`], { check: false });
  expect({ served: r.code === 0, answer: r.stdout.split('\n')[0] }).toEqual({ served: true, answer: expect.stringMatching(/^HTTP\/1\.[01] 200 /) });
  return r.stdout;
}

/** Properties of nginx.service, from the machine's own systemd. */
function showNginx(props: string[]): Record<string, string> {
  const text = inHost(['systemctl', '--machine=web', 'show', 'nginx.service', ...props.map((p) => `--property=${p}`)]).stdout;
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** nginx's row of `audit web --json`. */
function auditNginx(): { exposure: number; level: string; hardened: boolean } {
  const r = nspawnctl(['audit', 'web', '--json'], { check: false });
  const rows = JSON.parse(r.stdout).services as { unit: string; exposure: number; level: string; hardened: boolean }[];
  const row = rows.find((x) => x.unit === 'nginx.service');
  expect(row).toBeDefined();
  return row!;
}

/** The PID, in the test host, of nginx's master process: the service's main process. */
function nginxMaster(): number {
  const pids = inHost(['pgrep', '-f', '^nginx: master']).stdout.trim().split('\n');
  expect(pids).toHaveLength(1);
  return Number(pids[0]);
}

/** A command in the machine but outside the service: a transient service of its systemd with no hardening. */
function inMachine(argv: string[], check = true) {
  return inHost(['systemd-run', '--machine=web', '--wait', '--pipe', '--quiet', '--', ...argv], { check, timeoutMs: 60_000 });
}

e2eSuite('services hardened inside a machine', () => {
  let proxy = '';
  /** nginx's exposure without and with the strict preset, from audit. */
  let unhardened = 0;
  let strict = 0;
  let profiled: string[] = [];

  beforeAll(() => {
    proxy = sb.up();
    write(proxy);
    sb.write('/root/get', GET);
  }, 900_000);

  afterAll(() => {
    inHost(['systemctl', 'stop', 'nsctl-e2e-load.service'], { check: false });
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. a machine with stock nginx, no services: key: it serves a page; audit rates nginx, not hardened', () => {
    const r = nspawnctl(['apply', '/root/svc.yaml']);
    expect(r.stdout).toMatch(/Applied (\d+) of \1 step\(s\)\./);
    expect(pageFromHost()).toContain('Welcome to nginx');
    const row = auditNginx();
    expect(row.hardened).toBe(false);
    unhardened = row.exposure;
    expect(unhardened).toBeGreaterThan(5);
    // Not hardened by nspawnctl, so it cannot fail the gate.
    expect(nspawnctl(['audit', 'web', '--max-exposure', '0.1'], { check: false }).code).toBe(0);
  });

  timed('2. services.nginx.preset: strict: plan estimates a lower score, apply restarts nginx (not the machine), the drop-in is loaded', () => {
    write(proxy, ['      nginx:', '        preset: strict']);
    const leaderBefore = inHost(['machinectl', 'show', 'web', '--property=Leader', '--value']).stdout.trim();
    const plan = JSON.parse(nspawnctl(['plan', '/root/svc.yaml', '--json']).stdout);
    expect(plan.steps.map((s: { kind: string }) => s.kind)).toEqual(['write-file', 'write-record', 'restart-services']);
    const estimate = plan.exposure.find((e: { service: string }) => e.service === 'nginx');
    expect(estimate.change).toBe('hardened');
    expect(estimate.after.exposure).toBeLessThan(estimate.before.exposure);
    const text = nspawnctl(['plan', '/root/svc.yaml']).stdout;
    expect(text).toMatch(/web nginx +\d+\.\d [A-Z]+ -> \d+\.\d [A-Z]+/);
    process.stderr.write(`[e2e] plan:\n${text}\n`);
    const r = nspawnctl(['apply', '/root/svc.yaml']);
    expect(r.stdout).toContain('restarted nginx.service in web');
    expect(inHost(['machinectl', 'show', 'web', '--property=Leader', '--value']).stdout.trim()).toBe(leaderBefore);
    expect(inHost(['cat', DROP_IN]).stdout).toContain('ProtectSystem=strict\n');
    const props = showNginx(['ProtectSystem', 'ProtectHome', 'NoNewPrivileges', 'SystemCallFilter', 'DropInPaths', 'ActiveState']);
    expect(props).toMatchObject({ ProtectSystem: 'strict', ProtectHome: 'yes', NoNewPrivileges: 'yes', ActiveState: 'active' });
    expect(props.DropInPaths.split(' ')).toContain('/etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf');
    // An allow list (@system-service): ordinary calls in it, mount(2) (@mount) not.
    const filter = props.SystemCallFilter.split(' ');
    expect({ read: filter.includes('read'), accept4: filter.includes('accept4'), mount: filter.includes('mount') }).toEqual({ read: true, accept4: true, mount: false });
    expect(pageFromHost()).toContain('Welcome to nginx');
    expect(JSON.parse(nspawnctl(['plan', '/root/svc.yaml', '--json']).stdout).steps).toEqual([]);
  });

  timed('3. inside the service: seccomp and no new privileges are on, /usr is read-only and /home is empty; outside it in the same machine, neither', () => {
    const pid = nginxMaster();
    const status = inHost(['cat', `/proc/${pid}/status`]).stdout;
    expect(/^Seccomp:\s*(\d)$/m.exec(status)?.[1]).toBe('2');
    expect(/^NoNewPrivs:\s*(\d)$/m.exec(status)?.[1]).toBe('1');
    // /proc/PID/root is the root as the service sees it: its mount namespace, its read-only /usr.
    const write = inHost(['sh', '-c', `echo x > /proc/${pid}/root/usr/nspawnctl-probe`], { check: false });
    expect({ code: write.code === 0, err: write.stderr }).toEqual({ code: false, err: expect.stringContaining('Read-only file system') });
    // The path itself works for reading (its /etc), so what follows is the service's /home.
    expect(inHost(['cat', `/proc/${pid}/root/etc/hostname`]).stdout).toBe('web\n');
    const secret = inHost(['cat', `/proc/${pid}/root/home/alice/secret.txt`], { check: false });
    expect({ read: secret.code === 0, out: secret.stdout }).toEqual({ read: false, out: '' });
    // The same machine outside the service: /usr is writable and alice's file readable.
    expect(inMachine(['cat', '/home/alice/secret.txt']).stdout).toBe("alice's secret\n");
    expect(inMachine(['sh', '-c', 'touch /usr/nspawnctl-probe && rm /usr/nspawnctl-probe']).code).toBe(0);
  });

  timed('4. audit: nginx hardened, its exposure lower than without hardening; status and list --json show it; the gate fails above a threshold', () => {
    const row = auditNginx();
    strict = row.exposure;
    process.stderr.write(`[e2e] nginx exposure (systemd-analyze security in the machine): without hardening ${unhardened.toFixed(1)}, strict preset ${strict.toFixed(1)}\n`);
    expect(row.hardened).toBe(true);
    expect(strict).toBeLessThan(unhardened);
    const table = nspawnctl(['audit', 'web']).stdout;
    process.stderr.write(`[e2e] audit:\n${table}\n`);
    expect(table).toMatch(new RegExp(`${strict.toFixed(1).replace('.', '\\.')} +[A-Z]+ +web +nginx\\.service +yes`));
    const status = nspawnctl(['status', 'web']).stdout;
    process.stderr.write(`[e2e] status:\n${status}\n`);
    expect(status).toMatch(new RegExp(`^  nginx +${strict.toFixed(1).replace('.', '\\.')} [A-Z]+  unmet: `, 'm'));
    const list = JSON.parse(nspawnctl(['list', '--json']).stdout);
    expect(list.find((m: { name: string }) => m.name === 'web').services).toEqual([{ name: 'nginx', exposure: strict, level: row.level }]);
    const gate = nspawnctl(['audit', 'web', '--max-exposure', (strict - 0.1).toFixed(1)], { check: false });
    expect(gate.code).not.toBe(0);
    expect(gate.stderr).toContain(`nginx.service in web: ${strict.toFixed(1)}`);
    expect(nspawnctl(['audit', 'web', '--max-exposure', strict.toFixed(1)], { check: false }).code).toBe(0);
  });

  timed('5. profile syscalls --service nginx under requests (the strict machine loosened for it, then tightened again): the filter, applied, still serves pages and survives a restart', () => {
    // The strict machine preset takes CAP_SYS_PTRACE: the profiler says so, and what to loosen.
    const refused = nspawnctl(['profile', 'syscalls', 'web', '--service', 'nginx', '--duration', '1s'], { check: false });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("CAP_SYS_PTRACE is not in the machine's capability bounding set");
    write(proxy, ['      nginx:', '        preset: strict'], 'traceable');
    nspawnctl(['apply', '/root/svc.yaml']);
    expect(pageFromHost()).toContain('Welcome to nginx');
    // Requests all through the trace, until the test stops them.
    inHost(['systemd-run', '--unit=nsctl-e2e-load', '--', 'sh', '-c', `while :; do perl /root/get ${ADDRESS} >/dev/null; sleep 0.2; done`]);
    const r = nspawnctl(['profile', 'syscalls', 'web', '--service', 'nginx', '--duration', '10s', '--json']);
    inHost(['systemctl', 'stop', 'nsctl-e2e-load.service']);
    const profile = JSON.parse(r.stdout);
    expect(r.stderr).toContain('nspawnctl: tracing nginx.service in web');
    expect(profile.processes).toBeGreaterThanOrEqual(2);
    // The requests were traced: nginx accepted and answered them.
    expect(profile.syscalls).toEqual(expect.arrayContaining(['accept4', 'recvfrom']));
    expect(profile.systemCallFilter[0]).toBe('@system-service');
    profiled = profile.systemCallFilter;
    const text = nspawnctl(['profile', 'syscalls', 'web', '--service', 'nginx', '--duration', '1s']).stdout;
    process.stderr.write(`[e2e] profile --json filter: ${JSON.stringify(profiled)}\n[e2e] profile:\n${text}\n`);
    expect(text).toContain('WARNING: a profile covers only the code paths that ran');
    expect(text).toContain('services:\n  nginx:\n    systemCallFilter:\n      - "@system-service"');
    // Back to the strict machine, with the profiled filter: the machine restarts, and apply checks nginx came up hardened.
    write(proxy, ['      nginx:', '        preset: strict', `        systemCallFilter: ${JSON.stringify(profiled)}`]);
    const plan = JSON.parse(nspawnctl(['plan', '/root/svc.yaml', '--json']).stdout);
    expect(plan.steps.find((st: { kind: string }) => st.kind === 'restart-services')).toMatchObject({ units: ['nginx'], afterBoot: true });
    nspawnctl(['apply', '/root/svc.yaml']);
    expect(pageFromHost()).toContain('Welcome to nginx');
    const capBnd = /^CapBnd:\s*([0-9a-f]+)$/m.exec(inMachine(['cat', '/proc/self/status']).stdout)?.[1] ?? '0';
    expect((BigInt(`0x${capBnd}`) >> 19n) & 1n).toBe(0n);
    process.stderr.write(`[e2e] audit after the profiled filter:\n${nspawnctl(['audit', 'web']).stdout}\n`);
    const filter = showNginx(['SystemCallFilter']).SystemCallFilter.split(' ');
    // The profile denies at least one group nginx never called, and its calls are out of the service's filter.
    const denied = profiled.filter((e) => e.startsWith('~'));
    expect(denied.length).toBeGreaterThan(0);
    const member: Record<string, string> = { '~@aio': 'io_setup', '~@keyring': 'add_key' };
    for (const group of denied) expect({ group, probe: member[group], allowed: filter.includes(member[group]) }).toEqual({ group, probe: expect.any(String), allowed: false });
    expect({ read: filter.includes('read'), accept4: filter.includes('accept4') }).toEqual({ read: true, accept4: true });
    inHost(['systemctl', '--machine=web', 'restart', 'nginx.service']);
    expect(showNginx(['ActiveState']).ActiveState).toBe('active');
    expect(pageFromHost()).toContain('Welcome to nginx');
  });

  timed('6. services.nginx removed: the drop-in goes, nginx restarts without it, the old score is back', () => {
    write(proxy);
    const plan = nspawnctl(['plan', '/root/svc.yaml']).stdout;
    expect(plan).toContain('nginx (hardening removed)');
    nspawnctl(['apply', '/root/svc.yaml']);
    expect(inHost(['test', '-e', DROP_IN.replace(/\/[^/]+$/, '')], { check: false }).code).not.toBe(0);
    expect(showNginx(['ProtectSystem', 'DropInPaths'])).toEqual({ ProtectSystem: 'no', DropInPaths: '' });
    expect(pageFromHost()).toContain('Welcome to nginx');
    const row = auditNginx();
    expect({ hardened: row.hardened, exposure: row.exposure }).toEqual({ hardened: false, exposure: unhardened });
    expect(JSON.parse(nspawnctl(['plan', '/root/svc.yaml', '--json']).stdout).steps).toEqual([]);
  });

  timed('7. a service the machine does not have: a plan warning, an apply error naming it; removed again, all is clean', () => {
    write(proxy, ['      nosuch:', '        preset: default']);
    const plan = nspawnctl(['plan', '/root/svc.yaml']).stdout;
    expect(plan).toContain('warning: machine web: service nosuch: no unit nosuch.service in machine web');
    const r = nspawnctl(['apply', '/root/svc.yaml'], { check: false });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('machine web has no unit nosuch.service');
    write(proxy);
    nspawnctl(['apply', '/root/svc.yaml']);
    expect(inHost(['test', '-e', '/var/lib/machines/web/etc/systemd/system/nosuch.service.d'], { check: false }).code).not.toBe(0);
    expect(JSON.parse(nspawnctl(['plan', '/root/svc.yaml', '--json']).stdout).steps).toEqual([]);
    expect(pageFromHost()).toContain('Welcome to nginx');
  });

  timed('8. the test host goes away and leaves nothing on this machine', () => {
    nspawnctl(['destroy', 'web', '--yes']);
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
