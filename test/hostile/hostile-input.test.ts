// Hostile manifests: every one is refused with a located ManifestError (exit 2) before the host is
// read or changed, or, where the schema accepts a value (file content, environment values,
// provision arguments), the value arrives verbatim in a file or in one argv element, never in a
// shell. Regression tests for bugs found and fixed carry a comment saying what the bug was.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatProblem, ManifestError } from '../../src/errors';
import { createRealHost } from '../../src/host/host';
import { MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_PROBLEMS, parseManifest } from '../../src/manifest/load';
import { planChanges } from '../../src/plan/plan';
import { renderDesiredState } from '../../src/render/desired';
import { freshState, MANIFEST_PATH, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { simulateSystemd } from '../helpers/simulated-systemd';
import { createWorkMeter, expectLinearWork, WorkMeter } from '../helpers/work-meter';
import {
  BRIDGE_NAME_RULE,
  DOT_SEGMENTS,
  ENV_NAME_RULE,
  expectProblems,
  expectRefusedByCommand,
  FILE,
  freshBootedHost,
  HOSTNAME_RULE,
  IPV4_RULE,
  loadError,
  MACHINE_KEYS,
  MACHINE_NAME_RULE,
  PACKAGE_RULE,
  PATH_RULE,
  runApply,
  runPlan,
  SINGLE_SPELLING,
  URL_RULE,
  yaml,
} from './hostile-helpers';

const NOW = '2024-05-06T07:08:09.000Z';
const planOf = (text: string) => planChanges(renderDesiredState(parseManifest(FILE, text)), freshState(), { manifestPath: MANIFEST_PATH, now: NOW });

interface Case {
  name: string;
  text: string;
  problems: string[];
  /** Also run through the real command on a FakeHost: exit 2, nothing run, nothing written. */
  via?: 'plan' | 'apply';
}

const LONG_PATH = `/${'a'.repeat(9999)}`;
const TWO_MB = 'a'.repeat(2 * 1024 * 1024);

function billionLaughs(): string {
  const levels = 'abcdefghi'.split('');
  const lines = [`a: &a [${Array(9).fill('"lol"').join(',')}]`];
  for (let i = 1; i < levels.length; i++) lines.push(`${levels[i]}: &${levels[i]} [${Array(9).fill(`*${levels[i - 1]}`).join(',')}]`);
  lines.push('machines: {}');
  return yaml(...lines);
}

const CASES: Case[] = [
  // --- names: argument injection, path tricks, shell metacharacters, look-alikes, length ---
  {
    name: 'machine named --help (argument injection into machinectl)',
    text: yaml('machines:', '  "--help": {}', '  -oFoo: {}'),
    problems: [`machines.yaml:2:3: machines.--help: ${MACHINE_NAME_RULE}`, `machines.yaml:3:3: machines.-oFoo: ${MACHINE_NAME_RULE}`],
    via: 'plan',
  },
  {
    name: 'machine names that are paths: .., ../../etc, a/b, .',
    text: yaml('machines:', '  "..": {}', '  "../../etc": {}', '  a/b: {}', '  ".": {}'),
    problems: [
      `machines.yaml:2:3: machines."..": ${MACHINE_NAME_RULE}`,
      `machines.yaml:3:3: machines."../../etc": ${MACHINE_NAME_RULE}`,
      `machines.yaml:4:3: machines."a/b": ${MACHINE_NAME_RULE}`,
      `machines.yaml:5:3: machines.".": ${MACHINE_NAME_RULE}`,
    ],
    via: 'apply',
  },
  {
    name: 'machine names with shell metacharacters',
    text: yaml('machines:', '  "$(reboot)": {}', '  "`id`": {}', '  "a;b": {}', '  "a|b": {}', '  "a&&b": {}'),
    problems: [
      `machines.yaml:2:3: machines."$(reboot)": ${MACHINE_NAME_RULE}`,
      `machines.yaml:3:3: machines."\`id\`": ${MACHINE_NAME_RULE}`,
      `machines.yaml:4:3: machines."a;b": ${MACHINE_NAME_RULE}`,
      `machines.yaml:5:3: machines."a|b": ${MACHINE_NAME_RULE}`,
      `machines.yaml:6:3: machines."a&&b": ${MACHINE_NAME_RULE}`,
    ],
    via: 'plan',
  },
  {
    name: 'machine names that look like "web" (Cyrillic e, fullwidth letters, a zero-width space) and a space',
    text: yaml('machines:', '  "w\u0435b": {}', '  "\uff57\uff45\uff42": {}', '  "we\u200bb": {}', '  "a b": {}'),
    problems: [
      `machines.yaml:2:3: machines."w\u0435b": ${MACHINE_NAME_RULE}`,
      `machines.yaml:3:3: machines."\uff57\uff45\uff42": ${MACHINE_NAME_RULE}`,
      `machines.yaml:4:3: machines."we\u200bb": ${MACHINE_NAME_RULE}`,
      `machines.yaml:5:3: machines."a b": ${MACHINE_NAME_RULE}`,
    ],
    via: 'plan',
  },
  {
    name: 'machine names of 13 characters, with a leading or trailing dash, upper case, empty',
    text: yaml('machines:', '  abcdefghijklm: {}', '  -web: {}', '  web-: {}', '  Web: {}', '  "": {}'),
    problems: [
      `machines.yaml:2:3: machines.abcdefghijklm: ${MACHINE_NAME_RULE}`,
      `machines.yaml:3:3: machines.-web: ${MACHINE_NAME_RULE}`,
      `machines.yaml:4:3: machines.web-: ${MACHINE_NAME_RULE}`,
      `machines.yaml:5:3: machines.Web: ${MACHINE_NAME_RULE}`,
      `machines.yaml:6:3: machines."": ${MACHINE_NAME_RULE}`,
    ],
  },
  {
    name: 'network names: argument injection, metacharacters, a path, 16 characters, a digit first',
    text: yaml(
      'networks:',
      '  "--help": { subnet: 10.0.0.0/24 }',
      '  "br0;ls": { subnet: 10.0.1.0/24 }',
      '  "../x": { subnet: 10.0.2.0/24 }',
      '  abcdefghijklmnop: { subnet: 10.0.3.0/24 }',
      '  0br: { subnet: 10.0.4.0/24 }',
      'machines: {}',
    ),
    problems: [
      `machines.yaml:2:3: networks.--help: ${BRIDGE_NAME_RULE}`,
      `machines.yaml:3:3: networks."br0;ls": ${BRIDGE_NAME_RULE}`,
      `machines.yaml:4:3: networks."../x": ${BRIDGE_NAME_RULE}`,
      `machines.yaml:5:3: networks.abcdefghijklmnop: ${BRIDGE_NAME_RULE}`,
      `machines.yaml:6:3: networks.0br: ${BRIDGE_NAME_RULE}`,
    ],
    via: 'plan',
  },
  {
    name: 'environment variable names with metacharacters, a dash, a digit first, empty',
    text: yaml('machines:', '  web:', '    environment: { "A;B": x, "$(id)": y, "--help": z, "1A": w, "": v }'),
    problems: [
      `machines.yaml:3:20: machines.web.environment."A;B": ${ENV_NAME_RULE}`,
      `machines.yaml:3:30: machines.web.environment."$(id)": ${ENV_NAME_RULE}`,
      `machines.yaml:3:42: machines.web.environment.--help: ${ENV_NAME_RULE}`,
      `machines.yaml:3:55: machines.web.environment.1A: ${ENV_NAME_RULE}`,
      `machines.yaml:3:64: machines.web.environment."": ${ENV_NAME_RULE}`,
    ],
  },
  {
    name: 'package names: -oFoo, --help, shell metacharacters, a space, a non-ASCII letter, one character',
    text: yaml('machines:', '  web:', '    packages: [-oFoo, --help, "nginx;rm -rf /", "$(id)", "`id`", "a|b", "a && b", "ng\u00ednx", a]'),
    problems: [
      `machines.yaml:3:16: machines.web.packages[0]: ${PACKAGE_RULE}`,
      `machines.yaml:3:23: machines.web.packages[1]: ${PACKAGE_RULE}`,
      `machines.yaml:3:31: machines.web.packages[2]: ${PACKAGE_RULE}`,
      `machines.yaml:3:49: machines.web.packages[3]: ${PACKAGE_RULE}`,
      `machines.yaml:3:58: machines.web.packages[4]: ${PACKAGE_RULE}`,
      `machines.yaml:3:66: machines.web.packages[5]: ${PACKAGE_RULE}`,
      `machines.yaml:3:73: machines.web.packages[6]: ${PACKAGE_RULE}`,
      `machines.yaml:3:83: machines.web.packages[7]: ${PACKAGE_RULE}`,
      `machines.yaml:3:92: machines.web.packages[8]: ${PACKAGE_RULE}`,
    ],
    via: 'apply',
  },

  // --- paths ---
  {
    name: 'file paths with .., relative, a space, a newline, a leading dash, metacharacters, a look-alike',
    text: yaml(
      'machines:',
      '  web:',
      '    files:',
      '      - { path: /etc/../../x, content: a }',
      '      - { path: ../etc/x, content: a }',
      '      - { path: /etc/./x, content: a }',
      '      - { path: "/etc/x y", content: a }',
      '      - { path: "/etc/x\\n", content: a }',
      '      - { path: -oFoo, content: a }',
      '      - { path: "/etc/$(id)", content: a }',
      '      - { path: "/etc/x;rm", content: a }',
      '      - { path: "/etc/`id`|sh", content: a }',
      '      - { path: "/etc/\uff58", content: a }',
    ),
    problems: [
      `machines.yaml:4:17: machines.web.files[0].path: ${DOT_SEGMENTS}`,
      `machines.yaml:5:17: machines.web.files[1].path: ${PATH_RULE}`,
      `machines.yaml:5:17: machines.web.files[1].path: ${DOT_SEGMENTS}`,
      `machines.yaml:6:17: machines.web.files[2].path: ${DOT_SEGMENTS}`,
      `machines.yaml:7:17: machines.web.files[3].path: ${PATH_RULE}`,
      `machines.yaml:8:17: machines.web.files[4].path: ${PATH_RULE}`,
      `machines.yaml:9:17: machines.web.files[5].path: ${PATH_RULE}`,
      `machines.yaml:10:17: machines.web.files[6].path: ${PATH_RULE}`,
      `machines.yaml:11:17: machines.web.files[7].path: ${PATH_RULE}`,
      `machines.yaml:12:17: machines.web.files[8].path: ${PATH_RULE}`,
      `machines.yaml:13:17: machines.web.files[9].path: ${PATH_RULE}`,
    ],
    via: 'plan',
  },
  {
    name: 'bind specs with .., a leading dash, metacharacters, a newline, too many fields, empty sides',
    text: yaml(
      'machines:',
      '  web:',
      '    bind:',
      '      - "/srv/../../etc:/x"',
      '      - "/srv:/../etc"',
      '      - "--help"',
      '      - "/srv;ls:/y"',
      '      - "/srv\\n:/z"',
      '      - "/a:/b:ro:rw"',
      '      - ""',
      '      - ":/x"',
    ),
    problems: [
      `machines.yaml:4:9: machines.web.bind[0]: "/srv/../../etc": ${DOT_SEGMENTS}`,
      `machines.yaml:5:9: machines.web.bind[1]: "/../etc": ${DOT_SEGMENTS}`,
      `machines.yaml:6:9: machines.web.bind[2]: "--help": ${PATH_RULE}`,
      `machines.yaml:7:9: machines.web.bind[3]: "/srv;ls": ${PATH_RULE}`,
      `machines.yaml:8:9: machines.web.bind[4]: "/srv\\n": ${PATH_RULE}`,
      'machines.yaml:9:9: machines.web.bind[5]: expected HOST_PATH[:MACHINE_PATH][:ro|rw], like /srv/www:/var/www:ro',
      `machines.yaml:10:9: machines.web.bind[6]: "": ${PATH_RULE}`,
      `machines.yaml:11:9: machines.web.bind[7]: "": ${PATH_RULE}`,
    ],
    via: 'apply',
  },
  {
    name: 'a 10,000-character file path',
    text: yaml('machines:', '  web:', `    files: [{ path: ${LONG_PATH}, content: x }]`),
    problems: ['machines.yaml:3:21: machines.web.files[0].path: path is longer than 1024 characters'],
    via: 'plan',
  },
  {
    name: 'a 10,000-character bind path',
    text: yaml('machines:', '  web:', `    bind: ["${LONG_PATH}:/x"]`),
    problems: [`machines.yaml:3:12: machines.web.bind[0]: "${LONG_PATH}": path is longer than 1024 characters`],
  },
  {
    name: 'a file path of 1025 characters (one more than allowed)',
    text: yaml('machines:', '  web:', `    files: [{ path: /${'b'.repeat(1024)}, content: x }]`),
    problems: ['machines.yaml:3:21: machines.web.files[0].path: path is longer than 1024 characters'],
  },
  {
    name: 'a 2 MB manifest (file content) is refused before parsing',
    text: yaml('machines:', '  web:', `    files: [{ path: /x, content: "${TWO_MB}" }]`),
    problems: ['machines.yaml:1:1: file is larger than 1048576 bytes; a manifest is hand-written text'],
    via: 'apply',
  },

  // --- shell metacharacters in every string field the schema restricts ---
  {
    name: 'hostnames with $(...), ;, a leading dash, a newline, backticks, |, &&, 64 characters, empty',
    text: yaml(
      'machines:',
      '  a: { hostname: "$(reboot)" }',
      '  b: { hostname: "web;ls" }',
      '  c: { hostname: -web }',
      '  d: { hostname: "web\\n" }',
      '  e: { hostname: "`id`" }',
      '  f: { hostname: "a|b" }',
      '  g: { hostname: "a && b" }',
      `  h: { hostname: ${'a'.repeat(64)} }`,
      '  i: { hostname: "" }',
    ),
    problems: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].map((m, i) => `machines.yaml:${i + 2}:18: machines.${m}.hostname: ${HOSTNAME_RULE}`),
    via: 'plan',
  },
  {
    name: 'suites with ;, --help, $(...), backticks, |, &&',
    text: yaml(
      'defaults: { suite: "bookworm;ls" }',
      'machines:',
      '  a: { suite: --help }',
      '  b: { suite: "$(id)" }',
      '  c: { suite: "`id`" }',
      '  d: { suite: "a|b" }',
      '  e: { suite: "a && b" }',
    ),
    problems: [
      'machines.yaml:1:20: defaults.suite: expected a suite name like bookworm or noble',
      ...['a', 'b', 'c', 'd', 'e'].map((m, i) => `machines.yaml:${i + 3}:15: machines.${m}.suite: expected a suite name like bookworm or noble`),
    ],
  },
  {
    name: 'mirrors and apt proxies with $(...), backticks, ;, a leading dash, file://, a quote, a bad port',
    text: yaml(
      'machines:',
      '  a: { mirror: "http://x/$(id)" }',
      '  b: { mirror: "http://x/`id`" }',
      '  c: { mirror: "http://x;ls" }',
      '  d: { mirror: -oFoo }',
      '  e: { mirror: "file:///etc" }',
      '  f: { aptProxy: "http://x && id" }',
      `  g: { aptProxy: 'http://x" ; id' }`,
      '  h: { mirror: "http://x:99999999/" }',
    ),
    problems: [
      `machines.yaml:2:16: machines.a.mirror: ${URL_RULE}`,
      `machines.yaml:3:16: machines.b.mirror: ${URL_RULE}`,
      `machines.yaml:4:16: machines.c.mirror: ${URL_RULE}`,
      `machines.yaml:5:16: machines.d.mirror: ${URL_RULE}`,
      `machines.yaml:6:16: machines.e.mirror: ${URL_RULE}`,
      `machines.yaml:7:18: machines.f.aptProxy: ${URL_RULE}`,
      `machines.yaml:8:18: machines.g.aptProxy: ${URL_RULE}`,
      `machines.yaml:9:16: machines.h.mirror: ${URL_RULE}`,
    ],
    via: 'plan',
  },
  {
    name: 'enums given metacharacters: distribution, variant, bootstrapper',
    text: yaml('machines:', '  web:', '    distribution: "debian;id"', '    variant: "$(id)"', '    bootstrapper: --help'),
    problems: [
      'machines.yaml:3:19: machines.web.distribution: expected one of debian, ubuntu, got "debian;id"',
      'machines.yaml:4:14: machines.web.variant: expected one of minbase, buildd, important, got "$(id)"',
      'machines.yaml:5:19: machines.web.bootstrapper: expected one of auto, mmdebstrap, debootstrap, got "--help"',
    ],
  },
  {
    name: 'DNS servers with ;, $(...), &&, backticks, IPv6',
    text: yaml('machines:', '  web:', '    dns: ["1.1.1.1;id", "$(id)", "1.1.1.1 && id", "`id`", "::1"]'),
    problems: [
      `machines.yaml:3:11: machines.web.dns[0]: ${IPV4_RULE}`,
      `machines.yaml:3:25: machines.web.dns[1]: ${IPV4_RULE}`,
      `machines.yaml:3:34: machines.web.dns[2]: ${IPV4_RULE}`,
      `machines.yaml:3:51: machines.web.dns[3]: ${IPV4_RULE}`,
      `machines.yaml:3:59: machines.web.dns[4]: ${IPV4_RULE}`,
    ],
  },
  {
    name: 'authorized keys with an options prefix (command="..."), a second line, and no key type',
    text: yaml('machines:', '  web:', `    authorizedKeys: ['command="id" ssh-ed25519 AAAA me', "ssh-ed25519 AAAA a\\nssh-rsa BBBB evil", "$(id) AAAA"]`),
    problems: [
      'machines.yaml:3:22: machines.web.authorizedKeys[0]: expected an OpenSSH public key line',
      'machines.yaml:3:58: machines.web.authorizedKeys[1]: an authorized key must be one line (no newline or NUL)',
      'machines.yaml:3:99: machines.web.authorizedKeys[2]: expected an OpenSSH public key line',
    ],
  },
  {
    name: 'environment values with a carriage return, a newline, a NUL (YAML escapes)',
    text: yaml('machines:', '  web:', '    environment: { A: "x\\ry", B: "x\\ny", C: "x\\0y" }'),
    problems: [
      'machines.yaml:3:23: machines.web.environment.A: an environment value must be one line (no newline or NUL)',
      'machines.yaml:3:34: machines.web.environment.B: an environment value must be one line (no newline or NUL)',
      'machines.yaml:3:45: machines.web.environment.C: an environment value must be one line (no newline or NUL)',
    ],
  },
  {
    name: 'provision: a newline and a NUL in arguments, numbers, a shell string instead of a list, an empty list',
    text: yaml('machines:', '  web:', '    provision: [["sh", "-c", "a\\nb"], ["x\\0"], [1, 2], "rm -rf / && echo", []]'),
    problems: [
      'machines.yaml:3:30: machines.web.provision[0][2]: an argument must be one line (no newline or NUL)',
      'machines.yaml:3:40: machines.web.provision[1][0]: an argument must be one line (no newline or NUL)',
      'machines.yaml:3:49: machines.web.provision[2][0]: expected a string, got a number',
      'machines.yaml:3:52: machines.web.provision[2][1]: expected a string, got a number',
      'machines.yaml:3:56: machines.web.provision[3]: expected a list, got a string',
      'machines.yaml:3:76: machines.web.provision[4]: a provision command needs at least the program name',
    ],
  },

  // --- YAML features ---
  {
    name: 'billion laughs (nested aliases)',
    text: billionLaughs(),
    problems: ['machines.yaml:1:1: YAML: Excessive alias count indicates a resource exhaustion attack (aliases are limited to keep expansion small)'],
    via: 'plan',
  },
  {
    name: 'an alias to an anchor that does not exist',
    text: yaml('machines:', '  web: *nope'),
    problems: ['machines.yaml:1:1: YAML: Unresolved alias (the anchor must be set before the alias): nope (aliases are limited to keep expansion small)'],
  },
  {
    name: 'an alias to its own enclosing mapping (a cycle) is a type error, not a hang',
    text: yaml('machines: &a', '  web: { files: *a }'),
    problems: ['machines.yaml:2:17: machines.web.files: expected a list, got a mapping'],
  },
  {
    name: 'merge keys (<<) are not YAML 1.2: refused, pointing at defaults:',
    text: yaml('machines:', '  web: &b { autostart: true }', '  db:', '    <<: *b', '    hostname: db'),
    problems: ['machines.yaml:4:5: machines.db."<<": merge keys (<<) are not supported; put shared settings under defaults:'],
  },
  // One duplicate per case: with several, the order they are listed in is a known bug (below).
  {
    name: 'duplicate keys: a key in a flow mapping',
    text: yaml('machines:', '  web: { hostname: a, hostname: b }'),
    problems: ['machines.yaml:2:23: duplicate key "hostname" (map keys must be unique)'],
    via: 'plan',
  },
  {
    name: 'duplicate keys: a machine',
    text: yaml('machines:', '  web: {}', '  web: { hostname: b }'),
    problems: ['machines.yaml:3:3: duplicate key "web" (map keys must be unique)'],
    via: 'plan',
  },
  {
    name: 'duplicate keys: the machines section (only the key problem, not the second section\'s bad name)',
    text: yaml('machines:', '  web: {}', 'machines: { Web: {} }'),
    problems: ['machines.yaml:3:1: duplicate key "machines" (map keys must be unique)'],
    via: 'plan',
  },
  {
    name: 'tags: !!js/function, !!python/object/apply and !!binary are never executed or decoded into a value',
    text: yaml(
      'machines:',
      '  web:',
      '    hostname: !!js/function "function () { return process.exit(1) }"',
      '  db:',
      '    hostname: !!python/object/apply:os.system ["id"]',
      '    files: [{ path: /etc/x, content: !!binary aGVsbG8= }]',
    ),
    problems: [
      `machines.yaml:3:29: machines.web.hostname: ${HOSTNAME_RULE}`,
      'machines.yaml:5:47: machines.db.hostname: expected a string, got a list',
      'machines.yaml:6:47: machines.db.files[0].content: expected a string, got a mapping',
    ],
    via: 'plan',
  },
  {
    name: 'tabs used for indentation',
    text: 'machines:\n\tweb: {}\n',
    problems: ['machines.yaml:2:1: YAML syntax: Tabs are not allowed as indentation'],
  },
  {
    name: 'two documents (---)',
    text: yaml('machines: {}', '---', 'machines: { web: {} }'),
    problems: ['machines.yaml:2:1: YAML syntax: Source contains multiple documents; please use YAML.parseAllDocuments()'],
    via: 'plan',
  },
  {
    name: 'a top-level list',
    text: yaml('- machines: {}'),
    problems: ['machines.yaml:1:1: expected a mapping with networks: and machines: at the top'],
    via: 'apply',
  },
  {
    name: 'a raw NUL byte',
    text: 'machines:\n  web:\n    files: [{ path: /etc/x, content: "a\0b" }]\n',
    problems: ['machines.yaml:3:40: file contains a NUL byte'],
  },

  // --- numbers where strings are expected, and numbers out of range ---
  {
    name: 'numbers where strings are expected: suite, hostname, an environment value, a package',
    text: yaml('machines:', '  web:', '    suite: 12', '    hostname: 123', '    environment: { PORT: 8080 }', '    packages: [1]'),
    problems: [
      'machines.yaml:3:12: machines.web.suite: expected a string, got a number',
      'machines.yaml:4:15: machines.web.hostname: expected a string, got a number',
      'machines.yaml:5:26: machines.web.environment.PORT: expected a string, got a number',
      'machines.yaml:6:16: machines.web.packages[0]: expected a string, got a number',
    ],
  },
  {
    name: 'ports: a float, infinity, NaN, negative, huge, a string, zero',
    text: yaml(
      'networks:',
      '  br0: { subnet: 10.0.0.0/24 }',
      'machines:',
      '  web:',
      '    network: { bridge: br0, address: 10.0.0.2 }',
      '    ports:',
      '      - { host: 1.5 }',
      '      - { host: .inf }',
      '      - { host: .nan }',
      '      - { host: -80 }',
      '      - { host: 99999999999999999999999 }',
      '      - { host: "80" }',
      '      - { host: 0, container: -1 }',
    ),
    problems: [
      'machines.yaml:7:17: machines.web.ports[0].host: expected a integer, got a float',
      'machines.yaml:8:17: machines.web.ports[1].host: expected a integer, got a float',
      'machines.yaml:8:17: machines.web.ports[1].host: must be at most 65535',
      'machines.yaml:9:17: machines.web.ports[2].host: expected a number, got a nan',
      'machines.yaml:10:17: machines.web.ports[3].host: must be at least 1',
      'machines.yaml:11:17: machines.web.ports[4].host: must be at most 65535',
      'machines.yaml:12:17: machines.web.ports[5].host: expected a number, got a string',
      'machines.yaml:13:17: machines.web.ports[6].host: must be at least 1',
      'machines.yaml:13:31: machines.web.ports[6].container: must be at least 1',
    ],
    via: 'plan',
  },
  {
    name: 'booleans written as yes, 1 and "true"',
    text: yaml('networks:', '  br0: { subnet: 10.0.0.0/24, nat: yes }', 'machines:', '  a: { autostart: 1 }', '  b: { autostart: "true" }'),
    problems: [
      'machines.yaml:2:36: networks.br0.nat: expected a boolean, got a string',
      'machines.yaml:4:19: machines.a.autostart: expected a boolean, got a number',
      'machines.yaml:5:19: machines.b.autostart: expected a boolean, got a string',
    ],
  },

  // --- IPv4 and subnets ---
  {
    name: 'addresses: leading zeros, 256, three or five parts, spaces, a number, network, broadcast, gateway',
    text: yaml(
      'networks:',
      '  br0: { subnet: 10.0.0.0/24 }',
      'machines:',
      '  a: { network: { bridge: br0, address: 010.0.0.1 } }',
      '  b: { network: { bridge: br0, address: 256.1.1.1 } }',
      '  c: { network: { bridge: br0, address: 1.2.3 } }',
      '  d: { network: { bridge: br0, address: 10.0.0.2.5 } }',
      '  e: { network: { bridge: br0, address: " 10.0.0.3" } }',
      '  f: { network: { bridge: br0, address: 167772162 } }',
      '  g: { network: { bridge: br0, address: 10.0.0.0 } }',
      '  h: { network: { bridge: br0, address: 10.0.0.255 } }',
      '  i: { network: { bridge: br0, address: 10.0.0.1 } }',
    ),
    problems: [
      `machines.yaml:4:41: machines.a.network.address: ${IPV4_RULE}`,
      `machines.yaml:5:41: machines.b.network.address: ${IPV4_RULE}`,
      `machines.yaml:6:41: machines.c.network.address: ${IPV4_RULE}`,
      `machines.yaml:7:41: machines.d.network.address: ${IPV4_RULE}`,
      `machines.yaml:8:41: machines.e.network.address: ${IPV4_RULE}`,
      'machines.yaml:9:41: machines.f.network.address: expected a string, got a number',
      'machines.yaml:10:41: machines.g.network.address: 10.0.0.0 is outside network br0 (10.0.0.0/24) or is its network/broadcast address',
      'machines.yaml:11:41: machines.h.network.address: 10.0.0.255 is outside network br0 (10.0.0.0/24) or is its network/broadcast address',
      "machines.yaml:12:41: machines.i.network.address: 10.0.0.1 is the gateway of network br0 (the host's own address on the bridge)",
    ],
    via: 'plan',
  },
  {
    name: 'subnets: /7, /31, /33, /030, no prefix, no address, two prefixes, a space, IPv6, host bits, 300.x',
    text: yaml(
      'networks:',
      '  a: { subnet: 10.0.0.0/7 }',
      '  b: { subnet: 10.0.0.0/31 }',
      '  c: { subnet: 10.0.0.0/33 }',
      '  d: { subnet: 10.0.0.0/030 }',
      '  e: { subnet: 10.0.0.0/ }',
      '  f: { subnet: /24 }',
      '  g: { subnet: 10.0.0.0/24/24 }',
      '  h: { subnet: 10.0.0.0 /24 }',
      '  i: { subnet: "fd00::/64" }',
      '  j: { subnet: 10.0.0.5/24 }',
      '  k: { subnet: 300.0.0.0/24 }',
      '  l: { subnet: 010.0.0.0/24 }',
      'machines: {}',
    ),
    problems: [
      'machines.yaml:2:16: networks.a.subnet: prefix length must be between /8 and /30',
      'machines.yaml:3:16: networks.b.subnet: prefix length must be between /8 and /30',
      'machines.yaml:4:16: networks.c.subnet: prefix length must be between /8 and /30',
      'machines.yaml:5:16: networks.d.subnet: expected a subnet like 10.77.0.0/24',
      'machines.yaml:6:16: networks.e.subnet: expected a subnet like 10.77.0.0/24',
      'machines.yaml:7:16: networks.f.subnet: expected a subnet like 10.77.0.0/24',
      'machines.yaml:8:16: networks.g.subnet: expected a subnet like 10.77.0.0/24',
      'machines.yaml:9:16: networks.h.subnet: expected a subnet like 10.77.0.0/24',
      'machines.yaml:10:16: networks.i.subnet: expected a subnet like 10.77.0.0/24',
      'machines.yaml:11:16: networks.j.subnet: 10.0.0.5 is not the network address of a /24 (did you mean 10.0.0.0/24?)',
      'machines.yaml:12:16: networks.k.subnet: 300.0.0.0 is not an IPv4 address',
      'machines.yaml:13:16: networks.l.subnet: 010.0.0.0 is not an IPv4 address',
    ],
    via: 'plan',
  },
  {
    name: 'gateways: the network address, the broadcast address, IPv6; overlapping subnets',
    text: yaml(
      'networks:',
      '  br0: { subnet: 10.0.0.0/24, gateway: 10.0.0.0 }',
      '  br1: { subnet: 10.0.1.0/24, gateway: 10.0.1.255 }',
      '  br2: { subnet: 10.0.0.0/16 }',
      '  br3: { subnet: 10.1.0.0/24, gateway: "::1" }',
      'machines: {}',
    ),
    problems: [
      'machines.yaml:2:40: networks.br0.gateway: 10.0.0.0 is not a host address of 10.0.0.0/24',
      'machines.yaml:3:40: networks.br1.gateway: 10.0.1.255 is not a host address of 10.0.1.0/24',
      'machines.yaml:4:18: networks.br2.subnet: overlaps networks br0 (10.0.0.0/24) and br1 (10.0.1.0/24)',
      `machines.yaml:5:40: networks.br3.gateway: ${IPV4_RULE}`,
    ],
  },
];

describe('hostile manifests are refused with every problem located (exit 2)', () => {
  test.each(CASES)('$name', ({ text, problems }) => {
    expectProblems(text, problems);
  });

  const viaCommand = CASES.filter((c) => c.via !== undefined);
  test.each(viaCommand)('$via: $name — exit 2, no command run, nothing written', async ({ via, text, problems }) => {
    await expectRefusedByCommand(via!, text, problems);
  });

  test('the subset run through the commands covers both plan and apply', () => {
    expect(viaCommand.filter((c) => c.via === 'plan').length).toBeGreaterThanOrEqual(10);
    expect(viaCommand.filter((c) => c.via === 'apply').length).toBeGreaterThanOrEqual(4);
  });
});

// A mapping or list used as a key is refused at the key before yaml's toJS, which would stringify
// it and say so through process.emitWarning; the spy asserts that no such warning is printed (and
// keeps one, should it come back, from leaking into the next test's captured stderr).
describe('a mapping or a list used as a machine name', () => {
  const TEXT = yaml('machines:', '  ? { a: 1 }', '  : {}');
  let warnings: jest.SpyInstance;
  beforeEach(() => {
    warnings = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  });
  afterEach(() => warnings.mockRestore());

  test('is refused at the key', () => {
    expectProblems(TEXT, ['machines.yaml:2:5: keys must be plain strings, not lists or mappings']);
    expectProblems(yaml('machines:', '  web: {}', '  ? [a, b]', '  : {}'), ['machines.yaml:3:5: keys must be plain strings, not lists or mappings']);
    expect(warnings).not.toHaveBeenCalled();
  });

  test('prints nothing but the located problem (no Node warning)', async () => {
    await expectRefusedByCommand('plan', TEXT, ['machines.yaml:2:5: keys must be plain strings, not lists or mappings']);
    expect(warnings).not.toHaveBeenCalled();
  });
});

describe('names with control characters are refused at the name and printed JSON-quoted', () => {
  test('a newline, a tab, a NUL, an ESC, DEL and a C1 control in machine names', () => {
    const err = loadError(yaml('machines:', '  "a\\nb": {}', '  "a\\tb": {}', '  "a\\0b": {}', '  "\\e[2J": {}', '  "a\\x7fb": {}', '  "\\x9b2J": {}'));
    expect(err.problems.map((p) => [p.line, p.col, p.path, p.message])).toEqual([
      [2, 3, 'machines."a\\nb"', MACHINE_NAME_RULE],
      [3, 3, 'machines."a\\tb"', MACHINE_NAME_RULE],
      [4, 3, 'machines."a\\u0000b"', MACHINE_NAME_RULE],
      [5, 3, 'machines."\\u001b[2J"', MACHINE_NAME_RULE],
      [6, 3, 'machines."a\\u007fb"', MACHINE_NAME_RULE],
      [7, 3, 'machines."\\u009b2J"', MACHINE_NAME_RULE],
    ]);
    expect(err.exitCode).toBe(2);
  });
});

// Bounds on the loader's WORK, counted by test/helpers/work-meter.ts (function entries and loop
// iterations in src/manifest/, plus every call it makes into yaml), never timed: a clock bound
// failed on a busy 2-core CI machine. Real timings are in `npm run bench -- --loader`.
describe('loading is bounded in work (counted, not timed)', () => {
  let meter: WorkMeter;
  beforeAll(() => {
    meter = createWorkMeter();
  });

  const DEPTH = 1000;
  const NESTED: [string, string][] = [
    ['flow sequences', `machines:\n  web:\n    files: ${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}\n`],
    ['flow mappings', `machines: ${'{a: '.repeat(DEPTH)}1${'}'.repeat(DEPTH)}\n`],
  ];
  /**
   * Billion laughs costs one step per character (the text is searched for a NUL once), about 400
   * in all; walking the 9^9 strings its aliases expand to would cost far more than this.
   */
  const SMALL_WORK = 1000;

  // yaml reports the stack overflow as a syntax error; the column is wherever the stack ran out.
  // These run first in this block: whether yaml's recursion overflows at 1000 levels depends on
  // how much stack its frames take, and the metered runs below warm yaml's code up (smaller,
  // optimized frames). Their work is bounded further down.
  // 1000 levels may or may not run yaml's parser out of stack; 100 never does. Either way the
  // loader reports the same one problem, so the outcome does not depend on how warm yaml's code is.
  test.each([
    ['sequences, 100 deep', `machines:\n  web:\n    files: ${'['.repeat(100)}${']'.repeat(100)}\n`, 3],
    ['mappings, 100 deep', `machines: ${'{a: '.repeat(100)}1${'}'.repeat(100)}\n`, 1],
    ['mappings, one level too deep', `machines: ${'{a: '.repeat(MAX_DEPTH)}1${'}'.repeat(MAX_DEPTH)}\n`, 1],
  ])('nesting %s is refused before anything walks it', (_name, text, line) => {
    expect(loadError(text).problems.map((p) => [p.line, p.path, p.message])).toEqual([[line, '', `YAML: nested more than ${MAX_DEPTH} levels deep (a manifest needs fewer than 10)`]]);
  });

  test('nesting just within the limit is not refused for its depth', () => {
    const err = loadError(`machines: ${'{a: '.repeat(MAX_DEPTH - 1)}1${'}'.repeat(MAX_DEPTH - 1)}\n`);
    expect(err.problems.map((p) => p.message)).not.toContain(`YAML: nested more than ${MAX_DEPTH} levels deep (a manifest needs fewer than 10)`);
  });

  test.each(NESTED)('nesting 1000 %s deep is a ManifestError', (_name, text) => {
    const err = loadError(text);
    expect(err.exitCode).toBe(2);
    expect(err.problems.map((p) => [p.line, p.path, p.message])).toEqual([[text.startsWith('machines:\n') ? 3 : 1, '', `YAML: nested more than ${MAX_DEPTH} levels deep (a manifest needs fewer than 10)`]]);
  });

  test('billion laughs fails after a constant amount of work (the aliases are never expanded by the loader)', () => {
    const err = loadError(billionLaughs());
    expect(err.exitCode).toBe(2);
    const work = meter.measure(billionLaughs());
    expect((work.error as ManifestError).problems).toEqual(err.problems);
    expect(work.total).toBeLessThanOrEqual(SMALL_WORK);
  });

  test('a 2 MB manifest fails before parsing: yaml is never called', () => {
    const text = yaml('machines:', '  web:', `    files: [{ path: /x, content: "${TWO_MB}" }]`);
    expect(loadError(text).problems).toHaveLength(1);
    const work = meter.measure(text);
    expect((work.error as ManifestError).problems).toHaveLength(1);
    expect(work.yamlCalls).toEqual({});
    expect(work.steps).toBeLessThanOrEqual(10);
  });

  // Whether or not yaml's stack runs out (above), the loader's work is one step per character
  // (the search for a NUL) and a few per level: checking keys visits each nested mapping once.
  // Locating anything by walking from the top once per level would cost about DEPTH^2 / 2 = 500,000.
  test.each(NESTED)('nesting 1000 %s deep costs at most 10 counted steps per level', (_name, text) => {
    const work = meter.measure(text);
    expect(work.error).toBeInstanceOf(ManifestError);
    expect(work.total).toBeLessThanOrEqual(text.length + 10 * DEPTH);
  });

  // Keys are checked in one pass (yaml's own duplicate check is quadratic), and only the first
  // MAX_PROBLEMS problems are located and listed, then one line counting the rest. Each case below
  // asserts the exact output at 4,000, then that 4,000 costs at most 5 times the work of 1,000
  // (MAX_GROWTH: linear work grows 4x, a quadratic path up to 16x). The metered copy must report
  // exactly what the real loader reports, so the meter measures the code under test.
  const badMachineNames = (n: number) => yaml('machines:', ...Array.from({ length: n }, (_, i) => `  M${i}: {}`));
  const copiesOfOneKey = (n: number) => yaml('machines:', ...Array.from({ length: n }, () => '  web: {}'));
  const unknownKeys = (n: number) => yaml('machines:', '  web:', ...Array.from({ length: n }, (_, i) => `    k${i}: 1`));

  test('4,000 machine names that break the naming rule: the first 50, then a count of the rest, in linear work', () => {
    const text = badMachineNames(4000);
    expect(text.length).toBeLessThan(50 * 1024);
    const err = loadError(text);
    expect(MAX_PROBLEMS).toBe(50);
    expect(err.problems.map(formatProblem)).toEqual([
      ...Array.from({ length: 50 }, (_, i) => `machines.yaml:${i + 2}:3: machines.M${i}: ${MACHINE_NAME_RULE}`),
      'machines.yaml:51:3: ... and 3950 more problem(s) not shown',
    ]);
    const growth = expectLinearWork(meter, badMachineNames);
    expect((growth.at4x.error as ManifestError).problems).toEqual(err.problems);
  });

  test('4,000 copies of one key: the first 50 duplicates, then a count of the rest, in linear work', () => {
    const err = loadError(copiesOfOneKey(4000));
    expect(err.problems.map(formatProblem)).toEqual([
      ...Array.from({ length: 50 }, (_, i) => `machines.yaml:${i + 3}:3: duplicate key "web" (map keys must be unique)`),
      'machines.yaml:52:3: ... and 3949 more problem(s) not shown',
    ]);
    const growth = expectLinearWork(meter, copiesOfOneKey);
    expect((growth.at4x.error as ManifestError).problems).toEqual(err.problems);
    // yaml's own check compares each key with every earlier one, inside yaml where the meter does
    // not count: it must stay off.
    expect(growth.at4x.parseOptions).toMatchObject({ uniqueKeys: false });
  });

  // Regression test for a fixed bug (it was in hang, wrong count): parseManifest (src/manifest/load.ts) limits the zod *issues* to
  // MAX_PROBLEMS, but one `unrecognized_keys` issue holds every unknown key of a mapping, and
  // locateIssue turns each into a problem located with positionOf's linear `items.find` (and a
  // suggest() edit distance per key): O(n^2) in the number of unknown keys. Measured with plain
  // node: 16,000 unknown keys (213 KB) take ~2.8 s, 60,000 (830 KB) ~30 s. `total` counts the
  // one issue, not its keys, so the summary line says "... and -49 more problem(s) not shown".
  // Expected: bounded like the other problems, 50 listed and "... and 3950 more".
  test('4,000 unknown keys in one machine: the first 50, then a count of the rest, in linear work', () => {
    const err = loadError(unknownKeys(4000));
    expect(err.problems.map(formatProblem)).toEqual([
      ...Array.from({ length: 50 }, (_, i) => `machines.yaml:${i + 3}:5: machines.web.k${i}: unknown key; expected one of: ${MACHINE_KEYS}`),
      'machines.yaml:52:5: ... and 3950 more problem(s) not shown',
    ]);
    const growth = expectLinearWork(meter, unknownKeys);
    expect((growth.at4x.error as ManifestError).problems).toEqual(err.problems);
  });

  // Overlaps are found through the containment of CIDR blocks, not by comparing every pair, and
  // each network is reported once (naming the first three it overlaps): 4,000 networks with one
  // subnet took 14 s and 2.4 GB when every pair was compared and reported.
  test('networks that all overlap: linear work, one problem per network', () => {
    const overlapping = (n: number) => yaml('networks:', ...Array.from({ length: n }, (_, i) => `  n${i}: { subnet: 10.0.0.0/24 }`), 'machines: {}');
    expectLinearWork(meter, overlapping, 100);
    const err = loadError(overlapping(400));
    expect(err.problems.map(formatProblem).slice(0, 4)).toEqual([
      'machines.yaml:3:17: networks.n1.subnet: overlaps network n0 (10.0.0.0/24)',
      'machines.yaml:4:17: networks.n2.subnet: overlaps networks n0 (10.0.0.0/24) and n1 (10.0.0.0/24)',
      'machines.yaml:5:17: networks.n3.subnet: overlaps networks n0 (10.0.0.0/24), n1 (10.0.0.0/24) and n2 (10.0.0.0/24)',
      'machines.yaml:6:17: networks.n4.subnet: overlaps networks n0 (10.0.0.0/24), n1 (10.0.0.0/24), n2 (10.0.0.0/24) and others',
    ]);
    expect(err.problems[err.problems.length - 1].message).toBe('... and 349 more problem(s) not shown');
  });

  test('machines naming an undeclared network among many: linear work, at most ten names in each message', () => {
    const undeclared = (n: number) =>
      yaml('networks:', ...Array.from({ length: n }, (_, i) => `  n${i}: { subnet: 10.${Math.floor(i / 256)}.${i % 256}.0/24 }`), 'machines:', ...Array.from({ length: n }, (_, i) => `  m${i}: { network: { bridge: nope, address: 10.0.0.2 } }`));
    expectLinearWork(meter, undeclared, 100);
    expect(loadError(undeclared(20)).problems[0].message).toBe('network "nope" is not declared under networks: (declared: n0, n1, n2, n3, n4, n5, n6, n7, n8, n9 and 10 more)');
  });
});

describe('where a value is accepted, it arrives verbatim and never in a shell', () => {
  const NASTY = '$(rm -rf /) `reboot`; ls | sh && id > /dev/null \' " \\ \t % ${HOME} \u202e';
  const MANIFEST = yaml(
    'machines:',
    '  web:',
    `    environment: { EVIL: ${JSON.stringify(NASTY)}, PLAIN: ok }`,
    `    authorizedKeys: [${JSON.stringify(`ssh-ed25519 AAAAC3Nz ${NASTY}`)}]`,
    '    files:',
    `      - { path: /etc/evil.sh, content: ${JSON.stringify(`#!/bin/sh\n${NASTY}\r\nline2\n`)}, mode: "0755" }`,
    '    provision:',
    `      - [sh, -c, ${JSON.stringify(`echo ${NASTY}`)}]`,
    '      - ["$(rm -rf /)"]',
    '      - [--help]',
    '      - [-oFoo, "a b", "&&", ";", "|"]',
  );

  test('file content, an environment value and a key comment are rendered verbatim', () => {
    const desired = renderDesiredState(parseManifest(FILE, MANIFEST));
    const entries = Object.fromEntries(desired.machines[0].rootfsEntries.map((e) => [e.path, e]));
    expect(entries['/etc/evil.sh']).toEqual({
      kind: 'file',
      path: '/etc/evil.sh',
      hostPath: '/var/lib/machines/web/etc/evil.sh',
      content: `#!/bin/sh\n${NASTY}\r\nline2\n`,
      mode: 0o755,
      restart: false,
      inRootfs: true,
    });
    const header = '# Generated by nspawnctl from machines.yaml for machine web.\n# Do not edit: nspawnctl apply rewrites this file; change the manifest instead.\n';
    // /etc/environment: one quoted line per variable.
    expect(entries['/etc/environment'].kind === 'file' && entries['/etc/environment'].content).toBe(`${header}\nEVIL=${JSON.stringify(NASTY)}\nPLAIN="ok"\n`);
    // system.conf.d: each assignment one quoted value, so systemd does not split it at spaces.
    // (This asserts the text written. Recent systemd also expands %-specifiers in a manager's
    // DefaultEnvironment=, which this rendering does not escape; see the report.)
    expect(entries['/etc/systemd/system.conf.d/50-nspawnctl-environment.conf'].kind === 'file' && entries['/etc/systemd/system.conf.d/50-nspawnctl-environment.conf'].content).toBe(
      `${header}\n[Manager]\nDefaultEnvironment=${JSON.stringify(`EVIL=${NASTY}`)}\nDefaultEnvironment="PLAIN=ok"\n`,
    );
    expect(entries['/root/.ssh/authorized_keys'].kind === 'file' && entries['/root/.ssh/authorized_keys'].content).toBe(`${header}\nssh-ed25519 AAAAC3Nz ${NASTY}\n`);
  });

  test('apply passes each provision argument as one argv element after --, runs no shell on the host, and writes the content verbatim', async () => {
    const host = makeBootedHost(new FakeHost({ inputs: { [FILE]: MANIFEST } }));
    simulateSystemd(host);
    // One machine at a time, bootstrapped into its own staging directory (no base-image cache).
    const r = await runApply(host, [FILE, '--start-timeout', '5', '--no-cache', '--jobs', '1']);
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    const staging = '/var/lib/machines/.nspawnctl-web.staging';
    const nspawn = (...command: string[]) => [
      'systemd-nspawn',
      '--quiet',
      '--register=no',
      '--settings=no',
      '--console=pipe',
      '--resolv-conf=bind-host',
      '--timezone=off',
      '--machine=web',
      `--directory=${staging}`,
      '--setenv=DEBIAN_FRONTEND=noninteractive',
      '--',
      ...command,
    ];
    expect(host.runner.argvs().filter((a) => a[0] === 'systemd-nspawn')).toEqual([
      nspawn('sh', '-c', `echo ${NASTY}`),
      nspawn('$(rm -rf /)'),
      nspawn('--help'),
      nspawn('-oFoo', 'a b', '&&', ';', '|'),
    ]);
    expect(host.runner.argvs().filter((a) => a[0] === 'mmdebstrap')).toEqual([
      ['mmdebstrap', '--variant=minbase', '--include=dbus,systemd,systemd-sysv', '--dpkgopt=force-unsafe-io', 'bookworm', staging, 'http://deb.debian.org/debian'],
    ]);
    host.assertNoUnmatchedCalls();
    // No host shell anywhere: programs are run by name with an argument array, and the manifest's
    // strings appear only in the provision calls above.
    for (const call of host.runner.calls) {
      expect(['sh', 'bash', 'dash', '/bin/sh', '/bin/bash']).not.toContain(call.file);
      expect(Object.keys(call.options ?? {})).not.toContain('shell');
      if (call.file !== 'systemd-nspawn') expect(call.args.join(' ')).not.toMatch(/rm -rf|reboot|-oFoo/);
    }
    expect(host.fs.nodes.get('/var/lib/machines/web/etc/evil.sh')).toEqual({ type: 'file', content: `#!/bin/sh\n${NASTY}\r\nline2\n`, mode: 0o755, uid: 0, gid: 0 });
    expect(host.fs.nodes.get('/var/lib/machines/web/etc/environment')).toMatchObject({ type: 'file', content: expect.stringContaining(`\nEVIL=${JSON.stringify(NASTY)}\n`) });
  });

  test('a 900 KB file content (under the 1 MiB limit) arrives verbatim', () => {
    const content = `${'x'.repeat(64)}\n`.repeat(900 * 16);
    const m = parseManifest(FILE, yaml('machines:', '  web:', `    files: [{ path: /srv/big, content: ${JSON.stringify(content)} }]`));
    const entry = renderDesiredState(m).machines[0].rootfsEntries.find((e) => e.path === '/srv/big');
    expect(entry?.kind === 'file' && entry.content === content).toBe(true);
  });

  test('boundaries that are accepted: a 12-character machine name, a 15-character network name, a 1024-character path', () => {
    const path = `/${'p'.repeat(1023)}`;
    const m = parseManifest(FILE, yaml('networks:', '  abcdefghijklmno: { subnet: 10.0.0.0/30 }', 'machines:', '  abcdefghijkl:', '    network: { bridge: abcdefghijklmno, address: 10.0.0.2 }', `    files: [{ path: ${path}, content: x }]`));
    expect(Object.keys(m.networks)).toEqual(['abcdefghijklmno']);
    expect(m.machines.abcdefghijkl.files).toEqual([{ path, content: 'x', mode: 0o644 }]);
    expect(m.machines.abcdefghijkl.network).toEqual({ bridge: 'abcdefghijklmno', address: '10.0.0.2', prefix: 30, gateway: '10.0.0.1', allow: [] });
  });

  test('names that are Object.prototype properties are ordinary own keys: a machine and a network named constructor', () => {
    const plan = planOf(yaml('networks:', '  constructor: { subnet: 10.0.0.0/24 }', 'machines:', '  constructor:', '    network: { bridge: constructor, address: 10.0.0.2 }'));
    expect(plan.conflicts).toEqual([]);
    expect(plan.steps.map((s) => s.kind)).toEqual(['write-record', 'write-file', 'write-file', 'reload-networkd', 'create-machine', 'write-file', 'start-machine']);
  });

  test('tags that yaml does not know are dropped and the text is kept as a plain string, never evaluated', () => {
    const m = parseManifest(FILE, yaml('machines:', '  web:', '    files:', '      - { path: /etc/a, content: !!js/function "function () { throw 1 }" }', '      - { path: /etc/b, content: !custom "text" }'));
    expect(m.machines.web.files.map((f) => f.content)).toEqual(['function () { throw 1 }', 'text']);
  });

  test('YAML anchors and aliases used normally still work', () => {
    const m = parseManifest(FILE, yaml('defaults: { packages: &pkgs [curl, htop] }', 'machines:', '  web: &m { autostart: true, packages: *pkgs }', '  db: *m'));
    expect(m.machines.db.autostart).toBe(true);
    expect(m.machines.web.packages).toEqual(['curl', 'dbus', 'htop', 'systemd', 'systemd-sysv']);
    expect(m.machines.db.packages).toEqual(m.machines.web.packages);
  });
});

describe('encodings and line ends', () => {
  const VALID = yaml(
    '# a comment',
    'defaults:',
    '  environment: { TZ: UTC }',
    'networks:',
    '  br0:',
    '    subnet: 10.0.0.0/24',
    'machines:',
    '  web:',
    '    network: { bridge: br0, address: 10.0.0.2 }',
    '    files:',
    '      - path: /etc/motd',
    '        content: |',
    '          hello',
    '          world',
    '      - { path: /etc/quoted, content: "a\\r\\nb" }',
  );
  const crlf = (text: string) => text.replace(/\n/g, '\r\n');

  test('a valid manifest with CRLF line ends loads and plans exactly like the LF one', () => {
    expect(crlf(VALID)).toContain('\r\n');
    expect(parseManifest(FILE, crlf(VALID))).toEqual(parseManifest(FILE, VALID));
    expect(planOf(crlf(VALID))).toEqual(planOf(VALID));
    // Line breaks inside a block scalar are LF; an explicit \r\n escape is kept.
    expect(parseManifest(FILE, crlf(VALID)).machines.web.files.map((f) => f.content)).toEqual(['hello\nworld\n', 'a\r\nb']);
  });

  test('plan --json gives the same output for the CRLF and the LF manifest', async () => {
    const outputs: string[] = [];
    for (const text of [VALID, crlf(VALID)]) {
      const host = freshBootedHost(text);
      const r = await runPlan(host, [FILE, '--json']);
      expect(r.exitCode).toBe(0);
      expect(host.fs.changes).toEqual([]);
      outputs.push(r.stdout.replace(/"created": "[^"]*"/g, '"created": "NOW"'));
    }
    expect(outputs[1]).toBe(outputs[0]);
  });

  test('CRLF does not move problem positions', () => {
    const bad = yaml('machines:', '  web:', '    hostnme: x', '    dns: [1.2.3]');
    const expected = [
      `machines.yaml:3:5: machines.web.hostnme: unknown key (did you mean hostname?); expected one of: ${MACHINE_KEYS}`,
      `machines.yaml:4:11: machines.web.dns[0]: ${IPV4_RULE}`,
    ];
    expectProblems(bad, expected);
    expectProblems(crlf(bad), expected);
  });

  test('a UTF-8 byte order mark: a valid manifest loads the same, and positions after line 1 are unchanged', () => {
    expect(parseManifest(FILE, `\uFEFF${VALID}`)).toEqual(parseManifest(FILE, VALID));
    expectProblems(`\uFEFF${yaml('machines:', '  Web: {}')}`, [`machines.yaml:2:3: machines.Web: ${MACHINE_NAME_RULE}`]);
  });

  describe('bytes that are not UTF-8 are refused by the real host when reading the file', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'nspawnctl-hostile-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const readBytes = async (name: string, bytes: Buffer): Promise<unknown> => {
      const file = join(dir, name);
      writeFileSync(file, bytes);
      return createRealHost().readInput(file, MAX_MANIFEST_BYTES).then(
        () => undefined,
        (e: unknown) => e,
      );
    };

    test.each([
      ['a Latin-1 é on line 1', Buffer.concat([Buffer.from('# caf'), Buffer.from([0xe9]), Buffer.from('\nmachines: {}\n')]), 1, 6, 'byte 0xe9 at offset 5'],
      ['a two-byte overlong encoding of "/" (0xc0 0xaf)', Buffer.concat([Buffer.from('machines:\n  web:\n    files: [{ path: /etc'), Buffer.from([0xc0, 0xaf]), Buffer.from('x, content: a }]\n')]), 3, 25, 'byte 0xc0 at offset 41'],
      ['a lone continuation byte', Buffer.concat([Buffer.from('machines:\n  web: {}\n# '), Buffer.from([0x80]), Buffer.from('\n')]), 3, 3, 'byte 0x80 at offset 22'],
      ['a sequence cut off at the end of the file', Buffer.concat([Buffer.from('machines: {}\n# '), Buffer.from([0xe2, 0x82])]), 2, 3, 'byte 0xe2 at offset 15'],
      ['UTF-16LE text', Buffer.from('\uFEFFmachines: {}\n', 'utf16le'), 1, 1, 'byte 0xff at offset 0'],
    ])('%s', async (name, bytes, line, col, what) => {
      const file = join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
      const err = await readBytes(`${name.replace(/\W+/g, '-')}.yaml`, bytes);
      expect(err).toBeInstanceOf(ManifestError);
      expect((err as ManifestError).exitCode).toBe(2);
      expect((err as ManifestError).message).toBe(`${file}:${line}:${col}: file is not valid UTF-8 (${what})`);
    });

    // Decoded, these give several U+FFFD each; firstInvalidUtf8 reports them at their first byte.
    test.each([
      ['an encoded UTF-16 surrogate (0xed 0xa0 0x80)', [0xed, 0xa0, 0x80], 'byte 0xed at offset 15'],
      ['a three-byte overlong form (0xe0 0x80 0xaf)', [0xe0, 0x80, 0xaf], 'byte 0xe0 at offset 15'],
      ['a four-byte overlong form (0xf0 0x80 0x80 0xaf)', [0xf0, 0x80, 0x80, 0xaf], 'byte 0xf0 at offset 15'],
      ['a code point above U+10FFFF (0xf4 0x90 0x80 0x80)', [0xf4, 0x90, 0x80, 0x80], 'byte 0xf4 at offset 15'],
    ])('%s is a located ManifestError', async (name, bytes, what) => {
      const base = `${String(name).replace(/\W+/g, '-')}.yaml`;
      const err = await readBytes(base, Buffer.concat([Buffer.from('machines: {}\n# '), Buffer.from(bytes as number[]), Buffer.from('\n')]));
      expect(err).toBeInstanceOf(ManifestError);
      expect((err as ManifestError).message).toBe(`${join(dir, base)}:2:3: file is not valid UTF-8 (${what})`);
    });

    test('a file that is valid UTF-8 with a BOM and CRLF is read unchanged', async () => {
      const text = `\uFEFF${VALID.replace(/\n/g, '\r\n')}`;
      const file = join(dir, 'bom-crlf.yaml');
      writeFileSync(file, text, 'utf8');
      expect(await createRealHost().readInput(file, MAX_MANIFEST_BYTES)).toBe(text);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Bugs these tests found, now fixed: each asserts the correct behaviour.
// ---------------------------------------------------------------------------------------------
describe('fixed bugs', () => {
  // Object.prototype members ("constructor", "toString", "__proto__", "hasOwnProperty") are not
  // declared networks (looked up with hasOwnProperty), so resolveManifest never reads a missing one.
  test.each(['constructor', 'toString', '__proto__', 'hasOwnProperty'])('network: { bridge: %s } is an undeclared bridge, not a TypeError', (bridge) => {
    expectProblems(yaml('machines:', '  web:', `    network: { bridge: ${bridge}, address: 10.0.0.2 }`), [
      `machines.yaml:3:24: machines.web.network.bridge: network "${bridge}" is not declared under networks: (none is declared)`,
    ]);
  });

  test('plan with network: { bridge: constructor } exits 2 with the located problem, not a stack trace', async () => {
    await expectRefusedByCommand('plan', yaml('networks:', '  br0: { subnet: 10.0.0.0/24 }', 'machines:', '  web:', '    network: { bridge: constructor, address: 10.0.0.2 }'), [
      'machines.yaml:5:24: machines.web.network.bridge: network "constructor" is not declared under networks: (declared: br0)',
    ]);
  });

  // zod's z.record skips the key "__proto__" when it builds its result; the schema refuses the
  // name instead of letting the variable vanish.
  test('an environment variable named __proto__ is refused at the name, not silently dropped', () => {
    expectProblems(yaml('machines:', '  web:', '    environment: { __proto__: x, A: b }'), [`machines.yaml:3:20: machines.web.environment.__proto__: ${ENV_NAME_RULE}`]);
  });

  // File paths are compared as strings (reserved paths, "listed twice") but joined onto the rootfs
  // with posix.join, which normalizes "//" and a trailing "/": so there is one spelling per path.
  test.each([
    ['//etc/hostname', yaml('machines:', '  web:', '    files: [{ path: //etc/hostname, content: evil }]'), 3, 21, 'machines.web.files[0].path'],
    ['/root//.ssh/authorized_keys', yaml('machines:', '  web:', '    files: [{ path: /root//.ssh/authorized_keys, content: evil }]'), 3, 21, 'machines.web.files[0].path'],
    ['/etc//motd after /etc/motd', yaml('machines:', '  web:', '    files:', '      - { path: /etc/motd, content: a }', '      - { path: /etc//motd, content: b }'), 5, 17, 'machines.web.files[1].path'],
    ['/etc/motd/ after /etc/motd', yaml('machines:', '  web:', '    files:', '      - { path: /etc/motd, content: a }', '      - { path: /etc/motd/, content: b }'), 5, 17, 'machines.web.files[1].path'],
    ['/ (the machine root itself)', yaml('machines:', '  web:', '    files: [{ path: /, content: x }]'), 3, 21, 'machines.web.files[0].path'],
  ])('file path %s is refused', (_name, text, line, col, path) => {
    const err = loadError(text);
    expect(err.problems.map((p) => [p.line, p.col, p.path, p.message])).toEqual([[line, col, path, SINGLE_SPELLING]]);
  });

  test.each([
    ['/srv//www', '/srv//www'],
    ['/srv/www/:/var/www', '/srv/www/'],
    ['/srv/www:/', '/'],
  ])('bind %s is refused at the bind, naming %s', (bind, side) => {
    expectProblems(yaml('machines:', '  web:', `    bind: ["${bind}"]`), [`machines.yaml:3:12: machines.web.bind[0]: ${JSON.stringify(side)}: ${SINGLE_SPELLING}`]);
  });

  // renderHeader puts the manifest's file name into "# Generated by nspawnctl from {{source}} ...";
  // every character outside [A-Za-z0-9._+@-] becomes "_", so the header stays comment lines.
  test('a manifest file name with newlines cannot add lines to generated files', () => {
    const name = 'x\n[Exec]\nPrivileged=yes\n#.yaml';
    const desired = renderDesiredState(parseManifest(name, yaml('networks:', '  br0: { subnet: 10.0.0.0/24 }', 'machines:', '  web:', '    network: { bridge: br0, address: 10.0.0.2 }')));
    const files = [...desired.networks.flatMap((n) => n.entries), ...desired.machines.flatMap((m) => [...m.hostEntries, ...m.rootfsEntries])];
    // Only files that carry the generated header (/etc/hostname, for one, has none).
    const withHeader = files.filter((f) => f.kind === 'file' && /^(#|\/\/) Generated by nspawnctl/.test(f.content));
    expect(withHeader.map((f) => f.path)).toContain('/etc/systemd/nspawn/web.nspawn');
    for (const f of withHeader) {
      if (f.kind !== 'file') continue;
      const header = f.content.split('\n\n')[0];
      expect({ path: f.path, lines: header.split('\n').filter((l) => !l.startsWith('#') && !l.startsWith('//')) }).toEqual({ path: f.path, lines: [] });
    }
    const nspawn = withHeader.find((f) => f.path === '/etc/systemd/nspawn/web.nspawn');
    expect(nspawn?.kind === 'file' && nspawn.content.split('\n')[0]).toBe('# Generated by nspawnctl from x__Exec__Privileged_yes__.yaml for machine web.');
  });

  test.each([
    ['/srv/conf/My-Machines_v2.0+x@h.yaml', 'My-Machines_v2.0+x@h.yaml'],
    ['my machines.yaml', 'my machines.yaml'],
    ['caf\u00e9.yaml', 'caf_.yaml'],
    ['a\u001b[31m.yaml', 'a__31m.yaml'],
  ])('the header names %j as %s (the base name; characters outside A-Z a-z 0-9 . _ + @ - and space become _)', (file, shown) => {
    const desired = renderDesiredState(parseManifest(file, yaml('machines:', '  web: {}')));
    const nspawn = desired.machines[0].hostEntries.find((e) => e.path === '/etc/systemd/nspawn/web.nspawn');
    expect(nspawn?.kind === 'file' && nspawn.content.split('\n')[0]).toBe(`# Generated by nspawnctl from ${shown} for machine web.`);
  });

  // Key segments that are not plain are JSON-quoted (C1 controls escaped too), so a name cannot
  // split a problem over two lines, forge a "FILE:LINE:COL:" line or reach the terminal raw.
  test('every printed problem is one line without control characters', () => {
    const err = loadError(yaml('machines:', '  "a\\nmachines.yaml:1:1: all good": {}', '  "\\e[2J\\e[31m": {}', '  "a\\rb": {}', '  "\\x9b2J": {}'));
    expect(err.problems).toHaveLength(4);
    for (const p of err.problems) expect(formatProblem(p)).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(err.message.split('\n')).toHaveLength(4);
  });

  // An unquoted `mode: 0644` is a YAML number (644): the message says to quote it.
  test('mode: 0644 unquoted says to quote it', () => {
    const err = loadError(yaml('machines:', '  web:', '    files: [{ path: /etc/x, content: a, mode: 0644 }]'));
    expect(err.problems.map((p) => [p.line, p.col, p.path, p.message])).toEqual([
      [3, 47, 'machines.web.files[0].mode', 'expected an octal mode string like "0644": quote it in YAML (an unquoted 0644 is a number)'],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Bugs. Each test asserts the correct behaviour and is expected to fail until src/ is fixed.
// ---------------------------------------------------------------------------------------------
describe('formerly known bugs, now fixed', () => {
  // Regression test for a fixed bug (it was in order): the key check (checkKeys, src/manifest/load.ts) lists its problems in the order
  // yaml's visit() meets the mappings, the enclosing mapping before the ones inside it, and
  // parseManifest throws them without sortProblems; every other list of problems (and yaml's own
  // duplicate-key errors before) is in file order. Here: 4:1, 3:3, 2:23.
  test('several duplicate keys are listed in file order', () => {
    expectProblems(yaml('machines:', '  web: { hostname: a, hostname: b }', '  web: {}', 'machines: {}'), [
      'machines.yaml:2:23: duplicate key "hostname" (map keys must be unique)',
      'machines.yaml:3:3: duplicate key "web" (map keys must be unique)',
      'machines.yaml:4:1: duplicate key "machines" (map keys must be unique)',
    ]);
  });

  // Regression test for a fixed bug (it was in terminal/log injection): formatPath quotes key segments, but messages that name a
  // value or another key still print it raw: crossFieldIssues (src/manifest/schema.ts) says
  // `network "${bridge}" is not declared` (the bridge value as written) and `... is already used
  // by machine ${name}` (the other machine's name), and checkKeys' `duplicate key ${JSON.stringify(name)}`
  // leaves C1 controls (U+0080-U+009F) unescaped. A newline there splits a problem over two lines;
  // ESC or CSI reaches the terminal. Expected: one line per problem, without control characters.
  test.each([
    ['an undeclared bridge with a newline and an ESC', yaml('machines:', '  web:', '    network: { bridge: "a\\nb\\e[2J", address: 10.0.0.2 }')],
    [
      'an address already used by a machine whose name holds a newline',
      yaml('networks:', '  br0: { subnet: 10.0.0.0/24 }', 'machines:', '  "a\\nb":', '    network: { bridge: br0, address: 10.0.0.2 }', '  web:', '    network: { bridge: br0, address: 10.0.0.2 }'),
    ],
    ['a duplicate key with a C1 control (CSI)', yaml('machines:', '  "\\x9b2J": {}', '  "\\x9b2J": {}')],
  ])('%s: every printed problem is one line without control characters', (_name, text) => {
    const err = loadError(text);
    for (const p of err.problems) expect(formatProblem(p)).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(err.message.split('\n')).toHaveLength(err.problems.length);
  });
});

describe('mode written as a YAML number', () => {
  test('mode: 0644 and mode: 0o644 unquoted are refused at the mode (exit 2)', () => {
    for (const mode of ['0644', '0o644', '644']) {
      const err = loadError(yaml('machines:', '  web:', `    files: [{ path: /etc/x, content: a, mode: ${mode} }]`));
      expect(err.exitCode).toBe(2);
      expect(err.problems.map((p) => [p.line, p.col, p.path])).toEqual([[3, 47, 'machines.web.files[0].mode']]);
    }
  });
});

describe('empty, non-mapping and scalar documents', () => {
  test.each([
    ['an empty file', ''],
    ['only a document start', '---\n'],
    ['only a document end', '...\n'],
    ['only comments', '# nothing\n# here\n'],
    ['only blank lines and whitespace', '   \n\n\t\n'],
    ['null', 'null\n'],
    ['~', '~\n'],
  ])('%s: the manifest is empty', (_name, text) => {
    expectProblems(text, ['machines.yaml:1:1: the manifest is empty; expected at least a machines: section']);
  });

  test.each([
    ['a scalar', 'hello\n'],
    ['a number', '42\n'],
    ['a boolean', 'true\n'],
    ['a flow list', '[machines]\n'],
  ])('%s at the top: expected a mapping', (_name, text) => {
    expectProblems(text, ['machines.yaml:1:1: expected a mapping with networks: and machines: at the top']);
  });
});
