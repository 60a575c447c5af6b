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
    return {};
  });
  r.on((argv) => argv[0] === 'cp' && argv.length === 6 && argv.slice(1, 4).join(' ') === '--archive --reflink=auto --no-target-directory', ({ args }) => {
    copyTree(host, args[3], args[4]);
    return {};
  });
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

/** Writes a complete cache entry (meta.json and a bootstrapped-looking rootfs) straight into the fake. */
export function seedImage(host: FakeHost, meta: ImageMeta, options: { dir?: string; name?: string; markers?: string[]; metaText?: string } = {}): string {
  const dir = posix.join(options.dir ?? DEFAULT_CACHE_DIR, 'images', options.name ?? meta.key);
  host.fs.addDir(dir, { mode: 0o700 });
  host.fs.addFile(posix.join(dir, 'meta.json'), options.metaText ?? `${JSON.stringify(meta, null, 2)}\n`);
  for (const m of options.markers ?? BOOTSTRAP_MARKERS) {
    host.fs.addFile(posix.join(dir, 'rootfs', m), m.endsWith('status') ? dpkgStatus(meta.packages) : 'ELF systemd\n');
  }
  return dir;
}
