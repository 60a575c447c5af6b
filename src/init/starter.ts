// `nspawnctl init`: the starter manifest, from facts about the host (its release, routes,
// addresses, interfaces and resolvers). Pure: observe.ts gathers the facts.
import { blockSize, formatIpv4, formatSubnet, parseIpv4, Subnet, subnetsOverlap } from '../manifest/ipv4';

/** Releases a starter may pick: the host's own, when it is one of these. */
export const KNOWN_RELEASES = [
  { distribution: 'debian', suite: 'bookworm', name: 'Debian 12' },
  { distribution: 'debian', suite: 'trixie', name: 'Debian 13' },
  { distribution: 'ubuntu', suite: 'noble', name: 'Ubuntu 24.04' },
] as const;
export type KnownRelease = (typeof KNOWN_RELEASES)[number];
const FALLBACK_RELEASE: KnownRelease = KNOWN_RELEASES[0];

/** What the starter manifest is made from. `undefined` means it could not be found out. */
export interface StarterFacts {
  /** The text of /etc/os-release (or /usr/lib/os-release). */
  osRelease?: string;
  /** IPv4 destinations of every route in every table, as `ip -json route` gives them ("default", "10.0.0.0/24", "10.0.0.5"). */
  routes?: string[];
  /** IPv4 addresses with their prefix length ("192.168.1.20/24"), and the names of all interfaces. */
  addresses?: string[];
  interfaces?: string[];
  /** Why routes or addresses are missing (ip failed), for the warning. */
  ipProblem?: string;
  /** /etc/resolv.conf, and systemd-resolved's list of the servers it forwards to. */
  resolvConf?: string;
  resolvedUplink?: string;
}

export interface ReleaseChoice {
  release: KnownRelease;
  /** Said when the host's own release was not used. */
  note?: string;
}

/** Parses os-release(5): KEY=value lines, values optionally quoted. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let value = m[2];
    const q = value[0];
    if ((q === '"' || q === "'") && value.endsWith(q) && value.length >= 2) value = value.slice(1, -1);
    out[m[1]] = q === '"' ? value.replace(/\\(["\\`$])/g, '$1') : value;
  }
  return out;
}

/** The host's own release when nspawnctl knows it, else Debian 12 (bookworm), saying why. */
export function chooseRelease(osRelease: string | undefined): ReleaseChoice {
  if (osRelease === undefined) return { release: FALLBACK_RELEASE, note: `could not read /etc/os-release; using ${describe(FALLBACK_RELEASE)}` };
  const os = parseOsRelease(osRelease);
  const id = (os.ID ?? '').toLowerCase();
  const codename = (os.VERSION_CODENAME || os.UBUNTU_CODENAME || '').toLowerCase();
  const known = KNOWN_RELEASES.find((r) => r.distribution === id && r.suite === codename);
  if (known) return { release: known };
  const host = os.PRETTY_NAME || [os.NAME, os.VERSION].filter(Boolean).join(' ') || 'unknown';
  const names = KNOWN_RELEASES.map(describe);
  return {
    release: FALLBACK_RELEASE,
    note: `this host is ${JSON.stringify(host)}, not ${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}; using ${describe(FALLBACK_RELEASE)}`,
  };
}

export function describe(r: KnownRelease): string {
  return `${r.name} (${r.suite})`;
}

/** A route destination or interface address as the block it covers; undefined for "default" and non-IPv4. */
export function parseNetwork(text: string): Subnet | undefined {
  const m = /^([0-9.]+)(?:\/([0-9]{1,2}))?$/.exec(text);
  if (!m) return undefined;
  const addr = parseIpv4(m[1]);
  const prefix = m[2] === undefined ? 32 : Number(m[2]);
  if (addr === undefined || prefix > 32 || prefix < 1) return undefined;
  return { base: addr - (addr % blockSize(prefix)), prefix };
}

/** Private /24s tried in order: 10.77.0.0/24 (the documentation's) first, then the rest of 10.77/16, 172.27/16, 192.168.77-255. */
export function* candidateSubnets(): Generator<Subnet> {
  for (const [a, b, from] of [[10, 77, 0], [172, 27, 0], [192, 168, 77]]) {
    for (let c = from; c < 256; c++) yield { base: ((a * 256 + b) * 256 + c) * 256, prefix: 24 };
  }
}

/** The first candidate /24 that overlaps none of `taken`. */
export function pickSubnet(taken: readonly Subnet[]): Subnet | undefined {
  for (const s of candidateSubnets()) if (!taken.some((t) => subnetsOverlap(s, t))) return s;
  return undefined;
}

/** A bridge name no interface of the host has. */
export function pickBridgeName(interfaces: readonly string[]): string {
  for (let i = 0; ; i++) if (!interfaces.includes(`nspawn${i}`)) return `nspawn${i}`;
}

/** IPv4 nameservers of a resolv.conf, in order. */
export function nameservers(text: string | undefined): string[] {
  return (text ?? '')
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((s): s is string => s !== undefined && parseIpv4(s) !== undefined);
}

const isLoopback = (ip: string) => ip.startsWith('127.');

/**
 * How the machines get DNS. `copy`: the host's /etc/resolv.conf names a server a machine can
 * reach through NAT, and each machine keeps the copy of it its bootstrapper made (systemd-nspawn
 * leaves /etc/resolv.conf alone on a private network), so dns: stays out. `servers`: the host's
 * names only a loopback resolver (systemd-resolved's 127.0.0.53, a local dnsmasq) that a machine
 * cannot reach; dns: lists the servers systemd-resolved forwards to. `unknown`: neither.
 */
export type DnsChoice = { kind: 'copy'; hostServers: string[] } | { kind: 'servers'; servers: string[]; loopback: string[] } | { kind: 'unknown'; loopback: string[] };

export function chooseDns(facts: Pick<StarterFacts, 'resolvConf' | 'resolvedUplink'>): DnsChoice {
  const host = nameservers(facts.resolvConf);
  const reachable = host.filter((s) => !isLoopback(s));
  if (reachable.length > 0) return { kind: 'copy', hostServers: reachable };
  const loopback = host.filter(isLoopback);
  const uplink = nameservers(facts.resolvedUplink).filter((s) => !isLoopback(s));
  return uplink.length > 0 ? { kind: 'servers', servers: uplink.slice(0, 3), loopback } : { kind: 'unknown', loopback };
}

export interface Starter {
  /** The manifest text. */
  text: string;
  release: KnownRelease;
  subnet: Subnet;
  bridge: string;
  machine: { name: string; address: string };
  dns: DnsChoice;
  /** Things the user should know (printed on stderr). */
  warnings: string[];
}

export interface StarterOptions {
  /** The `$schema` path of the first line (relative to the manifest, or absolute). */
  schema: string;
  /** Where the Debian package installs the schema, for the comment. */
  installedSchema: string;
  /** The manifest's name in the commands the comment shows. */
  fileName: string;
}

/** The starter manifest for a host. Throws only when every candidate subnet is taken. */
export function buildStarter(facts: StarterFacts, options: StarterOptions): Starter {
  const warnings: string[] = [];
  const { release, note } = chooseRelease(facts.osRelease);
  if (note) warnings.push(note);
  const taken = [...(facts.routes ?? []), ...(facts.addresses ?? [])].map(parseNetwork).filter((s): s is Subnet => s !== undefined && s.prefix > 0);
  const subnet = pickSubnet(taken);
  if (!subnet) throw new Error('every candidate private /24 overlaps a route or address of this host');
  const checked = facts.routes !== undefined && facts.addresses !== undefined;
  if (!checked) warnings.push(`could not ask ip for this host's routes and addresses${facts.ipProblem ? ` (${facts.ipProblem})` : ''}; check that ${formatSubnet(subnet)} is not in use here`);
  const bridge = pickBridgeName(facts.interfaces ?? []);
  const gateway = formatIpv4(subnet.base + 1);
  const machine = { name: 'web', address: formatIpv4(subnet.base + 10) };
  const dns = chooseDns(facts);
  if (dns.kind === 'unknown') {
    warnings.push(`no DNS server a machine can reach was found (/etc/resolv.conf names ${dns.loopback.length ? dns.loopback.join(', ') : 'none'}); set defaults.dns in the manifest`);
  }
  const subnetText = formatSubnet(subnet);
  const lines = [
    `# yaml-language-server: $schema=${options.schema}`,
    ...comment(
      '',
      'The line above lets editors with the YAML language server (VS Code, Neovim, ...) check this file and complete its keys. ' +
        'Its path is relative to this file and leads to the schema of the nspawnctl that wrote it; if you move the file, ' +
        `or use the Debian package, point it at the installed copy: $schema=${options.installedSchema}`,
    ),
    '#',
    '# A starter manifest written by `nspawnctl init`: one machine on a private bridge with NAT.',
    '# Every key is documented in docs/manifest.md. As root:',
    ...[
      [`nspawnctl host init ${options.fileName}`, 'once: packages, networkd, the bridge, forwarding'],
      [`nspawnctl plan ${options.fileName}`, 'what apply would do'],
      [`nspawnctl apply ${options.fileName}`, 'create and start the machine'],
    ].map(([cmd, what], _, all) => `#   ${cmd.padEnd(Math.max(...all.map(([c]) => c.length)) + 3)}# ${what}`),
    '',
    'defaults:',
    ...comment('  ', note ? `${note.replace(/^./, (c) => c.toUpperCase())}.` : `The release this host runs: ${describe(release)}.`),
    `  distribution: ${release.distribution}`,
    `  suite: ${release.suite}`,
    ...dnsLines(dns, gateway),
    ...comment('  ', 'Containment for every machine (docs/security.md): its own UID range, fewer capabilities, no new privileges, a seccomp deny list.'),
    '  security:',
    '    preset: strict',
    '',
    'networks:',
    ...comment(
      '  ',
      `A bridge on the host, which is ${gateway} on it. ` +
        (checked
          ? `${subnetText} overlaps no route or address of this host (asked with \`ip route\` and \`ip addr\` when this file was written).`
          : `${subnetText} was NOT checked against this host's routes and addresses (ip could not be asked).`),
    ),
    `  ${bridge}:`,
    `    subnet: ${subnetText}`,
    '    # Machines reach the outside world (apt, DNS) through the host, masqueraded.',
    '    nat: true',
    '',
    'machines:',
    `  ${machine.name}:`,
    `    network: { bridge: ${bridge}, address: ${machine.address} }`,
    '    autostart: true',
    '    # More keys (docs/manifest.md):',
    '    # packages: [nginx]',
    '    # ports:',
    '    #   - { host: 8080, container: 80 }',
    '    # bind: ["/srv/www:/var/www:ro"]',
    '',
  ];
  return { text: lines.join('\n'), release, subnet, bridge, machine, dns, warnings };
}

/** A comment paragraph at `indent`, wrapped before column 96. */
function comment(indent: string, text: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && `${indent}# ${line} ${word}`.length > 96) {
      lines.push(`${indent}# ${line}`);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  return [...lines, `${indent}# ${line}`];
}

function dnsLines(dns: DnsChoice, gateway: string): string[] {
  const gatewayWarning = `Do not use the bridge's gateway (${gateway}): nothing answers DNS there.`;
  if (dns.kind === 'copy') {
    return comment(
      '  ',
      "DNS: dns: is left out on purpose. Each machine keeps the copy of this host's /etc/resolv.conf that its bootstrapper made " +
        `(nameserver ${dns.hostServers.join(', ')}), reached through the network's NAT: systemd-nspawn leaves that file alone ` +
        `for a machine on a bridge. Set dns: only to use other servers. ${gatewayWarning}`,
    );
  }
  const stub = dns.loopback.length ? dns.loopback.join(', ') : 'no server';
  if (dns.kind === 'servers') {
    return [
      ...comment(
        '  ',
        `DNS: this host's /etc/resolv.conf names ${stub}, a resolver on the host's own loopback that a machine cannot reach, ` +
          'so a copy of it would not work. These are the servers that resolver forwards to (/run/systemd/resolve/resolv.conf ' +
          `when this file was written), reached through NAT; update them when the host's change. ${gatewayWarning}`,
      ),
      `  dns: [${dns.servers.join(', ')}]`,
    ];
  }
  return comment(
    '  ',
    `DNS: this host's /etc/resolv.conf names ${stub}, and a machine cannot reach a resolver on the host's loopback. ` +
      `Set the servers of your network here, e.g. dns: [192.0.2.53]. ${gatewayWarning}`,
  );
}

/** Where the Debian package installs the schema (named in the starter's comment). */
export const DEB_SCHEMA_PATH = '/usr/lib/nspawnctl/schema/machines.schema.json';

/** The one-line summary of a starter, for the user. */
export function describeStarter(s: Starter, file: string): string {
  const dns = s.dns.kind === 'copy' ? "DNS: the host's resolv.conf" : s.dns.kind === 'servers' ? `DNS: ${s.dns.servers.join(', ')}` : 'DNS: to be set';
  return `Wrote ${file}: ${s.release.distribution} ${s.release.suite}, network ${s.bridge} ${formatSubnet(s.subnet)} with NAT, machine ${s.machine.name} at ${s.machine.address}, ${dns}.`;
}
