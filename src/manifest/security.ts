// The `security:` and `limits:` sections of a machine: their schema, presets and resolution.
import { z } from 'zod';

/** Every Linux capability (linux/capability.h, up to 6.x): the names Capability= accepts. */
export const CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER',
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

// One spelling per name: "cap_net_raw" and "NET_RAW" are refused with a suggestion.
export const capability = z.string().superRefine((s, ctx) => {
  if ((CAPABILITIES as readonly string[]).includes(s)) return;
  const guess = `CAP_${s.toUpperCase().replace(/^CAP_/, '')}`;
  const hint = (CAPABILITIES as readonly string[]).includes(guess) ? ` (did you mean ${guess}?)` : ' (see capabilities(7), e.g. CAP_NET_RAW)';
  ctx.addIssue({ code: z.ZodIssueCode.custom, message: `unknown capability ${JSON.stringify(s)}${hint}` });
});

// Paths may hold only characters that need no quoting in systemd files or in YAML (every path
// of the manifest: schema.ts uses these too).
export const SAFE_PATH = /^\/[A-Za-z0-9._@+/-]*$/;
export const SAFE_PATH_MESSAGE = 'expected an absolute path of letters, digits and . _ @ + - /';

// Paths in security lists: absolute, no quoting needed, one spelling.
export const securityPath = z
  .string()
  .regex(SAFE_PATH, { message: SAFE_PATH_MESSAGE })
  .refine((p) => p !== '/' && !p.includes('//') && !p.endsWith('/') && !p.split('/').some((s) => s === '.' || s === '..'), {
    message: 'path must name something below /, without "//", "." or ".." segments or a trailing "/"',
  });

/** A seccomp entry: a syscall or @group, "~" in front to deny it. Checked against the host's list before apply. */
export const SYSCALL_ENTRY = /^~?(@[a-z0-9-]+|[a-z0-9_]+)$/;

export const UID_RANGE = 65536;
const privateUsers = z.union(
  [
    z.enum(['pick', 'identity', 'no']),
    z
      .number()
      .int()
      .refine((n) => n >= UID_RANGE && n % UID_RANGE === 0 && n <= 0xfffe0000, {
        message: 'a base UID must be a multiple of 65536 between 65536 and 4294836224 (the machine gets 65536 UIDs from it)',
      }),
  ],
  { errorMap: () => ({ message: 'expected pick, identity, no, or a base UID (a multiple of 65536)' }) },
);

const deviceSchema = z
  .object({
    path: securityPath.refine((p) => p.startsWith('/dev/'), { message: 'a device path must be below /dev/' }).describe('A device node of the host, below /dev/.'),
    access: z.enum(['rw', 'r']).default('rw').describe('rw (read and write) or r (read only).'),
  })
  .strict();

export const securitySchema = z
  .object({
    preset: z
      .enum(['default', 'strict'])
      .describe('Starting point: default, or strict (fewer capabilities, no new privileges, a seccomp deny list, tmpfs /tmp and /var/tmp); the other keys override it.'),
    privateUsers: privateUsers.describe('User namespace: pick (a free UID range, the default), identity, no, or a base UID that is a multiple of 65536.'),
    capabilities: z
      .object({
        drop: z.array(capability).describe('Capabilities taken from every process in the machine (DropCapability=).'),
        add: z.array(capability).describe("Capabilities added to nspawn's default set (Capability=)."),
      })
      .partial()
      .strict()
      .describe('Linux capabilities by name, like CAP_NET_RAW; a name may not be in both lists.'),
    noNewPrivileges: z.boolean().describe('setuid binaries and file capabilities no longer raise privileges inside (NoNewPrivileges=).'),
    readOnly: z.boolean().describe('Mount the whole root filesystem read-only (ReadOnly=).'),
    volatile: z
      .union([z.boolean(), z.enum(['no', 'yes', 'state', 'overlay'])], {
        errorMap: () => ({ message: 'expected no, yes, state or overlay' }),
      })
      .describe('Volatile=: no, yes (all but /usr is a fresh tmpfs), state (/var is a tmpfs) or overlay (a tmpfs overlay on the root).'),
    inaccessible: z.array(securityPath).describe('Paths made inaccessible inside the machine, even to root (Inaccessible=); they must exist.'),
    tmpfs: z.array(securityPath).describe('Paths that get an empty tmpfs at every start (TemporaryFileSystem=).'),
    systemCallFilter: z
      .array(
        z.string().regex(SYSCALL_ENTRY, { message: 'expected a system call name or @group, optionally prefixed with ~ to deny it (like @system-service or ~@mount)' }),
      )
      .describe("System call names or @groups added to nspawn's allow list; ~ in front removes one. Checked against this host's systemd when loaded."),
    devices: z.array(deviceSchema).describe('Host devices given to the machine (DeviceAllow= and a bind mount).'),
    apparmorProfile: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/, { message: 'expected an AppArmor profile name' })
      .describe('AppArmor profile the machine runs under; it must be loaded on the host.'),
  })
  .partial()
  .strict()
  .describe('Containment: a preset, then these keys over it, then the machine\'s over the defaults\'. See docs/security.md.');

// "512M", "2G", "1048576": bytes, with K/M/G/T as powers of 1024 (systemd's meaning).
export const SIZE = /^([1-9][0-9]{0,15})([KMGT]?)$/;
const size = z.union([z.number().int().positive(), z.string()]).superRefine((v, ctx) => {
  if (typeof v === 'number' || SIZE.test(v)) return;
  ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'expected a size like 512M or 2G (K, M, G, T are powers of 1024), or a number of bytes' });
});

export const limitsSchema = z
  .object({
    memory: size.describe('MemoryMax=: like 512M or 2G (K, M, G, T are powers of 1024), or bytes.'),
    memorySwap: z.union([z.literal(0), size]).describe('MemorySwapMax=: a size like memory, or 0.'),
    cpus: z
      .number()
      .positive()
      .max(4096)
      .refine((n) => Math.abs(Math.round(n * 100) - n * 100) < 1e-6, { message: 'cpus takes at most two decimals, like 1.5' })
      .describe('CPUs, at most two decimals: 1.5 is CPUQuota=150%. Not together with cpuQuota.'),
    cpuQuota: z
      .string()
      .regex(/^[1-9][0-9]{0,5}%$/, { message: 'expected a percentage like 150% (100% is one CPU)' })
      .describe('CPUQuota= as a percentage, 100% being one CPU. Not together with cpus.'),
    tasks: z.number().int().min(16).max(4194304).describe('TasksMax=: at most this many processes and threads.'),
    ioWeight: z.number().int().min(1).max(10000).describe('IOWeight=: share of disk bandwidth, 1 to 10000 (systemd\'s default is 100).'),
  })
  .partial()
  .strict()
  .describe('cgroup limits of the machine\'s unit, applied live; merged key by key with defaults.limits. See docs/security.md.');

export type RawSecurity = z.infer<typeof securitySchema>;
export type RawLimits = z.infer<typeof limitsSchema>;

export interface Device {
  path: string;
  access: 'rw' | 'r';
}

/** The security settings of one machine, after preset and defaults. */
export interface Security {
  preset: 'default' | 'strict';
  privateUsers: 'pick' | 'identity' | 'no' | number;
  capabilityDrop: string[];
  capabilityAdd: string[];
  noNewPrivileges: boolean;
  readOnly: boolean;
  volatile: 'no' | 'yes' | 'state' | 'overlay';
  inaccessible: string[];
  tmpfs: string[];
  systemCallFilter: string[];
  devices: Device[];
  apparmorProfile?: string;
}

/** cgroup limits as systemd values (undefined: the unit's own default). */
export interface Limits {
  memoryMax?: string;
  memorySwapMax?: string;
  cpuQuota?: string;
  tasksMax?: number;
  ioWeight?: number;
}

/** Groups the strict preset denies: none is needed to boot systemd or to run a network service. */
export const STRICT_DENIED_GROUPS = ['@clock', '@cpu-emulation', '@debug', '@module', '@obsolete', '@raw-io', '@swap'];

/** Capabilities the strict preset drops from nspawn's default set. */
export const STRICT_DROPPED_CAPABILITIES = ['CAP_AUDIT_CONTROL', 'CAP_LINUX_IMMUTABLE', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SYS_PTRACE', 'CAP_SYS_TTY_CONFIG'];

/** What each preset sets; explicit keys (from defaults, then the machine) override these. */
export const PRESETS: Record<Security['preset'], Omit<Security, 'preset'>> = {
  default: {
    privateUsers: 'pick',
    capabilityDrop: [],
    capabilityAdd: [],
    noNewPrivileges: false,
    readOnly: false,
    volatile: 'no',
    inaccessible: [],
    tmpfs: [],
    systemCallFilter: [],
    devices: [],
  },
  strict: {
    privateUsers: 'pick',
    capabilityDrop: STRICT_DROPPED_CAPABILITIES,
    capabilityAdd: [],
    noNewPrivileges: true,
    readOnly: false,
    volatile: 'no',
    inaccessible: [],
    tmpfs: ['/tmp', '/var/tmp'],
    systemCallFilter: STRICT_DENIED_GROUPS.map((g) => `~${g}`),
    devices: [],
  },
};

/** Preset first, then every key `defaults.security` sets, then every key the machine sets. */
export function resolveSecurity(defaults: RawSecurity | undefined, own: RawSecurity | undefined): Security {
  const d = defaults ?? {};
  const m = own ?? {};
  const preset = m.preset ?? d.preset ?? 'default';
  const out: Security = { preset, ...PRESETS[preset] };
  for (const layer of [d, m]) {
    if (layer.privateUsers !== undefined) out.privateUsers = layer.privateUsers;
    if (layer.capabilities?.drop !== undefined) out.capabilityDrop = layer.capabilities.drop;
    if (layer.capabilities?.add !== undefined) out.capabilityAdd = layer.capabilities.add;
    if (layer.noNewPrivileges !== undefined) out.noNewPrivileges = layer.noNewPrivileges;
    if (layer.readOnly !== undefined) out.readOnly = layer.readOnly;
    if (layer.volatile !== undefined) out.volatile = layer.volatile === true ? 'yes' : layer.volatile === false ? 'no' : layer.volatile;
    if (layer.inaccessible !== undefined) out.inaccessible = layer.inaccessible;
    if (layer.tmpfs !== undefined) out.tmpfs = layer.tmpfs;
    if (layer.systemCallFilter !== undefined) out.systemCallFilter = layer.systemCallFilter;
    if (layer.devices !== undefined) out.devices = layer.devices.map((x) => ({ path: x.path, access: x.access }));
    if (layer.apparmorProfile !== undefined) out.apparmorProfile = layer.apparmorProfile;
  }
  // A capability added explicitly is not dropped by a preset or by the defaults' list (nspawn
  // would apply the drop last and silently lose it).
  out.capabilityDrop = out.capabilityDrop.filter((c) => !out.capabilityAdd.includes(c));
  return out;
}

function sizeText(v: number | string): string {
  return typeof v === 'number' ? String(v) : v;
}

/** Key by key: the machine's limits win over `defaults.limits`. */
export function resolveLimits(defaults: RawLimits | undefined, own: RawLimits | undefined): Limits {
  const l: RawLimits = { ...(defaults ?? {}) };
  // cpus and cpuQuota are one setting: the machine's spelling replaces the defaults' other one.
  if (own?.cpus !== undefined) delete l.cpuQuota;
  if (own?.cpuQuota !== undefined) delete l.cpus;
  Object.assign(l, own ?? {});
  return {
    memoryMax: l.memory === undefined ? undefined : sizeText(l.memory),
    memorySwapMax: l.memorySwap === undefined ? undefined : sizeText(l.memorySwap),
    cpuQuota: l.cpus !== undefined ? `${Math.round(l.cpus * 100)}%` : l.cpuQuota,
    tasksMax: l.tasks,
    ioWeight: l.ioWeight,
  };
}

/** Bytes of a size the schema accepted ("512M" -> 536870912), for comparing with cgroup files. */
export function sizeBytes(text: string): number {
  const m = SIZE.exec(text);
  if (!m) return Number(text);
  const power = { '': 0, K: 1, M: 2, G: 3, T: 4 }[m[2] as '' | 'K' | 'M' | 'G' | 'T'];
  return Number(m[1]) * 1024 ** power;
}

/**
 * The UID shift a root filesystem whose top is owned by `rootfsUid` (undefined: a fresh tree,
 * owned by 0) needs before a read-only root can boot: 'pick' or a base, or undefined for none.
 * On a read-only root nspawn cannot chown the files into the machine's UID range at start, so
 * they are shifted beforehand (nspawn's "pick" then reuses the range the files are in).
 */
export function shiftFor(privateUsers: Security['privateUsers'], rootfsUid: number | undefined): 'pick' | number | undefined {
  const uid = rootfsUid ?? 0;
  if (privateUsers === 'pick') return uid !== 0 && uid % 65536 === 0 ? undefined : 'pick';
  if (typeof privateUsers === 'number') return uid === privateUsers ? undefined : privateUsers;
  // identity and no: files must be owned by the host's own IDs.
  return uid === 0 ? undefined : 0;
}

/** True when the machine runs in a user namespace whose UIDs differ from the host's. */
export function shiftsUids(security: Security): boolean {
  return security.privateUsers === 'pick' || typeof security.privateUsers === 'number';
}
