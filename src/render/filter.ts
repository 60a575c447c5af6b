// Renders the packet filter of an isolated network: one chain in nspawnctl's own nftables table
// (bridge family), and the unit that loads it at boot. Machines are told apart by their
// host-side ports (vb-NAME), which nspawn names and a machine cannot rename from inside.
import { createHash } from 'node:crypto';
import { Machine, Network } from '../manifest/schema';
import { renderHeader, renderUnit } from './common';

export const FILTER_TABLE = 'nspawnctl';
export const FILTER_DIR = '/etc/nspawnctl/filter';

export function filterChain(bridge: string): string {
  return `isolate-${bridge}`;
}

export function filterFilePath(bridge: string): string {
  return `${FILTER_DIR}/${bridge}.nft`;
}

export function filterUnitName(bridge: string): string {
  return `nspawnctl-filter-${bridge}.service`;
}

/** The comment on a chain's last rule: it names the rules' digest, so observe can tell a stale chain. */
export function filterTag(bridge: string, digest: string): string {
  return `nspawnctl ${bridge} ${digest}`;
}

/** The bridge and digest a tag names (the inverse of filterTag), or undefined for any other text. */
export function parseFilterTag(tag: string): { bridge: string; digest: string } | undefined {
  const m = /^nspawnctl (\S+) ([0-9a-f]{16})$/.exec(tag);
  return m ? { bridge: m[1], digest: m[2] } : undefined;
}

/** Reads the digest back out of a rendered filter file. */
export function filterDigestOf(content: string): string | undefined {
  const comment = /comment "([^"]*)"/.exec(content)?.[1];
  return comment === undefined ? undefined : parseFilterTag(comment)?.digest;
}

const port = (machine: string) => `"vb-${machine}"`;

/**
 * The nft script: it makes sure the table and chain exist, empties the chain, and fills it, in
 * one transaction (nft -f is atomic), so traffic never sees a half-loaded filter.
 */
export function renderFilter(network: Network, machines: Machine[], manifestFile: string): string {
  const members = machines.filter((m) => m.network?.bridge === network.name).sort((a, b) => a.name.localeCompare(b.name));
  const byName = new Map(members.map((m) => [m.name, m]));
  const ports = members.length ? `{ ${members.map((m) => port(m.name)).join(', ')} }` : undefined;
  const rules: string[] = [];
  if (ports) {
    // ARP carries no payload, and without it an allowed peer could not be found at all.
    rules.push(`iifname ${ports} oifname ${ports} ether type arp accept`);
    for (const m of members) {
      for (const rule of m.network!.allow) {
        const from = byName.get(rule.from);
        if (!from) continue;
        const there = `ip saddr ${from.network!.address} ip daddr ${m.network!.address}`;
        const back = `ip saddr ${m.network!.address} ip daddr ${from.network!.address}`;
        rules.push(`iifname ${port(from.name)} oifname ${port(m.name)} ${there} ${rule.proto} dport ${rule.port} accept`);
        // No connection tracking on bridges here, so replies are matched by port; a TCP reply is
        // never a bare SYN, so the server side cannot open connections back on this rule.
        const notNew = rule.proto === 'tcp' ? ' tcp flags & (syn | ack) != syn' : '';
        rules.push(`iifname ${port(m.name)} oifname ${port(from.name)} ${back} ${rule.proto} sport ${rule.port}${notNew} accept`);
      }
    }
  }
  const body = rules.join('\n');
  const digest = createHash('sha256').update(`${network.name}\n${ports ?? ''}\n${body}`).digest('hex').slice(0, 16);
  const chain = filterChain(network.name);
  const header = renderHeader(manifestFile, `network ${network.name} (isolated)`);
  const last = ports
    ? `iifname ${ports} oifname ${ports} counter drop comment "${filterTag(network.name, digest)}"`
    : `counter comment "${filterTag(network.name, digest)}"`;
  return [
    header,
    `table bridge ${FILTER_TABLE} {`,
    `\tchain ${chain} {`,
    // "filter" is -200 in the bridge family: before br_netfilter (-1), which takes IP packets
    // away to the IP hooks and, back on the bridge, skips every priority-0 chain registered
    // before the netns's first bridge existed (the case at boot, and for a new netns).
    '\t\ttype filter hook forward priority filter; policy accept;',
    '\t}',
    '}',
    `flush chain bridge ${FILTER_TABLE} ${chain}`,
    `table bridge ${FILTER_TABLE} {`,
    `\tchain ${chain} {`,
    ...[...rules, last].map((r) => `\t\t${r}`),
    '\t}',
    '}',
    '',
  ].join('\n');
}

/** A oneshot unit that loads the filter before any network is configured at boot. */
export function renderFilterUnit(network: Network, manifestFile: string): string {
  return renderUnit(renderHeader(manifestFile, `network ${network.name} (isolated)`), [
    [
      'Unit',
      [
        ['Description', `nspawnctl packet filter for bridge ${network.name}`],
        ['DefaultDependencies', 'no'],
        ['Wants', 'network-pre.target'],
        ['Before', 'network-pre.target shutdown.target'],
        ['After', 'nftables.service'],
        // nftables.service flushes the whole ruleset when (re)started; load again after it.
        ['PartOf', 'nftables.service'],
        ['Conflicts', 'shutdown.target'],
      ],
    ],
    [
      'Service',
      [
        ['Type', 'oneshot'],
        ['RemainAfterExit', 'yes'],
        ['ExecStart', `/usr/sbin/nft -f ${filterFilePath(network.name)}`],
      ],
    ],
    ['Install', [['WantedBy', 'sysinit.target']]],
  ]);
}
