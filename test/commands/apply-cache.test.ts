// `nspawnctl apply` with the base-image cache (the default) and parallel machines: one bootstrap
// per base into /var/cache/nspawnctl/images, a copy per machine, its own packages installed on
// top inside the staging directory; --jobs runs machines side by side and a failing one still
// fails alone.
import Apply from '../../src/commands/apply';
import { imageKey, readImage } from '../../src/apply/image-cache';
import { formatArgv } from '../../src/errors';
import { Host } from '../../src/host/host';
import { parseManifest } from '../../src/manifest/load';
import { reservedPathProblem } from '../../src/manifest/schema';
import { GENERATED_ROOTFS_PATHS } from '../../src/render/rootfs-paths';
import { makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { ARCH, CACHE_OPTIONS, CP, dpkgStatus, IMAGES, simulateImageTools } from '../helpers/image-cache';
import { changesBesidesLock } from '../helpers/lock';
import { runCommand, TEST_CWD } from '../helpers/run-command';
import { readyCalls, simulateSystemd } from '../helpers/simulated-systemd';

const applyWith = (host: Host) =>
  class extends Apply {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

/** Two machines with the same base (defaults, no network) and their own packages on top. */
const TWO = `defaults:
  packages: [iputils-ping]
machines:
  db:
    packages: [postgresql]
    autostart: true
  web:
    packages: [nginx, curl]
    autostart: true
`;
/** TWO plus a third machine on the same base, applied later. */
const THREE = `${TWO}  app:
    packages: [redis-server]
    provision: [[mkdir, -p, /srv/app]]
    autostart: true
`;

const BASE = ['dbus', 'iputils-ping', 'systemd', 'systemd-sysv'];
const KEY = imageKey(parseManifest('machines.yaml', TWO).machines.db, 'mmdebstrap', ARCH);
const ENTRY = `${IMAGES}/${KEY}`;
const STAGING = (n: string) => `/var/lib/machines/.nspawnctl-${n}.staging`;
const LIST = ['machinectl', 'list', '--no-legend', '--no-pager', '--full'];
const DPKG_ARCH = ['dpkg', '--print-architecture'];
// Built without dpkg's syncs, then synced once (SYNC_CACHE) before it is renamed into place.
const MMDEBSTRAP_CACHE = ['mmdebstrap', '--variant=minbase', `--include=${BASE.join(',')}`, '--dpkgopt=force-unsafe-io', 'bookworm', `${IMAGES}/.${KEY}.building/rootfs`, 'http://deb.debian.org/debian'];
const SYNC_CACHE = ['sync', '--file-system', `${IMAGES}/.${KEY}.building`];
/** The one syncfs of a machine's staging directory, before its rename. */
const SYNC = (n: string) => ['sync', '--file-system', STAGING(n)];
const NSPAWN = (n: string, ...command: string[]) => [
  'systemd-nspawn',
  '--quiet',
  '--register=no',
  '--settings=no',
  '--console=pipe',
  '--resolv-conf=bind-host',
  '--timezone=off',
  `--machine=${n}`,
  `--directory=${STAGING(n)}`,
  '--setenv=DEBIAN_FRONTEND=noninteractive',
  '--',
  ...command,
];
/** apt-get install in a staging directory: dpkg need not sync there either. */
const APT_INSTALL = ['apt-get', 'install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', '-o', 'Dpkg::Options::=--force-unsafe-io'];
/** The commands that copy machine `n` from the cached base and put `extras` on top (its sync comes after its provision). */
const FROM_CACHE = (n: string, extras: string[]) => [
  CP(`${ENTRY}/rootfs`, STAGING(n)),
  NSPAWN(n, 'apt-get', 'update'),
  NSPAWN(n, ...APT_INSTALL, ...extras),
  NSPAWN(n, 'apt-get', 'clean'),
];
/** FROM_CACHE for a machine without provision commands, and its sync. */
const CREATE = (n: string, extras: string[]) => [...FROM_CACHE(n, extras), SYNC(n)];
/** Enabled, started, and waited for: registered as running, then its systemd done starting up (no network here). */
const START = (n: string) => [
  ['machinectl', 'enable', n],
  ['machinectl', 'start', n],
  ['machinectl', 'show', n, '--property=State', '--value'],
  ...readyCalls(n),
];
const HINT = 'hint: Fix the cause and run apply again: it continues from where this run stopped.\n';
const report = (stderr: string) => stderr.slice(stderr.indexOf('nspawnctl: '));
const sorted = (argvs: string[][]) => argvs.map((a) => JSON.stringify(a)).sort();

interface InRootfsRun {
  argv: string[];
  /** Whether usr/sbin/policy-rc.d was in the directory while the command ran. */
  policyRcD: boolean;
  /** /etc/hostname in the directory at the time (the generated files come first). */
  hostname: string | undefined;
}

/**
 * A fresh booted host with the image tools and systemd simulated; `failing` responses come first.
 * Every systemd-nspawn call is recorded with what its directory held at the time.
 */
function cacheHost(manifest: string, failing: (host: FakeHost) => void = () => undefined): { host: FakeHost; inRootfs: InRootfsRun[] } {
  const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } }));
  failing(host);
  const inRootfs: InRootfsRun[] = [];
  host.runner.on((argv) => {
    if (argv[0] !== 'systemd-nspawn') return false;
    const dir = argv.find((a) => a.startsWith('--directory='))!.slice('--directory='.length);
    const hostname = host.fs.nodes.get(`${dir}/etc/hostname`);
    inRootfs.push({ argv, policyRcD: host.fs.nodes.has(`${dir}/usr/sbin/policy-rc.d`), hostname: hostname?.type === 'file' ? hostname.content : undefined });
    return false;
  });
  simulateImageTools(host);
  simulateSystemd(host);
  return { host, inRootfs };
}

describe('nspawnctl apply with the base-image cache', () => {
  test('fresh host, two machines on one base: ONE bootstrap (into the cache), two copies, each machine\'s packages installed in its own staging directory', async () => {
    const { host, inRootfs } = cacheHost(TWO);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--jobs', '1', '--start-timeout', '5']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout.endsWith('Applied 8 of 8 step(s).\n')).toBe(true);
    expect(host.runner.argvs()).toEqual([
      LIST,
      DPKG_ARCH,
      MMDEBSTRAP_CACHE,
      SYNC_CACHE,
      ...CREATE('db', ['postgresql']),
      ...START('db'),
      ...CREATE('web', ['curl', 'nginx']),
      ...START('web'),
    ]);
    host.assertNoUnmatchedCalls();
    // The long-running ones die with nspawnctl.
    expect(host.runner.calls.filter((c) => c.options?.dieWithParent === true).map((c) => c.file)).toEqual(['mmdebstrap', 'cp', ...Array(3).fill('systemd-nspawn'), 'cp', ...Array(3).fill('systemd-nspawn')]);

    // apt ran with the generated files already written and services kept from starting.
    expect(inRootfs.map((x) => [x.argv[7], x.argv.slice(11).join(' '), x.policyRcD, x.hostname])).toEqual([
      ['--machine=db', 'apt-get update', true, 'db\n'],
      ['--machine=db', `${APT_INSTALL.join(' ')} postgresql`, true, 'db\n'],
      ['--machine=db', 'apt-get clean', true, 'db\n'],
      ['--machine=web', 'apt-get update', true, 'web\n'],
      ['--machine=web', `${APT_INSTALL.join(' ')} curl nginx`, true, 'web\n'],
      ['--machine=web', 'apt-get clean', true, 'web\n'],
    ]);

    // The machines are copies of the base (its dpkg database), renamed into place; nothing is left behind.
    for (const n of ['db', 'web']) {
      expect(host.fs.textAt(`/var/lib/machines/${n}/var/lib/dpkg/status`)).toBe(dpkgStatus(BASE));
      expect(host.fs.textAt(`/var/lib/machines/${n}/etc/hostname`)).toBe(`${n}\n`);
      expect(host.fs.nodes.get(`/var/lib/nspawnctl/machines/${n}.json`)?.type).toBe('file');
      // Each copy gets its own identity at first boot: an empty machine-id, read-only.
      expect(host.fs.nodes.get(`/var/lib/machines/${n}/etc/machine-id`)).toEqual({ type: 'file', content: '', mode: 0o444, uid: 0, gid: 0 });
    }
    expect(host.fs.paths().filter((p) => p.includes('.staging') || p.endsWith('policy-rc.d') || p.includes('.building'))).toEqual([]);
    // The base stays in the cache, complete, and untouched by the machines' files.
    expect((await readImage(host, CACHE_OPTIONS, KEY))?.packages).toEqual(BASE);
    expect(await host.fs.listDir(IMAGES)).toEqual([KEY]);
    expect(host.fs.paths().filter((p) => p.startsWith(`${ENTRY}/rootfs/etc`) && host.fs.nodes.get(p)?.type !== 'dir')).toEqual([]);
    const changes = changesBesidesLock(host);
    // Written into each staging copy, never into the cached base.
    expect(changes.filter((c) => c.endsWith('/machine-id'))).toEqual([`write ${STAGING('db')}/etc/machine-id`, `write ${STAGING('web')}/etc/machine-id`]);
    // Each tree is synced once, right before the rename that publishes it.
    expect(changes.filter((c) => c.startsWith('rename') || c.startsWith('syncfs'))).toEqual([
      `syncfs ${IMAGES}/.${KEY}.building`,
      `rename ${IMAGES}/.${KEY}.building -> ${ENTRY}`,
      `syncfs ${STAGING('db')}`,
      `rename ${STAGING('db')} -> /var/lib/machines/db`,
      `syncfs ${STAGING('web')}`,
      `rename ${STAGING('web')} -> /var/lib/machines/web`,
    ]);
  });

  test('a second apply adding a machine with the same base: no bootstrap at all, one copy, its packages, its provision after them', async () => {
    const { host, inRootfs } = cacheHost(TWO);
    expect((await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5'])).exitCode).toBe(0);
    host.inputs.set('machines.yaml', THREE);
    const callsBefore = host.runner.calls.length;
    const nspawnBefore = inRootfs.length;
    const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain('= machine db: unchanged\n= machine web: unchanged\n\n4 step(s):\n  1. create machine app: ');
    expect(host.runner.argvs().slice(callsBefore)).toEqual([
      LIST,
      DPKG_ARCH,
      ...FROM_CACHE('app', ['redis-server']),
      NSPAWN('app', 'mkdir', '-p', '/srv/app'),
      SYNC('app'),
      ...START('app'),
    ]);
    expect(host.runner.argvs().filter((a) => a[0] === 'mmdebstrap')).toEqual([MMDEBSTRAP_CACHE]);
    expect(inRootfs.slice(nspawnBefore).map((x) => x.policyRcD)).toEqual([true, true, true, true]);
    expect(host.fs.textAt('/var/lib/machines/app/var/lib/dpkg/status')).toBe(dpkgStatus(BASE));
    host.assertNoUnmatchedCalls();
  });

  test('a machine whose packages are all in the base is only copied: no apt-get', async () => {
    const { host } = cacheHost('machines:\n  solo: {}\n');
    const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5']);
    expect(r.exitCode).toBe(0);
    const key = imageKey(parseManifest('machines.yaml', 'machines:\n  solo: {}\n').machines.solo, 'mmdebstrap', ARCH);
    expect(host.runner.argvs()).toEqual([
      LIST,
      DPKG_ARCH,
      ['mmdebstrap', '--variant=minbase', '--include=dbus,systemd,systemd-sysv', '--dpkgopt=force-unsafe-io', 'bookworm', `${IMAGES}/.${key}.building/rootfs`, 'http://deb.debian.org/debian'],
      ['sync', '--file-system', `${IMAGES}/.${key}.building`],
      CP(`${IMAGES}/${key}/rootfs`, STAGING('solo')),
      SYNC('solo'),
      ['machinectl', 'start', 'solo'],
      ['machinectl', 'show', 'solo', '--property=State', '--value'],
      ...readyCalls('solo'),
    ]);
  });

  test('--cache-dir puts the base elsewhere', async () => {
    const { host } = cacheHost(TWO);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--jobs', '1', '--cache-dir', '/srv/cache', '--start-timeout', '5']);
    expect(r.exitCode).toBe(0);
    expect(host.runner.argvs().filter((a) => a[0] === 'mmdebstrap' || a[0] === 'cp')).toEqual([
      [...MMDEBSTRAP_CACHE.slice(0, 5), `/srv/cache/images/.${KEY}.building/rootfs`, MMDEBSTRAP_CACHE[6]],
      CP(`/srv/cache/images/${KEY}/rootfs`, STAGING('db')),
      CP(`/srv/cache/images/${KEY}/rootfs`, STAGING('web')),
    ]);
    expect(host.fs.nodes.has(IMAGES)).toBe(false);
  });

  test('--jobs 2 (the default): both machines are created and started, with the same set of commands, one bootstrap and one architecture query', async () => {
    const { host } = cacheHost(TWO);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout.endsWith('Applied 8 of 8 step(s).\n')).toBe(true);
    expect(sorted(host.runner.argvs())).toEqual(
      sorted([LIST, DPKG_ARCH, MMDEBSTRAP_CACHE, SYNC_CACHE, ...CREATE('db', ['postgresql']), ...START('db'), ...CREATE('web', ['curl', 'nginx']), ...START('web')]),
    );
    host.assertNoUnmatchedCalls();
    // Each machine's own steps stay in order.
    for (const n of ['db', 'web']) {
      const own = host.runner.argvs().filter((a) => a.includes(n) || a.includes(`--machine=${n}`) || a.includes(STAGING(n)));
      expect(own).toEqual([...CREATE(n, n === 'db' ? ['postgresql'] : ['curl', 'nginx']), ...START(n)]);
    }
    expect(['db', 'web'].map((n) => host.fs.nodes.get(`/var/lib/machines/${n}`)?.type)).toEqual(['dir', 'dir']);
  });

  /**
   * Holds db's `apt-get update` until web's copy starts, and reports that it did: with --jobs 2,
   * web is created while db is still installing. Nothing times out here: without the overlap the
   * run would wait for ever, and the test fail on jest's timeout.
   */
  function holdDbUntilWebStarts(host: FakeHost): { overlapped?: boolean } {
    const seen: { overlapped?: boolean } = {};
    let webStarted!: () => void;
    const web = new Promise<boolean>((resolve) => (webStarted = () => resolve(true)));
    const run = host.runner.run.bind(host.runner);
    host.runner.run = async (file, args, options) => {
      if (file === 'cp' && args[args.length - 1] === STAGING('web')) webStarted();
      if (file === 'systemd-nspawn' && args.includes('--machine=db') && args[args.length - 1] === 'update') seen.overlapped = await web;
      return run(file, args, options);
    };
    return seen;
  }

  /** The position of each machine's first and last command in the call log. */
  function spans(host: FakeHost): Record<string, [number, number]> {
    const out: Record<string, [number, number]> = {};
    host.runner.argvs().forEach((argv, i) => {
      const m = argv.map((a) => /(?:--machine=|\.nspawnctl-|machines\/)(db|web)\b/.exec(a)?.[1]).find((x) => x !== undefined) ?? (['db', 'web'].includes(argv[argv.length - 1]) ? argv[argv.length - 1] : undefined);
      if (!m) return;
      out[m] = out[m] ? [out[m][0], i] : [i, i];
    });
    return out;
  }

  test('--jobs 2 really overlaps: web is being created while db is still installing; --jobs 1 does not', async () => {
    const two = cacheHost(TWO).host;
    const seenTwo = holdDbUntilWebStarts(two);
    expect((await runCommand(applyWith(two), ['machines.yaml', '--jobs', '2', '--start-timeout', '5'])).exitCode).toBe(0);
    expect(seenTwo.overlapped).toBe(true);

    // One at a time: every command of one machine comes before every command of the other.
    const one = cacheHost(TWO).host;
    expect((await runCommand(applyWith(one), ['machines.yaml', '--jobs', '1', '--start-timeout', '5'])).exitCode).toBe(0);
    const s = spans(one);
    expect(Object.keys(s).sort()).toEqual(['db', 'web']);
    expect(s.db[1] < s.web[0] || s.web[1] < s.db[0]).toBe(true);
  });

  test('--jobs 2, db\'s packages fail to install: web is still created and started; db leaves nothing, the base stays cached; exit 1', async () => {
    const installDb = NSPAWN('db', ...APT_INSTALL, 'postgresql');
    const { host } = cacheHost(TWO, (h) => h.runner.on(installDb, { exitCode: 100, stderr: 'E: Unable to locate package postgresql\n' }));
    const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5']);
    expect(r.exitCode).toBe(1);
    expect(report(r.stderr)).toBe(`nspawnctl: apply failed (applied: web):\n  - machine db: command ${formatArgv(installDb)} exited with code 100:\n    E: Unable to locate package postgresql\n${HINT}`);
    expect(r.stdout.endsWith('Applied 4 of 8 step(s).\n')).toBe(true);
    expect(sorted(host.runner.argvs())).toEqual(
      sorted([LIST, DPKG_ARCH, MMDEBSTRAP_CACHE, SYNC_CACHE, ...FROM_CACHE('db', ['postgresql']).slice(0, 3), ...CREATE('web', ['curl', 'nginx']), ...START('web')]),
    );
    host.assertNoUnmatchedCalls();
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/') && !p.startsWith('/var/lib/machines/web'))).toEqual([]);
    expect(['/var/lib/nspawnctl/machines/db.json', '/etc/systemd/nspawn/db.nspawn'].map((p) => host.fs.nodes.has(p))).toEqual([false, false]);
    expect(['/var/lib/nspawnctl/machines/web.json', '/etc/systemd/nspawn/web.nspawn', '/var/lib/machines/web/var/lib/dpkg/status'].map((p) => host.fs.nodes.get(p)?.type)).toEqual(['file', 'file', 'file']);
    expect((await readImage(host, CACHE_OPTIONS, KEY))?.key).toBe(KEY);
  });

  test('--jobs 2, the shared base fails to bootstrap: bootstrapped once, both machines fail with its error, nothing is left in the cache', async () => {
    const { host } = cacheHost(TWO, (h) =>
      h.runner.on(MMDEBSTRAP_CACHE, ({ args }) => {
        h.fs.addFile(`${args[args.length - 2]}/var/lib/dpkg/status`, 'partial\n');
        return { exitCode: 1, stderr: 'E: cannot resolve deb.debian.org\n' };
      }),
    );
    const r = await runCommand(applyWith(host), ['machines.yaml', '--json', '--start-timeout', '5']);
    expect(r.exitCode).toBe(1);
    const failure = `command ${formatArgv(MMDEBSTRAP_CACHE)} exited with code 1:\n    E: cannot resolve deb.debian.org`;
    // The two machines run side by side: either may be reported first.
    const [dbFirst, webFirst] = [['db', 'web'], ['web', 'db']].map((order) => `nspawnctl: apply failed:\n${order.map((n) => `  - machine ${n}: ${failure}\n`).join('')}${HINT}`);
    expect([dbFirst, webFirst]).toContain(r.stderr);
    const json = JSON.parse(r.stdout);
    expect(json.applied).toEqual([]);
    expect(json.skipped).toEqual([]);
    expect(json.failures.map((f: { group: string; step: { kind: string }; message: string }) => [f.group, f.step.kind, f.message]).sort()).toEqual([
      ['db', 'create-machine', `machine db: ${failure}`],
      ['web', 'create-machine', `machine web: ${failure}`],
    ]);
    expect(host.runner.argvs()).toEqual([LIST, DPKG_ARCH, MMDEBSTRAP_CACHE]);
    host.assertNoUnmatchedCalls();
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines/') || p.startsWith(`${IMAGES}/`))).toEqual([]);
  });

  test('--no-cache: each machine is bootstrapped with all its packages into its staging directory; no dpkg, no cp, no apt-get', async () => {
    const { host } = cacheHost(TWO);
    const r = await runCommand(applyWith(host), ['machines.yaml', '--no-cache', '--jobs', '1', '--start-timeout', '5']);
    expect(r.exitCode).toBe(0);
    const mm = (n: string, include: string) => ['mmdebstrap', '--variant=minbase', `--include=${include}`, '--dpkgopt=force-unsafe-io', 'bookworm', STAGING(n), 'http://deb.debian.org/debian'];
    expect(host.runner.argvs()).toEqual([
      LIST,
      mm('db', 'dbus,iputils-ping,postgresql,systemd,systemd-sysv'),
      SYNC('db'),
      ...START('db'),
      mm('web', 'curl,dbus,iputils-ping,nginx,systemd,systemd-sysv'),
      SYNC('web'),
      ...START('web'),
    ]);
    // mmdebstrap's dpkg options (force-unsafe-io) stay out of the machines.
    expect(host.fs.paths().filter((p) => p.includes('/etc/dpkg/dpkg.cfg.d/'))).toEqual([]);
    expect(host.fs.nodes.has('/var/cache/nspawnctl')).toBe(false);
  });

  // files: may claim no path nspawnctl writes inside a machine (test/render/rootfs-paths.test.ts
  // checks the rendered ones): a machine with every feature on, copied from the cache with
  // packages on top and a provision command, gets exactly the listed paths plus its own files.
  test('every path apply writes inside a machine is a listed generated path (so files: may not claim it) or one of its files', async () => {
    const manifest = `networks:
  lan: { subnet: 10.0.0.0/24 }
machines:
  web:
    hostname: web.internal
    packages: [nginx]
    aptProxy: http://apt-cache.internal:3142
    network: { bridge: lan, address: 10.0.0.2 }
    dns: [10.0.0.1]
    environment: { TZ: UTC }
    authorizedKeys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGU me@example.org]
    files: [{ path: /etc/motd, content: "hi\\n" }]
    provision: [[mkdir, -p, /srv/www]]
    autoUpgrade: { schedule: daily }
    health: { command: [/bin/true] }
`;
    const host = makeBootedHost(new FakeHost({ inputs: { 'machines.yaml': manifest } }));
    simulateImageTools(host);
    // apply waits for the check once web runs: a fresh count, then one run that passes.
    host.runner.on(['systemctl', '--machine=web', 'reset-failed', 'nspawnctl-health.service'], {});
    host.runner.on(['systemctl', '--machine=web', 'start', 'nspawnctl-health.service'], {});
    simulateSystemd(host, { bridges: ['lan'] });
    const r = await runCommand(applyWith(host), ['machines.yaml', '--start-timeout', '5']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    host.assertNoUnmatchedCalls();
    // "write P", "create P" and "symlink P -> T" in the staging directory or the machine, as paths inside it.
    const inside = /^(?:write|create|symlink) \/var\/lib\/machines\/(?:\.nspawnctl-web\.staging|web)(\/\S+)/;
    const written = [...new Set(changesBesidesLock(host).flatMap((c) => inside.exec(c)?.[1] ?? []))].sort();
    expect(written.filter((p) => p !== '/etc/motd')).toEqual(GENERATED_ROOTFS_PATHS.map((g) => g.path).sort());
    expect(written.filter((p) => reservedPathProblem(p) === undefined)).toEqual(['/etc/motd']);
  });
});
