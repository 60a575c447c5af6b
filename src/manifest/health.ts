// The `health:` key: a check that the machine's own systemd runs inside it, on a timer, and what
// an unhealthy machine gets. Merged key by key: defaults.health, then the machine's.
import { z } from 'zod';

/** A time span as the manifest writes it: a whole number and s, m or min, or h (30s, 5min, 1h). */
export const DURATION = /^[1-9][0-9]{0,5}(s|m|min|h)$/;
const DURATION_MESSAGE = 'expected a time span like 30s, 5min or 1h (a whole number and s, m, min or h)';

/** An argument of the check's command: one line, no control characters (it goes into a unit file). */
export const HEALTH_ARGUMENT = /^[^\u0000-\u001f\u007f]*$/;

/**
 * The program of the check's command: an absolute path or a plain name (systemd searches its own
 * PATH in the machine). Neither can start with one of ExecStart='s prefix characters (- @ : + !)
 * or hold a character systemd would take for something else.
 */
export const HEALTH_PROGRAM = /^(\/[A-Za-z0-9_.+-]+)+$|^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;
export const HEALTH_PROGRAM_MESSAGE =
  'the program must be an absolute path (/usr/bin/curl) or a plain name (curl) of letters, digits and _ . + -; for a shell line, write [sh, -c, "..."]';

const duration = (description: string) => z.string().regex(DURATION, { message: DURATION_MESSAGE }).describe(description);

/** Built-in values of every key but command. */
export const HEALTH_DEFAULTS = {
  interval: '30s',
  timeout: '5s',
  retries: 3,
  onFailure: 'none' as const,
  restartLimit: 3,
  restartWindow: '1h',
};

export const healthSchema = z
  .object({
    command: z
      .array(z.string().regex(HEALTH_ARGUMENT, { message: 'an argument must be one line without control characters' }))
      .min(1, { message: 'a health check command needs at least the program' })
      .describe('The check, as an argument list (not a shell line): [curl, -fsS, http://localhost/]. It runs inside the machine as root; exit 0 is healthy.'),
    interval: duration(`How often the check runs, and how long after a failed one it runs again (default ${HEALTH_DEFAULTS.interval}).`),
    timeout: duration(`How long one check may take before it counts as failed (default ${HEALTH_DEFAULTS.timeout}).`),
    retries: z
      .number()
      .int()
      .min(1)
      .max(100)
      .describe(`Failed checks in a row that make the machine unhealthy (default ${HEALTH_DEFAULTS.retries}).`),
    onFailure: z
      .enum(['none', 'restart'])
      .describe('none: an unhealthy machine is reported (default); restart: it reboots itself, at most restartLimit times within restartWindow.'),
    restartLimit: z
      .number()
      .int()
      .min(1)
      .max(100)
      .describe(`With onFailure: restart, at most this many restarts within restartWindow; then the machine stays stopped until the next apply (default ${HEALTH_DEFAULTS.restartLimit}).`),
    restartWindow: duration(`The time span restartLimit counts in (default ${HEALTH_DEFAULTS.restartWindow}).`),
  })
  .partial()
  .strict()
  .describe("A health check the machine's own systemd runs inside it (a timer and a service nspawnctl writes there); apply waits for it to pass after a start.");

export type RawHealth = z.infer<typeof healthSchema>;

/** A machine's health check with every default resolved; times in seconds. */
export interface HealthCheck {
  command: string[];
  intervalSec: number;
  timeoutSec: number;
  retries: number;
  onFailure: 'none' | 'restart';
  restartLimit: number;
  restartWindowSec: number;
}

/** Seconds in a DURATION text. */
export function durationSeconds(text: string): number {
  const m = DURATION.exec(text);
  if (!m) throw new Error(`internal: ${text} is not a duration`);
  const n = Number(text.slice(0, text.length - m[1].length));
  return m[1] === 'h' ? n * 3600 : m[1] === 's' ? n : n * 60;
}

/** The machine's check: defaults.health, then its own keys; none without a command. */
export function resolveHealth(defaults: RawHealth | undefined, own: RawHealth | undefined): HealthCheck | undefined {
  const h = { ...HEALTH_DEFAULTS, ...defaults, ...own };
  if (!h.command) return undefined;
  return {
    command: h.command,
    intervalSec: durationSeconds(h.interval),
    timeoutSec: durationSeconds(h.timeout),
    retries: h.retries,
    onFailure: h.onFailure,
    restartLimit: h.restartLimit,
    restartWindowSec: durationSeconds(h.restartWindow),
  };
}
