// Renders the files nspawnctl writes inside a machine's root filesystem.
import { Machine } from '../manifest/schema';
import { renderHeader, renderUnit } from './common';

/** One entry inside a rootfs (path relative to the machine's /). */
export type RootfsEntry =
  | { kind: 'file'; path: string; content: string; mode: number; dirMode?: number; restart: boolean }
  | { kind: 'symlink'; path: string; target: string; restart: boolean };

// networkd inside the machine configures host0 (the machine end of its veth); Debian ships it
// disabled, so it is enabled here with the same links `systemctl enable` would make.
const NETWORKD_LINKS: [string, string][] = [
  ['/etc/systemd/system/dbus-org.freedesktop.network1.service', '/lib/systemd/system/systemd-networkd.service'],
  ['/etc/systemd/system/multi-user.target.wants/systemd-networkd.service', '/lib/systemd/system/systemd-networkd.service'],
  ['/etc/systemd/system/sockets.target.wants/systemd-networkd.socket', '/lib/systemd/system/systemd-networkd.socket'],
];

/**
 * Every entry for one machine, sorted by path. `restart` says whether changing the entry on a
 * running machine needs a restart to take effect.
 */
export function renderRootfsEntries(machine: Machine, manifestFile: string): RootfsEntry[] {
  const header = renderHeader(manifestFile, `machine ${machine.name}`);
  const entries: RootfsEntry[] = [{ kind: 'file', path: '/etc/hostname', content: `${machine.hostname}\n`, mode: 0o644, restart: true }];

  if (machine.network) {
    const n = machine.network;
    entries.push({
      kind: 'file',
      path: '/etc/systemd/network/10-nspawnctl-host0.network',
      content: renderUnit(header, [
        [
          'Match',
          [
            ['Name', 'host0'],
            ['Virtualization', 'container'],
          ],
        ],
        [
          'Network',
          [
            ['Address', `${n.address}/${n.prefix}`],
            ['Gateway', n.gateway],
            ['DNS', machine.dns],
            ['LinkLocalAddressing', 'no'],
            ['IPv6AcceptRA', 'no'],
            // LLDP needs a raw socket: without CAP_NET_RAW (the strict preset) networkd would fail the link.
            ['LLDP', 'no'],
          ],
        ],
      ]),
      mode: 0o644,
      restart: true,
    });
    for (const [path, target] of NETWORKD_LINKS) entries.push({ kind: 'symlink', path, target, restart: true });
  }

  if (machine.dns.length > 0) {
    entries.push({
      kind: 'file',
      path: '/etc/resolv.conf',
      content: `${header}\n${machine.dns.map((d) => `nameserver ${d}`).join('\n')}\n`,
      mode: 0o644,
      restart: false,
    });
  }

  const env = Object.entries(machine.environment).sort(([a], [b]) => a.localeCompare(b));
  if (env.length > 0) {
    entries.push({
      kind: 'file',
      path: '/etc/environment',
      content: `${header}\n${env.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n')}\n`,
      mode: 0o644,
      restart: false,
    });
    entries.push({
      kind: 'file',
      path: '/etc/systemd/system.conf.d/50-nspawnctl-environment.conf',
      content: renderUnit(header, [['Manager', [['DefaultEnvironment', env.map(([k, v]) => `${k}=${v}`)]]]]),
      mode: 0o644,
      restart: true,
    });
  }

  if (machine.authorizedKeys.length > 0) {
    entries.push({
      kind: 'file',
      path: '/root/.ssh/authorized_keys',
      content: `${header}\n${machine.authorizedKeys.join('\n')}\n`,
      mode: 0o600,
      dirMode: 0o700,
      restart: false,
    });
  }

  if (machine.aptProxy) {
    entries.push({
      kind: 'file',
      path: '/etc/apt/apt.conf.d/01nspawnctl-proxy',
      content: `${header.replace(/^#/gm, '//')}\nAcquire::http::Proxy "${machine.aptProxy}";\n`,
      mode: 0o644,
      restart: false,
    });
  }

  for (const f of machine.files) {
    entries.push({ kind: 'file', path: f.path, content: f.content, mode: f.mode, restart: false });
  }
  return entries.sort((a, b) => a.path.localeCompare(b.path));
}
