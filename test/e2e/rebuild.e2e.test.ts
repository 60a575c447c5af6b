// rebuild and rollback on a real systemd host: a fresh root filesystem swapped in with one stop and
// one start (a marker written in / is gone, bind data and the address stay, the downtime is
// printed), rollback swaps the old one back, and a new root filesystem that cannot boot is swapped
// back by rebuild itself (exit 1); apply plans a rebuild for changed provision commands (--yes),
// and for a package added to a read-only machine.
import { e2eSuite, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-rebuild');
const inHost = sb.exec.bind(sb);
const nspawnctl = sb.nspawnctl.bind(sb);
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);
const ADDRESS = '10.77.0.31';

function manifest(proxy: string, motd: string, extra = ''): string {
  return [
    'defaults:',
    `  mirror: http://${proxy}/deb.debian.org/debian`,
    'networks:',
    '  examplevlan: { subnet: 10.77.0.0/24 }',
    'machines:',
    '  rb:',
    `    network: { bridge: examplevlan, address: ${ADDRESS} }`,
    '    bind:',
    '      - { host: /srv/rbdata, machine: /var/data, create: true }',
    '    files:',
    `      - { path: /etc/motd, content: "${motd}\\n" }`,
    extra,
  ].join('\n');
}

/** Runs a command inside the machine through its own systemd. */
function inMachine(command: string[], check = true) {
  return inHost(['systemd-run', '--machine=rb', '--wait', '--pipe', '--quiet', '--', ...command], { check });
}

function exists(path: string): boolean {
  return inHost(['test', '-e', path], { check: false }).code === 0;
}

function systemState(): string {
  return inHost(['systemctl', '--machine=rb', 'is-system-running'], { check: false }).stdout.trim();
}

function pingAnswers(): boolean {
  return sb.pingUntilAnswered(ADDRESS);
}

/** The downtime rebuild or rollback printed, in seconds. */
function downtimeOf(stdout: string): number {
  const m = /: downtime (\d+\.\d) s \(stop (\d+\.\d) s, start until ready (\d+\.\d) s\)/.exec(stdout);
  expect({ stdout, printed: m !== null }).toEqual({ stdout, printed: true });
  return Number(m![1]);
}

e2eSuite('rebuild and rollback on a real systemd host', () => {
  let proxy = '';
  const downtimes: string[] = [];

  beforeAll(() => {
    proxy = sb.up();
    sb.write('/root/m.yaml', manifest(proxy, 'rb v1'));
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n${downtimes.join('\n')}\n`);
  }, 120_000);

  timed('1. apply; a marker in / and data in the bind', () => {
    nspawnctl(['apply', '/root/m.yaml']);
    inMachine(['sh', '-c', 'echo old-rootfs > /marker && echo kept > /var/data/keep']);
    expect(inHost(['cat', '/var/lib/machines/rb/marker']).stdout).toBe('old-rootfs\n');
    expect(inHost(['cat', '/srv/rbdata/keep']).stdout).toBe('kept\n');
  });

  timed('2. rebuild: a fresh rootfs (marker gone, new motd), bind data and address kept, downtime printed', () => {
    const leaderBefore = inHost(['machinectl', 'show', 'rb', '--property=Leader', '--value']).stdout.trim();
    sb.write('/root/m.yaml', manifest(proxy, 'rb v2'));
    const r = nspawnctl(['rebuild', 'rb', '--yes']);
    downtimes.push(`[e2e] rebuild downtime: ${downtimeOf(r.stdout)} s`);
    expect(r.stdout).toContain('The replaced root filesystem is kept at /var/lib/machines/.nspawnctl-rb.previous (nspawnctl rollback rb swaps it back).');
    // Ready when rebuild returned: its systemd is up and host0 configured.
    expect(['running', 'degraded']).toContain(systemState());
    expect(inHost(['machinectl', 'show', 'rb', '--property=Leader', '--value']).stdout.trim()).not.toBe(leaderBefore);
    expect(inMachine(['test', '-e', '/marker'], false).code).not.toBe(0);
    expect(inMachine(['cat', '/etc/motd']).stdout).toBe('rb v2\n');
    expect(inHost(['cat', '/var/lib/machines/.nspawnctl-rb.previous/marker']).stdout).toBe('old-rootfs\n');
    // Bind data stays, and the machine's root can still write there.
    expect(inMachine(['cat', '/var/data/keep']).stdout).toBe('kept\n');
    inMachine(['sh', '-c', 'echo again >> /var/data/keep']);
    expect(inHost(['cat', '/srv/rbdata/keep']).stdout).toBe('kept\nagain\n');
    expect(pingAnswers()).toBe(true);
    const record = JSON.parse(inHost(['cat', '/var/lib/nspawnctl/machines/rb.json']).stdout);
    expect(record.previous.path).toBe('/var/lib/machines/.nspawnctl-rb.previous');
    expect(nspawnctl(['status', 'rb']).stdout).toContain('previous:  /var/lib/machines/.nspawnctl-rb.previous (debian bookworm, set aside ');
    // The swap left nothing behind, and the previous root is hidden from machinectl.
    expect(exists('/var/lib/machines/.nspawnctl-rb.staging')).toBe(false);
    expect(inHost(['machinectl', 'list-images', '--no-legend', '--no-pager']).stdout).not.toContain('nspawnctl-rb');
    // The host matches the manifest: nothing left to apply.
    expect(JSON.parse(nspawnctl(['plan', '/root/m.yaml', '--json']).stdout).steps).toEqual([]);
  });

  timed('3. rollback brings the marker back; a second rollback returns to the rebuilt one, a third back again', () => {
    const r = nspawnctl(['rollback', 'rb']);
    downtimes.push(`[e2e] rollback downtime: ${downtimeOf(r.stdout)} s`);
    expect(['running', 'degraded']).toContain(systemState());
    expect(inMachine(['cat', '/marker']).stdout).toBe('old-rootfs\n');
    expect(inMachine(['cat', '/etc/motd']).stdout).toBe('rb v1\n');
    expect(pingAnswers()).toBe(true);
    nspawnctl(['rollback', 'rb']);
    expect(inMachine(['test', '-e', '/marker'], false).code).not.toBe(0);
    expect(inMachine(['cat', '/etc/motd']).stdout).toBe('rb v2\n');
    nspawnctl(['rollback', 'rb']);
    expect(inMachine(['cat', '/marker']).stdout).toBe('old-rootfs\n');
    expect(inMachine(['cat', '/var/data/keep']).stdout).toBe('kept\nagain\n');
  });

  timed('4. a rebuild whose new rootfs cannot boot (emergency.target) is swapped back by itself, exit 1', () => {
    // Provision makes the new root boot into emergency mode: its systemd never reaches running.
    // The same file (generated files name their manifest: another file would change them too).
    sb.write('/root/m.yaml', manifest(proxy, 'rb broken', '    provision:\n      - [systemctl, set-default, emergency.target]\n'));
    const r = nspawnctl(['rebuild', 'rb', '--yes', '--start-timeout', '60'], { check: false });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: expect.stringContaining('nspawnctl: machine rb: rolled back: the new root filesystem did not reach readiness (machine rb is not ready: ') });
    expect(r.stderr).toContain('; the old root filesystem runs again');
    downtimes.push(`[e2e] the failed rebuild said: ${r.stderr.split('\n').find((l) => l.startsWith('nspawnctl: ')) ?? ''}`);
    expect(['running', 'degraded']).toContain(systemState());
    expect(inMachine(['cat', '/marker']).stdout).toBe('old-rootfs\n');
    expect(inMachine(['cat', '/etc/motd']).stdout).toBe('rb v1\n');
    expect(pingAnswers()).toBe(true);
    expect(exists('/var/lib/machines/.nspawnctl-rb.staging')).toBe(false);
    const record = JSON.parse(inHost(['cat', '/var/lib/nspawnctl/machines/rb.json']).stdout);
    expect(record.provision).toEqual([]);
  });

  timed('5. apply plans a rebuild when provision changes: refused without --yes (no terminal), done with it', () => {
    sb.write('/root/m.yaml', manifest(proxy, 'rb v2', '    provision:\n      - [touch, /provisioned]\n'));
    const refused = nspawnctl(['apply', '/root/m.yaml'], { check: false });
    expect({ code: refused.code, stderr: refused.stderr }).toEqual({ code: 2, stderr: expect.stringContaining('nspawnctl: refusing to apply: the plan rebuilds rb (a fresh root filesystem; the old one is kept for rollback); run apply with --yes') });
    expect(refused.stderr).toContain('~ machine rb: rebuild\n    rebuild (provision commands changed); the old root filesystem is kept for rollback\n');
    expect(inMachine(['cat', '/marker']).stdout).toBe('old-rootfs\n');
    const r = nspawnctl(['apply', '/root/m.yaml', '--yes']);
    expect(r.stdout).toMatch(/Applied (\d+) of \1 step\(s\)\./);
    expect(['running', 'degraded']).toContain(systemState());
    expect(inMachine(['test', '-e', '/marker'], false).code).not.toBe(0);
    expect(inMachine(['test', '-e', '/provisioned'], false).code).toBe(0);
    expect(inMachine(['cat', '/var/data/keep']).stdout).toBe('kept\nagain\n');
    expect(inHost(['cat', '/var/lib/machines/.nspawnctl-rb.previous/marker']).stdout).toBe('old-rootfs\n');
    expect(pingAnswers()).toBe(true);
    expect(JSON.parse(nspawnctl(['plan', '/root/m.yaml', '--json']).stdout).steps).toEqual([]);
  });

  timed('6. destroy removes the previous rootfs too', () => {
    expect(exists('/var/lib/machines/.nspawnctl-rb.previous/marker')).toBe(true);
    nspawnctl(['destroy', 'rb', '--yes']);
    expect(inHost(['sh', '-c', 'ls -a /var/lib/machines']).stdout.split('\n').filter((l) => l.includes('rb'))).toEqual([]);
    expect(inHost(['cat', '/srv/rbdata/keep']).stdout).toBe('kept\nagain\n');
  });

  timed('7. a read-only machine: a package added to the manifest comes with a rebuild, and the root stays read-only', () => {
    const readOnly = (packages: string) => manifest(proxy, 'rb ro', `    packages: [${packages}]\n    security: { readOnly: true }\n`);
    sb.write('/root/ro.yaml', readOnly(''));
    nspawnctl(['apply', '/root/ro.yaml']);
    expect(['running', 'degraded']).toContain(systemState());
    // $$: systemd-run would expand ${Status} itself.
    const status = () => inMachine(['dpkg-query', '-W', '-f=$${Status}', 'bc'], false).stdout;
    expect(status()).not.toBe('install ok installed');
    sb.write('/root/ro.yaml', readOnly('bc'));
    expect(nspawnctl(['plan', '/root/ro.yaml']).stdout).toContain('rebuild (packages added to a read-only root: bc); the old root filesystem is kept for rollback');
    const r = nspawnctl(['apply', '/root/ro.yaml', '--yes']);
    expect(r.stdout).toMatch(/Applied (\d+) of \1 step\(s\)\./);
    expect(['running', 'degraded']).toContain(systemState());
    expect(status()).toBe('install ok installed');
    expect(inMachine(['touch', '/written'], false).code).not.toBe(0);
    expect(pingAnswers()).toBe(true);
    expect(JSON.parse(nspawnctl(['plan', '/root/ro.yaml', '--json']).stdout).steps).toEqual([]);
    nspawnctl(['destroy', 'rb', '--yes']);
  });
});
