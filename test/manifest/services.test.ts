// machines.NAME.services: every kind of bad input located at its key with its exact message, and
// what each preset resolves to, keys over it.
import { ExitCode, formatProblem, ManifestError } from '../../src/errors';
import { parseManifest } from '../../src/manifest/load';
import { KnownSyscalls } from '../../src/manifest/schema';
import { DEFAULT_DROPPED_CAPABILITIES, serviceDropInPath, serviceOfDropIn, STRICT_KEPT_CAPABILITIES } from '../../src/manifest/services';

const FILE = 'machines.yaml';
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
const NAME_RULE =
  'expected a unit name without .service (nginx, not nginx.service): 1-247 characters of A-Z a-z 0-9 _ . : -, then optionally @ and an instance, not starting with . or -, without ".."';

function problems(text: string, known?: KnownSyscalls): string[] {
  try {
    parseManifest(FILE, text, known);
  } catch (err) {
    if (!(err instanceof ManifestError)) throw err;
    expect(err.exitCode).toBe(ExitCode.invalidManifest);
    return err.problems.map(formatProblem);
  }
  throw new Error('expected the manifest to be rejected, but it loaded');
}

/** A machine `web` whose services: block is `lines` (indented under it). */
const withServices = (...lines: string[]) => yaml('machines:', '  web:', '    services:', ...lines.map((l) => `      ${l}`));

describe('unit names become paths inside the machine: only plain unit names', () => {
  test.each([
    ['nginx.service', 'the .service suffix'],
    ['../../../etc/x', 'a path'],
    ['a/b', 'a slash'],
    ['a..b', 'two dots'],
    ['.hidden', 'a leading dot'],
    ['-x', 'a leading dash (an option to systemctl)'],
    ['getty@', 'a template without an instance'],
    ['a@b@c', 'two instances'],
    ['ngin x', 'a space'],
    ['a\\x2db', 'a backslash escape'],
    ['x'.repeat(248), 'a name longer than 247 characters'],
  ])('%j (%s) is refused at the name', (name) => {
    const shown = /^[A-Za-z0-9_-]+$/.test(name) ? name : JSON.stringify(name);
    expect(problems(withServices(`${JSON.stringify(name)}: {}`))).toEqual([`machines.yaml:4:7: machines.web.services.${shown}: ${NAME_RULE}`]);
  });

  test('__proto__ is refused, not dropped', () => {
    expect(problems(withServices('__proto__: {}'))).toEqual([`machines.yaml:4:7: machines.web.services.__proto__: ${NAME_RULE}`]);
  });

  test.each(['nginx', 'php8.2-fpm', 'postgresql@15-main', 'systemd-networkd', 'a', 'x'.repeat(247), 'user@1000', 'a:b_c'])('%s is a unit name', (name) => {
    expect(parseManifest(FILE, withServices(`${name}: {}`)).machines.web.services.map((s) => s.name)).toEqual([name]);
  });

  test('the drop-in path and back', () => {
    expect(serviceDropInPath('postgresql@15-main')).toBe('/etc/systemd/system/postgresql@15-main.service.d/50-nspawnctl-hardening.conf');
    expect(serviceOfDropIn('/etc/systemd/system/postgresql@15-main.service.d/50-nspawnctl-hardening.conf')).toBe('postgresql@15-main');
    for (const other of ['/etc/systemd/system/nginx.service.d/60-local.conf', '/etc/systemd/system/nginx.socket.d/50-nspawnctl-hardening.conf', '/x/etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf', '/etc/systemd/system/.x.service.d/50-nspawnctl-hardening.conf']) {
      expect(serviceOfDropIn(other)).toBeUndefined();
    }
  });
});

describe('each key refuses a bad value at its place', () => {
  test('unknown keys and presets, with suggestions', () => {
    expect(problems(withServices('nginx:', '  preset: paranoid', '  protectSytem: strict'))).toEqual([
      'machines.yaml:5:17: machines.web.services.nginx.preset: expected one of default, strict, none, got "paranoid"',
      expect.stringMatching(/^machines\.yaml:6:9: machines\.web\.services\.nginx\.protectSytem: unknown key \(did you mean protectSystem\?\); expected one of: preset, protectSystem, protectHome, privateTmp, /),
    ]);
  });

  test('protectSystem, protectHome and systemCallArchitectures take their own words', () => {
    expect(problems(withServices('nginx:', '  protectSystem: yes', '  protectHome: ro', '  systemCallArchitectures: x86-64'))).toEqual([
      'machines.yaml:5:24: machines.web.services.nginx.protectSystem: expected true, false, full or strict',
      'machines.yaml:6:22: machines.web.services.nginx.protectHome: expected true, false, read-only or tmpfs',
      'machines.yaml:7:34: machines.web.services.nginx.systemCallArchitectures: expected native or false',
    ]);
  });

  test('switches are booleans', () => {
    expect(problems(withServices('nginx:', '  privateTmp: "yes"'))).toEqual(['machines.yaml:5:21: machines.web.services.nginx.privateTmp: expected a boolean, got a string']);
  });

  test('readWritePaths: absolute, one spelling, - allowed in front', () => {
    expect(problems(withServices('nginx:', '  readWritePaths: [var/lib, /var/../etc, --/x, /run/, -/]'))).toEqual([
      'machines.yaml:5:26: machines.web.services.nginx.readWritePaths[0]: expected an absolute path of letters, digits and . _ @ + - /, optionally with - in front (ignored when missing)',
      'machines.yaml:5:35: machines.web.services.nginx.readWritePaths[1]: path must name something below /, without "//", "." or ".." segments or a trailing "/"',
      'machines.yaml:5:48: machines.web.services.nginx.readWritePaths[2]: expected an absolute path of letters, digits and . _ @ + - /, optionally with - in front (ignored when missing)',
      'machines.yaml:5:54: machines.web.services.nginx.readWritePaths[3]: path must name something below /, without "//", "." or ".." segments or a trailing "/"',
      'machines.yaml:5:61: machines.web.services.nginx.readWritePaths[4]: path must name something below /, without "//", "." or ".." segments or a trailing "/"',
    ]);
  });

  test('capabilities: known names with a suggestion; keep or drop, not both', () => {
    expect(problems(withServices('nginx:', '  capabilities: { keep: [cap_net_bind_service], drop: [CAP_SYS_ADMIN] }'))).toEqual([
      'machines.yaml:5:23: machines.web.services.nginx.capabilities: set keep or drop, not both',
      'machines.yaml:5:32: machines.web.services.nginx.capabilities.keep[0]: unknown capability "cap_net_bind_service" (did you mean CAP_NET_BIND_SERVICE?)',
    ]);
  });

  test('restrictAddressFamilies: known families, with a suggestion', () => {
    expect(problems(withServices('nginx:', '  restrictAddressFamilies: [AF_INET, AF_INETT, INET6, AF_WHATEVER]'))).toEqual([
      'machines.yaml:5:44: machines.web.services.nginx.restrictAddressFamilies[1]: unknown address family "AF_INETT" (did you mean AF_INET?)',
      'machines.yaml:5:54: machines.web.services.nginx.restrictAddressFamilies[2]: unknown address family "INET6" (did you mean AF_INET6?)',
      'machines.yaml:5:61: machines.web.services.nginx.restrictAddressFamilies[3]: unknown address family "AF_WHATEVER" (see address_families(7), e.g. AF_INET)',
    ]);
  });

  test('deviceAllow: a device below /dev or a driver class, then r, w, m', () => {
    expect(parseManifest(FILE, withServices('nginx:', '  deviceAllow: ["/dev/urandom r", "char-rtc r", "block-loop rwm", /dev/net/tun]')).machines.web.services[0].settings.deviceAllow).toEqual([
      '/dev/urandom r',
      'char-rtc r',
      'block-loop rwm',
      '/dev/net/tun',
    ]);
    expect(problems(withServices('nginx:', '  deviceAllow: ["/etc/passwd r", "/dev/../etc r", "/dev/null x", "char-rtc  r"]'))).toEqual(
      [23, 40, 57, 72].map((col, i) => `machines.yaml:5:${col}: machines.web.services.nginx.deviceAllow[${i}]: expected a device and its access, like "/dev/urandom r" or "char-rtc r"`),
    );
  });

  test("systemCallFilter: the syntax always, the names against the host's systemd", () => {
    expect(problems(withServices('nginx:', '  systemCallFilter: ["@system-service", "~@Clock"]'))).toEqual([
      'machines.yaml:5:47: machines.web.services.nginx.systemCallFilter[1]: expected a system call name or @group, optionally prefixed with ~ to deny it (like @system-service or ~@mount)',
    ]);
    const known: KnownSyscalls = { groups: new Set(['@system-service', '@aio']), names: new Set(['getcpu']) };
    expect(problems(withServices('nginx:', '  systemCallFilter: ["@system-servic", "~@aio", "~getcpuu"]'), known)).toEqual([
      "machines.yaml:5:28: machines.web.services.nginx.systemCallFilter[0]: this host's systemd knows no system call group @system-servic (did you mean @system-service?); systemd-analyze syscall-filter lists them",
      "machines.yaml:5:55: machines.web.services.nginx.systemCallFilter[2]: this host's systemd knows no system call named getcpuu (did you mean getcpu?); systemd-analyze syscall-filter lists them",
    ]);
  });
});

describe('rules across keys', () => {
  test('files: may not take a drop-in nspawnctl writes, its directory, or a path below it; a sibling is fine', () => {
    const text = yaml(
      'machines:',
      '  web:',
      '    services: { nginx: {} }',
      '    files:',
      '      - { path: /etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf, content: "" }',
      '      - { path: /etc/systemd/system/nginx.service.d, content: "" }',
      '      - { path: /etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf/x, content: "" }',
      '      - { path: /etc/systemd/system/nginx.service.d/60-mine.conf, content: "" }',
      '      - { path: /etc/systemd/system/cron.service.d/50-nspawnctl-hardening.conf, content: "" }',
    );
    expect(problems(text)).toEqual([
      'machines.yaml:5:17: machines.web.files[0].path: /etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf is written by nspawnctl itself (from services.nginx:); set the service\'s hardening there instead',
      'machines.yaml:6:17: machines.web.files[1].path: /etc/systemd/system/nginx.service.d is a directory holding /etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf, which nspawnctl writes itself (from services.nginx:); a file cannot take its place',
      'machines.yaml:7:17: machines.web.files[2].path: /etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf/x is below /etc/systemd/system/nginx.service.d/50-nspawnctl-hardening.conf, a file nspawnctl writes itself (from services.nginx:), not a directory',
    ]);
  });

  test("a machine whose /etc is a fresh tmpfs (volatile: yes, its own or the defaults') would never see the drop-ins", () => {
    const message = "services need the machine's own /etc: with volatile: yes it is an empty tmpfs at every start, so the machine would never see their drop-ins (use volatile: state or overlay)";
    expect(problems(yaml('machines:', '  web:', '    security: { volatile: yes }', '    services: { nginx: {} }'))).toEqual([`machines.yaml:4:15: machines.web.services: ${message}`]);
    expect(problems(yaml('defaults:', '  security: { volatile: true }', 'machines:', '  web:', '    services: { nginx: {} }'))).toEqual([`machines.yaml:5:15: machines.web.services: ${message}`]);
    expect(parseManifest(FILE, yaml('machines:', '  web:', '    security: { volatile: state }', '    services: { nginx: {} }')).machines.web.services).toHaveLength(1);
  });
});

describe('presets, and keys over them', () => {
  const services = (...lines: string[]) => parseManifest(FILE, withServices(...lines)).machines.web.services;

  test('no preset is default; services come sorted by name', () => {
    const [a, b] = services('zeta: {}', 'alpha: { preset: none }');
    expect([a.name, a.preset, a.settings]).toEqual(['alpha', 'none', {}]);
    expect([b.name, b.preset]).toEqual(['zeta', 'default']);
    expect(b.settings).toEqual({
      protectSystem: 'full',
      protectHome: 'read-only',
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
      systemCallFilter: ['~@clock', '~@cpu-emulation', '~@debug', '~@module', '~@mount', '~@obsolete', '~@raw-io', '~@reboot', '~@swap'],
      capabilities: { drop: DEFAULT_DROPPED_CAPABILITIES },
    });
  });

  test('strict: writable paths named after the unit (the template for an instance)', () => {
    const [nginx, pg] = services('nginx: { preset: strict }', 'postgresql@15-main: { preset: strict }');
    expect(nginx.settings).toMatchObject({
      protectSystem: 'strict',
      protectHome: true,
      privateDevices: true,
      noNewPrivileges: true,
      restrictNamespaces: true,
      memoryDenyWriteExecute: true,
      systemCallFilter: ['@system-service'],
      readWritePaths: ['-/run', '-/var/cache/nginx', '-/var/lib/nginx', '-/var/log/nginx'],
      capabilities: { keep: STRICT_KEPT_CAPABILITIES },
      restrictAddressFamilies: ['AF_INET', 'AF_INET6', 'AF_UNIX'],
    });
    expect(pg.settings.readWritePaths).toEqual(['-/run', '-/var/cache/postgresql', '-/var/lib/postgresql', '-/var/log/postgresql']);
  });

  test('a key replaces the preset\'s value: lists whole, capabilities as one setting, false stays false', () => {
    const [s] = services('nginx:', '  preset: strict', '  systemCallFilter: ["@system-service", "~@aio"]', '  capabilities: { drop: [CAP_SYS_ADMIN] }', '  privateDevices: false', '  readWritePaths: []');
    expect(s.settings.systemCallFilter).toEqual(['@system-service', '~@aio']);
    expect(s.settings.capabilities).toEqual({ drop: ['CAP_SYS_ADMIN'] });
    expect(s.settings.privateDevices).toBe(false);
    expect(s.settings.readWritePaths).toEqual([]);
    expect(s.settings.protectSystem).toBe('strict');
  });
});
