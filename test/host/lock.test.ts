// The host lock with a FakeHost: a free lock is taken; a live holder (its PID running with the
// recorded start time) is refused with --no-wait or waited for; a dead holder's lock, or one whose
// PID now belongs to another process, is taken over; release removes only our own lock.
import { NspawnctlError } from '../../src/errors';
import { acquireLock, LOCK_PATH, LockOptions } from '../../src/host/lock';
import { FakeHost } from '../helpers/fake-host';
import { procStat, seedLockHolder } from '../helpers/lock';

const NOW = '2025-01-01T00:00:00.000Z';
const HOLDER = { pid: 777, start: '5555', command: 'apply /srv/conf/machines.yaml', since: '2024-12-31T23:59:00.000Z' };
/** What our own lock file holds: FakeHost's pid 4242, started at 9000 ticks. */
const OURS = `${JSON.stringify({ pid: 4242, start: '9000', command: 'destroy web', since: NOW })}\n`;

/** A fake host whose own process (/proc/self) started at 9000 ticks; its comm has spaces and ")". */
function host(): FakeHost {
  const h = new FakeHost();
  h.fs.addFile('/proc/self/stat', procStat(4242, 9000, 'node (x) y'));
  return h;
}

/** Options that never really sleep: every sleep is recorded and may act on the host. */
function options(over: Partial<LockOptions> = {}, onSleep: (n: number) => void = () => undefined) {
  const sleeps: number[] = [];
  const waits: unknown[] = [];
  const opts: LockOptions = {
    command: 'destroy web',
    wait: true,
    now: () => NOW,
    onWait: (h) => waits.push(h),
    sleep: async (ms) => {
      sleeps.push(ms);
      onSleep(sleeps.length);
    },
    ...over,
  };
  return { opts, sleeps, waits };
}

describe('acquireLock', () => {
  test('a free lock is taken: our PID, start time, command and time, mode 0644; release removes it', async () => {
    const h = host();
    const { opts, sleeps, waits } = options();
    const release = await acquireLock(h, opts);
    expect(h.fs.nodes.get(LOCK_PATH)).toEqual({ type: 'file', content: OURS, mode: 0o644, uid: 0, gid: 0 });
    expect(h.fs.changes).toEqual([`create ${LOCK_PATH}`]);
    expect([sleeps, waits]).toEqual([[], []]);
    await release();
    expect(h.fs.nodes.has(LOCK_PATH)).toBe(false);
    expect(h.fs.changes).toEqual([`create ${LOCK_PATH}`, `remove ${LOCK_PATH}`]);
  });

  test('a live holder with wait: false fails with exit code 5 naming its PID and command; nothing changes', async () => {
    const h = host();
    const theirs = seedLockHolder(h, HOLDER, true);
    const { opts, sleeps, waits } = options({ wait: false });
    const err = await acquireLock(h, opts).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NspawnctlError);
    expect(err).toMatchObject({
      message: 'another nspawnctl is changing this host: PID 777 (apply /srv/conf/machines.yaml, since 2024-12-31T23:59:00.000Z)',
      exitCode: 5,
      hint: 'Wait for it, or run again with --wait (the default).',
    });
    expect(await h.fs.readText(LOCK_PATH)).toBe(theirs);
    expect(h.fs.changes).toEqual([]);
    expect([sleeps, waits]).toEqual([[], []]);
  });

  test('a live holder with wait: onWait once, polls every pollMs, takes the lock once the holder removed it', async () => {
    const h = host();
    seedLockHolder(h, HOLDER, true);
    // The holder finishes during the third sleep: it removes its lock file (and exits).
    const { opts, sleeps, waits } = options({ pollMs: 250 }, (n) => {
      if (n === 3) {
        h.fs.nodes.delete(LOCK_PATH);
        h.fs.nodes.delete('/proc/777/stat');
      }
    });
    const release = await acquireLock(h, opts);
    expect(waits).toEqual([HOLDER]);
    expect(sleeps).toEqual([250, 250, 250]);
    expect(await h.fs.readText(LOCK_PATH)).toBe(OURS);
    expect(h.fs.changes).toEqual([`create ${LOCK_PATH}`]);
    await release();
    expect(h.fs.nodes.has(LOCK_PATH)).toBe(false);
  });

  test('waiting polls every 500 ms by default', async () => {
    const h = host();
    seedLockHolder(h, HOLDER, true);
    const { opts, sleeps, waits } = options({}, () => h.fs.nodes.delete(LOCK_PATH));
    await acquireLock(h, opts);
    expect([sleeps, waits]).toEqual([[500], [HOLDER]]);
  });

  test.each([
    ['its process is gone (no /proc/PID/stat)', (h: FakeHost) => seedLockHolder(h, HOLDER, false)],
    [
      'its PID now belongs to another process (other start time)',
      (h: FakeHost) => {
        seedLockHolder(h, HOLDER, false);
        h.fs.addFile('/proc/777/stat', procStat(777, 6000));
      },
    ],
    ['the lock file is not a holder record', (h: FakeHost) => h.fs.addFile(LOCK_PATH, 'garbage')],
    ['the lock file is empty', (h: FakeHost) => h.fs.addFile(LOCK_PATH, '')],
  ])('a stale lock is taken over, even with wait: false: %s', async (_name, seed) => {
    const h = host();
    seed(h);
    const { opts, sleeps, waits } = options({ wait: false });
    await acquireLock(h, opts);
    expect(await h.fs.readText(LOCK_PATH)).toBe(OURS);
    expect(h.fs.changes).toEqual([`remove ${LOCK_PATH}`, `create ${LOCK_PATH}`]);
    expect([sleeps, waits]).toEqual([[], []]);
  });

  test('the start time is read from field 22 even when the command name holds spaces and parentheses', async () => {
    const h = host();
    seedLockHolder(h, HOLDER, false);
    h.fs.addFile('/proc/777/stat', procStat(777, 5555, 'a) (b c'));
    await expect(acquireLock(h, options({ wait: false }).opts)).rejects.toThrow(
      new NspawnctlError('another nspawnctl is changing this host: PID 777 (apply /srv/conf/machines.yaml, since 2024-12-31T23:59:00.000Z)'),
    );
    expect(h.fs.changes).toEqual([]);
  });

  test('release removes only our own lock: one another process wrote meanwhile stays', async () => {
    const h = host();
    const release = await acquireLock(h, options().opts);
    // Another run judged us dead and took over (the file now names it).
    h.fs.nodes.delete(LOCK_PATH);
    const theirs = seedLockHolder(h, HOLDER, true);
    await release();
    expect(await h.fs.readText(LOCK_PATH)).toBe(theirs);
    expect(h.fs.changes).toEqual([`create ${LOCK_PATH}`]);
  });

  test('release after the lock file vanished does nothing', async () => {
    const h = host();
    const release = await acquireLock(h, options().opts);
    h.fs.nodes.delete(LOCK_PATH);
    await release();
    expect(h.fs.changes).toEqual([`create ${LOCK_PATH}`]);
  });
});
