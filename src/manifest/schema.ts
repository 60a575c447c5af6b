// The one zod schema for machines.yaml, plus the resolved types the rest of nspawnctl uses.
import { posix } from 'node:path';
import { z } from 'zod';
import { findEarlierOverlaps, firstHost, formatIpv4, formatSubnet, isHostAddress, parseIpv4, parseSubnet, Subnet } from './ipv4';
import { isWithin, MACHINES_DIR } from '../host/paths';
import { Distribution, DISTRIBUTION_TITLES, mirrorDistribution, suiteDistribution } from './distributions';
import { GENERATED_ROOTFS_PATHS } from '../render/rootfs-paths';
import { Limits, limitsSchema, resolveLimits, resolveSecurity, SAFE_PATH, SAFE_PATH_MESSAGE, Security, securitySchema, SYSCALL_ENTRY } from './security';
import { HealthCheck, HEALTH_PROGRAM, HEALTH_PROGRAM_MESSAGE, healthSchema, resolveHealth } from './health';
import { closestMatch } from './suggest';
import { resolveServices, SERVICE_NAME, SERVICE_NAME_MESSAGE, ServiceHardening, serviceIssues, serviceSchema } from './services';

/** How often a machine's autoUpgrade timer runs (systemd calendar shorthands). */
export const AUTO_UPGRADE_SCHEDULES = ['daily', 'weekly'] as const;
export type AutoUpgradeSchedule = (typeof AUTO_UPGRADE_SCHEDULES)[number];

/** System call groups and names the host's systemd accepts; without it only the syntax is checked. */
export interface KnownSyscalls {
  groups: Set<string>;
  names: Set<string>;
}

/** Packages every machine gets: without them it cannot boot or be reached over networkd. */
export const REQUIRED_PACKAGES = ['dbus', 'systemd', 'systemd-sysv'];

/** Defaults for every key of `defaults:` that the manifest does not set. */
export const BUILTIN_DEFAULTS = {
  distribution: 'debian' as const,
  variant: 'minbase' as const,
  bootstrapper: 'auto' as const,
  packages: [] as string[],
  dns: [] as string[],
  authorizedKeys: [] as string[],
  environment: {} as Record<string, string>,
};

/**
 * Each distribution's own suite and mirror: a machine takes them unless it sets its own, or
 * `defaults:` sets them for its distribution (defaults.suite and defaults.mirror describe
 * defaults.distribution only).
 */
export const DISTRIBUTION_DEFAULTS = {
  debian: { suite: 'bookworm', mirror: 'http://deb.debian.org/debian' },
  ubuntu: { suite: 'noble', mirror: 'http://archive.ubuntu.com/ubuntu' },
} as const;

// Machine names follow machinectl's hostname rules, kept to 12 characters so that the
// host-side interface "vb-NAME" fits Linux's 15-character limit without being truncated
// (truncation would make two machines share, or fight over, one interface name).
export const MACHINE_NAME = /^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/;
export const BRIDGE_NAME = /^[a-z][a-z0-9_-]{0,14}$/;
/** A fleet host's name in the manifest (hosts:, machines.NAME.host, --host). */
export const HOST_NAME = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
/** A host label (hosts.NAME.labels, --hosts-label). */
export const HOST_LABEL = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
/** An ssh destination: what ssh accepts (user@address, an alias of ~/.ssh/config), never an option or two words. */
export const SSH_DESTINATION_PATTERN = /^[A-Za-z0-9_.@:%[\]][A-Za-z0-9_.@:%[\]+-]{0,254}$/;
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
const HOSTNAME = /^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

/** Messages of checks on mapping keys (names), so the loader points at the key, not its value. */
export const KEY_MESSAGES = {
  machine: 'machine names are 1-12 characters of a-z, 0-9 and -, not starting or ending with - (vb-NAME must fit in 15 characters)',
  network: 'network names become bridge interface names: 1-15 characters, a lowercase letter first, then a-z 0-9 _ -',
  environment: 'expected an environment variable name (letters, digits and _, not starting with a digit)',
  credential: 'credential names are 1-64 characters of A-Z a-z 0-9 _ . -, not starting with a dot (systemd makes them file names)',
  service: SERVICE_NAME_MESSAGE,
};

// A credential's name becomes a file name in the machine's credentials directory; systemd also
// accepts other characters, but these need no quoting anywhere and cannot be "." or "..".
export const CREDENTIAL_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/;

const ipv4 = z.string().refine((s) => parseIpv4(s) !== undefined, { message: 'expected an IPv4 address like 10.77.0.11' });

const absolutePath = z
  .string()
  .regex(SAFE_PATH, { message: SAFE_PATH_MESSAGE })
  .refine((p) => !p.split('/').includes('..') && !p.split('/').includes('.'), { message: 'path must not contain "." or ".." segments' })
  // One spelling per path: "//etc/x" or "/etc/x/" would dodge the reserved and duplicate checks.
  .refine((p) => p !== '/' && !p.includes('//') && !p.endsWith('/'), { message: 'path must name a file or directory below /, without "//" or a trailing "/"' })
  .refine((p) => p.length <= 1024, { message: 'path is longer than 1024 characters' });

// systemd-nspawn reads a credential's file as root when the machine starts, following symlinks:
// a file inside a machine's directory could be swapped by that machine for a link to any host file.
const credentialPath = absolutePath.refine((p) => !isWithin(p, MACHINES_DIR), {
  message: `a credential file must be outside ${MACHINES_DIR}, where a machine could replace it with a symlink to any host file`,
});

const url = z
  .string()
  .regex(/^https?:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~%/+-]*)?$/, { message: 'expected an http:// or https:// URL' });

// Editors show these texts (schema/machines.schema.json, generated from this file) on hover.
const { debian, ubuntu } = DISTRIBUTION_DEFAULTS;

const noNewline = (what: string) =>
  z.string().refine((s) => !/[\n\r\0]/.test(s), { message: `${what} must be one line (no newline or NUL)` });

// Upgrades the machine runs by itself: a systemd timer inside it runs what `nspawnctl upgrade`
// runs (src/render/auto-upgrade.ts). `false` on a machine turns off one set in defaults.
const autoUpgradeObject = z
  .object({
    schedule: z
      .enum(AUTO_UPGRADE_SCHEDULES)
      .default('daily')
      .describe('How often the timer inside the machine runs apt-get update and full-upgrade (default daily; each run is delayed by up to an hour at random).'),
  })
  .strict();

const AUTO_UPGRADE_FORMS = 'expected { schedule: daily } (or weekly), or false';

const autoUpgradeSchema = z
  .union([autoUpgradeObject, z.literal(false)], {
    // A union says only "invalid input" when no form fits; say what is wrong in the mapping.
    errorMap: (issue, ctx) => {
      if (issue.code !== z.ZodIssueCode.invalid_union) return { message: ctx.defaultError };
      const data = ctx.data as unknown;
      if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
        const inner = issue.unionErrors[0]?.issues[0];
        if (inner) {
          const key = inner.path.slice(issue.path.length).join('.');
          return { message: key ? `${key}: ${inner.message}` : inner.message };
        }
      }
      return { message: AUTO_UPGRADE_FORMS };
    },
  })
  .describe('A systemd timer inside the machine that upgrades its packages (apt-get update and full-upgrade, keeping changed configuration files); false turns off one set in defaults. Needs a network and a writable root.');

// Keys a machine may take from `defaults:` or set itself.
const inheritable = {
  distribution: z.enum(['debian', 'ubuntu']).describe(`What to bootstrap (default ${BUILTIN_DEFAULTS.distribution}).`),
  suite: z
    .string()
    .regex(/^[a-z][a-z0-9-]{1,31}$/, { message: 'expected a suite name like bookworm or noble' })
    .describe(`Release codename (default ${debian.suite} for debian, ${ubuntu.suite} for ubuntu).`),
  mirror: url.describe(`Archive to bootstrap from, also the machine's apt source (default ${debian.mirror} for debian, ${ubuntu.mirror} for ubuntu).`),
  variant: z
    .enum(['minbase', 'buildd', 'important'])
    .describe(`Bootstrap variant; important is debootstrap's default set (default ${BUILTIN_DEFAULTS.variant}).`),
  bootstrapper: z
    .enum(['auto', 'mmdebstrap', 'debootstrap'])
    .describe(`auto uses mmdebstrap if installed, else debootstrap (default ${BUILTIN_DEFAULTS.bootstrapper}).`),
  packages: z
    .array(z.string().regex(PACKAGE_NAME, { message: 'expected a Debian package name like nginx' }))
    .describe(`Packages installed when the machine is created. ${REQUIRED_PACKAGES.join(', ')} are always added, iproute2 with a network; a machine gets these and defaults.packages as well as its own.`),
  aptProxy: url.describe('HTTP proxy for apt (an apt-cacher-ng, say), used by the bootstrapper and inside the machine.'),
  dns: z.array(ipv4).describe("Nameservers for the machine's /etc/resolv.conf; when set, the host's is not copied."),
  authorizedKeys: z
    .array(
      noNewline('an authorized key').pipe(
        z.string().regex(/^(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( .*)?$/, { message: 'expected an OpenSSH public key line' }),
      ),
    )
    .describe('OpenSSH public key lines for /root/.ssh/authorized_keys.'),
  environment: z.record(
    z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: KEY_MESSAGES.environment })
      // zod's record silently drops this key; refuse it instead.
      .refine((k) => k !== '__proto__', { message: KEY_MESSAGES.environment }),
    noNewline('an environment value'),
  ).describe('NAME: value for /etc/environment and every service, merged with defaults by name. Every user of the machine can read it: put secrets in credentials.'),
  credentials: z.record(
    z
      .string()
      .regex(CREDENTIAL_NAME, { message: KEY_MESSAGES.credential })
      .refine((k) => k !== '__proto__', { message: KEY_MESSAGES.credential }),
    credentialPath,
  ).describe(`NAME: host file, a systemd credential the machine gets each time it starts, merged with defaults by name. The file must be outside ${MACHINES_DIR} and outside read-write binds.`),
  security: securitySchema,
  limits: limitsSchema,
  health: healthSchema,
  autoUpgrade: autoUpgradeSchema,
};

const defaultsSchema = z
  .object(inheritable)
  .partial()
  .strict()
  .describe('Settings every machine inherits and may override. A machine\'s list or map replaces the default one, except packages (both are installed), environment and credentials (merged by name).');

const fileSchema = z
  .object({
    path: absolutePath.describe('Absolute path inside the machine; not one nspawnctl writes itself, nor a directory above or a path below one.'),
    content: z.string().refine((s) => !s.includes('\0'), { message: 'content must not contain NUL' }).describe('The whole content of the file.'),
    mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, { message: 'expected an octal mode like "0644" (quote it in YAML)' })
      .default('0644')
      .describe('Octal mode as a quoted string, like "0600".'),
  })
  .strict();

const portSchema = z
  .object({
    host: z.number().int().min(1).max(65535).describe("Port on the host's addresses."),
    container: z.number().int().min(1).max(65535).optional().describe('Port inside the machine (default: the host port).'),
    protocol: z.enum(['tcp', 'udp']).default('tcp').describe('tcp or udp.'),
  })
  .strict();

// One opening in an isolated network: machine `from` may reach this machine on `port`.
const allowSchema = z
  .object({
    from: z.string().regex(MACHINE_NAME, { message: 'expected the name of a machine in this manifest' }).describe('Another machine of this manifest, on the same bridge.'),
    port: z.number().int().min(1).max(65535).describe('Port of this machine that it may reach.'),
    proto: z.enum(['tcp', 'udp']).default('tcp').describe('tcp or udp.'),
  })
  .strict();

const BIND_FORMS = 'expected HOST_PATH[:MACHINE_PATH][:ro|rw] like /srv/www:/var/www:ro, or a mapping like { host: /srv/www, machine: /var/www, readOnly: true }';

const bindTextSchema = z.string().superRefine((s, ctx) => {
  const parsed = parseBind(s);
  if ('error' in parsed) ctx.addIssue({ code: z.ZodIssueCode.custom, message: parsed.error });
});

// The long form of a bind, which alone can say `create: true`.
const bindMapSchema = z
  .object({
    host: absolutePath.describe('The host directory or file to mount.'),
    machine: absolutePath.optional().describe('Where it appears in the machine (the host path by default).'),
    readOnly: z.boolean().default(false).describe('Mount it read-only.'),
    // A missing host directory is created empty by apply; without it, a missing one stops plan.
    create: z.boolean().default(false).describe('Create the host directory empty when it is missing (otherwise a missing one stops plan and apply).'),
  })
  .strict();

// A union reports only "invalid input" when no form fits; say which part of the form is wrong.
const bindSchema = z.union([bindTextSchema, bindMapSchema], {
  errorMap: (issue, ctx) => {
    if (issue.code !== z.ZodIssueCode.invalid_union) return { message: ctx.defaultError };
    const data = ctx.data as unknown;
    if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
      const inner = issue.unionErrors[1]?.issues[0];
      if (inner) {
        const key = inner.path.slice(issue.path.length).join('.');
        return { message: key ? `${key}: ${inner.message}` : inner.message };
      }
    }
    const got = data === null ? 'nothing (null)' : Array.isArray(data) ? 'a list' : `a ${typeof data}`;
    return { message: `${BIND_FORMS}, got ${got}` };
  },
});

const machineSchema = z
  .object({
    ...inheritable,
    hostname: z
      .string()
      .regex(HOSTNAME, { message: 'expected a hostname like web or web.example.org' })
      .describe('/etc/hostname inside the machine (default: the machine name).'),
    network: z
      .object({
        bridge: z.string().describe('A key of networks: the bridge the machine joins.'),
        address: ipv4.describe("The machine's IPv4 address: a host address of the bridge's subnet, not its gateway, used by no other machine."),
        allow: z
          .array(allowSchema)
          .default([])
          .describe('On an isolated network: which machines of the same bridge may reach this one, on which port.'),
      })
      .strict()
      .describe('A veth on a bridge of networks:. Without it the machine has only loopback.'),
    bind: z.array(bindSchema).describe('Bind mounts HOST[:MACHINE][:ro|rw], like /srv/www:/var/www:ro; a missing host directory is created empty.'),
    ports: z.array(portSchema).describe("Port forwards from the host's addresses into the machine; need network."),
    files: z.array(fileSchema).describe('Files written inside the machine on every apply.'),
    provision: z
      .array(z.array(noNewline('an argument')).min(1, { message: 'a provision command needs at least the program name' }))
      .describe('Commands run once, inside the new root filesystem, when the machine is created. Each is an argument list, not a shell line: [sh, -c, "..."] for a shell.'),
    autostart: z.boolean().describe('Start the machine at boot (machinectl enable); default false.'),
    host: z
      .string()
      .regex(HOST_NAME, { message: 'expected the name of a host under hosts:' })
      .describe('With hosts: (a fleet): the host the machine runs on, a key of hosts:. Required for every machine then.'),
    services: z
      .record(
        z
          .string()
          .regex(SERVICE_NAME, { message: KEY_MESSAGES.service })
          .refine((k) => k !== '__proto__', { message: KEY_MESSAGES.service }),
        serviceSchema,
      )
      .describe('Hardening of services inside the machine, by unit name without .service: a drop-in for each, applied with a restart of that service. See docs/security.md.'),
  })
  .partial()
  .strict();

const networkSchema = z
  .object({
    subnet: z
      .string()
      .superRefine((s, ctx) => {
        const parsed = parseSubnet(s);
        if ('error' in parsed) ctx.addIssue({ code: z.ZodIssueCode.custom, message: parsed.error });
      })
      .describe('IPv4 network, /8 to /30, written as its network address (10.77.0.0/24); networks may not overlap.'),
    gateway: ipv4.optional().describe("The host's address on the bridge, the machines' default gateway (default: the subnet's first address)."),
    nat: z.boolean().default(false).describe('Masquerade the machines\' traffic so they reach beyond the host.'),
    // Machines on the bridge cannot reach each other, except through `allow` rules.
    isolated: z.boolean().default(false).describe('Machines on this bridge reach each other only through their network.allow rules.'),
  })
  .strict();

const hostSchema = z
  .object({
    ssh: z
      .string()
      .regex(SSH_DESTINATION_PATTERN, { message: 'expected an ssh destination like root@10.0.0.5 or an alias from ~/.ssh/config (no spaces, not starting with -)' })
      .describe('How ssh reaches the host: user@address, or a Host alias of ~/.ssh/config (its settings, agent and known_hosts are used).'),
    port: z.number().int().min(1).max(65535).optional().describe("sshd's port (default: ssh's own, 22 or the config's)."),
    sudo: z.boolean().default(false).describe('Run nspawnctl there through sudo -n (the login user is not root; needs passwordless sudo for nspawnctl).'),
    labels: z
      .array(z.string().regex(HOST_LABEL, { message: 'expected a label like db or eu-west' }))
      .default([])
      .describe('Labels to pick hosts with --hosts-label.'),
  })
  .strict();

// The whole file. Cross-field rules (declared bridges, addresses in subnets, uniqueness) live
// in superRefine so every problem is reported in one pass.
const manifestShape = z
  .object({
    defaults: defaultsSchema.default({}),
    hosts: z
      .record(z.string().regex(HOST_NAME, { message: 'expected a host name: 1-32 characters of a-z, 0-9 and -' }), hostSchema)
      .optional()
      .describe('A fleet: the hosts machines run on, reached over OpenSSH. Without it everything is on this host. See docs/fleet.md.'),
    networks: z
      .record(z.string().regex(BRIDGE_NAME, { message: KEY_MESSAGES.network }), networkSchema)
      .default({})
      .describe('Host bridges made by systemd-networkd; each name becomes the bridge interface name.'),
    machines: z
      .record(
        z.string().regex(MACHINE_NAME, { message: KEY_MESSAGES.machine }),
        machineSchema,
      )
      .describe('The machines, by name (1-12 characters of a-z, 0-9 and -). Each takes every key of defaults, and its own.'),
  })
  .strict()
  .describe('An nspawnctl manifest: systemd-nspawn machines and the bridges they join. Reference: docs/manifest.md.');

export type RawManifest = z.infer<typeof manifestShape>;

// The shape only: cross-field rules are checked by crossFieldIssues, on the raw data, so they
// run even when a type error elsewhere makes zod skip refinements (every problem at once).
export const manifestSchema = manifestShape;

/** A name from the manifest as it may appear in a message: quoted, with control characters escaped. */
export function quoteName(name: string): string {
  return JSON.stringify(name).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A name as it appears in a message: as written when plain, otherwise quoted and escaped. */
function shown(name: string): string {
  return /^[A-Za-z0-9_.-]+$/.test(name) ? name : quoteName(name);
}

/** One cross-field problem: where (a key path) and what. */
export interface CrossFieldIssue {
  path: (string | number)[];
  message: string;
}

type Obj = Record<string, unknown>;
const asObj = (x: unknown): Obj => (x !== null && typeof x === 'object' && !Array.isArray(x) ? (x as Obj) : {});
const asArr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);
const asStr = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined);

/**
 * Rules that span keys: declared bridges, addresses inside subnets and unique, gateways,
 * overlapping subnets, duplicate ports, files and bind targets, credential files in read-write
 * binds. Tolerates wrongly typed values (the schema reports those); only well-typed parts are
 * compared.
 */
export function crossFieldIssues(data: unknown, known?: KnownSyscalls): CrossFieldIssue[] {
  const issues: CrossFieldIssue[] = [];
  const add = (path: (string | number)[], message: string) => issues.push({ path, message });
  const root = asObj(data);
  const networks = asObj(root.networks);
  const machines = asObj(root.machines);

  const subnets = new Map<string, Subnet>();
  const gateways = new Map<string, string>();
  for (const [name, rawNet] of Object.entries(networks)) {
    const net = asObj(rawNet);
    const text = asStr(net.subnet);
    if (text === undefined) continue;
    const subnet = parseSubnet(text);
    if ('error' in subnet) continue;
    subnets.set(name, subnet);
    const gwText = asStr(net.gateway);
    const gw = gwText === undefined ? undefined : parseIpv4(gwText);
    if (gwText !== undefined && gw !== undefined && !isHostAddress(subnet, gw)) {
      add(['networks', name, 'gateway'], `${gwText} is not a host address of ${text}`);
    }
    gateways.set(name, gwText ?? formatIpv4(firstHost(subnet)));
  }
  const names = [...subnets.keys()];
  // One problem per network that overlaps networks declared before it, naming the first few.
  for (const o of findEarlierOverlaps(names.map((n) => subnets.get(n)!))) {
    const listed = o.earlier.map((i) => `${shown(names[i])} (${formatSubnet(subnets.get(names[i])!)})`);
    const text = listed.length === 1 && !o.more ? `network ${listed[0]}` : `networks ${o.more ? `${listed.join(', ')} and others` : `${listed.slice(0, -1).join(', ')} and ${listed[listed.length - 1]}`}`;
    add(['networks', names[o.index], 'subnet'], `overlaps ${text}`);
  }

  // Named in each "not declared" message: at most ten, so a message does not grow with the file.
  let declaredText: string | undefined;
  const declaredNetworks = () => {
    if (declaredText === undefined) {
      const declared = Object.keys(networks);
      const list = declared.length > 10 ? `${declared.slice(0, 10).map(shown).join(', ')} and ${declared.length - 10} more` : declared.map(shown).join(', ');
      declaredText = declared.length ? ` (declared: ${list})` : ' (none is declared)';
    }
    return declaredText;
  };

  sectionIssues(asObj(root.defaults), ['defaults'], add, known);
  healthIssues(asObj(root.defaults), ['defaults'], add);
  distributionIssues(asObj(root.defaults), machines, add);
  const writable = writableBindSources(machines);
  credentialIssues(asObj(root.defaults), ['defaults'], writable, add);
  // The read-write bind source strictly above a path, walking up its directories (no pairwise
  // scan); in a fleet only those of machines on the same host (another host's /srv is not this one's).
  const writableBySource = new Map(writable.map((w) => [`${w.host}\0${w.source}`, w]));
  const enclosingWritable = (path: string, host: string) => {
    for (let dir = posix.dirname(path); dir !== '/'; dir = posix.dirname(dir)) {
      const w = writableBySource.get(`${host}\0${dir}`);
      if (w) return w;
    }
    return undefined;
  };
  const addressOwners = new Map<string, string>();
  const portOwners = new Map<string, string>();
  // A fleet: every machine names a declared host; addresses and host ports are per host.
  const fleet = root.hosts !== undefined && root.hosts !== null;
  const hosts = asObj(root.hosts);
  const hostOf = (m: Record<string, unknown>) => asStr(m.host) ?? '';
  for (const [name, rawMachine] of Object.entries(machines)) {
    const machine = asObj(rawMachine);
    const host = asStr(machine.host);
    if (fleet && machine.host === undefined) {
      add(['machines', name], `machine ${shown(name)} needs host: (a key of hosts:) when the manifest has hosts:`);
    } else if (host !== undefined && HOST_NAME.test(host) && !Object.prototype.hasOwnProperty.call(hosts, host)) {
      const declared = Object.keys(hosts);
      add(['machines', name, 'host'], `host ${shown(host)} is not declared under hosts:${declared.length ? ` (declared: ${declared.slice(0, 10).map(shown).join(', ')}${declared.length > 10 ? ` and ${declared.length - 10} more` : ''})` : ' (there is no hosts: section)'}`);
    }
    const perHost = (key: string) => (fleet ? `${hostOf(machine)}\0${key}` : key);
    const hasNetwork = machine.network !== undefined && machine.network !== null;
    const net = asObj(machine.network);
    const bridge = asStr(net.bridge);
    const address = asStr(net.address);
    if (bridge !== undefined) {
      if (!Object.prototype.hasOwnProperty.call(networks, bridge)) {
        add(['machines', name, 'network', 'bridge'], `network ${quoteName(bridge)} is not declared under networks:${declaredNetworks()}`);
      } else if (subnets.has(bridge) && address !== undefined && parseIpv4(address) !== undefined) {
        const subnet = subnets.get(bridge)!;
        const addr = parseIpv4(address)!;
        const path = ['machines', name, 'network', 'address'];
        if (!isHostAddress(subnet, addr)) {
          add(path, `${address} is outside network ${shown(bridge)} (${formatSubnet(subnet)}) or is its network/broadcast address`);
        } else if (address === gateways.get(bridge)) {
          add(path, `${address} is the gateway of network ${shown(bridge)} (the host's own address on the bridge)`);
        } else if (addressOwners.has(perHost(address))) {
          add(path, `${address} is already used by machine ${shown(addressOwners.get(perHost(address))!)}${fleet ? ` on host ${shown(hostOf(machine))}` : ''}`);
        } else {
          addressOwners.set(perHost(address), name);
        }
      }
    }
    const ports = asArr(machine.ports);
    if (ports.length > 0 && !hasNetwork) {
      add(['machines', name, 'ports'], 'ports need a network (a machine without network: has only loopback)');
    }
    ports.forEach((rawPort, i) => {
      const p = asObj(rawPort);
      if (typeof p.host !== 'number') return;
      const key = `${asStr(p.protocol) ?? 'tcp'}/${p.host}`;
      if (portOwners.has(perHost(key))) add(['machines', name, 'ports', i, 'host'], `host port ${key} is already forwarded to machine ${shown(portOwners.get(perHost(key))!)}`);
      else portOwners.set(perHost(key), name);
    });
    const seen = new Set<string>();
    asArr(machine.files).forEach((rawFile, i) => {
      const path = asStr(asObj(rawFile).path);
      if (path === undefined) return;
      if (seen.has(path)) add(['machines', name, 'files', i, 'path'], `${path} is listed twice`);
      seen.add(path);
      const reserved = reservedPathProblem(path);
      if (reserved) add(['machines', name, 'files', i, 'path'], reserved);
    });
    const targets = new Set<string>();
    asArr(machine.bind).forEach((rawBind, i) => {
      const parsed = bindOf(rawBind);
      if (parsed === undefined) return;
      if (targets.has(parsed.target)) add(['machines', name, 'bind', i], `${parsed.target} is already a bind mount target`);
      targets.add(parsed.target);
      // systemd-nspawn follows symlinks in a bind source when it starts the machine: one that a
      // machine can replace from inside could be pointed at any host directory.
      const outer = enclosingWritable(parsed.source, host ?? '');
      if (outer) {
        add(['machines', name, 'bind', i], `${parsed.source} is inside ${outer.source}, which machine ${shown(outer.machine)} mounts read-write: that machine could replace it with a symlink to any host directory, which systemd-nspawn would then mount here`);
      }
    });
    asArr(net.allow).forEach((rawRule, i) => {
      const from = asStr(asObj(rawRule).from);
      if (from === undefined || !MACHINE_NAME.test(from)) return;
      const path = ['machines', name, 'network', 'allow', i, 'from'];
      const other = Object.prototype.hasOwnProperty.call(machines, from) ? asObj(machines[from]) : undefined;
      if (from === name) add(path, 'a machine can always reach itself; allow names another machine');
      else if (!other) add(path, `machine ${shown(from)} is not in this manifest`);
      else if (fleet && hostOf(other) !== hostOf(machine)) add(path, `machine ${shown(from)} runs on host ${shown(hostOf(other))}, not on ${shown(hostOf(machine))}: networks are per host`);
      else if (bridge !== undefined && asStr(asObj(other.network).bridge) !== bridge) add(path, `machine ${shown(from)} is not on network ${shown(bridge)}`);
    });
    if (asArr(net.allow).length > 0 && bridge !== undefined && Object.prototype.hasOwnProperty.call(networks, bridge) && asObj(networks[bridge]).isolated !== true) {
      add(['machines', name, 'network', 'allow'], `allow rules only mean something on an isolated network; set networks.${shown(bridge)}.isolated: true (on a network that is not isolated, every machine already reaches every other)`);
    }
    sectionIssues(machine, ['machines', name], add, known);
    healthIssues(machine, ['machines', name], add, asObj(root.defaults));
    credentialIssues(machine, ['machines', name], writable.filter((w) => w.host === (host ?? '')), add);
    autoUpgradeIssues(asObj(root.defaults), name, machine, add);
    serviceIssues(machine, asObj(root.defaults), ['machines', name], add, known);
  }
  return issues;
}

/** The machine's autoUpgrade: its own setting (false turns it off), else the one in defaults. */
function resolveAutoUpgrade(fromDefaults: RawAutoUpgrade | undefined, own: RawAutoUpgrade | undefined): Pick<Machine, 'autoUpgrade'> {
  const chosen = own ?? fromDefaults;
  return chosen ? { autoUpgrade: { schedule: chosen.schedule } } : {};
}

type RawAutoUpgrade = z.infer<typeof autoUpgradeSchema>;

/**
 * autoUpgrade changes the machine's root while it runs, with apt downloading over its network: a
 * read-only or volatile root, or a machine without network, cannot take it. Located at the
 * machine's autoUpgrade when it sets one, else at what makes its root unwritable (or defaults).
 */
function autoUpgradeIssues(defaults: Obj, name: string, machine: Obj, add: (path: (string | number)[], message: string) => void): void {
  const own = machine.autoUpgrade;
  const inherited = own === undefined ? defaults.autoUpgrade : undefined;
  const wanted = own ?? inherited;
  if (wanted === undefined || wanted === false || wanted === null || typeof wanted !== 'object') return;
  const from = own === undefined ? ' (from defaults)' : '';
  const off = own === undefined ? '; set autoUpgrade: false on this machine' : '';
  const security = asObj(machine.security);
  const defaultSecurity = asObj(defaults.security);
  const layer = (key: string): { value: unknown; path: (string | number)[] } | undefined =>
    security[key] !== undefined ? { value: security[key], path: ['machines', name, 'security', key] } : defaultSecurity[key] !== undefined ? { value: defaultSecurity[key], path: ['defaults', 'security', key] } : undefined;
  const at = (fallback: (string | number)[]) => (own !== undefined ? ['machines', name, 'autoUpgrade'] : fallback);
  const readOnly = layer('readOnly');
  const volatile = layer('volatile');
  if (readOnly?.value === true) {
    add(at(readOnly.path), `autoUpgrade${from} needs a writable root, but machine ${shown(name)} is read-only (security.readOnly)${off}`);
  } else if (volatile !== undefined && volatile.value !== 'no' && volatile.value !== false) {
    add(at(volatile.path), `autoUpgrade${from} needs a root whose changes last, but machine ${shown(name)} is volatile (security.volatile: ${String(volatile.value)}); its upgrades would be lost at the next start${off}`);
  }
  if (machine.network === undefined || machine.network === null) {
    add(at(['defaults', 'autoUpgrade']), `autoUpgrade${from} needs a network: apt inside machine ${shown(name)} downloads the upgrades${off}`);
  }
}

const DISTRIBUTIONS = ['debian', 'ubuntu'] as const;
const asDistribution = (x: unknown): Distribution | undefined => DISTRIBUTIONS.find((d) => d === x);

/**
 * A suite or mirror of one distribution given to another: another distribution's codename, an
 * official archive of the other, or defaults.suite/mirror that no machine of defaults'
 * distribution takes while machines of another distribution fall back to their own.
 */
function distributionIssues(defaults: Obj, machines: Obj, add: (path: (string | number)[], message: string) => void): void {
  const defaultDistribution = asDistribution(defaults.distribution) ?? BUILTIN_DEFAULTS.distribution;
  const unset = defaults.distribution === undefined;
  const mismatched = new Set<string>();
  const check = (section: Obj, base: (string | number)[], distribution: Distribution, owner: string) => {
    const suite = asStr(section.suite);
    const suiteOf = suite === undefined ? undefined : suiteDistribution(suite);
    if (suiteOf !== undefined && suiteOf !== distribution) {
      add([...base, 'suite'], `${suite} is ${aOrAn(DISTRIBUTION_TITLES[suiteOf])} ${DISTRIBUTION_TITLES[suiteOf]} suite, but ${owner}`);
      mismatched.add([...base, 'suite'].join('.'));
    }
    const mirror = asStr(section.mirror);
    const mirrorOf = mirror === undefined ? undefined : mirrorDistribution(mirror);
    if (mirrorOf !== undefined && mirrorOf !== distribution) {
      add([...base, 'mirror'], `${mirror} is ${aOrAn(DISTRIBUTION_TITLES[mirrorOf])} ${DISTRIBUTION_TITLES[mirrorOf]} archive, but ${owner}`);
      mismatched.add([...base, 'mirror'].join('.'));
    }
  };
  check(defaults, ['defaults'], defaultDistribution, `defaults.distribution is ${defaultDistribution}${unset ? ' (when not set)' : ''}, and defaults.suite and defaults.mirror are for its machines`);
  const entries = Object.entries(machines).map(([name, raw]) => {
    const machine = asObj(raw);
    return { name, machine, distribution: asDistribution(machine.distribution) ?? (machine.distribution === undefined ? defaultDistribution : undefined) };
  });
  for (const { name, machine, distribution } of entries) {
    if (distribution !== undefined) check(machine, ['machines', name], distribution, `the machine's distribution is ${distribution}${machine.distribution === undefined ? ' (from defaults)' : ''}`);
  }
  // A default nobody takes while machines of the other distribution use their own: meant for them.
  for (const key of ['suite', 'mirror'] as const) {
    if (asStr(defaults[key]) === undefined || mismatched.has(`defaults.${key}`)) continue;
    const takers = entries.filter((e) => e.distribution === defaultDistribution && e.machine[key] === undefined);
    const others = entries.filter((e) => e.distribution !== undefined && e.distribution !== defaultDistribution && e.machine[key] === undefined);
    if (takers.length > 0 || others.length === 0) continue;
    const other = others[0].distribution!;
    const names = others.map((o) => shown(o.name));
    const listed = names.length > 3 ? `${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}` : names[0];
    const one = others.length === 1;
    add(
      ['defaults', key],
      `applies only to ${defaultDistribution} machines (those of defaults.distribution${unset ? `, ${defaultDistribution} when not set` : ''}) and none takes it: ${listed} ${one ? `is ${aOrAn(other)}` : 'are'} ${other} machine${one ? '' : 's'}, which ${one ? 'uses' : 'use'} ${other}'s own ${key}; set defaults.distribution: ${other}, or set ${key} on ${one ? 'that machine' : 'those machines'}`,
    );
  }
}

function aOrAn(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}

/** A bind entry in either form, or undefined when it is not well-formed (the schema reports it). */
function bindOf(raw: unknown): Bind | undefined {
  if (typeof raw === 'string') {
    const parsed = parseBind(raw);
    return 'error' in parsed ? undefined : parsed;
  }
  const parsed = bindMapSchema.safeParse(raw);
  return parsed.success ? bindFromMap(parsed.data) : undefined;
}

function bindFromMap(b: z.infer<typeof bindMapSchema>): Bind {
  return { source: b.host, target: b.machine ?? b.host, readOnly: b.readOnly, create: b.create };
}

/** Host directories that machines mount read-write (well-formed binds only), with the machine's fleet host ('' for one host). */
function writableBindSources(machines: Obj): { machine: string; source: string; host: string }[] {
  const writable: { machine: string; source: string; host: string }[] = [];
  for (const [name, rawMachine] of Object.entries(machines)) {
    const host = asStr(asObj(rawMachine).host) ?? '';
    for (const rawBind of asArr(asObj(rawMachine).bind)) {
      const parsed = bindOf(rawBind);
      if (parsed && !parsed.readOnly) writable.push({ machine: name, source: parsed.source, host });
    }
  }
  return writable;
}

/**
 * Credential files inside a directory some machine mounts read-write: that machine could replace
 * the file with a symlink, and systemd-nspawn (root on the host) would follow it.
 */
function credentialIssues(section: Obj, base: (string | number)[], writable: { machine: string; source: string }[], add: (path: (string | number)[], message: string) => void): void {
  for (const [credential, rawPath] of Object.entries(asObj(section.credentials))) {
    const path = asStr(rawPath);
    if (path === undefined || !absolutePath.safeParse(path).success) continue;
    const inside = writable.find((w) => isWithin(path, w.source));
    if (inside) {
      add([...base, 'credentials', credential], `${path} is inside ${inside.source}, which machine ${shown(inside.machine)} mounts read-write; that machine could replace it with a symlink to any host file`);
    }
  }
}

/** Rules inside one `security:`/`limits:` pair (of defaults or of a machine). */
function sectionIssues(section: Obj, base: (string | number)[], add: (path: (string | number)[], message: string) => void, known?: KnownSyscalls): void {
  if (known) {
    asArr(asObj(section.security).systemCallFilter).forEach((entry, i) => {
      if (typeof entry !== 'string' || !SYSCALL_ENTRY.test(entry)) return;
      const name = entry.replace(/^~/, '');
      const isGroup = name.startsWith('@');
      if (isGroup ? known.groups.has(name) : known.names.has(name)) return;
      // Only a name a typo away is suggested (getcpuu: getcpu), never one that merely starts alike.
      const close = closestMatch(name, isGroup ? known.groups : known.names, Math.min(2, Math.floor(name.length / 3)));
      add([...base, 'security', 'systemCallFilter', i], `this host's systemd knows no system call ${isGroup ? 'group' : 'named'} ${name}${close ? ` (did you mean ${close}?)` : ''}; systemd-analyze syscall-filter lists them`);
    });
  }
  const caps = asObj(asObj(section.security).capabilities);
  const drop = new Set(asArr(caps.drop).map(asStr));
  asArr(caps.add).forEach((c, i) => {
    if (typeof c === 'string' && drop.has(c)) add([...base, 'security', 'capabilities', 'add', i], `${c} is also in capabilities.drop; list it in one of them`);
  });
  const limits = asObj(section.limits);
  if (limits.cpus !== undefined && limits.cpuQuota !== undefined) add([...base, 'limits', 'cpuQuota'], 'set cpus or cpuQuota, not both (cpus: 1.5 is cpuQuota: 150%)');
}

/**
 * Rules of one `health:` (of defaults, or of a machine, which `defaults` completes): its program is
 * one systemd takes as a program, and a machine's check has a command, its own or the default.
 */
function healthIssues(section: Obj, base: (string | number)[], add: (path: (string | number)[], message: string) => void, defaults?: Obj): void {
  if (section.health === undefined || section.health === null || typeof section.health !== 'object' || Array.isArray(section.health)) return;
  const health = asObj(section.health);
  const program = asArr(health.command)[0];
  if (typeof program === 'string' && !HEALTH_PROGRAM.test(program)) add([...base, 'health', 'command', 0], HEALTH_PROGRAM_MESSAGE);
  if (defaults && health.command === undefined && asObj(defaults.health).command === undefined) {
    add([...base, 'health'], 'a health check needs a command (here, or in defaults.health)');
  }
}

/** Paths inside a rootfs that nspawnctl writes itself (rendered or written by apply). */
export const RESERVED_ROOTFS_PATHS: readonly string[] = GENERATED_ROOTFS_PATHS.map((g) => g.path);

/**
 * Why `files:` may not take `path`, or undefined when it may: the path is one nspawnctl writes
 * itself, a directory above one (a file there would stand where nspawnctl needs a directory),
 * or below one (nspawnctl's file stands where this needs a directory).
 */
export function reservedPathProblem(path: string): string | undefined {
  for (const g of GENERATED_ROOTFS_PATHS) {
    const source = g.key ? `from ${g.key}:` : g.when;
    if (path === g.path) {
      return `${path} is written by nspawnctl itself (${source}); ${g.key ? `set ${g.key} instead` : 'files: cannot manage it'}`;
    }
    if (g.path.startsWith(`${path}/`)) {
      return `${path} is a directory holding ${g.path}, which nspawnctl writes itself (${source}); a file cannot take its place`;
    }
    if (path.startsWith(`${g.path}/`)) {
      return `${path} is below ${g.path}, a ${g.kind} nspawnctl writes itself (${source}), not a directory`;
    }
  }
  return undefined;
}

export interface Bind {
  source: string;
  target: string;
  readOnly: boolean;
  /** apply creates a missing source as an empty directory (otherwise plan refuses it, exit 3). */
  create: boolean;
}

/** Parses "HOST[:CONTAINER][:ro|rw]"; both sides absolute, safe paths. Only the map form can say create. */
export function parseBind(text: string): Bind | { error: string } {
  const parts = text.split(':');
  let readOnly = false;
  if (parts.length > 1 && (parts[parts.length - 1] === 'ro' || parts[parts.length - 1] === 'rw')) {
    readOnly = parts.pop() === 'ro';
  }
  if (parts.length < 1 || parts.length > 2) {
    return { error: 'expected HOST_PATH[:MACHINE_PATH][:ro|rw], like /srv/www:/var/www:ro' };
  }
  const [source, target = source] = parts;
  for (const p of [source, target]) {
    const r = absolutePath.safeParse(p);
    if (!r.success) return { error: `${JSON.stringify(p)}: ${r.error.issues[0].message}` };
  }
  return { source, target, readOnly, create: false };
}

/** A network after defaults are applied. */
export interface Network {
  name: string;
  subnet: Subnet;
  subnetText: string;
  gateway: string;
  nat: boolean;
  isolated: boolean;
}

export interface AllowRule {
  from: string;
  port: number;
  proto: 'tcp' | 'udp';
}

export interface PortForward {
  host: number;
  container: number;
  protocol: 'tcp' | 'udp';
}

export interface ManagedFileSpec {
  path: string;
  content: string;
  mode: number;
}

/** A machine with every default resolved: what render and plan consume. */
export interface Machine {
  name: string;
  distribution: 'debian' | 'ubuntu';
  suite: string;
  mirror: string;
  variant: 'minbase' | 'buildd' | 'important';
  bootstrapper: 'auto' | 'mmdebstrap' | 'debootstrap';
  packages: string[];
  /**
   * The packages of the shared base image (required ones, `defaults.packages`, iproute2 for a
   * networked machine); `packages` minus these are installed on top of a copy of it.
   */
  basePackages: string[];
  aptProxy?: string;
  hostname: string;
  dns: string[];
  authorizedKeys: string[];
  environment: Record<string, string>;
  /** Credential name -> host file, passed to the machine by systemd-nspawn when it starts. */
  credentials: Record<string, string>;
  network?: { bridge: string; address: string; prefix: number; gateway: string; allow: AllowRule[] };
  bind: Bind[];
  ports: PortForward[];
  files: ManagedFileSpec[];
  provision: string[][];
  autostart: boolean;
  /** A timer inside the machine upgrades it on this schedule (undefined: no automatic upgrades). */
  autoUpgrade?: { schedule: AutoUpgradeSchedule };
  security: Security;
  limits: Limits;
  /** The health check its own systemd runs, if any (`health:` with a command, merged with defaults). */
  health?: HealthCheck;
  /** Services inside the machine that nspawnctl hardens, sorted by name. */
  services: ServiceHardening[];
  /** In a fleet: the host it runs on (a key of Manifest.fleet.hosts). */
  host?: string;
}

/** A host of a fleet, as the manifest has it. */
export interface FleetHost {
  name: string;
  ssh: string;
  port?: number;
  sudo: boolean;
  labels: string[];
}

/** A fleet manifest's hosts, and its validated data from which each host's slice is cut. */
export interface Fleet {
  hosts: Record<string, FleetHost>;
  data: RawManifest;
}

export interface Manifest {
  /** The manifest's path as given; only its basename appears in generated files. */
  file: string;
  networks: Record<string, Network>;
  machines: Record<string, Machine>;
  /** With hosts: the fleet (every machine then has `host`); undefined for one host. */
  fleet?: Fleet;
}

/** Applies defaults (built-in, then `defaults:`, then the machine's own keys). */
export function resolveManifest(file: string, raw: RawManifest): Manifest {
  const networks: Record<string, Network> = {};
  for (const [name, net] of Object.entries(raw.networks)) {
    const subnet = parseSubnet(net.subnet) as Subnet;
    networks[name] = {
      name,
      subnet,
      subnetText: net.subnet,
      gateway: net.gateway ?? formatIpv4(firstHost(subnet)),
      nat: net.nat,
      isolated: net.isolated,
    };
  }
  const machines: Record<string, Machine> = {};
  for (const name of Object.keys(raw.machines).sort()) {
    const m = raw.machines[name];
    const d = raw.defaults;
    const defaultDistribution = d.distribution ?? BUILTIN_DEFAULTS.distribution;
    const distribution = m.distribution ?? defaultDistribution;
    // defaults.suite and defaults.mirror are those of defaults.distribution: another
    // distribution's machine falls back to its own (crossFieldIssues refuses a mix-up).
    const fromDefaults = distribution === defaultDistribution ? d : {};
    const base = new Set([...REQUIRED_PACKAGES, ...(d.packages ?? []), ...(m.network ? ['iproute2'] : [])]);
    const packages = new Set([...base, ...(m.packages ?? [])]);
    const net = m.network && Object.prototype.hasOwnProperty.call(networks, m.network.bridge) ? networks[m.network.bridge] : undefined;
    const health = resolveHealth(d.health, m.health);
    machines[name] = {
      name,
      distribution,
      suite: m.suite ?? fromDefaults.suite ?? DISTRIBUTION_DEFAULTS[distribution].suite,
      mirror: m.mirror ?? fromDefaults.mirror ?? DISTRIBUTION_DEFAULTS[distribution].mirror,
      variant: m.variant ?? d.variant ?? BUILTIN_DEFAULTS.variant,
      bootstrapper: m.bootstrapper ?? d.bootstrapper ?? BUILTIN_DEFAULTS.bootstrapper,
      packages: [...packages].sort(),
      basePackages: [...base].sort(),
      aptProxy: m.aptProxy ?? d.aptProxy,
      hostname: m.hostname ?? name,
      dns: m.dns ?? d.dns ?? [],
      authorizedKeys: m.authorizedKeys ?? d.authorizedKeys ?? [],
      environment: { ...(d.environment ?? {}), ...(m.environment ?? {}) },
      credentials: { ...(d.credentials ?? {}), ...(m.credentials ?? {}) },
      network:
        m.network && net
          ? { bridge: m.network.bridge, address: m.network.address, prefix: net.subnet.prefix, gateway: net.gateway, allow: m.network.allow }
          : undefined,
      bind: (m.bind ?? []).map((b) => (typeof b === 'string' ? (parseBind(b) as Bind) : bindFromMap(b))),
      ports: (m.ports ?? []).map((p) => ({ host: p.host, container: p.container ?? p.host, protocol: p.protocol })),
      files: (m.files ?? []).map((f) => ({ path: f.path, content: f.content, mode: parseInt(f.mode, 8) })),
      provision: m.provision ?? [],
      autostart: m.autostart ?? false,
      ...resolveAutoUpgrade(d.autoUpgrade, m.autoUpgrade),
      security: resolveSecurity(d.security, m.security),
      limits: resolveLimits(d.limits, m.limits),
      ...(health ? { health } : {}),
      services: resolveServices(m.services),
      ...(m.host !== undefined ? { host: m.host } : {}),
    };
  }
  if (!raw.hosts) return { file, networks, machines };
  const hosts = Object.fromEntries(Object.entries(raw.hosts).map(([name, h]) => [name, { name, ssh: h.ssh, ...(h.port !== undefined ? { port: h.port } : {}), sudo: h.sudo, labels: h.labels }]));
  return { file, networks, machines, fleet: { hosts, data: raw } };
}
