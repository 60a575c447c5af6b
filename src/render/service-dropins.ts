// Renders the hardening drop-in of each service a machine lists under `services:`, written inside
// the machine's root filesystem at /etc/systemd/system/UNIT.service.d/50-nspawnctl-hardening.conf.
import { Machine } from '../manifest/schema';
import { SERVICE_SWITCHES, serviceDropInPath, ServiceHardening } from '../manifest/services';
import { renderHeader, renderUnit, UnitValue } from './common';
import type { RootfsEntry } from './rootfs-files';

const yesNo = (v: boolean | undefined): string | undefined => (v === undefined ? undefined : v ? 'yes' : 'no');

/** `true`/`false` as systemd's yes/no, other values as they are. */
const choice = (v: boolean | string | undefined): string | undefined => (typeof v === 'boolean' ? yesNo(v) : v);

/**
 * A list setting that replaces the unit's own: an empty assignment first resets what the unit
 * file (or an earlier drop-in) set, then the entries.
 */
const replacing = (lines: string[] | undefined): string[] | undefined => (lines === undefined ? undefined : ['', ...lines]);

/**
 * The [Service] lines of one service, in a fixed order. Only settings the preset or the manifest
 * sets are written; the unit keeps its own value of every other.
 */
export function serviceProperties(service: ServiceHardening): [string, UnitValue][] {
  const s = service.settings;
  const filter = s.systemCallFilter;
  const allowed = filter?.filter((e) => !e.startsWith('~'));
  const denied = filter?.filter((e) => e.startsWith('~')).map((e) => e.slice(1));
  const caps = s.capabilities;
  return [
    ['ProtectSystem', choice(s.protectSystem)],
    ['ProtectHome', choice(s.protectHome)],
    ...SERVICE_SWITCHES.map(([key, directive]): [string, UnitValue] => [directive, yesNo(s[key])]),
    ['SystemCallArchitectures', s.systemCallArchitectures === undefined ? undefined : s.systemCallArchitectures || ''],
    // The allowed entries come first, so that with any of them the filter is an allow list and
    // the "~" line removes from it; with none, the "~" line alone is a deny list.
    ['SystemCallFilter', replacing(filter && [...(allowed!.length ? [allowed!.join(' ')] : []), ...(denied!.length ? [`~${denied!.join(' ')}`] : [])])],
    // Added to the unit's own: paths the unit itself needs to write stay writable.
    ['ReadWritePaths', s.readWritePaths?.length ? s.readWritePaths.join(' ') : undefined],
    ['DeviceAllow', replacing(s.deviceAllow)],
    // keep replaces the unit's own set (an empty one keeps nothing); drop takes from whatever set the unit has.
    ['CapabilityBoundingSet', caps?.keep !== undefined ? ['', ...(caps.keep.length ? [caps.keep.join(' ')] : [])] : caps?.drop?.length ? `~${caps.drop.join(' ')}` : undefined],
    ['RestrictAddressFamilies', replacing(s.restrictAddressFamilies && (s.restrictAddressFamilies.length ? [s.restrictAddressFamilies.join(' ')] : []))],
  ];
}

/** The drop-in's text. */
export function renderServiceDropIn(machine: Machine, service: ServiceHardening, manifestFile: string): string {
  const header = renderHeader(manifestFile, `hardening of service ${service.name} in machine ${machine.name} (preset ${service.preset})`);
  // An empty list stands for the empty assignment (a reset) here, so it is written as ''.
  const entries = serviceProperties(service).map(([k, v]): [string, UnitValue] => [k, Array.isArray(v) && v.length === 1 && v[0] === '' ? '' : v]);
  return renderUnit(header, [['Service', entries]]);
}

/** One drop-in per service; none changes what the machine itself needs a restart for. */
export function renderServiceEntries(machine: Machine, manifestFile: string): RootfsEntry[] {
  return machine.services.map((service) => ({
    kind: 'file',
    path: serviceDropInPath(service.name),
    content: renderServiceDropIn(machine, service, manifestFile),
    mode: 0o644,
    restart: false,
  }));
}
