// hosts: and machines.NAME.host: what a fleet manifest resolves to, and every way it can be wrong,
// each with its exact located message (exit code 2). Addresses and host ports are unique per host,
// not across the fleet; allow rules only name machines on the same host.
import { parseManifest } from '../../src/manifest/load';
import { problems } from '../helpers/manifest-problems';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
const HOSTS = ['hosts:', '  alpha: { ssh: root@10.0.0.5 }', '  beta: { ssh: root@10.0.0.6 }'];
const LAN = ['networks:', '  lan: { subnet: 10.77.0.0/24, isolated: true }'];
const SSH_RULE = 'expected an ssh destination like root@10.0.0.5 or an alias from ~/.ssh/config (no spaces, not starting with -)';

describe('a fleet manifest resolves', () => {
  test('hosts with their defaults, and each machine with its host', () => {
    const m = parseManifest(
      'fleet.yaml',
      yaml('hosts:', '  alpha: { ssh: root@10.0.0.5 }', '  beta: { ssh: ops@beta, port: 2222, sudo: true, labels: [eu, db] }', 'machines:', '  web: { host: alpha }', '  db: { host: beta }'),
    );
    expect(m.fleet?.hosts).toEqual({
      alpha: { name: 'alpha', ssh: 'root@10.0.0.5', sudo: false, labels: [] },
      beta: { name: 'beta', ssh: 'ops@beta', port: 2222, sudo: true, labels: ['eu', 'db'] },
    });
    expect(m.machines.web.host).toBe('alpha');
    expect(m.machines.db.host).toBe('beta');
  });

  test('a manifest without hosts: is one host, as before: no fleet, no host on any machine', () => {
    const m = parseManifest('machines.yaml', yaml(...LAN, 'machines:', '  web: { network: { bridge: lan, address: 10.77.0.10 } }'));
    expect(m.fleet).toBeUndefined();
    expect('fleet' in m).toBe(false);
    expect('host' in m.machines.web).toBe(false);
  });
});

describe('which host a machine runs on', () => {
  test('a machine without host: when the manifest has hosts:', () => {
    expect(problems(yaml(...HOSTS, 'machines:', '  web: {}', '  db: { host: alpha }'))).toEqual([
      'machines.yaml:5:8: machines.web: machine web needs host: (a key of hosts:) when the manifest has hosts:',
    ]);
  });

  test('a host that is not declared: the message lists the declared hosts', () => {
    expect(problems(yaml(...HOSTS, 'machines:', '  web: { host: gamma }'))).toEqual([
      'machines.yaml:5:16: machines.web.host: host gamma is not declared under hosts: (declared: alpha, beta)',
    ]);
  });

  test('host: in a manifest without any hosts: section', () => {
    expect(problems(yaml('machines:', '  web: { host: alpha }'))).toEqual([
      'machines.yaml:2:16: machines.web.host: host alpha is not declared under hosts: (there is no hosts: section)',
    ]);
  });

  test('a host: that is no host name at all is a shape problem, not an undeclared host', () => {
    expect(problems(yaml(...HOSTS, 'machines:', '  web: { host: "-oProxyCommand=x" }'))).toEqual([
      'machines.yaml:5:16: machines.web.host: expected the name of a host under hosts:',
    ]);
  });
});

describe('addresses and host ports are unique per host', () => {
  const twoMachines = (webHost: string, dbHost: string, extra = '') =>
    yaml(...HOSTS, ...LAN, 'machines:', `  web: { host: ${webHost}, network: { bridge: lan, address: 10.77.0.10 }${extra} }`, `  db: { host: ${dbHost}, network: { bridge: lan, address: 10.77.0.10 }${extra} }`);

  test('the same address on the same bridge on the same host is refused', () => {
    expect(problems(twoMachines('alpha', 'alpha'))).toEqual([
      'machines.yaml:8:55: machines.db.network.address: 10.77.0.10 is already used by machine web on host alpha',
    ]);
  });

  test('the same address on the same bridge on different hosts is accepted', () => {
    const m = parseManifest('machines.yaml', twoMachines('alpha', 'beta'));
    expect([m.machines.web.network?.address, m.machines.db.network?.address]).toEqual(['10.77.0.10', '10.77.0.10']);
  });

  const samePort = (webHost: string, dbHost: string) =>
    yaml(
      ...HOSTS,
      ...LAN,
      'machines:',
      `  web: { host: ${webHost}, network: { bridge: lan, address: 10.77.0.10 }, ports: [{ host: 8080 }] }`,
      `  db: { host: ${dbHost}, network: { bridge: lan, address: 10.77.0.11 }, ports: [{ host: 8080 }] }`,
    );

  test('the same host port on the same host is refused', () => {
    expect(problems(samePort('alpha', 'alpha'))).toEqual([
      'machines.yaml:8:85: machines.db.ports[0].host: host port tcp/8080 is already forwarded to machine web',
    ]);
  });

  test('the same host port on different hosts is accepted', () => {
    const m = parseManifest('machines.yaml', samePort('alpha', 'beta'));
    expect([m.machines.web.ports[0].host, m.machines.db.ports[0].host]).toEqual([8080, 8080]);
  });

  test('per host, not per fleet: a third machine clashes only with the one on its own host', () => {
    expect(
      problems(
        yaml(
          ...HOSTS,
          ...LAN,
          'machines:',
          '  a: { host: alpha, network: { bridge: lan, address: 10.77.0.10 } }',
          '  b: { host: beta, network: { bridge: lan, address: 10.77.0.10 } }',
          '  c: { host: beta, network: { bridge: lan, address: 10.77.0.10 } }',
        ),
      ),
    ).toEqual(['machines.yaml:9:53: machines.c.network.address: 10.77.0.10 is already used by machine b on host beta']);
  });
});

describe('allow rules', () => {
  const allowFrom = (dbHost: string) =>
    yaml(
      ...HOSTS,
      ...LAN,
      'machines:',
      '  web: { host: alpha, network: { bridge: lan, address: 10.77.0.10, allow: [{ from: db, port: 80 }] } }',
      `  db: { host: ${dbHost}, network: { bridge: lan, address: 10.77.0.11 } }`,
    );

  test('from a machine on another host is refused: networks are per host', () => {
    expect(problems(allowFrom('beta'))).toEqual([
      'machines.yaml:7:84: machines.web.network.allow[0].from: machine db runs on host beta, not on alpha: networks are per host',
    ]);
  });

  test('from a machine on the same host is accepted', () => {
    expect(parseManifest('machines.yaml', allowFrom('alpha')).machines.web.network?.allow).toEqual([{ from: 'db', port: 80, proto: 'tcp' }]);
  });
});

describe('a host entry', () => {
  test.each([
    ['an option', '-oProxyCommand=x'],
    ['two words', 'a b'],
    ['a newline', '"a\\nb"'],
    ['a command substitution', '"$(touch /tmp/x)"'],
  ])('an ssh destination that is %s is refused', (_what, value) => {
    expect(problems(yaml('hosts:', `  alpha: { ssh: ${value} }`, 'machines:', '  web: { host: alpha }'))).toEqual([`machines.yaml:2:17: hosts.alpha.ssh: ${SSH_RULE}`]);
  });

  test('port 0 and port 70000 are refused', () => {
    expect(problems(yaml('hosts:', '  alpha: { ssh: a, port: 0 }', '  beta: { ssh: b, port: 70000 }', 'machines:', '  web: { host: alpha }'))).toEqual([
      'machines.yaml:2:26: hosts.alpha.port: must be at least 1',
      'machines.yaml:3:25: hosts.beta.port: must be at most 65535',
    ]);
  });

  test('an unknown key is refused, naming the keys a host takes', () => {
    expect(problems(yaml('hosts:', '  alpha: { ssh: a, user: root }', 'machines:', '  web: { host: alpha }'))).toEqual([
      'machines.yaml:2:20: hosts.alpha.user: unknown key; expected one of: ssh, port, sudo, labels',
    ]);
  });

  test('ssh is required', () => {
    expect(problems(yaml('hosts:', '  alpha: { sudo: true }', 'machines:', '  web: { host: alpha }'))).toEqual(['machines.yaml:2:10: hosts.alpha.ssh: is required']);
  });

  test('a label that is not a label is refused', () => {
    expect(problems(yaml('hosts:', '  alpha: { ssh: a, labels: [EU] }', 'machines:', '  web: { host: alpha }'))).toEqual([
      'machines.yaml:2:29: hosts.alpha.labels[0]: expected a label like db or eu-west',
    ]);
  });
});

describe('read-write binds are compared per host', () => {
  test('a bind inside another machine\'s read-write source is refused on the same host, and fine on another host (another filesystem)', () => {
    const machines = (dbHost: string) => yaml(...HOSTS, 'machines:', '  web: { host: alpha, bind: ["/srv:/srv:rw"] }', `  db: { host: ${dbHost}, bind: ["/srv/db:/var/lib/db:rw"] }`);
    expect(problems(machines('alpha'))).toEqual([
      'machines.yaml:6:29: machines.db.bind[0]: /srv/db is inside /srv, which machine web mounts read-write: that machine could replace it with a symlink to any host directory, which systemd-nspawn would then mount here',
    ]);
    expect(parseManifest('machines.yaml', machines('beta')).machines.db.bind).toEqual([{ source: '/srv/db', target: '/var/lib/db', readOnly: false, create: false }]);
  });
});
