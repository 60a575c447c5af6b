// Base images: a bootstrapped rootfs kept under /var/cache/nspawnctl/images/KEY, so a machine
// with the same base is a copy (reflinked where the filesystem can) instead of a bootstrap.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { NspawnctlError } from '../errors';
import { findProgram, Host } from '../host/host';
import { Machine } from '../manifest/schema';
import { Bootstrapper, bootstrapCommand, dropBootstrapAptOptions } from './bootstrap';
import { removeUnmounting } from './staging';
import { removeStaging } from './staging';

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

/** Reads and checks one entry; undefined when it is missing, incomplete or not what its key says. */
export async function readImage(host: Host, options: CacheOptions, key: string): Promise<ImageMeta | undefined> {
  const dir = posix.join(imagesDir(options), key);
  const text = await host.fs.readText(posix.join(dir, 'meta.json'));
  if (!text) return undefined;
  try {
    const meta = JSON.parse(text) as ImageMeta;
    if (meta.key !== key || meta.format !== CACHE_FORMAT) return undefined;
    // A complete bootstrap has an init and a dpkg database.
    for (const p of ['rootfs/usr/lib/systemd/systemd', 'rootfs/var/lib/dpkg/status']) {
      if ((await host.fs.stat(posix.join(dir, p)))?.type !== 'file') return undefined;
    }
    return meta;
  } catch {
    return undefined;
  }
}

export async function listImages(host: Host, options: CacheOptions): Promise<ImageMeta[]> {
  const out: ImageMeta[] = [];
  for (const key of await host.fs.listDir(imagesDir(options))) {
    if (key.startsWith('.')) continue;
    const meta = await readImage(host, options, key);
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
    const dir = posix.join(imagesDir(this.options), key);
    const meta = await readImage(this.host, this.options, key);
    if (meta && this.now() - Date.parse(meta.created) <= this.options.maxAgeMs) {
      onLine?.(`base image ${key} from the cache`);
      return posix.join(dir, 'rootfs');
    }
    onLine?.(meta ? `base image ${key} is older than the maximum age: rebuilding` : `base image ${key}: bootstrapping`);
    // Built beside its final place under a hidden name, renamed in when complete.
    const tmp = posix.join(imagesDir(this.options), `.${key}.building`);
    await removeUnmounting(this.host, tmp);
    await this.host.fs.mkdir(tmp, 0o700);
    try {
      // On btrfs the image is a subvolume, so each machine made from it is a snapshot.
      if (await useSubvolumes(this.host, tmp)) await this.host.runner.run('btrfs', ['subvolume', 'create', posix.join(tmp, 'rootfs')]);
      const cmd = bootstrapCommand(tool, { ...spec, packages: spec.basePackages }, posix.join(tmp, 'rootfs'));
      await this.host.runner.run(cmd.file, cmd.args, { env: cmd.env, onLine, dieWithParent: true });
      await dropBootstrapAptOptions(this.host, posix.join(tmp, 'rootfs'));
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
      if (await this.host.fs.stat(dir)) {
        const old = posix.join(imagesDir(this.options), `.${key}.old`);
        await this.host.fs.removeTree(old);
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

/** Removes cache entries older than `maxAgeMs` (all of them with `all`). */
export async function pruneImages(host: Host, options: CacheOptions, all: boolean, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await host.fs.listDir(imagesDir(options))) {
    const dir = posix.join(imagesDir(options), name);
    const meta = name.startsWith('.') ? undefined : await readImage(host, options, name);
    // Hidden leftovers of interrupted builds, broken entries, expired entries (an unreadable
    // date counts as expired, as it does for apply).
    if (all || !meta || !(now - Date.parse(meta.created) <= options.maxAgeMs)) {
      // Only a leftover build can hold a killed bootstrapper's processes and mounts.
      if (name.startsWith('.')) await removeUnmounting(host, dir);
      else await host.fs.removeTree(dir);
      removed.push(dir);
    }
  }
  return removed;
}

