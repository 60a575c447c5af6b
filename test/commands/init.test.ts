// `nspawnctl init`: a starter manifest from a fake host (its os-release, `ip` answers and
// resolv.conf), written without ever overwriting, loading cleanly with the project's loader.
import './helpers/oclif-listeners';
import { lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import Init from '../../src/commands/init';
import { createRealHost, Host } from '../../src/host/host';
import { IP_ADDR_ARGS, IP_ROUTE_ARGS } from '../../src/init/observe';
import { parseManifest } from '../../src/manifest/load';
import { FakeHost } from '../helpers/fake-host';
import { REPO_ROOT, runCommand, TEST_CWD } from '../helpers/run-command';

const OS = {
  bookworm: 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
  trixie: 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\nVERSION="13 (trixie)"\nVERSION_CODENAME=trixie\nID=debian\n',
  noble: 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION="24.04.1 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=noble\n',
  jammy: 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=jammy\n',
  fedora: 'NAME="Fedora Linux"\nVERSION="40 (Server Edition)"\nID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40 (Server Edition)"\n',
};

/** The `ip -json` answers of a host with eth0 (192.168.1.20/24) and lo. */
const ROUTES = [
  { dst: 'default', gateway: '192.168.1.1', dev: 'eth0', flags: [] },
  { dst: '192.168.1.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '192.168.1.20', flags: [] },
  { type: 'local', dst: '127.0.0.0/8', dev: 'lo', table: 'local', flags: [] },
  { type: 'local', dst: '192.168.1.20', dev: 'eth0', table: 'local', flags: [] },
  { type: 'broadcast', dst: '192.168.1.255', dev: 'eth0', table: 'local', flags: [] },
];
const LINKS = [
  { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }, { family: 'inet6', local: '::1', prefixlen: 128 }] },
  { ifname: 'eth0', addr_info: [{ family: 'inet', local: '192.168.1.20', prefixlen: 24 }] },
];

interface HostSetup {
  osRelease?: string | null;
  osReleaseAt?: string;
  routes?: object[];
  links?: object[];
  ipFails?: boolean;
  resolvConf?: string | null;
  uplink?: string;
}

/** A fake host to ask; answers only `ip -json -4 route show table all` and `ip -json addr show`. */
function makeHost(setup: HostSetup = {}): FakeHost {
  const host = new FakeHost({ uid: 1000 });
  if (setup.osRelease !== null) host.fs.addFile(setup.osReleaseAt ?? '/etc/os-release', setup.osRelease ?? OS.bookworm);
  if (setup.resolvConf !== null) host.fs.addFile('/etc/resolv.conf', setup.resolvConf ?? 'nameserver 192.168.1.1\n');
  if (setup.uplink !== undefined) host.fs.addFile('/run/systemd/resolve/resolv.conf', setup.uplink);
  if (setup.ipFails) {
    host.runner.on(['ip', ...IP_ROUTE_ARGS], { exitCode: 1, stderr: 'Error: Unknown device\n' });
  } else {
    host.runner.on(['ip', ...IP_ROUTE_ARGS], { stdout: JSON.stringify(setup.routes ?? ROUTES) });
    host.runner.on(['ip', ...IP_ADDR_ARGS], { stdout: JSON.stringify(setup.links ?? LINKS) });
  }
  return host;
}

/** Init, asking `host` and writing through `out` (a filesystem rooted at the target's directory). */
function initWith(host: Host, out: (root: string) => Host, roots: string[] = []) {
  return class extends Init {
    protected override createHost(root = '/'): Host {
      roots.push(root);
      return root === '/' ? host : out(root);
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };
}

/** The $schema path the starter in /srv/conf gets: this checkout's schema, relative to it. */
const SCHEMA = posix.relative(TEST_CWD, posix.join(REPO_ROOT, 'schema', 'machines.schema.json'));

async function runInit(setup: HostSetup = {}, argv: string[] = []) {
  const host = makeHost(setup);
  const out = new FakeHost();
  const roots: string[] = [];
  const r = await runCommand(initWith(host, () => out, roots), argv);
  return { ...r, host, out, roots, text: out.fs.textAt('/machines.yaml') };
}

const EXPECTED_BOOKWORM = [
  `# yaml-language-server: $schema=${SCHEMA}`,
  '# The line above lets editors with the YAML language server (VS Code, Neovim, ...) check this',
  '# file and complete its keys. Its path is relative to this file and leads to the schema of the',
  '# nspawnctl that wrote it; if you move the file, or use the Debian package, point it at the',
  '# installed copy: $schema=/usr/lib/nspawnctl/schema/machines.schema.json',
  '#',
  '# A starter manifest written by `nspawnctl init`: one machine on a private bridge with NAT.',
  '# Every key is documented in docs/manifest.md. As root:',
  '#   nspawnctl host init machines.yaml   # once: packages, networkd, the bridge, forwarding',
  '#   nspawnctl plan machines.yaml        # what apply would do',
  '#   nspawnctl apply machines.yaml       # create and start the machine',
  '',
  'defaults:',
  '  # The release this host runs: Debian 12 (bookworm).',
  '  distribution: debian',
  '  suite: bookworm',
  "  # DNS: dns: is left out on purpose. Each machine keeps the copy of this host's",
  '  # /etc/resolv.conf that its bootstrapper made (nameserver 192.168.1.1), reached through the',
  "  # network's NAT: systemd-nspawn leaves that file alone for a machine on a bridge. Set dns:",
  "  # only to use other servers. Do not use the bridge's gateway (10.77.0.1): nothing answers DNS",
  '  # there.',
  '  # Containment for every machine (docs/security.md): its own UID range, fewer capabilities, no',
  '  # new privileges, a seccomp deny list.',
  '  security:',
  '    preset: strict',
  '',
  'networks:',
  '  # A bridge on the host, which is 10.77.0.1 on it. 10.77.0.0/24 overlaps no route or address of',
  '  # this host (asked with `ip route` and `ip addr` when this file was written).',
  '  nspawn0:',
  '    subnet: 10.77.0.0/24',
  '    # Machines reach the outside world (apt, DNS) through the host, masqueraded.',
  '    nat: true',
  '',
  'machines:',
  '  web:',
  '    network: { bridge: nspawn0, address: 10.77.0.10 }',
  '    autostart: true',
  '    # More keys (docs/manifest.md):',
  '    # packages: [nginx]',
  '    # ports:',
  '    #   - { host: 8080, container: 80 }',
  '    # bind: ["/srv/www:/var/www:ro"]',
  '',
].join('\n');

describe('nspawnctl init on a Debian 12 host', () => {
  test('writes machines.yaml in the working directory, exactly, and says what it chose', async () => {
    const r = await runInit();
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      'Wrote machines.yaml: debian bookworm, network nspawn0 10.77.0.0/24 with NAT, machine web at 10.77.0.10, DNS: the host\'s resolv.conf.\n' +
        'Next, as root: nspawnctl host init machines.yaml && nspawnctl apply machines.yaml\n',
    );
    expect(r.text).toBe(EXPECTED_BOOKWORM);
    // Written once, new (never replacing), through a filesystem rooted at the working directory;
    // the host was only asked.
    expect(r.roots).toEqual(['/', TEST_CWD]);
    expect(r.out.fs.changes).toEqual(['create /machines.yaml']);
    expect(r.out.fs.nodes.get('/machines.yaml')).toMatchObject({ mode: 0o644 });
    expect(r.host.fs.changes).toEqual([]);
    expect(r.host.runner.argvs()).toEqual([
      ['ip', '-json', '-4', 'route', 'show', 'table', 'all'],
      ['ip', '-json', 'addr', 'show'],
    ]);
  });

  test('the file loads cleanly with the manifest loader, with what the comments say', async () => {
    const { text } = await runInit();
    const m = parseManifest('machines.yaml', text!);
    expect(text!.split('\n')[0]).toBe(`# yaml-language-server: $schema=${SCHEMA}`);
    expect(Object.keys(m.networks)).toEqual(['nspawn0']);
    expect(m.networks.nspawn0).toEqual(expect.objectContaining({ subnetText: '10.77.0.0/24', gateway: '10.77.0.1', nat: true }));
    expect(Object.keys(m.machines)).toEqual(['web']);
    expect(m.machines.web).toEqual(expect.objectContaining({ distribution: 'debian', suite: 'bookworm', dns: [], autostart: true }));
    expect(m.machines.web.network).toEqual(expect.objectContaining({ bridge: 'nspawn0', address: '10.77.0.10' }));
  });

  test('FILE elsewhere: written there, with its name in the comments; the schema path is relative to it', async () => {
    const host = makeHost();
    const out = new FakeHost();
    const roots: string[] = [];
    const r = await runCommand(initWith(host, () => out, roots), ['../nspawn/web.yaml']);
    expect(r.exitCode).toBe(0);
    expect(roots).toEqual(['/', '/srv/nspawn']);
    const text = out.fs.textAt('/web.yaml')!;
    expect(text.split('\n')[0]).toBe(`# yaml-language-server: $schema=${posix.relative('/srv/nspawn', posix.join(REPO_ROOT, 'schema/machines.schema.json'))}`);
    expect(text).toContain('\n#   nspawnctl host init ../nspawn/web.yaml   # once: packages, networkd, the bridge, forwarding\n');
    expect(r.stdout).toBe(
      'Wrote ../nspawn/web.yaml: debian bookworm, network nspawn0 10.77.0.0/24 with NAT, machine web at 10.77.0.10, DNS: the host\'s resolv.conf.\n' +
        'Next, as root: nspawnctl host init ../nspawn/web.yaml && nspawnctl apply ../nspawn/web.yaml\n',
    );
  });
});

describe("the host's release", () => {
  test.each([
    ['Debian 12', { osRelease: OS.bookworm }, 'debian', 'bookworm', '  # The release this host runs: Debian 12 (bookworm).'],
    ['Debian 13', { osRelease: OS.trixie }, 'debian', 'trixie', '  # The release this host runs: Debian 13 (trixie).'],
    ['Ubuntu 24.04', { osRelease: OS.noble }, 'ubuntu', 'noble', '  # The release this host runs: Ubuntu 24.04 (noble).'],
    ['os-release only in /usr/lib', { osReleaseAt: '/usr/lib/os-release', osRelease: OS.noble }, 'ubuntu', 'noble', '  # The release this host runs: Ubuntu 24.04 (noble).'],
  ])('%s: its own distribution and suite', async (_, setup, distribution, suite, line) => {
    const r = await runInit(setup);
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect(r.text).toContain(`\ndefaults:\n${line}\n  distribution: ${distribution}\n  suite: ${suite}\n`);
    expect(parseManifest('machines.yaml', r.text!).machines.web).toEqual(expect.objectContaining({ distribution, suite }));
  });

  test.each([
    ['Ubuntu 22.04', { osRelease: OS.jammy }, 'this host is "Ubuntu 22.04.4 LTS", not Debian 12 (bookworm), Debian 13 (trixie) or Ubuntu 24.04 (noble); using Debian 12 (bookworm)'],
    ['Fedora', { osRelease: OS.fedora }, 'this host is "Fedora Linux 40 (Server Edition)", not Debian 12 (bookworm), Debian 13 (trixie) or Ubuntu 24.04 (noble); using Debian 12 (bookworm)'],
    ['no os-release', { osRelease: null }, 'could not read /etc/os-release; using Debian 12 (bookworm)'],
  ])('%s: Debian 12 (bookworm), said on stderr and in the file', async (_, setup, note) => {
    const r = await runInit(setup);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe(`warning: ${note}\n`);
    expect(r.text).toContain('\n  distribution: debian\n  suite: bookworm\n');
    expect(r.text).toContain(`\n  # ${note.replace(/^./, (c) => c.toUpperCase())}`.slice(0, 60));
    expect(parseManifest('machines.yaml', r.text!).machines.web).toEqual(expect.objectContaining({ distribution: 'debian', suite: 'bookworm' }));
  });
});

describe('a subnet no route or address of the host overlaps', () => {
  const route = (dst: string, extra: object = {}) => ({ dst, dev: 'x', flags: [], ...extra });
  test.each([
    ['only the default route and eth0', '10.77.0.0/24', 'nspawn0', ROUTES, LINKS],
    ['a route to 10.77.0.0/24', '10.77.1.0/24', 'nspawn0', [...ROUTES, route('10.77.0.0/24')], LINKS],
    ['a host route to 10.77.0.1', '10.77.1.0/24', 'nspawn0', [...ROUTES, route('10.77.0.1')], LINKS],
    ['10.77.0.0/24 to 10.77.4.0/22 taken', '10.77.8.0/24', 'nspawn0', [...ROUTES, route('10.77.0.0/24'), route('10.77.1.0/24'), route('10.77.2.0/23'), route('10.77.4.0/22')], LINKS],
    ['a VPN routing all of 10/8 in its own table', '172.27.0.0/24', 'nspawn0', [...ROUTES, route('10.0.0.0/8', { table: '51820' })], LINKS],
    ['10/8 and 172.27/16 routed', '192.168.77.0/24', 'nspawn0', [...ROUTES, route('10.0.0.0/8'), route('172.16.0.0/12')], LINKS],
    ['an address in 10.77/16 without a route', '172.27.0.0/24', 'nspawn0', ROUTES, [...LINKS, { ifname: 'wg0', addr_info: [{ family: 'inet', local: '10.77.3.9', prefixlen: 16 }] }]],
    ['an interface named nspawn0 (down, no address)', '10.77.0.0/24', 'nspawn1', ROUTES, [...LINKS, { ifname: 'nspawn0', addr_info: [] }]],
  ])('%s -> %s on %s', async (_, subnet, bridge, routes, links) => {
    const r = await runInit({ routes, links });
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    const m = parseManifest('machines.yaml', r.text!);
    expect(Object.keys(m.networks)).toEqual([bridge]);
    expect(m.networks[bridge]).toEqual(expect.objectContaining({ subnetText: subnet, nat: true }));
    expect(r.stdout.split('\n')[0]).toContain(`network ${bridge} ${subnet} with NAT`);
  });

  test('when ip cannot be asked: 10.77.0.0/24, with a warning on stderr and in the file', async () => {
    const r = await runInit({ ipFails: true });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe(
      "warning: could not ask ip for this host's routes and addresses (command ip -json -4 route show table all exited with code 1); check that 10.77.0.0/24 is not in use here\n",
    );
    expect(r.text).toContain("\n  # A bridge on the host, which is 10.77.0.1 on it. 10.77.0.0/24 was NOT checked against this\n  # host's routes and addresses (ip could not be asked).\n");
    expect(parseManifest('machines.yaml', r.text!).networks.nspawn0.subnetText).toBe('10.77.0.0/24');
  });
});

describe('DNS a machine can reach', () => {
  test('a stub resolver (systemd-resolved): the servers it forwards to, in dns:', async () => {
    const r = await runInit({ osRelease: OS.noble, resolvConf: 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n', uplink: 'nameserver 192.168.1.1\nnameserver 2001:db8::1\nnameserver 9.9.9.9\n' });
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect(r.text).toContain(
      [
        "  # DNS: this host's /etc/resolv.conf names 127.0.0.53, a resolver on the host's own loopback",
        '  # that a machine cannot reach, so a copy of it would not work. These are the servers that',
        '  # resolver forwards to (/run/systemd/resolve/resolv.conf when this file was written), reached',
        "  # through NAT; update them when the host's change. Do not use the bridge's gateway",
        '  # (10.77.0.1): nothing answers DNS there.',
        '  dns: [192.168.1.1, 9.9.9.9]',
      ].join('\n'),
    );
    expect(parseManifest('machines.yaml', r.text!).machines.web.dns).toEqual(['192.168.1.1', '9.9.9.9']);
    expect(r.stdout.split('\n')[0]).toBe('Wrote machines.yaml: ubuntu noble, network nspawn0 10.77.0.0/24 with NAT, machine web at 10.77.0.10, DNS: 192.168.1.1, 9.9.9.9.');
  });

  test('a stub resolver and no upstream server known: no dns:, and a warning to set it', async () => {
    const r = await runInit({ resolvConf: 'nameserver 127.0.0.1\n' });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('warning: no DNS server a machine can reach was found (/etc/resolv.conf names 127.0.0.1); set defaults.dns in the manifest\n');
    expect(r.text).toContain(
      [
        "  # DNS: this host's /etc/resolv.conf names 127.0.0.1, and a machine cannot reach a resolver on",
        "  # the host's loopback. Set the servers of your network here, e.g. dns: [192.0.2.53]. Do not",
        "  # use the bridge's gateway (10.77.0.1): nothing answers DNS there.",
        '  # Containment',
      ].join('\n'),
    );
    expect(r.text).not.toMatch(/^\s*dns:/m);
    expect(parseManifest('machines.yaml', r.text!).machines.web.dns).toEqual([]);
  });

  test('never the bridge gateway', async () => {
    for (const setup of [{}, { resolvConf: 'nameserver 127.0.0.53\n', uplink: 'nameserver 192.168.1.1\n' }, { resolvConf: null }]) {
      const { text } = await runInit(setup);
      const dns = parseManifest('machines.yaml', text!).machines.web.dns;
      expect(dns).not.toContain('10.77.0.1');
    }
  });
});

describe('never overwriting', () => {
  test('an existing FILE: exit 2, nothing written', async () => {
    const host = makeHost();
    const out = new FakeHost();
    out.fs.addFile('/machines.yaml', 'machines: {}\n');
    const r = await runCommand(initWith(host, () => out), []);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('nspawnctl: machines.yaml already exists; nothing was written\nhint: Name another file, or see the starter with: nspawnctl init -\n');
    expect(out.fs.changes).toEqual([]);
    expect(out.fs.textAt('/machines.yaml')).toBe('machines: {}\n');
  });

  describe('on a real filesystem', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'nspawnctl-init-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    const realInit = () => initWith(makeHost(), (root) => createRealHost(root));

    test('writes a new file, mode 0644, that loads', async () => {
      const r = await runCommand(realInit(), [join(dir, 'machines.yaml')]);
      expect([r.exitCode, r.stderr]).toEqual([0, '']);
      expect(lstatSync(join(dir, 'machines.yaml')).mode & 0o777).toBe(0o644);
      expect(parseManifest('machines.yaml', readFileSync(join(dir, 'machines.yaml'), 'utf8')).machines.web.name).toBe('web');
    });

    test('an existing file, or a symlink (even a dangling one), is left as it was', async () => {
      writeFileSync(join(dir, 'machines.yaml'), 'mine\n');
      symlinkSync(join(dir, 'nowhere.yaml'), join(dir, 'link.yaml'));
      for (const name of ['machines.yaml', 'link.yaml']) {
        const r = await runCommand(realInit(), [join(dir, name)]);
        expect([name, r.exitCode, r.stdout]).toEqual([name, 2, '']);
        expect(r.stderr).toBe(`nspawnctl: ${join(dir, name)} already exists; nothing was written\nhint: Name another file, or see the starter with: nspawnctl init -\n`);
      }
      expect(readFileSync(join(dir, 'machines.yaml'), 'utf8')).toBe('mine\n');
      expect(lstatSync(join(dir, 'link.yaml')).isSymbolicLink()).toBe(true);
      expect(() => lstatSync(join(dir, 'nowhere.yaml'))).toThrow();
    });
  });

  test('a directory it may not write to: exit 1, said plainly', async () => {
    const out = new FakeHost();
    out.fs.createExclusive = async () => {
      throw Object.assign(new Error("EACCES: permission denied, open '/etc/.machines.yaml.nspawnctl-1a2b3c4d'"), { code: 'EACCES' });
    };
    const r = await runCommand(initWith(makeHost(), () => out), ['/etc/machines.yaml']);
    expect([r.exitCode, r.stdout]).toEqual([1, '']);
    expect(r.stderr).toBe('nspawnctl: cannot write /etc/machines.yaml: permission denied; nothing was written\n');
  });

  test('a FILE inside a machine\'s root filesystem is refused (exit 2) before anything is asked', async () => {
    const r = await runInit({}, ['/var/lib/machines/web/etc/machines.yaml']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe("nspawnctl: refusing to write /var/lib/machines/web/etc/machines.yaml: it is inside a machine's root filesystem\n");
    expect(r.roots).toEqual([]);
  });
});

test('"-" prints the manifest on stdout and writes nothing', async () => {
  const r = await runInit({}, ['-']);
  expect([r.exitCode, r.stderr]).toEqual([0, '']);
  // relative to the working directory, where the manifest will presumably be saved
  expect(r.stdout).toBe(EXPECTED_BOOKWORM);
  expect(r.roots).toEqual(['/']);
  expect(r.out.fs.changes).toEqual([]);
});
