// autoUpgrade: the machine upgrades itself. A oneshot service inside it runs the same apt-get
// commands as `nspawnctl upgrade`, and a timer starts it on the manifest's schedule. Both belong to
// the machine's own systemd: in a running machine they take effect with a daemon-reload and a
// (re)start of the timer inside it (the plan's reload-machine-units step), with no restart; a
// stopped machine picks them up when it boots. No package is installed for it.
import { AutoUpgradeSchedule, Machine } from '../manifest/schema';
import { renderHeader, renderUnit } from './common';
import type { RootfsEntry } from './rootfs-files';
import { AUTO_UPGRADE_SERVICE_FILE, AUTO_UPGRADE_TIMER_FILE, AUTO_UPGRADE_TIMER_LINK, AUTO_UPGRADE_UNIT } from './rootfs-paths';

/** The environment apt runs with when nspawnctl upgrades a machine: never a question. */
export const APT_UPGRADE_ENV: Readonly<Record<string, string>> = { DEBIAN_FRONTEND: 'noninteractive' };

/** Refreshes the machine's package lists. */
export const APT_UPDATE: readonly string[] = ['apt-get', 'update'];

/**
 * Upgrades every package, installing or removing what new versions need, without a question:
 * a configuration file changed in the machine is kept (confdef takes the package's own default
 * where it has one, confold keeps the machine's copy otherwise). Recommends are not added, as
 * when nspawnctl installs packages.
 */
export const APT_FULL_UPGRADE: readonly string[] = [
  'apt-get',
  'full-upgrade',
  '--yes',
  '--no-install-recommends',
  '-o',
  'Dpkg::Options::=--force-confdef',
  '-o',
  'Dpkg::Options::=--force-confold',
];

/** How long one automatic run may take inside the machine (as nspawnctl gives apt: 30 minutes). */
export const AUTO_UPGRADE_TIMEOUT = '30min';

/** The timer that starts the upgrade service; what is (re)started or stopped inside a running machine. */
export const AUTO_UPGRADE_TIMER = `${AUTO_UPGRADE_UNIT}.timer`;

/**
 * The unit of the machine's own systemd that a generated file at `path` (machine-relative) belongs
 * to, when the file takes effect live (daemon-reload and the unit restarted) rather than at start.
 */
export function liveUnitOf(path: string): string | undefined {
  return [AUTO_UPGRADE_SERVICE_FILE, AUTO_UPGRADE_TIMER_FILE, AUTO_UPGRADE_TIMER_LINK].includes(path) ? AUTO_UPGRADE_TIMER : undefined;
}

/** ExecStart= takes a program's absolute path; apt-get is in /usr/bin on Debian and Ubuntu. */
function execLine(argv: readonly string[]): string {
  return `ExecStart=/usr/bin/${argv.join(' ')}`;
}

/**
 * The upgrade service. Written out rather than with renderUnit: ini quotes a value containing "=",
 * and systemd would take the quoted text for one word. Every word here is a constant without
 * spaces, quotes, "%" or "$", which systemd reads literally.
 */
export function renderAutoUpgradeService(machine: Machine, manifestFile: string): string {
  return [
    renderHeader(manifestFile, `machine ${machine.name}`),
    '[Unit]',
    'Description=Upgrade packages (nspawnctl autoUpgrade)',
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=oneshot',
    ...Object.entries(APT_UPGRADE_ENV).map(([k, v]) => `Environment=${k}=${v}`),
    execLine(APT_UPDATE),
    execLine(APT_FULL_UPGRADE),
    `TimeoutStartSec=${AUTO_UPGRADE_TIMEOUT}`,
    '',
  ].join('\n');
}

/**
 * The timer. RandomizedDelaySec spreads machines (and hosts) over an hour, so that they do not all
 * ask the mirror at midnight; Persistent catches up on a run missed while the machine was stopped.
 */
export function renderAutoUpgradeTimer(machine: Machine, schedule: AutoUpgradeSchedule, manifestFile: string): string {
  return renderUnit(renderHeader(manifestFile, `machine ${machine.name}`), [
    ['Unit', [['Description', `Upgrade packages ${schedule} (nspawnctl autoUpgrade)`]]],
    [
      'Timer',
      [
        ['OnCalendar', schedule],
        ['RandomizedDelaySec', '1h'],
        ['Persistent', 'true'],
      ],
    ],
    ['Install', [['WantedBy', 'timers.target']]],
  ]);
}

/** The service, the timer and the link that enables it, for a machine with autoUpgrade (none otherwise). */
export function renderAutoUpgradeEntries(machine: Machine, manifestFile: string): RootfsEntry[] {
  if (!machine.autoUpgrade) return [];
  return [
    { kind: 'file', path: AUTO_UPGRADE_SERVICE_FILE, content: renderAutoUpgradeService(machine, manifestFile), mode: 0o644, restart: false },
    { kind: 'file', path: AUTO_UPGRADE_TIMER_FILE, content: renderAutoUpgradeTimer(machine, machine.autoUpgrade.schedule, manifestFile), mode: 0o644, restart: false },
    { kind: 'symlink', path: AUTO_UPGRADE_TIMER_LINK, target: AUTO_UPGRADE_TIMER_FILE, restart: false },
  ];
}
