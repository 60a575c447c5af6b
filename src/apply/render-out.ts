// Writes the generated files into a directory for review (nspawnctl render --out). The directory
// is the user's, so it gets the same care as a machine's tree: written only through a
// RootfsHandle (never through a symlink in it), and only a directory that is new, empty, or an
// earlier render of nspawnctl's (its marker file lists what it wrote) is written into.
import { posix } from 'node:path';
import { NspawnctlError, PermissionDeniedError, UnsafePathError } from '../errors';
import { HostFs } from '../host/fs';
import { RootfsHandle } from '../host/rootfs-handle';
import { DesiredEntry } from '../render/desired';

/** The file that marks a directory as rendered by nspawnctl and lists what it holds. */
export const RENDER_MARKER = '/.nspawnctl-render.json';

export interface RenderReport {
  /** Every file of this render, as host paths. */
  files: string[];
  /** Those that were written (the others were already equal). */
  written: string[];
  /** Files of the earlier render that this one no longer has, removed. */
  removed: string[];
  /** What the directory was before: missing (created), empty, or an earlier render. */
  before: 'created' | 'empty' | 'earlier render';
}

/** Renders `entries` into the root of `out` (a filesystem rooted at the output directory). */
export async function renderInto(out: HostFs, label: string, entries: DesiredEntry[]): Promise<RenderReport> {
  const top = await out.stat('/');
  if (top && top.type !== 'dir') {
    throw new NspawnctlError(`${label} exists and is not a directory${top.type === 'symlink' ? ' (it is a symlink; render never writes through one)' : ''}`, { exitCode: 2 });
  }
  if (!top) {
    await out.mkdir('/', 0o755).catch((err: unknown) => {
      // A file on the way (--out FILE/sub) is a usage problem, like DIR being a file.
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new NspawnctlError(`cannot create ${label}: a component of its path is a file, not a directory`, { exitCode: 2, cause: err });
      throw usageError(err, label);
    });
  }
  let tree: RootfsHandle | undefined;
  try {
    tree = await out.openRootfs('/');
    const marker = await tree.inspect(RENDER_MARKER);
    const previous = marker?.type === 'file' ? parseMarker(marker.content) : undefined;
    const names = await tree.listDir('/');
    if (!previous && names.length > 0) {
      throw new NspawnctlError(`${label} is not empty and was not written by nspawnctl render; nothing was written`, {
        exitCode: 2,
        hint: 'Render into a new or empty directory. Render replaces the files of its own earlier renders there, and only those.',
      });
    }
    const files = entries.map((e) => e.hostPath);
    const written: string[] = [];
    for (const e of entries) {
      const changed = e.kind === 'symlink' ? await tree.writeSymlink(e.hostPath, e.target, {}) : await tree.writeFile(e.hostPath, e.content, { mode: e.mode, dirMode: e.dirMode });
      if (changed) written.push(e.hostPath);
    }
    const wanted = new Set(files);
    const removed: string[] = [];
    for (const p of (previous ?? []).filter((f) => !wanted.has(f))) {
      if (await tree.removeFile(p)) removed.push(p);
      // Directories the stale file leaves empty go too, up to the output directory.
      for (let dir = posix.dirname(p); dir !== '/' && (await tree.removeEmptyDir(dir)); dir = posix.dirname(dir));
    }
    await tree.writeFile(RENDER_MARKER, `${JSON.stringify({ renderedBy: 'nspawnctl', files: [...files].sort() }, null, 2)}\n`, { mode: 0o644 });
    return { files, written, removed, before: previous ? 'earlier render' : top ? 'empty' : 'created' };
  } catch (err) {
    // A symlink or special file in the user's own directory is a usage problem, not a host one.
    if (err instanceof UnsafePathError) throw new NspawnctlError(`${err.message}; nothing more was written`, { exitCode: 2, hint: 'Render into a new or empty directory.', cause: err });
    throw usageError(err, label);
  } finally {
    await tree?.close();
  }
}

/** A directory the user cannot write to is theirs to choose again (exit 2); render needs no root. */
function usageError(err: unknown, label: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (!(err instanceof PermissionDeniedError) && code !== 'EACCES' && code !== 'EPERM') return err;
  // Writes inside DIR go through its RootfsHandle, whose errors name /proc/self/fd paths: name DIR.
  const message = err instanceof PermissionDeniedError ? err.message : `cannot write into ${label}: permission denied`;
  return new NspawnctlError(message, { exitCode: 2, hint: 'Render into a directory you can write to; render needs no root.', cause: err });
}

/** The files an earlier render listed; an unreadable marker is not ours. */
function parseMarker(text: string): string[] | undefined {
  try {
    const m = JSON.parse(text) as { renderedBy?: unknown; files?: unknown };
    if (m.renderedBy !== 'nspawnctl' || !Array.isArray(m.files)) return undefined;
    return m.files.filter((f): f is string => typeof f === 'string' && /^\/[^\0]*$/.test(f) && !f.split('/').includes('..'));
  } catch {
    return undefined;
  }
}
