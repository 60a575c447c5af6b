// Base images: a bootstrapped rootfs kept under /var/cache/nspawnctl/images/KEY, so a machine
// with the same base is a copy (reflinked where the filesystem can) instead of a bootstrap.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { NspawnctlError, OwnershipError } from '../errors';
import { findProgram, Host } from '../host/host';
import { Machine } from '../manifest/schema';
import { Bootstrapper, bootstrapInto } from './bootstrap';
import { removeUnmounting } from './staging';
import { syncFilesystem } from './unsafe-io';

/** Bumped when the layout of a cache entry changes; old entries then miss. */
export const CACHE_FORMAT = 1;
export const DEFAULT_CACHE_DIR = '/var/cache/nspawnctl';

export interface CacheOptions {
  dir: string;
  /** Entries older than this are rebuilt (security updates reach new machines). */
  maxAgeMs: number;
}

export interface ImageMeta {
  format: number;
  key: string;
  distribution: string;
  suite: string;
  variant: string;
  mirror: string;
  architecture: string;
  bootstrapper: Bootstrapper;
  packages: string[];
  created: string;
}

/** What identifies a base image: everything that changes its content. */
export function imageKey(spec: Machine, tool: Bootstrapper, architecture: string): string {
  const identity = {
    format: CACHE_FORMAT,
    distribution: spec.distribution,
    suite: spec.suite,
    variant: spec.variant,
    mirror: spec.mirror,
    architecture,
    bootstrapper: tool,
    packages: [...spec.basePackages].sort(),
  };
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 16);
}

export function imagesDir(options: CacheOptions): string {
  return posix.join(options.dir, 'images');
}

/**
 * The file nspawnctl writes into every directory it makes under CACHE/images, before anything
 * else goes in: what tells its entries (even a build killed half-way) from anything else there.
 */
export const IMAGE_MARKER = 'nspawnctl-image.json';
const MARKER_KIND = 'nspawnctl-base-image';

/** What the marker holds: what the directory is, the cache format it was made with, its key. */
export interface ImageMarker {
  kind: typeof MARKER_KIND;
  format: number;
  key: string;
}

/** The three names nspawnctl gives a directory under CACHE/images. */
export type EntryKind = 'image' | 'building' | 'old';

/** The key and kind of one of nspawnctl's names (KEY, .KEY.building, .KEY.old); undefined for any other name. */
export function parseEntryName(name: string): { key: string; kind: EntryKind } | undefined {
  const m = /^(?:([0-9a-f]{16})|\.([0-9a-f]{16})\.(building|old))$/.exec(name);
  if (!m) return undefined;
  return m[1] !== undefined ? { key: m[1], kind: 'image' } : { key: m[2], kind: m[3] as EntryKind };
}

/** The path nspawnctl uses for `key` in the given role. */
export function entryPath(options: CacheOptions, key: string, kind: EntryKind): string {
  return posix.join(imagesDir(options), kind === 'image' ? key : `.${key}.${kind}`);
}

/** Parses a regular file (never through a symlink) as JSON; undefined when it is missing or not JSON. */
async function readJsonFile(host: Host, path: string): Promise<unknown> {
  if ((await host.fs.stat(path))?.type !== 'file') return undefined;
  const text = await host.fs.readText(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * True when `dir` is a directory nspawnctl made for `key`: a real directory (a symlink is never
 * ours, whatever it points at) holding the marker of this key, or, from before markers existed,
 * a meta.json of this key and of the current cache format. A marker of any format counts, so an
 * entry left by an older format can still be pruned.
 */
export async function isOwnEntry(host: Host, dir: string, key: string): Promise<boolean> {
  if ((await host.fs.stat(dir))?.type !== 'dir') return false;
  const marker = await readJsonFile(host, posix.join(dir, IMAGE_MARKER));
  if (isObject(marker) && marker.kind === MARKER_KIND && marker.key === key && Number.isInteger(marker.format)) return true;
  const meta = await readJsonFile(host, posix.join(dir, 'meta.json'));
  return isObject(meta) && meta.key === key && meta.format === CACHE_FORMAT;
}

/** Writes the marker into a directory nspawnctl has just made (or owns already, see isOwnEntry). */
async function writeMarker(host: Host, dir: string, key: string): Promise<void> {
  const marker: ImageMarker = { kind: MARKER_KIND, format: CACHE_FORMAT, key };
  await host.fs.writeFile(posix.join(dir, IMAGE_MARKER), `${JSON.stringify(marker, null, 2)}\n`, { mode: 0o644 });
}

/** The refusal to replace or remove something in the cache that nspawnctl did not make. */
function foreignEntryError(path: string, images: string): OwnershipError {
  return new OwnershipError(
    `${path} is in the way of a base image, and nspawnctl did not make it (it is not a directory with ${IMAGE_MARKER}); refusing to replace it`,
    `Move it out of ${images}, or use another --cache-dir. If it is a build an older nspawnctl left behind, check that nothing is mounted below it, then remove it.`,
  );
}

/** Reads and checks one entry; undefined when it is missing, not a real directory, incomplete or not what its key says. */
export async function readImage(host: Host, options: CacheOptions, key: string): Promise<ImageMeta | undefined> {
  const dir = entryPath(options, key, 'image');
  if ((await host.fs.stat(dir))?.type !== 'dir') return undefined;
  const meta = (await readJsonFile(host, posix.join(dir, 'meta.json'))) as ImageMeta | undefined;
  if (!isObject(meta) || meta.key !== key || meta.format !== CACHE_FORMAT) return undefined;
  // A complete bootstrap has an init and a dpkg database.
  for (const p of ['rootfs/usr/lib/systemd/systemd', 'rootfs/var/lib/dpkg/status']) {
    if ((await host.fs.stat(posix.join(dir, p)))?.type !== 'file') return undefined;
  }
  return meta;
}

/** The complete images of this cache (nothing that is not nspawnctl's, no leftovers of builds). */
export async function listImages(host: Host, options: CacheOptions): Promise<ImageMeta[]> {
  const out: ImageMeta[] = [];
  for (const name of await host.fs.listDir(imagesDir(options))) {
    const entry = parseEntryName(name);
    if (entry?.kind !== 'image') continue;
    const meta = await readImage(host, options, entry.key);
    if (meta) out.push(meta);
  }
  return out;
}

/**
 * Provides base images for one apply. Concurrent requests for the same key share one bootstrap
 * (machines with the same base wait for it, they do not bootstrap it N times).
 */
export class ImageCache {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    private readonly host: Host,
    private readonly options: CacheOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Returns the path of the cached rootfs for this base, bootstrapping it when needed. */
  ensure(spec: Machine, tool: Bootstrapper, architecture: string, onLine?: (line: string) => void): Promise<string> {
    const key = imageKey(spec, tool, architecture);
    let p = this.inflight.get(key);
    if (!p) {
      p = this.build(key, spec, tool, architecture, onLine);
      this.inflight.set(key, p);
      p.catch(() => this.inflight.delete(key));
    }
    return p;
  }

  private async build(key: string, spec: Machine, tool: Bootstrapper, architecture: string, onLine?: (line: string) => void): Promise<string> {
    const dir = entryPath(this.options, key, 'image');
    const meta = await readImage(this.host, this.options, key);
    if (meta && this.now() - Date.parse(meta.created) <= this.options.maxAgeMs) {
      onLine?.(`base image ${key} from the cache`);
      return posix.join(dir, 'rootfs');
    }
    // Built beside its final place under a hidden name, renamed in when complete. Each path it
    // replaces or removes must be ours: checked before anything changes.
    for (const kind of ['image', 'building', 'old'] as const) {
      const path = entryPath(this.options, key, kind);
      if ((await this.host.fs.stat(path)) && !(await isOwnEntry(this.host, path, key))) throw foreignEntryError(path, imagesDir(this.options));
    }
    onLine?.(meta ? `base image ${key} is older than the maximum age: rebuilding` : `base image ${key}: bootstrapping`);
    const tmp = entryPath(this.options, key, 'building');
    await removeUnmounting(this.host, tmp);
    await this.host.fs.mkdir(tmp, 0o700);
    try {
      // Marked before the bootstrap writes anything, so even a killed build is ours to prune.
      await writeMarker(this.host, tmp, key);
      // On btrfs the image is a subvolume, so each machine made from it is a snapshot.
      if (await useSubvolumes(this.host, tmp)) await this.host.runner.run('btrfs', ['subvolume', 'create', posix.join(tmp, 'rootfs')]);
      // Unsafe I/O: nothing uses the tree before the rename below, and it is synced first.
      await bootstrapInto(this.host, tool, { ...spec, packages: spec.basePackages }, posix.join(tmp, 'rootfs'), onLine);
      const fresh: ImageMeta = {
        format: CACHE_FORMAT,
        key,
        distribution: spec.distribution,
        suite: spec.suite,
        variant: spec.variant,
        mirror: spec.mirror,
        architecture,
        bootstrapper: tool,
        packages: [...spec.basePackages].sort(),
        created: new Date(this.now()).toISOString(),
      };
      await this.host.fs.writeFile(posix.join(tmp, 'meta.json'), `${JSON.stringify(fresh, null, 2)}\n`, { mode: 0o644 });
      // One syncfs for everything the bootstrap wrote without syncing, before the image is published.
      await syncFilesystem(this.host, tmp);
      if (await this.host.fs.stat(dir)) {
        const old = entryPath(this.options, key, 'old');
        await this.host.fs.removeTree(old);
        // An image from before markers gets one (a no-op for the others), so that .KEY.old,
        // if we are stopped before it is removed, is marked like every other leftover.
        await writeMarker(this.host, dir, key);
        await this.host.fs.rename(dir, old);
        await this.host.fs.removeTree(old);
      }
      await this.host.fs.rename(tmp, dir);
    } catch (err) {
      await removeUnmounting(this.host, tmp).catch(() => undefined);
      throw err;
    }
    return posix.join(dir, 'rootfs');
  }
}

/** The filesystem type of the filesystem holding `path` ("btrfs", "ext2/ext3", "xfs", ...). */
export async function filesystemType(host: Host, path: string): Promise<string | undefined> {
  const r = await host.runner.run('stat', ['--file-system', '--format=%T', path], { allowFailure: true });
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

/** True when new base images under `dir` should be btrfs subvolumes (so copies can be snapshots). */
export async function useSubvolumes(host: Host, dir: string): Promise<boolean> {
  return (await findProgram(host, 'btrfs')) !== undefined && (await filesystemType(host, dir)) === 'btrfs';
}

/**
 * Copies a cached rootfs to `target`: a btrfs snapshot when the image is a subvolume on the same
 * btrfs filesystem (constant time), else cp with reflinks (btrfs, XFS) or a plain copy.
 */
export async function copyImage(host: Host, source: string, target: string): Promise<'snapshot' | 'copy'> {
  if (await host.fs.stat(target)) throw new NspawnctlError(`internal: ${target} exists`);
  if ((await useSubvolumes(host, posix.dirname(target))) && (await filesystemType(host, source)) === 'btrfs') {
    // Fails (and leaves nothing) when the source is not a subvolume or is on another filesystem.
    const r = await host.runner.run('btrfs', ['subvolume', 'snapshot', source, target], { allowFailure: true });
    if (r.exitCode === 0) return 'snapshot';
  }
  await host.runner.run('cp', ['--archive', '--reflink=auto', '--no-target-directory', source, target], { dieWithParent: true });
  return 'copy';
}

/** What pruneImages removed, and the entries it left alone because nspawnctl did not make them. */
export interface PruneResult {
  removed: string[];
  foreign: string[];
}

/**
 * Removes nspawnctl's entries older than `maxAgeMs` (all of them with `all`), broken ones and
 * leftovers of interrupted builds. Anything else in the images directory is left alone and
 * returned as `foreign`: the directory may be shared, or be the wrong --cache-dir.
 */
export async function pruneImages(host: Host, options: CacheOptions, all: boolean, now = Date.now()): Promise<PruneResult> {
  const result: PruneResult = { removed: [], foreign: [] };
  for (const name of await host.fs.listDir(imagesDir(options))) {
    const dir = posix.join(imagesDir(options), name);
    const entry = parseEntryName(name);
    if (!entry || !(await isOwnEntry(host, dir, entry.key))) {
      result.foreign.push(dir);
      continue;
    }
    // Leftovers of interrupted builds, broken entries, expired entries (an unreadable date
    // counts as expired, as it does for apply).
    if (entry.kind === 'image' && !all) {
      const meta = await readImage(host, options, entry.key);
      if (meta && now - Date.parse(meta.created) <= options.maxAgeMs) continue;
    }
    // Only a leftover build can hold a killed bootstrapper's processes and mounts.
    if (entry.kind === 'image') await host.fs.removeTree(dir);
    else await removeUnmounting(host, dir);
    result.removed.push(dir);
  }
  return result;
}
