// `nspawnctl cache list` and `nspawnctl cache prune` through oclif with a fake Host: the table and
// the JSON, what is listed (complete entries of nspawnctl only), what prune removes and what it
// leaves alone because nspawnctl did not make it, and that prune takes the host lock like every
// other command that changes the host.
import CacheList from '../../src/commands/cache/list';
import CachePrune from '../../src/commands/cache/prune';
import { Host } from '../../src/host/host';
import { LOCK_PATH } from '../../src/host/lock';
import { parseManifest } from '../../src/manifest/load';
import { FakeHost } from '../helpers/fake-host';
import { DAY_MS, IMAGES, metaFor, seedForeign, seedImage, seedMarkedDir } from '../helpers/image-cache';
import { changesBesidesLock, LOCK_RELEASE, LOCK_TAKE, seedLockHolder } from '../helpers/lock';
import { runCommand, TEST_CWD } from '../helpers/run-command';

const withHost = (Cmd: typeof CacheList | typeof CachePrune, host: Host) =>
  class extends (Cmd as typeof CacheList) {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

const machines = parseManifest(
  'machines.yaml',
  'defaults:\n  packages: [iputils-ping]\nnetworks:\n  br0: { subnet: 10.0.0.0/24 }\nmachines:\n  db: {}\n  app:\n    network: { bridge: br0, address: 10.0.0.2 }\n',
).machines;
const DB_KEY = '12c27972b1aa0ec9';
const APP_KEY = '20b48581af7ee377';
const HOLDER = { pid: 777, command: 'apply /srv/conf/other.yaml', since: '2025-01-01T00:00:00.000Z' };

/**
 * Two complete entries (db's base with mmdebstrap; app's with debootstrap, made by the version
 * before markers), a broken one, a build leftover, and what seedForeign makes: among it a symlink
 * named like a key to a complete entry elsewhere.
 */
function listedHost(dir?: string): FakeHost {
  const host = new FakeHost();
  const images = `${dir ?? '/var/cache/nspawnctl'}/images`;
  seedImage(host, metaFor(machines.db, '2025-03-09T12:00:00.000Z'), { dir });
  seedImage(host, metaFor(machines.app, '2025-03-01T08:30:00.000Z', 'debootstrap'), { dir, marker: false });
  seedImage(host, { ...metaFor(machines.db, '2025-03-09T12:00:00.000Z', 'debootstrap', 'arm64'), key: 'ffff000000000000' }, { dir, markers: ['var/lib/dpkg/status'] });
  seedMarkedDir(host, `${images}/.${DB_KEY}.building`, DB_KEY);
  host.fs.addDir(`${images}/.${DB_KEY}.building/rootfs`);
  seedForeign(host, metaFor(machines.db, '2025-03-10T00:00:00.000Z', 'debootstrap'), images);
  return host;
}

describe('nspawnctl cache list', () => {
  test('the keys are the ones imageKey gives these bases', () => {
    expect([metaFor(machines.db, 'x').key, metaFor(machines.app, 'x', 'debootstrap').key]).toEqual([DB_KEY, APP_KEY]);
  });

  test('prints one row per complete entry of nspawnctl (not broken ones, not build leftovers, nothing it did not make), sorted by key; changes nothing', async () => {
    const host = listedHost();
    const r = await runCommand(withHost(CacheList, host), []);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      [
        'KEY               BASE                           BOOTSTRAPPER  CREATED                   PACKAGES',
        `${DB_KEY}  debian bookworm minbase amd64  mmdebstrap    2025-03-09T12:00:00.000Z  dbus,iputils-ping,systemd,systemd-sysv`,
        `${APP_KEY}  debian bookworm minbase amd64  debootstrap   2025-03-01T08:30:00.000Z  dbus,iproute2,iputils-ping,systemd,systemd-sysv`,
        '',
      ].join('\n'),
    );
    expect(host.fs.changes).toEqual([]);
    expect(host.runner.calls).toEqual([]);
  });

  test('--json prints the meta of each complete entry', async () => {
    const host = listedHost();
    const r = await runCommand(withHost(CacheList, host), ['--json']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    const expected = [metaFor(machines.db, '2025-03-09T12:00:00.000Z'), metaFor(machines.app, '2025-03-01T08:30:00.000Z', 'debootstrap')];
    expect(r.stdout).toBe(`${JSON.stringify(expected, null, 2)}\n`);
    expect(JSON.parse(r.stdout)).toEqual([
      {
        format: 1,
        key: DB_KEY,
        distribution: 'debian',
        suite: 'bookworm',
        variant: 'minbase',
        mirror: 'http://deb.debian.org/debian',
        architecture: 'amd64',
        bootstrapper: 'mmdebstrap',
        packages: ['dbus', 'iputils-ping', 'systemd', 'systemd-sysv'],
        created: '2025-03-09T12:00:00.000Z',
      },
      {
        format: 1,
        key: APP_KEY,
        distribution: 'debian',
        suite: 'bookworm',
        variant: 'minbase',
        mirror: 'http://deb.debian.org/debian',
        architecture: 'amd64',
        bootstrapper: 'debootstrap',
        packages: ['dbus', 'iproute2', 'iputils-ping', 'systemd', 'systemd-sysv'],
        created: '2025-03-01T08:30:00.000Z',
      },
    ]);
  });

  test('--cache-dir lists another cache', async () => {
    const host = listedHost('/srv/cache');
    const r = await runCommand(withHost(CacheList, host), ['--cache-dir', '/srv/cache', '--json']);
    expect(JSON.parse(r.stdout).map((m: { key: string }) => m.key)).toEqual([DB_KEY, APP_KEY]);
    const other = await runCommand(withHost(CacheList, host), []);
    expect(other.stdout).toBe('No base images in /var/cache/nspawnctl.\n');
  });

  test('an empty or missing cache: says so; --json prints []', async () => {
    const host = new FakeHost();
    expect((await runCommand(withHost(CacheList, host), [])).stdout).toBe('No base images in /var/cache/nspawnctl.\n');
    expect((await runCommand(withHost(CacheList, host), ['--cache-dir', '/srv/c'])).stdout).toBe('No base images in /srv/c.\n');
    const json = await runCommand(withHost(CacheList, host), ['--json']);
    expect([json.exitCode, json.stdout, json.stderr]).toEqual([0, '[]\n', '']);
  });
});

describe('nspawnctl cache prune', () => {
  /** fresh (1 day old), expired (8 days), broken, and a build leftover; ages relative to the real clock. */
  function pruneHost(): FakeHost {
    const host = new FakeHost();
    const now = Date.now();
    seedImage(host, metaFor(machines.db, new Date(now - DAY_MS).toISOString()));
    seedImage(host, metaFor(machines.app, new Date(now - 8 * DAY_MS).toISOString(), 'debootstrap'));
    seedImage(host, { ...metaFor(machines.db, new Date(now).toISOString(), 'debootstrap', 'arm64'), key: 'ffff000000000000' }, { markers: ['usr/lib/systemd/systemd'] });
    seedMarkedDir(host, `${IMAGES}/.${DB_KEY}.building`, DB_KEY);
    host.fs.addDir(`${IMAGES}/.${DB_KEY}.building/rootfs`);
    return host;
  }

  /** What seedForeign makes in IMAGES, sorted; its symlinks point at an expired, marked entry outside. */
  const FOREIGN_KEY = metaFor(machines.db, 'x', 'debootstrap').key;
  const FOREIGN = [
    `${IMAGES}/.${FOREIGN_KEY}.building`,
    `${IMAGES}/.abcdef0123456789.building`,
    `${IMAGES}/${FOREIGN_KEY}`,
    `${IMAGES}/README`,
    `${IMAGES}/abcdef0123456789`,
    `${IMAGES}/my-rootfs`,
  ];
  const withForeign = (host: FakeHost, images = IMAGES) => {
    seedForeign(host, metaFor(machines.db, new Date(Date.now() - 30 * DAY_MS).toISOString(), 'debootstrap'), images);
    return host;
  };

  test('removes expired and broken entries and leftovers, keeps fresh ones, one line each; under the host lock', async () => {
    const host = pruneHost();
    const r = await runCommand(withHost(CachePrune, host), []);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`removed ${IMAGES}/.${DB_KEY}.building\nremoved ${IMAGES}/${APP_KEY}\nremoved ${IMAGES}/ffff000000000000\n`);
    expect(changesBesidesLock(host)).toEqual([`remove-tree ${IMAGES}/.${DB_KEY}.building`, `remove-tree ${IMAGES}/${APP_KEY}`, `remove-tree ${IMAGES}/ffff000000000000`]);
    expect(await host.fs.listDir(IMAGES)).toEqual([DB_KEY]);
  });

  test('nothing expired: "Nothing to prune.", nothing changes but the lock', async () => {
    const host = new FakeHost();
    seedImage(host, metaFor(machines.db, new Date(Date.now() - DAY_MS).toISOString()));
    const r = await runCommand(withHost(CachePrune, host), []);
    expect([r.exitCode, r.stdout, r.stderr]).toEqual([0, 'Nothing to prune.\n', '']);
    expect(changesBesidesLock(host)).toEqual([]);
  });

  test('--all --json: removes every entry and prints them as JSON', async () => {
    const host = pruneHost();
    const r = await runCommand(withHost(CachePrune, host), ['--all', '--json']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    const removed = [`${IMAGES}/.${DB_KEY}.building`, `${IMAGES}/${DB_KEY}`, `${IMAGES}/${APP_KEY}`, `${IMAGES}/ffff000000000000`];
    expect(r.stdout).toBe(`${JSON.stringify({ removed, foreign: [] }, null, 2)}\n`);
    expect(await host.fs.listDir(IMAGES)).toEqual([]);
    expect(changesBesidesLock(host)).toEqual(removed.map((p) => `remove-tree ${p}`));
  });

  test('--cache-max-age 0: an entry a day old is expired too', async () => {
    const host = pruneHost();
    const r = await runCommand(withHost(CachePrune, host), ['--cache-max-age', '0', '--json']);
    expect(JSON.parse(r.stdout)).toEqual({ removed: [`${IMAGES}/.${DB_KEY}.building`, `${IMAGES}/${DB_KEY}`, `${IMAGES}/${APP_KEY}`, `${IMAGES}/ffff000000000000`], foreign: [] });
  });

  test('--cache-max-age 10: the 8-day-old entry is kept', async () => {
    const host = pruneHost();
    const r = await runCommand(withHost(CachePrune, host), ['--cache-max-age', '10']);
    expect(r.stdout).toBe(`removed ${IMAGES}/.${DB_KEY}.building\nremoved ${IMAGES}/ffff000000000000\n`);
    expect(await host.fs.listDir(IMAGES)).toEqual([DB_KEY, APP_KEY]);
  });

  test('entries nspawnctl did not make are left alone, and the output says how many', async () => {
    const host = withForeign(pruneHost());
    const r = await runCommand(withHost(CachePrune, host), []);
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toBe(
      [
        `removed ${IMAGES}/.${DB_KEY}.building`,
        `removed ${IMAGES}/${APP_KEY}`,
        `removed ${IMAGES}/ffff000000000000`,
        `Left alone 6 entries in ${IMAGES} that nspawnctl did not make (--json lists them).`,
        '',
      ].join('\n'),
    );
    expect(changesBesidesLock(host)).toEqual([`remove-tree ${IMAGES}/.${DB_KEY}.building`, `remove-tree ${IMAGES}/${APP_KEY}`, `remove-tree ${IMAGES}/ffff000000000000`]);
    expect(await host.fs.listDir(IMAGES)).toEqual([...FOREIGN.map((f) => f.slice(IMAGES.length + 1)), DB_KEY].sort());
  });

  test('--all --json: every entry of nspawnctl is removed; the others are listed as foreign and left alone', async () => {
    const host = withForeign(pruneHost());
    const outside = host.fs.paths().filter((p) => p.startsWith('/srv/'));
    const r = await runCommand(withHost(CachePrune, host), ['--all', '--json']);
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    const removed = [`${IMAGES}/.${DB_KEY}.building`, `${IMAGES}/${DB_KEY}`, `${IMAGES}/${APP_KEY}`, `${IMAGES}/ffff000000000000`];
    expect(r.stdout).toBe(`${JSON.stringify({ removed, foreign: FOREIGN }, null, 2)}\n`);
    expect(changesBesidesLock(host)).toEqual(removed.map((p) => `remove-tree ${p}`));
    expect(await host.fs.listDir(IMAGES)).toEqual(FOREIGN.map((f) => f.slice(IMAGES.length + 1)));
    expect(host.fs.paths().filter((p) => p.startsWith('/srv/'))).toEqual(outside);
  });

  test('only foreign entries, one of them: "Nothing to prune." and the one left alone, even with --all', async () => {
    const host = new FakeHost();
    host.fs.addFile(`${IMAGES}/${DB_KEY}/rootfs/etc/os-release`, 'ID=debian\n');
    for (const args of [[], ['--all']]) {
      const r = await runCommand(withHost(CachePrune, host), args);
      expect([r.exitCode, r.stdout, r.stderr]).toEqual([0, `Nothing to prune.\nLeft alone 1 entry in ${IMAGES} that nspawnctl did not make (--json lists them).\n`, '']);
    }
    const json = await runCommand(withHost(CachePrune, host), ['--all', '--json']);
    expect(json.stdout).toBe(`${JSON.stringify({ removed: [], foreign: [`${IMAGES}/${DB_KEY}`] }, null, 2)}\n`);
    // Three runs, each taking and releasing the lock, and nothing else.
    expect(host.fs.changes).toEqual(Array(3).fill([LOCK_TAKE, LOCK_RELEASE]).flat());
  });

  test('an interrupted build and an image of the version before markers are pruned; a directory named like a build without marker is not', async () => {
    const host = new FakeHost();
    const interrupted = seedMarkedDir(host, `/srv/cache/images/.${DB_KEY}.building`, DB_KEY);
    const oldVersion = seedImage(host, metaFor(machines.app, new Date(Date.now() - 8 * DAY_MS).toISOString(), 'debootstrap'), { dir: '/srv/cache', marker: false });
    host.fs.addDir(`/srv/cache/images/.${APP_KEY}.building/rootfs`);
    const r = await runCommand(withHost(CachePrune, host), ['--cache-dir', '/srv/cache']);
    expect(r.stdout).toBe(`removed ${interrupted}\nremoved ${oldVersion}\nLeft alone 1 entry in /srv/cache/images that nspawnctl did not make (--json lists them).\n`);
    expect(await host.fs.listDir('/srv/cache/images')).toEqual([`.${APP_KEY}.building`]);
  });

  test('--no-wait while another nspawnctl holds the lock: exit 5, nothing removed', async () => {
    const host = pruneHost();
    const theirs = seedLockHolder(host, HOLDER, true);
    const r = await runCommand(withHost(CachePrune, host), ['--all', '--no-wait']);
    expect(r.exitCode).toBe(5);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'nspawnctl: another nspawnctl is changing this host: PID 777 (apply /srv/conf/other.yaml, since 2025-01-01T00:00:00.000Z)\nhint: Wait for it, or run again with --wait (the default).\n',
    );
    expect(host.fs.changes).toEqual([]);
    expect(await host.fs.listDir(IMAGES)).toEqual([`.${DB_KEY}.building`, DB_KEY, APP_KEY, 'ffff000000000000']);
    expect([host.isLocked(LOCK_PATH), host.lockNote(LOCK_PATH)]).toEqual([true, theirs]);
  });
});
