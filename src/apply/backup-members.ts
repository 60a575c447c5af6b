// The member check restore runs over an archive's listing before anything is extracted. A
// listing line is what `tar --list --verbose --absolute-names --numeric-owner --quoting-style=c`
// prints (LC_ALL=C): the type and mode, UID/GID, size (or MAJOR,MINOR), date, then the name in
// double quotes with C escapes, and for links ` -> "TARGET"` or ` link to "TARGET"`. Names are
// handled as raw bytes (one latin1 character per byte), so nothing is lost or merged in decoding.
import { META_MEMBER, MAX_META_BYTES, ROOTFS_MEMBER } from './backup-format';

export type MemberType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface Member {
  type: MemberType;
  /** The stored name, a directory's without its trailing "/". */
  name: string;
  /** A symlink's target or a hard link's member. */
  target?: string;
  uid: number;
  gid: number;
  /** Size in bytes (0 for what has none). */
  size: number;
  /** A device's numbers. */
  device?: [number, number];
}

/** The most members restore takes: its checks keep every name in memory. */
export const MAX_MEMBERS = 2_000_000;
/** The longest listing line (a name is at most PATH_MAX bytes, four characters each when escaped). */
export const MAX_LISTING_LINE = 64 * 1024;

const TYPES: Record<string, MemberType> = { '-': 'file', d: 'dir', l: 'symlink', h: 'hardlink', c: 'char', b: 'block', p: 'fifo' };

/**
 * The character devices an archive may have, and only in /dev: those mmdebstrap and debootstrap
 * make in a new tree (systemd-nspawn mounts a fresh /dev over them anyway). A machine in a user
 * namespace cannot make device nodes at all.
 */
export const ALLOWED_DEVICES: Record<string, string> = {
  '1,3': 'null',
  '1,5': 'zero',
  '1,7': 'full',
  '1,8': 'random',
  '1,9': 'urandom',
  '5,0': 'tty',
  '5,1': 'console',
  '5,2': 'ptmx',
};

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v', '\\': '\\', '"': '"', '?': '?', "'": "'" };

/** Undoes tar's C quoting (the text between the quotes); undefined for an escape tar never writes. */
export function unquoteC(text: string): string | undefined {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = text[i + 1];
    if (next === undefined) return undefined;
    const octal = /^[0-7]{1,3}/.exec(text.slice(i + 1));
    if (octal) {
      const code = parseInt(octal[0], 8);
      if (code > 0xff) return undefined;
      out += String.fromCharCode(code);
      i += octal[0].length;
    } else if (ESCAPES[next] !== undefined) {
      out += ESCAPES[next];
      i += 1;
    } else {
      return undefined;
    }
  }
  return out;
}

const QUOTED = '"((?:[^"\\\\]|\\\\.)*)"';
const LINE = new RegExp(`^(.)(\\S{9})\\S*\\s+(\\d+)/(\\d+)\\s+(\\d+|\\d+,\\d+)\\s+[^"]*?${QUOTED}(?: -> ${QUOTED}| link to ${QUOTED})?$`);

/** One listing line as a member, or a reason it cannot be one. */
export function parseListingLine(line: string): Member | { problem: string } {
  const m = LINE.exec(line);
  if (!m) return { problem: `tar listed a line nspawnctl cannot read: ${JSON.stringify(line.slice(0, 200))}` };
  const type = TYPES[m[1]];
  const rawName = unquoteC(m[6]);
  const rawTarget = m[7] ?? m[8];
  const target = rawTarget === undefined ? undefined : unquoteC(rawTarget);
  if (rawName === undefined || (rawTarget !== undefined && target === undefined)) return { problem: `tar listed a name nspawnctl cannot read: ${JSON.stringify(line.slice(0, 200))}` };
  if (!type) return { problem: `${show(rawName)} is a member of type "${m[1]}" (not a file, directory, link, FIFO or device)` };
  if ((type === 'symlink') !== (m[7] !== undefined) || (type === 'hardlink') !== (m[8] !== undefined)) return { problem: `tar listed a line nspawnctl cannot read: ${JSON.stringify(line.slice(0, 200))}` };
  const numbers = m[5].split(',').map(Number);
  const isDevice = type === 'char' || type === 'block';
  if (isDevice !== (numbers.length === 2)) return { problem: `tar listed a line nspawnctl cannot read: ${JSON.stringify(line.slice(0, 200))}` };
  // A directory is listed with a trailing "/".
  const name = type === 'dir' && rawName.endsWith('/') && rawName !== '/' ? rawName.slice(0, -1) : rawName;
  return {
    type,
    name,
    ...(target !== undefined ? { target } : {}),
    uid: Number(m[3]),
    gid: Number(m[4]),
    size: isDevice ? 0 : numbers[0],
    ...(isDevice ? { device: [numbers[0], numbers[1]] as [number, number] } : {}),
  };
}

/** A name as messages show it: quoted, control characters escaped. */
export function show(name: string): string {
  return JSON.stringify(name).replace(/[\u007f-\u00ff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
}

/** Why a stored name is not a plain relative path, or undefined when it is one. */
function nameProblem(name: string): string | undefined {
  if (name === '') return 'has an empty name';
  if (name.startsWith('/')) return 'is an absolute name';
  const parts = name.split('/');
  if (parts.includes('..')) return 'has a ".." in its name';
  if (parts.includes('.')) return 'has a "." in its name';
  if (parts.includes('')) return 'has an empty component ("//" or a trailing "/") in its name';
  if (name.includes('\0')) return 'has a NUL byte in its name';
  return undefined;
}

/**
 * Checks an archive's members one by one, in order, as tar lists them; problems() says what is
 * wrong. Every archive backup writes passes: the metadata first, then rootfs/ and, below it,
 * every directory before what it holds, each name once, plain relative names, hard links only to
 * a file before them, device nodes only the harmless ones in rootfs/dev. Anything else is refused:
 * an absolute name or "..", a name below a symlink of the archive (tar would write through it),
 * a hard link to a name outside the tree, another top-level name, a device elsewhere.
 */
export class MemberChecker {
  private readonly kinds = new Map<string, MemberType>();
  private readonly found: string[] = [];
  private count = 0;

  /** Takes one listing line. */
  addLine(line: string): void {
    if (this.found.length >= 20) return;
    const member = parseListingLine(line);
    if ('problem' in member) this.problem(member.problem);
    else this.add(member);
  }

  add(member: Member): void {
    this.count++;
    if (this.count > MAX_MEMBERS) {
      if (this.count === MAX_MEMBERS + 1) this.problem(`it has more than ${MAX_MEMBERS} members`);
      return;
    }
    const { name } = member;
    const first = this.count === 1;
    if (name === META_MEMBER || first) {
      if (!first) return this.problem(`${META_MEMBER} is not the first member`);
      if (name !== META_MEMBER) return this.problem(`the first member is ${show(name)}, not ${META_MEMBER}`);
      if (member.type !== 'file') return this.problem(`${META_MEMBER} is not a regular file`);
      if (member.size > MAX_META_BYTES) return this.problem(`${META_MEMBER} is larger than ${MAX_META_BYTES} bytes`);
      this.kinds.set(name, 'file');
      return;
    }
    const bad = nameProblem(name);
    if (bad) return this.problem(`${show(name)} ${bad}`);
    if (name !== ROOTFS_MEMBER && !name.startsWith(`${ROOTFS_MEMBER}/`)) return this.problem(`${show(name)} is outside rootfs/ (an archive holds only ${META_MEMBER} and rootfs/)`);
    if (this.kinds.has(name)) return this.problem(`${show(name)} is in the archive twice`);
    if (name === ROOTFS_MEMBER) {
      if (member.type !== 'dir') return this.problem(`${ROOTFS_MEMBER} is not a directory`);
      this.kinds.set(name, 'dir');
      return;
    }
    const parent = name.slice(0, name.lastIndexOf('/'));
    const parentKind = this.kinds.get(parent);
    if (parentKind === 'symlink') return this.problem(`${show(name)} goes through ${show(parent)}, a symlink of the archive`);
    if (parentKind === undefined) {
      const through = this.symlinkAbove(parent);
      return this.problem(through ? `${show(name)} goes through ${show(through)}, a symlink of the archive` : `${show(name)} comes before its directory ${show(parent)}`);
    }
    if (parentKind !== 'dir') return this.problem(`${show(name)} is below ${show(parent)}, which is not a directory`);
    if (member.type === 'hardlink') {
      const target = member.target ?? '';
      const targetProblem = nameProblem(target);
      if (targetProblem || !target.startsWith(`${ROOTFS_MEMBER}/`)) return this.problem(`${show(name)} is a hard link to ${show(target)}, outside rootfs/`);
      const kind = this.kinds.get(target);
      if (kind === undefined) return this.problem(`${show(name)} is a hard link to ${show(target)}, which is not a member before it`);
      if (kind === 'dir' || kind === 'symlink' || kind === 'hardlink') return this.problem(`${show(name)} is a hard link to ${show(target)}, a ${kind === 'dir' ? 'directory' : kind}`);
    }
    if (member.type === 'block') return this.problem(`${show(name)} is a block device`);
    if (member.type === 'char') {
      const [major, minor] = member.device ?? [-1, -1];
      if (!name.startsWith(`${ROOTFS_MEMBER}/dev/`)) return this.problem(`${show(name)} is a device node outside /dev`);
      if (!ALLOWED_DEVICES[`${major},${minor}`]) return this.problem(`${show(name)} is character device ${major},${minor}, which is not one a new tree has in /dev (${Object.values(ALLOWED_DEVICES).join(', ')})`);
    }
    this.kinds.set(name, member.type);
  }

  /** The nearest symlink member above `path`, if one is. */
  private symlinkAbove(path: string): string | undefined {
    for (let p = path; p.includes('/'); p = p.slice(0, p.lastIndexOf('/'))) if (this.kinds.get(p) === 'symlink') return p;
    return undefined;
  }

  private problem(text: string): void {
    if (this.found.length < 20) this.found.push(text);
  }

  /** Everything wrong, the first 20; checks the archive was complete too. */
  problems(): string[] {
    const out = [...this.found];
    if (out.length === 0 && this.count === 0) out.push('it has no members');
    else if (out.length === 0 && !this.kinds.has(ROOTFS_MEMBER)) out.push(`it has no ${ROOTFS_MEMBER}/ directory`);
    return out;
  }

  /** How many members were listed. */
  get members(): number {
    return this.count;
  }
}
