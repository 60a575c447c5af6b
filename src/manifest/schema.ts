// The one zod schema for machines.yaml, plus the resolved types the rest of nspawnctl uses.
import { z } from 'zod';
import { firstHost, formatIpv4, isHostAddress, parseIpv4, parseSubnet, Subnet, subnetsOverlap } from './ipv4';

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

/** Suite and mirror follow the distribution unless set. */
export const DISTRIBUTION_DEFAULTS = {
  debian: { suite: 'bookworm', mirror: 'http://deb.debian.org/debian' },
  ubuntu: { suite: 'noble', mirror: 'http://archive.ubuntu.com/ubuntu' },
} as const;

// Machine names follow machinectl's hostname rules, kept to 12 characters so that the
// host-side interface "vb-NAME" fits Linux's 15-character limit without being truncated
// (truncation would make two machines share, or fight over, one interface name).
export const MACHINE_NAME = /^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/;
export const BRIDGE_NAME = /^[a-z][a-z0-9_-]{0,14}$/;
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
// Paths may hold only characters that need no quoting in systemd files or in YAML.
const SAFE_PATH = /^\/[A-Za-z0-9._@+/-]*$/;
const HOSTNAME = /^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

const ipv4 = z.string().refine((s) => parseIpv4(s) !== undefined, { message: 'expected an IPv4 address like 10.77.0.11' });

const absolutePath = z
  .string()
  .regex(SAFE_PATH, { message: 'expected an absolute path of letters, digits and . _ @ + - /' })
  .refine((p) => !p.split('/').includes('..') && !p.split('/').includes('.'), { message: 'path must not contain "." or ".." segments' })
  .refine((p) => p.length <= 1024, { message: 'path is longer than 1024 characters' });

const url = z
  .string()
  .regex(/^https?:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~%/+-]*)?$/, { message: 'expected an http:// or https:// URL' });

const noNewline = (what: string) =>
  z.string().refine((s) => !/[\n\r\0]/.test(s), { message: `${what} must be one line (no newline or NUL)` });

// Keys a machine may take from `defaults:` or set itself.
const inheritable = {
  distribution: z.enum(['debian', 'ubuntu']),
  suite: z.string().regex(/^[a-z][a-z0-9-]{1,31}$/, { message: 'expected a suite name like bookworm or noble' }),
  mirror: url,
  variant: z.enum(['minbase', 'buildd', 'important']),
  bootstrapper: z.enum(['auto', 'mmdebstrap', 'debootstrap']),
  packages: z.array(z.string().regex(PACKAGE_NAME, { message: 'expected a Debian package name like nginx' })),
  aptProxy: url,
  dns: z.array(ipv4),
  authorizedKeys: z.array(
    noNewline('an authorized key').pipe(
      z.string().regex(/^(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( .*)?$/, { message: 'expected an OpenSSH public key line' }),
    ),
  ),
  environment: z.record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'expected an environment variable name' }),
    noNewline('an environment value'),
  ),
};

const defaultsSchema = z.object(inheritable).partial().strict();

const fileSchema = z
  .object({
    path: absolutePath,
    content: z.string().refine((s) => !s.includes('\0'), { message: 'content must not contain NUL' }),
    mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, { message: 'expected an octal mode like "0644" (quote it in YAML)' })
      .default('0644'),
  })
  .strict();

const portSchema = z
  .object({
    host: z.number().int().min(1).max(65535),
    container: z.number().int().min(1).max(65535).optional(),
    protocol: z.enum(['tcp', 'udp']).default('tcp'),
  })
  .strict();

const bindSchema = z.string().superRefine((s, ctx) => {
  const parsed = parseBind(s);
  if ('error' in parsed) ctx.addIssue({ code: z.ZodIssueCode.custom, message: parsed.error });
});

const machineSchema = z
  .object({
    ...inheritable,
    hostname: z.string().regex(HOSTNAME, { message: 'expected a hostname like web or web.example.org' }),
    network: z
      .object({
        bridge: z.string(),
        address: ipv4,
      })
      .strict(),
    bind: z.array(bindSchema),
    ports: z.array(portSchema),
    files: z.array(fileSchema),
    provision: z.array(
      z.array(noNewline('an argument')).min(1, { message: 'a provision command needs at least the program name' }),
    ),
    autostart: z.boolean(),
  })
  .partial()
  .strict();

const networkSchema = z
  .object({
    subnet: z.string().superRefine((s, ctx) => {
      const parsed = parseSubnet(s);
      if ('error' in parsed) ctx.addIssue({ code: z.ZodIssueCode.custom, message: parsed.error });
    }),
    gateway: ipv4.optional(),
    nat: z.boolean().default(false),
  })
  .strict();

// The whole file. Cross-field rules (declared bridges, addresses in subnets, uniqueness) live
// in superRefine so every problem is reported in one pass.
const manifestShape = z
  .object({
    defaults: defaultsSchema.default({}),
    networks: z
      .record(z.string().regex(BRIDGE_NAME, { message: 'network names become bridge interface names: 1-15 characters, a lowercase letter first, then a-z 0-9 _ -' }), networkSchema)
      .default({}),
    machines: z.record(
      z.string().regex(MACHINE_NAME, { message: 'machine names are 1-12 characters of a-z, 0-9 and -, not starting or ending with - (vb-NAME must fit in 15 characters)' }),
      machineSchema,
    ),
  })
  .strict();

export type RawManifest = z.infer<typeof manifestShape>;

export const manifestSchema = manifestShape.superRefine(checkCrossFields);

function checkCrossFields(m: RawManifest, ctx: z.RefinementCtx): void {
  const subnets = new Map<string, Subnet>();
  for (const [name, net] of Object.entries(m.networks)) {
    const subnet = parseSubnet(net.subnet);
    if ('error' in subnet) continue;
    subnets.set(name, subnet);
    if (net.gateway !== undefined) {
      const gw = parseIpv4(net.gateway);
      if (gw !== undefined && !isHostAddress(subnet, gw)) {
        ctx.addIssue({ code: 'custom', path: ['networks', name, 'gateway'], message: `${net.gateway} is not a host address of ${net.subnet}` });
      }
    }
  }
  const names = [...subnets.keys()];
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      if (subnetsOverlap(subnets.get(names[i])!, subnets.get(names[j])!)) {
        ctx.addIssue({ code: 'custom', path: ['networks', names[j], 'subnet'], message: `overlaps network ${names[i]} (${m.networks[names[i]].subnet})` });
      }
    }
  }

  const addressOwners = new Map<string, string>();
  const portOwners = new Map<string, string>();
  for (const [name, machine] of Object.entries(m.machines)) {
    const net = machine.network;
    if (net) {
      const subnet = subnets.get(net.bridge);
      if (!(net.bridge in m.networks)) {
        const declared = Object.keys(m.networks);
        ctx.addIssue({
          code: 'custom',
          path: ['machines', name, 'network', 'bridge'],
          message: `network "${net.bridge}" is not declared under networks:${declared.length ? ` (declared: ${declared.join(', ')})` : ' (none is declared)'}`,
        });
      } else if (subnet) {
        const addr = parseIpv4(net.address);
        const gateway = m.networks[net.bridge].gateway ?? formatIpv4(firstHost(subnet));
        if (addr !== undefined) {
          if (!isHostAddress(subnet, addr)) {
            ctx.addIssue({ code: 'custom', path: ['machines', name, 'network', 'address'], message: `${net.address} is outside network ${net.bridge} (${m.networks[net.bridge].subnet}) or is its network/broadcast address` });
          } else if (net.address === gateway) {
            ctx.addIssue({ code: 'custom', path: ['machines', name, 'network', 'address'], message: `${net.address} is the gateway of network ${net.bridge} (the host's own address on the bridge)` });
          } else if (addressOwners.has(net.address)) {
            ctx.addIssue({ code: 'custom', path: ['machines', name, 'network', 'address'], message: `${net.address} is already used by machine ${addressOwners.get(net.address)}` });
          } else {
            addressOwners.set(net.address, name);
          }
        }
      }
    }
    if ((machine.ports ?? []).length > 0 && !net) {
      ctx.addIssue({ code: 'custom', path: ['machines', name, 'ports'], message: 'ports need a network (a machine without network: has only loopback)' });
    }
    (machine.ports ?? []).forEach((p, i) => {
      const key = `${p.protocol}/${p.host}`;
      if (portOwners.has(key)) {
        ctx.addIssue({ code: 'custom', path: ['machines', name, 'ports', i, 'host'], message: `host port ${key} is already forwarded to machine ${portOwners.get(key)}` });
      } else {
        portOwners.set(key, name);
      }
    });
    const seen = new Set<string>();
    (machine.files ?? []).forEach((f, i) => {
      if (seen.has(f.path)) {
        ctx.addIssue({ code: 'custom', path: ['machines', name, 'files', i, 'path'], message: `${f.path} is listed twice` });
      }
      seen.add(f.path);
      if (RESERVED_ROOTFS_PATHS.some((r) => f.path === r || f.path.startsWith(`${r}/`))) {
        ctx.addIssue({ code: 'custom', path: ['machines', name, 'files', i, 'path'], message: `${f.path} is written by nspawnctl itself; use the matching manifest key instead (hostname, network, dns, environment, authorizedKeys)` });
      }
    });
    const targets = new Set<string>();
    (machine.bind ?? []).forEach((b, i) => {
      const parsed = parseBind(b);
      if ('error' in parsed) return;
      if (targets.has(parsed.target)) {
        ctx.addIssue({ code: 'custom', path: ['machines', name, 'bind', i], message: `${parsed.target} is already a bind mount target` });
      }
      targets.add(parsed.target);
    });
  }
}

/** Files inside a rootfs that nspawnctl renders itself; `files:` may not claim them. */
export const RESERVED_ROOTFS_PATHS = [
  '/etc/hostname',
  '/etc/resolv.conf',
  '/etc/environment',
  '/etc/systemd/network/10-nspawnctl-host0.network',
  '/etc/systemd/system.conf.d/50-nspawnctl-environment.conf',
  '/root/.ssh/authorized_keys',
];

export interface Bind {
  source: string;
  target: string;
  readOnly: boolean;
}

/** Parses "HOST[:CONTAINER][:ro|rw]"; both sides absolute, safe paths. */
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
  return { source, target, readOnly };
}

/** A network after defaults are applied. */
export interface Network {
  name: string;
  subnet: Subnet;
  subnetText: string;
  gateway: string;
  nat: boolean;
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
  aptProxy?: string;
  hostname: string;
  dns: string[];
  authorizedKeys: string[];
  environment: Record<string, string>;
  network?: { bridge: string; address: string; prefix: number; gateway: string };
  bind: Bind[];
  ports: PortForward[];
  files: ManagedFileSpec[];
  provision: string[][];
  autostart: boolean;
}

export interface Manifest {
  /** The manifest's path as given; only its basename appears in generated files. */
  file: string;
  networks: Record<string, Network>;
  machines: Record<string, Machine>;
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
    };
  }
  const machines: Record<string, Machine> = {};
  for (const name of Object.keys(raw.machines).sort()) {
    const m = raw.machines[name];
    const d = raw.defaults;
    const distribution = m.distribution ?? d.distribution ?? BUILTIN_DEFAULTS.distribution;
    const packages = new Set([...REQUIRED_PACKAGES, ...(d.packages ?? []), ...(m.packages ?? [])]);
    if (m.network) packages.add('iproute2');
    const net = m.network ? networks[m.network.bridge] : undefined;
    machines[name] = {
      name,
      distribution,
      suite: m.suite ?? d.suite ?? DISTRIBUTION_DEFAULTS[distribution].suite,
      mirror: m.mirror ?? d.mirror ?? DISTRIBUTION_DEFAULTS[distribution].mirror,
      variant: m.variant ?? d.variant ?? BUILTIN_DEFAULTS.variant,
      bootstrapper: m.bootstrapper ?? d.bootstrapper ?? BUILTIN_DEFAULTS.bootstrapper,
      packages: [...packages].sort(),
      aptProxy: m.aptProxy ?? d.aptProxy,
      hostname: m.hostname ?? name,
      dns: m.dns ?? d.dns ?? [],
      authorizedKeys: m.authorizedKeys ?? d.authorizedKeys ?? [],
      environment: { ...(d.environment ?? {}), ...(m.environment ?? {}) },
      network:
        m.network && net
          ? { bridge: m.network.bridge, address: m.network.address, prefix: net.subnet.prefix, gateway: net.gateway }
          : undefined,
      bind: (m.bind ?? []).map((b) => parseBind(b) as Bind),
      ports: (m.ports ?? []).map((p) => ({ host: p.host, container: p.container ?? p.host, protocol: p.protocol })),
      files: (m.files ?? []).map((f) => ({ path: f.path, content: f.content, mode: parseInt(f.mode, 8) })),
      provision: m.provision ?? [],
      autostart: m.autostart ?? false,
    };
  }
  return { file, networks, machines };
}
