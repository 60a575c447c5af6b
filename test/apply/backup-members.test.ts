// The member check restore runs over `tar --list --verbose` before anything is extracted: a table
// of listings, hostile and not, each with the exact problem (or none). Lines are written the way
// GNU tar 1.34 prints them with --numeric-owner --full-time --quoting-style=c under LC_ALL=C; the
// first test parses lines tar really printed.
import { MemberChecker, parseListingLine, unquoteC } from '../../src/apply/backup-members';
import { listingLine as line } from '../helpers/backup';

const META = line('-', 'nspawnctl-backup.json', { size: 900 });
const TOP = [META, line('d', 'rootfs/', { mode: 'rwxr-xr-x' }), line('d', 'rootfs/etc/', { mode: 'rwxr-xr-x' }), line('d', 'rootfs/dev/', { mode: 'rwxr-xr-x' })];

function check(lines: string[]): string[] {
  const c = new MemberChecker();
  for (const l of lines) c.addLine(l);
  return c.problems();
}

test('lines tar printed parse into members (types, owners, devices, links, escapes)', () => {
  expect(parseListingLine('drwxr-x--- 100000/100000     0 2026-11-29 23:06:47.877241224 "rootfs/"')).toEqual({ type: 'dir', name: 'rootfs', uid: 100000, gid: 100000, size: 0 });
  expect(parseListingLine('hrw-r--r-- 0/0               0 2026-11-29 23:06:47.757531815 "rootfs/etc/a" link to "rootfs/etc/hard"')).toEqual({ type: 'hardlink', name: 'rootfs/etc/a', target: 'rootfs/etc/hard', uid: 0, gid: 0, size: 0 });
  expect(parseListingLine('-rw-r--r-- 0/0               1 2026-11-29 23:06:47.761241225 "rootfs/dir x/new\\nline"')).toMatchObject({ type: 'file', name: 'rootfs/dir x/new\nline', size: 1 });
  expect(parseListingLine('prw-r--r-- 0/0               0 2026-11-29 23:06:47.761241225 "rootfs/fifo"')).toMatchObject({ type: 'fifo', name: 'rootfs/fifo' });
  expect(parseListingLine('lrwxrwxrwx 0/0               0 2026-11-29 23:06:47.757531815 "rootfs/abs" -> "/etc/passwd"')).toMatchObject({ type: 'symlink', name: 'rootfs/abs', target: '/etc/passwd' });
  expect(parseListingLine('crw-r--r-- 0/0             1,3 2026-11-29 23:06:47.761241225 "rootfs/dev/null"')).toMatchObject({ type: 'char', name: 'rootfs/dev/null', device: [1, 3] });
  expect(parseListingLine('-rwsr-xr-x 0/0           35664 2026-11-29 23:06:47 "rootfs/usr/bin/su"')).toMatchObject({ type: 'file', size: 35664 });
  // A name that looks like a link in the listing is still one name, because it is quoted.
  expect(parseListingLine('-rw-r--r-- 0/0 0 2026-11-29 23:06 "rootfs/a\\" -> \\"b"')).toMatchObject({ type: 'file', name: 'rootfs/a" -> "b' });
});

test('C unquoting: octal bytes, the escapes tar writes; anything else is refused', () => {
  expect(unquoteC('a\\303\\251b')).toBe('a\xc3\xa9b');
  expect(unquoteC('tab\\there\\\\')).toBe('tab\there\\');
  expect(unquoteC('\\q')).toBeUndefined();
  expect(unquoteC('trailing\\')).toBeUndefined();
});

test('what backup writes passes: metadata, rootfs/, files, links, FIFOs, the usual /dev nodes, odd names', () => {
  expect(
    check([
      ...TOP,
      line('-', 'rootfs/etc/hard', { size: 3 }),
      line('h', 'rootfs/etc/a', { target: 'rootfs/etc/hard' }),
      line('l', 'rootfs/bin', { target: 'usr/bin' }),
      line('l', 'rootfs/etc/mtab', { target: '../proc/self/mounts' }),
      line('l', 'rootfs/abs', { target: '/etc/passwd' }),
      line('p', 'rootfs/fifo'),
      line('c', 'rootfs/dev/null', { dev: '1,3' }),
      line('c', 'rootfs/dev/ptmx', { dev: '5,2' }),
      line('-', 'rootfs/etc/new\\nline ..x', { size: 1 }),
      line('-', 'rootfs/etc/\\377\\376', { size: 1 }),
    ]),
  ).toEqual([]);
});

// [what, listing after the metadata and rootfs/, the problem restore names]
const HOSTILE: [string, string[], string][] = [
  ['path traversal with ..', [line('-', 'rootfs/../../etc/cron.d/x')], '"rootfs/../../etc/cron.d/x" has a ".." in its name'],
  ['a name that is only ..', [line('-', '../x')], '"../x" has a ".." in its name'],
  ['an absolute name', [line('-', '/etc/cron.d/x')], '"/etc/cron.d/x" is an absolute name'],
  ['an absolute name below rootfs', [line('-', '/rootfs/etc/x')], '"/rootfs/etc/x" is an absolute name'],
  ['a "." component', [line('-', 'rootfs/./etc/x')], '"rootfs/./etc/x" has a "." in its name'],
  ['an empty component', [line('-', 'rootfs//etc/x')], '"rootfs//etc/x" has an empty component ("//" or a trailing "/") in its name'],
  ['a file through a symlink of the archive', [line('l', 'rootfs/etc/link', { target: '/etc' }), line('-', 'rootfs/etc/link/shadow')], '"rootfs/etc/link/shadow" goes through "rootfs/etc/link", a symlink of the archive'],
  ['a file two levels below a symlink', [line('l', 'rootfs/etc/link', { target: '/' }), line('-', 'rootfs/etc/link/etc/shadow')], '"rootfs/etc/link/etc/shadow" goes through "rootfs/etc/link", a symlink of the archive'],
  ['a directory replaced by a symlink later (listed twice)', [line('d', 'rootfs/etc/ssh/'), line('l', 'rootfs/etc/ssh', { target: '/etc/ssh' })], '"rootfs/etc/ssh" is in the archive twice'],
  ['a file before its directory', [line('-', 'rootfs/var/x')], '"rootfs/var/x" comes before its directory "rootfs/var"'],
  ['a file below a file', [line('-', 'rootfs/etc/passwd'), line('-', 'rootfs/etc/passwd/x')], '"rootfs/etc/passwd/x" is below "rootfs/etc/passwd", which is not a directory'],
  ['a hard link out of the tree', [line('h', 'rootfs/etc/x', { target: '../../etc/shadow' })], '"rootfs/etc/x" is a hard link to "../../etc/shadow", outside rootfs/'],
  ['a hard link to an absolute name', [line('h', 'rootfs/etc/x', { target: '/etc/shadow' })], '"rootfs/etc/x" is a hard link to "/etc/shadow", outside rootfs/'],
  ['a hard link to the metadata', [line('h', 'rootfs/etc/x', { target: 'nspawnctl-backup.json' })], '"rootfs/etc/x" is a hard link to "nspawnctl-backup.json", outside rootfs/'],
  ['a hard link to a member not yet seen', [line('h', 'rootfs/etc/x', { target: 'rootfs/etc/y' })], '"rootfs/etc/x" is a hard link to "rootfs/etc/y", which is not a member before it'],
  ['a hard link to a symlink member', [line('l', 'rootfs/etc/l', { target: '/etc/shadow' }), line('h', 'rootfs/etc/x', { target: 'rootfs/etc/l' })], '"rootfs/etc/x" is a hard link to "rootfs/etc/l", a symlink'],
  ['a hard link to a directory', [line('h', 'rootfs/etc/x', { target: 'rootfs/etc' })], '"rootfs/etc/x" is a hard link to "rootfs/etc", a directory'],
  ['a device node outside /dev', [line('c', 'rootfs/etc/null', { dev: '1,3' })], '"rootfs/etc/null" is a device node outside /dev'],
  ['a disk as a character device in /dev', [line('c', 'rootfs/dev/mem', { dev: '1,1' })], '"rootfs/dev/mem" is character device 1,1, which is not one a new tree has in /dev (null, zero, full, random, urandom, tty, console, ptmx)'],
  ['a block device, even in /dev', [line('b', 'rootfs/dev/sda', { dev: '8,0' })], '"rootfs/dev/sda" is a block device'],
  ['a name outside rootfs/', [line('-', 'etc/passwd')], '"etc/passwd" is outside rootfs/ (an archive holds only nspawnctl-backup.json and rootfs/)'],
  ['./rootfs instead of rootfs', [line('d', './rootfs/')], '"./rootfs" has a "." in its name'],
  ['a second metadata member', [META], 'nspawnctl-backup.json is not the first member'],
  ['the same file twice', [line('-', 'rootfs/etc/x'), line('-', 'rootfs/etc/x')], '"rootfs/etc/x" is in the archive twice'],
  ['a member type tar lists but nspawnctl never writes', ['Vrw-r--r-- 0/0 0 2026-11-29 23:06 "volume"'], '"volume" is a member of type "V" (not a file, directory, link, FIFO or device)'],
  ['a line that is not a listing', ['tar: something odd'], 'tar listed a line nspawnctl cannot read: "tar: something odd"'],
  ['a name with an escape tar never writes', ['-rw-r--r-- 0/0 0 2026-11-29 23:06 "rootfs/\\q"'], 'tar listed a name nspawnctl cannot read: "-rw-r--r-- 0/0 0 2026-11-29 23:06 \\"rootfs/\\\\q\\""'],
];

test.each(HOSTILE)('refused: %s', (_what, lines, problem) => {
  expect(check([...TOP, ...lines])).toEqual([problem]);
});

test('the first member must be the metadata, a small regular file', () => {
  expect(check([line('d', 'rootfs/'), META])).toEqual(['the first member is "rootfs", not nspawnctl-backup.json', 'nspawnctl-backup.json is not the first member']);
  expect(check([line('d', 'nspawnctl-backup.json/')])).toEqual(['nspawnctl-backup.json is not a regular file']);
  expect(check([line('-', 'nspawnctl-backup.json', { size: 2 * 1024 * 1024 })])).toEqual(['nspawnctl-backup.json is larger than 1048576 bytes']);
  expect(check([line('l', 'nspawnctl-backup.json', { target: '/etc/shadow' })])).toEqual(['nspawnctl-backup.json is not a regular file']);
});

test('an archive without rootfs/, or with nothing at all, is refused; so is rootfs that is no directory', () => {
  expect(check([])).toEqual(['it has no members']);
  expect(check([META])).toEqual(['it has no rootfs/ directory']);
  expect(check([META, line('l', 'rootfs', { target: '/' })])).toEqual(['rootfs is not a directory']);
});

test('every problem is named (the first 20), not only the first', () => {
  const many = Array.from({ length: 30 }, (_v, i) => line('-', `/abs${i}`));
  const problems = check([...TOP, ...many]);
  expect(problems).toHaveLength(20);
  expect(problems[0]).toBe('"/abs0" is an absolute name');
});

test('control characters and high bytes in a name are shown escaped', () => {
  expect(check([...TOP, line('-', '/etc/\\033[2J\\377')])).toEqual(['"/etc/\\u001b[2J\\xff" is an absolute name']);
});
