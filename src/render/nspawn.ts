// Renders /etc/systemd/nspawn/NAME.nspawn: how systemd-nspawn@NAME.service runs the machine.
import { Machine } from '../manifest/schema';
import { shiftsUids } from '../manifest/security';
import { renderHeader, renderUnit } from './common';

export function renderNspawnFile(machine: Machine, manifestFile: string): string {
  const s = machine.security;
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
  // With shifted UIDs a bind mount is idmapped, so host root's files are root's inside too
  // (otherwise they would show up as nobody and be read-only to the machine's root).
  const bindOptions = shiftsUids(s) ? ':idmap' : '';
  const binds = (readOnly: boolean) => machine.bind.filter((b) => b.readOnly === readOnly).map((b) => `${b.source}:${b.target}${bindOptions}`);
  const allowed = s.systemCallFilter.filter((e) => !e.startsWith('~'));
  const denied = s.systemCallFilter.filter((e) => e.startsWith('~')).map((e) => e.slice(1));
  return renderUnit(renderHeader(manifestFile, `machine ${machine.name}`), [
    [
      'Exec',
      [
        ['Boot', 'yes'],
        ['Hostname', machine.hostname],
        // With DNS servers set, /etc/resolv.conf inside is nspawnctl's; stop nspawn copying the host's.
        ['ResolvConf', machine.dns.length > 0 ? 'off' : undefined],
        ['PrivateUsers', String(s.privateUsers)],
        ['NoNewPrivileges', s.noNewPrivileges ? 'yes' : undefined],
        ['Capability', s.capabilityAdd.length ? s.capabilityAdd.join(' ') : undefined],
        ['DropCapability', s.capabilityDrop.length ? s.capabilityDrop.join(' ') : undefined],
        // Two lines: nspawn adds the first to its allow list and takes the "~" one away from it.
        ['SystemCallFilter', [...(allowed.length ? [allowed.join(' ')] : []), ...(denied.length ? [`~${denied.join(' ')}`] : [])]],
      ],
    ],
    [
      'Files',
      [
        // Files keep their on-disk owners; nspawn maps them with an idmapped mount (or chowns
        // them once where the filesystem cannot do that).
        // A read-only root cannot be chowned at start: apply shifts it beforehand.
        ['PrivateUsersOwnership', shiftsUids(s) ? (s.readOnly ? 'off' : 'auto') : undefined],
        ['ReadOnly', s.readOnly ? 'yes' : undefined],
        ['Volatile', s.volatile === 'no' ? undefined : s.volatile],
        ['Bind', [...binds(false), ...s.devices.filter((d) => d.access === 'rw').map((d) => d.path)]],
        ['BindReadOnly', [...binds(true), ...s.devices.filter((d) => d.access === 'r').map((d) => d.path)]],
        ['TemporaryFileSystem', s.tmpfs],
        ['Inaccessible', s.inaccessible],
      ],
    ],
    ['Network', network as [string, string | string[]][]],
  ]);
}
