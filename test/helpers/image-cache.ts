// The base-image cache in unit tests: a FakeHost that answers `dpkg --print-architecture`, whose
// bootstrapper leaves a tree readImage accepts, and whose `cp --archive` copies the fake tree;
// and entries seeded straight into /var/cache/nspawnctl/images.
import { posix } from 'node:path';
import { Bootstrapper } from '../../src/apply/bootstrap';
import { CACHE_FORMAT, DEFAULT_CACHE_DIR, ImageMeta, imageKey } from '../../src/apply/image-cache';
import { isWithin } from '../../src/host/paths';
import { Machine } from '../../src/manifest/schema';
import { FakeHost } from './fake-host';

export const ARCH = 'amd64';
export const IMAGES = `${DEFAULT_CACHE_DIR}/images`;
export const DAY_MS = 86_400_000;
export const CACHE_OPTIONS = { dir: DEFAULT_CACHE_DIR, maxAgeMs: 7 * DAY_MS };

/** The files readImage requires of a complete bootstrap, relative to the rootfs. */
export const BOOTSTRAP_MARKERS = ['usr/lib/systemd/systemd', 'var/lib/dpkg/status'];

/** What the simulated bootstrapper writes as the dpkg status of a tree with `packages`. */
export const dpkgStatus = (packages: string[]) => packages.map((p) => `Package: ${p}\nStatus: install ok installed\n`).join('\n');

/** The exact argv `copyImage` runs. */
export const CP = (source: string, target: string) => ['cp', '--archive', '--reflink=auto', '--no-target-directory', source, target];

/** Copies the fake tree at `source` to `target` (what cp --archive does). */
export function copyTree(host: FakeHost, source: string, target: string): void {
  for (const [path, node] of [...host.fs.nodes.entries()]) {
    if (isWithin(path, source)) host.fs.nodes.set(target + path.slice(source.length), { ...node });
  }
}

/**
 * Scripts dpkg, the bootstrapper and cp. Register it before simulateSystemd (responses are tried
 * in order) so that its mmdebstrap, which leaves a complete-looking tree, wins.
 */
export function simulateImageTools(host: FakeHost, options: { arch?: string } = {}): void {
  const r = host.runner;
  r.on(['dpkg', '--print-architecture'], { stdout: `${options.arch ?? ARCH}\n` });
  r.on((argv) => argv[0] === 'mmdebstrap' || argv[0] === 'debootstrap', ({ args }) => {
    const target = args[args.length - 2];
    const include = args.find((a) => a.startsWith('--include='))?.slice('--include='.length).split(',') ?? [];
    host.fs.addDir(target);
    host.fs.addFile(posix.join(target, 'usr/lib/systemd/systemd'), 'ELF systemd\n', { mode: 0o755 });
    host.fs.addFile(posix.join(target, 'var/lib/dpkg/status'), dpkgStatus(include));
    // mmdebstrap keeps its --dpkgopt options in the tree, as it does its --aptopt ones.
    const dpkgopts = args.filter((a) => a.startsWith('--dpkgopt=')).map((a) => `${a.slice('--dpkgopt='.length)}\n`);
    if (dpkgopts.length > 0) host.fs.addFile(posix.join(target, 'etc/dpkg/dpkg.cfg.d/99mmdebstrap'), dpkgopts.join(''));
    return {};
  });
  simulateSync(host);
  r.on((argv) => argv[0] === 'cp' && argv.length === 6 && argv.slice(1, 4).join(' ') === '--archive --reflink=auto --no-target-directory', ({ args }) => {
    copyTree(host, args[3], args[4]);
    return {};
  });
}

/**
 * `sync --file-system DIR` (syncfs) succeeds and is logged among the filesystem's changes as
 * `syncfs DIR`, so that tests see where it comes: after every write, before the rename.
 */
export function simulateSync(host: FakeHost): void {
  host.runner.on(
    (argv) => argv[0] === 'sync' && argv[1] === '--file-system' && argv.length === 3,
    ({ args }) => {
      host.fs.logChange(`syncfs ${args[1]}`);
      return {};
    },
  );
}

/** The meta.json an entry for `spec` built at `created` has. */
export function metaFor(spec: Machine, created: string, tool: Bootstrapper = 'mmdebstrap', architecture = ARCH): ImageMeta {
  return {
    format: CACHE_FORMAT,
    key: imageKey(spec, tool, architecture),
    distribution: spec.distribution,
    suite: spec.suite,
    variant: spec.variant,
    mirror: spec.mirror,
    architecture,
    bootstrapper: tool,
    packages: [...spec.basePackages].sort(),
    created,
  };
}

/** The name of the marker file, written out here so that a change to it fails the tests. */
export const MARKER = 'nspawnctl-image.json';

/** The marker ImageCache writes into each directory it makes for `key`, byte for byte. */
export const markerText = (key: string, format = CACHE_FORMAT) => `{\n  "kind": "nspawnctl-base-image",\n  "format": ${format},\n  "key": "${key}"\n}\n`;

/** Makes `dir` (a real directory) holding the marker of `key`: what an interrupted build leaves. */
export function seedMarkedDir(host: FakeHost, dir: string, key: string): string {
  host.fs.addDir(dir, { mode: 0o700 });
  host.fs.addFile(posix.join(dir, MARKER), markerText(key));
  return dir;
}

/**
 * Writes a complete cache entry (marker, meta.json and a bootstrapped-looking rootfs) straight
 * into the fake; `marker: false` makes it an entry of the version before markers (meta.json only).
 */
export function seedImage(
  host: FakeHost,
  meta: ImageMeta,
  options: { dir?: string; name?: string; markers?: string[]; metaText?: string; marker?: boolean } = {},
): string {
  const dir = posix.join(options.dir ?? DEFAULT_CACHE_DIR, 'images', options.name ?? meta.key);
  host.fs.addDir(dir, { mode: 0o700 });
  if (options.marker !== false) host.fs.addFile(posix.join(dir, MARKER), markerText(meta.key));
  host.fs.addFile(posix.join(dir, 'meta.json'), options.metaText ?? `${JSON.stringify(meta, null, 2)}\n`);
  for (const m of options.markers ?? BOOTSTRAP_MARKERS) {
    host.fs.addFile(posix.join(dir, 'rootfs', m), m.endsWith('status') ? dpkgStatus(meta.packages) : 'ELF systemd\n');
  }
  return dir;
}

/**
 * Everything nspawnctl must never remove or list, seeded into `images`: a file, a directory with
 * another name, a directory named like a key (and one like a build) without a marker, and symlinks
 * named like a key and a build pointing at a marked, complete entry outside the cache. Returns
 * their paths, sorted as listDir sorts them.
 */
export function seedForeign(host: FakeHost, meta: ImageMeta, images = IMAGES): string[] {
  const elsewhere = seedImage(host, meta, { dir: '/srv/elsewhere' });
  const fakeKey = 'abcdef0123456789';
  const paths = {
    file: posix.join(images, 'README'),
    dir: posix.join(images, 'my-rootfs'),
    keyNamed: posix.join(images, fakeKey),
    buildNamed: posix.join(images, `.${fakeKey}.building`),
    keyLink: posix.join(images, meta.key),
    buildLink: posix.join(images, `.${meta.key}.building`),
  };
  host.fs.addFile(paths.file, 'notes of the admin\n');
  host.fs.addFile(posix.join(paths.dir, 'etc/os-release'), 'ID=debian\n');
  host.fs.addFile(posix.join(paths.keyNamed, 'rootfs/etc/os-release'), 'ID=debian\n');
  host.fs.addFile(posix.join(paths.buildNamed, 'rootfs/etc/os-release'), 'ID=debian\n');
  host.fs.addSymlink(paths.keyLink, elsewhere);
  host.fs.addSymlink(paths.buildLink, elsewhere);
  return Object.values(paths).sort();
}
