// A fleet, for real: two disposable test hosts side by side, each with sshd, reached over the
// system's OpenSSH from this machine, which is the controller (nspawnctl runs here, not root of
// anything but this process). nspawnctl is installed on both by `host init --host` from the .deb
// built here; then one manifest puts machines on both. See test/e2e/README.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runningMachines } from './distro';
import { e2eSuite, REPO, timedTest } from './sandbox';
import { FleetHost, SSH_CLIENT_TOOLS, SshFleet } from './ssh-fleet';

const fleet = new SshFleet();
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);
const BIN = join(REPO, 'bin', 'run.js');
/** What must never appear: the hostile values all try to create it, on any host. */
const PWNED = '/tmp/nspawnctl-fleet-pwned';
const HOSTILE = [`$(touch ${PWNED})`, `\`touch ${PWNED}\``, `x; touch ${PWNED}`, `'; touch ${PWNED}; '`, `"; touch ${PWNED}; "`, `a\ntouch ${PWNED}`, `| touch ${PWNED}`];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let work = '';
let hosts: FleetHost[] = [];

/** The controller: nspawnctl on this machine, ssh told where the test's key and known_hosts are. */
function controller(args: string[], timeoutMs = 1_500_000): Run {
  const ssh = ['IdentityFile', 'UserKnownHostsFile', 'IdentitiesOnly', 'StrictHostKeyChecking', 'GlobalKnownHostsFile'].map((k) => {
    const v = { IdentityFile: fleet.client.identityFile, UserKnownHostsFile: fleet.client.knownHostsFile, IdentitiesOnly: 'yes', StrictHostKeyChecking: 'yes', GlobalKnownHostsFile: '/dev/null' }[k];
    return `--ssh-option=${k}=${v}`;
  });
  // list, status and destroy take the manifest as --manifest; the fleet flags go after the command's own.
  const r = spawnSync('node', [BIN, ...args, ...ssh], { cwd: work, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function ok(args: string[]): Run {
  const r = controller(args);
  if (r.code !== 0) throw new Error(`nspawnctl ${args.join(' ')} exited ${r.code}\nstdout:\n${r.stdout.slice(-4000)}\nstderr:\n${r.stderr.slice(-4000)}`);
  return r;
}

/** The manifest: one machine on fleet-1 (web), two on fleet-2 (db, cache), the same network on both. */
function manifest(o: { webMotd?: string; dbMotd?: string; hostile?: boolean; moveWeb?: boolean } = {}): string {
  const [a, b] = hosts;
  const machine = (name: string, h: FleetHost, address: string, motd: string) => [
    `  ${name}:`,
    `    host: ${h.alias}`,
    `    mirror: http://${h.proxy}/deb.debian.org/debian`,
    `    network: { bridge: fleetnet, address: ${address} }`,
    '    files:',
    '      - path: /etc/motd',
    `        content: ${JSON.stringify(motd)}`,
    ...(o.hostile
      ? [
          '      - path: /etc/hostile',
          `        content: ${JSON.stringify(HOSTILE.join('\n'))}`,
          '    environment:',
          // Environment values are one line by the manifest's rules; every other hostile value goes in.
          ...HOSTILE.filter((v) => !v.includes('\n')).map((v, i) => `      HOSTILE_${i}: ${JSON.stringify(v)}`),
        ]
      : []),
  ];
  return [
    'hosts:',
    `  ${a.alias}: { ssh: root@${a.addr} }`,
    `  ${b.alias}: { ssh: root@${b.addr}, labels: [db] }`,
    'defaults: { distribution: debian, suite: bookworm }',
    'networks:',
    '  fleetnet: { subnet: 10.86.0.0/24, gateway: 10.86.0.1 }',
    'machines:',
    // Moved, web takes another address: 10.86.0.11 is db's on fleet-2.
    ...(o.moveWeb ? machine('web', b, '10.86.0.13', o.webMotd ?? 'web\n') : machine('web', a, '10.86.0.11', o.webMotd ?? 'web\n')),
    // The same address on the other host: networks are per host.
    ...machine('db', b, '10.86.0.11', o.dbMotd ?? 'db\n'),
    ...machine('cache', b, '10.86.0.12', 'cache\n'),
    '',
  ].join('\n');
}

function writeManifest(text: string): void {
  writeFileSync(join(work, 'fleet.yaml'), text);
}

const nothingPwned = () => {
  for (const h of hosts) expect({ host: h.alias, pwned: h.sandbox.exec(['test', '-e', PWNED], { check: false }).code === 0 }).toEqual({ host: h.alias, pwned: false });
  expect({ controller: existsSync(PWNED) }).toEqual({ controller: false });
};

e2eSuite(
  'a fleet of two hosts over OpenSSH',
  () => {
    let out = '';
    let deb = '';

    beforeAll(() => {
      work = mkdtempSync('/var/tmp/nspawnctl-fleet-e2e-');
      out = join(work, 'pkg');
      const pkg = spawnSync('bash', ['scripts/package.sh', '--out', out], { cwd: REPO, encoding: 'utf8', timeout: 900_000, maxBuffer: 64 * 1024 * 1024 });
      if (pkg.status !== 0) throw new Error(`package.sh exited ${pkg.status}:\n${pkg.stdout.slice(-3000)}\n${pkg.stderr.slice(-3000)}`);
      deb = join(out, readdirSync(out).find((f) => f.endsWith('_all.deb')) ?? 'missing.deb');
      hosts = fleet.up();
      writeManifest(manifest());
    }, 1_500_000);

    afterAll(() => {
      const clean = fleet.down();
      if (work) rmSync(work, { recursive: true, force: true });
      process.stderr.write(`\n${timings.join('\n')}\n`);
      for (const c of clean) expect(c.code).toBe(0);
    }, 300_000);

    timed('1. host init --host installs nspawnctl from the .deb over ssh and prepares both hosts', () => {
      // Before: not installed there, so plan says so for each host and exits 1.
      const before = controller(['plan', 'fleet.yaml']);
      expect(before.code).toBe(1);
      expect(before.stdout).toMatch(/== host fleet-1 .*: not-installed: nspawnctl is not installed there/);
      const r = ok(['host', 'init', 'fleet.yaml', '--host', 'fleet-1', '--hosts-label', 'db', '--package', deb]);
      expect(r.stdout).toContain('fleet-1: ready (host init done)');
      expect(r.stdout).toContain('fleet-2: ready (host init done)');
      for (const h of hosts) {
        expect(h.sandbox.exec(['sh', '-c', 'command -v nspawnctl']).stdout.trim()).toBe('/usr/bin/nspawnctl');
        expect(h.sandbox.exec(['networkctl', 'list', '--no-legend', 'fleetnet']).stdout).toContain('fleetnet');
      }
      // A second run installs nothing (same version) and changes nothing.
      const again = ok(['host', 'init', 'fleet.yaml', '--package', deb]);
      expect(again.stderr).not.toContain('installing');
    });

    timed('2. one manifest, machines on both hosts: plan per host, apply, each machine answers ping on its own host', () => {
      const plan = ok(['plan', 'fleet.yaml']);
      expect(plan.stdout).toMatch(/== host fleet-1 \(root@[\d.]+\): \d+ step\(s\) \(1 machine\(s\): web\)/);
      expect(plan.stdout).toMatch(/== host fleet-2 \(root@[\d.]+\): \d+ step\(s\) \(2 machine\(s\): cache, db\)/);
      expect(plan.stdout).toMatch(/\nTotal: \d+ step\(s\) on 2 host\(s\)\.\n$/);
      expect(plan.stdout).toContain('  note: without dns:');
      const r = ok(['apply', 'fleet.yaml', '--json']);
      const json = JSON.parse(r.stdout);
      expect(json.ok).toBe(true);
      expect(Object.keys(json.hosts).sort()).toEqual(['fleet-1', 'fleet-2']);
      expect(runningMachines(hosts[0].sandbox)).toEqual(['web']);
      expect(runningMachines(hosts[1].sandbox)).toEqual(['cache', 'db']);
      expect({ web: hosts[0].sandbox.pingUntilAnswered('10.86.0.11') }).toEqual({ web: true });
      expect({ db: hosts[1].sandbox.pingUntilAnswered('10.86.0.11'), cache: hosts[1].sandbox.pingUntilAnswered('10.86.0.12') }).toEqual({ db: true, cache: true });
      const list = ok(['list', '--manifest', 'fleet.yaml']).stdout;
      expect(list.split('\n')[0]).toMatch(/^HOST +MACHINE +STATE/);
      expect(list).toMatch(/\nfleet-1 +web +running/);
      expect(list).toMatch(/\nfleet-2 +db +running/);
    });

    timed('3. a re-apply is a no-op on both hosts', () => {
      const r = ok(['apply', 'fleet.yaml']);
      expect(r.stdout.trim().split('\n').slice(-2)).toEqual(['fleet-1: no changes', 'fleet-2: no changes']);
    });

    timed('3b. timings for docs/performance.md: plan of both hosts against each alone and the ssh connection (printed, not asserted)', () => {
      const seconds = (fn: () => void) => {
        const start = process.hrtime.bigint();
        fn();
        return Number(process.hrtime.bigint() - start) / 1e9;
      };
      const rounds = 3;
      const median = (fn: () => void) => Array.from({ length: rounds }, () => seconds(fn)).sort((x, y) => x - y)[1];
      const both = median(() => ok(['plan', 'fleet.yaml']));
      const one = median(() => ok(['plan', 'fleet.yaml', '--host', 'fleet-1']));
      const two = median(() => ok(['plan', 'fleet.yaml', '--host', 'fleet-2']));
      const connect = median(() => fleet.client.run(hosts[0].alias, ['true']));
      const remote = median(() => fleet.client.run(hosts[1].alias, ['nspawnctl', '--version']));
      process.stderr.write(`[e2e] fleet plan timings (median of ${rounds}): both hosts ${both.toFixed(2)} s; fleet-1 alone ${one.toFixed(2)} s; fleet-2 alone ${two.toFixed(2)} s; ssh connect + true ${connect.toFixed(2)} s; ssh + nspawnctl --version ${remote.toFixed(2)} s\n`);
    });

    timed('4. changing one machine touches only its host', () => {
      writeManifest(manifest({ dbMotd: 'db, changed\n' }));
      const before = hosts[0].sandbox.exec(['stat', '-c', '%Y', '/var/lib/machines/web/etc/motd']).stdout;
      const plan = ok(['plan', 'fleet.yaml', '--json']);
      const p = JSON.parse(plan.stdout);
      expect(p.hosts['fleet-1'].json.steps).toEqual([]);
      expect(p.hosts['fleet-2'].json.steps.length).toBeGreaterThan(0);
      const r = ok(['apply', 'fleet.yaml']);
      expect(r.stdout).toContain('fleet-1: no changes');
      expect(r.stdout).toMatch(/fleet-2: applied (\d+) of \1 step\(s\)/);
      // The progress: one group per host with its machines inside, db's step shown under db.
      expect(r.stdout).toMatch(/^❯ host fleet-2 \(root@[\d.]+\): cache, db$/m);
      expect(r.stdout).toMatch(/^✔ db$/m);
      expect(hosts[1].sandbox.exec(['cat', '/var/lib/machines/db/etc/motd']).stdout).toBe('db, changed\n');
      expect(hosts[0].sandbox.exec(['stat', '-c', '%Y', '/var/lib/machines/web/etc/motd']).stdout).toBe(before);
    });

    timed("5. one host's sshd stopped: apply exits 1 naming that host and ssh's error, and still converges the other", () => {
      writeManifest(manifest({ webMotd: 'web, changed\n', dbMotd: 'db, changed again\n' }));
      hosts[1].sandbox.exec(['systemctl', 'stop', 'ssh.service', 'ssh.socket']);
      try {
        const r = controller(['apply', 'fleet.yaml']);
        expect(r.code).toBe(1);
        expect(r.stdout).toMatch(/fleet-2: unreachable: ssh: .*(Connection refused|timed out|No route)/);
        expect(r.stdout).toMatch(/fleet-1: applied (\d+) of \1 step\(s\)/);
        expect(hosts[0].sandbox.exec(['cat', '/var/lib/machines/web/etc/motd']).stdout).toBe('web, changed\n');
        expect(hosts[1].sandbox.exec(['cat', '/var/lib/machines/db/etc/motd']).stdout).toBe('db, changed\n');
      } finally {
        hosts[1].sandbox.exec(['systemctl', 'start', 'ssh.service']);
      }
    });

    timed('6. --serial 1 --max-fail 1 stops after the first failed host: the second is not applied', () => {
      hosts[0].sandbox.exec(['systemctl', 'stop', 'ssh.service', 'ssh.socket']);
      try {
        const r = controller(['apply', 'fleet.yaml', '--serial', '1', '--max-fail', '1', '--json']);
        expect(r.code).toBe(1);
        const json = JSON.parse(r.stdout);
        expect(json.hosts['fleet-1'].result).toBe('unreachable');
        expect(json.hosts['fleet-2']).toEqual({ result: 'skipped', error: 'not started: 1 host(s) failed (--max-fail 1)' });
        // fleet-2's pending change was not applied.
        expect(hosts[1].sandbox.exec(['cat', '/var/lib/machines/db/etc/motd']).stdout).toBe('db, changed\n');
      } finally {
        hosts[0].sandbox.exec(['systemctl', 'start', 'ssh.service']);
      }
      // Both reachable again: the rest converges.
      const r = ok(['apply', 'fleet.yaml']);
      expect(r.stdout).toMatch(/fleet-2: applied (\d+) of \1 step\(s\)/);
      expect(hosts[1].sandbox.exec(['cat', '/var/lib/machines/db/etc/motd']).stdout).toBe('db, changed again\n');
    });

    timed('7. hostile values in every string that reaches a host run nothing there, and arrive verbatim', () => {
      writeManifest(manifest({ webMotd: 'web, changed\n', dbMotd: 'db, changed again\n', hostile: true }));
      ok(['apply', 'fleet.yaml']);
      nothingPwned();
      expect(hosts[0].sandbox.exec(['cat', '/var/lib/machines/web/etc/hostile']).stdout).toBe(HOSTILE.join('\n'));
      // Hostile flag values are refused before anything is run.
      for (const v of HOSTILE.slice(0, 3)) {
        const r = controller(['plan', 'fleet.yaml', '--host', v]);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain('no such host under hosts:');
      }
      const refusedOption = controller(['plan', 'fleet.yaml', '--ssh-option', 'StrictHostKeyChecking=no']);
      expect(refusedOption.code).toBe(2);
      // A hostile ssh destination is refused by the manifest's rules, located.
      writeManifest(manifest().replace(`ssh: root@${hosts[0].addr}`, `ssh: "-oProxyCommand=touch ${PWNED}"`));
      const bad = controller(['plan', 'fleet.yaml']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/fleet\.yaml:2:\d+: hosts\.fleet-1\.ssh: expected an ssh destination/);
      nothingPwned();
    });

    timed("8. destroy on one host leaves the other host's machines running", () => {
      writeManifest(manifest({ webMotd: 'web, changed\n', dbMotd: 'db, changed again\n', hostile: true }));
      const r = ok(['destroy', 'cache', '--manifest', 'fleet.yaml', '--yes']);
      expect(r.stdout).toContain('Destroyed cache on host fleet-2.');
      expect(runningMachines(hosts[1].sandbox)).toEqual(['db']);
      expect(hosts[1].sandbox.exec(['test', '-e', '/var/lib/machines/cache'], { check: false }).code).toBe(1);
      expect(runningMachines(hosts[0].sandbox)).toEqual(['web']);
      expect({ web: hosts[0].sandbox.pingUntilAnswered('10.86.0.11'), db: hosts[1].sandbox.pingUntilAnswered('10.86.0.11') }).toEqual({ web: true, db: true });
    });

    timed("9. a machine whose host: changed moves: asked first, then backup, copy, restore and start on the new host, and destroyed on the old one, with its data", () => {
      hosts[0].sandbox.exec(['nspawnctl', 'exec', 'web', '--', 'sh', '-c', 'echo carried > /root/carried']);
      const changed = { webMotd: 'web, changed\n', dbMotd: 'db, changed again\n', hostile: true };
      writeManifest(manifest({ ...changed, moveWeb: true }));
      const plan = ok(['plan', 'fleet.yaml']);
      expect(plan.stdout).toContain('== moves (apply asks first, or needs --yes):\n  move web: host fleet-1 -> host fleet-2 (backup on fleet-1');
      expect(plan.stdout).not.toContain('create machine web');
      expect(plan.stdout).toMatch(/Total: \d+ step\(s\) and 1 move\(s\) on 2 host\(s\)\./);
      // Never automatic: off a terminal without --yes, nothing is changed.
      const refused = controller(['apply', 'fleet.yaml']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('refusing to apply: 1 machine(s) move to another host: web (fleet-1 -> fleet-2)');
      expect(runningMachines(hosts[0].sandbox)).toEqual(['web']);
      const r = ok(['apply', 'fleet.yaml', '--yes']);
      expect(r.stdout).toContain('moved web: fleet-1 -> fleet-2');
      // cache, destroyed in 8 but still in the manifest, is created again by the same apply.
      expect(runningMachines(hosts[1].sandbox)).toEqual(['cache', 'db', 'web']);
      expect(runningMachines(hosts[0].sandbox)).toEqual([]);
      expect(hosts[0].sandbox.exec(['test', '-e', '/var/lib/machines/web'], { check: false }).code).toBe(1);
      expect({ web: hosts[1].sandbox.pingUntilAnswered('10.86.0.13'), db: hosts[1].sandbox.pingUntilAnswered('10.86.0.11') }).toEqual({ web: true, db: true });
      expect(hosts[1].sandbox.exec(['nspawnctl', 'exec', 'web', '--', 'cat', '/root/carried']).stdout).toBe('carried\n');
      // No archive left behind on either host; a re-apply changes nothing and moves nothing.
      for (const h of hosts) expect(h.sandbox.exec(['sh', '-c', 'ls -d /var/tmp/nspawnctl-move.* 2>/dev/null || true']).stdout).toBe('');
      const again = ok(['apply', 'fleet.yaml', '--yes']);
      expect(again.stdout.trim().split('\n').slice(-2)).toEqual(['fleet-1: no changes', 'fleet-2: no changes']);
      expect(again.stdout).not.toContain('moved');
    });
  },
  SSH_CLIENT_TOOLS,
);
