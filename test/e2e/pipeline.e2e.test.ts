// The real pipeline, end to end, in a disposable systemd host booted with systemd-nspawn:
// real mmdebstrap/debootstrap, machinectl, networkd, and real outcomes (machines running,
// addresses answering, files really gone). See test/e2e/README.md.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { e2eSuite, REPO, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e');
const inHost = sb.exec.bind(sb);
const nspawnctl = sb.nspawnctl.bind(sb);
const writeInHost = sb.write.bind(sb);
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);

function leader(name: string): number {
  return Number(inHost(['machinectl', 'show', name, '--property=Leader', '--value']).stdout.trim());
}

function running(): string[] {
  return inHost(['machinectl', 'list', '--no-legend', '--no-pager'])
    .stdout.split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

/** The machine at `address` answers ping from the test host (within 30 s). */
function pingFromHost(address: string): void {
  expect({ address, answered: sb.pingUntilAnswered(address) }).toEqual({ address, answered: true });
}

function pingFromMachine(machine: string, address: string): void {
  const pid = String(leader(machine));
  const r = inHost(['nsenter', '-t', pid, '-n', 'ping', '-c', '1', '-W', '2', address], { check: false });
  expect({ from: machine, to: address, code: r.code }).toEqual({ from: machine, to: address, code: 0 });
}

/** mtime and size of every file nspawnctl may touch, as one comparable text. */
function snapshot(): string {
  return inHost(['sh', '-c', 'find /etc/systemd /var/lib/machines /var/lib/nspawnctl -xdev -printf "%p %y %s %T@ %m\\n" 2>/dev/null | sort | sha256sum']).stdout;
}

/**
 * The example manifest, downloading through the sandbox's apt cache (as a URL prefix: measured
 * faster here than the same cache used as an HTTP proxy), so downloads stay local. (The example as
 * shipped, with no change at all, is applied by example.e2e.test.ts.)
 */
function exampleManifest(proxy: string): string {
  const text = readFileSync(join(REPO, 'machines.example.yaml'), 'utf8');
  const mirror = 'mirror: http://deb.debian.org/debian';
  expect(text).toContain(mirror);
  // Packages added later are installed by apt inside the machine, which reaches the cache
  // through the host: the example's network has NAT.
  expect(text).toContain('    nat: true\n');
  return text.replace(mirror, `mirror: http://${proxy}/deb.debian.org/debian`);
}

/** The example's bind of web, after which test 3 adds another. */
const WEB_BIND = '      - { host: /srv/www, machine: /var/www, readOnly: true, create: true }\n';

e2eSuite('nspawnctl on a real systemd host', () => {
  let proxy = '';

  beforeAll(() => {
    proxy = sb.up();
    writeInHost('/root/machines.yaml', exampleManifest(proxy));
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. apply machines.example.yaml: machines run and answer on the bridge', () => {
    const r = nspawnctl(['apply', '/root/machines.yaml']);
    expect(r.stdout).toMatch(/Applied (\d+) of \1 step\(s\)\./);
    expect(running().sort()).toEqual(['db', 'web']);
    pingFromHost('10.77.0.11');
    pingFromHost('10.77.0.12');
    pingFromMachine('web', '10.77.0.12');
    pingFromMachine('db', '10.77.0.11');
    const record = JSON.parse(inHost(['cat', '/var/lib/nspawnctl/machines/web.json']).stdout);
    expect(record.bootstrap.bootstrapper).toBe('mmdebstrap');
    // networkd and the machine units accepted every generated key.
    const journal = inHost(['journalctl', '--no-pager', '-o', 'cat', '-u', 'systemd-networkd', '-u', 'systemd-nspawn@web', '-u', 'systemd-nspawn@db']).stdout;
    // systemd names the file and line of every key it rejects ("web.nspawn:5: Unknown key ...").
    const complaints = journal.split('\n').filter((l) => /\.(nspawn|network|netdev|conf):\d+:/.test(l) || /unknown (key|section)/i.test(l));
    expect(complaints).toEqual([]);
    // Inside: hostname, motd, the read-only bind mount.
    const web = String(leader('web'));
    expect(inHost(['nsenter', '-t', web, '-m', '-u', 'hostname']).stdout.trim()).toBe('web');
    expect(inHost(['nsenter', '-t', web, '-m', 'cat', '/etc/motd']).stdout).toBe('web: managed by nspawnctl\n');
    expect(inHost(['nsenter', '-t', web, '-m', 'sh', '-c', 'touch /var/www/x'], { check: false }).code).not.toBe(0);
  });

  timed('2. re-apply unchanged: empty plan, no restart, no file rewritten', () => {
    const before = { web: leader('web'), db: leader('db'), files: snapshot() };
    const plan = JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout);
    expect(plan.changes).toBe(false);
    expect(plan.steps).toEqual([]);
    const r = nspawnctl(['apply', '/root/machines.yaml']);
    expect(r.stderr).toContain('No changes: the host matches machines.yaml.');
    expect({ web: leader('web'), db: leader('db'), files: snapshot() }).toEqual(before);
  });

  timed('3. change one machine (a bind mount): a missing source is refused (exit 3, nothing created); with create: true, only it restarts', () => {
    const dbBefore = leader('db');
    const webBefore = leader('web');
    expect(exampleManifest(proxy)).toContain(WEB_BIND);
    // A mistyped or missing source is no longer mounted as a new, empty directory.
    const before = snapshot();
    writeInHost('/root/machines.yaml', exampleManifest(proxy).replace(WEB_BIND, `${WEB_BIND}      - /srv/data:/var/data\n`));
    const refused = nspawnctl(['apply', '/root/machines.yaml'], { check: false });
    expect({ code: refused.code, stderr: refused.stderr }).toEqual({
      code: 3,
      stderr: expect.stringContaining('nspawnctl: this host is not ready:\n  - machine web, bind[1] (/srv/data -> /var/data): /srv/data does not exist on this host\n'),
    });
    expect(inHost(['test', '-e', '/srv/data'], { check: false }).code).not.toBe(0);
    expect(snapshot()).toBe(before);
    const changed = exampleManifest(proxy).replace(WEB_BIND, `${WEB_BIND}      - { host: /srv/data, machine: /var/data, create: true }\n`);
    writeInHost('/root/machines.yaml', changed);
    const plan = JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout);
    const kinds = plan.steps.map((s: { kind: string; machine?: string; owner?: { name: string } }) => `${s.kind}:${s.machine ?? s.owner?.name}`);
    expect(kinds).toEqual(['create-bind-source:web', 'write-file:web', 'restart-machine:web', 'hand-bind-source:web']);
    nspawnctl(['apply', '/root/machines.yaml']);
    expect(leader('db')).toBe(dbBefore);
    expect(leader('web')).not.toBe(webBefore);
    inHost(['sh', '-c', 'echo from-host > /srv/data/probe']);
    const web = String(leader('web'));
    expect(inHost(['nsenter', '-t', web, '-m', 'cat', '/var/data/probe']).stdout).toBe('from-host\n');
    // The read-write bind is not idmapped: its source went to web's UID range, so web's root can
    // write there, and what it makes (a setuid file too) belongs to web's range, not host root.
    const base = Number(inHost(['cat', `/proc/${web}/uid_map`]).stdout.trim().split(/\s+/)[1]);
    expect(base).toBeGreaterThan(0);
    expect(inHost(['stat', '-c', '%u:%g', '/srv/data']).stdout.trim()).toBe(`${base}:${base}`);
    inHost(['nsenter', '-t', web, '-a', '--', 'sh', '-c', 'cp /bin/true /var/data/suid && chmod 4755 /var/data/suid']);
    expect(inHost(['stat', '-c', '%u %a', '/srv/data/suid']).stdout.trim()).toBe(`${base} 4755`);
    expect(JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout).changes).toBe(false);
    pingFromHost('10.77.0.11');
  });

  timed('4. add a package and a file: present inside the running machine', () => {
    const webBefore = leader('web');
    const base = inHost(['cat', '/root/machines.yaml']).stdout;
    const changed = base.replace(
      '      - { path: /etc/motd, content: "db: managed by nspawnctl\\n" }',
      '      - { path: /etc/motd, content: "db: managed by nspawnctl\\n" }\n      - { path: /etc/added.conf, content: "added=1\\n", mode: "0600" }\n    packages: [bc]',
    );
    expect(changed).not.toBe(base);
    writeInHost('/root/machines.yaml', changed);
    const dbBefore = leader('db');
    nspawnctl(['apply', '/root/machines.yaml']);
    const db = String(leader('db'));
    expect(Number(db)).toBe(dbBefore);
    expect(leader('web')).toBe(webBefore);
    expect(inHost(['nsenter', '-t', db, '-m', '--', 'sh', '-c', 'echo 1+1 | bc']).stdout).toBe('2\n');
    expect(inHost(['nsenter', '-t', db, '-m', 'cat', '/etc/added.conf']).stdout).toBe('added=1\n');
    expect(inHost(['nsenter', '-t', db, '-m', 'stat', '-c', '%a', '/etc/added.conf']).stdout.trim()).toBe('600');
    expect(JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout).changes).toBe(false);
  });

  timed('4b. a package added to a stopped machine: it is started, and apt runs inside it', () => {
    inHost(['machinectl', 'poweroff', 'web']);
    inHost(['sh', '-c', 'for i in $(seq 1 100); do machinectl show web >/dev/null 2>&1 || exit 0; sleep 0.2; done; exit 1']);
    const base = inHost(['cat', '/root/machines.yaml']).stdout;
    const changed = base.replace('    hostname: web\n', '    hostname: web\n    packages: [bc]\n');
    expect(changed).not.toBe(base);
    writeInHost('/root/machines.yaml', changed);
    const plan = JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout);
    expect(plan.steps.map((s: { kind: string; machine?: string; owner?: { name: string } }) => `${s.kind}:${s.machine ?? s.owner?.name}`)).toEqual(['install-packages:web', 'write-record:web', 'start-machine:web']);
    nspawnctl(['apply', '/root/machines.yaml']);
    expect(running()).toEqual(['db', 'web']);
    const r = inHost(['systemd-run', '--machine=web', '--wait', '--pipe', '--quiet', '--', 'sh', '-c', 'echo 3*4 | bc']);
    expect(r.stdout).toBe('12\n');
    // apply returned only once web's network was configured: it answers at once.
    const ping = inHost(['ping', '-c', '1', '-W', '2', '10.77.0.11'], { check: false });
    expect(ping.code).toBe(0);
    expect(JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout).changes).toBe(false);
  });

  timed('5. destroy: one machine gone without trace, the other untouched; foreign and unknown refused', () => {
    const webBefore = leader('web');
    const r = nspawnctl(['destroy', 'db', '--yes']);
    expect(r.stdout).toContain('Destroyed db');
    expect(running()).toEqual(['web']);
    expect(leader('web')).toBe(webBefore);
    const leftovers = inHost(['sh', '-c', 'ls -d /var/lib/machines/db /var/lib/machines/.nspawnctl-db.staging /etc/systemd/nspawn/db.nspawn /var/lib/nspawnctl/machines/db.json /etc/systemd/system/machines.target.wants/systemd-nspawn@db.service 2>/dev/null; true']).stdout;
    expect(leftovers).toBe('');
    // A machine nspawnctl did not create is refused, and stays.
    inHost(['mkdir', '-p', '/var/lib/machines/foreign/etc']);
    const foreign = nspawnctl(['destroy', 'foreign', '--yes'], { check: false });
    expect(foreign.code).toBe(4);
    expect(foreign.stderr).toContain('machine foreign was not created by nspawnctl');
    expect(inHost(['test', '-d', '/var/lib/machines/foreign/etc'], { check: false }).code).toBe(0);
    inHost(['rm', '-rf', '/var/lib/machines/foreign']);
    const unknown = nspawnctl(['destroy', 'nosuch', '--yes'], { check: false });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no machine named nosuch');
    pingFromHost('10.77.0.11');
  });

  timed('6. bad manifest: exit 2, located message, host byte-for-byte unchanged', () => {
    const before = snapshot();
    writeInHost('/root/bad.yaml', 'networks:\n  examplevlan:\n    subnet: 10.77.0.0/24\nmachines:\n  web:\n    network:\n      bridge: examplevlan\n      address: 10.9.0.5\n');
    const r = nspawnctl(['apply', '/root/bad.yaml'], { check: false });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('/root/bad.yaml:8:16: machines.web.network.address: 10.9.0.5 is outside network examplevlan (10.77.0.0/24)');
    expect(snapshot()).toBe(before);
  });

  timed('7. debootstrap also produces a machine that boots and answers', () => {
    const manifest = [
      'defaults:',
      // The proxy form this time, so both ways of reaching a mirror are exercised.
      `  aptProxy: http://${proxy}`,
      'networks:',
      '  examplevlan:',
      '    subnet: 10.77.0.0/24',
      '    gateway: 10.77.0.1',
      'machines:',
      '  deb:',
      '    bootstrapper: debootstrap',
      '    network: { bridge: examplevlan, address: 10.77.0.13 }',
      '',
    ].join('\n');
    writeInHost('/root/deb.yaml', manifest);
    nspawnctl(['apply', '/root/deb.yaml']);
    expect(running().sort()).toEqual(['deb', 'web']);
    pingFromHost('10.77.0.13');
    expect(JSON.parse(inHost(['cat', '/var/lib/nspawnctl/machines/deb.json']).stdout).bootstrap.bootstrapper).toBe('debootstrap');
    const list = JSON.parse(nspawnctl(['list', '--json']).stdout);
    expect(list.map((m: { name: string; state: string }) => `${m.name}:${m.state}`).sort()).toEqual(['deb:running', 'web:running']);
    nspawnctl(['destroy', 'deb', '--yes']);
    nspawnctl(['destroy', 'web', '--yes']);
    expect(running()).toEqual([]);
    expect(inHost(['ls', '-A', '/var/lib/machines']).stdout.trim()).toBe('');
  });

  timed('8. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
