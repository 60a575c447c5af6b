// nspawnctl upgrade for real, in a disposable systemd host (test/e2e/sandbox.sh): a tiny package
// built with dpkg-deb in versions 1 and 2 is served from a flat apt repository on the test host's
// bridge address; machines install version 1 at creation, then upgrade, --dry-run, the record and
// list, /run/reboot-required (made by version 2's postinst) and --restart are checked from outside
// and inside the machines; and autoUpgrade's timer is added to and removed from a running machine.
import { e2eSuite, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-upgrade');
const inHost = sb.exec.bind(sb);
const nspawnctl = sb.nspawnctl.bind(sb);
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);

const GATEWAY = '10.88.0.1';
const REPO_PORT = 8080;

/** Builds nsctl-tiny VERSION into OUT: a conffile, a version file, and from version 2 a postinst asking for a reboot. */
const BUILD_TINY = `#!/bin/sh
set -eu
v=$1; out=$2
d=$(mktemp -d)
mkdir -p "$d/DEBIAN" "$d/etc" "$d/usr/share/nsctl-tiny"
printf 'Package: nsctl-tiny\\nVersion: %s\\nArchitecture: all\\nMaintainer: nspawnctl e2e <e2e@example.invalid>\\nDescription: tiny package for the upgrade e2e test\\n' "$v" > "$d/DEBIAN/control"
printf '/etc/nsctl-tiny.conf\\n' > "$d/DEBIAN/conffiles"
printf 'setting=%s\\n' "$v" > "$d/etc/nsctl-tiny.conf"
printf '%s\\n' "$v" > "$d/usr/share/nsctl-tiny/version"
if [ "$v" != 1 ]; then
  printf '#!/bin/sh\\nset -e\\nif [ "$1" = configure ]; then touch /run/reboot-required; echo nsctl-tiny >> /run/reboot-required.pkgs; fi\\n' > "$d/DEBIAN/postinst"
  chmod 0755 "$d/DEBIAN/postinst"
fi
chmod -R u=rwX,go=rX "$d"
dpkg-deb --root-owner-group --build "$d" "$out" >/dev/null
rm -rf "$d"
`;

/**
 * Publishes the given versions in the flat repository /srv/tiny-repo. Its Packages index is
 * written here from each package's control fields plus Filename, Size and SHA256 (the sandbox
 * has neither dpkg-scanpackages nor apt-ftparchive); machines trust it with [trusted=yes].
 */
const PUBLISH_TINY = `#!/bin/sh
set -eu
cd /srv/tiny-repo
rm -f ./*.deb
for v in "$@"; do cp "/srv/tiny-build/nsctl-tiny_\${v}_all.deb" .; done
for f in ./*.deb; do
  dpkg-deb -f "$f"
  printf 'Filename: %s\\nSize: %s\\nSHA256: %s\\n\\n' "$f" "$(stat -c %s "$f")" "$(sha256sum < "$f" | cut -d' ' -f1)"
done > Packages.new
mv Packages.new Packages
`;

/**
 * Serves /srv/tiny-repo over HTTP (the sandbox has no python3; it has this machine's node): plain
 * file names only, so nothing outside the directory can be asked for.
 */
const SERVE_TINY = `const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const root = '/srv/tiny-repo';
http
  .createServer((req, res) => {
    const name = new URL(req.url, 'http://repo').pathname.replace(/^\\/+/, '');
    if (!/^[A-Za-z0-9][A-Za-z0-9._+~-]*$/.test(name)) {
      res.writeHead(404).end();
      return;
    }
    fs.readFile(path.join(root, name), (err, data) => {
      if (err) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Length': data.length });
      res.end(req.method === 'HEAD' ? undefined : data);
    });
  })
  .listen(${REPO_PORT}, '0.0.0.0');
`;

function manifest(proxy: string, options: { autoUpgrade?: boolean } = {}): string {
  const machine = (name: string, address: string, extra: string[] = []) => [
    `  ${name}:`,
    `    network: { bridge: upnet, address: ${address} }`,
    '    packages: [nsctl-tiny]',
    '    files:',
    `      - { path: /etc/apt/sources.list.d/nsctl-tiny.list, content: "deb [trusted=yes] http://${GATEWAY}:${REPO_PORT}/ ./\\n" }`,
    ...extra,
  ];
  return [
    'defaults:',
    // The sandbox's apt cache as a mirror prefix: machines reach it through the bridge's NAT.
    `  mirror: http://${proxy}/deb.debian.org/debian`,
    'networks:',
    '  upnet: { subnet: 10.88.0.0/24, nat: true }',
    'machines:',
    ...machine('up1', '10.88.0.11'),
    ...machine('up2', '10.88.0.12', options.autoUpgrade ? ['    autoUpgrade: { schedule: daily }'] : []),
    '',
  ].join('\n');
}

function leader(name: string): number {
  return Number(inHost(['machinectl', 'show', name, '--property=Leader', '--value']).stdout.trim());
}

function state(name: string): string {
  return inHost(['machinectl', 'show', name, '--property=State', '--value'], { check: false }).stdout.trim() || 'absent';
}

/** Runs a command inside a running machine through its own systemd ("$" doubled: systemd would expand it). */
function inMachine(name: string, argv: string[], check = true) {
  return inHost(['systemd-run', `--machine=${name}`, '--wait', '--pipe', '--quiet', '--collect', '--', ...argv.map((a) => a.split('$').join('$$'))], { check });
}

function tinyVersion(name: string): string {
  return inMachine(name, ['dpkg-query', '--show', '--showformat=${Version}', 'nsctl-tiny']).stdout.trim();
}

function record(name: string): { upgraded?: string } {
  return JSON.parse(inHost(['cat', `/var/lib/nspawnctl/machines/${name}.json`]).stdout);
}

type Machine = { name: string; status: string; changes: unknown[]; restartNeeded: string[]; restarted?: { downtimeSeconds: number; state: string } };
const byName = (doc: { machines: Machine[] }, name: string) => doc.machines.find((m) => m.name === name)!;

e2eSuite('nspawnctl upgrade on a real systemd host', () => {
  let proxy = '';

  beforeAll(() => {
    proxy = sb.up();
    sb.write('/root/build-tiny.sh', BUILD_TINY);
    sb.write('/root/publish-tiny.sh', PUBLISH_TINY);
    inHost(['mkdir', '-p', '/srv/tiny-build', '/srv/tiny-repo']);
    for (const v of ['1', '2']) inHost(['sh', '/root/build-tiny.sh', v, `/srv/tiny-build/nsctl-tiny_${v}_all.deb`]);
    inHost(['sh', '/root/publish-tiny.sh', '1']);
    // The sandbox's network namespace is the test's own: listening on all its addresses reaches
    // only the bridge's machines (and the staging tree, which installs on the host's network).
    sb.write('/root/serve-tiny.js', SERVE_TINY);
    inHost(['systemd-run', '--unit=nsctl-tiny-repo', '--quiet', 'node', '/root/serve-tiny.js']);
    // Ready when it answers with the index.
    const probe = `require('node:http').get('http://127.0.0.1:${REPO_PORT}/Packages', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))`;
    inHost(['sh', '-c', 'for i in $(seq 1 100); do node -e "$1" && exit 0; sleep 0.2; done; exit 1', 'probe', probe]);
    sb.write('/root/machines.yaml', manifest(proxy));
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. apply: both machines run with nsctl-tiny 1 from the local repository; never upgraded', () => {
    nspawnctl(['apply', '/root/machines.yaml']);
    expect([state('up1'), state('up2')]).toEqual(['running', 'running']);
    expect([tinyVersion('up1'), tinyVersion('up2')]).toEqual(['1', '1']);
    const list = JSON.parse(nspawnctl(['list', '--json']).stdout);
    expect(list.map((m: { name: string; upgraded: string | null }) => [m.name, m.upgraded])).toEqual([
      ['up1', null],
      ['up2', null],
    ]);
    expect(nspawnctl(['list']).stdout).toMatch(/^MACHINE +STATE +ADDRESS +MANIFEST +UPGRADED\nup1 +running +10\.88\.0\.11 +in sync +never\nup2 +running +10\.88\.0\.12 +in sync +never\n$/);
  });

  timed('2. version 2 published: upgrade --dry-run lists nsctl-tiny 1 -> 2 per machine and changes nothing', () => {
    inHost(['sh', '/root/publish-tiny.sh', '1', '2']);
    const r = nspawnctl(['upgrade', '--dry-run', '--json']);
    const doc = JSON.parse(r.stdout);
    expect(doc.dryRun).toBe(true);
    for (const name of ['up1', 'up2']) {
      expect(byName(doc, name)).toEqual({ name, status: 'would upgrade', changes: [{ package: 'nsctl-tiny', from: '1', to: '2' }], restartNeeded: [] });
    }
    const text = nspawnctl(['upgrade', '--dry-run']).stdout;
    expect(text).toContain('up1: would change 1 package\n    nsctl-tiny 1 -> 2\n');
    expect([tinyVersion('up1'), tinyVersion('up2')]).toEqual(['1', '1']);
    expect([record('up1').upgraded, record('up2').upgraded]).toEqual([undefined, undefined]);
  });

  timed('3. upgrade: up1 gets version 2 (its changed conffile kept), a stopped up2 is skipped and named; the record and list say when', () => {
    inMachine('up1', ['sh', '-c', 'echo setting=local > /etc/nsctl-tiny.conf']);
    inHost(['machinectl', 'poweroff', 'up2']);
    inHost(['sh', '-c', 'for i in $(seq 1 100); do machinectl show up2 >/dev/null 2>&1 || exit 0; sleep 0.2; done; exit 1']);
    const leaderBefore = leader('up1');
    const r = nspawnctl(['upgrade']);
    expect(r.stdout).toContain(
      [
        'up1: changed 1 package',
        '    nsctl-tiny 1 -> 2',
        '    needs a restart: /run/reboot-required exists (nsctl-tiny)',
        'up2: skipped: it is not running (start it, then upgrade it)',
        '',
        'Restart needed: up1. nspawnctl upgrade --restart up1 restarts it and waits until it is ready (or restart it when convenient).',
        '',
      ].join('\n'),
    );
    expect(tinyVersion('up1')).toBe('2');
    // full-upgrade kept the machine's own version of the conffile and left the package's beside it.
    expect(inMachine('up1', ['cat', '/etc/nsctl-tiny.conf']).stdout).toBe('setting=local\n');
    expect(inMachine('up1', ['cat', '/etc/nsctl-tiny.conf.dpkg-dist']).stdout).toBe('setting=2\n');
    // Nothing restarted it.
    expect(leader('up1')).toBe(leaderBefore);
    const upgraded = record('up1').upgraded!;
    expect(Date.now() - Date.parse(upgraded)).toBeLessThan(10 * 60_000);
    expect(record('up2').upgraded).toBeUndefined();
    expect(inHost(['stat', '-c', '%a', '/var/lib/nspawnctl/machines/up1.json', '/var/lib/nspawnctl/machines']).stdout).toBe('600\n700\n');
    const list = JSON.parse(nspawnctl(['list', '--json']).stdout);
    expect(list.map((m: { name: string; upgraded: string | null }) => [m.name, m.upgraded])).toEqual([
      ['up1', upgraded],
      ['up2', null],
    ]);
    expect(nspawnctl(['list']).stdout).toMatch(/\nup1 +running +10\.88\.0\.11 +in sync +(just now|\d+ min ago)\nup2 +stopped +10\.88\.0\.12 +drift +never\n$/);
  });

  timed('4. a second upgrade changes nothing; the pending restart is still named', () => {
    const doc = JSON.parse(nspawnctl(['upgrade', 'up1', '--json']).stdout);
    expect(doc.machines).toEqual([{ name: 'up1', status: 'up to date', changes: [], restartNeeded: ['/run/reboot-required exists (nsctl-tiny)'], upgraded: expect.any(String) }]);
    expect(tinyVersion('up1')).toBe('2');
  });

  timed('5. upgrade --restart restarts up1 and waits until it is ready: new leader, running, the reboot flag gone', () => {
    const before = leader('up1');
    // Measured from outside as well: ping every 0.1 s from the test host during the command; the
    // longest gap between two answers is how long the machine was unreachable.
    inHost(['systemd-run', '--unit=nsctl-upgrade-ping', '--quiet', '--property=StandardOutput=file:/root/ping.log', '--', 'stdbuf', '-oL', 'ping', '-D', '-n', '-i', '0.1', '10.88.0.11']);
    inHost(['sh', '-c', 'for i in $(seq 1 100); do grep -q "bytes from" /root/ping.log && exit 0; sleep 0.1; done; exit 1']);
    const started = Date.now();
    const r = nspawnctl(['upgrade', '--restart', 'up1', '--json']);
    const wall = (Date.now() - started) / 1000;
    // Until it answers again (the command returns once host0 is configured, which is what ping needs).
    inHost(['sh', '-c', 'n=$(grep -c "bytes from" /root/ping.log); for i in $(seq 1 100); do [ "$(grep -c "bytes from" /root/ping.log)" -gt "$n" ] && exit 0; sleep 0.1; done; exit 1']);
    inHost(['systemctl', 'stop', 'nsctl-upgrade-ping']);
    const answers = [...inHost(['cat', '/root/ping.log']).stdout.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Number(m[1]));
    const unreachable = Math.max(...answers.slice(1).map((t, i) => t - answers[i]));
    const up1 = byName(JSON.parse(r.stdout), 'up1');
    expect(up1.status).toBe('up to date');
    expect(up1.restarted).toEqual({ downtimeSeconds: expect.any(Number), state: 'running', failedUnits: [] });
    const after = leader('up1');
    expect(after).not.toBe(before);
    expect(after).toBeGreaterThan(0);
    expect(state('up1')).toBe('running');
    // It came back with its network: the bridge reaches it at once.
    expect(inHost(['ping', '-c', '1', '-W', '2', '10.88.0.11'], { check: false }).code).toBe(0);
    expect(inMachine('up1', ['test', '-e', '/run/reboot-required'], false).code).toBe(1);
    expect(tinyVersion('up1')).toBe('2');
    // Down for real: more than a few lost answers, and no longer than the command said (plus the
    // interval, and the moments between its stop and the network going away).
    expect(unreachable).toBeGreaterThan(0.3);
    expect(unreachable).toBeLessThan(up1.restarted!.downtimeSeconds + 1);
    process.stderr.write(
      `[e2e] upgrade --restart up1: down ${up1.restarted!.downtimeSeconds.toFixed(1)} s (printed), no ping answer for ${unreachable.toFixed(1)} s, whole command ${wall.toFixed(1)} s\n`,
    );
    const again = JSON.parse(nspawnctl(['upgrade', 'up1', '--json']).stdout);
    expect(byName(again, 'up1')).toMatchObject({ status: 'up to date', restartNeeded: [] });
    expect(byName(again, 'up1').restarted).toBeUndefined();
  });

  timed('6. autoUpgrade added to running up2: its timer runs inside without a restart, and its service upgrades; removed again: files gone, timer stopped', () => {
    // up2 was stopped in test 3: apply starts it (and waits until it is ready).
    nspawnctl(['apply', '/root/machines.yaml']);
    expect(tinyVersion('up2')).toBe('1');
    const before = leader('up2');
    sb.write('/root/machines.yaml', manifest(proxy, { autoUpgrade: true }));
    const plan = JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout);
    expect(plan.steps.map((s: { kind: string; path?: string }) => `${s.kind}${s.path ? ` ${s.path.replace('/var/lib/machines/up2', '')}` : ''}`)).toEqual([
      'write-file /etc/systemd/system/nspawnctl-upgrade.service',
      'write-file /etc/systemd/system/nspawnctl-upgrade.timer',
      'write-file /etc/systemd/system/timers.target.wants/nspawnctl-upgrade.timer',
      'write-record /var/lib/nspawnctl/machines/up2.json',
      'reload-machine-units',
    ]);
    nspawnctl(['apply', '/root/machines.yaml']);
    expect(leader('up2')).toBe(before);
    const timer = (prop: string) => inHost(['systemctl', '--machine=up2', 'show', 'nspawnctl-upgrade.timer', `--property=${prop}`, '--value'], { check: false }).stdout.trim();
    expect([timer('ActiveState'), timer('UnitFileState')]).toEqual(['active', 'enabled']);
    // What the timer starts, started now: a oneshot, so systemctl returns when it is done.
    inHost(['systemctl', '--machine=up2', 'start', 'nspawnctl-upgrade.service'], { timeoutMs: 600_000 });
    expect(tinyVersion('up2')).toBe('2');
    expect(JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout).changes).toBe(false);

    sb.write('/root/machines.yaml', manifest(proxy));
    nspawnctl(['apply', '/root/machines.yaml']);
    expect(leader('up2')).toBe(before);
    expect(inHost(['ls', '/var/lib/machines/up2/etc/systemd/system/']).stdout).not.toContain('nspawnctl-upgrade');
    expect(inHost(['test', '-e', '/var/lib/machines/up2/etc/systemd/system/timers.target.wants/nspawnctl-upgrade.timer'], { check: false }).code).not.toBe(0);
    // Stopped before its file went away: not "failed", so the machine is not left degraded.
    expect(timer('ActiveState')).toBe('inactive');
    expect(inHost(['systemctl', '--machine=up2', 'is-system-running'], { check: false }).stdout.trim()).toBe('running');
    expect(JSON.parse(nspawnctl(['plan', '/root/machines.yaml', '--json']).stdout).changes).toBe(false);
  });

  timed('7. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
