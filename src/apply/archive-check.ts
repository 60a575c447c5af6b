// Everything restore checks in an archive before it writes anything, in this order: the trailer
// and the checksum (Node alone reads the file), then every member (zstd and tar list it), then
// the metadata. backup runs the same checks on the file it has just written, so an archive it
// leaves behind is one restore takes. Also the progress lines both commands show.
import { createHash } from 'node:crypto';
import { CommandFailedError, NspawnctlError, PreflightError } from '../errors';
import type { ArchiveFile } from '../host/archive-io';
import { findProgram, Host } from '../host/host';
import { archiveError, BackupMeta, decodeTrailer, MAX_META_BYTES, parseMeta, TAR_LIST, TAR_READ_META, TRAILER_LENGTH, ZSTD_DECOMPRESS } from './backup-format';
import { MAX_LISTING_LINE, MemberChecker } from './backup-members';

export interface CheckedArchive {
  /** sha256 of the content (every byte before the trailer). */
  sha256: string;
  /** Bytes the checksum covers; what tar and zstd are given. */
  contentLength: number;
  members: number;
  meta: BackupMeta;
}

/** Bytes read so far, of how many (when known). */
export type OnBytes = (done: number, total?: number) => void;

/** Refuses (exit 3) when tar or zstd is missing, before anything is read or stopped. */
export async function assertArchiveTools(host: Host, command: string): Promise<void> {
  const missing: { what: string; fix: string }[] = [];
  for (const [program, pkg] of [
    ['tar', 'tar'],
    ['zstd', 'zstd'],
  ]) {
    if (!(await findProgram(host, program))) missing.push({ what: `${program} is not installed (nspawnctl ${command} writes and reads .tar.zst archives with it)`, fix: `apt-get install ${pkg}, or run: nspawnctl host init` });
  }
  if (missing.length > 0) throw new PreflightError(missing);
}

/**
 * Checks an open archive: the trailer, the checksum, every member, the metadata. Throws an
 * archiveError (exit 2) naming the first thing wrong; never writes anything.
 */
export async function checkArchive(host: Host, file: ArchiveFile, onBytes?: OnBytes): Promise<CheckedArchive> {
  const shown = file.path;
  if (file.size < TRAILER_LENGTH) throw archiveError('it is too short to be one', shown);
  const contentLength = file.size - TRAILER_LENGTH;
  const expected = decodeTrailer(await file.read(contentLength, TRAILER_LENGTH));
  if (!expected) throw archiveError('it does not end with nspawnctl\'s checksum (not written by nspawnctl backup, or cut short)', shown);

  // 1. The checksum, with nothing but Node reading the file: zstd and tar never see a damaged one.
  const hash = createHash('sha256');
  let read = 0;
  for await (const chunk of file.stream(0, contentLength)) {
    hash.update(chunk as Buffer);
    read += (chunk as Buffer).length;
    onBytes?.(read, contentLength * 2);
  }
  const actual = hash.digest('hex');
  if (read !== contentLength) throw archiveError(`it could be read only to byte ${read} of ${contentLength}`, shown);
  if (actual !== expected) throw archiveError(`checksum mismatch: it is damaged or was changed (its trailer says sha256 ${expected}, its content hashes to ${actual})`, shown);

  // 2. Every member, as tar lists it.
  const checker = new MemberChecker();
  let listed;
  try {
    listed = await host.runner.pipeline([ZSTD_DECOMPRESS, TAR_LIST], {
      input: { file, start: 0, end: contentLength },
      output: { kind: 'lines', onLine: (line) => checker.addLine(line), maxLineBytes: MAX_LISTING_LINE },
      onProgress: (p) => onBytes?.(contentLength + p.input, contentLength * 2),
    });
  } catch (err) {
    throw unreadable(err, shown);
  }
  if (listed.inputSha256 !== expected) throw archiveError('it changed while it was being read', shown);
  const problems = checker.problems();
  if (problems.length > 0) {
    throw archiveError(`${problems.length === 1 ? 'a member is' : 'members are'} unsafe to extract:\n${problems.map((p) => `  - ${p}`).join('\n')}`, shown);
  }

  // 3. The metadata (the first member; tar stops reading after it).
  let text;
  try {
    text = (await host.runner.pipeline([ZSTD_DECOMPRESS, TAR_READ_META], { input: { file, start: 0, end: contentLength }, output: { kind: 'text', maxBytes: MAX_META_BYTES }, lastMayStopEarly: true })).stdout;
  } catch (err) {
    throw unreadable(err, shown);
  }
  return { sha256: expected, contentLength, members: checker.members, meta: parseMeta(text) };
}

/** zstd or tar could not read it: a damaged or foreign archive, not a failure of the host. */
function unreadable(err: unknown, file: string): NspawnctlError {
  if (err instanceof CommandFailedError) {
    const e = archiveError(`${err.argv[0]} could not read it (${err.message})`, file);
    return new NspawnctlError(e.message, { exitCode: e.exitCode, cause: err });
  }
  return err as NspawnctlError;
}

/** "1.2 GiB", "310 MiB", "12 KiB", "512 B". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** Seconds with one decimal: "12.3 s". */
export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Calls `show` with a progress line at most every `intervalMs` (listr2's plain renderer prints
 * every change as a line, so it gets fewer): bytes, rate, and a percentage when the total is known.
 */
export function progressReporter(show: (line: string) => void, intervalMs: number, now: () => number, describe: (done: number, total: number | undefined, rate: number) => string): OnBytes & { flush: () => void } {
  const start = now();
  let last = -Infinity;
  let latest: [number, number | undefined] = [0, undefined];
  const emit = () => {
    const elapsed = Math.max(now() - start, 1);
    show(describe(latest[0], latest[1], (latest[0] * 1000) / elapsed));
  };
  const report = ((done: number, total?: number) => {
    latest = [done, total];
    const t = now();
    if (t - last < intervalMs) return;
    last = t;
    emit();
  }) as OnBytes & { flush: () => void };
  report.flush = emit;
  return report;
}

/** "840 MiB of 1.2 GiB (68%), 45 MiB/s". */
export function describeBytes(done: number, total: number | undefined, rate: number): string {
  const of = total ? ` of ${formatBytes(total)} (${Math.floor((done * 100) / total)}%)` : '';
  return `${formatBytes(done)}${of}, ${formatBytes(rate)}/s`;
}

/** How often progress lines change, for each listr2 renderer. */
export function progressInterval(renderer: 'default' | 'simple' | 'silent'): number {
  return renderer === 'default' ? 250 : renderer === 'simple' ? 10_000 : Infinity;
}
