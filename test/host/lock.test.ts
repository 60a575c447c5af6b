// The host lock with a FakeHost: a free lock is taken; a busy one is refused with --no-wait
// (exit 5, naming the holder) or waited for (announced once) and taken when the holder ends; an
// interrupt ends the wait.
import { InterruptedError, NspawnctlError } from '../../src/errors';
import { acquireLock, Holder, LOCK_PATH, LockOptions } from '../../src/host/lock';
import { FakeHost } from '../helpers/fake-host';
import { seedLockHolder } from '../helpers/lock';

const NOW = '2025-01-01T00:00:00.000Z';
const HOLDER: Holder = { pid: 777, command: 'apply /srv/conf/machines.yaml', since: '2024-12-31T23:59:00.000Z' };
/** What our note holds: FakeHost's pid 4242. */
const OURS = `${JSON.stringify({ pid: 4242, command: 'destroy web', since: NOW })}\n`;
const BUSY = 'another nspawnctl is changing this host: PID 777 (apply /srv/conf/machines.yaml, since 2024-12-31T23:59:00.000Z)';

/** Options that record every onWait call. */
function options(over: Partial<LockOptions> = {}) {
  const waits: (Holder | undefined)[] = [];
  const opts: LockOptions = { command: 'destroy web', wait: true, now: () => NOW, onWait: (h) => waits.push(h), ...over };
  return { opts, waits };
}

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('acquireLock with a FakeHost', () => {
  test('a free lock is taken without waiting and names us; release clears the note and unlocks, once', async () => {
    const h = new FakeHost();
    const { opts, waits } = options();
    const release = await acquireLock(h, opts);
    expect([h.isLocked(LOCK_PATH), h.lockNote(LOCK_PATH), h.fs.changes, waits]).toEqual([true, OURS, [`lock ${LOCK_PATH}`], []]);
    await release();
    await release();
    expect([h.isLocked(LOCK_PATH), h.lockNote(LOCK_PATH), h.fs.changes]).toEqual([false, '', [`lock ${LOCK_PATH}`, `unlock ${LOCK_PATH}`]]);
  });

  test('the note of a holder that died is no obstacle, even with wait: false: it is replaced by ours', async () => {
    const h = new FakeHost();
    seedLockHolder(h, HOLDER, false);
    const { opts, waits } = options({ wait: false });
    await acquireLock(h, opts);
    expect([h.lockNote(LOCK_PATH), h.fs.changes, waits]).toEqual([OURS, [`lock ${LOCK_PATH}`], []]);
  });

  test('a live holder with wait: false: exit code 5 naming its PID, command and start; nothing changes', async () => {
    const h = new FakeHost();
    const theirs = seedLockHolder(h, HOLDER, true);
    const { opts, waits } = options({ wait: false });
    const err = await rejection(acquireLock(h, opts));
    expect(err).toBeInstanceOf(NspawnctlError);
    expect(err).toMatchObject({ message: BUSY, exitCode: 5, hint: 'Wait for it, or run again with --wait (the default).' });
    expect([h.isLocked(LOCK_PATH), h.lockNote(LOCK_PATH), h.fs.changes, waits]).toEqual([true, theirs, [], []]);
    // Our file was closed: once the holder ends, nobody holds the lock.
    h.endLockHolder(LOCK_PATH);
    expect(h.isLocked(LOCK_PATH)).toBe(false);
  });

  test.each([
    ['empty (it has just taken the lock)', ''],
    ['half-written', '{"pid":77'],
    ['not a holder', '{"pid":"777"}\n'],
  ])('a holder whose note is %s is refused without a name, and waited for as "undefined"', async (_name, note) => {
    const h = new FakeHost();
    h.holdLock(LOCK_PATH, note);
    expect(await rejection(acquireLock(h, options({ wait: false }).opts))).toMatchObject({
      message: 'another nspawnctl is changing this host (it has just taken the lock and not named itself yet)',
      exitCode: 5,
    });
    h.onLockWait = () => h.endLockHolder(LOCK_PATH);
    const { opts, waits } = options();
    await acquireLock(h, opts);
    expect(waits).toEqual([undefined]);
  });

  test('a live holder with wait: announced once, then it waits, and takes the lock when the holder ends', async () => {
    const h = new FakeHost();
    seedLockHolder(h, HOLDER, true);
    const events: string[] = [];
    const { opts } = options({ onWait: (holder) => events.push(`onWait ${holder?.pid}`) });
    h.onLockWait = () => {
      // Queued and not holding it yet; the holder ends now.
      events.push(`waiting, changes: ${h.fs.changes.length}`);
      h.endLockHolder(LOCK_PATH);
    };
    const release = await acquireLock(h, opts);
    expect(events).toEqual(['onWait 777', 'waiting, changes: 0']);
    expect([h.lockNote(LOCK_PATH), h.fs.changes]).toEqual([OURS, [`lock ${LOCK_PATH}`]]);
    await release();
    expect(h.isLocked(LOCK_PATH)).toBe(false);
  });

  test('an interrupt while waiting ends it with InterruptedError (exit 130); the holder keeps the lock, we never get it', async () => {
    const h = new FakeHost();
    const theirs = seedLockHolder(h, HOLDER, true);
    const interrupt = new AbortController();
    h.signal = interrupt.signal;
    h.onLockWait = () => interrupt.abort();
    const { opts, waits } = options();
    const err = await rejection(acquireLock(h, opts));
    expect(err).toBeInstanceOf(InterruptedError);
    expect(err).toMatchObject({ exitCode: 130 });
    expect([waits, h.isLocked(LOCK_PATH), h.lockNote(LOCK_PATH), h.fs.changes]).toEqual([[HOLDER], true, theirs, []]);
    h.endLockHolder(LOCK_PATH);
    expect([h.isLocked(LOCK_PATH), h.fs.changes]).toEqual([false, []]);
  });

  test('an interrupt that came before the wait: InterruptedError without waiting', async () => {
    const h = new FakeHost();
    seedLockHolder(h, HOLDER, true);
    const interrupt = new AbortController();
    interrupt.abort();
    h.signal = interrupt.signal;
    let queued = false;
    h.onLockWait = () => (queued = true);
    expect(await rejection(acquireLock(h, options().opts))).toBeInstanceOf(InterruptedError);
    expect([queued, h.fs.changes]).toEqual([false, []]);
  });

  test('two runs in one FakeHost exclude each other, like two open files: the second is refused naming the first', async () => {
    const h = new FakeHost();
    const release = await acquireLock(h, options().opts);
    expect(await rejection(acquireLock(h, options({ wait: false, command: 'apply x.yaml' }).opts))).toMatchObject({
      message: `another nspawnctl is changing this host: PID 4242 (destroy web, since ${NOW})`,
    });
    await release();
    await acquireLock(h, options({ wait: false }).opts);
    expect(h.fs.changes).toEqual([`lock ${LOCK_PATH}`, `unlock ${LOCK_PATH}`, `lock ${LOCK_PATH}`]);
  });

  test('when our note cannot be written, the lock is released again and the error is reported', async () => {
    const h = new FakeHost();
    const open = h.openLock.bind(h);
    h.openLock = async (path) => ({
      ...(await open(path)),
      writeNote: async () => {
        throw new Error('ENOSPC: no space left on device, write');
      },
    });
    await expect(acquireLock(h, options().opts)).rejects.toThrow('ENOSPC');
    expect([h.isLocked(LOCK_PATH), h.fs.changes]).toEqual([false, [`lock ${LOCK_PATH}`, `unlock ${LOCK_PATH}`]]);
  });
});
