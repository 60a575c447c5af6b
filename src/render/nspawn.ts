// Renders /etc/systemd/nspawn/NAME.nspawn: how systemd-nspawn@NAME.service runs the machine.
import { Machine } from '../manifest/schema';
import { renderHeader, renderUnit } from './common';

export function renderNspawnFile(machine: Machine, manifestFile: string): string {
  const network = machine.network
    ? [
        ['Bridge', machine.network.bridge],
        ['Port', machine.ports.map((p) => `${p.protocol}:${p.host}:${p.container}`)],
      ]
    : // No network: only loopback. The unit's default (--network-veth) is overridden here.
      [
        ['Private', 'yes'],
        ['VirtualEthernet', 'no'],
      ];
  return renderUnit(renderHeader(manifestFile, `machine ${machine.name}`), [
    [
      'Exec',
      [
        ['Boot', 'yes'],
        ['Hostname', machine.hostname],
        // With DNS servers set, /etc/resolv.conf inside is nspawnctl's; stop nspawn copying the host's.
        ['ResolvConf', machine.dns.length > 0 ? 'off' : undefined],
      ],
    ],
    [
      'Files',
      [
        ['Bind', machine.bind.filter((b) => !b.readOnly).map((b) => `${b.source}:${b.target}`)],
        ['BindReadOnly', machine.bind.filter((b) => b.readOnly).map((b) => `${b.source}:${b.target}`)],
      ],
    ],
    ['Network', network as [string, string | string[]][]],
  ]);
}
