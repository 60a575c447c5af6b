// Removing a staging directory: whatever a killed bootstrapper left mounted below it is unmounted
// first (deepest first), so the recursive delete never reaches into the host's /proc or /dev.
import { mountsUnder, removeStaging } from '../../src/apply/staging';
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

describe('removeStaging', () => {
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
