// The loader: one case per kind of bad input, with the exact located message(s) and exit code 2,
// and the defaults a valid manifest resolves to.
import { resolveLimits, resolveSecurity } from '../../src/manifest/security';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRealHost } from '../../src/host/host';
import { ExitCode, formatProblem, ManifestError } from '../../src/errors';
import { MAX_MANIFEST_BYTES, MAX_PROBLEMS, parseManifest } from '../../src/manifest/load';
import { createWorkMeter } from '../helpers/work-meter';

const FILE = 'machines.yaml';
const REPO = join(__dirname, '..', '..');

const TOP_KEYS = 'defaults, hosts, networks, machines';
const DEFAULTS_KEYS = 'distribution, suite, mirror, variant, bootstrapper, packages, aptProxy, dns, authorizedKeys, environment, credentials, security, limits, health, autoUpgrade';
const MACHINE_KEYS = `${DEFAULTS_KEYS}, hostname, network, bind, ports, files, provision, autostart, host, services`;
const NETWORK_KEYS = 'subnet, gateway, nat, isolated';
const MACHINE_NAME_RULE = 'machine names are 1-12 characters of a-z, 0-9 and -, not starting or ending with - (vb-NAME must fit in 15 characters)';
const BRIDGE_NAME_RULE = 'network names become bridge interface names: 1-15 characters, a lowercase letter first, then a-z 0-9 _ -';

/** Joins lines into a manifest text ending with a newline. */
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

function loadError(text: string): ManifestError {
  try {
    parseManifest(FILE, text);
  } catch (err) {
    if (err instanceof ManifestError) return err;
    throw new Error(`expected a ManifestError, got ${String(err)}`);
  }
  throw new Error('expected the manifest to be rejected, but it loaded');
}

/** Asserts every problem, in order, formatted as FILE:LINE:COL: path: message, and exit code 2. */
function expectProblems(text: string, expected: string[]): void {
  const err = loadError(text);
  expect(err.exitCode).toBe(ExitCode.invalidManifest);
  expect(err.exitCode).toBe(2);
  expect(err.problems.map(formatProblem)).toEqual(expected);
  expect(err.message).toBe(expected.join('\n'));
  expect(err.hint).toBe('Fix the manifest; nothing on the host was changed. See man nspawnctl.');
}

describe('parseManifest rejects bad input with every problem located', () => {
  test('YAML syntax error', () => {
    expectProblems(yaml('machines:', '  web: {', '    hostname: web'), [
      'machines.yaml:4:1: YAML syntax: Flow map in block collection must be sufficiently indented and end with a }',
    ]);
  });

  test('several YAML syntax errors are all reported', () => {
    expectProblems(yaml('machines:', '  web: [', '  db: }'), [
      'machines.yaml:3:3: YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]',
      'machines.yaml:3:7: YAML syntax: Unexpected flow-map-end token in YAML stream: "}"',
    ]);
  });

  test('duplicate key points at the second occurrence', () => {
    expectProblems(yaml('machines:', '  web:', '    hostname: a', '    hostname: b'), ['machines.yaml:4:5: duplicate key "hostname" (map keys must be unique)']);
    expectProblems(yaml('machines: { web: {}, web: {} }'), ['machines.yaml:1:22: duplicate key "web" (map keys must be unique)']);
  });

  test('key problems are reported alone: the rest of the file is checked once the keys are fixed', () => {
    expectProblems(yaml('machines:', '  Web: {}', '  db: { hostname: a, hostname: b }'), ['machines.yaml:3:22: duplicate key "hostname" (map keys must be unique)']);
    expectProblems(yaml('machines:', '  Web: {}', '  ? [a]', '  : {}'), ['machines.yaml:3:5: keys must be plain strings, not lists or mappings']);
  });

  describe('at most MAX_PROBLEMS problems are listed, then one line counting the rest', () => {
    const badNames = (n: number) => yaml('machines:', ...Array.from({ length: n }, (_, i) => `  M${i}: {}`));
    const listed = (n: number) => Array.from({ length: n }, (_, i) => `machines.yaml:${i + 2}:3: machines.M${i}: ${MACHINE_NAME_RULE}`);

    test('50 problems: all of them, no count', () => {
      expect(MAX_PROBLEMS).toBe(50);
      expectProblems(badNames(50), listed(50));
    });

    test('51 problems: the first 50, then "... and 1 more" at the position of the last one listed', () => {
      expectProblems(badNames(51), [...listed(50), 'machines.yaml:51:3: ... and 1 more problem(s) not shown']);
      expect(loadError(badNames(51)).problems[50]).toEqual({ file: FILE, line: 51, col: 3, path: '', message: '... and 1 more problem(s) not shown' });
    });

    test('schema and cross-field problems are counted together', () => {
      const text = yaml(
        'machines:',
        ...Array.from({ length: 49 }, (_, i) => `  M${i}: {}`),
        '  web: { network: { bridge: br0, address: 10.0.0.2 } }',
        '  db: { network: { bridge: br1, address: 10.0.0.3 } }',
      );
      expectProblems(text, [
        ...listed(49),
        'machines.yaml:51:29: machines.web.network.bridge: network "br0" is not declared under networks: (none is declared)',
        'machines.yaml:51:29: ... and 1 more problem(s) not shown',
      ]);
    });

    test('duplicate keys too', () => {
      const text = yaml('machines:', ...Array.from({ length: 52 }, () => '  web: {}'));
      expectProblems(text, [
        ...Array.from({ length: 50 }, (_, i) => `machines.yaml:${i + 3}:3: duplicate key "web" (map keys must be unique)`),
        'machines.yaml:52:3: ... and 1 more problem(s) not shown',
      ]);
    });
  });

  test('unknown key at the top level, with a suggestion, and the missing machines:', () => {
    expectProblems(yaml('machine:', '  web: {}'), [
      `machines.yaml:1:1: machine: unknown key (did you mean machines?); expected one of: ${TOP_KEYS}`,
      'machines.yaml:1:1: machines: is required',
    ]);
  });

  test('unknown key in defaults', () => {
    expectProblems(yaml('defaults:', '  packges: [curl]', 'machines:', '  web: {}'), [
      `machines.yaml:2:3: defaults.packges: unknown key (did you mean packages?); expected one of: ${DEFAULTS_KEYS}`,
    ]);
  });

  test('unknown key in a machine', () => {
    expectProblems(yaml('machines:', '  web:', '    hostnme: web'), [
      `machines.yaml:3:5: machines.web.hostnme: unknown key (did you mean hostname?); expected one of: ${MACHINE_KEYS}`,
    ]);
  });

  test('unknown key without a close match gets no suggestion', () => {
    expectProblems(yaml('machines:', '  web:', '    colour: blue'), [`machines.yaml:3:5: machines.web.colour: unknown key; expected one of: ${MACHINE_KEYS}`]);
  });

  test('unknown key in a network', () => {
    expectProblems(yaml('networks:', '  br0:', '    subnet: 10.0.0.0/24', '    gatway: 10.0.0.1', 'machines:', '  web: {}'), [
      `machines.yaml:4:5: networks.br0.gatway: unknown key (did you mean gateway?); expected one of: ${NETWORK_KEYS}`,
    ]);
  });

  test('wrong types', () => {
    expectProblems(yaml('machines:', '  web:', '    autostart: "yes"', '    packages: curl', '    files:', '      - { path: /etc/x, content: a, mode: 644 }'), [
      'machines.yaml:3:16: machines.web.autostart: expected a boolean, got a string',
      'machines.yaml:4:15: machines.web.packages: expected a list, got a string',
      'machines.yaml:6:43: machines.web.files[0].mode: expected an octal mode string like "0644": quote it in YAML (an unquoted 0644 is a number)',
    ]);
    expectProblems(yaml('machines: [web]'), ['machines.yaml:1:11: machines: expected a mapping, got a list']);
    expectProblems(yaml('machines:'), ['machines.yaml:1:10: machines: expected a mapping, got nothing (null)']);
  });

  // Newcomer issue: `network:` one level too far left is a machine named "network" (a valid
  // name); only its body's unknown keys showed, and nothing said why.
  test('a machine key indented one level too little: said at the name, besides the problems of its body', () => {
    expectProblems(
      yaml('networks:', '  br0: { subnet: 10.0.0.0/24 }', 'machines:', '  web:', '    hostname: web', '  network:', '    bridge: br0', '    address: 10.0.0.5'),
      [
        'machines.yaml:6:3: machines.network: read as a machine named network (is it indented one level too little? it is a key of a machine)',
        `machines.yaml:7:5: machines.network.bridge: unknown key; expected one of: ${MACHINE_KEYS}`,
        `machines.yaml:8:5: machines.network.address: unknown key; expected one of: ${MACHINE_KEYS}`,
      ],
    );
    expectProblems(yaml('machines:', '  web: {}', '  packages: [nginx]'), [
      'machines.yaml:3:3: machines.packages: read as a machine named packages (is it indented one level too little? it is a key of a machine)',
      'machines.yaml:3:13: machines.packages: expected a mapping, got a list',
    ]);
  });

  test('a machine key that is not a valid machine name: the hint is added to the name problem', () => {
    expectProblems(yaml('machines:', '  web: {}', '  aptProxy: http://proxy:3142'), [
      `machines.yaml:3:3: machines.aptProxy: ${MACHINE_NAME_RULE} (is it indented one level too little? it is a key of a machine)`,
      'machines.yaml:3:13: machines.aptProxy: expected a mapping, got a string',
    ]);
  });

  test('a machine that happens to be named like a key, and is valid, loads without a hint', () => {
    expect(Object.keys(parseManifest(FILE, yaml('machines:', '  files: { hostname: files }')).machines)).toEqual(['files']);
  });

  test('a name that is no machine key gets no indentation hint', () => {
    expectProblems(yaml('machines:', '  Web: {}'), [`machines.yaml:2:3: machines.Web: ${MACHINE_NAME_RULE}`]);
  });

  // YAML 1.2 has no merge keys; `<<` is an ordinary key wherever it stands.
  test('merge keys (<<) are refused, pointing at defaults:, wherever they stand', () => {
    const MERGE = 'merge keys (<<) are not supported; put shared settings under defaults:';
    expectProblems(yaml('machines:', '  web: &common { autostart: true }', '  db:', '    <<: *common', '    hostname: db'), [`machines.yaml:4:5: machines.db."<<": ${MERGE}`]);
    expectProblems(yaml('defaults:', '  <<: { variant: minbase }', 'machines:', '  web: {}'), [`machines.yaml:2:3: defaults."<<": ${MERGE}`]);
    expectProblems(yaml('machines:', '  <<: { autostart: true }', '  web: {}'), [`machines.yaml:2:3: machines."<<": ${MERGE}`]);
  });

  test('a machine with nothing under it: the hint to write {}', () => {
    expectProblems(yaml('machines:', '  web:', '  db: {}'), ['machines.yaml:2:7: machines.web: expected a mapping, got nothing (null); write `web: {}` for a machine with every default']);
  });

  test('bad enum values', () => {
    expectProblems(yaml('defaults:', '  variant: tiny', 'machines:', '  web:', '    distribution: fedora', '    bootstrapper: cdebootstrap'), [
      'machines.yaml:2:12: defaults.variant: expected one of minbase, buildd, important, got "tiny"',
      'machines.yaml:5:19: machines.web.distribution: expected one of debian, ubuntu, got "fedora"',
      'machines.yaml:6:19: machines.web.bootstrapper: expected one of auto, mmdebstrap, debootstrap, got "cdebootstrap"',
    ]);
  });

  test('bad scalar formats inside a machine', () => {
    expectProblems(
      yaml(
        'machines:',
        '  web:',
        '    authorizedKeys: ["ssh-ed25519 AAAA me@x", "bogus"]',
        '    dns: [1.2.3]',
        '    mirror: ftp://x',
        '    suite: Bookworm',
        '    packages: [Nginx]',
        '    hostname: -x',
        '    environment: { B: "a\\nb" }',
      ),
      [
        'machines.yaml:3:47: machines.web.authorizedKeys[1]: expected an OpenSSH public key line',
        'machines.yaml:4:11: machines.web.dns[0]: expected an IPv4 address like 10.77.0.11',
        'machines.yaml:5:13: machines.web.mirror: expected an http:// or https:// URL',
        'machines.yaml:6:12: machines.web.suite: expected a suite name like bookworm or noble',
        'machines.yaml:7:16: machines.web.packages[0]: expected a Debian package name like nginx',
        'machines.yaml:8:15: machines.web.hostname: expected a hostname like web or web.example.org',
        'machines.yaml:9:23: machines.web.environment.B: an environment value must be one line (no newline or NUL)',
      ],
    );
  });

  describe('invalid machine names', () => {
    const text = yaml('machines:', '  Web: {}', '  abcdefghijklm: {}', '  -web: {}', '  a/b: {}', '  "..": {}', '  ok: {}');

    test('every bad name is reported with the naming rule', () => {
      const err = loadError(text);
      expect(err.exitCode).toBe(2);
      expect(err.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
        `machines.Web: ${MACHINE_NAME_RULE}`,
        `machines.abcdefghijklm: ${MACHINE_NAME_RULE}`,
        `machines.-web: ${MACHINE_NAME_RULE}`,
        `machines."a/b": ${MACHINE_NAME_RULE}`,
        `machines."..": ${MACHINE_NAME_RULE}`,
      ]);
    });

    test('a 12-character name is the longest accepted', () => {
      expect(Object.keys(parseManifest(FILE, yaml('machines:', '  abcdefghijkl: {}')).machines)).toEqual(['abcdefghijkl']);
    });

    // A bad record key (machine or network name) is located at the key, not at its value.
    test('each bad name is located at the name itself', () => {
      expectProblems(text, [
        `machines.yaml:2:3: machines.Web: ${MACHINE_NAME_RULE}`,
        `machines.yaml:3:3: machines.abcdefghijklm: ${MACHINE_NAME_RULE}`,
        `machines.yaml:4:3: machines.-web: ${MACHINE_NAME_RULE}`,
        `machines.yaml:5:3: machines."a/b": ${MACHINE_NAME_RULE}`,
        `machines.yaml:6:3: machines."..": ${MACHINE_NAME_RULE}`,
      ]);
    });

    test('a bad name of a block-mapping machine is on the name line', () => {
      expectProblems(yaml('machines:', '  Web:', '    hostname: web'), [`machines.yaml:2:3: machines.Web: ${MACHINE_NAME_RULE}`]);
    });
  });

  test('invalid bridge (network) names', () => {
    const err = loadError(yaml('networks:', '  Br0: { subnet: 10.0.0.0/24 }', '  averyveryverylongname: { subnet: 10.1.0.0/24 }', 'machines:', '  web: {}'));
    expect(err.exitCode).toBe(2);
    expect(err.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([`networks.Br0: ${BRIDGE_NAME_RULE}`, `networks.averyveryverylongname: ${BRIDGE_NAME_RULE}`]);
  });

  test('an invalid bridge name is located at the name', () => {
    expectProblems(yaml('networks:', '  Br0:', '    subnet: 10.0.0.0/24', 'machines:', '  web: {}'), [`machines.yaml:2:3: networks.Br0: ${BRIDGE_NAME_RULE}`]);
  });

  test('subnets that are not network addresses or not subnets at all', () => {
    expectProblems(
      yaml('networks:', '  br0: { subnet: 10.0.0.5/24 }', '  br1: { subnet: 10.1.0.0 }', '  br2: { subnet: 10.2.0.0/31 }', '  br3: { subnet: 300.0.0.0/24 }', 'machines:', '  web: {}'),
      [
        'machines.yaml:2:18: networks.br0.subnet: 10.0.0.5 is not the network address of a /24 (did you mean 10.0.0.0/24?)',
        'machines.yaml:3:18: networks.br1.subnet: expected a subnet like 10.77.0.0/24',
        'machines.yaml:4:18: networks.br2.subnet: prefix length must be between /8 and /30',
        'machines.yaml:5:18: networks.br3.subnet: 300.0.0.0 is not an IPv4 address',
      ],
    );
  });

  test('gateway outside its subnet', () => {
    expectProblems(yaml('networks:', '  br0: { subnet: 10.0.0.0/24, gateway: 10.0.1.1 }', 'machines:', '  web: {}'), [
      'machines.yaml:2:40: networks.br0.gateway: 10.0.1.1 is not a host address of 10.0.0.0/24',
    ]);
  });

  test('addresses: outside the subnet, equal to the gateway, duplicated; and an undeclared bridge', () => {
    expectProblems(
      yaml(
        'networks:',
        '  br0:',
        '    subnet: 10.0.0.0/24',
        'machines:',
        '  web:',
        '    network: { bridge: br0, address: 10.0.1.5 }',
        '  db:',
        '    network: { bridge: br0, address: 10.0.0.1 }',
        '  a:',
        '    network: { bridge: br0, address: 10.0.0.7 }',
        '  b:',
        '    network: { bridge: br0, address: 10.0.0.7 }',
        '  c:',
        '    network: { bridge: br1, address: 10.0.0.8 }',
        '  d:',
        '    network: { bridge: br0, address: 10.0.0.255 }',
      ),
      [
        'machines.yaml:6:38: machines.web.network.address: 10.0.1.5 is outside network br0 (10.0.0.0/24) or is its network/broadcast address',
        "machines.yaml:8:38: machines.db.network.address: 10.0.0.1 is the gateway of network br0 (the host's own address on the bridge)",
        'machines.yaml:12:38: machines.b.network.address: 10.0.0.7 is already used by machine a',
        'machines.yaml:14:24: machines.c.network.bridge: network "br1" is not declared under networks: (declared: br0)',
        'machines.yaml:16:38: machines.d.network.address: 10.0.0.255 is outside network br0 (10.0.0.0/24) or is its network/broadcast address',
      ],
    );
  });

  test('an explicit gateway is the address machines may not take', () => {
    expectProblems(yaml('networks:', '  br0: { subnet: 10.0.0.0/24, gateway: 10.0.0.254 }', 'machines:', '  web:', '    network: { bridge: br0, address: 10.0.0.254 }'), [
      "machines.yaml:5:38: machines.web.network.address: 10.0.0.254 is the gateway of network br0 (the host's own address on the bridge)",
    ]);
  });

  test('undeclared bridge when no network is declared at all', () => {
    expectProblems(yaml('machines:', '  web:', '    network: { bridge: br0, address: 10.0.0.2 }'), [
      'machines.yaml:3:24: machines.web.network.bridge: network "br0" is not declared under networks: (none is declared)',
    ]);
  });

  test('overlapping subnets are reported on the later network', () => {
    expectProblems(yaml('networks:', '  br0:', '    subnet: 10.0.0.0/16', '  br1:', '    subnet: 10.0.5.0/24', 'machines:', '  web: {}'), [
      'machines.yaml:5:13: networks.br1.subnet: overlaps network br0 (10.0.0.0/16)',
    ]);
  });

  // A machine can replace anything below what it mounts read-write with a symlink, which
  // systemd-nspawn follows when it mounts a bind source: such a source could become any host path.
  test('a bind source inside another read-write bind source (of any machine) is refused; read-only ones and siblings are fine', () => {
    expectProblems(
      yaml(
        'machines:',
        '  web:',
        '    bind: ["/srv/app:/app", "/srv/app/conf:/etc/app:ro", "/srv/appx:/x", "/srv/ro:/ro:ro"]',
        '  db:',
        '    bind: ["/srv/app/data/pg:/var/lib/pg", "/srv/ro/inner:/inner", "/srv/shared:/s:ro"]',
      ),
      [
        'machines.yaml:3:29: machines.web.bind[1]: /srv/app/conf is inside /srv/app, which machine web mounts read-write: that machine could replace it with a symlink to any host directory, which systemd-nspawn would then mount here',
        'machines.yaml:5:12: machines.db.bind[0]: /srv/app/data/pg is inside /srv/app, which machine web mounts read-write: that machine could replace it with a symlink to any host directory, which systemd-nspawn would then mount here',
      ],
    );
  });

  test('bad bind specs, a bind with "..", and a repeated bind target', () => {
    expectProblems(
      yaml('machines:', '  web:', '    bind:', '      - "srv:/x"', '      - "/srv/../etc:/x"', '      - "/a:/b:/c:/d"', '      - "/a:/b:rx"', '      - "/e:/y"', '      - "/f:/y:ro"'),
      [
        'machines.yaml:4:9: machines.web.bind[0]: "srv": expected an absolute path of letters, digits and . _ @ + - /',
        'machines.yaml:5:9: machines.web.bind[1]: "/srv/../etc": path must not contain "." or ".." segments',
        'machines.yaml:6:9: machines.web.bind[2]: expected HOST_PATH[:MACHINE_PATH][:ro|rw], like /srv/www:/var/www:ro',
        'machines.yaml:7:9: machines.web.bind[3]: expected HOST_PATH[:MACHINE_PATH][:ro|rw], like /srv/www:/var/www:ro',
        'machines.yaml:9:9: machines.web.bind[5]: /y is already a bind mount target',
      ],
    );
  });

  test('bad binds in the mapping form: each names the key at fault; a repeated target counts across both forms', () => {
    expectProblems(
      yaml(
        'machines:',
        '  web:',
        '    bind:',
        '      - { host: /srv/a, readOnly: yes }',
        '      - { machine: /b }',
        '      - { host: srv/c }',
        '      - { host: /srv/d, machine: /x/../etc }',
        '      - { host: /srv/e, readonly: true }',
        '      - { host: /srv/f, create: "true" }',
        '      - 42',
        '      - [/srv/g]',
        '      - "/srv/h:/y"',
        '      - { host: /srv/i, machine: /y, create: true }',
      ),
      [
        'machines.yaml:4:9: machines.web.bind[0]: readOnly: expected a boolean, got a string',
        'machines.yaml:5:9: machines.web.bind[1]: host: is required',
        'machines.yaml:6:17: machines.web.bind[2].host: expected an absolute path of letters, digits and . _ @ + - /',
        'machines.yaml:7:34: machines.web.bind[3].machine: path must not contain "." or ".." segments',
        'machines.yaml:8:25: machines.web.bind[4].readonly: unknown key (did you mean readOnly?); expected one of: host, machine, readOnly, create',
        'machines.yaml:9:9: machines.web.bind[5]: create: expected a boolean, got a string',
        'machines.yaml:10:9: machines.web.bind[6]: expected HOST_PATH[:MACHINE_PATH][:ro|rw] like /srv/www:/var/www:ro, or a mapping like { host: /srv/www, machine: /var/www, readOnly: true }, got a number',
        'machines.yaml:11:9: machines.web.bind[7]: expected HOST_PATH[:MACHINE_PATH][:ro|rw] like /srv/www:/var/www:ro, or a mapping like { host: /srv/www, machine: /var/www, readOnly: true }, got a list',
        'machines.yaml:13:9: machines.web.bind[9]: /y is already a bind mount target',
      ],
    );
  });

  test('a bind mounted read-write in the mapping form makes credential files below it unusable, as the short form does', () => {
    expectProblems(
      yaml('defaults:', '  credentials: { key: /srv/shared/key }', 'machines:', '  web:', '    bind: [{ host: /srv/shared, machine: /shared }]', '  db:', '    bind: [{ host: /srv/shared, readOnly: true }]'),
      ['machines.yaml:2:23: defaults.credentials.key: /srv/shared/key is inside /srv/shared, which machine web mounts read-write; that machine could replace it with a symlink to any host file'],
    );
  });

  describe('a suite or mirror of the other distribution is refused where it is written', () => {
    test("another distribution's codename or official archive on a machine", () => {
      expectProblems(
        yaml('defaults:', '  distribution: debian', '  suite: bookworm', 'machines:', '  ub:', '    distribution: ubuntu', '    suite: bookworm', '    mirror: http://deb.debian.org/debian', '  deb:', '    suite: noble', '    mirror: http://10.0.0.5:3142/archive.ubuntu.com/ubuntu'),
        [
          "machines.yaml:7:12: machines.ub.suite: bookworm is a Debian suite, but the machine's distribution is ubuntu",
          "machines.yaml:8:13: machines.ub.mirror: http://deb.debian.org/debian is a Debian archive, but the machine's distribution is ubuntu",
          "machines.yaml:10:12: machines.deb.suite: noble is an Ubuntu suite, but the machine's distribution is debian (from defaults)",
          "machines.yaml:11:13: machines.deb.mirror: http://10.0.0.5:3142/archive.ubuntu.com/ubuntu is an Ubuntu archive, but the machine's distribution is debian (from defaults)",
        ],
      );
    });

    test("defaults.suite of another distribution than defaults.distribution's (debian when not set)", () => {
      expectProblems(yaml('defaults:', '  suite: jammy', 'machines:', '  a: { distribution: ubuntu }'), [
        'machines.yaml:2:10: defaults.suite: jammy is an Ubuntu suite, but defaults.distribution is debian (when not set), and defaults.suite and defaults.mirror are for its machines',
      ]);
    });

    test('defaults.suite and defaults.mirror that no machine takes, while machines of the other distribution use their own', () => {
      expectProblems(yaml('defaults:', '  suite: resolute', '  mirror: http://mirror.lan/ubuntu', 'machines:', '  a: { distribution: ubuntu }', '  b: { distribution: ubuntu }'), [
        "machines.yaml:2:10: defaults.suite: applies only to debian machines (those of defaults.distribution, debian when not set) and none takes it: a and b are ubuntu machines, which use ubuntu's own suite; set defaults.distribution: ubuntu, or set suite on those machines",
        "machines.yaml:3:11: defaults.mirror: applies only to debian machines (those of defaults.distribution, debian when not set) and none takes it: a and b are ubuntu machines, which use ubuntu's own mirror; set defaults.distribution: ubuntu, or set mirror on those machines",
      ]);
      expectProblems(yaml('defaults:', '  distribution: ubuntu', '  suite: noble', 'machines:', '  a: { distribution: debian, suite: trixie }', '  b: { distribution: debian }'), [
        "machines.yaml:3:10: defaults.suite: applies only to ubuntu machines (those of defaults.distribution) and none takes it: b is a debian machine, which uses debian's own suite; set defaults.distribution: debian, or set suite on that machine",
      ]);
    });
  });

  test('a file path listed twice, and a path nspawnctl writes itself', () => {
    expectProblems(
      yaml('machines:', '  web:', '    files:', '      - { path: /etc/motd, content: a }', '      - { path: /etc/motd, content: b }', '      - { path: /etc/hostname, content: c }', '      - { path: /root/.ssh/authorized_keys, content: d }'),
      [
        'machines.yaml:5:17: machines.web.files[1].path: /etc/motd is listed twice',
        'machines.yaml:6:17: machines.web.files[2].path: /etc/hostname is written by nspawnctl itself (from hostname:); set hostname instead',
        'machines.yaml:7:17: machines.web.files[3].path: /root/.ssh/authorized_keys is written by nspawnctl itself (from authorizedKeys:); set authorizedKeys instead',
      ],
    );
  });

  // A files: entry on any of these would be rewritten by nspawnctl on every apply (or would stand
  // where nspawnctl needs a directory), so the plan would never converge.
  test('files: may not take any path nspawnctl writes, a directory above one, or a path below one', () => {
    expectProblems(
      yaml(
        'machines:',
        '  web:',
        '    files:',
        '      - { path: /etc/apt/apt.conf.d/01nspawnctl-proxy, content: a }',
        '      - { path: /etc/systemd/system/multi-user.target.wants/systemd-networkd.service, content: b }',
        '      - { path: /usr/sbin/policy-rc.d, content: c }',
        '      - { path: /etc/machine-id, content: d }',
        '      - { path: /etc/systemd/network, content: e }',
        '      - { path: /root/.ssh, content: f }',
        '      - { path: /etc/hostname/x, content: g }',
        '      - { path: /etc/systemd/system/sockets.target.wants/systemd-networkd.socket/y, content: h }',
        '      - { path: /usr, content: i }',
      ),
      [
        'machines.yaml:4:17: machines.web.files[0].path: /etc/apt/apt.conf.d/01nspawnctl-proxy is written by nspawnctl itself (from aptProxy:); set aptProxy instead',
        'machines.yaml:5:17: machines.web.files[1].path: /etc/systemd/system/multi-user.target.wants/systemd-networkd.service is written by nspawnctl itself (from network:); set network instead',
        'machines.yaml:6:17: machines.web.files[2].path: /usr/sbin/policy-rc.d is written by nspawnctl itself (while it installs packages); files: cannot manage it',
        'machines.yaml:7:17: machines.web.files[3].path: /etc/machine-id is written by nspawnctl itself (when it copies a machine from a base image); files: cannot manage it',
        'machines.yaml:8:17: machines.web.files[4].path: /etc/systemd/network is a directory holding /etc/systemd/network/10-nspawnctl-host0.network, which nspawnctl writes itself (from network:); a file cannot take its place',
        'machines.yaml:9:17: machines.web.files[5].path: /root/.ssh is a directory holding /root/.ssh/authorized_keys, which nspawnctl writes itself (from authorizedKeys:); a file cannot take its place',
        'machines.yaml:10:17: machines.web.files[6].path: /etc/hostname/x is below /etc/hostname, a file nspawnctl writes itself (from hostname:), not a directory',
        'machines.yaml:11:17: machines.web.files[7].path: /etc/systemd/system/sockets.target.wants/systemd-networkd.socket/y is below /etc/systemd/system/sockets.target.wants/systemd-networkd.socket, a symlink nspawnctl writes itself (from network:), not a directory',
        'machines.yaml:12:17: machines.web.files[8].path: /usr is a directory holding /usr/sbin/policy-rc.d, which nspawnctl writes itself (while it installs packages); a file cannot take its place',
      ],
    );
  });

  test('files: next to generated paths, but not on, above or below one, are accepted', () => {
    const paths = ['/etc/hostname.d/x', '/etc/hostnames', '/etc/systemd/network/20-own.network', '/root/.ssh/config', '/usr/sbin/policy-rc.d.orig', '/etc/apt/apt.conf.d/02own'];
    const m = parseManifest(FILE, yaml('machines:', '  web:', '    files:', ...paths.map((p) => `      - { path: ${p}, content: x }`)));
    expect(m.machines.web.files.map((f) => f.path)).toEqual(paths);
  });

  test('bad file path and mode', () => {
    expectProblems(yaml('machines:', '  web:', '    files:', '      - { path: etc/x, content: a }', '      - { path: /etc/y, content: a, mode: "999" }'), [
      'machines.yaml:4:17: machines.web.files[0].path: expected an absolute path of letters, digits and . _ @ + - /',
      'machines.yaml:5:43: machines.web.files[1].mode: expected an octal mode like "0644" (quote it in YAML)',
    ]);
  });

  test('ports without a network, and a host port forwarded twice', () => {
    expectProblems(
      yaml(
        'networks:',
        '  br0: { subnet: 10.0.0.0/24 }',
        'machines:',
        '  web:',
        '    ports: [{ host: 80 }]',
        '  db:',
        '    network: { bridge: br0, address: 10.0.0.2 }',
        '    ports: [{ host: 8080 }, { host: 8080, protocol: udp }]',
        '  c:',
        '    network: { bridge: br0, address: 10.0.0.3 }',
        '    ports: [{ host: 8080, container: 80 }]',
      ),
      [
        'machines.yaml:5:12: machines.web.ports: ports need a network (a machine without network: has only loopback)',
        'machines.yaml:11:21: machines.c.ports[0].host: host port tcp/8080 is already forwarded to machine db',
      ],
    );
  });

  test('port numbers and protocol out of range', () => {
    expectProblems(
      yaml('networks:', '  br0: { subnet: 10.0.0.0/24 }', 'machines:', '  web:', '    network: { bridge: br0, address: 10.0.0.2 }', '    ports: [{ host: 0 }, { host: 70000, protocol: sctp }]'),
      [
        'machines.yaml:6:21: machines.web.ports[0].host: must be at least 1',
        'machines.yaml:6:34: machines.web.ports[1].host: must be at most 65535',
        'machines.yaml:6:51: machines.web.ports[1].protocol: expected one of tcp, udp, got "sctp"',
      ],
    );
  });

  test('a missing required key inside network', () => {
    expectProblems(yaml('networks:', '  br0: { subnet: 10.0.0.0/24 }', 'machines:', '  web:', '    network: { bridge: br0 }'), [
      'machines.yaml:5:14: machines.web.network.address: is required',
    ]);
  });

  test('an empty provision command', () => {
    expectProblems(yaml('machines:', '  web:', '    provision: [[]]'), ['machines.yaml:3:17: machines.web.provision[0]: a provision command needs at least the program name']);
  });

  test('empty file, and a file with only comments', () => {
    expectProblems('', ['machines.yaml:1:1: the manifest is empty; expected at least a machines: section']);
    expectProblems('# nothing here\n', ['machines.yaml:1:1: the manifest is empty; expected at least a machines: section']);
  });

  test('top level that is not a mapping', () => {
    expectProblems(yaml('- web', '- db'), ['machines.yaml:1:1: expected a mapping with networks: and machines: at the top']);
    expectProblems(yaml('hello'), ['machines.yaml:1:1: expected a mapping with networks: and machines: at the top']);
  });

  test('an alias bomb (billion laughs) is rejected cleanly, after a small, counted amount of work', () => {
    const levels = 'abcdefghi'.split('');
    const lines = [`a: &a [${Array(9).fill('"lol"').join(',')}]`];
    for (let i = 1; i < levels.length; i++) lines.push(`${levels[i]}: &${levels[i]} [${Array(9).fill(`*${levels[i - 1]}`).join(',')}]`);
    lines.push('machines: {}');
    const expected = ['machines.yaml:1:1: YAML: Excessive alias count indicates a resource exhaustion attack (aliases are limited to keep expansion small)'];
    expectProblems(yaml(...lines), expected);
    // Counted, not timed (test/helpers/work-meter.ts): the expansion holds 9^9 strings; the
    // loader's own work is about 400 (one step per character of the text, and a few dozen more).
    const work = createWorkMeter().measure(yaml(...lines));
    expect((work.error as ManifestError).problems.map(formatProblem)).toEqual(expected);
    expect(work.total).toBeLessThanOrEqual(1000);
  });

  test('a file larger than 1 MiB is refused before parsing', () => {
    expect(MAX_MANIFEST_BYTES).toBe(1024 * 1024);
    const head = yaml('machines:', '  web: {}');
    const exactly = head + '#'.repeat(MAX_MANIFEST_BYTES - head.length - 1) + '\n';
    expect(Buffer.byteLength(exactly)).toBe(MAX_MANIFEST_BYTES);
    expect(Object.keys(parseManifest(FILE, exactly).machines)).toEqual(['web']);
    // One byte more (a two-byte character counts as two bytes).
    expectProblems(`${exactly.slice(0, -2)}é\n`, ['machines.yaml:1:1: file is larger than 1048576 bytes; a manifest is hand-written text']);
  });

  test('a NUL byte is located', () => {
    expectProblems(yaml('machines:', '  web:', '    hostname: w\0b'), ['machines.yaml:3:16: file contains a NUL byte']);
  });

  test('invalid UTF-8 is located when the file is read (the real host reads bytes)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nspawnctl-utf8-'));
    const file = join(dir, 'machines.yaml');
    writeFileSync(file, Buffer.concat([Buffer.from('machines:\n  web:\n    hostname: w'), Buffer.from([0xff]), Buffer.from('b\n')]));
    const err = await createRealHost().readInput(file, MAX_MANIFEST_BYTES).then(
      () => undefined,
      (e: unknown) => e,
    );
    rmSync(dir, { recursive: true, force: true });
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as ManifestError).exitCode).toBe(2);
    expect((err as ManifestError).message).toBe(`${file}:3:16: file is not valid UTF-8 (byte 0xff at offset 32)`);
  });

  test('a valid file containing the character U+FFFD loads', () => {
    const m = parseManifest(FILE, yaml('machines:', '  web:', '    files: [{ path: /etc/motd, content: "\uFFFD\\n" }]'));
    expect(m.machines.web.files).toEqual([{ path: '/etc/motd', content: '\uFFFD\n', mode: 0o644 }]);
  });

  test('problems of different kinds in different sections are all reported in one error, sorted by position', () => {
    expectProblems(
      yaml('defaults:', '  packges: [curl]', 'networks:', '  br0:', '    subnet: 10.0.0.0/24', '    nat: on', 'machines:', '  web:', '    hostnme: web', '  db:', '    network: { bridge: br0, address: 10.9.0.5 }'),
      [
        `machines.yaml:2:3: defaults.packges: unknown key (did you mean packages?); expected one of: ${DEFAULTS_KEYS}`,
        'machines.yaml:6:10: networks.br0.nat: expected a boolean, got a string',
        `machines.yaml:9:5: machines.web.hostnme: unknown key (did you mean hostname?); expected one of: ${MACHINE_KEYS}`,
        'machines.yaml:11:38: machines.db.network.address: 10.9.0.5 is outside network br0 (10.0.0.0/24) or is its network/broadcast address',
      ],
    );
  });

  test('unknown keys do not hide cross-field problems', () => {
    expectProblems(yaml('networks:', '  br0:', '    subnet: 10.0.0.0/24', 'machines:', '  web:', '    hostnme: x', '  db:', '    network: { bridge: br0, address: 10.9.0.5 }'), [
      `machines.yaml:6:5: machines.web.hostnme: unknown key (did you mean hostname?); expected one of: ${MACHINE_KEYS}`,
      'machines.yaml:8:38: machines.db.network.address: 10.9.0.5 is outside network br0 (10.0.0.0/24) or is its network/broadcast address',
    ]);
  });

  // zod skips refinements once a field has a type error; cross-field rules therefore run on the
  // raw data, so a wrong type anywhere does not hide them.
  test('a type error elsewhere does not hide cross-field problems', () => {
    expectProblems(yaml('networks:', '  br0:', '    subnet: 10.0.0.0/24', 'machines:', '  web:', '    autostart: "yes"', '  db:', '    network: { bridge: br0, address: 10.9.0.5 }'), [
      'machines.yaml:6:16: machines.web.autostart: expected a boolean, got a string',
      'machines.yaml:8:38: machines.db.network.address: 10.9.0.5 is outside network br0 (10.0.0.0/24) or is its network/broadcast address',
    ]);
  });
});

describe('credentials: NAME: /absolute/host/file', () => {
  const CREDENTIAL_NAME_RULE = 'credential names are 1-64 characters of A-Z a-z 0-9 _ . -, not starting with a dot (systemd makes them file names)';

  test('bad names are located at the name, each with the rule', () => {
    expectProblems(
      yaml(
        'machines:',
        '  web:',
        '    credentials:',
        '      "db password": /etc/nspawnctl/credentials/db',
        '      .hidden: /etc/nspawnctl/credentials/h',
        '      "a:b": /etc/nspawnctl/credentials/ab',
        `      ${'x'.repeat(65)}: /etc/nspawnctl/credentials/long`,
        '      __proto__: /etc/nspawnctl/credentials/p',
        '      ok.name-1_2: /etc/nspawnctl/credentials/ok',
        `      ${'y'.repeat(64)}: /etc/nspawnctl/credentials/longest`,
      ),
      [
        `machines.yaml:4:7: machines.web.credentials."db password": ${CREDENTIAL_NAME_RULE}`,
        `machines.yaml:5:7: machines.web.credentials.".hidden": ${CREDENTIAL_NAME_RULE}`,
        `machines.yaml:6:7: machines.web.credentials."a:b": ${CREDENTIAL_NAME_RULE}`,
        `machines.yaml:7:7: machines.web.credentials.${'x'.repeat(65)}: ${CREDENTIAL_NAME_RULE}`,
        `machines.yaml:8:7: machines.web.credentials.__proto__: ${CREDENTIAL_NAME_RULE}`,
      ],
    );
  });

  test('bad paths and values that are not strings are located at the value', () => {
    expectProblems(
      yaml(
        'defaults:',
        '  credentials:',
        '    token: secrets/token',
        'machines:',
        '  web:',
        '    credentials:',
        '      a: /etc/../etc/shadow',
        '      b: /etc/nspawnctl/credentials/',
        '      c: 42',
        '      d: [/etc/x]',
        '      e:',
        '      f: "/etc/my secret"',
        '      g: /var/lib/machines/web/etc/key',
        '  db:',
        '    credentials: [/etc/x]',
      ),
      [
        'machines.yaml:3:12: defaults.credentials.token: expected an absolute path of letters, digits and . _ @ + - /',
        'machines.yaml:7:10: machines.web.credentials.a: path must not contain "." or ".." segments',
        'machines.yaml:8:10: machines.web.credentials.b: path must name a file or directory below /, without "//" or a trailing "/"',
        'machines.yaml:9:10: machines.web.credentials.c: expected a string, got a number',
        'machines.yaml:10:10: machines.web.credentials.d: expected a string, got a list',
        'machines.yaml:11:9: machines.web.credentials.e: expected a string, got nothing (null)',
        'machines.yaml:12:10: machines.web.credentials.f: expected an absolute path of letters, digits and . _ @ + - /',
        'machines.yaml:13:10: machines.web.credentials.g: a credential file must be outside /var/lib/machines, where a machine could replace it with a symlink to any host file',
        'machines.yaml:15:18: machines.db.credentials: expected a mapping, got a list',
      ],
    );
  });

  test('a credential file inside a directory any machine mounts read-write is refused; read-only is fine', () => {
    expectProblems(
      yaml(
        'defaults:',
        '  credentials: { shared: /srv/data/shared.key }',
        'machines:',
        '  web:',
        '    bind: ["/srv/data:/data", "/srv/conf:/conf:ro"]',
        '    credentials:',
        '      own: /srv/data/web/own.key',
        '      conf: /srv/conf/app.key',
        '  db:',
        '    credentials: { tls: /srv/data }',
      ),
      [
        'machines.yaml:2:26: defaults.credentials.shared: /srv/data/shared.key is inside /srv/data, which machine web mounts read-write; that machine could replace it with a symlink to any host file',
        'machines.yaml:7:12: machines.web.credentials.own: /srv/data/web/own.key is inside /srv/data, which machine web mounts read-write; that machine could replace it with a symlink to any host file',
        'machines.yaml:10:25: machines.db.credentials.tls: /srv/data is inside /srv/data, which machine web mounts read-write; that machine could replace it with a symlink to any host file',
      ],
    );
  });

  test('machine credentials are merged over defaults key by key', () => {
    const m = parseManifest(
      FILE,
      yaml(
        'defaults:',
        '  credentials:',
        '    ca.pem: /etc/nspawnctl/credentials/ca.pem',
        '    db-password: /etc/nspawnctl/credentials/db-password',
        'machines:',
        '  web:',
        '    credentials:',
        '      db-password: /etc/nspawnctl/credentials/web-db-password',
        '      tls.key: /etc/letsencrypt/live/web.example.org/privkey.pem',
        '  db: {}',
      ),
    );
    expect(m.machines.web.credentials).toEqual({
      'ca.pem': '/etc/nspawnctl/credentials/ca.pem',
      'db-password': '/etc/nspawnctl/credentials/web-db-password',
      'tls.key': '/etc/letsencrypt/live/web.example.org/privkey.pem',
    });
    expect(m.machines.db.credentials).toEqual({ 'ca.pem': '/etc/nspawnctl/credentials/ca.pem', 'db-password': '/etc/nspawnctl/credentials/db-password' });
  });
});

describe('parseManifest resolves valid manifests', () => {
  test('machines.example.yaml at the repository root loads, fully resolved', () => {
    const m = parseManifest('machines.example.yaml', readFileSync(join(REPO, 'machines.example.yaml'), 'utf8'));
    expect(m.file).toBe('machines.example.yaml');
    expect(m.networks).toEqual({
      examplevlan: { name: 'examplevlan', subnet: { base: 0x0a4d0000, prefix: 24 }, subnetText: '10.77.0.0/24', gateway: '10.77.0.1', nat: true, isolated: false },
    });
    expect(Object.keys(m.machines)).toEqual(['db', 'web']);
    const common = {
      distribution: 'debian',
      suite: 'bookworm',
      mirror: 'http://deb.debian.org/debian',
      variant: 'minbase',
      bootstrapper: 'auto',
      packages: ['dbus', 'iproute2', 'iputils-ping', 'systemd', 'systemd-sysv'],
      // defaults.packages and iproute2 (networked) are all base: nothing is installed on top.
      basePackages: ['dbus', 'iproute2', 'iputils-ping', 'systemd', 'systemd-sysv'],
      aptProxy: undefined,
      // The host's nameservers, copied in at each start (ResolvConf=copy-host or copy-uplink).
      dns: [],
      authorizedKeys: [],
      environment: { TZ: 'UTC' },
      credentials: {},
      autostart: true,
      security: resolveSecurity({ preset: 'strict' }, undefined),
      limits: resolveLimits(undefined, undefined),
      services: [],
    };
    expect(m.machines.web).toEqual({
      ...common,
      name: 'web',
      hostname: 'web',
      network: { bridge: 'examplevlan', address: '10.77.0.11', prefix: 24, gateway: '10.77.0.1', allow: [] },
      bind: [{ source: '/srv/www', target: '/var/www', readOnly: true, create: true }],
      ports: [{ host: 8080, container: 80, protocol: 'tcp' }],
      files: [{ path: '/etc/motd', content: 'web: managed by nspawnctl\n', mode: 0o644 }],
      provision: [['mkdir', '-p', '/var/www']],
    });
    expect(m.machines.db).toEqual({
      ...common,
      name: 'db',
      hostname: 'db',
      network: { bridge: 'examplevlan', address: '10.77.0.12', prefix: 24, gateway: '10.77.0.1', allow: [] },
      bind: [],
      ports: [],
      files: [{ path: '/etc/motd', content: 'db: managed by nspawnctl\n', mode: 0o644 }],
      provision: [],
    });
  });

  test('built-in defaults for a bare machine', () => {
    const m = parseManifest(FILE, yaml('machines:', '  web: {}'));
    expect(m.networks).toEqual({});
    expect(m.machines.web).toEqual({
      name: 'web',
      distribution: 'debian',
      suite: 'bookworm',
      mirror: 'http://deb.debian.org/debian',
      variant: 'minbase',
      bootstrapper: 'auto',
      packages: ['dbus', 'systemd', 'systemd-sysv'],
      basePackages: ['dbus', 'systemd', 'systemd-sysv'],
      aptProxy: undefined,
      hostname: 'web',
      dns: [],
      authorizedKeys: [],
      environment: {},
      credentials: {},
      network: undefined,
      bind: [],
      ports: [],
      files: [],
      provision: [],
      autostart: false,
      services: [],
      security: {
        preset: 'default' as const,
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
      limits: { memoryMax: undefined, memorySwapMax: undefined, cpuQuota: undefined, tasksMax: undefined, ioWeight: undefined },
    });
  });

  test('defaults are inherited and overridden; packages are merged with the required ones and sorted', () => {
    const m = parseManifest(
      FILE,
      yaml(
        'defaults:',
        '  packages: [zsh, curl]',
        '  dns: [9.9.9.9]',
        '  environment: { A: "1", B: "2" }',
        '  aptProxy: http://proxy:3142',
        '  variant: buildd',
        'networks:',
        '  br0: { subnet: 10.0.0.0/24 }',
        'machines:',
        '  web:',
        '    packages: [nginx, curl]',
        '    dns: [1.1.1.1]',
        '    environment: { B: "3" }',
        '    variant: important',
        '    network: { bridge: br0, address: 10.0.0.2 }',
        '  db: {}',
      ),
    );
    expect(Object.keys(m.machines)).toEqual(['db', 'web']);
    expect(m.machines.web.packages).toEqual(['curl', 'dbus', 'iproute2', 'nginx', 'systemd', 'systemd-sysv', 'zsh']);
    // The base image: required + defaults.packages + iproute2 (networked); the machine's own
    // packages (nginx; curl is already in the defaults) are not part of it.
    expect(m.machines.web.basePackages).toEqual(['curl', 'dbus', 'iproute2', 'systemd', 'systemd-sysv', 'zsh']);
    expect(m.machines.web.dns).toEqual(['1.1.1.1']);
    expect(m.machines.web.environment).toEqual({ A: '1', B: '3' });
    expect(m.machines.web.variant).toBe('important');
    expect(m.machines.web.aptProxy).toBe('http://proxy:3142');
    // Without a network, iproute2 is not added.
    expect(m.machines.db.packages).toEqual(['curl', 'dbus', 'systemd', 'systemd-sysv', 'zsh']);
    expect(m.machines.db.basePackages).toEqual(['curl', 'dbus', 'systemd', 'systemd-sysv', 'zsh']);
    expect(m.machines.db.dns).toEqual(['9.9.9.9']);
    expect(m.machines.db.environment).toEqual({ A: '1', B: '2' });
    expect(m.machines.db.variant).toBe('buildd');
  });

  test('ubuntu gets noble and the ubuntu mirror unless set', () => {
    const m = parseManifest(
      FILE,
      yaml('defaults:', '  distribution: ubuntu', 'machines:', '  a: {}', '  b:', '    suite: jammy', '  c:', '    distribution: debian', '  d:', '    distribution: ubuntu', '    mirror: http://mirror.example/ubuntu'),
    );
    const pick = (n: string) => [m.machines[n].distribution, m.machines[n].suite, m.machines[n].mirror];
    expect(pick('a')).toEqual(['ubuntu', 'noble', 'http://archive.ubuntu.com/ubuntu']);
    expect(pick('b')).toEqual(['ubuntu', 'jammy', 'http://archive.ubuntu.com/ubuntu']);
    expect(pick('c')).toEqual(['debian', 'bookworm', 'http://deb.debian.org/debian']);
    expect(pick('d')).toEqual(['ubuntu', 'noble', 'http://mirror.example/ubuntu']);
  });

  test('the gateway defaults to the first address of the subnet; nat defaults to false', () => {
    const m = parseManifest(FILE, yaml('networks:', '  br0: { subnet: 10.0.8.0/22 }', '  br1: { subnet: 192.168.5.0/24, gateway: 192.168.5.254, nat: true }', 'machines:', '  web:', '    network: { bridge: br0, address: 10.0.11.254 }'));
    expect(m.networks.br0.gateway).toBe('10.0.8.1');
    expect(m.networks.br0.nat).toBe(false);
    expect(m.networks.br1.gateway).toBe('192.168.5.254');
    expect(m.networks.br1.nat).toBe(true);
    expect(m.machines.web.network).toEqual({ bridge: 'br0', address: '10.0.11.254', prefix: 22, gateway: '10.0.8.1', allow: [] });
  });

  test('ports default the container port to the host port and the protocol to tcp; file modes are octal', () => {
    const m = parseManifest(
      FILE,
      yaml('networks:', '  br0: { subnet: 10.0.0.0/24 }', 'machines:', '  web:', '    network: { bridge: br0, address: 10.0.0.2 }', '    ports: [{ host: 8080 }, { host: 53, protocol: udp }]', '    files:', '      - { path: /etc/a, content: x, mode: "600" }', '    bind: ["/srv/a", "/srv/b:rw", "/srv/c:/c:ro"]'),
    );
    expect(m.machines.web.ports).toEqual([
      { host: 8080, container: 8080, protocol: 'tcp' },
      { host: 53, container: 53, protocol: 'udp' },
    ]);
    expect(m.machines.web.files).toEqual([{ path: '/etc/a', content: 'x', mode: 0o600 }]);
    // The short form never creates a missing source.
    expect(m.machines.web.bind).toEqual([
      { source: '/srv/a', target: '/srv/a', readOnly: false, create: false },
      { source: '/srv/b', target: '/srv/b', readOnly: false, create: false },
      { source: '/srv/c', target: '/c', readOnly: true, create: false },
    ]);
  });

  test('binds in the mapping form: machine defaults to host, readOnly and create to false', () => {
    const m = parseManifest(FILE, yaml('machines:', '  web:', '    bind:', '      - { host: /srv/a }', '      - { host: /srv/b, machine: /b, readOnly: true, create: true }', '      - /srv/c:/c:rw'));
    expect(m.machines.web.bind).toEqual([
      { source: '/srv/a', target: '/srv/a', readOnly: false, create: false },
      { source: '/srv/b', target: '/b', readOnly: true, create: true },
      { source: '/srv/c', target: '/c', readOnly: false, create: false },
    ]);
  });

  test("each distribution takes its own suite and mirror unless the machine, or defaults for that distribution, sets them", () => {
    // The newcomer's manifest: Debian defaults and one Ubuntu machine. It used to get bookworm from the Debian mirror.
    const m = parseManifest(
      FILE,
      yaml('defaults:', '  distribution: debian', '  suite: trixie', '  mirror: http://mirror.lan/debian', 'machines:', '  deb: {}', '  ub: { distribution: ubuntu }', '  ub2: { distribution: ubuntu, suite: jammy }', '  ub3: { distribution: ubuntu, mirror: http://mirror.lan/ubuntu }'),
    );
    const base = (name: string) => [m.machines[name].distribution, m.machines[name].suite, m.machines[name].mirror];
    expect(base('deb')).toEqual(['debian', 'trixie', 'http://mirror.lan/debian']);
    expect(base('ub')).toEqual(['ubuntu', 'noble', 'http://archive.ubuntu.com/ubuntu']);
    expect(base('ub2')).toEqual(['ubuntu', 'jammy', 'http://archive.ubuntu.com/ubuntu']);
    expect(base('ub3')).toEqual(['ubuntu', 'noble', 'http://mirror.lan/ubuntu']);
    // defaults for Ubuntu machines: defaults.distribution says whose suite and mirror they are.
    const u = parseManifest(FILE, yaml('defaults: { distribution: ubuntu, suite: jammy }', 'machines:', '  a: {}', '  b: { distribution: debian }'));
    expect([u.machines.a.suite, u.machines.a.mirror, u.machines.b.suite, u.machines.b.mirror]).toEqual(['jammy', 'http://archive.ubuntu.com/ubuntu', 'bookworm', 'http://deb.debian.org/debian']);
  });
});
