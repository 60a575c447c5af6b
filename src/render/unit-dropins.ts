// Renders drop-ins for systemd-nspawn@NAME.service: cgroup limits and device access (applied
// live by a daemon-reload), and the AppArmor profile (applied when the machine starts).
import { Machine } from '../manifest/schema';
import { renderHeader, renderUnit } from './common';

/** [Service] lines for the cgroup side of a machine, or undefined when it sets none. */
export function renderLimitsDropIn(machine: Machine, manifestFile: string): string | undefined {
  const l = machine.limits;
  const devices = machine.security.devices.map((d) => `${d.path} ${d.access}`);
  const entries: [string, string | string[] | undefined][] = [
    ['MemoryMax', l.memoryMax],
    ['MemorySwapMax', l.memorySwapMax],
    ['CPUQuota', l.cpuQuota],
    ['TasksMax', l.tasksMax === undefined ? undefined : String(l.tasksMax)],
    ['IOWeight', l.ioWeight === undefined ? undefined : String(l.ioWeight)],
    ['DeviceAllow', devices],
  ];
  if (entries.every(([, v]) => v === undefined || (Array.isArray(v) && v.length === 0))) return undefined;
  return renderUnit(renderHeader(manifestFile, `limits of machine ${machine.name}`), [['Service', entries]]);
}

export function renderAppArmorDropIn(machine: Machine, manifestFile: string): string | undefined {
  const profile = machine.security.apparmorProfile;
  if (profile === undefined) return undefined;
  return renderUnit(renderHeader(manifestFile, `AppArmor profile of machine ${machine.name}`), [['Service', [['AppArmorProfile', profile]]]]);
}
