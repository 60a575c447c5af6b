// The host lock in command tests: apply, destroy, host init and cache prune take the flock on
// /run/nspawnctl.lock first and release it last, so "nothing changed" means "nothing but that pair".
import { Holder, LOCK_PATH } from '../../src/host/lock';
import { FakeHost } from './fake-host';

/** How FakeHost logs taking and releasing the lock among the filesystem's changes. */
export const LOCK_TAKE = `lock ${LOCK_PATH}`;
export const LOCK_RELEASE = `unlock ${LOCK_PATH}`;

/**
 * The changes a command made (from index `from` of the log) besides the lock. Throws unless the
 * lock was taken first and released last, touched nowhere in between, and nobody holds it now.
 */
export function changesBesidesLock(host: FakeHost, from = 0): string[] {
  const changes = host.fs.changes.slice(from);
  const inner = changes.slice(1, -1);
  if (changes.length < 2 || changes[0] !== LOCK_TAKE || changes[changes.length - 1] !== LOCK_RELEASE || inner.some((c) => c.includes(LOCK_PATH))) {
    throw new Error(`expected the changes to be exactly one "${LOCK_TAKE}" first and one "${LOCK_RELEASE}" last, got:\n${changes.map((c) => `  ${c}`).join('\n')}`);
  }
  if (host.isLocked(LOCK_PATH)) throw new Error(`${LOCK_PATH} is still locked after the command`);
  return inner;
}

/**
 * Seeds the lock file with `holder`'s note; `alive` means its process still holds the lock (a
 * dead one leaves only the note behind, as after a SIGKILL). Returns the note.
 */
export function seedLockHolder(host: FakeHost, holder: Holder, alive: boolean): string {
  const note = `${JSON.stringify(holder)}\n`;
  host.holdLock(LOCK_PATH, note);
  if (!alive) host.endLockHolder(LOCK_PATH);
  return note;
}
