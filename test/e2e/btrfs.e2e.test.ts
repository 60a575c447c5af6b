// Base images as btrfs subvolumes: on a real (loop-mounted) btrfs filesystem on this machine, a
// machine's copy of a cached image is a snapshot, with everything preserved, independent of its
// source, renamable into place and removable like a directory; elsewhere it is a copy.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { e2eSuite, REPO } from './sandbox';

// The built code runs in a plain node process (jest's module sandbox cannot load execa, an ES
// module), with a real Host on this machine. "fs.NAME" calls host.fs.NAME(...args); anything
// else calls image-cache's NAME(host, ...args).
const RUNNER = `
const [what, args] = JSON.parse(process.argv[1]);
const { createRealHost } = require(${JSON.stringify(join(REPO, 'dist', 'host', 'host.js'))});
const cache = require(${JSON.stringify(join(REPO, 'dist', 'apply', 'image-cache.js'))});
const host = createRealHost();
const result = what.startsWith('fs.') ? host.fs[what.slice(3)](...args) : cache[what](host, ...args);
result.then((r) => process.stdout.write(JSON.stringify(r ?? null)), (e) => { console.error(e); process.exit(1); });
`;

function call(what: string, ...args: string[]): unknown {
  const r = spawnSync(process.execPath, ['-e', RUNNER, JSON.stringify([what, args])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${what}(${args.join(', ')}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function sh(argv: string[]): { code: number; out: string } {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function must(argv: string[]): string {
  const r = sh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.out}`);
  return r.out;
}

/** Every entry with type, mode, owner and link target, and each file's content hash: what a faithful copy keeps. */
function listing(dir: string): string {
  const entries = must(['find', dir, '-printf', '%P %y %m %U:%G %l\\n']).split('\n');
  const hashes = must(['find', dir, '-type', 'f', '-exec', 'sha256sum', '{}', '+']).split('\n').map((l) => l.replace(dir, ''));
  return [...entries, ...hashes].sort().join('\n');
}

const isSubvolume = (path: string) => sh(['btrfs', 'subvolume', 'show', path]).code === 0;

e2eSuite(
  'base images on btrfs are snapshots',
  () => {
    let work = '';
    let mnt = '';

    beforeAll(() => {
      work = mkdtempSync('/var/tmp/nspawnctl-btrfs-');
      mnt = join(work, 'mnt');
      mkdirSync(mnt);
      must(['truncate', '-s', '512M', join(work, 'fs.img')]);
      must(['mkfs.btrfs', '-q', join(work, 'fs.img')]);
      must(['mount', '-o', 'loop', join(work, 'fs.img'), mnt]);
      // A small "image": a subvolume with a file, a private file owned by a shifted UID, a symlink.
      mkdirSync(join(mnt, 'cache'));
      mkdirSync(join(mnt, 'machines'));
      must(['btrfs', 'subvolume', 'create', join(mnt, 'cache', 'rootfs')]);
      mkdirSync(join(mnt, 'cache', 'rootfs', 'etc'));
      writeFileSync(join(mnt, 'cache', 'rootfs', 'etc', 'os-release'), 'ID=debian\n');
      writeFileSync(join(mnt, 'cache', 'rootfs', 'etc', 'shadow'), 'root:*:1::::::\n', { mode: 0o600 });
      must(['chown', '100000:100000', join(mnt, 'cache', 'rootfs', 'etc', 'shadow')]);
      must(['ln', '-s', '/etc/os-release', join(mnt, 'cache', 'rootfs', 'os-release')]);
    });

    afterAll(() => {
      if (mnt) sh(['umount', mnt]);
      if (work) rmSync(work, { recursive: true, force: true });
    });

    test('new images are subvolumes only where the cache is on btrfs (and btrfs-progs is installed)', () => {
      expect(call('useSubvolumes', join(mnt, 'cache'))).toBe(true);
      expect(call('useSubvolumes', work)).toBe(false);
    });

    test('a copy of a subvolume image is a snapshot: the same tree, independent of its source', () => {
      const source = join(mnt, 'cache', 'rootfs');
      const staging = join(mnt, 'machines', '.nspawnctl-web.staging');
      expect(call('copyImage', source, staging)).toBe('snapshot');
      expect(isSubvolume(staging)).toBe(true);
      expect(listing(staging)).toBe(listing(source));
      writeFileSync(join(staging, 'etc', 'hostname'), 'web\n');
      writeFileSync(join(staging, 'etc', 'os-release'), 'ID=changed\n');
      expect(readFileSync(join(source, 'etc', 'os-release'), 'utf8')).toBe('ID=debian\n');
      expect(sh(['test', '-e', join(source, 'etc', 'hostname')]).code).not.toBe(0);
      // Moved into place and removed the way apply and destroy do it.
      call('fs.rename', staging, join(mnt, 'machines', 'web'));
      expect(isSubvolume(join(mnt, 'machines', 'web'))).toBe(true);
      call('fs.removeTree', join(mnt, 'machines', 'web'));
      expect(sh(['test', '-e', join(mnt, 'machines', 'web')]).code).not.toBe(0);
      expect(must(['btrfs', 'subvolume', 'list', mnt])).not.toContain('machines/web');
    });

    test("subvolumes a machine's root made inside its tree do not stop its removal (rm alone skips them as other devices)", () => {
      const tree = join(mnt, 'machines', 'evil');
      mkdirSync(join(tree, 'srv'), { recursive: true });
      must(['btrfs', 'subvolume', 'create', join(tree, 'srv', 'data')]);
      must(['btrfs', 'subvolume', 'create', join(tree, 'srv', 'data', 'deeper')]);
      writeFileSync(join(tree, 'srv', 'data', 'deeper', 'f'), 'x\n');
      // rm alone: "skipping ..., since it's on a different device", and the tree stays.
      expect(sh(['rm', '-rf', '--one-file-system', '--', join(tree, 'srv', 'data')]).out).toContain("since it's on a different device");
      call('fs.removeTree', tree);
      expect(sh(['test', '-e', tree]).code).not.toBe(0);
      expect(must(['btrfs', 'subvolume', 'list', mnt])).not.toContain('machines/evil');
    });

    test('a plain directory, or a target on another filesystem, is copied instead', () => {
      mkdirSync(join(mnt, 'cache', 'plain', 'etc'), { recursive: true });
      writeFileSync(join(mnt, 'cache', 'plain', 'etc', 'os-release'), 'ID=debian\n');
      const fromPlain = join(mnt, 'machines', 'db');
      expect(call('copyImage', join(mnt, 'cache', 'plain'), fromPlain)).toBe('copy');
      expect(isSubvolume(fromPlain)).toBe(false);
      expect(listing(fromPlain)).toBe(listing(join(mnt, 'cache', 'plain')));
      const elsewhere = join(work, 'copy');
      expect(call('copyImage', join(mnt, 'cache', 'rootfs'), elsewhere)).toBe('copy');
      expect(listing(elsewhere)).toBe(listing(join(mnt, 'cache', 'rootfs')));
    });
  },
  ['/usr/sbin/mkfs.btrfs', '/usr/bin/btrfs'],
);
