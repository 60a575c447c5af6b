// Backup and restore on a real systemd host: a running machine is backed up (stopped for the copy:
// this test host's /var/lib/machines is not btrfs; the downtime is measured and printed),
// destroyed and restored, and its files, owners, modes, extended attributes, ACLs and file
// capabilities hash-match; it boots and answers ping. restore --as makes a stopped copy that a
// manifest then adopts. Hostile archives (path traversal, an absolute name, a file through a
// symlink member, a device node outside /dev, a bad checksum, a tree whose /etc is a symlink) are
// refused with nothing written outside staging, and a restore killed with SIGKILL leaves only its
// staging directory, which the next restore removes. Progress shows bytes and rate: as plain
// lines off a terminal (the last with the totals), redrawn on one (script(1)).
import { CLI, e2eSuite, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-backup');
const inHost = sb.exec.bind(sb);
const nspawnctl = sb.nspawnctl.bind(sb);
const timings: string[] = [];
const timed = (name: string, fn: () => void, timeoutMs?: number) => timedTest(timings, name, fn, timeoutMs);

const MANIFEST = '/root/m.yaml';
const ARCHIVE = '/root/b/web.tar.zst';
const ROOTFS = '/var/lib/machines/web';

function manifest(proxy: string, copy = false): string {
  return [
    'defaults:',
    `  mirror: http://${proxy}/deb.debian.org/debian`,
    'networks:',
    '  bk: { subnet: 10.83.0.0/24 }',
    'machines:',
    '  web:',
    '    network: { bridge: bk, address: 10.83.0.11 }',
    // setcap, setfacl, setfattr (and their readers) inside the machine.
    '    packages: [libcap2-bin, acl, attr]',
    '    autostart: true',
    ...(copy ? ['  web2:', '    network: { bridge: bk, address: 10.83.0.12 }', '    packages: [libcap2-bin, acl, attr]'] : []),
    '',
  ].join('\n');
}

/** Runs a shell command inside the machine, as a service of its own systemd. */
function inMachine(machine: string, script: string): string {
  return inHost(['systemd-run', `--machine=${machine}`, '--wait', '--pipe', '--quiet', '--collect', '--', 'sh', '-c', script], { timeoutMs: 120_000 }).stdout;
}

/** The entries of /var/lib/machines, without the lock files systemd-nspawn keeps there for a running machine (.#NAME.lck). */
function machinesDir(): string[] {
  return inHost(['ls', '-A', '/var/lib/machines']).stdout.split('\n').filter((l) => l && !/^\.#.*\.lck$/.test(l)).sort();
}

function running(): string[] {
  return inHost(['machinectl', 'list', '--no-legend', '--no-pager']).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean).sort();
}

function powerOff(machine: string): void {
  inHost(['sh', '-c', `machinectl poweroff ${machine}; for i in $(seq 1 60); do machinectl show ${machine} >/dev/null 2>&1 || exit 0; sleep 0.5; done; exit 1`]);
}

/**
 * Every entry of a stopped machine's tree as seen from the host: path, type, mode, numeric owner,
 * size and link target; each regular file's sha256; every extended attribute (file capabilities
 * and POSIX ACLs are ones) in hex. One line per fact, sorted.
 */
function treeFacts(root: string): string[] {
  const script = [
    'set -e',
    `cd ${root}`,
    // A directory's size is left out: on ext4 it is what it once held, not what it holds.
    "find . -xdev ! -type d -printf 'meta %p %y %m %U:%G %s %l\\n'",
    "find . -xdev -type d -printf 'meta %p %y %m %U:%G\\n'",
    "find . -xdev -type f -print0 | xargs -0 -r sha256sum | sed 's/^/sha /'",
    // getfattr -P: no symlink followed; "# file: NAME" then NAME's attributes, one per line. It
    // drops the leading "./" of NAME, which the other facts have: put back.
    "getfattr -R -P -d -m - -e hex . 2>/dev/null | awk '/^# file: /{f=substr($0,9); if (f !~ /^\\.\\//) f=\"./\" f; next} /^$/{next} {print \"xattr \" f \" \" $0}'",
  ].join('\n');
  return inHost(['bash', '-c', script], { timeoutMs: 300_000 }).stdout.split('\n').filter(Boolean).sort();
}

/** The path a fact of treeFacts is about ("sha HASH  PATH" has it last). */
function pathOf(fact: string): string {
  const [kind, ...rest] = fact.split(' ');
  return kind === 'sha' ? rest[rest.length - 1] : rest[0];
}

function factsAbout(facts: string[], path: string): string[] {
  return facts.filter((f) => pathOf(f) === path);
}

/** The lines only one listing has, and the paths they are about. */
function differences(a: string[], b: string[]): { lines: string[]; paths: string[] } {
  const sa = new Set(a);
  const sb2 = new Set(b);
  const lines = [...a.filter((l) => !sb2.has(l)).map((l) => `- ${l}`), ...b.filter((l) => !sa.has(l)).map((l) => `+ ${l}`)];
  return { lines, paths: [...new Set(lines.map((l) => pathOf(l.slice(2))))].sort() };
}

/**
 * What a machine writes on its own each time it boots (its journal, systemd's state, caches):
 * the only paths allowed to differ between the archived tree and one taken after another boot.
 */
/** A size as nspawnctl prints one: "512 B", "3.4 MiB", "310 MiB". */
const SIZE = String.raw`\d+(?:\.\d)? (?:B|KiB|MiB|GiB)`;
/** backup's progress while it archives: bytes tar read, bytes zstd wrote, and the rate. */
const BACKUP_PROGRESS = new RegExp(`(${SIZE}) read, (${SIZE}) written, (${SIZE})/s`, 'g');
/** restore's progress while it checks or extracts: bytes (of the total, when known) and the rate. */
const RESTORE_PROGRESS = new RegExp(`(${SIZE})(?: of ${SIZE} \\(\\d+%\\))?, (${SIZE})/s`, 'g');

const WRITTEN_AT_BOOT = [/^\.\/var\/log\/journal(\/|$)/, /^\.\/var\/log\/(wtmp|btmp|lastlog)$/, /^\.\/var\/lib\/systemd(\/|$)/, /^\.\/var\/tmp(\/|$)/, /^\.\/tmp(\/|$)/, /^\.\/var\/cache\/ldconfig(\/|$)/];

e2eSuite('backup and restore', () => {
  let proxy = '';
  let downtime = '';
  let before: string[] = [];

  beforeAll(() => {
    proxy = sb.up();
    // Test tooling on the test host: getfattr for the listings (attr); zstd only later, through host init.
    inHost(['apt-get', 'update', '-q'], { timeoutMs: 600_000 });
    inHost(['apt-get', 'install', '-y', '-q', 'attr'], { timeoutMs: 600_000 });
    inHost(['mkdir', '-p', '/root/b', '/root/evil']);
    sb.write(MANIFEST, manifest(proxy));
    const r = nspawnctl(['apply', MANIFEST], { check: false });
    expect({ code: r.code, err: r.stderr.slice(-3000) }).toEqual({ code: 0, err: expect.any(String) });
    expect(running()).toEqual(['web']);
  }, 1_800_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n${downtime}\n`);
  }, 120_000);

  timed('0. without zstd: exit 3 naming it, the machine untouched; host init installs it', () => {
    const leader = inHost(['machinectl', 'show', 'web', '--property=Leader', '--value']).stdout;
    const r = nspawnctl(['backup', 'web', '--to', ARCHIVE], { check: false });
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 3, err: expect.stringContaining('zstd is not installed (nspawnctl backup writes and reads .tar.zst archives with it)') });
    expect(inHost(['machinectl', 'show', 'web', '--property=Leader', '--value']).stdout).toBe(leader);
    const init = nspawnctl(['host', 'init', MANIFEST], { check: false });
    expect({ code: init.code, out: init.stdout + init.stderr }).toEqual({ code: 0, out: expect.stringContaining('zstd') });
    expect(inHost(['zstd', '--version']).code).toBe(0);
  });

  timed('1. the machine gets what a copy must keep: a file capability, a user xattr and an ACL, owners, a setuid file, links, a FIFO, a sparse file, an odd name', () => {
    inMachine(
      'web',
      [
        'set -e',
        'cp /bin/true /usr/local/bin/captest && setcap cap_net_raw+ep /usr/local/bin/captest',
        'mkdir -p /srv/data && echo kept > /srv/data/attrs && setfattr -n user.nspawnctl -v backed-up /srv/data/attrs && setfacl -m u:1234:rw /srv/data/attrs',
        'echo owned > /srv/data/owned && chown 1234:2345 /srv/data/owned && chmod 640 /srv/data/owned',
        'cp /bin/true /srv/data/setuid && chmod 4755 /srv/data/setuid',
        'ln /srv/data/owned /srv/data/hardlink && ln -s ../data/owned /srv/data/symlink',
        'mkfifo /srv/data/fifo && truncate -s 2G /srv/data/sparse && printf x > "/srv/data/new\nline"',
      ].join('\n'),
    );
    expect(inMachine('web', 'getcap /usr/local/bin/captest')).toBe('/usr/local/bin/captest cap_net_raw=ep\n');
    expect(inMachine('web', 'getfattr -n user.nspawnctl --only-values /srv/data/attrs')).toBe('backed-up');
    expect(inMachine('web', 'getfacl -n -p /srv/data/attrs | grep user:1234')).toBe('user:1234:rw-\n');
  });

  timed('2. backup of the running machine: said first, stopped for the copy and started again, the downtime measured; an ordinary .tar.zst, 0600', () => {
    const r = nspawnctl(['backup', 'web', '--to', ARCHIVE], { check: false });
    expect({ code: r.code, err: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, err: '' });
    expect(r.stderr).toContain('web is running and /var/lib/machines/web is not a btrfs subvolume: web is stopped for the copy and started again');
    const line = r.stdout.split('\n').find((l) => l.startsWith('Wrote '))!;
    expect(line).toMatch(/^Wrote \/root\/b\/web\.tar\.zst: .* web was down for \d+\.\d s\.$/);
    downtime = `[e2e] backup downtime (stop, archive, start until ready): ${/was down for (\d+\.\d s)/.exec(line)![1]}; ${line}`;
    process.stderr.write(`${downtime}\n`);
    // Off a terminal, progress is plain lines (listr2's, on stdout like apply's): bytes read and written, and the rate.
    // The last has the totals the final line reports, and the average rate.
    const progress = [...r.stdout.matchAll(BACKUP_PROGRESS)];
    process.stderr.write(`[e2e] backup progress lines: ${progress.map((m) => m[0]).join(' | ')}\n`);
    const totals = /: (\S+ \S+) \((\S+ \S+) of tree, /.exec(line)!;
    const final = progress[progress.length - 1];
    expect({ read: final?.[1], written: final?.[2], rate: final?.[3] !== '0 B' }).toEqual({ read: totals[2], written: expect.any(String), rate: true });
    // What zstd wrote (the final line's size has the 106-byte trailer more, which does not change it at this scale).
    expect(final[2]).toBe(totals[1]);
    expect(running()).toEqual(['web']);
    expect(sb.pingUntilAnswered('10.83.0.11')).toBe(true);
    // The sparse file's 2 GiB of holes are not in the archive.
    expect(Number(inHost(['stat', '-c', '%s', ARCHIVE]).stdout)).toBeLessThan(400 * 1024 * 1024);
    expect(inHost(['stat', '-c', '%a %U', ARCHIVE]).stdout).toBe('600 root\n');
    expect(inHost(['zstd', '-t', '-q', ARCHIVE]).code).toBe(0);
    expect(inHost(['sh', '-c', `zstd -dc ${ARCHIVE} | tar -t | head -2`]).stdout).toBe('nspawnctl-backup.json\nrootfs/\n');
    // Nothing else was left beside it, nor a snapshot or staging directory.
    expect(inHost(['ls', '-A', '/root/b']).stdout).toBe('web.tar.zst\n');
    expect(machinesDir()).toEqual(['web']);
  });

  timed('3. backup -> destroy -> restore: every file, owner, mode, xattr, ACL and capability hash-matches; apply finds nothing but a start to do', () => {
    powerOff('web');
    before = treeFacts(ROOTFS);
    expect(before.length).toBeGreaterThan(5000);
    expect(nspawnctl(['destroy', 'web', '--yes']).code).toBe(0);
    expect(inHost(['test', '-e', ROOTFS], { check: false }).code).not.toBe(0);
    const r = nspawnctl(['restore', ARCHIVE, '--no-start'], { check: false });
    expect({ code: r.code, err: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, err: '' });
    expect(r.stdout).toMatch(/Restored web from \/root\/b\/web\.tar\.zst \(\d+ members, sha256 [0-9a-f]{64}\); it is stopped with address 10\.83\.0\.11\.\n$/);
    // Progress off a terminal: plain lines with bytes and rate, for the check and the extraction.
    const progress = [...r.stdout.matchAll(RESTORE_PROGRESS)];
    process.stderr.write(`[e2e] restore progress lines: ${progress.map((m) => m[0]).join(' | ')}\n`);
    expect(progress[progress.length - 1]?.[0]).toMatch(/^(\S+ \S+) of \1 \(100%\), \d+(\.\d)? (KiB|MiB|GiB)\/s$/);
    const after = treeFacts(ROOTFS);
    const diff = differences(before, after);
    // Only what the machine itself wrote when backup started it again may differ.
    expect(diff.paths.filter((p) => !WRITTEN_AT_BOOT.some((re) => re.test(p)))).toEqual([]);
    process.stderr.write(`[e2e] ${before.length} facts compared; ${diff.paths.length} path(s) differ, all written by the machine at boot\n`);
    // The entries made for this test are there, each fact of each the same as before.
    for (const must of ['./usr/local/bin/captest', './srv/data/attrs', './srv/data/owned', './srv/data/setuid', './srv/data/hardlink', './srv/data/symlink', './srv/data/fifo', './srv/data/sparse']) {
      const facts = factsAbout(after, must);
      expect({ must, facts }).toEqual({ must, facts: factsAbout(before, must) });
      expect(facts.length).toBeGreaterThan(0);
    }
    const caps = after.filter((l) => l.startsWith('xattr ./usr/local/bin/captest security.capability='));
    // When it is missing, what getfattr says about the file, to see why.
    const raw = caps.length === 1 ? '' : inHost(['sh', '-c', `getfattr -P -d -m - -e hex ${ROOTFS}/usr/local/bin/captest; getfattr -R -P -d -m - -e hex ${ROOTFS}/usr/local/bin | head -20; ls -ln ${ROOTFS}/usr/local/bin`], { check: false }).stdout + after.filter((l) => l.includes('captest')).join('\n');
    expect({ caps: caps.length, raw }).toEqual({ caps: 1, raw: '' });
    expect(after.filter((l) => l.startsWith('xattr ./srv/data/attrs system.posix_acl_access='))).toHaveLength(1);
    expect(after).toContain(`xattr ./srv/data/attrs user.nspawnctl=0x${Buffer.from('backed-up').toString('hex')}`);
    // Holes stayed holes.
    expect(Number(inHost(['du', '-k', `${ROOTFS}/srv/data/sparse`]).stdout.split('\t')[0])).toBeLessThan(1024);
    // The record and settings came back exactly: the manifest only has to start it.
    const plan = JSON.parse(nspawnctl(['plan', MANIFEST, '--json']).stdout);
    expect(plan.steps.map((s: { kind: string; machine?: string }) => `${s.kind} ${s.machine ?? ''}`)).toEqual(['start-machine web']);
  });

  timed('4. the restored machine boots, answers ping, and still has its capability, xattr and ACL inside', () => {
    expect(nspawnctl(['apply', MANIFEST]).code).toBe(0);
    expect(running()).toEqual(['web']);
    expect(sb.pingUntilAnswered('10.83.0.11')).toBe(true);
    expect(inMachine('web', 'getcap /usr/local/bin/captest')).toBe('/usr/local/bin/captest cap_net_raw=ep\n');
    expect(inMachine('web', 'getfattr -n user.nspawnctl --only-values /srv/data/attrs')).toBe('backed-up');
    expect(inMachine('web', 'getfacl -n -p /srv/data/attrs | grep user:1234')).toBe('user:1234:rw-\n');
    expect(inMachine('web', 'stat -c "%u:%g %a" /srv/data/owned /srv/data/setuid')).toBe('1234:2345 640\n0:0 4755\n');
  });

  timed('5. restore --as web2: a stopped copy with its own name; a manifest that names it gives it its own address and starts it', () => {
    const r = nspawnctl(['restore', ARCHIVE, '--as', 'web2'], { check: false });
    expect({ code: r.code, err: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, err: '' });
    expect(r.stderr).toContain("leave it stopped: it keeps web's network address and settings, and belongs to no manifest until one names it.");
    expect(running()).toEqual(['web']);
    expect(inHost(['cat', '/var/lib/machines/web2/etc/hostname']).stdout).toBe('web2\n');
    expect(inHost(['stat', '-c', '%s', '/var/lib/machines/web2/etc/machine-id']).stdout).toBe('0\n');
    expect(inHost(['grep', '-c', 'Hostname=web2', '/etc/systemd/nspawn/web2.nspawn']).stdout).toBe('1\n');
    const list = nspawnctl(['list']).stdout;
    // (list has more columns after MANIFEST: UPGRADED.)
    expect(list).toMatch(/^web2\s+stopped\s+-\s+not in manifest(\s|$)/m);
    sb.write(MANIFEST, manifest(proxy, true));
    const apply = nspawnctl(['apply', MANIFEST], { check: false });
    expect({ code: apply.code, err: apply.code === 0 ? '' : apply.stderr }).toEqual({ code: 0, err: '' });
    expect(running()).toEqual(['web', 'web2']);
    expect(sb.pingUntilAnswered('10.83.0.12')).toBe(true);
    expect(sb.pingUntilAnswered('10.83.0.11')).toBe(true);
    expect(inMachine('web2', 'getcap /usr/local/bin/captest; cat /etc/hostname')).toBe('/usr/local/bin/captest cap_net_raw=ep\nweb2\n');
    expect(inMachine('web2', 'cat /etc/machine-id')).not.toBe(inMachine('web', 'cat /etc/machine-id'));
  });

  timed('6. a name that exists is never replaced (exit 4); --to inside a machine is refused (exit 2)', () => {
    const r = nspawnctl(['restore', ARCHIVE], { check: false });
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 4, err: expect.stringContaining('machine web exists') });
    const inside = nspawnctl(['backup', 'web2', '--to', `${ROOTFS}/root/web2.tar.zst`], { check: false });
    expect({ code: inside.code, err: inside.stderr }).toEqual({ code: 2, err: expect.stringContaining("is inside a machine's root filesystem") });
    expect(running()).toEqual(['web', 'web2']);
  });

  /** Builds the hostile archives inside the test host, with its own tar and zstd, each with a valid checksum. */
  function buildHostileArchives(): void {
    const script = String.raw`
set -e -o pipefail
cd /root/evil
rm -rf w && mkdir -p w/meta w/trav/rootfs/etc w/x w/src/rootfs/etc w/s1/rootfs/etc w/s2/rootfs/etc/evil w/dev/rootfs/etc w/tree/rootfs
zstd -dc ${ARCHIVE} | tar -xO -f - nspawnctl-backup.json > w/meta/nspawnctl-backup.json
echo '* * * * * root touch /pwned' > w/x/cron
echo pwned > w/src/rootfs/etc/cron
ln -s /etc w/s1/rootfs/etc/evil
echo '* * * * * root touch /pwned' > w/s2/rootfs/etc/evil/cron.d-evil
mknod w/dev/rootfs/etc/kmem c 1 2
ln -s / w/tree/rootfs/etc
T="tar --create --format=posix --file=-"
seal() {  # tar on stdin -> FILE: zstd, then the trailer with the sha256 of what zstd wrote
  zstd -q -c > "$1.body"
  h=$(sha256sum < "$1.body" | cut -c1-64)
  { cat "$1.body"; printf '\x57\x2a\x4d\x18\x62\x00\x00\x00'; printf 'nspawnctl-backup format=1 sha256=%s\n' "$h"; } > "$1"
  rm "$1.body"
}
# -C is relative to the previous -C: every one is absolute here.
W=/root/evil/w
$T --absolute-names -C $W/meta nspawnctl-backup.json -C $W/trav rootfs rootfs/../../x/cron | seal traversal.tar.zst
$T --absolute-names -C $W/meta nspawnctl-backup.json -C $W/src rootfs $W/x/cron | seal absolute.tar.zst
$T -C $W/meta nspawnctl-backup.json -C $W/s1 rootfs -C $W/s2 rootfs/etc/evil/cron.d-evil | seal symlink.tar.zst
$T -C $W/meta nspawnctl-backup.json -C $W/dev rootfs | seal device.tar.zst
$T -C $W/meta nspawnctl-backup.json -C $W/tree rootfs | seal etc-symlink.tar.zst
cp ${ARCHIVE} checksum.tar.zst
printf 'X' | dd of=checksum.tar.zst bs=1 seek=4096 conv=notrunc status=none
chmod 600 *.tar.zst
ls *.tar.zst
`;
    expect(inHost(['bash', '-c', script]).stdout.split('\n').filter(Boolean).sort()).toEqual(['absolute.tar.zst', 'checksum.tar.zst', 'device.tar.zst', 'etc-symlink.tar.zst', 'symlink.tar.zst', 'traversal.tar.zst']);
  }

  const hostile: [string, string, string[], number, string][] = [
    ['path traversal (rootfs/../../x)', 'traversal.tar.zst', [], 2, '"rootfs/../../x/cron" has a ".." in its name'],
    ['an absolute name', 'absolute.tar.zst', [], 2, '"/root/evil/w/x/cron" is an absolute name'],
    ['a symlink member, then a file through it', 'symlink.tar.zst', [], 2, '"rootfs/etc/evil/cron.d-evil" goes through "rootfs/etc/evil", a symlink of the archive'],
    ['a device node outside /dev', 'device.tar.zst', [], 2, '"rootfs/etc/kmem" is a device node outside /dev'],
    ['a bad checksum', 'checksum.tar.zst', [], 2, 'checksum mismatch: it is damaged or was changed'],
    // Its members are fine; its tree is not: /etc is a symlink to the host's /. Extracted into
    // staging, then refused when restore writes the copy's hostname: only staging was written.
    ['a tree whose /etc is a symlink to / (restored --as)', 'etc-symlink.tar.zst', ['--as', 'evil'], 1, '/var/lib/machines/.nspawnctl-evil.staging/etc is a symlink: nspawnctl will not follow or use it'],
  ];

  timed('7. hostile archives are refused with their exit code, and nothing is written outside staging', () => {
    buildHostileArchives();
    for (const [what, file, extra, code, problem] of hostile) {
      const files = sb.hostListing(['/root/evil']);
      const machines = machinesDir();
      const etc = inHost(['sha256sum', '/etc/hostname', '/etc/passwd', '/etc/shadow']).stdout;
      const r = nspawnctl(['restore', `/root/evil/${file}`, ...extra], { check: false });
      expect({ what, code: r.code, says: r.stderr.includes(problem) ? problem : r.stderr }).toEqual({ what, code, says: problem });
      expect({ what, changed: differences(files, sb.hostListing(['/root/evil'])).lines }).toEqual({ what, changed: [] });
      expect({ what, machines: machinesDir() }).toEqual({ what, machines });
      expect(inHost(['sha256sum', '/etc/hostname', '/etc/passwd', '/etc/shadow']).stdout).toBe(etc);
      expect(inHost(['test', '-e', '/pwned'], { check: false }).code).not.toBe(0);
    }
    expect(running()).toEqual(['web', 'web2']);
  });

  timed('8. restore killed with SIGKILL while tar extracts: only its staging directory is left, and the next restore removes it', () => {
    expect(nspawnctl(['destroy', 'web2', '--yes']).code).toBe(0);
    const script = [
      `node ${CLI} restore ${ARCHIVE} --as web2 >/root/restore.log 2>&1 &`,
      'pid=$!',
      'for i in $(seq 1 3000); do if pgrep -f "[t]ar --extract --file=- --directory=/var/lib/machines/.nspawnctl-web2.staging" >/dev/null && [ -d /var/lib/machines/.nspawnctl-web2.staging/usr ]; then break; fi; if ! kill -0 $pid 2>/dev/null; then echo "restore ended first" >&2; exit 3; fi; sleep 0.02; done',
      'kill -KILL $pid',
      'wait $pid; echo $?',
    ].join('\n');
    expect(inHost(['bash', '-c', script], { timeoutMs: 600_000 }).stdout.trim()).toBe('137');
    // tar loses its input with nspawnctl and ends; nothing of web2 exists but the hidden staging directory.
    expect(inHost(['sh', '-c', 'for i in $(seq 1 100); do pgrep -f "[t]ar --extract" >/dev/null || exit 0; sleep 0.1; done; exit 1'], { check: false }).code).toBe(0);
    expect(machinesDir()).toEqual(['.nspawnctl-web2.staging', 'web']);
    expect(inHost(['machinectl', 'list-images', '--no-legend', '--no-pager']).stdout).not.toContain('web2');
    for (const p of ['/var/lib/nspawnctl/machines/web2.json', '/etc/systemd/nspawn/web2.nspawn']) expect(inHost(['test', '-e', p], { check: false }).code).not.toBe(0);
    // This time on a terminal (script(1) gives it one; its size is set, as a terminal's is): the
    // progress line is redrawn in place, with bytes and rate.
    const again = inHost(['script', '--quiet', '--return', '--command', `stty cols 120 rows 40; node ${CLI} restore ${ARCHIVE} --as web2`, '/dev/null'], { check: false, timeoutMs: 900_000 });
    expect({ code: again.code, out: again.code === 0 ? '' : again.stdout.slice(-3000) }).toEqual({ code: 0, out: '' });
    const drawn = new Set([...again.stdout.matchAll(RESTORE_PROGRESS)].map((m) => m[0]));
    process.stderr.write(`[e2e] restore on a terminal drew ${drawn.size} distinct progress lines, e.g. ${[...drawn].slice(-2).join(' | ')}\n`);
    expect(drawn.size).toBeGreaterThan(1);
    expect(again.stdout).toContain('Restored web2 (a copy of web) from /root/b/web.tar.zst');
    expect(machinesDir()).toEqual(['web', 'web2']);
  });

  timed('9. restore under its own name starts the machine itself, as it was at backup time', () => {
    expect(nspawnctl(['destroy', 'web', '--yes']).code).toBe(0);
    const began = Date.now();
    const r = nspawnctl(['restore', ARCHIVE], { check: false });
    const took = `[e2e] restore of web (check, extract, start until ready): ${((Date.now() - began) / 1000).toFixed(1)} s`;
    timings.push(took);
    process.stderr.write(`${took}\n`);
    expect({ code: r.code, err: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, err: '' });
    expect(r.stdout).toMatch(/it is running with address 10\.83\.0\.11\.\n$/);
    expect(running()).toContain('web');
    expect(sb.pingUntilAnswered('10.83.0.11')).toBe(true);
    expect(inHost(['test', '-L', '/etc/systemd/system/machines.target.wants/systemd-nspawn@web.service']).code).toBe(0);
  });

  timed('10. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
