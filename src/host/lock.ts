// One writer per host: apply, destroy, host init and cache prune hold /run/nspawnctl.lock while
// they change anything. The lock is a flock(2) lock (src/host/flock.ts): the kernel gives it to
// one run at a time and takes it back when that run ends, however it ends, so there is no stale
// lock and no takeover. The file's text only names the holder, for the runs that wait or give up.
import { ExitCode, NspawnctlError } from '../errors';
import { Host } from './host';

export const LOCK_PATH = '/run/nspawnctl.lock';

/** What the holder writes into the lock file once it has the lock. */
export interface Holder {
  pid: number;
  command: string;
  since: string;
}

export interface LockOptions {
  command: string;
  wait: boolean;
  /**
   * Called once when another process holds the lock and we wait for it; `undefined` when the
   * holder has not written its note yet (it has just taken the lock).
   */
  onWait?: (holder: Holder | undefined) => void;
  now?: () => string;
  /** The lock file (host path); LOCK_PATH unless a test gives its own. */
  path?: string;
}

export type ReleaseLock = () => Promise<void>;

/** The holder named in a lock file's text, or undefined when it names none (empty, half-written). */
export function parseHolder(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Partial<Holder> | null;
    return typeof h?.pid === 'number' && typeof h.command === 'string' && typeof h.since === 'string' ? { pid: h.pid, command: h.command, since: h.since } : undefined;
  } catch {
    return undefined;
  }
}

/** "PID 123 (apply x.yaml, since ...)": the holder in messages. */
export function formatHolder(holder: Holder): string {
  return `PID ${holder.pid} (${holder.command}, since ${holder.since})`;
}

/** Takes the host lock, waiting for (or refusing, with wait: false) the run that holds it. */
export async function acquireLock(host: Host, options: LockOptions): Promise<ReleaseLock> {
  const file = await host.openLock(options.path ?? LOCK_PATH);
  try {
    if (!(await file.tryLock())) {
      const holder = parseHolder(await file.readNote());
      if (!options.wait) {
        const who = holder ? `: ${formatHolder(holder)}` : ' (it has just taken the lock and not named itself yet)';
        throw new NspawnctlError(`another nspawnctl is changing this host${who}`, {
          exitCode: ExitCode.busy,
          hint: 'Wait for it, or run again with --wait (the default).',
        });
      }
      options.onWait?.(holder);
      await file.waitLock();
    }
    const me: Holder = { pid: host.pid, command: options.command, since: (options.now ?? (() => new Date().toISOString()))() };
    await file.writeNote(`${JSON.stringify(me)}\n`);
  } catch (err) {
    await file.close();
    throw err;
  }
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    try {
      // Empty while nobody holds it, so no run names a holder that has finished. Only cosmetic:
      // a failure here must not hide the command's own error, and close releases the lock anyway.
      await file.writeNote('');
    } catch {
      // see above
    } finally {
      await file.close();
    }
  };
}
