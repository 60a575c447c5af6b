// The JSON Schema and the loader agree wherever a JSON Schema can decide: types, required and
// unknown keys, enums, names, patterns, ranges. Both accept, or both reject at the same key.
// Where only the loader can decide (rules across keys, address arithmetic, the host's syscall
// list), the schema accepts and the loader rejects, by design: LOADER_ONLY lists those rules, and
// nothing else may separate the two, which the property test at the end checks on mutated
// manifests. The schema is never stricter than the loader: an editor must not flag a manifest
// that loads. What the loader checks on the text before it has data (size, NUL bytes, nesting,
// duplicate and non-string keys, aliases) is outside any JSON Schema; editors' YAML parsers
// report duplicate keys themselves.
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { KnownSyscalls } from '../../src/manifest/schema';
import { yaml } from '../hostile/hostile-helpers';
import { compileSchema, docsYamlBlocks, judge, MODELINE, printed, REPO } from '../helpers/json-schema';
import { MACHINES_YAML } from '../helpers/machine-specs';

const validate = compileSchema();
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = (string | number)[];

const FIXTURES = join(REPO, 'test', 'render', 'fixtures');
const read = (...parts: string[]) => readFileSync(join(REPO, ...parts), 'utf8');

/** The valid manifests of the other tests and of the docs, read where they are. */
const VALID: [string, string][] = [
  ['machines.example.yaml', read('machines.example.yaml')],
  ...readdirSync(FIXTURES, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d): [string, string] => [`test/render/fixtures/${d.name}`, read('test', 'render', 'fixtures', d.name, 'machines.yaml')]),
  ['test/helpers/machine-specs.ts', MACHINES_YAML],
  ...docsYamlBlocks()
    .filter((b) => b.text.startsWith(MODELINE))
    .map((b): [string, string] => [b.where, b.text]),
];
const EXAMPLE = read('machines.example.yaml');
const FULL = read('test', 'render', 'fixtures', 'full-machine', 'machines.yaml');
const SERVICES = read('test', 'render', 'fixtures', 'services', 'machines.yaml');
const SPECS = MACHINES_YAML;

/** Rules only the loader checks, each with the start of its message. */
const LOADER_ONLY: { rule: string; message: RegExp }[] = [
  { rule: 'a bridge is declared under networks:', message: /^network .+ is not declared under networks:/ },
  { rule: "an address is a host address of its bridge's subnet", message: /^\S+ is outside network .+ or is its network\/broadcast address$/ },
  { rule: 'an address is not the gateway', message: /^\S+ is the gateway of network / },
  { rule: 'an address belongs to one machine', message: /^\S+ is already used by machine / },
  { rule: 'a gateway is a host address of its subnet', message: /^\S+ is not a host address of / },
  { rule: 'a subnet is written as its network address', message: /^\S+ is not the network address of a \/\d+ \(did you mean / },
  { rule: 'networks do not overlap', message: /^overlaps networks? / },
  { rule: 'ports need a network', message: /^ports need a network/ },
  { rule: 'a host port is forwarded once', message: /^host port \S+ is already forwarded to machine / },
  { rule: 'a files path is listed once', message: /^\S+ is listed twice$/ },
  { rule: 'a bind target is used once', message: /^\S+ is already a bind mount target$/ },
  { rule: 'allow names another machine', message: /^a machine can always reach itself/ },
  { rule: 'allow names a machine of the manifest', message: /^machine .+ is not in this manifest$/ },
  { rule: 'allow names a machine on the same bridge', message: /^machine .+ is not on network / },
  { rule: 'allow only on an isolated network', message: /^allow rules only mean something on an isolated network/ },
  { rule: 'a capability is not both added and dropped', message: /^\S+ is also in capabilities\.drop/ },
  { rule: 'cpus or cpuQuota, not both', message: /^set cpus or cpuQuota, not both/ },
  { rule: 'a credential file is not in a read-write bind', message: /^\S+ is inside \S+, which machine .+ mounts read-write; that machine could replace it with a symlink to any host file$/ },
  { rule: 'a bind source is not inside a read-write bind source', message: /^\S+ is inside \S+, which machine .+ mounts read-write: that machine could replace it with a symlink to any host directory/ },
  { rule: "system call names this host's systemd knows", message: /^this host's systemd knows no system call / },
  { rule: "a health check's program is one systemd takes as a program", message: /^the program must be an absolute path \(\/usr\/bin\/curl\) or a plain name/ },
  { rule: 'a health check has a command, its own or the default one', message: /^a health check needs a command \(here, or in defaults\.health\)$/ },
  { rule: 'autoUpgrade needs a writable root', message: /^autoUpgrade( \(from defaults\))? needs a (writable root|root whose changes last), but machine / },
  { rule: 'autoUpgrade needs a network', message: /^autoUpgrade( \(from defaults\))? needs a network: / },
  // The distribution may come from defaults: a rule across sections, not one of a machine's keys.
  { rule: "a suite or mirror is one of its machine's distribution", message: /^\S+ is an? (Debian|Ubuntu) (suite|archive), but / },
  { rule: 'a default suite or mirror is taken by some machine', message: /^applies only to \S+ machines / },
  { rule: "a files path is not a service's drop-in, above or below it", message: /^\S+ is .+ nspawnctl (?:itself|writes itself) \(from services\.\S+:\)/ },
  { rule: "services need a machine /etc that is not a fresh tmpfs", message: /^services need the machine's own \/etc/ },
  // A fleet: which machines name which hosts is a rule across sections.
  { rule: 'with hosts:, every machine names its host', message: /^machine .+ needs host: \(a key of hosts:\) when the manifest has hosts:$/ },
  { rule: "a machine's host is declared under hosts:", message: /^host .+ is not declared under hosts:/ },
  { rule: 'allow names a machine on the same host', message: /^machine .+ runs on host .+, not on .+: networks are per host$/ },
];

const loaderOnlyRule = (message: string) => LOADER_ONLY.find((r) => r.message.test(message))?.rule;

const DELETE = Symbol('delete');
/** `text` parsed, with the value at `path` replaced (or deleted), written back as YAML. */
function changed(text: string, path: Path, value: unknown): string {
  const doc = parse(text);
  let node = doc;
  for (const key of path.slice(0, -1)) node = node[key];
  const last = path[path.length - 1];
  if (value === DELETE) {
    if (Array.isArray(node)) node.splice(last as number, 1);
    else delete node[last];
  } else {
    Object.defineProperty(node, last, { value, enumerable: true, writable: true, configurable: true });
  }
  return stringify(doc);
}

/** `text` with the key at `path` renamed, in its place. */
function renamed(text: string, path: Path, name: string): string {
  const doc = parse(text);
  let node = doc;
  for (const key of path.slice(0, -2)) node = node[key];
  const parent = path[path.length - 2];
  node[parent] = Object.fromEntries(Object.entries(node[parent]).map(([k, v]) => [k === path[path.length - 1] ? name : k, v]));
  return stringify(doc);
}


describe('valid manifests: both accept', () => {
  test('the corpus is all there', () => {
    expect(VALID.length).toBeGreaterThanOrEqual(12);
  });

  test.each(VALID)('%s', (_name, text) => {
    expect(judge(validate, text)).toEqual({ schema: [], loader: [], loaderMessages: [] });
  });

  // Values at the edge of each rule that both must take: the schema is never stricter.
  test.each<[string, string, Path, unknown]>([
    ['bind: read-only without a machine path', EXAMPLE, ['machines', 'web', 'bind', 0], '/srv/www:ro'],
    ['bind: a directory named ro', EXAMPLE, ['machines', 'web', 'bind', 0], '/ro:rw'],
    ['bind: dot files and "..." segments', EXAMPLE, ['machines', 'web', 'bind', 0], '/srv/.hidden/...:/x/y'],
    ['bind: the longest path, 1024 characters', EXAMPLE, ['machines', 'web', 'bind', 0], `/${'a'.repeat(1023)}:/x`],
    ['files: the longest path, 1024 characters', EXAMPLE, ['machines', 'web', 'files', 0, 'path'], `/${'a'.repeat(1023)}`],
    ['files: next to reserved paths', EXAMPLE, ['machines', 'web', 'files'], ['/etc/systemd/network/20-extra.network', '/root/.ssh/config', '/etc/apt/apt.conf.d/02mine', '/etc/hostnamex', '/usr/sbinx/y', '/etcx'].map((path) => ({ path, content: '' }))],
    ['files: mode without a leading 0, and 0000', EXAMPLE, ['machines', 'web', 'files'], [{ path: '/a', content: '', mode: '644' }, { path: '/b', content: '', mode: '0000' }]],
    ['files: content of many lines', EXAMPLE, ['machines', 'web', 'files', 0, 'content'], 'a\nb\r\nc\u2028'],
    ['credentials: a file beside /var/lib/machines', EXAMPLE, ['machines', 'web', 'credentials'], { 'a.b': '/var/lib/machinesx/key', '-x': '/var/lib/machines-key', _: '/k' }],
    ['subnet: a prefix written with a leading zero', EXAMPLE, ['networks', 'examplevlan', 'subnet'], '10.0.0.0/08'],
    ['subnet: /30', EXAMPLE, ['networks', 'small'], { subnet: '10.78.0.8/30' }],
    ['dns: the lowest and highest addresses', EXAMPLE, ['defaults', 'dns'], ['0.0.0.0', '255.255.255.255']],
    ['ports: 1 and 65535', EXAMPLE, ['machines', 'web', 'ports'], [{ host: 1 }, { host: 65535, container: 1, protocol: 'udp' }]],
    ['names: one character and the longest', EXAMPLE, ['machines'], { a: {}, '0': {}, 'abcdefghij-1': {} }],
    ['network names: one letter and 15 characters', EXAMPLE, ['networks'], { examplevlan: { subnet: '10.77.0.0/24' }, a: { subnet: '10.1.0.0/24' }, 'a_b-c0123456789': { subnet: '10.2.0.0/24' } }],
    ['environment: names _ and a1, an empty value', EXAMPLE, ['defaults', 'environment'], { _: 'x', a1: '', TZ: 'UTC' }],
    ['hostname: dotted, 63 characters', EXAMPLE, ['machines', 'web', 'hostname'], `${'a'.repeat(30)}.${'b'.repeat(32)}`],
    ['authorizedKeys: a comment with spaces', FULL, ['defaults', 'authorizedKeys'], ['sk-ssh-ed25519@openssh.com AAAA== a key, with words']],
    ['mirror: https with a port and a path', EXAMPLE, ['defaults', 'mirror'], 'https://mirror.example.org:8443/debian/'],
    ['privateUsers: the lowest base UID', SPECS, ['machines', 'web', 'security'], { privateUsers: 65536 }],
    ['privateUsers: the highest base UID', SPECS, ['machines', 'web', 'security'], { privateUsers: 4294836224 }],
    ['volatile: true, and a string', SPECS, ['machines', 'vol', 'security', 'volatile'], true],
    ['limits: the edges', SPECS, ['machines', 'app', 'limits'], { memory: 1, memorySwap: 0, cpus: 4096, tasks: 16, ioWeight: 10000 }],
    ['limits: the other edges', SPECS, ['machines', 'app', 'limits'], { memory: '9999999999999999T', memorySwap: '1K', cpus: 0.01, tasks: 4194304, ioWeight: 1 }],
    ['limits: cpuQuota from 1% to 999999%', SPECS, ['machines', 'web', 'limits'], { cpuQuota: '999999%' }],
    ['systemCallFilter: names, groups, denied ones', SPECS, ['machines', 'app', 'security', 'systemCallFilter'], ['getcpu', '~getcpu', '@system-service', '~@clock']],
    ['devices: read-only', SPECS, ['machines', 'app', 'security', 'devices'], [{ path: '/dev/net/tun', access: 'r' }]],
    ['apparmorProfile with a slash and dots', SPECS, ['machines', 'app', 'security', 'apparmorProfile'], 'a/b.c-d_e'],
    ['services: unit names at the edges', SERVICES, ['machines', 'web', 'services'], { a: {}, 'php8.2-fpm': {}, 'user@1000': {}, 'a:b_c-d': {}, [`x${'y'.repeat(246)}`]: { preset: 'none' } }],
    ['services: every key', SERVICES, ['machines', 'web', 'services', 'nginx'], { preset: 'none', protectSystem: false, protectHome: 'read-only', privateTmp: false, restrictSUIDSGID: true, systemCallArchitectures: 'native', systemCallFilter: [], readWritePaths: ['-/run', '/var/lib/x'], deviceAllow: ['/dev/null rw', 'block-loop', 'char-pts rwm'], capabilities: { keep: [] }, restrictAddressFamilies: ['AF_DECnet', 'AF_MCTP'] }],
    ['services: capabilities to drop, and an empty list of families', SERVICES, ['machines', 'web', 'services', 'nginx'], { capabilities: { drop: ['CAP_SYS_ADMIN'] }, restrictAddressFamilies: [] }],
  ])('%s', (_name, base, path, value) => {
    expect(judge(validate, changed(base, path, value))).toEqual({ schema: [], loader: [], loaderMessages: [] });
  });
});

/** A case both must refuse, and the key they both point at. */
type Refused = [name: string, base: string, path: Path, value: unknown, at?: string];

const TYPES: Refused[] = [
  ['autostart as a string', EXAMPLE, ['machines', 'web', 'autostart'], 'yes'],
  ['packages as a string', EXAMPLE, ['defaults', 'packages'], 'curl'],
  ['mode as a YAML number', EXAMPLE, ['machines', 'web', 'files', 0, 'mode'], 644],
  ['ports as a mapping', EXAMPLE, ['machines', 'web', 'ports'], { host: 80 }],
  ['a machine as a list', EXAMPLE, ['machines', 'db'], []],
  ['a machine as null', EXAMPLE, ['machines', 'db'], null],
  ['defaults as null', EXAMPLE, ['defaults'], null],
  ['networks as a list', EXAMPLE, ['networks'], []],
  ['network as a string', EXAMPLE, ['machines', 'web', 'network'], 'examplevlan'],
  ['an environment value as a number', EXAMPLE, ['defaults', 'environment', 'TZ'], 1],
  ['a provision argument as a number', EXAMPLE, ['machines', 'web', 'provision', 0, 0], 5],
  ['a provision command as a string', EXAMPLE, ['machines', 'web', 'provision', 0], 'mkdir -p /var/www'],
  ['privateUsers as a boolean', SPECS, ['machines', 'app', 'security', 'privateUsers'], true],
  ['volatile as a number', SPECS, ['machines', 'vol', 'security', 'volatile'], 1],
  ['memory as a boolean', SPECS, ['machines', 'app', 'limits', 'memory'], true],
  ['tasks as a string', SPECS, ['machines', 'app', 'limits', 'tasks'], '256'],
  ['a port as a string', EXAMPLE, ['machines', 'web', 'ports', 0, 'host'], '8080'],
  ['capabilities as a list', SPECS, ['machines', 'app', 'security', 'capabilities'], ['CAP_MKNOD']],
  ['services as a list', SERVICES, ['machines', 'web', 'services'], ['nginx']],
  ['a service as a string', SERVICES, ['machines', 'web', 'services', 'nginx'], 'strict'],
  ['a service switch as a string', SERVICES, ['machines', 'web', 'services', 'nginx', 'privateTmp'], 'yes'],
  ['protectSystem as a number', SERVICES, ['machines', 'web', 'services', 'nginx', 'protectSystem'], 1],
  ['systemCallArchitectures as true', SERVICES, ['machines', 'web', 'services', 'nginx', 'systemCallArchitectures'], true],
];

const REQUIRED: Refused[] = [
  ['no machines:', EXAMPLE, ['machines'], DELETE],
  ['network without address', EXAMPLE, ['machines', 'web', 'network', 'address'], DELETE],
  ['network without bridge', EXAMPLE, ['machines', 'web', 'network', 'bridge'], DELETE],
  ['a file without content', EXAMPLE, ['machines', 'web', 'files', 0, 'content'], DELETE],
  ['a file without path', EXAMPLE, ['machines', 'web', 'files', 0, 'path'], DELETE],
  ['a port without host', EXAMPLE, ['machines', 'web', 'ports', 0, 'host'], DELETE],
  ['a network without subnet', EXAMPLE, ['networks', 'examplevlan', 'subnet'], DELETE],
  ['an allow rule without port', EXAMPLE, ['machines', 'web', 'network', 'allow'], [{ from: 'db' }], 'machines.web.network.allow[0].port'],
  ['a device without path', SPECS, ['machines', 'app', 'security', 'devices', 0, 'path'], DELETE],
];

const UNKNOWN_KEYS: Refused[] = [
  ['at the top', EXAMPLE, ['machine'], {}],
  ['in defaults', EXAMPLE, ['defaults', 'packges'], ['curl']],
  ['in a machine', EXAMPLE, ['machines', 'web', 'hostnme'], 'web'],
  ['in a network', EXAMPLE, ['networks', 'examplevlan', 'gatway'], '10.77.0.1'],
  ["in a machine's network", EXAMPLE, ['machines', 'web', 'network', 'gw'], '10.77.0.1'],
  ['in a file', EXAMPLE, ['machines', 'web', 'files', 0, 'owner'], 'root'],
  ['proto in a port (ports say protocol)', EXAMPLE, ['machines', 'web', 'ports', 0, 'proto'], 'tcp'],
  ['protocol in an allow rule (allow says proto)', EXAMPLE, ['machines', 'web', 'network', 'allow'], [{ from: 'db', port: 80, protocol: 'tcp' }], 'machines.web.network.allow[0].protocol'],
  ['in capabilities', SPECS, ['machines', 'app', 'security', 'capabilities', 'keep'], ['CAP_CHOWN']],
  ['in security', SPECS, ['machines', 'app', 'security', 'seccomp'], true],
  ['in limits', SPECS, ['machines', 'app', 'limits', 'memoryMax'], '1G'],
  ['in a device', SPECS, ['machines', 'app', 'security', 'devices', 0, 'mode'], 'rw'],
  ['in a service', SERVICES, ['machines', 'web', 'services', 'nginx', 'protectSytem'], 'strict'],
  ["in a service's capabilities", SERVICES, ['machines', 'web', 'services', 'nginx', 'capabilities'], { add: ['CAP_CHOWN'] }, 'machines.web.services.nginx.capabilities.add'],
];

const ENUMS: Refused[] = [
  ['distribution', EXAMPLE, ['defaults', 'distribution'], 'fedora'],
  ['distribution, capitalised', EXAMPLE, ['defaults', 'distribution'], 'Debian'],
  ['variant', EXAMPLE, ['defaults', 'variant'], 'minimal'],
  ['bootstrapper', EXAMPLE, ['defaults', 'bootstrapper'], 'cdebootstrap'],
  ['preset', EXAMPLE, ['defaults', 'security', 'preset'], 'paranoid'],
  ['volatile', SPECS, ['machines', 'vol', 'security', 'volatile'], 'tmpfs'],
  ['privateUsers', SPECS, ['machines', 'app', 'security', 'privateUsers'], 'auto'],
  ['a port protocol', EXAMPLE, ['machines', 'web', 'ports', 0, 'protocol'], 'sctp'],
  ['an allow proto', EXAMPLE, ['machines', 'web', 'network', 'allow'], [{ from: 'db', port: 80, proto: 'icmp' }], 'machines.web.network.allow[0].proto'],
  ['a device access', SPECS, ['machines', 'app', 'security', 'devices', 0, 'access'], 'w'],
  ['a capability in lower case', SPECS, ['machines', 'app', 'security', 'capabilities', 'drop', 0], 'cap_mknod'],
  ['a capability without CAP_', SPECS, ['machines', 'app', 'security', 'capabilities', 'drop', 0], 'MKNOD'],
  ['a capability that does not exist', SPECS, ['machines', 'app', 'security', 'capabilities', 'add'], ['CAP_NET_RAWR'], 'machines.app.security.capabilities.add[0]'],
  ['a service preset', SERVICES, ['machines', 'web', 'services', 'nginx', 'preset'], 'paranoid'],
  ['protectSystem', SERVICES, ['machines', 'web', 'services', 'nginx', 'protectSystem'], 'yes'],
  ['protectHome', SERVICES, ['machines', 'web', 'services', 'nginx', 'protectHome'], 'ro'],
  ['a kept capability in lower case', SERVICES, ['machines', 'web', 'services', 'nginx', 'capabilities'], { keep: ['cap_chown'] }, 'machines.web.services.nginx.capabilities.keep[0]'],
  ['capabilities to keep and to drop', SERVICES, ['machines', 'web', 'services', 'nginx', 'capabilities'], { keep: ['CAP_CHOWN'], drop: ['CAP_SYS_ADMIN'] }],
  ['an address family that does not exist', SERVICES, ['machines', 'web', 'services', 'nginx', 'restrictAddressFamilies'], ['AF_INETT'], 'machines.web.services.nginx.restrictAddressFamilies[0]'],
  ['an address family without AF_', SERVICES, ['machines', 'web', 'services', 'nginx', 'restrictAddressFamilies'], ['INET'], 'machines.web.services.nginx.restrictAddressFamilies[0]'],
];

const NAMES: Refused[] = [
  ['hostname in capitals', EXAMPLE, ['machines', 'web', 'hostname'], 'Web'],
  ['hostname ending with -', EXAMPLE, ['machines', 'web', 'hostname'], 'web-'],
  ['hostname with an empty label', EXAMPLE, ['machines', 'web', 'hostname'], 'a..b'],
  ['hostname of 64 characters', EXAMPLE, ['machines', 'web', 'hostname'], `${'a'.repeat(31)}.${'b'.repeat(32)}`],
  ['suite in capitals', EXAMPLE, ['defaults', 'suite'], 'Bookworm'],
  ['suite of one letter', EXAMPLE, ['defaults', 'suite'], 'b'],
  ['a package in capitals', EXAMPLE, ['defaults', 'packages', 0], 'Nginx'],
  ['a package with a version', EXAMPLE, ['defaults', 'packages', 0], 'nginx=1.2'],
  ['a package of one letter', EXAMPLE, ['defaults', 'packages', 0], 'a'],
  ['an allow rule from a bad name', EXAMPLE, ['machines', 'web', 'network', 'allow'], [{ from: 'Db', port: 80 }], 'machines.web.network.allow[0].from'],
  ['a syscall entry in capitals', SPECS, ['machines', 'app', 'security', 'systemCallFilter', 0], '~@Clock'],
  ['a syscall entry with a space', SPECS, ['machines', 'app', 'security', 'systemCallFilter', 0], '~ @clock'],
  ['an AppArmor profile starting with -', SPECS, ['machines', 'app', 'security', 'apparmorProfile'], '-x'],
  ['an AppArmor profile with a space', SPECS, ['machines', 'app', 'security', 'apparmorProfile'], 'a b'],
  ['an authorized key without its type', FULL, ['defaults', 'authorizedKeys', 0], 'AAAAC3NzaC1lZDI1NTE5 admin'],
  ['an authorized key of two lines', FULL, ['defaults', 'authorizedKeys', 0], 'ssh-ed25519 AAAA a\nssh-rsa BBBB b'],
  ['an authorized key with two spaces after its type', FULL, ['defaults', 'authorizedKeys', 0], 'ssh-ed25519  AAAA'],
  ['a service syscall entry in capitals', SERVICES, ['machines', 'web', 'services', 'nginx', 'systemCallFilter'], ['@System-service'], 'machines.web.services.nginx.systemCallFilter[0]'],
  ['a device ACL with a bad access', SERVICES, ['machines', 'web', 'services', 'nginx', 'deviceAllow'], ['/dev/null x'], 'machines.web.services.nginx.deviceAllow[0]'],
  ['a device ACL outside /dev', SERVICES, ['machines', 'web', 'services', 'nginx', 'deviceAllow'], ['/etc/shadow r'], 'machines.web.services.nginx.deviceAllow[0]'],
  ['a device ACL through ..', SERVICES, ['machines', 'web', 'services', 'nginx', 'deviceAllow'], ['/dev/../etc/shadow r'], 'machines.web.services.nginx.deviceAllow[0]'],
];

/** The example with one nameserver under defaults (it has no dns: of its own). */
const WITH_DNS = changed(EXAMPLE, ['defaults', 'dns'], ['10.77.0.53']);

const ADDRESSES: Refused[] = [
  // The example has no dns: (machines get the host's nameservers); these give it one.
  ['dns: an octet over 255', WITH_DNS, ['defaults', 'dns', 0], '10.77.0.256'],
  ['dns: a leading zero', WITH_DNS, ['defaults', 'dns', 0], '010.77.0.1'],
  ['dns: three octets', WITH_DNS, ['defaults', 'dns', 0], '10.77.1'],
  ['dns: IPv6', WITH_DNS, ['defaults', 'dns', 0], '::1'],
  ['gateway: five octets', EXAMPLE, ['networks', 'examplevlan', 'gateway'], '10.77.0.1.5'],
  ['address: a name', EXAMPLE, ['machines', 'web', 'network', 'address'], 'web'],
  ['subnet without a prefix', EXAMPLE, ['networks', 'examplevlan', 'subnet'], '10.77.0.0'],
  ['subnet /7', EXAMPLE, ['networks', 'examplevlan', 'subnet'], '10.0.0.0/7'],
  ['subnet /31', EXAMPLE, ['networks', 'examplevlan', 'subnet'], '10.77.0.0/31'],
  ['subnet /33', EXAMPLE, ['networks', 'examplevlan', 'subnet'], '10.77.0.0/33'],
  ['subnet of three octets', EXAMPLE, ['networks', 'examplevlan', 'subnet'], '10.77.0/24'],
  ['subnet with an octet over 255', EXAMPLE, ['networks', 'examplevlan', 'subnet'], '10.77.300.0/24'],
  ['mirror: ftp', EXAMPLE, ['defaults', 'mirror'], 'ftp://deb.debian.org/debian'],
  ['mirror: no scheme', EXAMPLE, ['defaults', 'mirror'], 'deb.debian.org/debian'],
  ['mirror: no host', EXAMPLE, ['defaults', 'mirror'], 'http://'],
  ['aptProxy: a space', FULL, ['machines', 'app', 'aptProxy'], 'http://proxy:3142/ x'],
];

const PATHS: Refused[] = [
  ['bind: relative', EXAMPLE, ['machines', 'web', 'bind', 0], 'srv/www'],
  ['bind: a bad access mode', EXAMPLE, ['machines', 'web', 'bind', 0], '/srv/www:/var/www:rx'],
  ['bind: three paths', EXAMPLE, ['machines', 'web', 'bind', 0], '/a:/b:/c'],
  ['bind: a .. segment', EXAMPLE, ['machines', 'web', 'bind', 0], '/srv/../etc:/x'],
  ['bind: a . segment in the machine path', EXAMPLE, ['machines', 'web', 'bind', 0], '/srv:/x/.'],
  ['bind: //', EXAMPLE, ['machines', 'web', 'bind', 0], '/srv//www'],
  ['bind: a trailing /', EXAMPLE, ['machines', 'web', 'bind', 0], '/srv/www/:/x'],
  ['bind: a space', EXAMPLE, ['machines', 'web', 'bind', 0], '/srv/my www'],
  ['bind: no host path', EXAMPLE, ['machines', 'web', 'bind', 0], ':/x'],
  ['bind: ro twice', EXAMPLE, ['machines', 'web', 'bind', 0], '/a:ro:ro'],
  ['bind: a path of 1025 characters', EXAMPLE, ['machines', 'web', 'bind', 0], `/x:/${'a'.repeat(1024)}`],
  ['files: relative', EXAMPLE, ['machines', 'web', 'files', 0, 'path'], 'etc/motd'],
  ['files: a trailing /', EXAMPLE, ['machines', 'web', 'files', 0, 'path'], '/etc/motd/'],
  ['files: a . segment', EXAMPLE, ['machines', 'web', 'files', 0, 'path'], '/etc/./motd'],
  ['files: /', EXAMPLE, ['machines', 'web', 'files', 0, 'path'], '/'],
  ['files: a tab', EXAMPLE, ['machines', 'web', 'files', 0, 'path'], '/etc/mo\ttd'],
  ['files: 1025 characters', EXAMPLE, ['machines', 'web', 'files', 0, 'path'], `/${'a'.repeat(1024)}`],
  ['files: NUL in content', EXAMPLE, ['machines', 'web', 'files', 0, 'content'], 'a\0b'],
  ['inaccessible: relative', SPECS, ['machines', 'app', 'security', 'inaccessible', 0], 'proc/kcore'],
  ['inaccessible: a trailing /', SPECS, ['machines', 'app', 'security', 'inaccessible', 0], '/proc/kcore/'],
  ['tmpfs: /', SPECS, ['machines', 'app', 'security', 'tmpfs', 0], '/'],
  ['devices: /dev itself', SPECS, ['machines', 'app', 'security', 'devices', 0, 'path'], '/dev'],
  ['devices: /dev/', SPECS, ['machines', 'app', 'security', 'devices', 0, 'path'], '/dev/'],
  ['devices: beside /dev', SPECS, ['machines', 'app', 'security', 'devices', 0, 'path'], '/devices/x'],
  ['devices: out of /dev through ..', SPECS, ['machines', 'app', 'security', 'devices', 0, 'path'], '/dev/../etc/shadow'],
  ['credentials: relative', EXAMPLE, ['machines', 'web', 'credentials'], { key: 'key.pem' }, 'machines.web.credentials.key'],
  ['credentials: inside /var/lib/machines', EXAMPLE, ['machines', 'web', 'credentials'], { key: '/var/lib/machines/web/key' }, 'machines.web.credentials.key'],
  ['credentials: /var/lib/machines itself', EXAMPLE, ['defaults', 'credentials'], { key: '/var/lib/machines' }, 'defaults.credentials.key'],
  ['credentials: //', EXAMPLE, ['defaults', 'credentials'], { key: '/etc//key' }, 'defaults.credentials.key'],
  ['readWritePaths: relative', SERVICES, ['machines', 'web', 'services', 'nginx', 'readWritePaths'], ['var/lib/nginx'], 'machines.web.services.nginx.readWritePaths[0]'],
  ['readWritePaths: two dashes', SERVICES, ['machines', 'web', 'services', 'nginx', 'readWritePaths'], ['--/x'], 'machines.web.services.nginx.readWritePaths[0]'],
  ['readWritePaths: a .. segment', SERVICES, ['machines', 'web', 'services', 'nginx', 'readWritePaths'], ['-/var/../etc'], 'machines.web.services.nginx.readWritePaths[0]'],
  ['readWritePaths: a trailing /', SERVICES, ['machines', 'web', 'services', 'nginx', 'readWritePaths'], ['/run/'], 'machines.web.services.nginx.readWritePaths[0]'],
  ['readWritePaths: /', SERVICES, ['machines', 'web', 'services', 'nginx', 'readWritePaths'], ['-/'], 'machines.web.services.nginx.readWritePaths[0]'],
];

// The paths nspawnctl writes itself, a directory above one, a path below one: a fixed list the
// loader checks (reservedPathProblem) and the schema spells as one pattern.
const RESERVED: Refused[] = [
  '/etc/hostname',
  '/etc/resolv.conf',
  '/etc/machine-id',
  '/usr/sbin/policy-rc.d',
  '/etc/apt/apt.conf.d/01nspawnctl-proxy',
  '/etc/systemd/system/multi-user.target.wants/systemd-networkd.service',
  '/etc',
  '/etc/systemd/network',
  '/root',
  '/root/.ssh',
  '/usr',
  '/etc/systemd/system.conf.d',
  '/etc/hostname/x',
  '/root/.ssh/authorized_keys/x/y',
].map((path): Refused => [path, EXAMPLE, ['machines', 'web', 'files', 0, 'path'], path]);

const LINES: Refused[] = [
  ['an environment value with a newline', EXAMPLE, ['defaults', 'environment', 'TZ'], 'UTC\nX=1'],
  ['an environment value with a carriage return', EXAMPLE, ['defaults', 'environment', 'TZ'], 'UTC\r'],
  ['a provision argument with a newline', EXAMPLE, ['machines', 'web', 'provision', 0, 2], '/var/www\nrm'],
  ['an empty provision command', EXAMPLE, ['machines', 'web', 'provision', 0], []],
];

const RANGES: Refused[] = [
  ['a host port of 0', EXAMPLE, ['machines', 'web', 'ports', 0, 'host'], 0],
  ['a host port of 65536', EXAMPLE, ['machines', 'web', 'ports', 0, 'host'], 65536],
  ['a host port of 80.5', EXAMPLE, ['machines', 'web', 'ports', 0, 'host'], 80.5],
  ['a container port of -1', EXAMPLE, ['machines', 'web', 'ports', 0, 'container'], -1],
  ['an allow port of 70000', EXAMPLE, ['machines', 'web', 'network', 'allow'], [{ from: 'db', port: 70000 }], 'machines.web.network.allow[0].port'],
  ['tasks 15', SPECS, ['machines', 'app', 'limits', 'tasks'], 15],
  ['tasks 4194305', SPECS, ['machines', 'app', 'limits', 'tasks'], 4194305],
  ['ioWeight 0', SPECS, ['machines', 'app', 'limits', 'ioWeight'], 0],
  ['ioWeight 10001', SPECS, ['machines', 'app', 'limits', 'ioWeight'], 10001],
  ['cpus 0', SPECS, ['machines', 'app', 'limits', 'cpus'], 0],
  ['cpus -1', SPECS, ['machines', 'app', 'limits', 'cpus'], -1],
  ['cpus 4096.5', SPECS, ['machines', 'app', 'limits', 'cpus'], 4096.5],
  ['cpus with three decimals', SPECS, ['machines', 'app', 'limits', 'cpus'], 1.555],
  ['cpuQuota 0%', SPECS, ['machines', 'app', 'limits', 'cpuQuota'], '0%'],
  ['cpuQuota without %', SPECS, ['machines', 'web', 'limits'], { cpuQuota: '150' }, 'machines.web.limits.cpuQuota'],
  ['cpuQuota 1000000%', SPECS, ['machines', 'web', 'limits'], { cpuQuota: '1000000%' }, 'machines.web.limits.cpuQuota'],
  ['memory 512MB', SPECS, ['machines', 'app', 'limits', 'memory'], '512MB'],
  ['memory 512m', SPECS, ['machines', 'app', 'limits', 'memory'], '512m'],
  ['memory 1.5G', SPECS, ['machines', 'app', 'limits', 'memory'], '1.5G'],
  ['memory "0"', SPECS, ['machines', 'app', 'limits', 'memory'], '0'],
  ['memory 0', SPECS, ['machines', 'app', 'limits', 'memory'], 0],
  ['memory -5', SPECS, ['machines', 'app', 'limits', 'memory'], -5],
  ['memory of 17 digits', SPECS, ['machines', 'app', 'limits', 'memory'], '12345678901234567'],
  ['memorySwap -1', SPECS, ['machines', 'app', 'limits', 'memorySwap'], -1],
  ['memorySwap 0M', SPECS, ['machines', 'app', 'limits', 'memorySwap'], '0M'],
  ['privateUsers 65537', SPECS, ['machines', 'app', 'security', 'privateUsers'], 65537],
  ['privateUsers 0', SPECS, ['machines', 'app', 'security', 'privateUsers'], 0],
  ['privateUsers above the last range', SPECS, ['machines', 'app', 'security', 'privateUsers'], 4294901760],
  ['privateUsers not an integer', SPECS, ['machines', 'app', 'security', 'privateUsers'], 131072.5],
];

describe('what a JSON Schema can express: both refuse, at the same key', () => {
  describe.each<[string, Refused[]]>([
    ['types', TYPES],
    ['required keys', REQUIRED],
    ['unknown keys', UNKNOWN_KEYS],
    ['enums', ENUMS],
    ['names and key lines', NAMES],
    ['addresses and URLs', ADDRESSES],
    ['paths', PATHS],
    ['paths files: may not take', RESERVED],
    ['one-line strings and lists that need an item', LINES],
    ['ranges', RANGES],
  ])('%s', (_category, cases) => {
    test.each(cases)('%s', (_name, base, path, value, at = printed(path)) => {
      const v = judge(validate, changed(base, path, value));
      expect({ at, schema: v.schema.includes(at), loader: v.loader.some((p) => p.startsWith(`${at}: `)) }).toEqual({ at, schema: true, loader: true });
    });
  });

  // Map keys: names of machines, networks, environment variables and credentials.
  test.each<[string, string, Path, string]>([
    ['a machine name in capitals', EXAMPLE, ['machines', 'web'], 'Web'],
    ['a machine name starting with -', EXAMPLE, ['machines', 'web'], '-web'],
    ['a machine name of 13 characters', EXAMPLE, ['machines', 'web'], 'abcdefghijklm'],
    ['a machine name with _', EXAMPLE, ['machines', 'web'], 'web_1'],
    ['a network name starting with a digit', EXAMPLE, ['networks', 'examplevlan'], '1lan'],
    ['a network name of 16 characters', EXAMPLE, ['networks', 'examplevlan'], 'abcdefghijklmnop'],
    ['a network name with a dot', EXAMPLE, ['networks', 'examplevlan'], 'lan.1'],
    ['an environment name starting with a digit', EXAMPLE, ['defaults', 'environment', 'TZ'], '1TZ'],
    ['an environment name with -', EXAMPLE, ['defaults', 'environment', 'TZ'], 'TZ-X'],
    ['a service named with .service', SERVICES, ['machines', 'web', 'services', 'cron'], 'cron.service'],
    ['a service named like a path', SERVICES, ['machines', 'web', 'services', 'cron'], '../cron'],
    ['a service name starting with -', SERVICES, ['machines', 'web', 'services', 'cron'], '-cron'],
    ['a service name with ..', SERVICES, ['machines', 'web', 'services', 'cron'], 'a..b'],
    ['a template without its instance', SERVICES, ['machines', 'web', 'services', 'cron'], 'getty@'],
    ['a service name of 248 characters', SERVICES, ['machines', 'web', 'services', 'cron'], 'c'.repeat(248)],
  ])('%s', (_name, base, path, name) => {
    const at = printed([...path.slice(0, -1), name]);
    const v = judge(validate, renamed(base, path, name));
    expect({ at, schema: v.schema.includes(at), loader: v.loader.some((p) => p.startsWith(`${at}: `)) }).toEqual({ at, schema: true, loader: true });
  });

  test.each([
    ['a credential name starting with a dot', yaml('machines:', '  web:', '    credentials: { .key: /k }'), 'machines.web.credentials.".key"'],
    ['a credential name with a space', yaml('machines:', '  web:', '    credentials: { "a b": /k }'), 'machines.web.credentials."a b"'],
    ['a credential name of 65 characters', yaml('machines:', '  web:', `    credentials: { ${'k'.repeat(65)}: /k }`), `machines.web.credentials.${'k'.repeat(65)}`],
    ['__proto__ as a credential name', yaml('machines:', '  web:', '    credentials: { __proto__: /k }'), 'machines.web.credentials.__proto__'],
    ['__proto__ as a service name', yaml('machines:', '  web:', '    services: { __proto__: {} }'), 'machines.web.services.__proto__'],
    ['__proto__ as an environment name', yaml('defaults:', '  environment: { __proto__: x }', 'machines: {}'), 'defaults.environment.__proto__'],
    ['a document that is a list', yaml('- machines: {}'), ''],
    ['an empty document', yaml('# nothing'), ''],
  ])('%s', (_name, text, at) => {
    const v = judge(validate, text);
    expect({ at, schema: v.schema.includes(at), loader: v.loader.some((p) => p.startsWith(`${at}: `)) }).toEqual({ at, schema: true, loader: true });
  });
});

// A host whose systemd knows a few names; without one the loader checks only the syntax.
const KNOWN: KnownSyscalls = { groups: new Set(['@clock', '@swap', '@system-service']), names: new Set(['getcpu', 'ptrace']) };

describe('what only the loader can decide: the schema accepts, the loader refuses with that rule', () => {
  const cases: [rule: string, text: string][] = [
    ['with hosts:, every machine names its host', changed(EXAMPLE, ['hosts'], { alpha: { ssh: 'root@10.0.0.5' } })],
    ["a machine's host is declared under hosts:", changed(EXAMPLE, ['machines', 'web', 'host'], 'alpha')],
    [
      'allow names a machine on the same host',
      [
        (t: string) => changed(t, ['hosts'], { alpha: { ssh: 'root@10.0.0.5' }, beta: { ssh: 'root@10.0.0.6' } }),
        (t: string) => changed(t, ['networks', 'examplevlan', 'isolated'], true),
        (t: string) => changed(t, ['machines', 'web', 'host'], 'alpha'),
        (t: string) => changed(t, ['machines', 'db', 'host'], 'beta'),
        (t: string) => changed(t, ['machines', 'db', 'network', 'allow'], [{ from: 'web', port: 5432 }]),
      ].reduce((t, f) => f(t), EXAMPLE),
    ],
    ['a bridge is declared under networks:', changed(EXAMPLE, ['machines', 'web', 'network', 'bridge'], 'backend')],
    ["an address is a host address of its bridge's subnet", changed(EXAMPLE, ['machines', 'web', 'network', 'address'], '10.78.0.11')],
    ["an address is a host address of its bridge's subnet", changed(EXAMPLE, ['machines', 'web', 'network', 'address'], '10.77.0.255')],
    ['an address is not the gateway', changed(EXAMPLE, ['machines', 'web', 'network', 'address'], '10.77.0.1')],
    ['an address belongs to one machine', changed(EXAMPLE, ['machines', 'db', 'network', 'address'], '10.77.0.11')],
    ['a gateway is a host address of its subnet', changed(EXAMPLE, ['networks', 'examplevlan', 'gateway'], '10.77.1.1')],
    ['a subnet is written as its network address', changed(EXAMPLE, ['networks', 'examplevlan', 'subnet'], '10.77.0.5/24')],
    ['networks do not overlap', changed(EXAMPLE, ['networks', 'other'], { subnet: '10.77.0.0/16' })],
    ['ports need a network', changed(EXAMPLE, ['machines', 'db'], { ports: [{ host: 80 }] })],
    ['a host port is forwarded once', changed(EXAMPLE, ['machines', 'db', 'ports'], [{ host: 8080 }])],
    ['a files path is listed once', changed(EXAMPLE, ['machines', 'web', 'files', 1], { path: '/etc/motd', content: 'x' })],
    ['a bind target is used once', changed(EXAMPLE, ['machines', 'web', 'bind', 1], '/srv/other:/var/www')],
    ['allow names another machine', changed(changed(EXAMPLE, ['networks', 'examplevlan', 'isolated'], true), ['machines', 'web', 'network', 'allow'], [{ from: 'web', port: 80 }])],
    ['allow names a machine of the manifest', changed(changed(EXAMPLE, ['networks', 'examplevlan', 'isolated'], true), ['machines', 'web', 'network', 'allow'], [{ from: 'api', port: 80 }])],
    ['allow names a machine on the same bridge', changed(changed(changed(FULL, ['networks', 'lan', 'isolated'], true), ['machines', 'solo'], {}), ['machines', 'app', 'network', 'allow'], [{ from: 'solo', port: 80 }])],
    ['allow only on an isolated network', changed(EXAMPLE, ['machines', 'web', 'network', 'allow'], [{ from: 'db', port: 80 }])],
    ['a capability is not both added and dropped', changed(SPECS, ['machines', 'app', 'security', 'capabilities', 'add'], ['CAP_MKNOD'])],
    ['cpus or cpuQuota, not both', changed(SPECS, ['machines', 'app', 'limits', 'cpuQuota'], '150%')],
    ['a credential file is not in a read-write bind', changed(changed(EXAMPLE, ['machines', 'db', 'bind'], ['/srv/keys:/keys']), ['machines', 'web', 'credentials'], { key: '/srv/keys/web.pem' })],
    ['a bind source is not inside a read-write bind source', changed(changed(EXAMPLE, ['machines', 'db', 'bind'], ['/srv/app:/app']), ['machines', 'web', 'bind'], ['/srv/app/conf:/etc/app:ro'])],
    ["a health check's program is one systemd takes as a program", changed(EXAMPLE, ['machines', 'web', 'health'], { command: ['-curl', 'http://localhost/'] })],
    ['a health check has a command, its own or the default one', changed(EXAMPLE, ['machines', 'web', 'health'], { interval: '10s' })],
    ['autoUpgrade needs a writable root', changed(SPECS, ['machines', 'app', 'autoUpgrade'], { schedule: 'daily' })],
    ['autoUpgrade needs a writable root', changed(SPECS, ['machines', 'vol', 'autoUpgrade'], { schedule: 'weekly' })],
    ['autoUpgrade needs a network', changed(SPECS, ['machines', 'solo', 'autoUpgrade'], {})],
    ["a suite or mirror is one of its machine's distribution", changed(changed(EXAMPLE, ['machines', 'web', 'distribution'], 'ubuntu'), ['machines', 'web', 'suite'], 'bookworm')],
    ['a default suite or mirror is taken by some machine', changed(changed(EXAMPLE, ['machines', 'web', 'distribution'], 'ubuntu'), ['machines', 'db', 'distribution'], 'ubuntu')],
    ["a files path is not a service's drop-in, above or below it", changed(SERVICES, ['machines', 'web', 'files', 0, 'path'], '/etc/systemd/system/cron.service.d/50-nspawnctl-hardening.conf')],
    ["a files path is not a service's drop-in, above or below it", changed(SERVICES, ['machines', 'web', 'files', 0, 'path'], '/etc/systemd/system/cron.service.d')],
    ['services need a machine /etc that is not a fresh tmpfs', changed(SERVICES, ['machines', 'web', 'security'], { volatile: 'yes' })],
  ];

  test('every rule has a case', () => {
    const covered = new Set(cases.map(([rule]) => rule));
    expect(LOADER_ONLY.map((r) => r.rule).filter((rule) => !covered.has(rule))).toEqual(["system call names this host's systemd knows"]);
  });

  test.each(cases)('%s', (rule, text) => {
    const v = judge(validate, text);
    expect(v.schema).toEqual([]);
    expect(v.loaderMessages.length).toBeGreaterThan(0);
    expect(v.loaderMessages.map(loaderOnlyRule)).toEqual(v.loaderMessages.map(() => rule));
  });

  test("system call names this host's systemd knows (only when the host's list is given)", () => {
    const text = changed(SPECS, ['machines', 'app', 'security', 'systemCallFilter'], ['~@clocks', 'getcpux', '@system-service']);
    expect(judge(validate, text)).toEqual({ schema: [], loader: [], loaderMessages: [] });
    const v = judge(validate, text, KNOWN);
    expect(v.schema).toEqual([]);
    expect(v.loaderMessages.map(loaderOnlyRule)).toEqual(["system call names this host's systemd knows", "system call names this host's systemd knows"]);
  });

  // cpus is checked for two decimals in decimal terms (0.29 * 100 is 28.999999999999996 in binary
  // floating point): the schema's multipleOf 0.01 and the loader agree.
  test.each([0.29, 1.15, 2.01, 0.01])('cpus: %p has two decimals: both accept it', (cpus) => {
    const v = judge(validate, changed(SPECS, ['machines', 'app', 'limits', 'cpus'], cpus));
    expect([v.schema, v.loaderMessages]).toEqual([[], []]);
  });

  test('cpus: 0.291 has three: the loader refuses it with its message', () => {
    const v = judge(validate, changed(SPECS, ['machines', 'app', 'limits', 'cpus'], 0.291));
    expect(v.loaderMessages).toEqual(['cpus takes at most two decimals, like 1.5']);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: mutations of the valid corpus. Whatever the mutation, (1) when the schema refuses,
// the loader refuses too, and (2) when the schema accepts, every problem the loader reports is
// one of LOADER_ONLY.
// ---------------------------------------------------------------------------------------------
const SEED = 20240611;
const RUNS = 500;

/** Every [path, value] of a document, the root excepted. */
function entries(value: Json, path: Path = []): [Path, Json][] {
  const out: [Path, Json][] = path.length > 0 ? [[path, value]] : [];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...entries(v, [...path, i])));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) out.push(...entries(v, [...path, k]));
  return out;
}

const documents = VALID.map(([, text]) => parse(text) as Json);
/** Values from valid manifests, to put where they do not belong. */
const donors = documents.flatMap((doc) => entries(doc).map(([, v]) => v));
const KEYS = ['defaults', 'networks', 'machines', 'distribution', 'suite', 'mirror', 'packages', 'dns', 'network', 'bridge', 'address', 'allow', 'bind', 'ports', 'files', 'path', 'content', 'mode', 'host', 'container', 'protocol', 'proto', 'from', 'port', 'security', 'limits', 'preset', 'privateUsers', 'cpus', 'cpuQuota', 'memory', 'subnet', 'gateway', 'nat', 'isolated', 'credentials', 'environment', 'hostname', 'autostart', 'provision'];
const NAMES_POOL = ['web', 'db', 'Web', '-x', 'a', 'abcdefghijklm', 'lan', 'examplevlan', 'backend', '1lan', 'TZ', '_', '1x', '.key', 'key.pem', '__proto__', 'constructor', 'toString', 'a b', ''];
const STRINGS = [
  '10.77.0.11', '10.77.0.1', '10.77.0.255', '10.77.0.300', '010.0.0.1', '1.2.3', '10.77.0.0/24', '10.77.0.5/24', '10.0.0.0/31', '10.0.0.0/08', '10.80.0.0/16',
  '/etc/motd', '/etc/./x', '/etc//x', '/etc/x/', '/', 'relative', '/var/lib/machines/x', '/var/lib/machinesx', '/etc/hostname', '/etc', '/root/.ssh/config',
  '/srv:/x:ro', '/a:/b:/c', '/srv/www', '/dev/fuse', '/dev', 'CAP_NET_RAW', 'cap_net_raw', 'CAP_MKNOD', '512M', '1.5G', '150%', '0%', '0644', '644', '0o644',
  'pick', 'identity', 'yes', 'state', 'overlay', '@system-service', '~@clock', '~@Clock', 'http://deb.debian.org/debian', 'ftp://x', 'ssh-ed25519 AAAA c',
  'web', 'db', 'examplevlan', 'backend', 'tcp', 'udp', 'icmp', 'debian', 'ubuntu', 'Debian', 'minbase', 'auto', 'strict', 'a\nb', 'a\0b', '', ' ', 'é', '__proto__',
];
const NUMBERS = [-1, 0, 1, 15, 16, 22, 80, 0.5, 1.5, 0.25, 1.555, 100, 256, 4096, 4097, 8080, 10000, 10001, 65535, 65536, 65537, 131072, 4194304, 4194305, 4294836224];
const leaf: fc.Arbitrary<Json> = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...STRINGS) },
  { weight: 4, arbitrary: fc.constantFrom(...NUMBERS) },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() },
);
const value: fc.Arbitrary<Json> = fc.oneof(
  { weight: 5, arbitrary: leaf },
  { weight: 1, arbitrary: fc.array(leaf, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom(...KEYS), leaf, { maxKeys: 2 }) },
  { weight: 4, arbitrary: fc.nat().map((i) => structuredClone(donors[i % donors.length])) },
);
/** Leaves of valid manifests by type: an address for an address, a path for a path, mostly. */
const donorLeaves = {
  string: [...new Set(donors.filter((d): d is string => typeof d === 'string'))],
  number: [...new Set(donors.filter((d): d is number => typeof d === 'number'))],
};
const mutation = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), value }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('same-type' as const), at: fc.nat(), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('add' as const), at: fc.nat(), key: fc.oneof(fc.constantFrom(...KEYS), fc.constantFrom(...NAMES_POOL)), value }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rename' as const), at: fc.nat(), name: fc.oneof(fc.constantFrom(...NAMES_POOL), fc.string({ maxLength: 14 })) }) },
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

/** The document with one mutation applied at the at-th place it can go. */
function apply(doc: Json, m: Mutation): void {
  const places = entries(doc);
  const objects: [Path, { [key: string]: Json }][] = [[[], doc as { [key: string]: Json }], ...places.filter(([, v]) => v !== null && typeof v === 'object' && !Array.isArray(v))] as [Path, { [key: string]: Json }][];
  const parentOf = (path: Path) => path.slice(0, -1).reduce<any>((node, key) => node[key], doc);
  if (m.kind === 'same-type') {
    const leaves = places.filter(([, v]) => typeof v === 'string' || typeof v === 'number');
    if (leaves.length === 0) return;
    const [path, old] = leaves[m.at % leaves.length];
    const pool = typeof old === 'string' ? donorLeaves.string : donorLeaves.number;
    Object.defineProperty(parentOf(path), path[path.length - 1], { value: pool[m.pick % pool.length], enumerable: true, writable: true, configurable: true });
  } else if (m.kind === 'replace' || m.kind === 'delete') {
    if (places.length === 0) return;
    const [path] = places[m.at % places.length];
    const parent = parentOf(path);
    const key = path[path.length - 1];
    if (m.kind === 'delete') Array.isArray(parent) ? parent.splice(key as number, 1) : delete parent[key];
    else Object.defineProperty(parent, key, { value: m.value, enumerable: true, writable: true, configurable: true });
  } else {
    const [, object] = objects[m.at % objects.length];
    if (m.kind === 'add') Object.defineProperty(object, m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
    else {
      const keys = Object.keys(object);
      if (keys.length === 0) return;
      const old = keys[m.at % keys.length];
      const rebuilt = keys.map((k): [string, Json] => [k === old ? m.name : k, object[k]]);
      for (const k of keys) delete object[k];
      for (const [k, v] of rebuilt) Object.defineProperty(object, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }
}

test('property: on mutated manifests the schema is never stricter than the loader, and the loader is stricter only by LOADER_ONLY', () => {
  const seen = { bothAccept: 0, bothRefuse: 0, loaderOnly: 0 };
  const rules: Record<string, number> = {};
  fc.assert(
    fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 2 }), (which, mutations) => {
      const doc = structuredClone(documents[which % documents.length]);
      for (const m of mutations) apply(doc, m);
      const text = stringify(doc);
      const v = judge(validate, text);
      if (v.schema.length > 0) {
        if (v.loader.length === 0) throw new Error(`the schema refuses what the loader takes (${v.schema.join('; ')}):\n${text}`);
        seen.bothRefuse++;
        return;
      }
      const other = v.loader.filter((_p, i) => !loaderOnlyRule(v.loaderMessages[i]));
      if (other.length > 0) throw new Error(`the schema accepts what the loader refuses for a rule the schema could state:\n${other.join('\n')}\n${text}`);
      for (const m of v.loaderMessages) rules[loaderOnlyRule(m)!] = (rules[loaderOnlyRule(m)!] ?? 0) + 1;
      if (v.loader.length > 0) seen.loaderOnly++;
      else seen.bothAccept++;
    }),
    { seed: SEED, numRuns: RUNS },
  );
  // Not vacuous: each outcome happens, and the loader-only ones for several rules.
  expect(seen.bothRefuse).toBeGreaterThan(RUNS / 4);
  expect(seen.bothAccept).toBeGreaterThan(RUNS / 20);
  expect(seen.loaderOnly).toBeGreaterThan(RUNS / 50);
  expect(Object.keys(rules).length).toBeGreaterThanOrEqual(3);
});
