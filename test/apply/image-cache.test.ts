// The base-image cache: what a key identifies, which entries readImage trusts, how ensure()
// builds (hidden, then renamed in), reuses, rebuilds and shares one bootstrap, and what
// pruneImages removes.
import { copyImage, imageKey, ImageCache, ImageMeta, isOwnEntry, listImages, parseEntryName, pruneImages, readImage } from '../../src/apply/image-cache';
import { CommandFailedError, OwnershipError } from '../../src/errors';
import { parseManifest } from '../../src/manifest/load';
import { Machine } from '../../src/manifest/schema';
import { FakeHost } from '../helpers/fake-host';
import { ARCH, CACHE_OPTIONS, DAY_MS, dpkgStatus, IMAGES, MARKER, markerText, metaFor, seedForeign, seedImage, seedMarkedDir, simulateImageTools } from '../helpers/image-cache';

/** db and web share a base (same defaults, no network); their own packages and web's proxy differ. */
const MANIFEST = `defaults:
  packages: [iputils-ping]
networks:
  br0: { subnet: 10.0.0.0/24 }
machines:
  db:
    packages: [postgresql]
  web:
    packages: [nginx, curl]
    aptProxy: http://proxy.example:3142
    hostname: www
    files: [{ path: /etc/motd, content: hi }]
    provision: [[touch, /srv/x]]
  app:
    network: { bridge: br0, address: 10.0.0.2 }
`;
const machines = parseManifest('machines.yaml', MANIFEST).machines;
const DB: Machine = machines.db;
const WEB: Machine = machines.web;
/** The key of DB's (and WEB's) base with mmdebstrap on amd64: fixed, so it is stable across runs and versions. */
const DB_KEY = '12c27972b1aa0ec9';
const NOW = Date.parse('2025-03-10T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

// With dpkg's syncs off (no eatmydata hook on the fake host): the tree is synced once before it is published.
const MMDEBSTRAP_INTO = (dir: string, include = 'dbus,iputils-ping,systemd,systemd-sysv') => ['mmdebstrap', '--variant=minbase', `--include=${include}`, '--dpkgopt=force-unsafe-io', 'bookworm', dir, 'http://deb.debian.org/debian'];
/** syncfs of the filesystem holding `dir`. */
const SYNC = (dir: string) => ['sync', '--file-system', dir];
/** What building the image of `key` runs: the bootstrap into its hidden directory, then one syncfs. */
const BUILD = (key: string, include?: string) => [MMDEBSTRAP_INTO(`${BUILDING(key)}/rootfs`, include), SYNC(BUILDING(key))];
const BUILDING = (key: string) => `${IMAGES}/.${key}.building`;

function cacheHost(): FakeHost {
  const host = new FakeHost();
  simulateImageTools(host);
  return host;
}

describe('imageKey', () => {
  test('is 16 hex digits, the same on every call, and fixed for a given base', () => {
    const key = imageKey(DB, 'mmdebstrap', ARCH);
    expect(key).toMatch(/^[0-9a-f]{16}$/);
    expect(imageKey(DB, 'mmdebstrap', ARCH)).toBe(key);
    expect(key).toBe(DB_KEY);
  });

  test('the base packages are what the manifest resolves: required + defaults.packages (+ iproute2 when networked)', () => {
    expect([DB.basePackages, WEB.basePackages, machines.app.basePackages]).toEqual([
      ['dbus', 'iputils-ping', 'systemd', 'systemd-sysv'],
      ['dbus', 'iputils-ping', 'systemd', 'systemd-sysv'],
      ['dbus', 'iproute2', 'iputils-ping', 'systemd', 'systemd-sysv'],
    ]);
  });

  test('does not depend on the machine itself: name, hostname, extra packages, aptProxy, files, provision, order of the base packages', () => {
    expect(imageKey(WEB, 'mmdebstrap', ARCH)).toBe(DB_KEY);
    expect(imageKey({ ...DB, packages: [...DB.packages, 'vim'] }, 'mmdebstrap', ARCH)).toBe(DB_KEY);
    expect(imageKey({ ...DB, aptProxy: 'http://other:3142' }, 'mmdebstrap', ARCH)).toBe(DB_KEY);
    expect(imageKey({ ...DB, basePackages: [...DB.basePackages].reverse() }, 'mmdebstrap', ARCH)).toBe(DB_KEY);
  });

  test('changes with each field that changes the base: distribution, suite, variant, mirror, architecture, bootstrapper, base packages', () => {
    const variants: [string, string][] = [
      ['distribution', imageKey({ ...DB, distribution: 'ubuntu' }, 'mmdebstrap', ARCH)],
      ['suite', imageKey({ ...DB, suite: 'trixie' }, 'mmdebstrap', ARCH)],
      ['variant', imageKey({ ...DB, variant: 'buildd' }, 'mmdebstrap', ARCH)],
      ['mirror', imageKey({ ...DB, mirror: 'http://mirror.example/debian' }, 'mmdebstrap', ARCH)],
      ['architecture', imageKey(DB, 'mmdebstrap', 'arm64')],
      ['bootstrapper', imageKey(DB, 'debootstrap', ARCH)],
      ['base packages', imageKey({ ...DB, basePackages: [...DB.basePackages, 'vim'] }, 'mmdebstrap', ARCH)],
      ['network (iproute2 in the base)', imageKey(machines.app, 'mmdebstrap', ARCH)],
    ];
    for (const [field, key] of variants) expect({ field, differs: key !== DB_KEY }).toEqual({ field, differs: true });
    // And all of them differ from each other.
    expect(new Set(variants.map(([, k]) => k)).size).toBe(variants.length);
  });
});

describe('readImage', () => {
  const created = iso(NOW);
  const meta = metaFor(DB, created);

  test('returns the meta of a complete entry', async () => {
    const host = new FakeHost();
    seedImage(host, meta);
    expect(await readImage(host, CACHE_OPTIONS, DB_KEY)).toEqual(meta);
  });

  test.each([
    ['missing', (_h: FakeHost) => undefined],
    ['without meta.json (rootfs only)', (h: FakeHost) => {
      seedImage(h, meta);
      h.fs.nodes.delete(`${IMAGES}/${DB_KEY}/meta.json`);
    }],
    ['meta.json that is not JSON', (h: FakeHost) => void seedImage(h, meta, { metaText: '{"format": 1, "key": "' })],
    ['meta.json of another key (renamed entry)', (h: FakeHost) => void seedImage(h, { ...meta, key: '0000000000000000' }, { name: DB_KEY })],
    ['meta.json of another cache format', (h: FakeHost) => void seedImage(h, { ...meta, format: 0 })],
    ['a rootfs without systemd (incomplete bootstrap)', (h: FakeHost) => void seedImage(h, meta, { markers: ['var/lib/dpkg/status'] })],
    ['a rootfs without a dpkg database (incomplete bootstrap)', (h: FakeHost) => void seedImage(h, meta, { markers: ['usr/lib/systemd/systemd'] })],
    ['no rootfs at all', (h: FakeHost) => void seedImage(h, meta, { markers: [] })],
    ['systemd that is a directory, not a file', (h: FakeHost) => {
      seedImage(h, meta, { markers: ['var/lib/dpkg/status'] });
      h.fs.addDir(`${IMAGES}/${DB_KEY}/rootfs/usr/lib/systemd/systemd`);
    }],
    ['a symlink to a complete entry elsewhere', (h: FakeHost) => void h.fs.addSymlink(`${IMAGES}/${DB_KEY}`, seedImage(h, meta, { dir: '/srv/elsewhere' }))],
    ['meta.json that is a symlink to a good one', (h: FakeHost) => {
      seedImage(h, meta);
      h.fs.addFile('/srv/meta.json', `${JSON.stringify(meta)}\n`);
      h.fs.addSymlink(`${IMAGES}/${DB_KEY}/meta.json`, '/srv/meta.json');
    }],
  ])('rejects an entry: %s', async (_what, seed) => {
    const host = new FakeHost();
    seed(host);
    expect(await readImage(host, CACHE_OPTIONS, DB_KEY)).toBeUndefined();
  });
});

describe('parseEntryName', () => {
  test.each([
    [DB_KEY, { key: DB_KEY, kind: 'image' }],
    [`.${DB_KEY}.building`, { key: DB_KEY, kind: 'building' }],
    [`.${DB_KEY}.old`, { key: DB_KEY, kind: 'old' }],
  ])('%s is one of nspawnctl\'s names', (name, expected) => {
    expect(parseEntryName(name)).toEqual(expected);
  });

  test.each([
    ['upper-case hex', DB_KEY.toUpperCase()],
    ['15 hex digits', DB_KEY.slice(1)],
    ['17 hex digits', `${DB_KEY}0`],
    ['not hex', 'ghijklmnopqrstuv'],
    ['a key with a suffix', `${DB_KEY}.bak`],
    ['a hidden key without a role', `.${DB_KEY}`],
    ['another role', `.${DB_KEY}.tmp`],
    ['a build without the dot', `${DB_KEY}.building`],
    ['another name', 'my-rootfs'],
  ])('%s (%s) is not', (_what, name) => {
    expect(parseEntryName(name)).toBeUndefined();
  });
});

describe('isOwnEntry', () => {
  const meta = metaFor(DB, iso(NOW));
  const dir = `${IMAGES}/${DB_KEY}`;

  test.each([
    ['a directory with the marker of its key, nothing else (a build killed at once)', (h: FakeHost) => void seedMarkedDir(h, dir, DB_KEY)],
    ['a complete entry with marker', (h: FakeHost) => void seedImage(h, meta)],
    ['an entry of the version before markers: meta.json of its key and format', (h: FakeHost) => void seedImage(h, meta, { marker: false })],
    ['a marker of another cache format (an entry a later format no longer uses)', (h: FakeHost) => {
      h.fs.addDir(dir);
      h.fs.addFile(`${dir}/${MARKER}`, markerText(DB_KEY, 7));
    }],
    ['a marker whose meta.json is broken (meta.json is only the fallback)', (h: FakeHost) => void seedImage(h, meta, { metaText: 'garbage' })],
  ])('ours: %s', async (_what, seed) => {
    const host = new FakeHost();
    seed(host);
    expect(await isOwnEntry(host, dir, DB_KEY)).toBe(true);
  });

  test.each([
    ['nothing there', (_h: FakeHost) => undefined],
    ['a directory without marker or meta.json', (h: FakeHost) => void h.fs.addDir(`${dir}/rootfs`)],
    ['a file', (h: FakeHost) => void h.fs.addFile(dir, markerText(DB_KEY))],
    ['a symlink to a directory with the right marker', (h: FakeHost) => void h.fs.addSymlink(dir, seedMarkedDir(h, '/srv/x', DB_KEY))],
    ['the marker of another key', (h: FakeHost) => void seedMarkedDir(h, dir, '0000000000000000')],
    ['a marker that is not JSON', (h: FakeHost) => void h.fs.addFile(`${dir}/${MARKER}`, '{"kind": ')],
    ['a marker of another kind', (h: FakeHost) => void h.fs.addFile(`${dir}/${MARKER}`, JSON.stringify({ kind: 'something-else', format: 1, key: DB_KEY }))],
    ['a marker without a format', (h: FakeHost) => void h.fs.addFile(`${dir}/${MARKER}`, JSON.stringify({ kind: 'nspawnctl-base-image', key: DB_KEY }))],
    ['a marker that is a symlink to a right one', (h: FakeHost) => {
      h.fs.addFile('/srv/marker', markerText(DB_KEY));
      h.fs.addSymlink(`${dir}/${MARKER}`, '/srv/marker');
    }],
    ['a marker that is a directory', (h: FakeHost) => void h.fs.addDir(`${dir}/${MARKER}`)],
    ['no marker, meta.json of another key', (h: FakeHost) => void seedImage(h, { ...meta, key: '0000000000000000' }, { name: DB_KEY, marker: false })],
    ['no marker, meta.json of another cache format', (h: FakeHost) => void seedImage(h, { ...meta, format: 0 }, { marker: false })],
    ['no marker, meta.json that is not JSON', (h: FakeHost) => void seedImage(h, meta, { marker: false, metaText: '{' })],
  ])('not ours: %s', async (_what, seed) => {
    const host = new FakeHost();
    seed(host);
    expect(await isOwnEntry(host, dir, DB_KEY)).toBe(false);
  });
});

describe('listImages', () => {
  test('lists the complete entries of nspawnctl, of either version, and nothing it did not make', async () => {
    const host = new FakeHost();
    const db = metaFor(DB, iso(NOW - DAY_MS));
    const app = metaFor(machines.app, iso(NOW - 9 * DAY_MS));
    seedImage(host, db);
    seedImage(host, app, { marker: false });
    seedMarkedDir(host, `${IMAGES}/.0123456789abcdef.building`, '0123456789abcdef');
    // Foreign: among them a symlink named like a key to a complete, marked entry elsewhere.
    seedForeign(host, metaFor(DB, iso(NOW), 'debootstrap'));
    expect(await listImages(host, CACHE_OPTIONS)).toEqual([db, app].sort((a, b) => a.key.localeCompare(b.key)));
    expect(host.fs.changes).toEqual([]);
  });
});

describe('ImageCache.ensure', () => {
  test('an empty cache: bootstraps the base once into the hidden .KEY.building, writes meta.json, renames it in', async () => {
    const host = cacheHost();
    const lines: string[] = [];
    const path = await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH, (l) => lines.push(l));
    expect(path).toBe(`${IMAGES}/${DB_KEY}/rootfs`);
    // The base packages only (not postgresql), into the hidden build directory; long-running, so it dies with us.
    expect(host.runner.calls).toEqual([
      { file: 'mmdebstrap', args: MMDEBSTRAP_INTO(`${BUILDING(DB_KEY)}/rootfs`).slice(1), options: { env: {}, onLine: expect.any(Function), dieWithParent: true } },
      { file: 'sync', args: SYNC(BUILDING(DB_KEY)).slice(1), options: undefined },
    ]);
    expect(host.fs.changes).toEqual([
      'mkdir /var',
      'mkdir /var/cache',
      'mkdir /var/cache/nspawnctl',
      `mkdir ${IMAGES}`,
      `mkdir ${BUILDING(DB_KEY)}`,
      `write ${BUILDING(DB_KEY)}/${MARKER}`,
      // mmdebstrap's dpkg options (force-unsafe-io) stay out of the image; the one sync comes
      // after the last write and before the rename that publishes the image.
      `remove ${BUILDING(DB_KEY)}/rootfs/etc/dpkg/dpkg.cfg.d/99mmdebstrap`,
      `write ${BUILDING(DB_KEY)}/meta.json`,
      `syncfs ${BUILDING(DB_KEY)}`,
      `rename ${BUILDING(DB_KEY)} -> ${IMAGES}/${DB_KEY}`,
    ]);
    expect(host.fs.paths().filter((p) => p.includes('dpkg.cfg.d/'))).toEqual([]);
    expect(host.fs.nodes.get(`${IMAGES}/${DB_KEY}/${MARKER}`)).toEqual({ type: 'file', content: markerText(DB_KEY), mode: 0o644, uid: 0, gid: 0 });
    expect(JSON.parse(markerText(DB_KEY))).toEqual({ kind: 'nspawnctl-base-image', format: 1, key: DB_KEY });
    expect(host.fs.nodes.get(`${IMAGES}/${DB_KEY}/meta.json`)).toEqual({ type: 'file', content: `${JSON.stringify(metaFor(DB, iso(NOW)), null, 2)}\n`, mode: 0o644, uid: 0, gid: 0 });
    expect(host.fs.nodes.get(`${IMAGES}/${DB_KEY}`)).toEqual({ type: 'dir', mode: 0o700, uid: 0, gid: 0 });
    expect(host.fs.paths().filter((p) => p.startsWith(`${IMAGES}/.`))).toEqual([]);
    expect(await readImage(host, CACHE_OPTIONS, DB_KEY)).toEqual(metaFor(DB, iso(NOW)));
    expect(lines).toEqual([`base image ${DB_KEY}: bootstrapping`]);
  });

  test('a fresh entry (1 day old, 7 allowed) is reused: nothing runs, nothing changes', async () => {
    const host = cacheHost();
    seedImage(host, metaFor(DB, iso(NOW - DAY_MS)));
    const lines: string[] = [];
    const path = await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(WEB, 'mmdebstrap', ARCH, (l) => lines.push(l));
    expect(path).toBe(`${IMAGES}/${DB_KEY}/rootfs`);
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
    expect(lines).toEqual([`base image ${DB_KEY} from the cache`]);
  });

  test('an entry exactly the maximum age old is still fresh; one millisecond more and it is rebuilt', async () => {
    const fresh = cacheHost();
    seedImage(fresh, metaFor(DB, iso(NOW - 7 * DAY_MS)));
    await new ImageCache(fresh, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(fresh.runner.calls).toEqual([]);

    const stale = cacheHost();
    seedImage(stale, metaFor(DB, iso(NOW - 7 * DAY_MS - 1)));
    await new ImageCache(stale, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(stale.runner.argvs()).toEqual(BUILD(DB_KEY));
  });

  test('an expired entry (8 days old) is rebuilt beside it, then replaces it: the old tree is gone, meta.json says now', async () => {
    const host = cacheHost();
    const dir = seedImage(host, metaFor(DB, iso(NOW - 8 * DAY_MS)));
    host.fs.addFile(`${dir}/rootfs/etc/old-marker`, 'old\n');
    const lines: string[] = [];
    const path = await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH, (l) => lines.push(l));
    expect(path).toBe(`${dir}/rootfs`);
    expect(host.runner.argvs()).toEqual(BUILD(DB_KEY));
    // The entry has its marker already: nothing is written into it before it is moved aside.
    expect(host.fs.changes).toEqual([
      `mkdir ${BUILDING(DB_KEY)}`,
      `write ${BUILDING(DB_KEY)}/${MARKER}`,
      `remove ${BUILDING(DB_KEY)}/rootfs/etc/dpkg/dpkg.cfg.d/99mmdebstrap`,
      `write ${BUILDING(DB_KEY)}/meta.json`,
      `syncfs ${BUILDING(DB_KEY)}`,
      `remove-tree ${IMAGES}/.${DB_KEY}.old`,
      `rename ${dir} -> ${IMAGES}/.${DB_KEY}.old`,
      `remove-tree ${IMAGES}/.${DB_KEY}.old`,
      `rename ${BUILDING(DB_KEY)} -> ${dir}`,
    ]);
    expect(host.fs.nodes.has(`${dir}/rootfs/etc/old-marker`)).toBe(false);
    expect(host.fs.paths().filter((p) => p.startsWith(IMAGES))).toEqual([
      IMAGES,
      dir,
      `${dir}/meta.json`,
      `${dir}/${MARKER}`,
      `${dir}/rootfs`,
      `${dir}/rootfs/etc`,
      `${dir}/rootfs/etc/dpkg`,
      `${dir}/rootfs/etc/dpkg/dpkg.cfg.d`,
      `${dir}/rootfs/usr`,
      `${dir}/rootfs/usr/lib`,
      `${dir}/rootfs/usr/lib/systemd`,
      `${dir}/rootfs/usr/lib/systemd/systemd`,
      `${dir}/rootfs/var`,
      `${dir}/rootfs/var/lib`,
      `${dir}/rootfs/var/lib/dpkg`,
      `${dir}/rootfs/var/lib/dpkg/status`,
    ]);
    expect(await readImage(host, CACHE_OPTIONS, DB_KEY)).toEqual(metaFor(DB, iso(NOW)));
    expect(lines).toEqual([`base image ${DB_KEY} is older than the maximum age: rebuilding`]);
  });

  test('a broken entry (no dpkg database) is rebuilt like a missing one', async () => {
    const host = cacheHost();
    seedImage(host, metaFor(DB, iso(NOW)), { markers: ['usr/lib/systemd/systemd'] });
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(host.runner.argvs()).toEqual(BUILD(DB_KEY));
    expect(await readImage(host, CACHE_OPTIONS, DB_KEY)).toEqual(metaFor(DB, iso(NOW)));
  });

  test('an entry whose created date cannot be read is rebuilt', async () => {
    const host = cacheHost();
    seedImage(host, { ...metaFor(DB, iso(NOW)), created: 'yesterday' });
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(host.runner.argvs()).toEqual(BUILD(DB_KEY));
    expect(await readImage(host, CACHE_OPTIONS, DB_KEY)).toEqual(metaFor(DB, iso(NOW)));
  });

  test('a .KEY.building left by a killed build is unmounted below and removed before the new bootstrap', async () => {
    const host = cacheHost();
    const leftover = seedMarkedDir(host, BUILDING(DB_KEY), DB_KEY);
    host.fs.addFile(`${leftover}/rootfs/half-written`, 'x');
    host.fs.addDir(`${leftover}/rootfs/proc`);
    host.fs.addFile('/proc/self/mountinfo', `25 1 0:23 / / rw - ext4 /dev/sda1 rw\n98 25 0:46 / ${leftover}/rootfs/proc rw - proc proc rw\n`);
    host.runner.on(['umount', '--lazy', `${leftover}/rootfs/proc`], () => {
      host.fs.addFile('/proc/self/mountinfo', '25 1 0:23 / / rw - ext4 /dev/sda1 rw\n');
      return {};
    });
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(host.runner.argvs()).toEqual([['umount', '--lazy', `${leftover}/rootfs/proc`], ...BUILD(DB_KEY)]);
    expect(host.fs.changes.slice(0, 2)).toEqual([`remove-tree ${leftover}`, `mkdir ${leftover}`]);
    expect(host.fs.nodes.has(`${IMAGES}/${DB_KEY}/rootfs/half-written`)).toBe(false);
  });

  test('the marker is written first thing into .KEY.building, before the bootstrap runs: a killed build is recognisably ours', async () => {
    // A bootstrap that dies, after what was on disk when it started is noted.
    const host = new FakeHost();
    host.runner.on((argv) => argv[0] === 'mmdebstrap', { exitCode: 137, stderr: 'Killed\n' });
    let seen: { changes: string[]; ours: boolean } | undefined;
    const run = host.runner.run.bind(host.runner);
    host.runner.run = async (file, args, options) => {
      if (file === 'mmdebstrap') seen = { changes: [...host.fs.changes], ours: await isOwnEntry(host, BUILDING(DB_KEY), DB_KEY) };
      return run(file, args, options);
    };
    await expect(new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH)).rejects.toBeInstanceOf(CommandFailedError);
    expect(seen).toEqual({ changes: [...['/var', '/var/cache', '/var/cache/nspawnctl', IMAGES, BUILDING(DB_KEY)].map((d) => `mkdir ${d}`), `write ${BUILDING(DB_KEY)}/${MARKER}`], ours: true });
  });

  test('an image of the version before markers (meta.json only) that is fresh is reused as it is: nothing is written into it', async () => {
    const host = cacheHost();
    seedImage(host, metaFor(DB, iso(NOW - DAY_MS)), { marker: false });
    expect(await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH)).toBe(`${IMAGES}/${DB_KEY}/rootfs`);
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('an expired image of the version before markers gets its marker before it is moved aside, so .KEY.old is marked too', async () => {
    const host = cacheHost();
    const dir = seedImage(host, metaFor(DB, iso(NOW - 8 * DAY_MS)), { marker: false });
    const old = `${IMAGES}/.${DB_KEY}.old`;
    let markerOfOld: string | undefined;
    const rename = host.fs.rename.bind(host.fs);
    host.fs.rename = async (from, to) => {
      await rename(from, to);
      if (to === old) markerOfOld = await host.fs.readText(`${old}/${MARKER}`);
    };
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(markerOfOld).toBe(markerText(DB_KEY));
    expect(host.fs.changes).toEqual([
      `mkdir ${BUILDING(DB_KEY)}`,
      `write ${BUILDING(DB_KEY)}/${MARKER}`,
      `remove ${BUILDING(DB_KEY)}/rootfs/etc/dpkg/dpkg.cfg.d/99mmdebstrap`,
      `write ${BUILDING(DB_KEY)}/meta.json`,
      `syncfs ${BUILDING(DB_KEY)}`,
      `remove-tree ${old}`,
      `write ${dir}/${MARKER}`,
      `rename ${dir} -> ${old}`,
      `remove-tree ${old}`,
      `rename ${BUILDING(DB_KEY)} -> ${dir}`,
    ]);
    expect(await host.fs.readText(`${dir}/${MARKER}`)).toBe(markerText(DB_KEY));
  });

  describe('refuses, before changing anything, to replace or remove what nspawnctl did not make', () => {
    const elsewhere = (h: FakeHost) => seedImage(h, metaFor(DB, iso(NOW - 8 * DAY_MS)), { dir: '/srv/elsewhere' });
    test.each([
      [`${DB_KEY}`, 'a directory named like the key, without marker or meta.json', (h: FakeHost) => void h.fs.addFile(`${IMAGES}/${DB_KEY}/rootfs/etc/os-release`, 'ID=debian\n')],
      [`${DB_KEY}`, 'a directory named like the key whose meta.json is of another key', (h: FakeHost) => void seedImage(h, { ...metaFor(DB, iso(NOW)), key: '0000000000000000' }, { name: DB_KEY, marker: false })],
      [`${DB_KEY}`, 'a file named like the key', (h: FakeHost) => void h.fs.addFile(`${IMAGES}/${DB_KEY}`, 'x\n')],
      [`${DB_KEY}`, 'a symlink named like the key, to a marked image elsewhere', (h: FakeHost) => void h.fs.addSymlink(`${IMAGES}/${DB_KEY}`, elsewhere(h))],
      [`.${DB_KEY}.building`, 'a .KEY.building without marker (a build of the version before markers, or not ours)', (h: FakeHost) => void h.fs.addFile(`${BUILDING(DB_KEY)}/rootfs/var/lib/dpkg/status`, 'partial\n')],
      [`.${DB_KEY}.building`, 'a symlink named .KEY.building, to a marked image elsewhere', (h: FakeHost) => void h.fs.addSymlink(BUILDING(DB_KEY), elsewhere(h))],
      [`.${DB_KEY}.old`, 'a .KEY.old without marker', (h: FakeHost) => void h.fs.addDir(`${IMAGES}/.${DB_KEY}.old/rootfs`)],
    ])('%s: %s', async (name, _what, seed) => {
      const host = cacheHost();
      seed(host);
      const before = host.fs.paths();
      const lines: string[] = [];
      const err = await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH, (l) => lines.push(l)).catch((e: unknown) => e);
      expect(lines).toEqual([]);
      expect(err).toBeInstanceOf(OwnershipError);
      expect((err as OwnershipError).exitCode).toBe(4);
      expect((err as OwnershipError).message).toBe(
        `${IMAGES}/${name} is in the way of a base image, and nspawnctl did not make it (it is not a directory with nspawnctl-image.json); refusing to replace it`,
      );
      expect((err as OwnershipError).hint).toBe(
        `Move it out of ${IMAGES}, or use another --cache-dir. If it is a build an older nspawnctl left behind, check that nothing is mounted below it, then remove it.`,
      );
      expect(host.runner.calls).toEqual([]);
      expect(host.fs.changes).toEqual([]);
      expect(host.fs.paths()).toEqual(before);
    });
  });

  test('two concurrent requests for the same base (db and web) share ONE bootstrap and get the same path', async () => {
    const host = cacheHost();
    // Hold the bootstrap until the second request has been made while it runs.
    let release!: () => void;
    let started!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const running = new Promise<void>((r) => (started = r));
    const run = host.runner.run.bind(host.runner);
    host.runner.run = async (file, args, options) => {
      if (file === 'mmdebstrap') {
        started();
        await gate;
      }
      return run(file, args, options);
    };
    const cache = new ImageCache(host, CACHE_OPTIONS, () => NOW);
    const first = cache.ensure(DB, 'mmdebstrap', ARCH);
    await running;
    const second = cache.ensure(WEB, 'mmdebstrap', ARCH);
    release();
    expect(await Promise.all([first, second])).toEqual([`${IMAGES}/${DB_KEY}/rootfs`, `${IMAGES}/${DB_KEY}/rootfs`]);
    expect(host.runner.argvs()).toEqual(BUILD(DB_KEY));
    expect(host.fs.changes.filter((c) => c.startsWith('rename'))).toEqual([`rename ${BUILDING(DB_KEY)} -> ${IMAGES}/${DB_KEY}`]);
  });

  test('concurrent requests for different bases bootstrap each of them, each into its own directory', async () => {
    const host = cacheHost();
    const cache = new ImageCache(host, CACHE_OPTIONS, () => NOW);
    const appKey = imageKey(machines.app, 'mmdebstrap', ARCH);
    const paths = await Promise.all([cache.ensure(DB, 'mmdebstrap', ARCH), cache.ensure(machines.app, 'mmdebstrap', ARCH)]);
    expect(paths).toEqual([`${IMAGES}/${DB_KEY}/rootfs`, `${IMAGES}/${appKey}/rootfs`]);
    expect(host.runner.argvs().sort()).toEqual([...BUILD(DB_KEY), ...BUILD(appKey, 'dbus,iproute2,iputils-ping,systemd,systemd-sysv')].sort());
  });

  test('a failed bootstrap leaves nothing (no entry, no .building), both waiters get its error, and the next request tries again', async () => {
    const host = new FakeHost();
    host.runner.on(
      (argv) => argv[0] === 'mmdebstrap',
      ({ args }) => {
        host.fs.addFile(`${args[args.length - 2]}/var/lib/dpkg/status`, 'partial\n');
        return { exitCode: 1, stderr: 'E: cannot resolve deb.debian.org\n' };
      },
      1,
    );
    simulateImageTools(host);
    const cache = new ImageCache(host, CACHE_OPTIONS, () => NOW);
    const results = await Promise.allSettled([cache.ensure(DB, 'mmdebstrap', ARCH), cache.ensure(WEB, 'mmdebstrap', ARCH)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    const [a, b] = results as PromiseRejectedResult[];
    expect(a.reason).toBeInstanceOf(CommandFailedError);
    expect(b.reason).toBe(a.reason);
    // Nothing is synced for a build that is thrown away.
    expect(host.runner.argvs()).toEqual([MMDEBSTRAP_INTO(`${BUILDING(DB_KEY)}/rootfs`)]);
    expect(host.fs.paths().filter((p) => p.startsWith(`${IMAGES}/`))).toEqual([]);

    expect(await cache.ensure(DB, 'mmdebstrap', ARCH)).toBe(`${IMAGES}/${DB_KEY}/rootfs`);
    expect(host.runner.argvs()).toEqual([MMDEBSTRAP_INTO(`${BUILDING(DB_KEY)}/rootfs`), ...BUILD(DB_KEY)]);
    expect(await host.fs.readText(`${IMAGES}/${DB_KEY}/rootfs/var/lib/dpkg/status`)).toBe(dpkgStatus(DB.basePackages));
  });

  // The base is bootstrapped with the requesting machine's spec minus its packages, so web's
  // aptProxy is used for the download (mmdebstrap's --aptopt). mmdebstrap keeps its --aptopt
  // lines in /etc/apt/apt.conf.d/99mmdebstrap; the key ignores aptProxy, so that file is removed
  // before the entry is renamed in: db, copied from the same entry, must not get web's proxy.
  test('the base of a machine with an aptProxy is downloaded through that proxy, but the proxy is not kept in the shared image', async () => {
    const host = new FakeHost();
    const aptConf = `${BUILDING(DB_KEY)}/rootfs/etc/apt/apt.conf.d/99mmdebstrap`;
    // mmdebstrap as simulateImageTools has it, plus what it does with --aptopt: one line each,
    // kept in the tree it built.
    host.runner.on(
      (argv) => argv[0] === 'mmdebstrap',
      ({ args }) => {
        const target = args[args.length - 2];
        const include = args.find((a) => a.startsWith('--include='))!.slice('--include='.length).split(',');
        host.fs.addFile(`${target}/usr/lib/systemd/systemd`, 'ELF systemd\n', { mode: 0o755 });
        host.fs.addFile(`${target}/var/lib/dpkg/status`, dpkgStatus(include));
        const options = args.filter((a) => a.startsWith('--aptopt=')).map((a) => `${a.slice('--aptopt='.length)};\n`);
        host.fs.addFile(`${target}/etc/apt/apt.conf.d/99mmdebstrap`, options.join(''));
        host.fs.addFile(`${target}/etc/dpkg/dpkg.cfg.d/99mmdebstrap`, 'force-unsafe-io\n');
        return {};
      },
    );
    simulateImageTools(host);
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(WEB, 'mmdebstrap', ARCH);
    const withProxy = [...MMDEBSTRAP_INTO(`${BUILDING(DB_KEY)}/rootfs`)];
    withProxy.splice(4, 0, '--aptopt=Acquire::http::Proxy "http://proxy.example:3142"');
    expect(host.runner.argvs()).toEqual([withProxy, SYNC(BUILDING(DB_KEY))]);
    expect(host.fs.changes).toEqual([
      'mkdir /var',
      'mkdir /var/cache',
      'mkdir /var/cache/nspawnctl',
      `mkdir ${IMAGES}`,
      `mkdir ${BUILDING(DB_KEY)}`,
      `write ${BUILDING(DB_KEY)}/${MARKER}`,
      `remove ${aptConf}`,
      `remove ${BUILDING(DB_KEY)}/rootfs/etc/dpkg/dpkg.cfg.d/99mmdebstrap`,
      `write ${BUILDING(DB_KEY)}/meta.json`,
      `syncfs ${BUILDING(DB_KEY)}`,
      `rename ${BUILDING(DB_KEY)} -> ${IMAGES}/${DB_KEY}`,
    ]);
    expect(host.fs.paths().filter((p) => p.endsWith('99mmdebstrap'))).toEqual([]);
    expect(await readImage(host, CACHE_OPTIONS, DB_KEY)).toEqual(metaFor(DB, iso(NOW)));
  });
});

describe('unsafe I/O while an image is built', () => {
  test('mmdebstrap runs dpkg under eatmydata (its own hook) when the host has the hook and dpkg-architecture, which the hook runs', async () => {
    const host = cacheHost();
    host.fs.addDir('/usr/share/mmdebstrap/hooks/eatmydata');
    host.fs.addFile('/usr/bin/dpkg-architecture', '#!/usr/bin/perl\n', { mode: 0o755 });
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    const withHook = MMDEBSTRAP_INTO(`${BUILDING(DB_KEY)}/rootfs`).map((a) => (a === '--dpkgopt=force-unsafe-io' ? '--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata' : a));
    expect(host.runner.argvs()).toEqual([withHook, SYNC(BUILDING(DB_KEY))]);
    expect(host.fs.changes.slice(-2)).toEqual([`syncfs ${BUILDING(DB_KEY)}`, `rename ${BUILDING(DB_KEY)} -> ${IMAGES}/${DB_KEY}`]);
  });

  test('the hook without dpkg-architecture (no dpkg-dev) would fail: dpkg gets force-unsafe-io instead', async () => {
    const host = cacheHost();
    host.fs.addDir('/usr/share/mmdebstrap/hooks/eatmydata');
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(host.runner.argvs()).toEqual(BUILD(DB_KEY));
  });

  test('debootstrap has no such option: its dpkg finds force-unsafe-io in the target, put there before it starts and removed before the image is published', async () => {
    const host = cacheHost();
    const key = imageKey(DB, 'debootstrap', ARCH);
    const dir = BUILDING(key);
    const cfg = `${dir}/rootfs/etc/dpkg/dpkg.cfg.d/00nspawnctl-unsafe-io`;
    let seen: string | undefined;
    const run = host.runner.run.bind(host.runner);
    host.runner.run = async (file, args, options) => {
      if (file === 'debootstrap') seen = await host.fs.readText(cfg);
      return run(file, args, options);
    };
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'debootstrap', ARCH);
    expect(seen).toBe('# nspawnctl: removed once the bootstrap is done\nforce-unsafe-io\n');
    expect(host.runner.argvs()).toEqual([
      ['debootstrap', '--variant=minbase', '--include=dbus,iputils-ping,systemd,systemd-sysv', 'bookworm', `${dir}/rootfs`, 'http://deb.debian.org/debian'],
      SYNC(dir),
    ]);
    expect(host.fs.changes.filter((c) => c.includes('dpkg.cfg.d/') || c.startsWith('syncfs') || c.startsWith('rename'))).toEqual([
      `write ${dir}/rootfs/etc/dpkg/dpkg.cfg.d/00nspawnctl-unsafe-io`,
      `remove ${dir}/rootfs/etc/dpkg/dpkg.cfg.d/00nspawnctl-unsafe-io`,
      `syncfs ${dir}`,
      `rename ${dir} -> ${IMAGES}/${key}`,
    ]);
    expect(host.fs.nodes.get(`${IMAGES}/${key}/rootfs`)).toEqual({ type: 'dir', mode: 0o755, uid: 0, gid: 0 });
    expect(host.fs.paths().filter((p) => p.includes('dpkg.cfg.d/'))).toEqual([]);
  });
});

describe('pruneImages', () => {
  /** fresh (1 day), expired (8 days), broken (no systemd), and two hidden leftovers. */
  function cacheWithEverything(): { host: FakeHost; fresh: ImageMeta; expired: ImageMeta } {
    const host = new FakeHost();
    const fresh = metaFor(DB, iso(NOW - DAY_MS));
    const expired = metaFor(machines.app, iso(NOW - 8 * DAY_MS));
    seedImage(host, fresh);
    seedImage(host, expired);
    seedImage(host, { ...metaFor(DB, iso(NOW), 'debootstrap'), key: 'ffff000000000000' }, { markers: ['var/lib/dpkg/status'] });
    seedMarkedDir(host, `${IMAGES}/.${DB_KEY}.building`, DB_KEY);
    host.fs.addFile(`${IMAGES}/.${DB_KEY}.building/rootfs/var/lib/dpkg/status`, 'partial\n');
    seedMarkedDir(host, `${IMAGES}/.${expired.key}.old`, expired.key);
    host.fs.addDir(`${IMAGES}/.${expired.key}.old/rootfs`);
    return { host, fresh, expired };
  }

  test('removes expired and broken entries and hidden leftovers; keeps fresh ones', async () => {
    const { host, fresh, expired } = cacheWithEverything();
    const { removed, foreign } = await pruneImages(host, CACHE_OPTIONS, false, NOW);
    expect(removed).toEqual([`${IMAGES}/.${DB_KEY}.building`, `${IMAGES}/.${expired.key}.old`, `${IMAGES}/${expired.key}`, `${IMAGES}/ffff000000000000`].sort());
    expect(foreign).toEqual([]);
    expect(await host.fs.listDir(IMAGES)).toEqual([fresh.key]);
    expect(await readImage(host, CACHE_OPTIONS, fresh.key)).toEqual(fresh);
    expect(host.fs.changes).toEqual(removed.map((r) => `remove-tree ${r}`));
    expect(host.runner.calls).toEqual([]);
  });

  /**
   * Ours: a fresh entry, an expired one of the version before markers (meta.json only), a build
   * killed before its bootstrap wrote anything (marker only). Not ours: everything seedForeign
   * makes, whose symlinks point at a complete, marked, expired entry outside the cache.
   */
  function cacheWithForeign(): { host: FakeHost; ours: Record<'fresh' | 'oldVersion' | 'interrupted', string>; foreign: string[] } {
    const host = new FakeHost();
    const ours = {
      fresh: seedImage(host, metaFor(DB, iso(NOW - DAY_MS))),
      oldVersion: seedImage(host, metaFor(machines.app, iso(NOW - 8 * DAY_MS)), { marker: false }),
      interrupted: seedMarkedDir(host, `${IMAGES}/.${DB_KEY}.building`, DB_KEY),
    };
    const foreign = seedForeign(host, metaFor(DB, iso(NOW - 30 * DAY_MS), 'debootstrap'));
    return { host, ours, foreign };
  }

  test.each([
    ['without all: the expired old-version image and the interrupted build', false, ['interrupted', 'oldVersion']],
    ['with all: every entry of ours', true, ['interrupted', 'fresh', 'oldVersion']],
  ] as const)('removes only its own entries, %s; leaves everything else alone, and says which', async (_what, all, removedKinds) => {
    const { host, ours, foreign } = cacheWithForeign();
    const outside = host.fs.paths().filter((p) => p.startsWith('/srv/'));
    const foreignTrees = host.fs.paths().filter((p) => foreign.some((f) => p === f || p.startsWith(`${f}/`)));
    const result = await pruneImages(host, CACHE_OPTIONS, all, NOW);
    const removed = removedKinds.map((k) => ours[k]).sort();
    expect(result).toEqual({ removed, foreign });
    expect(result.foreign).toEqual([
      `${IMAGES}/.${imageKey(DB, 'debootstrap', ARCH)}.building`,
      `${IMAGES}/.abcdef0123456789.building`,
      `${IMAGES}/${imageKey(DB, 'debootstrap', ARCH)}`,
      `${IMAGES}/README`,
      `${IMAGES}/abcdef0123456789`,
      `${IMAGES}/my-rootfs`,
    ]);
    expect(host.fs.changes).toEqual(removed.map((r) => `remove-tree ${r}`));
    // Foreign trees and what the symlinks point at are all still there, byte for byte.
    expect(host.fs.paths().filter((p) => p.startsWith('/srv/'))).toEqual(outside);
    expect(host.fs.paths().filter((p) => foreign.some((f) => p === f || p.startsWith(`${f}/`)))).toEqual(foreignTrees);
    expect(await host.fs.listDir(IMAGES)).toEqual([...foreign.map((f) => f.slice(IMAGES.length + 1)), ...(all ? [] : [DB_KEY])].sort());
  });

  test('a .KEY.old from the version before markers (meta.json of its key) is a leftover of ours and pruned', async () => {
    const host = new FakeHost();
    const old = seedImage(host, metaFor(DB, iso(NOW)), { name: `.${DB_KEY}.old`, marker: false });
    expect(await pruneImages(host, CACHE_OPTIONS, false, NOW)).toEqual({ removed: [old], foreign: [] });
  });

  test('a leftover named for one key holding the marker of another is not ours', async () => {
    const host = new FakeHost();
    const dir = seedMarkedDir(host, `${IMAGES}/.${DB_KEY}.building`, '0000000000000000');
    expect(await pruneImages(host, CACHE_OPTIONS, true, NOW)).toEqual({ removed: [], foreign: [dir] });
    expect(host.fs.changes).toEqual([]);
  });

  test('an entry exactly the maximum age old is kept', async () => {
    const host = new FakeHost();
    const meta = metaFor(DB, iso(NOW - 7 * DAY_MS));
    seedImage(host, meta);
    expect(await pruneImages(host, CACHE_OPTIONS, false, NOW)).toEqual({ removed: [], foreign: [] });
    expect(await host.fs.listDir(IMAGES)).toEqual([meta.key]);
  });

  test('all: removes every entry, fresh ones too', async () => {
    const { host, fresh, expired } = cacheWithEverything();
    const { removed, foreign } = await pruneImages(host, CACHE_OPTIONS, true, NOW);
    expect(removed).toEqual([`${IMAGES}/.${DB_KEY}.building`, `${IMAGES}/.${expired.key}.old`, `${IMAGES}/${fresh.key}`, `${IMAGES}/${expired.key}`, `${IMAGES}/ffff000000000000`].sort());
    expect(foreign).toEqual([]);
    expect(await host.fs.listDir(IMAGES)).toEqual([]);
  });

  test('a leftover with a mount below it is unmounted first', async () => {
    const host = new FakeHost();
    const leftover = seedMarkedDir(host, `${IMAGES}/.${DB_KEY}.building`, DB_KEY);
    host.fs.addDir(`${leftover}/rootfs/dev`);
    host.fs.addFile('/proc/self/mountinfo', `25 1 0:23 / / rw - ext4 /dev/sda1 rw\n99 25 0:5 / ${leftover}/rootfs/dev rw - devtmpfs udev rw\n`);
    host.runner.on(['umount', '--lazy', `${leftover}/rootfs/dev`], () => {
      host.fs.addFile('/proc/self/mountinfo', '25 1 0:23 / / rw - ext4 /dev/sda1 rw\n');
      return {};
    });
    expect(await pruneImages(host, CACHE_OPTIONS, false, NOW)).toEqual({ removed: [leftover], foreign: [] });
    expect(host.runner.argvs()).toEqual([['umount', '--lazy', `${leftover}/rootfs/dev`]]);
    expect(host.fs.changes).toEqual([`remove-tree ${leftover}`]);
  });

  // ensure() never reuses an entry whose `created` is not a date (it rebuilds it), so prune
  // counts it as expired.
  test('an entry whose created date cannot be read is pruned (ensure() would never reuse it)', async () => {
    const host = cacheHost();
    seedImage(host, { ...metaFor(DB, iso(NOW)), created: 'yesterday' });
    expect(await pruneImages(host, CACHE_OPTIONS, false, NOW)).toEqual({ removed: [`${IMAGES}/${DB_KEY}`], foreign: [] });
    expect(host.fs.changes).toEqual([`remove-tree ${IMAGES}/${DB_KEY}`]);
    expect(await host.fs.listDir(IMAGES)).toEqual([]);
  });

  test('only a hidden leftover is searched for orphan processes (and they are stopped); an expired entry is just removed', async () => {
    const host = new FakeHost();
    const expired = seedImage(host, metaFor(DB, iso(NOW - 8 * DAY_MS)));
    const leftover = seedMarkedDir(host, `${IMAGES}/.${DB_KEY}.building`, DB_KEY);
    host.fs.addFile(`${leftover}/rootfs/var/lib/dpkg/status`, 'partial\n');
    // An apt left by a killed build in the leftover, and a shell whose working directory is the expired entry.
    host.fs.addDir('/proc/300');
    host.fs.addSymlink('/proc/300/root', `${leftover}/rootfs`);
    host.fs.addDir('/proc/301');
    host.fs.addSymlink('/proc/301/cwd', `${expired}/rootfs`);
    host.runner.on(['kill', '-KILL', '300'], () => {
      host.fs.nodes.delete('/proc/300/root');
      host.fs.nodes.delete('/proc/300');
      return {};
    });
    expect(await pruneImages(host, CACHE_OPTIONS, false, NOW)).toEqual({ removed: [leftover, expired], foreign: [] });
    expect(host.runner.argvs()).toEqual([['kill', '-KILL', '300']]);
    expect(host.fs.changes).toEqual([`remove-tree ${leftover}`, `remove-tree ${expired}`]);
  });

  test('no cache directory: nothing to remove', async () => {
    const host = new FakeHost();
    expect(await pruneImages(host, CACHE_OPTIONS, true, NOW)).toEqual({ removed: [], foreign: [] });
    expect(host.fs.changes).toEqual([]);
  });
});

describe('on btrfs', () => {
  const STAT = (dir: string) => ['stat', '--file-system', '--format=%T', dir];
  function btrfsHost(types: Record<string, string>): FakeHost {
    const host = cacheHost();
    host.fs.addFile('/usr/bin/btrfs', 'ELF btrfs\n', { mode: 0o755 });
    for (const [dir, type] of Object.entries(types)) host.runner.on(STAT(dir), { stdout: `${type}\n` });
    return host;
  }
  const argvs = (host: FakeHost) => host.runner.calls.map((c) => [c.file, ...c.args].join(' '));

  test('a new image is a subvolume: created before the bootstrap writes into it', async () => {
    const host = btrfsHost({ [BUILDING(DB_KEY)]: 'btrfs' });
    let marked = false;
    host.runner.on(['btrfs', 'subvolume', 'create', `${BUILDING(DB_KEY)}/rootfs`], () => {
      marked = host.fs.nodes.get(`${BUILDING(DB_KEY)}/${MARKER}`)?.type === 'file';
      host.fs.addDir(`${BUILDING(DB_KEY)}/rootfs`);
      return {};
    });
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(marked).toBe(true);
    expect(argvs(host)).toEqual([STAT(BUILDING(DB_KEY)).join(' '), `btrfs subvolume create ${BUILDING(DB_KEY)}/rootfs`, ...BUILD(DB_KEY).map((a) => a.join(' '))]);
  });

  test('on ext4 (or without btrfs-progs) the image is a plain directory', async () => {
    const host = btrfsHost({ [BUILDING(DB_KEY)]: 'ext2/ext3' });
    await new ImageCache(host, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(argvs(host)).toEqual([STAT(BUILDING(DB_KEY)).join(' '), ...BUILD(DB_KEY).map((a) => a.join(' '))]);
    const plain = cacheHost();
    await new ImageCache(plain, CACHE_OPTIONS, () => NOW).ensure(DB, 'mmdebstrap', ARCH);
    expect(argvs(plain)).toEqual(BUILD(DB_KEY).map((a) => a.join(' ')));
  });

  test('a copy of a subvolume image on the same btrfs is a snapshot (no cp)', async () => {
    const source = `${IMAGES}/${DB_KEY}/rootfs`;
    const target = '/var/lib/machines/.nspawnctl-db.staging';
    const host = btrfsHost({ '/var/lib/machines': 'btrfs', [source]: 'btrfs' });
    host.fs.addDir(source);
    host.runner.on(['btrfs', 'subvolume', 'snapshot', source, target], () => {
      host.fs.addDir(target);
      return {};
    });
    expect(await copyImage(host, source, target)).toBe('snapshot');
    expect(argvs(host)).toEqual([STAT('/var/lib/machines').join(' '), STAT(source).join(' '), `btrfs subvolume snapshot ${source} ${target}`]);
  });

  test('when the snapshot is refused (not a subvolume, another filesystem) it is copied instead', async () => {
    const source = `${IMAGES}/${DB_KEY}/rootfs`;
    const target = '/var/lib/machines/.nspawnctl-db.staging';
    const host = btrfsHost({ '/var/lib/machines': 'btrfs', [source]: 'btrfs' });
    host.fs.addDir(source);
    host.runner.on(['btrfs', 'subvolume', 'snapshot', source, target], { exitCode: 1, stderr: 'ERROR: Not a Btrfs subvolume' });
    expect(await copyImage(host, source, target)).toBe('copy');
    expect(argvs(host).slice(-1)).toEqual([`cp --archive --reflink=auto --no-target-directory ${source} ${target}`]);
  });
});
