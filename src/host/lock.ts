// One writer per host: apply, destroy and host init hold /run/nspawnctl.lock while they change
// anything. The lock names its holder; a holder that died (its PID gone, or reused by another
// process) leaves a stale lock that the next run takes over.
import { ExitCode, NspawnctlError } from '../errors';
import { Host } from './host';

export const LOCK_PATH = '/run/nspawnctl.lock';

interface Holder {
  pid: number;
  /** Field 22 of /proc/PID/stat: tells a reused PID from the original process. */
  start: string;
  command: string;
  since: string;
}

export interface LockOptions {
  command: string;
  wait: boolean;
  /** Called once when another process holds the lock and we wait for it. */
  onWait?: (holder: Holder) => void;
  pollMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => string;
}

export type ReleaseLock = () => Promise<void>;

async function startTime(host: Host, pid: number | 'self'): Promise<string | undefined> {
  const stat = await host.fs.readText(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  // The command name (field 2) may hold spaces and parentheses; count from the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

function parseHolder(text: string | undefined): Holder | undefined {
  try {
    const h = JSON.parse(text ?? '') as Holder;
    return typeof h.pid === 'number' && typeof h.start === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

/** Takes the host lock, waiting for (or refusing, with wait: false) a live holder. */
export async function acquireLock(host: Host, options: LockOptions): Promise<ReleaseLock> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const me: Holder = { pid: host.pid, start: (await startTime(host, 'self')) ?? '', command: options.command, since: (options.now ?? (() => new Date().toISOString()))() };
  const text = `${JSON.stringify(me)}\n`;
  let announced = false;
  for (;;) {
    if (await host.fs.createExclusive(LOCK_PATH, text, 0o644)) {
      return async () => {
        // Remove it only if it is still ours.
        if ((await host.fs.readText(LOCK_PATH)) === text) await host.fs.removeFile(LOCK_PATH);
      };
    }
    const current = await host.fs.readText(LOCK_PATH);
    const holder = parseHolder(current);
    const alive = holder !== undefined && (await startTime(host, holder.pid)) === holder.start;
    if (!alive) {
      // Stale: its process is gone. Remove exactly what we read, then try again.
      if ((await host.fs.readText(LOCK_PATH)) === current) await host.fs.removeFile(LOCK_PATH);
      continue;
    }
    if (!options.wait) {
      throw new NspawnctlError(`another nspawnctl is changing this host: PID ${holder.pid} (${holder.command}, since ${holder.since})`, {
        exitCode: ExitCode.busy,
        hint: 'Wait for it, or run again with --wait (the default).',
      });
    }
    if (!announced) {
      options.onWait?.(holder);
      announced = true;
    }
    await sleep(options.pollMs ?? 500);
  }
}
