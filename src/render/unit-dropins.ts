// Renders drop-ins for systemd-nspawn@NAME.service: cgroup limits and device access (applied
// live by a daemon-reload), and the AppArmor profile and credentials (applied when the machine starts).
import { Machine } from '../manifest/schema';
import { renderHeader, renderUnit } from './common';

/** The unit properties of a machine's cgroup side (limits and device access), in file order. */
export function limitProperties(machine: Machine): [string, string | string[] | undefined][] {
  const l = machine.limits;
  return [
    ['MemoryMax', l.memoryMax],
    ['MemorySwapMax', l.memorySwapMax],
    ['CPUQuota', l.cpuQuota],
    ['TasksMax', l.tasksMax === undefined ? undefined : String(l.tasksMax)],
    ['IOWeight', l.ioWeight === undefined ? undefined : String(l.ioWeight)],
    ['DeviceAllow', machine.security.devices.map((d) => `${d.path} ${d.access}`)],
  ];
}

/** [Service] lines for the cgroup side of a machine, or undefined when it sets none. */
export function renderLimitsDropIn(machine: Machine, manifestFile: string): string | undefined {
  const entries = limitProperties(machine);
  if (entries.every(([, v]) => v === undefined || (Array.isArray(v) && v.length === 0))) return undefined;
  return renderUnit(renderHeader(manifestFile, `limits of machine ${machine.name}`), [['Service', entries]]);
}

export function renderAppArmorDropIn(machine: Machine, manifestFile: string): string | undefined {
  const profile = machine.security.apparmorProfile;
  if (profile === undefined) return undefined;
  return renderUnit(renderHeader(manifestFile, `AppArmor profile of machine ${machine.name}`), [['Service', [['AppArmorProfile', profile]]]]);
}

/**
 * ExecStart= of systemd-nspawn@.service as systemd ships it (the same line in v252 to v256,
 * units/systemd-nspawn@.service.in); the credentials drop-in repeats it with credentials added.
 */
export const NSPAWN_UNIT_EXEC_START = 'systemd-nspawn --quiet --keep-unit --boot --link-journal=try-guest --network-veth -U --settings=override --machine=%i';

/** The machine's credentials as systemd-nspawn options, sorted by name (also used by its maintenance boot). */
export function loadCredentialArgs(machine: Machine): string[] {
  return Object.keys(machine.credentials)
    .sort()
    .map((n) => `--load-credential=${n}:${machine.credentials[n]}`);
}

/**
 * The machine's credentials as --load-credential=NAME:FILE on systemd-nspawn's command line, one
 * per credential, sorted by name. A .nspawn file cannot carry them: systemd-nspawn's settings
 * parser has no LoadCredential= (it would warn "Unknown key name" and start the machine without
 * them), and the service's own LoadCredential= reaches nspawn but not the machine. Only the path
 * is written; systemd-nspawn reads the file, as root, each time the machine starts.
 */
export function renderCredentialsDropIn(machine: Machine, manifestFile: string): string | undefined {
  const credentials = loadCredentialArgs(machine);
  if (credentials.length === 0) return undefined;
  const command = [NSPAWN_UNIT_EXEC_START, ...credentials].join(' ');
  // Written out here rather than with renderUnit: ini quotes a value that contains "=", and
  // systemd would then take the whole quoted command line for the program's name. Names and
  // paths are limited by the schema to characters systemd reads literally (no space, quote, % or backslash).
  return `${renderHeader(manifestFile, `credentials of machine ${machine.name}`)}\n[Service]\nExecStart=\nExecStart=${command}\n`;
}
