// What a backup archive is, in one place: a zstd-compressed POSIX tar whose first member is
// nspawnctl-backup.json (the machine's record, settings and state) and whose other members are
// rootfs/ and everything below it, followed by one zstd skippable frame that carries the sha256
// of every byte before it. zstd and tar skip that frame, so the file is an ordinary .tar.zst.
// Only the system's tar and zstd read and write the archive itself; the argument vectors are here.
import { posix } from 'node:path';
import { z } from 'zod';
import { NspawnctlError } from '../errors';
import { appArmorDropInPath, credentialsDropInPath, isWithin, limitsDropInPath, nspawnFilePath, rootfsPath } from '../host/paths';
import { MACHINE_NAME } from '../manifest/schema';
import { MachineRecord, machineRecordSchema } from '../plan/records';

/** The first member: what the archive holds besides the tree. */
export const META_MEMBER = 'nspawnctl-backup.json';
/** The machine's root filesystem: this directory and everything below it. */
export const ROOTFS_MEMBER = 'rootfs';
export const ARCHIVE_FORMAT = 1;
/** The metadata member is small: settings, a record, a few names. */
export const MAX_META_BYTES = 1024 * 1024;
/** A settings file is a few hundred bytes; more is not one of nspawnctl's. */
export const MAX_SETTINGS_BYTES = 64 * 1024;

// The trailer: a zstd skippable frame (RFC 8878, 3.1.2): a magic number from 0x184D2A50 to
// 0x184D2A5F, the payload's length (both 32-bit little-endian), the payload. 0x50 (pzstd) and
// 0x5E (the seekable format) are taken by others; 0x57 is nspawnctl's.
const TRAILER_MAGIC = 0x184d2a57;
const TRAILER_PREFIX = `nspawnctl-backup format=${ARCHIVE_FORMAT} sha256=`;
const TRAILER_PAYLOAD_LENGTH = TRAILER_PREFIX.length + 64 + 1;
/** Bytes at the end of every archive that the checksum does not cover: the trailer itself. */
export const TRAILER_LENGTH = 8 + TRAILER_PAYLOAD_LENGTH;

/** The trailer for an archive whose bytes before it hash to `sha256` (hex). */
export function encodeTrailer(sha256: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new NspawnctlError(`internal: ${sha256} is not a sha256`);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(TRAILER_MAGIC, 0);
  head.writeUInt32LE(TRAILER_PAYLOAD_LENGTH, 4);
  return Buffer.concat([head, Buffer.from(`${TRAILER_PREFIX}${sha256}\n`, 'latin1')]);
}

/** The sha256 a trailer carries, or undefined when `bytes` is not one of nspawnctl's trailers. */
export function decodeTrailer(bytes: Buffer): string | undefined {
  if (bytes.length !== TRAILER_LENGTH) return undefined;
  if (bytes.readUInt32LE(0) !== TRAILER_MAGIC || bytes.readUInt32LE(4) !== TRAILER_PAYLOAD_LENGTH) return undefined;
  const m = new RegExp(`^${TRAILER_PREFIX.replace(/[.=]/g, '\\$&')}([0-9a-f]{64})\\n$`).exec(bytes.subarray(8).toString('latin1'));
  return m?.[1];
}

/**
 * Extended attributes that travel: the machine's own (user.*) and file capabilities. trusted.*
 * and the rest of security.* are left out both ways: a machine cannot set them, and what they
 * mean to host root (overlayfs redirects, IMA) must not come from an archive. POSIX ACLs travel
 * with --acls.
 */
const XATTRS = ['--xattrs', '--xattrs-include=user.*', '--xattrs-include=security.capability', '--acls'];

/** zstd reading standard input, writing standard output; all cores. */
export const ZSTD_COMPRESS = { file: 'zstd', args: ['--quiet', '--stdout', '--threads=0'] };
/** zstd decompressing standard input (it skips the trailer; its window is capped by its default memory limit). */
export const ZSTD_DECOMPRESS = { file: 'zstd', args: ['--decompress', '--quiet', '--stdout'] };

/**
 * tar writing the archive to standard output: the metadata file from `metaDir`, then the tree at
 * `treeDir` as rootfs/. It never follows a symlink (no --dereference), stays on the tree's
 * filesystem (no mounts, no btrfs subvolumes below it), archives FIFOs and device nodes as such
 * without opening them (GNU tar opens regular files with O_NOFOLLOW|O_NONBLOCK and checks them
 * again), stores holes of sparse files as holes, and keeps numeric owners.
 */
export function tarCreateCommand(metaDir: string, treeDir: string): { file: string; args: string[] } {
  return {
    file: 'tar',
    args: [
      '--create',
      '--file=-',
      '--format=posix',
      '--pax-option=delete=atime,delete=ctime',
      '--numeric-owner',
      ...XATTRS,
      '--sparse',
      '--one-file-system',
      `--directory=${metaDir}`,
      META_MEMBER,
      `--directory=${treeDir}`,
      // "." and "./etc" become "rootfs" and "rootfs/etc"; hard link targets too, symlink targets never (S).
      `--transform=s,^\\.\\(/\\|$\\),${ROOTFS_MEMBER}\\1,S`,
      '.',
    ],
  };
}

/**
 * tar listing standard input: one line per member, names exactly as stored (--absolute-names:
 * nothing stripped, so a leading / or .. is seen) and C-quoted (a newline in a name is \n).
 */
export const TAR_LIST = {
  file: 'tar',
  args: ['--list', '--verbose', '--file=-', '--absolute-names', '--numeric-owner', '--full-time', '--quoting-style=c'],
};

/** tar printing the metadata member, which is first: it stops reading after it. */
export const TAR_READ_META = { file: 'tar', args: ['--extract', '--file=-', '--to-stdout', '--occurrence=1', '--', META_MEMBER] };

/**
 * tar extracting rootfs/ into `dir`, which becomes the tree's top directory (its owner, mode,
 * ACLs and attributes come from the rootfs/ member). Numeric owners, modes, the extended
 * attributes of XATTRS. Leading "/" and ".." are stripped and refused by tar itself too, but
 * restore has checked every member before this runs.
 */
export function tarExtractCommand(dir: string): { file: string; args: string[] } {
  return {
    file: 'tar',
    args: [
      '--extract',
      '--file=-',
      `--directory=${dir}`,
      '--numeric-owner',
      '--same-owner',
      '--same-permissions',
      ...XATTRS,
      `--transform=s,^${ROOTFS_MEMBER}\\(/\\|$\\),./,S`,
      '--',
      ROOTFS_MEMBER,
    ],
  };
}

/** A generated settings file of the machine, kept in the archive. */
export const settingsFileSchema = z.object({ path: z.string(), content: z.string().max(MAX_SETTINGS_BYTES) }).strict();

/** nspawnctl-backup.json. */
export const backupMetaSchema = z
  .object({
    kind: z.literal('nspawnctl-backup'),
    format: z.literal(ARCHIVE_FORMAT),
    machine: z.string().regex(MACHINE_NAME),
    created: z.string(),
    nspawnctl: z.string(),
    /** How the tree was read: a btrfs snapshot of the running machine, while it was stopped for it, or as it was (not running). */
    consistency: z.enum(['snapshot', 'stopped', 'not-running']),
    /** Whether it ran and started at boot: restore under the same name does the same. */
    running: z.boolean(),
    enabled: z.boolean(),
    record: machineRecordSchema,
    settings: z.array(settingsFileSchema).max(4),
  })
  .strict();
export type BackupMeta = z.infer<typeof backupMetaSchema>;

/** The host files nspawnctl renders for a machine besides its tree: the .nspawn file and the unit's drop-ins. */
export function settingsPaths(machine: string): string[] {
  return [nspawnFilePath(machine), limitsDropInPath(machine), appArmorDropInPath(machine), credentialsDropInPath(machine)];
}

/** The default archive name: NAME-20261129T230512Z.tar.zst (UTC, no colons). */
export function defaultArchiveName(machine: string, now: Date): string {
  return `${machine}-${now.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '')}.tar.zst`;
}

/**
 * A settings file rendered for another name: the header names the machine, and `Hostname=` is
 * the machine's name unless the manifest chose another. Nothing else in these files depends on
 * the name (the credentials drop-in uses %i).
 */
export function renameSettings(text: string, from: string, to: string): string {
  return text
    .split('\n')
    .map((line) => {
      if (line === `Hostname=${from}`) return `Hostname=${to}`;
      const header = /^(# Generated by nspawnctl from .* for (?:.* of )?machine )([a-z0-9-]+)(\.)$/.exec(line);
      if (header && header[2] === from) return `${header[1]}${to}${header[3]}`;
      return line;
    })
    .join('\n');
}

/**
 * The archived record, checked and made the record of `to`. Every path it lists must be one
 * nspawnctl writes for that machine: its settings files, or a plain path inside its tree. A
 * record is what destroy removes, so a path from anywhere else (a tampered archive naming
 * /etc/passwd) refuses the archive instead of being carried over.
 */
export function recordFor(meta: BackupMeta, to: string): MachineRecord {
  const from = meta.machine;
  const record = meta.record;
  if (record.name !== from) throw archiveError(`its record is machine ${record.name}'s, not ${from}'s`);
  const settings = settingsPaths(from);
  const top = rootfsPath(from);
  const files = record.files.map((p) => {
    const i = settings.indexOf(p);
    if (i >= 0) return settingsPaths(to)[i];
    if (posix.normalize(p) === p && isWithin(p, top) && p !== top && !p.includes('\0')) return `${rootfsPath(to)}${p.slice(top.length)}`;
    throw archiveError(`its record lists ${JSON.stringify(p)}, which is not a file nspawnctl writes for machine ${from}`);
  });
  return { ...record, name: to, files };
}

/** The settings files of the archive at `to`'s paths, renamed for it; a path that is not one of `from`'s refuses the archive. */
export function settingsFor(meta: BackupMeta, to: string): { path: string; content: string }[] {
  const from = meta.machine;
  const paths = settingsPaths(from);
  const seen = new Set<string>();
  return meta.settings.map((s) => {
    const i = paths.indexOf(s.path);
    if (i < 0) throw archiveError(`it holds settings for ${JSON.stringify(s.path)}, which is not a settings file of machine ${from}`);
    if (seen.has(s.path)) throw archiveError(`it holds ${s.path} twice`);
    seen.add(s.path);
    return { path: settingsPaths(to)[i], content: to === from ? s.content : renameSettings(s.content, from, to) };
  });
}

/** Parses and checks nspawnctl-backup.json. */
export function parseMeta(text: string): BackupMeta {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw archiveError(`${META_MEMBER} is not JSON (${(err as Error).message})`);
  }
  const kind = (raw as { kind?: unknown; format?: unknown } | null)?.kind;
  const format = (raw as { format?: unknown } | null)?.format;
  if (kind === 'nspawnctl-backup' && typeof format === 'number' && format !== ARCHIVE_FORMAT) {
    throw archiveError(`it is in backup format ${format}; this nspawnctl reads format ${ARCHIVE_FORMAT}`);
  }
  const parsed = backupMetaSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw archiveError(`${META_MEMBER} is not valid: ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** An archive restore will not use: exit 2, nothing changed. */
export function archiveError(why: string, file?: string): NspawnctlError {
  return new NspawnctlError(`${file ? `${file}: ` : ''}not a usable nspawnctl backup: ${why}; nothing was restored`, { exitCode: 2 });
}
