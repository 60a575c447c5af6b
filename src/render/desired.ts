// What the host should look like for a manifest: every file nspawnctl writes, as host paths.
import { Machine, Manifest, Network } from '../manifest/schema';
import { appArmorDropInPath, credentialsDropInPath, healthDropInPath, bridgeNetworkPath, inRootfs, limitsDropInPath, netdevPath, nspawnFilePath, rootfsPath, SYSTEMD_SYSTEM_DIR } from '../host/paths';
import { filterFilePath, filterUnitName, renderFilter, renderFilterUnit } from './filter';
import { HostResolver, renderNspawnFile } from './nspawn';
import { renderAppArmorDropIn, renderCredentialsDropIn, renderLimitsDropIn } from './unit-dropins';
import { renderBridgeNetdev, renderBridgeNetwork } from './networkd';
import { renderHealthDropIn } from './health';
import { renderRootfsEntries, RootfsEntry } from './rootfs-files';

/** A file or symlink at a host-absolute path. `inRootfs` marks files inside a machine. */
export type DesiredEntry = RootfsEntry & { hostPath: string; inRootfs: boolean };

export interface DesiredMachine {
  machine: Machine;
  rootfs: string;
  /** Files outside the rootfs (the .nspawn file). */
  hostEntries: DesiredEntry[];
  /** Files inside the rootfs, with `path` relative to the machine and `hostPath` on the host. */
  rootfsEntries: DesiredEntry[];
}

export interface DesiredNetwork {
  network: Network;
  entries: DesiredEntry[];
}

export interface DesiredState {
  networks: DesiredNetwork[];
  machines: DesiredMachine[];
}

/** What rendering takes from the host it renders for (observeHostResolver reads it). */
export interface RenderHostFacts {
  resolver: HostResolver;
}

export function renderDesiredState(manifest: Manifest, facts: RenderHostFacts = { resolver: 'host' }): DesiredState {
  return {
    networks: Object.values(manifest.networks)
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((n) => renderDesiredNetwork(n, manifest.file, Object.values(manifest.machines))),
    machines: Object.values(manifest.machines).map((m) => renderDesiredMachine(m, manifest.file, facts)),
  };
}

export function renderDesiredNetwork(network: Network, manifestFile: string, machines: Machine[] = []): DesiredNetwork {
  const file = (hostPath: string, content: string): DesiredEntry => ({
    kind: 'file',
    path: hostPath,
    hostPath,
    content,
    mode: 0o644,
    restart: false,
    inRootfs: false,
  });
  const entries = [
    file(netdevPath(network.name), renderBridgeNetdev(network, manifestFile)),
    file(bridgeNetworkPath(network.name), renderBridgeNetwork(network, manifestFile)),
  ];
  if (network.isolated) {
    const unit = `${SYSTEMD_SYSTEM_DIR}/${filterUnitName(network.name)}`;
    const wants = `${SYSTEMD_SYSTEM_DIR}/sysinit.target.wants/${filterUnitName(network.name)}`;
    entries.push(
      file(filterFilePath(network.name), renderFilter(network, machines, manifestFile)),
      file(unit, renderFilterUnit(network, manifestFile)),
      { kind: 'symlink', path: wants, hostPath: wants, target: unit, restart: false, inRootfs: false },
    );
  }
  return { network, entries };
}

export function renderDesiredMachine(machine: Machine, manifestFile: string, facts: RenderHostFacts = { resolver: 'host' }): DesiredMachine {
  const rootfs = rootfsPath(machine.name);
  const nspawn = nspawnFilePath(machine.name);
  const hostFile = (path: string, content: string, restart: boolean): DesiredEntry => ({ kind: 'file', path, hostPath: path, content, mode: 0o644, restart, inRootfs: false });
  const limits = renderLimitsDropIn(machine, manifestFile);
  const apparmor = renderAppArmorDropIn(machine, manifestFile);
  const credentials = renderCredentialsDropIn(machine, manifestFile);
  const health = renderHealthDropIn(machine, manifestFile);
  return {
    machine,
    rootfs,
    hostEntries: [
      hostFile(nspawn, renderNspawnFile(machine, manifestFile, facts.resolver), true),
      // cgroup limits take effect on daemon-reload; the AppArmor profile only when the machine starts.
      ...(limits ? [hostFile(limitsDropInPath(machine.name), limits, false)] : []),
      ...(apparmor ? [hostFile(appArmorDropInPath(machine.name), apparmor, true)] : []),
      // systemd-nspawn loads credentials only when it starts the machine.
      ...(credentials ? [hostFile(credentialsDropInPath(machine.name), credentials, true)] : []),
      // The unit's start limit takes effect on daemon-reload.
      ...(health ? [hostFile(healthDropInPath(machine.name), health, false)] : []),
    ],
    rootfsEntries: renderRootfsEntries(machine, manifestFile).map((e) => ({ ...e, hostPath: inRootfs(rootfs, e.path), inRootfs: true })),
  };
}
