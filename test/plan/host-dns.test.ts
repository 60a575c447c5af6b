// Nameservers of machines without dns: systemd-nspawn's ResolvConf=auto leaves a bridged machine's
// /etc/resolv.conf alone (a private network), so nspawnctl renders a mode that copies the host's
// nameservers at each start: from /etc/resolv.conf, or from systemd-resolved's upstream list when
// /etc/resolv.conf names only its 127.0.0.53 stub (Ubuntu's default). Plan notes when the host has
// no nameserver a machine can reach.
import { parseManifest } from '../../src/manifest/load';
import { HOST_RESOLV_CONF, observeHostResolver, UPLINK_RESOLV_CONF } from '../../src/plan/observe';
import { planChanges } from '../../src/plan/plan';
import { planManifest } from '../../src/pipeline';
import { DesiredMachine, renderDesiredState } from '../../src/render/desired';
import { resolvConfMode } from '../../src/render/nspawn';
import { answerObserveQueries, convergedState, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
const MANIFEST = yaml(
  'networks:',
  '  lan: { subnet: 10.5.0.0/24, nat: true }',
  'machines:',
  '  web: { network: { bridge: lan, address: 10.5.0.2 } }',
  '  ro: { network: { bridge: lan, address: 10.5.0.3 }, security: { readOnly: true } }',
  '  own: { network: { bridge: lan, address: 10.5.0.4 }, dns: [10.5.0.1] }',
  '  solo: {}',
);
const machines = () => parseManifest('machines.yaml', MANIFEST).machines;

/** The text of a machine's .nspawn file (its first host entry). */
function nspawnText(m: DesiredMachine): string {
  const e = m.hostEntries[0];
  if (e.kind !== 'file') throw new Error('the .nspawn entry is not a file');
  return e.content;
}

/** ResolvConf= of each machine's .nspawn file, rendered for `resolver`. */
function resolvConfLines(resolver: 'host' | 'uplink'): Record<string, string | undefined> {
  const desired = renderDesiredState(parseManifest('machines.yaml', MANIFEST), { resolver });
  return Object.fromEntries(desired.machines.map((m) => [m.machine.name, nspawnText(m).split('\n').find((l) => l.startsWith('ResolvConf='))]));
}

describe('ResolvConf= in the .nspawn file', () => {
  test('copy-host (or copy-uplink) for a networked machine without dns:, bind-* on a read-only root, off with dns:, nothing without a network', () => {
    expect(resolvConfLines('host')).toEqual({ own: 'ResolvConf=off', ro: 'ResolvConf=bind-host', solo: undefined, web: 'ResolvConf=copy-host' });
    expect(resolvConfLines('uplink')).toEqual({ own: 'ResolvConf=off', ro: 'ResolvConf=bind-uplink', solo: undefined, web: 'ResolvConf=copy-uplink' });
  });

  test.each([
    ['no', false, 'copy-host'],
    ['no', true, 'bind-host'],
    ['state', false, 'bind-host'],
    ['yes', true, 'copy-host'],
    ['overlay', true, 'copy-host'],
  ] as const)('volatile: %s, readOnly: %s -> %s (a copy needs a writable /etc)', (volatile, readOnly, mode) => {
    const m = machines().web;
    expect(resolvConfMode({ ...m, security: { ...m.security, volatile, readOnly } }, 'host')).toBe(mode);
  });
});

describe('observeHostResolver', () => {
  test('a host whose /etc/resolv.conf names real servers (Debian with ifupdown or DHCP): that file', async () => {
    const host = new FakeHost();
    host.fs.addFile(HOST_RESOLV_CONF, '# from DHCP\nsearch lan\nnameserver 192.0.2.1\nnameserver 2001:db8::1\n');
    host.fs.addFile(UPLINK_RESOLV_CONF, 'nameserver 198.51.100.1\n');
    expect(await observeHostResolver(host)).toEqual({ resolver: 'host', file: HOST_RESOLV_CONF, nameservers: ['192.0.2.1', '2001:db8::1'] });
  });

  test("systemd-resolved's stub in /etc/resolv.conf (Ubuntu's symlink): resolved's upstream list instead", async () => {
    const host = new FakeHost();
    host.fs.addFile('/run/systemd/resolve/stub-resolv.conf', 'nameserver 127.0.0.53\noptions edns0 trust-ad\n');
    host.fs.addSymlink(HOST_RESOLV_CONF, '../run/systemd/resolve/stub-resolv.conf');
    host.fs.addFile(UPLINK_RESOLV_CONF, 'nameserver 192.0.2.1\n');
    expect(await observeHostResolver(host)).toEqual({ resolver: 'uplink', file: UPLINK_RESOLV_CONF, nameservers: ['192.0.2.1'] });
  });

  test('only loopback servers and no resolved (a local dnsmasq), or no file at all: /etc/resolv.conf, as it is', async () => {
    const host = new FakeHost();
    host.fs.addFile(HOST_RESOLV_CONF, 'nameserver 127.0.0.1\n');
    expect(await observeHostResolver(host)).toEqual({ resolver: 'host', file: HOST_RESOLV_CONF, nameservers: ['127.0.0.1'] });
    expect(await observeHostResolver(new FakeHost())).toEqual({ resolver: 'host', file: HOST_RESOLV_CONF, nameservers: [] });
  });
});

describe('the plan notes a host whose nameservers no machine can reach', () => {
  const plan = (dns: { file: string; nameservers: string[] }) => {
    const desired = renderDesiredState(parseManifest('machines.yaml', MANIFEST));
    return planChanges(desired, { ...convergedState(desired), dns: { resolver: 'host', ...dns } }, { manifestPath: '/srv/conf/machines.yaml', now: '2025-01-01T00:00:00.000Z' });
  };

  test('only loopback, or none: a notice for each networked machine without dns: (and no step)', () => {
    const p = plan({ file: HOST_RESOLV_CONF, nameservers: ['127.0.0.1', '::1'] });
    expect(p.steps).toEqual(plan({ file: HOST_RESOLV_CONF, nameservers: ['192.0.2.1'] }).steps);
    expect(p.notices).toEqual(
      ['ro', 'web'].map((name) => ({
        owner: { type: 'machine', name },
        message: "without dns: the machine gets the host's nameservers, but /etc/resolv.conf names only 127.0.0.1, ::1, the host's own loopback, which the machine cannot reach; set dns: to nameservers the machine can reach",
      })),
    );
    expect(plan({ file: UPLINK_RESOLV_CONF, nameservers: [] }).notices.map((n) => n.message)[0]).toBe(
      "without dns: the machine gets the host's nameservers, but /run/systemd/resolve/resolv.conf names no nameserver; set dns: to nameservers the machine can reach",
    );
  });

  test('one reachable server: no notice', () => {
    expect(plan({ file: HOST_RESOLV_CONF, nameservers: ['127.0.0.1', '192.0.2.1'] }).notices).toEqual([]);
  });
});

test('planManifest renders for the host it plans on: copy-uplink on a host with the resolved stub', async () => {
  const host = answerObserveQueries(makeBootedHost(new FakeHost()));
  host.fs.addFile(HOST_RESOLV_CONF, 'nameserver 127.0.0.53\n');
  host.fs.addFile(UPLINK_RESOLV_CONF, 'nameserver 192.0.2.1\n');
  const { desired, state, plan } = await planManifest(host, parseManifest('machines.yaml', MANIFEST), '/srv/conf');
  expect(nspawnText(desired.machines.find((m) => m.machine.name === 'web')!)).toContain('\nResolvConf=copy-uplink\n');
  expect(state.dns).toEqual({ resolver: 'uplink', file: UPLINK_RESOLV_CONF, nameservers: ['192.0.2.1'] });
  expect(plan.notices).toEqual([]);
});
