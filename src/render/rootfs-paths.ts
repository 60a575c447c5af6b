// Every path nspawnctl itself writes inside a machine's root filesystem, in one place: the
// renderer builds its entries from these constants and the manifest schema refuses `files:`
// entries on, above or below any of them (such an entry would be overwritten on every apply, so
// the plan would never converge).

/** One path nspawnctl writes inside a rootfs, and what puts it there (for messages). */
export interface GeneratedRootfsPath {
  path: string;
  kind: 'file' | 'symlink';
  /** The manifest key the path is rendered from; undefined for paths apply writes on its own. */
  key?: string;
  /** For paths apply writes on its own: when it does. */
  when?: string;
}

export const HOSTNAME_FILE = '/etc/hostname';
export const HOST0_NETWORK_FILE = '/etc/systemd/network/10-nspawnctl-host0.network';
export const RESOLV_CONF_FILE = '/etc/resolv.conf';
export const ENVIRONMENT_FILE = '/etc/environment';
export const ENVIRONMENT_DROPIN = '/etc/systemd/system.conf.d/50-nspawnctl-environment.conf';
export const AUTHORIZED_KEYS_FILE = '/root/.ssh/authorized_keys';
export const APT_PROXY_FILE = '/etc/apt/apt.conf.d/01nspawnctl-proxy';

// networkd inside the machine configures host0 (the machine end of its veth); Debian ships it
// disabled, so it is enabled with the same links `systemctl enable` would make.
export const NETWORKD_LINKS: readonly (readonly [link: string, target: string])[] = [
  ['/etc/systemd/system/dbus-org.freedesktop.network1.service', '/lib/systemd/system/systemd-networkd.service'],
  ['/etc/systemd/system/multi-user.target.wants/systemd-networkd.service', '/lib/systemd/system/systemd-networkd.service'],
  ['/etc/systemd/system/sockets.target.wants/systemd-networkd.socket', '/lib/systemd/system/systemd-networkd.socket'],
];

// The health check (`health:`): a service the machine's own systemd runs on a timer, and the
// link that enables the timer (what `systemctl enable` would make).
export const HEALTH_SERVICE = 'nspawnctl-health.service';
export const HEALTH_TIMER = 'nspawnctl-health.timer';
export const HEALTH_SERVICE_FILE = `/etc/systemd/system/${HEALTH_SERVICE}`;
export const HEALTH_TIMER_FILE = `/etc/systemd/system/${HEALTH_TIMER}`;
export const HEALTH_TIMER_LINK = `/etc/systemd/system/timers.target.wants/${HEALTH_TIMER}`;
export const HEALTH_ROOTFS_PATHS: readonly string[] = [HEALTH_SERVICE_FILE, HEALTH_TIMER_FILE, HEALTH_TIMER_LINK];
// autoUpgrade: a service that upgrades the machine's packages, its timer, and the link that
// enables the timer (what `systemctl enable` would make).
export const AUTO_UPGRADE_UNIT = 'nspawnctl-upgrade';
export const AUTO_UPGRADE_SERVICE_FILE = `/etc/systemd/system/${AUTO_UPGRADE_UNIT}.service`;
export const AUTO_UPGRADE_TIMER_FILE = `/etc/systemd/system/${AUTO_UPGRADE_UNIT}.timer`;
export const AUTO_UPGRADE_TIMER_LINK = `/etc/systemd/system/timers.target.wants/${AUTO_UPGRADE_UNIT}.timer`;

// Written by apply itself, not rendered: src/apply/bootstrap.ts writes these two (withPolicyRcD
// and createMachine); it spells them as relative paths of its own.
export const POLICY_RC_D_FILE = '/usr/sbin/policy-rc.d';
export const MACHINE_ID_FILE = '/etc/machine-id';

/** Every path nspawnctl writes inside a machine, whether rendered or written by apply. */
export const GENERATED_ROOTFS_PATHS: readonly GeneratedRootfsPath[] = [
  { path: HOSTNAME_FILE, kind: 'file', key: 'hostname' },
  { path: HOST0_NETWORK_FILE, kind: 'file', key: 'network' },
  ...NETWORKD_LINKS.map(([path]): GeneratedRootfsPath => ({ path, kind: 'symlink', key: 'network' })),
  { path: RESOLV_CONF_FILE, kind: 'file', key: 'dns' },
  { path: ENVIRONMENT_FILE, kind: 'file', key: 'environment' },
  { path: ENVIRONMENT_DROPIN, kind: 'file', key: 'environment' },
  { path: AUTHORIZED_KEYS_FILE, kind: 'file', key: 'authorizedKeys' },
  { path: APT_PROXY_FILE, kind: 'file', key: 'aptProxy' },
  { path: HEALTH_SERVICE_FILE, kind: 'file', key: 'health' },
  { path: HEALTH_TIMER_FILE, kind: 'file', key: 'health' },
  { path: HEALTH_TIMER_LINK, kind: 'symlink', key: 'health' },
  { path: AUTO_UPGRADE_SERVICE_FILE, kind: 'file', key: 'autoUpgrade' },
  { path: AUTO_UPGRADE_TIMER_FILE, kind: 'file', key: 'autoUpgrade' },
  { path: AUTO_UPGRADE_TIMER_LINK, kind: 'symlink', key: 'autoUpgrade' },
  { path: POLICY_RC_D_FILE, kind: 'file', when: 'while it installs packages' },
  { path: MACHINE_ID_FILE, kind: 'file', when: 'when it copies a machine from a base image' },
];
