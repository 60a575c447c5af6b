// `nspawnctl host init` on a host WITHOUT the packages nspawnctl needs (the sandbox's bare
// flavour): it installs them, creates the bridge, a second run is a no-op, apply works after it,
// and with nat: true a machine reaches the apt mirror through the host.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { e2eSuite, REPO, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-bare');
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);

/** The example (whose network has NAT) with the sandbox's apt cache as mirror (a URL prefix). */
function natManifest(proxy: string): string {
  const text = readFileSync(join(REPO, 'machines.example.yaml'), 'utf8');
  expect(text).toContain('    nat: true\n');
  const out = text.replace('mirror: http://deb.debian.org/debian', `mirror: http://${proxy}/deb.debian.org/debian`);
  expect(out).toContain(`http://${proxy}/`);
  return out;
}

function leader(name: string): string {
  return sb.exec(['machinectl', 'show', name, '--property=Leader', '--value']).stdout.trim();
}

e2eSuite('host init on a fresh host', () => {
  beforeAll(() => {
    const proxy = sb.up(['--bare']);
    sb.write('/root/machines.yaml', natManifest(proxy));
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. --check on a fresh host names what is missing and exits 1, changing nothing', () => {
    expect(sb.exec(['test', '-e', '/usr/bin/machinectl'], { check: false }).code).not.toBe(0);
    const r = sb.nspawnctl(['host', 'init', '/root/machines.yaml', '--check', '--json'], { check: false });
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.ready).toBe(false);
    const install = report.steps.find((s: { kind: string }) => s.kind === 'install-packages');
    expect(install.description).toContain('systemd-container');
    expect(install.description).toContain('mmdebstrap');
    expect(install.description).toContain('nftables');
    expect(sb.exec(['test', '-e', '/var/lib/nspawnctl'], { check: false }).code).not.toBe(0);
  });

  timed('2. host init installs, enables networkd, creates the bridge, enables forwarding', () => {
    const r = sb.nspawnctl(['host', 'init', '/root/machines.yaml'], { check: false });
    if (r.code !== 0) {
      // Seen once in CI with other suites beside it: sysctl -w net.ipv4.ip_forward=1 refused with
      // "permission denied". What the test host's /proc/sys and capabilities were then:
      const why = sb.exec(['sh', '-c', 'grep Cap /proc/self/status; findmnt -o TARGET,OPTIONS /proc/sys /proc/sys/net; ls -l /proc/sys/net/ipv4/ip_forward; cat /proc/sys/net/ipv4/ip_forward; sysctl -w net.ipv4.ip_forward=1'], { check: false });
      throw new Error(`host init exited ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}\n--- the test host then:\n${why.stdout}${why.stderr}`);
    }
    expect(r.stdout).toMatch(/Host init done: \d+ step\(s\)\./);
    const dpkg = sb.exec(['dpkg-query', '-W', '-f=${Package} ${Status}\\n', 'systemd-container', 'mmdebstrap', 'nftables']).stdout;
    expect(dpkg.trim().split('\n').sort()).toEqual(['mmdebstrap install ok installed', 'nftables install ok installed', 'systemd-container install ok installed']);
    expect(sb.exec(['systemctl', 'is-enabled', 'systemd-networkd.service']).stdout.trim()).toBe('enabled');
    expect(sb.exec(['systemctl', 'is-enabled', 'machines.target']).stdout.trim()).toBe('enabled');
    expect(sb.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'examplevlan']).stdout).toContain('inet 10.77.0.1/24');
    expect(sb.exec(['cat', '/proc/sys/net/ipv4/ip_forward']).stdout.trim()).toBe('1');
    expect(sb.exec(['cat', '/etc/sysctl.d/50-nspawnctl-forward.conf']).stdout).toContain('net.ipv4.ip_forward = 1');
  });

  timed('3. a second run changes nothing, and --check exits 0', () => {
    const before = sb.exec(['sh', '-c', 'find /etc /var/lib/nspawnctl -xdev -newer /etc/hostname -printf "%p %T@\\n" | sort']).stdout;
    const r = sb.nspawnctl(['host', 'init', '/root/machines.yaml', '--json']);
    const report = JSON.parse(r.stdout);
    expect(report.steps).toEqual([]);
    expect(report.ready).toBe(true);
    expect(sb.nspawnctl(['host', 'init', '/root/machines.yaml', '--check']).code).toBe(0);
    expect(sb.exec(['sh', '-c', 'find /etc /var/lib/nspawnctl -xdev -newer /etc/hostname -printf "%p %T@\\n" | sort']).stdout).toBe(before);
  });

  timed('4. apply succeeds afterwards, and a NATed machine reaches the apt mirror through the host', () => {
    sb.nspawnctl(['apply', '/root/machines.yaml']);
    const running = sb.exec(['machinectl', 'list', '--no-legend']).stdout;
    expect(running).toContain('web');
    expect(running).toContain('db');
    // apt inside the machine, in the machine's own network namespace: its only way out is the
    // bridge, the host's forwarding and networkd's masquerade.
    const r = sb.exec(['nsenter', '-t', leader('web'), '-a', 'apt-get', '-o', 'Acquire::Retries=2', 'update'], { check: false, timeoutMs: 180_000 });
    expect({ code: r.code, err: r.code === 0 ? '' : r.stdout + r.stderr }).toEqual({ code: 0, err: '' });
    expect(r.stdout).toMatch(/(Get|Hit):\d+ http:\/\/10\.199\.254\.\d+:\d+\/deb\.debian\.org\/debian bookworm/);
  });

  timed('5. --undo removes what host init wrote (after the machines are destroyed); a second --undo exits 0', () => {
    const refused = sb.nspawnctl(['host', 'init', '--undo'], { check: false });
    expect(refused.code).toBe(4);
    sb.nspawnctl(['destroy', 'web', '--yes']);
    sb.nspawnctl(['destroy', 'db', '--yes']);
    sb.nspawnctl(['host', 'init', '--undo']);
    expect(sb.exec(['test', '-e', '/etc/sysctl.d/50-nspawnctl-forward.conf'], { check: false }).code).not.toBe(0);
    expect(sb.exec(['test', '-e', '/var/lib/nspawnctl/host.json'], { check: false }).code).not.toBe(0);
    expect(sb.exec(['systemctl', 'is-enabled', 'machines.target'], { check: false }).stdout.trim()).not.toBe('enabled');
    expect(sb.exec(['ls', '/etc/systemd/network']).stdout.trim()).toBe('');
    expect(sb.exec(['ip', 'link', 'show', 'dev', 'examplevlan'], { check: false }).code).not.toBe(0);
    expect(sb.nspawnctl(['host', 'init', '/root/machines.yaml', '--check'], { check: false }).code).toBe(1);
    // A second --undo has nothing left to undo: it says so and succeeds.
    const again = sb.nspawnctl(['host', 'init', '--undo']);
    expect(again.stdout).toBe('Nothing to undo: host init has not changed this host (no record in /var/lib/nspawnctl/host.json).\n');
  });

  timed('6. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
