// A fleet manifest cut per host: each host's slice (its machines without host:, the networks they
// join, the defaults) parses again to the same machines; which hosts --host and --hosts-label pick.
import { NspawnctlError } from '../../src/errors';
import { fleetOf, hostSlice, machinesOn, selectHosts } from '../../src/fleet/slice';
import { parseManifest } from '../../src/manifest/load';
import { Machine, Manifest } from '../../src/manifest/schema';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

const FLEET = yaml(
  'defaults:',
  '  packages: [curl]',
  '  dns: [192.0.2.53]',
  '  environment: { TZ: UTC }',
  'hosts:',
  '  alpha: { ssh: root@10.0.0.5, labels: [eu, db] }',
  '  beta: { ssh: deploy@beta.example, port: 2222, sudo: true, labels: [us] }',
  '  gamma: { ssh: gamma, labels: [eu] }',
  'networks:',
  '  lan: { subnet: 10.77.0.0/24, isolated: true }',
  '  dmz: { subnet: 10.78.0.0/24, nat: true }',
  '  spare: { subnet: 10.79.0.0/24 }',
  'machines:',
  '  web:',
  '    host: alpha',
  '    network: { bridge: lan, address: 10.77.0.10, allow: [{ from: db, port: 80 }] }',
  '    ports: [{ host: 8080, container: 80 }]',
  '    packages: [nginx]',
  '  db: { host: alpha, network: { bridge: lan, address: 10.77.0.11 } }',
  '  api: { host: beta, network: { bridge: dmz, address: 10.78.0.10 }, environment: { TZ: Europe/Berlin } }',
  '  tool: { host: beta }',
);

const manifest = parseManifest('fleet.yaml', FLEET);
const fleet = manifest.fleet!;
const withoutHost = ({ host: _host, ...m }: Machine) => m;

function thrown(fn: () => unknown): NspawnctlError {
  try {
    fn();
  } catch (err) {
    if (err instanceof NspawnctlError) return err;
    throw err;
  }
  throw new Error('expected an NspawnctlError');
}

describe('hostSlice', () => {
  test("holds only the host's machines, without host:, and only the networks they join", () => {
    const slice = JSON.parse(hostSlice(fleet, 'alpha'));
    expect(Object.keys(slice).sort()).toEqual(['defaults', 'machines', 'networks']);
    expect(Object.keys(slice.machines).sort()).toEqual(['db', 'web']);
    expect(Object.values(slice.machines).some((m) => 'host' in (m as object))).toBe(false);
    expect(slice.networks).toEqual({ lan: { subnet: '10.77.0.0/24', nat: false, isolated: true } });
  });

  test('keeps the defaults as the fleet manifest has them', () => {
    for (const h of ['alpha', 'beta', 'gamma']) {
      expect(JSON.parse(hostSlice(fleet, h)).defaults).toEqual(fleet.data.defaults);
    }
    expect(fleet.data.defaults).toMatchObject({ packages: ['curl'], dns: ['192.0.2.53'], environment: { TZ: 'UTC' } });
  });

  test('has no hosts: section, so the host reads it as a one-host manifest', () => {
    const text = hostSlice(fleet, 'beta');
    expect(JSON.parse(text)).not.toHaveProperty('hosts');
    expect(parseManifest('-', text).fleet).toBeUndefined();
  });

  test.each(['alpha', 'beta'])("%s's slice parses again to the fleet's machines on it, minus host", (h) => {
    const again = parseManifest('-', hostSlice(fleet, h));
    const expected = Object.fromEntries(
      Object.values(manifest.machines)
        .filter((m) => m.host === h)
        .map((m) => [m.name, withoutHost(m)]),
    );
    expect(Object.keys(expected).length).toBeGreaterThan(0);
    expect(again.machines).toEqual(expected);
    expect(Object.keys(again.networks)).toEqual(h === 'alpha' ? ['lan'] : ['dmz']);
    expect(again.networks[h === 'alpha' ? 'lan' : 'dmz']).toEqual(manifest.networks[h === 'alpha' ? 'lan' : 'dmz']);
  });

  test('a machine without network brings no network; a host without machines gets an empty slice that parses', () => {
    // beta: api on dmz, tool without network.
    expect(Object.keys(JSON.parse(hostSlice(fleet, 'beta')).networks)).toEqual(['dmz']);
    const empty = JSON.parse(hostSlice(fleet, 'gamma'));
    expect(empty).toEqual({ defaults: fleet.data.defaults, networks: {}, machines: {} });
    expect(parseManifest('-', hostSlice(fleet, 'gamma')).machines).toEqual({});
  });

  test('a network used on two hosts is in both slices', () => {
    const two = parseManifest(
      'fleet.yaml',
      yaml('hosts:', '  a: { ssh: a }', '  b: { ssh: b }', 'networks:', '  lan: { subnet: 10.77.0.0/24 }', 'machines:', '  x: { host: a, network: { bridge: lan, address: 10.77.0.10 } }', '  y: { host: b, network: { bridge: lan, address: 10.77.0.10 } }'),
    ).fleet!;
    expect(JSON.parse(hostSlice(two, 'a')).networks).toEqual(JSON.parse(hostSlice(two, 'b')).networks);
    expect(Object.keys(JSON.parse(hostSlice(two, 'a')).networks)).toEqual(['lan']);
  });

  test('is JSON text ending with a newline', () => {
    const text = hostSlice(fleet, 'alpha');
    expect(text.endsWith('}\n')).toBe(true);
    expect(() => JSON.parse(text)).not.toThrow();
  });
});

describe('machinesOn', () => {
  test("the host's machines by name, sorted", () => {
    expect(machinesOn(fleet, 'alpha')).toEqual(['db', 'web']);
    expect(machinesOn(fleet, 'beta')).toEqual(['api', 'tool']);
  });

  test('none for a host without machines or a name that is no host', () => {
    expect(machinesOn(fleet, 'gamma')).toEqual([]);
    expect(machinesOn(fleet, 'delta')).toEqual([]);
  });
});

describe('selectHosts', () => {
  const names = (hs: { name: string }[]) => hs.map((h) => h.name);

  test('with neither flag: every host, in manifest order, as the manifest has them', () => {
    const all = selectHosts(fleet);
    expect(names(all)).toEqual(['alpha', 'beta', 'gamma']);
    expect(all[1]).toEqual({ name: 'beta', ssh: 'deploy@beta.example', port: 2222, sudo: true, labels: ['us'] });
    expect(all[0]).toEqual({ name: 'alpha', ssh: 'root@10.0.0.5', sudo: false, labels: ['eu', 'db'] });
  });

  test('--host picks those hosts, in manifest order whatever the order given', () => {
    expect(names(selectHosts(fleet, ['beta']))).toEqual(['beta']);
    expect(names(selectHosts(fleet, ['gamma', 'alpha']))).toEqual(['alpha', 'gamma']);
  });

  test('--hosts-label picks every host with that label', () => {
    expect(names(selectHosts(fleet, [], ['eu']))).toEqual(['alpha', 'gamma']);
    expect(names(selectHosts(fleet, [], ['us']))).toEqual(['beta']);
  });

  test('both: the union, each host once', () => {
    expect(names(selectHosts(fleet, ['beta'], ['db']))).toEqual(['alpha', 'beta']);
    expect(names(selectHosts(fleet, ['alpha'], ['eu']))).toEqual(['alpha', 'gamma']);
  });

  test('an unknown host: exit code 2, did you mean, and the hosts in the hint', () => {
    const err = thrown(() => selectHosts(fleet, ['alpah']));
    expect(err.message).toBe('--host "alpah": no such host under hosts: (did you mean alpha?)');
    expect(err.exitCode).toBe(2);
    expect(err.hint).toBe('Hosts: alpha, beta, gamma');
  });

  test('an unknown host with nothing close, or not even a host name: no suggestion, exit code 2', () => {
    expect(thrown(() => selectHosts(fleet, ['zzzzzz'])).message).toBe('--host "zzzzzz": no such host under hosts:');
    const odd = thrown(() => selectHosts(fleet, ['alpha', '-x; rm -rf /']));
    expect(odd.message).toBe('--host "-x; rm -rf /": no such host under hosts:');
    expect(odd.exitCode).toBe(2);
  });

  test('a label no host has: exit code 2, the labels in the hint', () => {
    const err = thrown(() => selectHosts(fleet, ['alpha'], ['asia']));
    expect(err.message).toBe('--hosts-label "asia": no host has that label');
    expect(err.exitCode).toBe(2);
    expect(err.hint).toBe('Labels: eu, db, us');
  });
});

describe('fleetOf', () => {
  test('the fleet of a manifest with hosts:', () => {
    expect(fleetOf(manifest, 'plan')).toBe(fleet);
  });

  test('a manifest without hosts: is refused with exit code 2, naming the flag and the file', () => {
    const local: Manifest = parseManifest('machines.yaml', yaml('machines:', '  web: {}'));
    expect(local.fleet).toBeUndefined();
    const err = thrown(() => fleetOf(local, '--host'));
    expect(err.message).toBe('--host needs a manifest with hosts: (machines.yaml has none)');
    expect(err.exitCode).toBe(2);
    expect(err.hint).toMatch(/docs\/fleet\.md/);
  });
});
