// The security: and limits: sections and isolated-network allow rules: one case per kind of bad
// input with the exact located message, and how presets, defaults and machine keys resolve.
import { ExitCode, formatProblem, ManifestError } from '../../src/errors';
import { parseManifest } from '../../src/manifest/load';
import { KnownSyscalls, Manifest } from '../../src/manifest/schema';
import { resolveSecurity } from '../../src/manifest/security';

const FILE = 'machines.yaml';

/** Joins lines into a manifest text ending with a newline. */
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

function loadError(text: string, known?: KnownSyscalls): ManifestError {
  try {
    parseManifest(FILE, text, known);
  } catch (err) {
    if (err instanceof ManifestError) return err;
    throw new Error(`expected a ManifestError, got ${String(err)}`);
  }
  throw new Error('expected the manifest to be rejected, but it loaded');
}

/** Asserts every problem, in order, formatted as FILE:LINE:COL: path: message, and exit code 2. */
function expectProblems(text: string, expected: string[], known?: KnownSyscalls): void {
  const err = loadError(text, known);
  expect(err.exitCode).toBe(ExitCode.invalidManifest);
  expect(err.exitCode).toBe(2);
  expect(err.problems.map(formatProblem)).toEqual(expected);
}

/** A manifest with one machine `web` whose `security:` (or other) lines are given, indented by 4. */
const webWith = (...lines: string[]) => yaml('machines:', '  web:', ...lines.map((l) => `    ${l}`));

const load = (text: string, known?: KnownSyscalls): Manifest => parseManifest(FILE, text, known);

const KNOWN: KnownSyscalls = {
  groups: new Set(['@clock', '@mount', '@system-service', '@raw-io']),
  names: new Set(['mount', 'umount2', 'reboot', 'ptrace']),
};

describe('security: capabilities', () => {
  test('an unknown capability, with a suggestion when a CAP_ spelling exists and an example otherwise', () => {
    expectProblems(webWith('security:', '  capabilities:', '    add: [cap_net_raw, NET_ADMIN, NET_FOO]'), [
      'machines.yaml:5:15: machines.web.security.capabilities.add[0]: unknown capability "cap_net_raw" (did you mean CAP_NET_RAW?)',
      'machines.yaml:5:28: machines.web.security.capabilities.add[1]: unknown capability "NET_ADMIN" (did you mean CAP_NET_ADMIN?)',
      'machines.yaml:5:39: machines.web.security.capabilities.add[2]: unknown capability "NET_FOO" (see capabilities(7), e.g. CAP_NET_RAW)',
    ]);
  });

  test('unknown capabilities in drop are reported the same way', () => {
    expectProblems(webWith('security:', '  capabilities:', '    drop: [CAP_SYS_ADMIN, sys_foo]'), [
      'machines.yaml:5:31: machines.web.security.capabilities.drop[1]: unknown capability "sys_foo" (see capabilities(7), e.g. CAP_NET_RAW)',
    ]);
  });

  test('a capability in both add and drop points at its add entry', () => {
    expectProblems(webWith('security:', '  capabilities:', '    drop: [CAP_NET_RAW, CAP_MKNOD]', '    add: [CAP_SYS_NICE, CAP_MKNOD]'), [
      'machines.yaml:6:29: machines.web.security.capabilities.add[1]: CAP_MKNOD is also in capabilities.drop; list it in one of them',
    ]);
  });

  test('add and drop overlapping in defaults is reported under defaults', () => {
    expectProblems(yaml('defaults:', '  security:', '    capabilities: { drop: [CAP_BPF], add: [CAP_BPF] }', 'machines:', '  web: {}'), [
      'machines.yaml:3:44: defaults.security.capabilities.add[0]: CAP_BPF is also in capabilities.drop; list it in one of them',
    ]);
  });
});

describe('security: privateUsers', () => {
  test.each([
    ['true', 'expected pick, identity, no, or a base UID (a multiple of 65536)'],
    ["'maybe'", 'expected pick, identity, no, or a base UID (a multiple of 65536)'],
    ['1000', 'a base UID must be a multiple of 65536 between 65536 and 4294836224 (the machine gets 65536 UIDs from it)'],
    ['0', 'a base UID must be a multiple of 65536 between 65536 and 4294836224 (the machine gets 65536 UIDs from it)'],
    ['4294901760', 'a base UID must be a multiple of 65536 between 65536 and 4294836224 (the machine gets 65536 UIDs from it)'],
  ])('privateUsers: %s is refused', (value, message) => {
    expectProblems(webWith('security:', `  privateUsers: ${value}`), [`machines.yaml:4:21: machines.web.security.privateUsers: ${message}`]);
  });

  test.each([
    ['131072', 131072],
    ['65536', 65536],
    ['4294836224', 4294836224],
    ['pick', 'pick'],
    ['identity', 'identity'],
    ['no', 'no'],
  ])('privateUsers: %s is accepted', (text, value) => {
    expect(load(webWith('security:', `  privateUsers: ${text}`)).machines.web.security.privateUsers).toBe(value);
  });
});

describe('security: systemCallFilter', () => {
  test('bad syntax is refused with or without a table of known system calls', () => {
    const text = webWith('security:', '  systemCallFilter: ["@Mount", "~~reboot", "mount ptrace", "-@clock"]');
    const message = 'expected a system call name or @group, optionally prefixed with ~ to deny it (like @system-service or ~@mount)';
    const expected = [
      `machines.yaml:4:26: machines.web.security.systemCallFilter[0]: ${message}`,
      `machines.yaml:4:36: machines.web.security.systemCallFilter[1]: ${message}`,
      `machines.yaml:4:48: machines.web.security.systemCallFilter[2]: ${message}`,
      `machines.yaml:4:64: machines.web.security.systemCallFilter[3]: ${message}`,
    ];
    expectProblems(text, expected);
    // Syntax errors are not reported a second time as unknown names.
    expectProblems(text, expected, KNOWN);
  });

  test('names and groups are checked against the known table, with a suggestion for a close group', () => {
    expectProblems(webWith('security:', '  systemCallFilter: ["@system-service", "~@mounts", "frobnicate", "~@mount", "reboot", "umount"]'), [
      "machines.yaml:4:45: machines.web.security.systemCallFilter[1]: this host's systemd knows no system call group @mounts (did you mean @mount?); systemd-analyze syscall-filter lists them",
      "machines.yaml:4:57: machines.web.security.systemCallFilter[2]: this host's systemd knows no system call named frobnicate; systemd-analyze syscall-filter lists them",
      "machines.yaml:4:92: machines.web.security.systemCallFilter[5]: this host's systemd knows no system call named umount (did you mean umount2?); systemd-analyze syscall-filter lists them",
    ], KNOWN);
  });

  // Newcomer issue: getcpuu was answered "did you mean getegid?" (same first three letters).
  test('a suggestion is a name a typo away, never one that merely starts alike', () => {
    const known: KnownSyscalls = { groups: KNOWN.groups, names: new Set(['getegid', 'getcpu', 'geteuid', 'mount', 'umount2', 'pivot_root']) };
    expectProblems(webWith('security:', '  systemCallFilter: [getcpuu, getc, pivotroot, umount]'), [
      "machines.yaml:4:26: machines.web.security.systemCallFilter[0]: this host's systemd knows no system call named getcpuu (did you mean getcpu?); systemd-analyze syscall-filter lists them",
      "machines.yaml:4:35: machines.web.security.systemCallFilter[1]: this host's systemd knows no system call named getc; systemd-analyze syscall-filter lists them",
      "machines.yaml:4:41: machines.web.security.systemCallFilter[2]: this host's systemd knows no system call named pivotroot (did you mean pivot_root?); systemd-analyze syscall-filter lists them",
      "machines.yaml:4:52: machines.web.security.systemCallFilter[3]: this host's systemd knows no system call named umount (did you mean umount2?); systemd-analyze syscall-filter lists them",
    ], known);
  });

  test('an unknown group with no close match gets no suggestion', () => {
    expectProblems(webWith('security:', '  systemCallFilter: ["~@xyz"]'), [
      "machines.yaml:4:26: machines.web.security.systemCallFilter[0]: this host's systemd knows no system call group @xyz; systemd-analyze syscall-filter lists them",
    ], KNOWN);
  });

  test('defaults.security.systemCallFilter is checked too', () => {
    expectProblems(yaml('defaults:', '  security: { systemCallFilter: ["@clocks"] }', 'machines:', '  web: {}'), [
      "machines.yaml:2:34: defaults.security.systemCallFilter[0]: this host's systemd knows no system call group @clocks (did you mean @clock?); systemd-analyze syscall-filter lists them",
    ], KNOWN);
  });

  test('known entries load; without a table only the syntax is checked', () => {
    const ok = webWith('security:', '  systemCallFilter: ["@system-service", "~@mount", "reboot"]');
    expect(load(ok, KNOWN).machines.web.security.systemCallFilter).toEqual(['@system-service', '~@mount', 'reboot']);
    const unknown = webWith('security:', '  systemCallFilter: ["~@mounts", "frobnicate"]');
    expect(load(unknown).machines.web.security.systemCallFilter).toEqual(['~@mounts', 'frobnicate']);
  });
});

describe('security: devices, paths, volatile', () => {
  test('a device path must be below /dev/', () => {
    expectProblems(webWith('security:', '  devices:', '    - { path: /sys/class/net }', '    - { path: /dev/fuse, access: rwm }'), [
      'machines.yaml:5:19: machines.web.security.devices[0].path: a device path must be below /dev/',
      'machines.yaml:6:38: machines.web.security.devices[1].access: expected one of rw, r, got "rwm"',
    ]);
  });

  test('tmpfs and inaccessible paths have one spelling', () => {
    expectProblems(webWith('security:', '  tmpfs: [/tmp/, tmp]', '  inaccessible: [/proc/../sys]'), [
      'machines.yaml:4:15: machines.web.security.tmpfs[0]: path must name something below /, without "//", "." or ".." segments or a trailing "/"',
      'machines.yaml:4:22: machines.web.security.tmpfs[1]: expected an absolute path of letters, digits and . _ @ + - /',
      'machines.yaml:5:22: machines.web.security.inaccessible[0]: path must name something below /, without "//", "." or ".." segments or a trailing "/"',
    ]);
  });

  test('volatile takes a boolean or no, yes, state, overlay', () => {
    expectProblems(webWith('security:', '  volatile: maybe'), ['machines.yaml:4:17: machines.web.security.volatile: expected no, yes, state or overlay']);
  });
});

describe('limits', () => {
  test('sizes, cpus, tasks', () => {
    expectProblems(webWith('limits:', '  memory: 512MB', '  memorySwap: 1.5G', '  cpus: 1.555', '  tasks: 8', '  ioWeight: 0'), [
      'machines.yaml:4:15: machines.web.limits.memory: expected a size like 512M or 2G (K, M, G, T are powers of 1024), or a number of bytes',
      'machines.yaml:5:19: machines.web.limits.memorySwap: expected a size like 512M or 2G (K, M, G, T are powers of 1024), or a number of bytes',
      'machines.yaml:6:13: machines.web.limits.cpus: cpus takes at most two decimals, like 1.5',
      'machines.yaml:7:14: machines.web.limits.tasks: must be at least 16',
      'machines.yaml:8:17: machines.web.limits.ioWeight: must be at least 1',
    ]);
  });

  test('cpus and cpuQuota together are refused, pointing at cpuQuota', () => {
    expectProblems(webWith('limits: { cpus: 2, cpuQuota: 150% }'), [
      'machines.yaml:3:34: machines.web.limits.cpuQuota: set cpus or cpuQuota, not both (cpus: 1.5 is cpuQuota: 150%)',
    ]);
    expectProblems(yaml('defaults:', '  limits: { cpus: 2, cpuQuota: 150% }', 'machines:', '  web: {}'), [
      'machines.yaml:2:32: defaults.limits.cpuQuota: set cpus or cpuQuota, not both (cpus: 1.5 is cpuQuota: 150%)',
    ]);
  });

  test('a bad cpuQuota', () => {
    expectProblems(webWith('limits: { cpuQuota: "1.5" }'), ['machines.yaml:3:25: machines.web.limits.cpuQuota: expected a percentage like 150% (100% is one CPU)']);
  });

  test('valid limits resolve to systemd values', () => {
    const m = load(webWith('limits: { memory: 512M, memorySwap: 0, cpus: 1.5, tasks: 16, ioWeight: 200 }'));
    expect(m.machines.web.limits).toEqual({ memoryMax: '512M', memorySwapMax: '0', cpuQuota: '150%', tasksMax: 16, ioWeight: 200 });
    expect(load(webWith('limits: { memory: 1048576, cpus: 0.25 }')).machines.web.limits).toEqual({ memoryMax: '1048576', cpuQuota: '25%' });
    expect(load(webWith('limits: { cpuQuota: 300% }')).machines.web.limits).toEqual({ cpuQuota: '300%' });
  });
});

describe('allow rules on isolated networks', () => {
  const NETWORKS = ['networks:', '  lan: { subnet: 10.0.0.0/24, isolated: true }', '  dmz: { subnet: 10.1.0.0/24, isolated: true }'];

  test('from an unknown machine, from itself, from a machine on another bridge', () => {
    const text = yaml(
      ...NETWORKS,
      'machines:',
      '  web:',
      '    network:',
      '      bridge: lan',
      '      address: 10.0.0.2',
      '      allow:',
      '        - { from: ghost, port: 80 }',
      '        - { from: web, port: 80 }',
      '        - { from: far, port: 80 }',
      '        - { from: db, port: 5432 }',
      '  db:',
      '    network: { bridge: lan, address: 10.0.0.3 }',
      '  far:',
      '    network: { bridge: dmz, address: 10.1.0.2 }',
    );
    expectProblems(text, [
      'machines.yaml:10:19: machines.web.network.allow[0].from: machine ghost is not in this manifest',
      'machines.yaml:11:19: machines.web.network.allow[1].from: a machine can always reach itself; allow names another machine',
      'machines.yaml:12:19: machines.web.network.allow[2].from: machine far is not on network lan',
    ]);
  });

  test('a bad from, port or proto is a schema problem', () => {
    expectProblems(
      yaml(...NETWORKS, 'machines:', '  web:', '    network: { bridge: lan, address: 10.0.0.2, allow: [{ from: Db, port: 0, proto: icmp }] }'),
      [
        'machines.yaml:6:64: machines.web.network.allow[0].from: expected the name of a machine in this manifest',
        'machines.yaml:6:74: machines.web.network.allow[0].port: must be at least 1',
        'machines.yaml:6:84: machines.web.network.allow[0].proto: expected one of tcp, udp, got "icmp"',
      ],
    );
  });

  test('allow on a network that is not isolated', () => {
    const text = yaml(
      'networks:',
      '  lan: { subnet: 10.0.0.0/24 }',
      'machines:',
      '  web:',
      '    network:',
      '      bridge: lan',
      '      address: 10.0.0.2',
      '      allow:',
      '        - { from: db, port: 80 }',
      '  db:',
      '    network: { bridge: lan, address: 10.0.0.3 }',
    );
    expectProblems(text, [
      'machines.yaml:9:9: machines.web.network.allow: allow rules only mean something on an isolated network; set networks.lan.isolated: true (on a network that is not isolated, every machine already reaches every other)',
    ]);
  });

  test('valid rules resolve with tcp as the default protocol', () => {
    const m = load(
      yaml(
        ...NETWORKS,
        'machines:',
        '  web:',
        '    network: { bridge: lan, address: 10.0.0.2, allow: [{ from: db, port: 80 }, { from: db, port: 53, proto: udp }] }',
        '  db:',
        '    network: { bridge: lan, address: 10.0.0.3 }',
      ),
    );
    expect(m.networks.lan.isolated).toBe(true);
    expect(m.machines.web.network).toEqual({
      bridge: 'lan',
      address: '10.0.0.2',
      prefix: 24,
      gateway: '10.0.0.1',
      allow: [
        { from: 'db', port: 80, proto: 'tcp' },
        { from: 'db', port: 53, proto: 'udp' },
      ],
    });
    expect(m.machines.db.network?.allow).toEqual([]);
  });
});

describe('resolving security and limits', () => {
  const STRICT = {
    preset: 'strict',
    privateUsers: 'pick',
    capabilityDrop: ['CAP_AUDIT_CONTROL', 'CAP_LINUX_IMMUTABLE', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SYS_PTRACE', 'CAP_SYS_TTY_CONFIG'],
    capabilityAdd: [],
    noNewPrivileges: true,
    readOnly: false,
    volatile: 'no',
    inaccessible: [],
    tmpfs: ['/tmp', '/var/tmp'],
    systemCallFilter: ['~@clock', '~@cpu-emulation', '~@debug', '~@module', '~@obsolete', '~@raw-io', '~@swap'],
    devices: [],
  };
  const DEFAULT = {
    preset: 'default',
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
  };

  test('no security section: the default preset', () => {
    const s = load(webWith('hostname: web')).machines.web.security;
    expect(s).toEqual(DEFAULT);
    expect('apparmorProfile' in s).toBe(false);
  });

  test('preset: strict on the machine', () => {
    expect(load(webWith('security: { preset: strict }')).machines.web.security).toEqual(STRICT);
  });

  test('defaults.security keys override the preset; the machine inherits them', () => {
    const m = load(
      yaml(
        'defaults:',
        '  security:',
        '    preset: strict',
        '    tmpfs: [/run/app]',
        '    capabilities: { drop: [CAP_NET_RAW] }',
        '    apparmorProfile: nspawnctl-default',
        'machines:',
        '  web: {}',
      ),
    );
    expect(m.machines.web.security).toEqual({ ...STRICT, tmpfs: ['/run/app'], capabilityDrop: ['CAP_NET_RAW'], apparmorProfile: 'nspawnctl-default' });
  });

  test('machine keys override defaults, key by key (a list replaces the list)', () => {
    const m = load(
      yaml(
        'defaults:',
        '  security:',
        '    preset: strict',
        '    tmpfs: [/run/app]',
        '    privateUsers: 131072',
        '    devices: [{ path: /dev/fuse }]',
        'machines:',
        '  web:',
        '    security:',
        '      noNewPrivileges: false',
        '      tmpfs: [/srv/scratch]',
        '      capabilities: { add: [CAP_NET_ADMIN] }',
        '      devices: [{ path: /dev/kvm, access: r }]',
        '  db: {}',
      ),
    );
    expect(m.machines.web.security).toEqual({
      ...STRICT,
      privateUsers: 131072,
      noNewPrivileges: false,
      tmpfs: ['/srv/scratch'],
      capabilityAdd: ['CAP_NET_ADMIN'],
      devices: [{ path: '/dev/kvm', access: 'r' }],
    });
    expect(m.machines.db.security).toEqual({ ...STRICT, privateUsers: 131072, tmpfs: ['/run/app'], devices: [{ path: '/dev/fuse', access: 'rw' }] });
  });

  test("a machine's preset replaces the defaults' preset, while defaults' keys still apply", () => {
    const m = load(yaml('defaults:', '  security: { preset: strict, readOnly: true }', 'machines:', '  web:', '    security: { preset: default }'));
    expect(m.machines.web.security).toEqual({ ...DEFAULT, readOnly: true });
  });

  test.each([
    ['true', 'yes'],
    ['false', 'no'],
    ['yes', 'yes'],
    ['state', 'state'],
    ['overlay', 'overlay'],
  ])('volatile: %s resolves to %s', (text, value) => {
    expect(load(webWith(`security: { volatile: ${text} }`)).machines.web.security.volatile).toBe(value);
  });

  test('volatile: false on the machine overrides volatile: true in defaults', () => {
    const m = load(yaml('defaults:', '  security: { volatile: true }', 'machines:', '  web:', '    security: { volatile: false }', '  db: {}'));
    expect(m.machines.web.security.volatile).toBe('no');
    expect(m.machines.db.security.volatile).toBe('yes');
  });

  test('limits: machine keys win; cpus and cpuQuota replace each other across defaults and machine', () => {
    const m = load(
      yaml(
        'defaults:',
        '  limits: { memory: 1G, cpus: 2, tasks: 512 }',
        'machines:',
        '  quota: { limits: { cpuQuota: 50% } }',
        '  mem: { limits: { memory: 256M } }',
        '  plain: {}',
      ),
    );
    expect(m.machines.quota.limits).toEqual({ memoryMax: '1G', cpuQuota: '50%', tasksMax: 512 });
    expect(m.machines.mem.limits).toEqual({ memoryMax: '256M', cpuQuota: '200%', tasksMax: 512 });
    expect(m.machines.plain.limits).toEqual({ memoryMax: '1G', cpuQuota: '200%', tasksMax: 512 });

    const m2 = load(yaml('defaults:', '  limits: { cpuQuota: 300% }', 'machines:', '  web: { limits: { cpus: 0.5 } }', '  db: {}'));
    expect(m2.machines.web.limits).toEqual({ cpuQuota: '50%' });
    expect(m2.machines.db.limits).toEqual({ cpuQuota: '300%' });
  });
});

describe('capabilities across layers', () => {
  test('a capability the machine adds is taken out of the preset drop list (it is not silently lost)', () => {
    const s = resolveSecurity(undefined, { preset: 'strict', capabilities: { add: ['CAP_NET_RAW'] } });
    expect(s.capabilityAdd).toEqual(['CAP_NET_RAW']);
    expect(s.capabilityDrop).toEqual(['CAP_AUDIT_CONTROL', 'CAP_LINUX_IMMUTABLE', 'CAP_MKNOD', 'CAP_SYS_PTRACE', 'CAP_SYS_TTY_CONFIG']);
  });

  test('a capability dropped in defaults and added by the machine is added only', () => {
    const s = resolveSecurity({ capabilities: { drop: ['CAP_SYS_NICE', 'CAP_MKNOD'] } }, { capabilities: { add: ['CAP_SYS_NICE'] } });
    expect({ add: s.capabilityAdd, drop: s.capabilityDrop }).toEqual({ add: ['CAP_SYS_NICE'], drop: ['CAP_MKNOD'] });
  });
});
