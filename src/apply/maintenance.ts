// A stopped machine's own programs run through systemd-nspawn with the machine's own settings
// (its user namespace, capabilities, seccomp filter, mounts, its network on its bridge, its
// limits and device policy), never as the host's root: see in-machine.ts for running machines.
import { Host } from '../host/host';
import { rootfsPath } from '../host/paths';
import { Machine } from '../manifest/schema';
import { observeHostResolver } from '../plan/observe';
import { nspawnArgs } from '../render/nspawn';
import { limitProperties, loadCredentialArgs } from '../render/unit-dropins';
import { APT_TIMEOUT_MS, escapeForExec, waitUntilReady } from './in-machine';
import { waitUntilGone } from './machinectl';

/** The unit a maintenance boot runs in (systemd-nspawn@NAME.service stays stopped meanwhile). */
export function maintenanceUnit(name: string): string {
  return `nspawnctl-maintenance-${name}.service`;
}

/**
 * Boots a stopped machine once with a writable root, runs `fn` while it runs, and powers it
 * off again: for package installs into a machine whose root is read-only or volatile while it
 * runs normally. The boot has everything systemd-nspawn@NAME.service would give it except
 * ReadOnly=/Volatile= and port forwards: the machine's user namespace, capabilities, seccomp
 * filter, mounts, its own network on its bridge, its limits and device policy.
 */
export async function withMaintenanceBoot<T>(host: Host, machine: Machine, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const name = machine.name;
  const unit = maintenanceUnit(name);
  const properties = [
    // What systemd-nspawn@.service sets, and the machine's own limits and AppArmor profile.
    'KillMode=mixed',
    'Delegate=yes',
    'DevicePolicy=closed',
    'DeviceAllow=/dev/net/tun rwm',
    'DeviceAllow=char-pts rw',
    ...unitLimits(machine),
    ...(machine.security.apparmorProfile ? [`AppArmorProfile=${machine.security.apparmorProfile}`] : []),
  ];
  const nspawn = [
    'systemd-nspawn',
    '--quiet',
    '--keep-unit',
    '--boot',
    // READY=1 only once the machine's systemd finished starting up: systemd-run returns then.
    '--notify-ready=yes',
    '--link-journal=no',
    '--settings=no',
    `--machine=${name}`,
    `--directory=${rootfsPath(name)}`,
    // The nameservers of a normal boot: apt inside must resolve the mirror.
    ...nspawnArgs(machine, { omit: ['ReadOnly', 'Volatile', 'Port'], resolver: (await observeHostResolver(host)).resolver }),
    // Its services may need their credentials to start, as in a normal boot.
    ...loadCredentialArgs(machine),
  ];
  const startSeconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  // One left by a run that was killed meanwhile is stopped first (nothing else starts it).
  await host.runner.run('systemctl', ['stop', unit], { allowFailure: true });
  await host.runner.run('systemd-run', [
    `--unit=${unit}`,
    '--service-type=notify',
    '--slice=machine.slice',
    '--collect',
    '--quiet',
    `--property=TimeoutStartSec=${startSeconds}s`,
    // Even if nspawnctl dies meanwhile, the writable boot ends by itself.
    `--property=RuntimeMaxSec=${startSeconds + APT_TIMEOUT_MS / 1000 + 60}s`,
    ...properties.map((p) => `--property=${p}`),
    '--',
    ...nspawn.map(escapeForExec),
  ]);
  try {
    await waitUntilReady(host, name, { deadline: Date.now() + timeoutMs, network: machine.network !== undefined });
    return await fn();
  } finally {
    await host.runner.run('machinectl', ['poweroff', name], { allowFailure: true });
    if (!(await waitUntilGone(host, name, unit, timeoutMs))) {
      await host.runner.run('systemctl', ['stop', unit], { allowFailure: true });
    }
  }
}

/**
 * Shifts a stopped machine's files into the UID range of its user namespace once (for a
 * read-only root, which nspawn cannot chown at start): a short systemd-nspawn run with the
 * machine's settings, no network, and the ownership mode "chown", whose only command is the
 * machine's /bin/true, run as the machine's root inside its user namespace.
 */
export async function shiftOwnership(host: Host, machine: Machine, shift: 'pick' | number, timeoutMs: number, onLine?: (line: string) => void): Promise<void> {
  const users = shift === 0 ? 'identity' : String(shift);
  await host.runner.run(
    'systemd-nspawn',
    [
      '--quiet',
      // Registered with machined: it runs in its own scope in machine.slice, with the limits below.
      ...limitArgs(machine),
      '--settings=no',
      '--console=pipe',
      '--link-journal=no',
      '--timezone=off',
      '--resolv-conf=off',
      `--machine=${machine.name}`,
      `--directory=${rootfsPath(machine.name)}`,
      ...nspawnArgs(machine, {
        omit: ['ReadOnly', 'Volatile', 'Port', 'Bridge', 'Bind', 'BindReadOnly', 'TemporaryFileSystem', 'Inaccessible', 'ResolvConf'],
        override: { PrivateUsers: users, PrivateUsersOwnership: 'chown', Private: 'yes' },
      }),
      '--',
      '/bin/true',
    ],
    { onLine, dieWithParent: true, timeoutMs },
  );
}

/** The machine's cgroup limits as unit properties (TasksMax as systemd-nspawn@.service has it by default). */
function unitLimits(machine: Machine): string[] {
  return [
    `TasksMax=${machine.limits.tasksMax ?? 16384}`,
    ...limitProperties(machine)
      .filter(([key]) => key !== 'TasksMax')
      .flatMap(([key, value]) => (value === undefined ? [] : (Array.isArray(value) ? value : [value]).map((v) => `${key}=${v}`))),
  ];
}

function limitArgs(machine: Machine): string[] {
  return unitLimits(machine).map((p) => `--property=${p}`);
}
