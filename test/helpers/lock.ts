// The host lock in command tests: apply, destroy and host init take /run/nspawnctl.lock first and
// remove it last, so "nothing changed" means "nothing but that pair".
import { LOCK_PATH } from '../../src/host/lock';
import { FakeHost } from './fake-host';

export const LOCK_CREATE = `create ${LOCK_PATH}`;
export const LOCK_REMOVE = `remove ${LOCK_PATH}`;

/**
 * The changes a command made (from index `from` of the log) besides the lock. Throws unless the
 * lock was created first and removed last, touched nowhere in between, and is gone now.
 */
export function changesBesidesLock(host: FakeHost, from = 0): string[] {
  const changes = host.fs.changes.slice(from);
  const inner = changes.slice(1, -1);
  if (changes.length < 2 || changes[0] !== LOCK_CREATE || changes[changes.length - 1] !== LOCK_REMOVE || inner.some((c) => c.includes(LOCK_PATH))) {
    throw new Error(`expected the changes to be exactly one "${LOCK_CREATE}" first and one "${LOCK_REMOVE}" last, got:\n${changes.map((c) => `  ${c}`).join('\n')}`);
  }
  if (host.fs.nodes.has(LOCK_PATH)) throw new Error(`${LOCK_PATH} is still there after the command`);
  return inner;
}

/** What /proc/PID/stat holds for a process started at `start` (clock ticks after boot, field 22). */
export function procStat(pid: number, start: number | string, comm = 'node'): string {
  // Fields 3..52 after "PID (comm) "; field 22 (index 19 from field 3) is the start time.
  const rest = Array.from({ length: 50 }, (_, i) => (i === 0 ? 'S' : i === 19 ? String(start) : String(i)));
  return `${pid} (${comm}) ${rest.join(' ')}\n`;
}

/** Seeds a lock held by `pid`; `alive` also seeds its /proc/PID/stat with the matching start time. */
export function seedLockHolder(host: FakeHost, holder: { pid: number; start: string; command: string; since: string }, alive: boolean): string {
  const text = `${JSON.stringify(holder)}\n`;
  host.fs.addFile(LOCK_PATH, text);
  if (alive) host.fs.addFile(`/proc/${holder.pid}/stat`, procStat(holder.pid, holder.start));
  return text;
}
