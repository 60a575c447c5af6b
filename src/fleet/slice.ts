// A fleet manifest cut into one manifest per host: that host's machines (without `host:`), the
// networks they join (a network exists on every host that has a machine on it), and the shared
// defaults. The slice is JSON, which every YAML parser reads; it goes to the host's nspawnctl on
// standard input, where it is validated again as any manifest is.
import { NspawnctlError } from '../errors';
import { Fleet, FleetHost, HOST_LABEL, HOST_NAME, Manifest } from '../manifest/schema';
import { closestMatch } from '../manifest/suggest';

/** The fleet of a manifest, or an error saying that the command's fleet flags need one. */
export function fleetOf(manifest: Manifest, flag: string): Fleet {
  if (!manifest.fleet) throw new NspawnctlError(`${flag} needs a manifest with hosts: (${manifest.file} has none)`, { exitCode: 2, hint: 'See docs/fleet.md: hosts: names the hosts, and each machine its host:.' });
  return manifest.fleet;
}

/**
 * The hosts a command acts on, in manifest order: those named by --host and those with a label
 * of --hosts-label; with neither, every host. An unknown name or a label no host has is an error.
 */
export function selectHosts(fleet: Fleet, names: string[] = [], labels: string[] = []): FleetHost[] {
  const all = Object.values(fleet.hosts);
  for (const n of names) {
    if (!HOST_NAME.test(n) || !fleet.hosts[n]) {
      const close = closestMatch(n, Object.keys(fleet.hosts), 2);
      throw new NspawnctlError(`--host ${JSON.stringify(n)}: no such host under hosts:${close ? ` (did you mean ${close}?)` : ''}`, { exitCode: 2, hint: `Hosts: ${Object.keys(fleet.hosts).join(', ')}` });
    }
  }
  for (const l of labels) {
    if (!HOST_LABEL.test(l) || !all.some((h) => h.labels.includes(l))) {
      throw new NspawnctlError(`--hosts-label ${JSON.stringify(l)}: no host has that label`, { exitCode: 2, hint: `Labels: ${[...new Set(all.flatMap((h) => h.labels))].join(', ') || '(none)'}` });
    }
  }
  if (names.length === 0 && labels.length === 0) return all;
  return all.filter((h) => names.includes(h.name) || h.labels.some((l) => labels.includes(l)));
}

/** The machines of the manifest that run on `host`, by name. */
export function machinesOn(fleet: Fleet, host: string): string[] {
  return Object.entries(fleet.data.machines)
    .filter(([, m]) => m.host === host)
    .map(([name]) => name)
    .sort();
}

/**
 * The manifest one host's nspawnctl gets: its machines, their networks, the defaults; as JSON
 * text. `without`: machines left out (one moving in later), whose networks are kept all the same.
 */
export function hostSlice(fleet: Fleet, host: string, without: string[] = []): string {
  const machines: Record<string, unknown> = {};
  const bridges = new Set<string>();
  for (const name of machinesOn(fleet, host)) {
    const { host: _host, ...machine } = fleet.data.machines[name];
    if (!without.includes(name)) machines[name] = machine;
    if (machine.network) bridges.add(machine.network.bridge);
  }
  const networks = Object.fromEntries(Object.entries(fleet.data.networks).filter(([name]) => bridges.has(name)));
  return `${JSON.stringify({ defaults: fleet.data.defaults, networks, machines }, null, 1)}\n`;
}
