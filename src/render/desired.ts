// What the host should look like for a manifest: every file nspawnctl writes, as host paths.
import { Machine, Manifest, Network } from '../manifest/schema';
import { bridgeNetworkPath, inRootfs, netdevPath, nspawnFilePath, rootfsPath } from '../host/paths';
import { renderNspawnFile } from './nspawn';
import { renderBridgeNetdev, renderBridgeNetwork } from './networkd';
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

export function renderDesiredState(manifest: Manifest): DesiredState {
  return {
    networks: Object.values(manifest.networks)
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((n) => renderDesiredNetwork(n, manifest.file)),
    machines: Object.values(manifest.machines).map((m) => renderDesiredMachine(m, manifest.file)),
  };
}

export function renderDesiredNetwork(network: Network, manifestFile: string): DesiredNetwork {
  const file = (hostPath: string, content: string): DesiredEntry => ({
    kind: 'file',
    path: hostPath,
    hostPath,
    content,
    mode: 0o644,
    restart: false,
    inRootfs: false,
  });
  return {
    network,
    entries: [
      file(netdevPath(network.name), renderBridgeNetdev(network, manifestFile)),
      file(bridgeNetworkPath(network.name), renderBridgeNetwork(network, manifestFile)),
    ],
  };
}

export function renderDesiredMachine(machine: Machine, manifestFile: string): DesiredMachine {
  const rootfs = rootfsPath(machine.name);
  const nspawn = nspawnFilePath(machine.name);
  return {
    machine,
    rootfs,
    hostEntries: [
      { kind: 'file', path: nspawn, hostPath: nspawn, content: renderNspawnFile(machine, manifestFile), mode: 0o644, restart: true, inRootfs: false },
    ],
    rootfsEntries: renderRootfsEntries(machine, manifestFile).map((e) => ({ ...e, hostPath: inRootfs(rootfs, e.path), inRootfs: true })),
  };
}
