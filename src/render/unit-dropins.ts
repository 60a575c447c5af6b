// Renders drop-ins for systemd-nspawn@NAME.service: cgroup limits and device access (applied
// live by a daemon-reload), and the AppArmor profile (applied when the machine starts).
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
