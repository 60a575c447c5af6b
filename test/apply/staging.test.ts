// Removing a staging directory: the processes a killed bootstrapper left working in it are
// stopped, and whatever it left mounted below it is unmounted first (deepest first), so the
// recursive delete never reaches into the host's /proc or /dev.
import { mountsUnder, processesUsing, removeStaging } from '../../src/apply/staging';
import { NspawnctlError } from '../../src/errors';
import { FakeHost } from '../helpers/fake-host';

const STAGING = '/var/lib/machines/.nspawnctl-web.staging';
const MOUNTINFO = '/proc/self/mountinfo';

/** A mountinfo line for mount point `path` (escaped as the kernel does for spaces). */
const line = (id: number, path: string) => `${id} 25 0:${id} / ${path.replace(/ /g, '\\040')} rw,nosuid - proc proc rw\n`;

/**
 * A host with a staging tree and `mounts` listed in mountinfo; umount succeeds and, unless
 * `stubborn`, removes the mount from mountinfo as the kernel does.
 */
function hostWithMounts(mounts: string[], stubborn = false): FakeHost {
  const host = new FakeHost();
  host.fs.addFile(`${STAGING}/etc/hostname`, 'web\n');
  host.fs.addDir(`${STAGING}/proc`);
  const table = [line(25, '/'), line(26, '/proc'), line(27, '/var/lib/machines/.nspawnctl-web.staging-other'), ...mounts.map((m, i) => line(40 + i, m))];
  host.fs.addFile(MOUNTINFO, table.join(''));
  host.runner.on((argv) => argv[0] === 'umount', ({ args }) => {
    const gone = args[args.length - 1];
    if (!stubborn) host.fs.addFile(MOUNTINFO, (host.fs.nodes.get(MOUNTINFO) as { content: string }).content.split('\n').filter((l) => l.split(' ')[4]?.replace(/\\040/g, ' ') !== gone).join('\n'));
    return {};
  });
  return host;
}

describe('mountsUnder', () => {
  test('lists mount points at or below the directory, deepest first, spaces unescaped; siblings with a common prefix are not below it', async () => {
    const host = hostWithMounts([`${STAGING}/proc`, `${STAGING}/dev`, `${STAGING}/dev/pts`, `${STAGING}/a b`, STAGING]);
    expect(await mountsUnder(host, STAGING)).toEqual([`${STAGING}/dev/pts`, `${STAGING}/proc`, `${STAGING}/dev`, `${STAGING}/a b`, STAGING]);
  });

  test('no mountinfo: nothing', async () => {
    expect(await mountsUnder(new FakeHost(), STAGING)).toEqual([]);
  });
});

/** Adds process `pid` to the fake /proc: its root and cwd links and its NUL-separated cmdline. */
function addProcess(host: FakeHost, pid: number, p: { root?: string; cwd?: string; argv?: string[] }): void {
  host.fs.addDir(`/proc/${pid}`);
  if (p.root) host.fs.addSymlink(`/proc/${pid}/root`, p.root);
  if (p.cwd) host.fs.addSymlink(`/proc/${pid}/cwd`, p.cwd);
  if (p.argv) host.fs.addFile(`/proc/${pid}/cmdline`, `${p.argv.join('\0')}\0`);
}

/** The orphans of a killed mmdebstrap run in STAGING, and processes that have nothing to do with it. */
function hostWithProcesses(mounts: string[] = []): FakeHost {
  const host = hostWithMounts(mounts);
  addProcess(host, 1, { root: '/', cwd: '/', argv: ['/sbin/init'] });
  addProcess(host, 100, { root: STAGING, cwd: '/', argv: ['/usr/bin/dpkg', '--configure', '-a'] });
  addProcess(host, 101, { root: '/', cwd: `${STAGING}/var/cache/apt`, argv: ['apt-get', 'update'] });
  addProcess(host, 102, { root: '/', cwd: '/root', argv: ['mmdebstrap', '--variant=minbase', 'bookworm', STAGING, 'http://deb.debian.org/debian'] });
  // A sibling with a common prefix, a running machine, our own process, and one that exited
  // while /proc was read (nothing left to read).
  addProcess(host, 200, { root: '/', cwd: '/var/lib/machines/.nspawnctl-web.staging-other', argv: ['sh'] });
  addProcess(host, 201, { root: '/var/lib/machines/web', cwd: '/', argv: ['/sbin/init'] });
  addProcess(host, host.pid, { root: '/', cwd: STAGING, argv: ['node', 'nspawnctl', 'apply', `${STAGING}/x`] });
  host.fs.addDir('/proc/202');
  host.fs.addDir('/proc/sys');
  return host;
}

describe('processesUsing', () => {
  test('finds the processes whose root, working directory or an argument is in the directory; never our own', async () => {
    expect(await processesUsing(hostWithProcesses(), STAGING)).toEqual([100, 101, 102]);
  });

  test('no /proc entries: none', async () => {
    expect(await processesUsing(new FakeHost(), STAGING)).toEqual([]);
  });
});

describe('removeStaging', () => {
  test('stops the processes still working in it (kill -KILL, a failure tolerated), waits until they are gone, unmounts, then removes the tree', async () => {
    const host = hostWithProcesses([`${STAGING}/proc`]);
    const events: string[] = [];
    host.runner.on(['kill', '-KILL', '100', '101', '102'], () => {
      events.push('kill');
      // They are gone a moment later, as after a real SIGKILL.
      setTimeout(() => {
        for (const pid of [100, 101, 102]) for (const p of host.fs.paths().filter((x) => x === `/proc/${pid}` || x.startsWith(`/proc/${pid}/`))) host.fs.nodes.delete(p);
        events.push('gone');
      }, 150);
      return {};
    });
    const umount = host.runner.run.bind(host.runner);
    host.runner.run = async (file, args, options) => {
      if (file === 'umount') events.push('umount');
      return umount(file, args, options);
    };
    await removeStaging(host, STAGING);
    expect(host.runner.calls.map((c) => [c.file, ...c.args, c.options])).toEqual([
      ['kill', '-KILL', '100', '101', '102', { allowFailure: true }],
      ['umount', '--lazy', `${STAGING}/proc`, undefined],
    ]);
    expect(events).toEqual(['kill', 'gone', 'umount']);
    expect(host.fs.changes).toEqual([`remove-tree ${STAGING}`]);
    expect(await host.fs.listDir('/proc')).toEqual(['1', '200', '201', '202', String(host.pid), 'self', 'sys'].sort());
  });

  test('unmounts everything below it, deepest first, with umount --lazy, then removes the tree', async () => {
    const host = hostWithMounts([`${STAGING}/proc`, `${STAGING}/dev`, `${STAGING}/dev/pts`]);
    await removeStaging(host, STAGING);
    expect(host.runner.argvs()).toEqual([
      ['umount', '--lazy', `${STAGING}/dev/pts`],
      ['umount', '--lazy', `${STAGING}/proc`],
      ['umount', '--lazy', `${STAGING}/dev`],
    ]);
    expect(host.fs.changes).toEqual([`remove-tree ${STAGING}`]);
    expect(host.fs.paths().filter((p) => p.startsWith('/var/lib/machines'))).toEqual(['/var/lib/machines']);
    host.assertNoUnmatchedCalls();
  });

  test('nothing mounted: only the tree is removed', async () => {
    const host = hostWithMounts([]);
    await removeStaging(host, STAGING);
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([`remove-tree ${STAGING}`]);
  });

  test('a missing directory: nothing is run or removed', async () => {
    const host = new FakeHost();
    host.fs.addFile(MOUNTINFO, line(40, `${STAGING}/proc`));
    await removeStaging(host, STAGING);
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
  });

  test('a mount that survives umount stops the removal', async () => {
    const stubborn = hostWithMounts([`${STAGING}/proc`], true);
    await expect(removeStaging(stubborn, STAGING)).rejects.toThrow(new NspawnctlError(`cannot remove ${STAGING}: still mounted: ${STAGING}/proc`));
    expect(stubborn.runner.argvs()).toEqual([['umount', '--lazy', `${STAGING}/proc`]]);
    expect(stubborn.fs.changes).toEqual([]);
    expect(stubborn.fs.nodes.get(`${STAGING}/etc/hostname`)?.type).toBe('file');
  });

  test.each(['/var/lib/machines', '/var/lib/machines/web', '/var/lib/.nspawnctl-web.staging', '/var/lib/machines/x/.nspawnctl-web.staging/..', '/', '/var/lib/machines/.nspawnctl-web.staging/etc'])(
    'refuses %s: not a staging directory',
    async (dir) => {
      const host = hostWithMounts([]);
      await expect(removeStaging(host, dir)).rejects.toThrow(new NspawnctlError(`internal: ${dir} is not a staging directory`));
      expect(host.runner.calls).toEqual([]);
      expect(host.fs.changes).toEqual([]);
    },
  );
});
