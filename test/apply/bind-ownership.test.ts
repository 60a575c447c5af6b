// A read-write bind source nspawnctl created is chowned to the first UID of the machine's user
// namespace, read from its leader's uid_map (read-write binds are not idmapped).
import { runStep } from '../../src/apply/apply';
import { machineUserRange } from '../../src/apply/machinectl';
import { makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { simulateSystemd } from '../helpers/simulated-systemd';

const BASE = 65536 * 23;
const step = { kind: 'hand-bind-source' as const, machine: 'web', path: '/srv/data', reason: 'test' };

function hostWith(uidMap: string | undefined): FakeHost {
  const host = makeBootedHost(new FakeHost());
  simulateSystemd(host, { running: ['web'], leaderPid: 777 });
  host.fs.addDir('/srv/data', { uid: 0 });
  if (uidMap !== undefined) host.fs.addFile('/proc/777/uid_map', uidMap);
  return host;
}

test('the source goes to the machine root: UID and GID of the first line mapping 0', async () => {
  const host = hostWith(`         0    ${BASE}      65536\n`);
  expect(await machineUserRange(host, 'web')).toEqual({ base: BASE, count: 65536 });
  await runStep(host, step, { startTimeoutMs: 1000 }, () => undefined);
  expect(await host.fs.stat('/srv/data')).toMatchObject({ uid: BASE, gid: BASE });
  expect(host.fs.changes).toContain(`chown /srv/data ${BASE}:${BASE}`);
});

test('no mapping for root, an unreadable map or a stopped machine: an error, nothing chowned', async () => {
  for (const map of ['         1    100000      65536\n', '', undefined]) {
    const host = hostWith(map);
    await expect(runStep(host, step, { startTimeoutMs: 1000 }, () => undefined)).rejects.toThrow(/cannot read its UID range from \/proc\/777\/uid_map/);
    expect((await host.fs.stat('/srv/data'))?.uid).toBe(0);
  }
  const stopped = makeBootedHost(new FakeHost());
  simulateSystemd(stopped, {});
  stopped.fs.addDir('/srv/data', { uid: 0 });
  await expect(runStep(stopped, step, { startTimeoutMs: 1000 }, () => undefined)).rejects.toThrow('machine web is not running');
});

test('the source is no longer a directory (a symlink put there): refused, the link target untouched', async () => {
  const host = hostWith(`0 ${BASE} 65536\n`);
  host.fs.addDir('/etc/secret', { uid: 0 });
  host.fs.swapForSymlink('/srv/data', '/etc/secret');
  await expect(runStep(host, step, { startTimeoutMs: 1000 }, () => undefined)).rejects.toThrow('/srv/data is not a directory');
  expect((await host.fs.stat('/etc/secret'))?.uid).toBe(0);
});
