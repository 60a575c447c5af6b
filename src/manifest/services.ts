// `machines.NAME.services`: the hardening of services inside a machine (the first layer of
// containment, inside the second). Each entry becomes a drop-in for UNIT.service inside the
// machine's root filesystem; this module holds its schema, presets and resolution.
import { posix } from 'node:path';
import { z } from 'zod';
import { capability, SAFE_PATH, SYSCALL_ENTRY } from './security';
import { closestMatch } from './suggest';

/**
 * A service is named by its unit name without ".service" (nginx, postgresql@15-main): the name
 * becomes a directory inside the machine, so only systemd's unit name characters are taken, no
 * "/", no "..", nothing that starts like a dot file or an option, and no escapes (\x2d).
 */
export const SERVICE_NAME = /^(?=.{1,247}$)(?!.*\.\.)(?!.*\.service$)[A-Za-z0-9_][A-Za-z0-9_.:-]*(@[A-Za-z0-9_.:-]+)?$/;
export const SERVICE_NAME_MESSAGE =
  'expected a unit name without .service (nginx, not nginx.service): 1-247 characters of A-Z a-z 0-9 _ . : -, then optionally @ and an instance, not starting with . or -, without ".."';

/** The drop-in nspawnctl writes for a service, as a path inside the machine. */
export function serviceDropInPath(unit: string): string {
  return `/etc/systemd/system/${unit}.service.d/50-nspawnctl-hardening.conf`;
}

const DROP_IN = /^\/etc\/systemd\/system\/([^/]+)\.service\.d\/50-nspawnctl-hardening\.conf$/;

/** The service whose hardening drop-in is at `path` (inside a machine), or undefined. */
export function serviceOfDropIn(path: string): string | undefined {
  const m = DROP_IN.exec(path);
  return m && SERVICE_NAME.test(m[1]) ? m[1] : undefined;
}

/** Socket address families by their kernel names (linux/socket.h): what RestrictAddressFamilies= takes. */
export const ADDRESS_FAMILIES = [
  'AF_UNIX', 'AF_LOCAL', 'AF_INET', 'AF_AX25', 'AF_IPX', 'AF_APPLETALK', 'AF_NETROM', 'AF_BRIDGE', 'AF_ATMPVC',
  'AF_X25', 'AF_INET6', 'AF_ROSE', 'AF_DECnet', 'AF_NETBEUI', 'AF_SECURITY', 'AF_KEY', 'AF_NETLINK', 'AF_ROUTE',
  'AF_PACKET', 'AF_ASH', 'AF_ECONET', 'AF_ATMSVC', 'AF_RDS', 'AF_SNA', 'AF_IRDA', 'AF_PPPOX', 'AF_WANPIPE',
  'AF_LLC', 'AF_IB', 'AF_MPLS', 'AF_CAN', 'AF_TIPC', 'AF_BLUETOOTH', 'AF_IUCV', 'AF_RXRPC', 'AF_ISDN', 'AF_PHONET',
  'AF_IEEE802154', 'AF_CAIF', 'AF_ALG', 'AF_NFC', 'AF_VSOCK', 'AF_KCM', 'AF_QIPCRTR', 'AF_SMC', 'AF_XDP', 'AF_MCTP',
] as const;

const addressFamily = z.string().superRefine((s, ctx) => {
  if ((ADDRESS_FAMILIES as readonly string[]).includes(s)) return;
  const guess = closestMatch(s.toUpperCase().startsWith('AF_') ? s : `AF_${s}`, ADDRESS_FAMILIES, 2);
  ctx.addIssue({ code: z.ZodIssueCode.custom, message: `unknown address family ${JSON.stringify(s)}${guess ? ` (did you mean ${guess}?)` : ' (see address_families(7), e.g. AF_INET)'}` });
});

// A path ReadWritePaths= takes: absolute, no quoting needed, one spelling; "-" in front: ignored
// when it does not exist (systemd's own prefix).
const READ_WRITE_PATH = /^-?\/[A-Za-z0-9._@+/-]*$/;
const readWritePath = z
  .string()
  .regex(READ_WRITE_PATH, { message: 'expected an absolute path of letters, digits and . _ @ + - /, optionally with - in front (ignored when missing)' })
  .refine(
    (p) => {
      const path = p.replace(/^-/, '');
      // A path of the wrong shape is reported once, by the regex above.
      if (!READ_WRITE_PATH.test(p) || !SAFE_PATH.test(path)) return true;
      return path !== '/' && !path.includes('//') && !path.endsWith('/') && !path.split('/').some((s) => s === '.' || s === '..');
    },
    { message: 'path must name something below /, without "//", "." or ".." segments or a trailing "/"' },
  );

// DeviceAllow=: a device node below /dev, or char-NAME / block-NAME (a driver in /proc/devices),
// then optionally its access (r, w, m).
export const DEVICE_ALLOW = /^(?:\/dev(?:\/(?!\.\.?(?:\/| |$))[A-Za-z0-9._+@-]+)+|char-[A-Za-z0-9_*.-]+|block-[A-Za-z0-9_*.-]+)(?: [rwm]{1,3})?$/;

/** The on/off settings: manifest key, systemd directive, and what it says in the schema. */
export const SERVICE_SWITCHES = [
  ['privateTmp', 'PrivateTmp', 'Private /tmp and /var/tmp for the service.'],
  ['privateDevices', 'PrivateDevices', 'A private /dev with only pseudo devices (null, zero, random, ...).'],
  ['noNewPrivileges', 'NoNewPrivileges', 'setuid binaries and file capabilities no longer raise privileges.'],
  ['protectKernelTunables', 'ProtectKernelTunables', '/proc/sys, /sys and similar read-only.'],
  ['protectKernelModules', 'ProtectKernelModules', 'No loading of kernel modules.'],
  ['protectKernelLogs', 'ProtectKernelLogs', 'No access to the kernel log ring buffer.'],
  ['protectControlGroups', 'ProtectControlGroups', 'The cgroup file system read-only.'],
  ['protectClock', 'ProtectClock', 'No setting of the clocks.'],
  ['protectHostname', 'ProtectHostname', 'No changing of the host name.'],
  ['restrictNamespaces', 'RestrictNamespaces', 'No creating of namespaces.'],
  ['restrictRealtime', 'RestrictRealtime', 'No realtime scheduling.'],
  ['restrictSUIDSGID', 'RestrictSUIDSGID', 'No creating of setuid or setgid files.'],
  ['lockPersonality', 'LockPersonality', 'No changing of the execution domain (personality).'],
  ['memoryDenyWriteExecute', 'MemoryDenyWriteExecute', 'No memory both writable and executable (breaks JIT compilers).'],
] as const;

export type SwitchKey = (typeof SERVICE_SWITCHES)[number][0];

const switches = Object.fromEntries(SERVICE_SWITCHES.map(([key, directive, text]) => [key, z.boolean().describe(`${directive}=: ${text}`)])) as Record<SwitchKey, z.ZodBoolean>;

export const serviceSchema = z
  .object({
    preset: z
      .enum(['default', 'strict', 'none'])
      .describe('Starting point: default (safe for almost any service), strict (network daemons like nginx) or none; the other keys override it. See docs/security.md.'),
    protectSystem: z
      .union([z.boolean(), z.enum(['full', 'strict'])], { errorMap: () => ({ message: 'expected true, false, full or strict' }) })
      .describe('ProtectSystem=: true (/usr and /boot read-only), full (and /etc), strict (everything but readWritePaths, /dev, /proc and /sys).'),
    protectHome: z
      .union([z.boolean(), z.enum(['read-only', 'tmpfs'])], { errorMap: () => ({ message: 'expected true, false, read-only or tmpfs' }) })
      .describe('ProtectHome=: true (/home, /root and /run/user empty and inaccessible), read-only, or tmpfs.'),
    ...switches,
    systemCallArchitectures: z
      .union([z.literal('native'), z.literal(false)], { errorMap: () => ({ message: 'expected native or false' }) })
      .describe('SystemCallArchitectures=: native (only the native ABI), or false (any).'),
    systemCallFilter: z
      .array(z.string().regex(SYSCALL_ENTRY, { message: 'expected a system call name or @group, optionally prefixed with ~ to deny it (like @system-service or ~@mount)' }))
      .describe("SystemCallFilter=, replacing the unit's own: allowed entries first (an allow list), then ~ entries removed from it. Checked against this host's systemd when loaded."),
    readWritePaths: z.array(readWritePath).describe("ReadWritePaths=, added to the unit's own: paths that stay writable under protectSystem: strict; - in front: ignored when missing."),
    deviceAllow: z
      .array(z.string().regex(DEVICE_ALLOW, { message: 'expected a device and its access, like "/dev/urandom r" or "char-rtc r"' }))
      .describe("DeviceAllow=, replacing the unit's own: devices the service may use, like \"/dev/urandom r\"; every other device is refused."),
    capabilities: z
      .object({
        keep: z.array(capability).describe("CapabilityBoundingSet=: the only capabilities the service may have (replaces the unit's own; [] keeps none)."),
        drop: z.array(capability).describe('CapabilityBoundingSet=~: capabilities taken from the service.'),
      })
      .partial()
      .strict()
      .refine((c) => c.keep === undefined || c.drop === undefined, { message: 'set keep or drop, not both' })
      .describe('The service\'s capability bounding set: keep (an allow list) or drop (a deny list).'),
    restrictAddressFamilies: z
      .array(addressFamily)
      .describe("RestrictAddressFamilies=, replacing the unit's own: the socket families the service may use, like AF_INET; [] allows all."),
  })
  .partial()
  .strict();

export type RawService = z.infer<typeof serviceSchema>;
export type ServicePreset = 'default' | 'strict' | 'none';

/** The settings of one service after its preset: only keys that are set are written. */
export type ServiceSettings = Partial<{
  protectSystem: boolean | 'full' | 'strict';
  protectHome: boolean | 'read-only' | 'tmpfs';
  systemCallArchitectures: 'native' | false;
  systemCallFilter: string[];
  readWritePaths: string[];
  deviceAllow: string[];
  capabilities: { keep?: string[]; drop?: string[] };
  restrictAddressFamilies: string[];
}> &
  Partial<Record<SwitchKey, boolean>>;

/** One service of a machine, resolved: what the drop-in is rendered from. */
export interface ServiceHardening {
  /** The unit name without ".service". */
  name: string;
  preset: ServicePreset;
  settings: ServiceSettings;
}

/**
 * Capabilities the default preset takes from a service: none is needed by an ordinary daemon,
 * and nspawn gives most of them to no machine anyway.
 */
export const DEFAULT_DROPPED_CAPABILITIES = [
  'CAP_AUDIT_CONTROL', 'CAP_AUDIT_READ', 'CAP_BLOCK_SUSPEND', 'CAP_BPF', 'CAP_LINUX_IMMUTABLE', 'CAP_MAC_ADMIN',
  'CAP_MAC_OVERRIDE', 'CAP_MKNOD', 'CAP_PERFMON', 'CAP_SYSLOG', 'CAP_SYS_BOOT', 'CAP_SYS_MODULE', 'CAP_SYS_PACCT',
  'CAP_SYS_PTRACE', 'CAP_SYS_RAWIO', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_WAKE_ALARM',
];

/**
 * What the strict preset keeps: a daemon started as root that binds a low port, prepares its own
 * directories and log files, and hands its work to processes of another user (nginx's master).
 */
export const STRICT_KEPT_CAPABILITIES = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SETGID', 'CAP_SETUID'];

/** System call groups the default preset denies: no ordinary service calls them. */
export const DEFAULT_DENIED_GROUPS = ['@clock', '@cpu-emulation', '@debug', '@module', '@mount', '@obsolete', '@raw-io', '@reboot', '@swap'];

/** Where a service started as root keeps its state under strict (- : only if it exists). */
export function strictWritablePaths(name: string): string[] {
  // Template instances (postgresql@15-main) share their template's directories.
  const base = name.split('@')[0];
  return ['-/run', `-/var/cache/${base}`, `-/var/lib/${base}`, `-/var/log/${base}`];
}

const COMMON: ServiceSettings = {
  privateTmp: true,
  protectKernelTunables: true,
  protectKernelModules: true,
  protectKernelLogs: true,
  protectControlGroups: true,
  protectClock: true,
  protectHostname: true,
  restrictRealtime: true,
  restrictSUIDSGID: true,
  lockPersonality: true,
  systemCallArchitectures: 'native',
};

/** What each preset sets for the service `name`; a key set on the service wins. */
export function presetSettings(preset: ServicePreset, name: string): ServiceSettings {
  switch (preset) {
    case 'none':
      return {};
    case 'default':
      return {
        protectSystem: 'full',
        protectHome: 'read-only',
        ...COMMON,
        systemCallFilter: DEFAULT_DENIED_GROUPS.map((g) => `~${g}`),
        capabilities: { drop: DEFAULT_DROPPED_CAPABILITIES },
      };
    case 'strict':
      return {
        protectSystem: 'strict',
        protectHome: true,
        ...COMMON,
        privateDevices: true,
        noNewPrivileges: true,
        restrictNamespaces: true,
        memoryDenyWriteExecute: true,
        systemCallFilter: ['@system-service'],
        readWritePaths: strictWritablePaths(name),
        capabilities: { keep: STRICT_KEPT_CAPABILITIES },
        restrictAddressFamilies: ['AF_INET', 'AF_INET6', 'AF_UNIX'],
      };
  }
}

/** The preset, then every key the service sets (a list replaces the preset's, capabilities as a whole). */
export function resolveServices(raw: Record<string, RawService> | undefined): ServiceHardening[] {
  return Object.keys(raw ?? {})
    .sort()
    .map((name) => {
      const { preset = 'default', ...own } = raw![name];
      const settings: ServiceSettings = { ...presetSettings(preset, name) };
      for (const [key, value] of Object.entries(own) as [keyof ServiceSettings, unknown][]) {
        if (value !== undefined) (settings as Record<string, unknown>)[key] = value;
      }
      return { name, preset, settings };
    });
}

type Obj = Record<string, unknown>;
const asObj = (x: unknown): Obj => (x !== null && typeof x === 'object' && !Array.isArray(x) ? (x as Obj) : {});
const asArr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

/** Why the host's systemd would refuse a SystemCallFilter= entry, or undefined when it knows it. */
export function unknownSyscallProblem(entry: string, known: { groups: Set<string>; names: Set<string> }): string | undefined {
  const name = entry.replace(/^~/, '');
  const isGroup = name.startsWith('@');
  if (isGroup ? known.groups.has(name) : known.names.has(name)) return undefined;
  // Only a name a typo away is suggested (getcpuu: getcpu), never one that merely starts alike.
  const close = closestMatch(name, isGroup ? known.groups : known.names, Math.min(2, Math.floor(name.length / 3)));
  return `this host's systemd knows no system call ${isGroup ? 'group' : 'named'} ${name}${close ? ` (did you mean ${close}?)` : ''}; systemd-analyze syscall-filter lists them`;
}

/**
 * Rules of one machine's services across keys: system call names the host's systemd knows; no
 * `files:` entry on, above or below a service's drop-in; a machine root that keeps /etc.
 * Tolerates wrongly typed values (the schema reports those).
 */
export function serviceIssues(
  machine: Obj,
  defaults: Obj,
  base: (string | number)[],
  add: (path: (string | number)[], message: string) => void,
  known?: { groups: Set<string>; names: Set<string> },
): void {
  const services = asObj(machine.services);
  const names = Object.keys(services).filter((n) => SERVICE_NAME.test(n));
  if (names.length === 0) return;
  for (const name of names) {
    if (!known) continue;
    asArr(asObj(services[name]).systemCallFilter).forEach((entry, i) => {
      if (typeof entry !== 'string' || !SYSCALL_ENTRY.test(entry)) return;
      const problem = unknownSyscallProblem(entry, known);
      if (problem) add([...base, 'services', name, 'systemCallFilter', i], problem);
    });
  }
  asArr(machine.files).forEach((rawFile, i) => {
    const path = asObj(rawFile).path;
    if (typeof path !== 'string') return;
    for (const name of names) {
      const dropIn = serviceDropInPath(name);
      const source = `from services.${name}:`;
      if (path === dropIn) add([...base, 'files', i, 'path'], `${path} is written by nspawnctl itself (${source}); set the service's hardening there instead`);
      else if (dropIn.startsWith(`${path}/`)) add([...base, 'files', i, 'path'], `${path} is a directory holding ${dropIn}, which nspawnctl writes itself (${source}); a file cannot take its place`);
      else if (path.startsWith(`${dropIn}/`)) add([...base, 'files', i, 'path'], `${path} is below ${dropIn}, a file nspawnctl writes itself (${source}), not a directory`);
    }
  });
  const volatile = asObj(machine.security).volatile ?? asObj(defaults.security).volatile;
  if (volatile === 'yes' || volatile === true) {
    add([...base, 'services'], "services need the machine's own /etc: with volatile: yes it is an empty tmpfs at every start, so the machine would never see their drop-ins (use volatile: state or overlay)");
  }
}

/** The drop-in's directory and file, for messages and for removing an emptied directory. */
export function serviceDropInDir(unit: string): string {
  return posix.dirname(serviceDropInPath(unit));
}
