// Renders the files nspawnctl writes inside a machine's root filesystem.
import { Machine } from '../manifest/schema';
import { renderAutoUpgradeEntries } from './auto-upgrade';
import { renderHeader, renderUnit } from './common';
import { renderHealthEntries } from './health';
import { renderServiceEntries } from './service-dropins';
import { APT_PROXY_FILE, AUTHORIZED_KEYS_FILE, ENVIRONMENT_DROPIN, ENVIRONMENT_FILE, HOST0_NETWORK_FILE, HOSTNAME_FILE, NETWORKD_LINKS, RESOLV_CONF_FILE } from './rootfs-paths';

/** One entry inside a rootfs (path relative to the machine's /). */
export type RootfsEntry =
  | { kind: 'file'; path: string; content: string; mode: number; dirMode?: number; restart: boolean }
  | { kind: 'symlink'; path: string; target: string; restart: boolean };

/**
 * Every entry for one machine, sorted by path. Paths other than `files:` come from
 * rootfs-paths.ts, where the manifest schema finds them too. `restart` says whether changing the entry on a
 * running machine needs a restart to take effect.
 */
export function renderRootfsEntries(machine: Machine, manifestFile: string): RootfsEntry[] {
  const header = renderHeader(manifestFile, `machine ${machine.name}`);
  const entries: RootfsEntry[] = [{ kind: 'file', path: HOSTNAME_FILE, content: `${machine.hostname}\n`, mode: 0o644, restart: true }];

  if (machine.network) {
    const n = machine.network;
    entries.push({
      kind: 'file',
      path: HOST0_NETWORK_FILE,
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
      path: RESOLV_CONF_FILE,
      content: `${header}\n${machine.dns.map((d) => `nameserver ${d}`).join('\n')}\n`,
      mode: 0o644,
      restart: false,
    });
  }

  const env = Object.entries(machine.environment).sort(([a], [b]) => a.localeCompare(b));
  if (env.length > 0) {
    entries.push({
      kind: 'file',
      path: ENVIRONMENT_FILE,
      content: `${header}\n${env.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n')}\n`,
      mode: 0o644,
      restart: false,
    });
    entries.push({
      kind: 'file',
      path: ENVIRONMENT_DROPIN,
      content: renderUnit(header, [['Manager', [['DefaultEnvironment', env.map(([k, v]) => `${k}=${v}`)]]]]),
      mode: 0o644,
      restart: true,
    });
  }

  if (machine.authorizedKeys.length > 0) {
    entries.push({
      kind: 'file',
      path: AUTHORIZED_KEYS_FILE,
      content: `${header}\n${machine.authorizedKeys.join('\n')}\n`,
      mode: 0o600,
      dirMode: 0o700,
      restart: false,
    });
  }

  if (machine.aptProxy) {
    entries.push({
      kind: 'file',
      path: APT_PROXY_FILE,
      content: `${header.replace(/^#/gm, '//')}\nAcquire::http::Proxy "${machine.aptProxy}";\n`,
      mode: 0o644,
      restart: false,
    });
  }

  entries.push(...renderHealthEntries(machine, header));
  entries.push(...renderAutoUpgradeEntries(machine, manifestFile));

  for (const f of machine.files) {
    entries.push({ kind: 'file', path: f.path, content: f.content, mode: f.mode, restart: false });
  }
  entries.push(...renderServiceEntries(machine, manifestFile));
  return entries.sort((a, b) => a.path.localeCompare(b.path));
}
