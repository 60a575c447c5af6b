// Renders the host's systemd-networkd files for one bridge: the .netdev that creates it and the
// .network that gives the host its gateway address on it.
import { Network } from '../manifest/schema';
import { renderHeader, renderUnit } from './common';

export function renderBridgeNetdev(net: Network, manifestFile: string): string {
  return renderUnit(renderHeader(manifestFile, `network ${net.name}`), [
    [
      'NetDev',
      [
        ['Name', net.name],
        ['Kind', 'bridge'],
      ],
    ],
  ]);
}

export function renderBridgeNetwork(net: Network, manifestFile: string): string {
  return renderUnit(renderHeader(manifestFile, `network ${net.name}`), [
    ['Match', [['Name', net.name]]],
    [
      'Network',
      [
        ['Address', `${net.gateway}/${net.subnet.prefix}`],
        // A bridge has no carrier until a machine joins; configure the address anyway and keep it
        // when the last machine leaves.
        ['ConfigureWithoutCarrier', 'yes'],
        ['IgnoreCarrierLoss', 'yes'],
        ['IPForward', net.nat ? 'ipv4' : undefined],
        ['IPMasquerade', net.nat ? 'ipv4' : undefined],
      ],
    ],
  ]);
}
