// Renders a machine's health check: a oneshot service and a timer inside the machine, run by its
// own systemd (no daemon of nspawnctl's), and, for onFailure: restart, the start limit of the
// machine's unit on the host.
//
// How systemd does each part:
// - every `interval` the timer starts the service (OnUnitInactiveSec=: counted from the end of
//   the last run, so runs never overlap); the first run is `interval` after the machine booted;
// - a failed run is run again `interval` later (Restart=on-failure), and every run counts
//   against the service's start limit: `retries` runs, then the next start is refused and the
//   service fails: that is "unhealthy". A passing run resets the count (ExecStartPost= runs
//   `systemctl reset-failed` on the service, which also resets its start limit), so only failed
//   runs in a row count;
// - with onFailure: restart, StartLimitAction=reboot: when the limit is hit the machine reboots
//   itself, as its root may (systemctl reboot). systemd-nspawn sees the machine's init ask for a
//   reboot and exits with 133, which systemd-nspawn@.service turns into a restart of the unit
//   (RestartForceExitStatus=133): a fresh boot. The unit's own start limit, set in a host
//   drop-in, bounds how often that may happen.
import { HealthCheck } from '../manifest/health';
import { Machine } from '../manifest/schema';
import { renderHeader, renderUnit } from './common';
import { HEALTH_SERVICE, HEALTH_SERVICE_FILE, HEALTH_TIMER_FILE, HEALTH_TIMER_LINK } from './rootfs-paths';
import { RootfsEntry } from './rootfs-files';

/**
 * One argument of ExecStart= in a unit file, quoted so that systemd reads it back exactly: a
 * double-quoted word takes C escapes (so \ and " are escaped), specifiers are resolved in each
 * word after that (% doubled), and $VAR is expanded when the command runs ($ doubled). The schema
 * allows no control character in an argument and no prefix character (- @ : + !) in the program.
 */
export function quoteExecArgument(arg: string): string {
  const escaped = arg.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return `"${escaped}"`;
}

/** The service's start limit window: every run of a streak of `retries` failures fits in it. */
export function healthStartLimitSeconds(h: HealthCheck): number {
  return (h.retries + 1) * (h.intervalSec + h.timeoutSec);
}

/**
 * Unit files written as text: ini (renderUnit) would quote a value that starts and ends with a
 * quote, and escape ";" and "#", which ExecStart= needs as they are.
 */
function unitText(header: string, sections: [string, [string, string | undefined][]][]): string {
  const body = sections.map(([name, entries]) => [`[${name}]`, ...entries.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`)].join('\n'));
  return `${header}\n${body.join('\n\n')}\n`;
}

/** The service, the timer and the link enabling the timer, inside the machine; none without a check. */
export function renderHealthEntries(machine: Machine, header: string): RootfsEntry[] {
  const h = machine.health;
  if (!h) return [];
  const service = unitText(header, [
    [
      'Unit',
      [
        ['Description', `nspawnctl health check of machine ${machine.name}`],
        // `retries` failed runs in a row use the limit up; the next start is refused: unhealthy.
        ['StartLimitIntervalSec', `${healthStartLimitSeconds(h)}s`],
        ['StartLimitBurst', String(h.retries)],
        ['StartLimitAction', h.onFailure === 'restart' ? 'reboot' : undefined],
      ],
    ],
    [
      'Service',
      [
        ['Type', 'oneshot'],
        ['ExecStart', h.command.map(quoteExecArgument).join(' ')],
        // A passing run resets the count of failed runs (and the start limit with it).
        ['ExecStartPost', `systemctl reset-failed ${HEALTH_SERVICE}`],
        ['TimeoutStartSec', `${h.timeoutSec}s`],
        ['Restart', 'on-failure'],
        ['RestartSec', `${h.intervalSec}s`],
      ],
    ],
  ]);
  const timer = unitText(header, [
    ['Unit', [['Description', `nspawnctl health check of machine ${machine.name}, every ${h.intervalSec} s`]]],
    [
      'Timer',
      [
        ['OnActiveSec', `${h.intervalSec}s`],
        ['OnUnitInactiveSec', `${h.intervalSec}s`],
        ['AccuracySec', '1s'],
      ],
    ],
    ['Install', [['WantedBy', 'timers.target']]],
  ]);
  return [
    { kind: 'file', path: HEALTH_SERVICE_FILE, content: service, mode: 0o644, restart: false },
    { kind: 'file', path: HEALTH_TIMER_FILE, content: timer, mode: 0o644, restart: false },
    { kind: 'symlink', path: HEALTH_TIMER_LINK, target: HEALTH_TIMER_FILE, restart: false },
  ];
}

/**
 * The host drop-in for systemd-nspawn@NAME.service with onFailure: restart: at most
 * restartLimit + 1 starts within restartWindow (the first start and restartLimit restarts); past
 * that the unit fails (start-limit-hit) and the machine stays stopped until apply starts it
 * (apply resets the count first). undefined without a restarting check.
 */
export function renderHealthDropIn(machine: Machine, manifestFile: string): string | undefined {
  const h = machine.health;
  if (!h || h.onFailure !== 'restart') return undefined;
  return renderUnit(renderHeader(manifestFile, `machine ${machine.name}`), [
    [
      'Unit',
      [
        ['StartLimitIntervalSec', `${h.restartWindowSec}s`],
        ['StartLimitBurst', String(h.restartLimit + 1)],
      ],
    ],
  ]);
}

