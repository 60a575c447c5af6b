// Renders /etc/systemd/nspawn/NAME.nspawn: how systemd-nspawn@NAME.service runs the machine. The
// same settings also become systemd-nspawn command-line options, for the few runs nspawnctl
// makes itself with the machine's own containment (a maintenance boot, a one-off ownership shift).
import { Machine } from '../manifest/schema';
import { shiftsUids } from '../manifest/security';
import { renderHeader, renderUnit, UnitSections } from './common';

/**
 * Which of the host's files lists the nameservers its machines should use: /etc/resolv.conf
 * ("host"), or, on a host whose /etc/resolv.conf names only systemd-resolved's local stub
 * (127.0.0.53, which a machine cannot reach from its own network namespace), resolved's list of
 * upstream servers, /run/systemd/resolve/resolv.conf ("uplink"). Observed by observeHostResolver.
 */
export type HostResolver = 'host' | 'uplink';

/**
 * ResolvConf= for a machine. With `dns:`, nspawnctl writes /etc/resolv.conf itself (off).
 * Otherwise a machine with a network gets the host's nameservers each time it starts: nspawn's
 * own "auto" would leave the file alone, because a bridged machine has a private network. A
 * read-only root cannot take a copy, so the file is bind-mounted there (as "auto" does).
 */
export function resolvConfMode(machine: Machine, resolver: HostResolver): string | undefined {
  if (machine.dns.length > 0) return 'off';
  if (!machine.network) return undefined;
  const s = machine.security;
  const writable = s.volatile === 'yes' || s.volatile === 'overlay' || (!s.readOnly && s.volatile !== 'state');
  return `${writable ? 'copy' : 'bind'}-${resolver}`;
}

/** The settings of a machine's .nspawn file, section by section, in the file's order. */
export function nspawnSettings(machine: Machine, resolver: HostResolver = 'host'): UnitSections {
  const s = machine.security;
  const network: [string, string | string[] | undefined][] = machine.network
    ? [
        ['Bridge', machine.network.bridge],
        ['Port', machine.ports.map((p) => `${p.protocol}:${p.host}:${p.container}`)],
      ]
    : // No network: only loopback. The unit's default (--network-veth) is overridden here.
      [
        ['Private', 'yes'],
        ['VirtualEthernet', 'no'],
      ];
  // With shifted UIDs a read-only bind is idmapped, so host root's files are root's inside too
  // (otherwise they would show up as nobody's). A read-write one is not: through an idmapped
  // mount the machine's root would create files owned by host root, setuid ones included, in a
  // host directory. Its source belongs to the machine's UID range instead (apply hands over the
  // sources it creates; see hand-bind-source).
  const binds = (readOnly: boolean) =>
    machine.bind.filter((b) => b.readOnly === readOnly).map((b) => `${b.source}:${b.target}${readOnly && shiftsUids(s) ? ':idmap' : ''}`);
  const allowed = s.systemCallFilter.filter((e) => !e.startsWith('~'));
  const denied = s.systemCallFilter.filter((e) => e.startsWith('~')).map((e) => e.slice(1));
  return [
    [
      'Exec',
      [
        ['Boot', 'yes'],
        ['Hostname', machine.hostname],
        ['ResolvConf', resolvConfMode(machine, resolver)],
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
    ['Network', network],
  ];
}

export function renderNspawnFile(machine: Machine, manifestFile: string, resolver: HostResolver = 'host'): string {
  return renderUnit(renderHeader(manifestFile, `machine ${machine.name}`), nspawnSettings(machine, resolver));
}

/**
 * The systemd-nspawn option for each .nspawn key (systemd.nspawn(5) names both). Boot is left to
 * the caller. Lists in Capability= are space-separated, on the command line comma-separated.
 */
const OPTION_OF: Record<string, (value: string) => string[]> = {
  Boot: () => [],
  Hostname: (v) => [`--hostname=${v}`],
  ResolvConf: (v) => [`--resolv-conf=${v}`],
  PrivateUsers: (v) => [`--private-users=${v}`],
  NoNewPrivileges: (v) => [`--no-new-privileges=${v}`],
  Capability: (v) => [`--capability=${v.split(' ').join(',')}`],
  DropCapability: (v) => [`--drop-capability=${v.split(' ').join(',')}`],
  SystemCallFilter: (v) => [`--system-call-filter=${v}`],
  PrivateUsersOwnership: (v) => [`--private-users-ownership=${v}`],
  ReadOnly: (v) => (v === 'yes' ? ['--read-only'] : []),
  Volatile: (v) => [`--volatile=${v}`],
  Bind: (v) => [`--bind=${v}`],
  BindReadOnly: (v) => [`--bind-ro=${v}`],
  TemporaryFileSystem: (v) => [`--tmpfs=${v}`],
  Inaccessible: (v) => [`--inaccessible=${v}`],
  Bridge: (v) => [`--network-bridge=${v}`],
  Port: (v) => [`--port=${v}`],
  Private: (v) => (v === 'yes' ? ['--private-network'] : []),
  VirtualEthernet: () => [],
};

export interface NspawnArgsOptions {
  /** Keys of the .nspawn file to leave out (their settings do not apply to this run). */
  omit?: string[];
  /** Keys whose value replaces the machine's. */
  override?: Record<string, string>;
  /** Where the host's nameservers are (as for the .nspawn file). */
  resolver?: HostResolver;
}

/**
 * The machine's .nspawn settings as systemd-nspawn options, for a run with `--settings=no`:
 * the same user namespace, capabilities, seccomp filter, mounts and network as the machine.
 */
export function nspawnArgs(machine: Machine, options: NspawnArgsOptions = {}): string[] {
  const args: string[] = [];
  const omit = new Set(options.omit ?? []);
  const seen = new Set<string>();
  for (const [, entries] of nspawnSettings(machine, options.resolver)) {
    for (const [key, value] of entries) {
      seen.add(key);
      if (omit.has(key)) continue;
      const toOption = OPTION_OF[key];
      if (!toOption) throw new Error(`internal: no systemd-nspawn option for ${key}=`);
      const chosen = options.override?.[key] ?? value;
      if (chosen === undefined) continue;
      for (const v of Array.isArray(chosen) ? chosen : [chosen]) args.push(...toOption(v));
    }
  }
  for (const [key, value] of Object.entries(options.override ?? {})) {
    if (!seen.has(key) && !omit.has(key)) args.push(...OPTION_OF[key](value));
  }
  return args;
}
