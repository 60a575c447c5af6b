// Machines for the tests of what runs a machine's own programs (package installs, maintenance
// boots, the ownership shift), and the exact command lines expected for them. The systemd-nspawn
// options are spelled out by hand from app's .nspawn file (printed in APP_NSPAWN below), not
// taken from src/, so that the tests check the translation.
import { parseManifest } from '../../src/manifest/load';
import { Machine } from '../../src/manifest/schema';

export const MACHINES_YAML = `networks:
  lan: { subnet: 10.5.0.0/24 }
machines:
  app:
    network: { bridge: lan, address: 10.5.0.2 }
    bind: ["/srv/app", "/srv/conf:/etc/app:ro"]
    ports: [{ host: 8080, container: 80 }]
    limits: { memory: 512M, tasks: 256, cpus: 0.5 }
    security:
      readOnly: true
      noNewPrivileges: true
      tmpfs: [/tmp]
      inaccessible: [/proc/kcore]
      devices: [{ path: /dev/fuse }]
      capabilities: { drop: [CAP_MKNOD, CAP_SYS_PTRACE] }
      systemCallFilter: ["~@clock"]
      apparmorProfile: nspawnctl-app
  web:
    network: { bridge: lan, address: 10.5.0.3 }
  vol:
    network: { bridge: lan, address: 10.5.0.4 }
    security: { volatile: state }
  solo: {}
`;

/** The manifest's machines by name: app (read-only), web (writable), vol (volatile), solo (no network). */
export function specMachines(): Record<string, Machine> {
  return parseManifest('machines.yaml', MACHINES_YAML).machines;
}

/** app's .nspawn file, as renderNspawnFile writes it (without its header); for reading the options below against. */
export const APP_NSPAWN = `[Exec]
Boot=yes
Hostname=app
ResolvConf=bind-host
PrivateUsers=pick
NoNewPrivileges=yes
DropCapability=CAP_MKNOD CAP_SYS_PTRACE
SystemCallFilter=~@clock

[Files]
PrivateUsersOwnership=off
ReadOnly=yes
Bind=/srv/app:/srv/app
Bind=/dev/fuse
BindReadOnly=/srv/conf:/etc/app:idmap
TemporaryFileSystem=/tmp
Inaccessible=/proc/kcore

[Network]
Bridge=lan
Port=tcp:8080:80
`;

/** app's limits and device access as unit properties (TasksMax first, as systemd-nspawn@.service has one). */
export const APP_LIMIT_PROPERTIES = ['TasksMax=256', 'MemoryMax=512M', 'CPUQuota=50%', 'DeviceAllow=/dev/fuse rw'];

/** Before a maintenance boot, a unit of that name left by a killed run is stopped. */
export const STOP_LEFTOVER_MAINTENANCE = (name: string): string[] => ['systemctl', 'stop', `nspawnctl-maintenance-${name}.service`];

/**
 * The transient unit that boots app once with a writable root: everything of APP_NSPAWN as
 * options except ReadOnly= and Port=, systemd-nspawn@.service's own properties, app's limits
 * and its AppArmor profile.
 */
export function appMaintenanceBoot(timeoutS: number): string[] {
  return [
    'systemd-run',
    '--unit=nspawnctl-maintenance-app.service',
    '--service-type=notify',
    '--slice=machine.slice',
    '--collect',
    '--quiet',
    `--property=TimeoutStartSec=${timeoutS}s`,
    // Its start timeout plus apt's 30 minutes plus a minute: it ends by itself even if nspawnctl dies.
    `--property=RuntimeMaxSec=${timeoutS + 1800 + 60}s`,
    '--property=KillMode=mixed',
    '--property=Delegate=yes',
    '--property=DevicePolicy=closed',
    '--property=DeviceAllow=/dev/net/tun rwm',
    '--property=DeviceAllow=char-pts rw',
    ...APP_LIMIT_PROPERTIES.map((p) => `--property=${p}`),
    '--property=AppArmorProfile=nspawnctl-app',
    '--',
    'systemd-nspawn',
    '--quiet',
    '--keep-unit',
    '--boot',
    '--notify-ready=yes',
    '--link-journal=no',
    '--settings=no',
    '--machine=app',
    '--directory=/var/lib/machines/app',
    '--hostname=app',
    '--resolv-conf=bind-host',
    '--private-users=pick',
    '--no-new-privileges=yes',
    '--drop-capability=CAP_MKNOD,CAP_SYS_PTRACE',
    '--system-call-filter=~@clock',
    '--private-users-ownership=off',
    '--bind=/srv/app:/srv/app',
    '--bind=/dev/fuse',
    '--bind-ro=/srv/conf:/etc/app:idmap',
    '--tmpfs=/tmp',
    '--inaccessible=/proc/kcore',
    '--network-bridge=lan',
  ];
}
