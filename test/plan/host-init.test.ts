// `host init` as tables: (manifest, observed host) -> steps, findings and the host record.
import { parseManifest } from '../../src/manifest/load';
import { Manifest } from '../../src/manifest/schema';
import {
  describeHostInitStep,
  HostInitObserved,
  HostInitPlan,
  HostInitStep,
  HostRecord,
  NETWORKD_CONF_PATH,
  planHostInit,
  requiredPackages,
  SYSCTL_PATH,
} from '../../src/plan/host-init';
import { renderDesiredState } from '../../src/render/desired';
import { convergedState, freshState, MANIFEST_PATH } from '../helpers/converged';
import { LIMITS_PATH } from '../../src/plan/host-limits';
import { freshObserved, hostRecord, LIMITS_CONF, LIMITS_CONF_NO_MANIFEST, NETWORKD_CONF, readyObserved, SYSCTL_CONF } from '../helpers/host-init-state';

const NOW = '2025-01-01T00:00:00.000Z';
const OPTIONS = { manifestPath: MANIFEST_PATH, now: NOW };

const NAT = `networks:
  br0: { subnet: 10.0.0.0/24, nat: true }
machines:
  web:
    network: { bridge: br0, address: 10.0.0.2 }
`;
const PLAIN = NAT.replace(', nat: true', '');
const ISOLATED = NAT.replace(', nat: true', ', isolated: true');

const P = {
  netdev: '/etc/systemd/network/50-nspawnctl-br0.netdev',
  network: '/etc/systemd/network/50-nspawnctl-br0.network',
  netRecord: '/var/lib/nspawnctl/networks/br0.json',
};

function manifestOf(text: string): Manifest {
  return parseManifest('machines.yaml', text);
}

/** One short line per step: its kind and what it acts on. */
function stepKey(s: HostInitStep): string {
  switch (s.kind) {
    case 'install-packages':
      return `install-packages ${s.packages.join(' ')}`;
    case 'write-file':
      return `write-file ${s.path}`;
    case 'enable-unit':
      return `enable-unit ${s.unit}${s.now ? ' --now' : ''}`;
    case 'set-sysctl':
      return `set-sysctl ${s.key}=${s.value}`;
    case 'raise-sysctl':
      return `raise-sysctl ${s.key} ${s.from}->${s.value}`;
    case 'network': {
      const n = s.step;
      if (n.kind === 'write-file') return `network write-file ${n.change} ${n.entry.hostPath}`;
      if (n.kind === 'write-record') return `network write-record ${n.path}`;
      if (n.kind === 'reload-networkd') return `network reload-networkd reconfigure=[${n.reconfigure.join(',')}] bridges=[${n.bridges.join(',')}]`;
      return `network ${n.kind}`;
    }
    case 'write-host-record':
      return 'write-host-record';
  }
}

const keys = (plan: HostInitPlan) => plan.steps.map(stepKey);
const recordOf = (plan: HostInitPlan): HostRecord | undefined => {
  const s = plan.steps.find((x) => x.kind === 'write-host-record');
  return s?.kind === 'write-host-record' ? s.record : undefined;
};
const errorsOf = (plan: HostInitPlan) => plan.findings.filter((f) => f.severity === 'error');

/** On a fresh 4 GiB host: the limits file, and the one limit below its sized value raised. */
const LIMIT_STEPS = [`write-file ${LIMITS_PATH}`, 'raise-sysctl fs.inotify.max_user_instances 128->4096'];
const LIMITS_RECORD = { 'fs.inotify.max_user_instances': { before: 128, set: 4096 } };

const NETWORK_STEPS = [
  `network write-record ${P.netRecord}`,
  `network write-file create ${P.netdev}`,
  `network write-file create ${P.network}`,
  'network reload-networkd reconfigure=[] bridges=[br0]',
];

describe('requiredPackages', () => {
  const deb12 = { networkdBinary: true, ubuntuKeyring: false };
  test.each<[string, string | undefined, { networkdBinary: boolean; ubuntuKeyring: boolean }, string[]]>([
    ['no manifest: mmdebstrap by default', undefined, deb12, ['dbus', 'mmdebstrap', 'systemd-container', 'zstd']],
    ['no machines: mmdebstrap', 'machines: {}\n', deb12, ['dbus', 'mmdebstrap', 'systemd-container', 'zstd']],
    ['bootstrapper auto (the default): mmdebstrap', PLAIN, deb12, ['dbus', 'mmdebstrap', 'systemd-container', 'zstd']],
    ['explicit mmdebstrap', 'machines:\n  a: { bootstrapper: mmdebstrap }\n', deb12, ['dbus', 'mmdebstrap', 'systemd-container', 'zstd']],
    ['only debootstrap machines: debootstrap, no mmdebstrap', 'machines:\n  a: { bootstrapper: debootstrap }\n', deb12, ['dbus', 'debootstrap', 'systemd-container', 'zstd']],
    ['debootstrap from defaults', 'defaults: { bootstrapper: debootstrap }\nmachines:\n  a: {}\n  b: {}\n', deb12, ['dbus', 'debootstrap', 'systemd-container', 'zstd']],
    ['one auto, one debootstrap: both', 'machines:\n  a: {}\n  b: { bootstrapper: debootstrap }\n', deb12, ['dbus', 'debootstrap', 'mmdebstrap', 'systemd-container', 'zstd']],
    ['nat network: nftables', NAT, deb12, ['dbus', 'mmdebstrap', 'nftables', 'systemd-container', 'zstd']],
    ['network without nat: no nftables', PLAIN, deb12, ['dbus', 'mmdebstrap', 'systemd-container', 'zstd']],
    ['isolated network: nftables', ISOLATED, deb12, ['dbus', 'mmdebstrap', 'nftables', 'systemd-container', 'zstd']],
    ['Debian 13 (no networkd binary): systemd-networkd', undefined, { networkdBinary: false, ubuntuKeyring: false }, ['dbus', 'mmdebstrap', 'systemd-container', 'systemd-networkd', 'zstd']],
    ['ubuntu machine without the keyring: ubuntu-keyring', 'machines:\n  a: { distribution: ubuntu }\n', deb12, ['dbus', 'mmdebstrap', 'systemd-container', 'ubuntu-keyring', 'zstd']],
    ['ubuntu machine, keyring present: none', 'machines:\n  a: { distribution: ubuntu }\n', { networkdBinary: true, ubuntuKeyring: true }, ['dbus', 'mmdebstrap', 'systemd-container', 'zstd']],
    ['debian machines never need ubuntu-keyring', 'machines:\n  a: {}\n', deb12, ['dbus', 'mmdebstrap', 'systemd-container', 'zstd']],
    ['no manifest: no ubuntu-keyring even when missing', undefined, deb12, ['dbus', 'mmdebstrap', 'systemd-container', 'zstd']],
  ])('%s', (_name, text, observed, expected) => {
    expect(requiredPackages(text === undefined ? undefined : manifestOf(text), observed)).toEqual(expected);
  });
});

describe('planHostInit on a fresh host', () => {
  test('with a nat network: every step, in order, with its reason and the full record', () => {
    const plan = planHostInit(manifestOf(NAT), freshObserved(), OPTIONS);
    expect(keys(plan)).toEqual([
      'install-packages dbus mmdebstrap nftables systemd-container zstd',
      `write-file ${NETWORKD_CONF_PATH}`,
      'enable-unit systemd-networkd.service --now',
      ...NETWORK_STEPS,
      `write-file ${SYSCTL_PATH}`,
      'set-sysctl net.ipv4.ip_forward=1',
      ...LIMIT_STEPS,
      'enable-unit machines.target',
      'write-host-record',
    ]);
    expect(plan.steps.map(describeHostInitStep)).toEqual([
      'install dbus mmdebstrap nftables systemd-container zstd',
      'write /etc/systemd/networkd.conf.d/50-nspawnctl.conf',
      'enable and start systemd-networkd.service',
      'record network br0 as managed by nspawnctl',
      'create /etc/systemd/network/50-nspawnctl-br0.netdev',
      'create /etc/systemd/network/50-nspawnctl-br0.network',
      'reload systemd-networkd',
      'write /etc/sysctl.d/50-nspawnctl-forward.conf',
      'set net.ipv4.ip_forward=1',
      'write /etc/sysctl.d/50-nspawnctl.conf',
      'raise fs.inotify.max_user_instances from 128 to 4096',
      'enable machines.target',
      'record what host init changed in /var/lib/nspawnctl/host.json',
    ]);
    expect(plan.steps.map((s) => s.reason)).toEqual([
      'needed by nspawnctl apply, backup and restore',
      'networkd must not touch routes of links it does not manage',
      'it creates the bridges',
      'new network',
      'missing',
      'missing',
      'bridge configuration changed',
      'nat: true on br0',
      'forward NATed traffic now, not only after a reboot',
      'the kernel limits booted machines use up, for the next boot too',
      'room for 256 machines (16 MiB each in 4.0 GiB of memory): 8 inotify instances each, 16 for the host',
      'machines with autostart: true start at boot through it',
      'remember what host init changed, for --undo',
    ]);
    expect(plan.findings).toEqual([]);
    expect(recordOf(plan)).toEqual({
      version: 1,
      kind: 'host',
      files: [SYSCTL_PATH, LIMITS_PATH, P.netdev, P.network, NETWORKD_CONF_PATH, P.netRecord],
      enabledUnits: ['machines.target', 'systemd-networkd.service'],
      installedPackages: ['dbus', 'mmdebstrap', 'nftables', 'systemd-container', 'zstd'],
      bridges: ['br0'],
      sysctls: LIMITS_RECORD,
    });
  });

  test('the files it writes have exactly the rendered content', () => {
    const plan = planHostInit(manifestOf(NAT), freshObserved(), OPTIONS);
    const contents = Object.fromEntries(plan.steps.flatMap((s) => (s.kind === 'write-file' ? [[s.path, s.content]] : [])));
    expect(contents).toEqual({ [NETWORKD_CONF_PATH]: NETWORKD_CONF, [SYSCTL_PATH]: SYSCTL_CONF, [LIMITS_PATH]: LIMITS_CONF });
    const desired = renderDesiredState({ ...manifestOf(NAT), machines: {} });
    const networkWrites = plan.steps.flatMap((s) => (s.kind === 'network' && s.step.kind === 'write-file' ? [s.step.entry] : []));
    expect(networkWrites).toEqual(desired.networks[0].entries);
    const netRecord = plan.steps.flatMap((s) => (s.kind === 'network' && s.step.kind === 'write-record' ? [s.step.record] : []));
    expect(netRecord).toEqual([{ version: 1, kind: 'network', name: 'br0', manifest: MANIFEST_PATH, created: NOW, files: [P.netdev, P.network] }]);
  });

  test('without nat: no sysctl file, no set-sysctl, no nftables (ip_forward 0 is left alone)', () => {
    const plan = planHostInit(manifestOf(PLAIN), freshObserved(), OPTIONS);
    expect(keys(plan)).toEqual([
      'install-packages dbus mmdebstrap systemd-container zstd',
      `write-file ${NETWORKD_CONF_PATH}`,
      'enable-unit systemd-networkd.service --now',
      ...NETWORK_STEPS,
      ...LIMIT_STEPS,
      'enable-unit machines.target',
      'write-host-record',
    ]);
    expect(recordOf(plan)?.files).toEqual([LIMITS_PATH, P.netdev, P.network, NETWORKD_CONF_PATH, P.netRecord]);
  });

  test('with no manifest at all: packages, networkd, the kernel limits and machines.target only', () => {
    const plan = planHostInit(undefined, freshObserved({ forwardPolicyDrop: true, firewalldActive: true }), OPTIONS);
    expect(keys(plan)).toEqual([
      'install-packages dbus mmdebstrap systemd-container zstd',
      `write-file ${NETWORKD_CONF_PATH}`,
      'enable-unit systemd-networkd.service --now',
      ...LIMIT_STEPS,
      'enable-unit machines.target',
      'write-host-record',
    ]);
    // Without networks there is nothing NATed and no bridge for firewalld to filter.
    expect(plan.findings).toEqual([]);
    // The first (header) line is asserted in the test below.
    const conf = plan.steps[1];
    const content = conf.kind === 'write-file' ? conf.content : '';
    expect(content.startsWith('# Generated by nspawnctl from ')).toBe(true);
    expect(content.slice(content.indexOf('\n') + 1)).toBe(
      '# Do not edit: nspawnctl apply rewrites this file; change the manifest instead.\n\n[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n',
    );
    expect(recordOf(plan)).toEqual(
      hostRecord({ files: [LIMITS_PATH, NETWORKD_CONF_PATH], enabledUnits: ['machines.target', 'systemd-networkd.service'], installedPackages: ['dbus', 'mmdebstrap', 'systemd-container', 'zstd'], sysctls: LIMITS_RECORD }),
    );
    const limits = plan.steps.find((s) => s.kind === 'write-file' && s.path === LIMITS_PATH);
    expect(limits?.kind === 'write-file' && limits.content).toBe(LIMITS_CONF_NO_MANIFEST);
  });

  // Regression test for a fixed bug (it was in src/render/common.ts renderHeader, called from src/plan/host-init.ts planHostInit):
  // renderHeader now replaces every character outside [A-Za-z0-9._+@-] of the manifest's file
  // name with "_", but without a manifest planHostInit passes the label "nspawnctl host init",
  // which is not a file name: the header says "from nspawnctl_host_init for this host.". On a
  // host initialised before (networkd not active), the file's content no longer matches, so host
  // init plans a rewrite of an unchanged file. Expected: the label printed as it was.
  test('with no manifest at all: the header names "nspawnctl host init" as written', () => {
    const plan = planHostInit(undefined, freshObserved(), OPTIONS);
    const conf = plan.steps[1];
    expect(conf.kind === 'write-file' && conf.content).toBe(
      '# Generated by nspawnctl from nspawnctl host init for this host.\n# Do not edit: nspawnctl apply rewrites this file; change the manifest instead.\n\n[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n',
    );
  });

  test('Debian 13 (no networkd binary): installs systemd-networkd', () => {
    const plan = planHostInit(undefined, freshObserved({ networkdBinary: false }), OPTIONS);
    expect(plan.steps[0]).toEqual({ kind: 'install-packages', packages: ['dbus', 'mmdebstrap', 'systemd-container', 'systemd-networkd', 'zstd'], reason: 'needed by nspawnctl apply, backup and restore' });
  });

  test('an ubuntu machine on a host without the keyring: ubuntu-keyring; with it: not', () => {
    const text = 'machines:\n  a: { distribution: ubuntu }\n';
    expect(keys(planHostInit(manifestOf(text), freshObserved(), OPTIONS))[0]).toBe('install-packages dbus mmdebstrap systemd-container ubuntu-keyring zstd');
    expect(keys(planHostInit(manifestOf(text), freshObserved({ ubuntuKeyring: true }), OPTIONS))[0]).toBe('install-packages dbus mmdebstrap systemd-container zstd');
  });
});

describe('planHostInit on a ready host', () => {
  test.each<[string, string | undefined]>([
    ['nat network', NAT],
    ['network without nat', PLAIN],
    ['no networks', 'machines:\n  a: { bootstrapper: debootstrap }\n'],
    ['ubuntu machine', 'machines:\n  a: { distribution: ubuntu }\n'],
    ['no manifest', undefined],
  ])('%s: zero steps and no error finding', (_name, text) => {
    const manifest = text === undefined ? undefined : manifestOf(text);
    const plan = planHostInit(manifest, readyObserved(manifest), OPTIONS);
    expect(plan.steps).toEqual([]);
    expect(plan.findings).toEqual([]);
  });

  test('with the record a fresh run wrote: still zero steps (a second run changes nothing)', () => {
    const manifest = manifestOf(NAT);
    const first = planHostInit(manifest, freshObserved(), OPTIONS);
    const record = recordOf(first);
    expect(record).toBeDefined();
    const again = planHostInit(manifest, readyObserved(manifest, { record }), OPTIONS);
    expect(again.steps).toEqual([]);
    expect(errorsOf(again)).toEqual([]);
  });

  test('ip_forward reset to 0 (sysctl file in place): only set-sysctl, the record is not rewritten', () => {
    const manifest = manifestOf(NAT);
    const record = recordOf(planHostInit(manifest, freshObserved(), OPTIONS));
    const plan = planHostInit(manifest, readyObserved(manifest, { ipForward: false, record }), OPTIONS);
    expect(keys(plan)).toEqual(['set-sysctl net.ipv4.ip_forward=1']);
  });

  test('without a record and with nothing to do: no host record is written', () => {
    const plan = planHostInit(manifestOf(PLAIN), readyObserved(manifestOf(PLAIN), { record: undefined }), OPTIONS);
    expect(plan.steps).toEqual([]);
  });
});

describe('planHostInit on a partly ready host', () => {
  test('packages installed, networkd disabled and inactive: networkd and the rest, no install', () => {
    const manifest = manifestOf(NAT);
    const plan = planHostInit(manifest, freshObserved({ installed: ['dbus', 'mmdebstrap', 'nftables', 'systemd-container', 'zstd'] }), OPTIONS);
    expect(keys(plan)).toEqual([
      `write-file ${NETWORKD_CONF_PATH}`,
      'enable-unit systemd-networkd.service --now',
      ...NETWORK_STEPS,
      `write-file ${SYSCTL_PATH}`,
      'set-sysctl net.ipv4.ip_forward=1',
      ...LIMIT_STEPS,
      'enable-unit machines.target',
      'write-host-record',
    ]);
    expect(recordOf(plan)?.installedPackages).toEqual([]);
  });

  test('some packages installed: only the missing ones are installed and recorded', () => {
    const plan = planHostInit(manifestOf(NAT), freshObserved({ installed: ['dbus', 'systemd-container', 'zstd'] }), OPTIONS);
    expect(plan.steps[0]).toEqual({ kind: 'install-packages', packages: ['mmdebstrap', 'nftables'], reason: 'needed by nspawnctl apply, backup and restore' });
    expect(recordOf(plan)?.installedPackages).toEqual(['mmdebstrap', 'nftables']);
  });

  test('networkd enabled but inactive: started (conf written), but not recorded as enabled by host init', () => {
    const manifest = manifestOf(PLAIN);
    const plan = planHostInit(manifest, readyObserved(manifest, { networkdActive: false, files: { [LIMITS_PATH]: LIMITS_CONF } }), OPTIONS);
    expect(keys(plan)).toEqual([`write-file ${NETWORKD_CONF_PATH}`, 'enable-unit systemd-networkd.service --now', 'write-host-record']);
    expect(recordOf(plan)).toEqual(hostRecord({ files: [NETWORKD_CONF_PATH] }));
  });

  test('networkd active but not enabled: enable --now, recorded, no conf file', () => {
    const manifest = manifestOf(PLAIN);
    const plan = planHostInit(manifest, readyObserved(manifest, { networkdEnabled: false, files: { [LIMITS_PATH]: LIMITS_CONF } }), OPTIONS);
    expect(keys(plan)).toEqual(['enable-unit systemd-networkd.service --now', 'write-host-record']);
    expect(recordOf(plan)).toEqual(hostRecord({ enabledUnits: ['systemd-networkd.service'] }));
  });

  test('networkd active, bridge files missing: the network steps only, and the bridge recorded', () => {
    const manifest = manifestOf(NAT);
    const plan = planHostInit(manifest, readyObserved(manifest, { networkState: freshState() }), OPTIONS);
    expect(keys(plan)).toEqual([...NETWORK_STEPS, 'write-host-record']);
    expect(recordOf(plan)).toEqual(hostRecord({ files: [P.netdev, P.network, P.netRecord], bridges: ['br0'] }));
  });

  test('bridge files in place (converged by apply), record present: nothing for the network', () => {
    const manifest = manifestOf(NAT);
    const plan = planHostInit(manifest, readyObserved(manifest, { machinesTargetEnabled: false }), OPTIONS);
    expect(keys(plan)).toEqual(['enable-unit machines.target', 'write-host-record']);
    expect(recordOf(plan)).toEqual(hostRecord({ enabledUnits: ['machines.target'] }));
  });

  const FOREIGN_NETDEV = freshState({ files: { [P.netdev]: { type: 'file', content: '[NetDev]\nName=br0\nKind=bridge\n', mode: 0o644 } } });

  test('a .netdev that nspawnctl did not write: an error finding, and the network is not recorded as managed', () => {
    const manifest = manifestOf(PLAIN);
    const plan = planHostInit(manifest, readyObserved(manifest, { networkState: FOREIGN_NETDEV }), OPTIONS);
    expect(plan.findings).toEqual([
      { severity: 'error', what: `${P.netdev} exists and was not created by nspawnctl`, fix: 'Move the file away or rename the network in the manifest.' },
    ]);
    expect(keys(plan)).not.toContain(`network write-record ${P.netRecord}`);
    expect(keys(plan)).not.toContain(`network write-file create ${P.netdev}`);
    expect(recordOf(plan)?.files ?? []).not.toContain(P.netdev);
  });

  // Regression test for a fixed bug (it was in src/plan/host-init.ts, planHostInit): a network with a conflict still gets its other
  // files written: here the .network (Address=gateway) is written for, and networkd reloaded
  // onto, a bridge whose .netdev belongs to the admin. apply refuses every change while a
  // conflict exists; host init should at least plan nothing for the conflicting network.
  test('a .netdev that nspawnctl did not write: nothing is planned for that network', () => {
    const manifest = manifestOf(PLAIN);
    const plan = planHostInit(manifest, readyObserved(manifest, { networkState: FOREIGN_NETDEV }), OPTIONS);
    expect(plan.steps.filter((s) => s.kind === 'network').map(stepKey)).toEqual([]);
  });

  test('a network named like an interface the host has (no record): an error finding, nothing planned or recorded for it', () => {
    const manifest = manifestOf(PLAIN);
    const plan = planHostInit(manifest, readyObserved(manifest, { networkState: freshState({ interfaces: ['lo', 'eth0', 'br0'] }) }), OPTIONS);
    expect(plan.findings).toEqual([
      {
        severity: 'error',
        what: 'a network interface named br0 already exists on this host and nspawnctl did not create it; a bridge of that name would take it over (give the network another name)',
        fix: 'Move the file away or rename the network in the manifest.',
      },
    ]);
    expect(plan.steps.filter((s) => s.kind === 'network').map(stepKey)).toEqual([]);
    expect(recordOf(plan)?.bridges ?? []).toEqual([]);
  });

  test('the bridge of a network nspawnctl recorded is no finding, though the interface exists', () => {
    const manifest = manifestOf(PLAIN);
    const observed = readyObserved(manifest);
    const plan = planHostInit(manifest, { ...observed, networkState: { ...observed.networkState, interfaces: ['lo', 'eth0', 'br0'] } }, OPTIONS);
    expect(plan.findings).toEqual([]);
    expect(plan.steps).toEqual([]);
  });

  // Regression test for a fixed bug (it was in src/plan/host-init.ts, planHostInit): `bridges` gets a network's name whenever host init
  // creates ANY of its files (here only the .network), not only when it creates the bridge's
  // .netdev. `host init --undo` then runs `networkctl delete br0` on an interface host init never
  // created (the admin's, defined by their own .netdev).
  test('a bridge whose .netdev host init did not write is not recorded in bridges (undo would delete it)', () => {
    const manifest = manifestOf(PLAIN);
    const plan = planHostInit(manifest, readyObserved(manifest, { networkState: FOREIGN_NETDEV }), OPTIONS);
    expect(recordOf(plan)?.bridges ?? []).toEqual([]);
  });
});

describe('the networkd.conf.d file', () => {
  test.each<[string, Partial<HostInitObserved>, boolean]>([
    ['networkd inactive, file missing: written', { networkdActive: false, files: {} }, true],
    ['networkd inactive, file differs: rewritten', { networkdActive: false, files: { [NETWORKD_CONF_PATH]: '[Network]\n' } }, true],
    ['networkd inactive, file exact: not written', { networkdActive: false, files: { [NETWORKD_CONF_PATH]: NETWORKD_CONF } }, false],
    ['networkd active, file missing: not written (leave a running networkd alone)', { networkdActive: true, files: {} }, false],
    ['networkd active, file differs: not written', { networkdActive: true, files: { [NETWORKD_CONF_PATH]: '[Network]\n' } }, false],
  ])('%s', (_name, overrides, written) => {
    const manifest = manifestOf(PLAIN);
    const plan = planHostInit(manifest, readyObserved(manifest, overrides), OPTIONS);
    expect(keys(plan).includes(`write-file ${NETWORKD_CONF_PATH}`)).toBe(written);
    expect(recordOf(plan)?.files.includes(NETWORKD_CONF_PATH) ?? false).toBe(written);
  });
});

describe('forwarding for nat networks', () => {
  test.each<[string, string, Partial<HostInitObserved>, string[]]>([
    ['nat, ip_forward 0, no file: file and sysctl', NAT, { ipForward: false, files: { [NETWORKD_CONF_PATH]: NETWORKD_CONF, [LIMITS_PATH]: LIMITS_CONF } }, [`write-file ${SYSCTL_PATH}`, 'set-sysctl net.ipv4.ip_forward=1', 'write-host-record']],
    ['nat, ip_forward 1, no file: only the file', NAT, { ipForward: true, files: { [LIMITS_PATH]: LIMITS_CONF } }, [`write-file ${SYSCTL_PATH}`, 'write-host-record']],
    ['nat, ip_forward 0, file exact: only sysctl', NAT, { ipForward: false }, ['set-sysctl net.ipv4.ip_forward=1']],
    ['nat, file with other content: rewritten', NAT, { files: { [SYSCTL_PATH]: 'net.ipv4.ip_forward = 0\n', [LIMITS_PATH]: LIMITS_CONF } }, [`write-file ${SYSCTL_PATH}`, 'write-host-record']],
    ['no nat, ip_forward 0: nothing', PLAIN, { ipForward: false }, []],
  ])('%s', (_name, text, overrides, expected) => {
    const manifest = manifestOf(text);
    // With a record in place, write-host-record shows exactly when the record grows.
    expect(keys(planHostInit(manifest, readyObserved(manifest, { record: hostRecord(), ...overrides }), OPTIONS))).toEqual(expected);
  });
});

describe('findings', () => {
  const TWO_NAT = `networks:
  br0: { subnet: 10.0.0.0/24, nat: true }
  br1: { subnet: 10.1.0.0/24 }
  br2: { subnet: 10.2.0.0/24, nat: true }
machines: {}
`;

  test('not booted with systemd: an error finding, whatever else is or is not done (no step can fix it)', () => {
    const NO_SYSTEMD = {
      severity: 'error',
      what: 'the host was not booted with systemd (no /run/systemd/system): machinectl, systemd-networkd and systemd-nspawn@.service need systemd as PID 1',
      fix: 'Run nspawnctl on a host (or VM, or container) whose PID 1 is systemd; Debian and Ubuntu boot with it by default. To try it here anyway: npm run sandbox -- up',
    };
    const manifest = manifestOf(NAT);
    const ready = planHostInit(manifest, readyObserved(manifest, { systemdBooted: false }), OPTIONS);
    expect(ready.steps).toEqual([]);
    expect(ready.findings).toEqual([NO_SYSTEMD]);
    const fresh = planHostInit(manifest, freshObserved({ systemdBooted: false }), OPTIONS);
    expect(fresh.steps.map((s) => s.kind)).toEqual(planHostInit(manifest, freshObserved(), OPTIONS).steps.map((s) => s.kind));
    expect(fresh.findings).toEqual([NO_SYSTEMD]);
  });

  test('FORWARD policy DROP with a nat network: an error whose fix names the bridge', () => {
    const manifest = manifestOf(NAT);
    const plan = planHostInit(manifest, readyObserved(manifest, { forwardPolicyDrop: true }), OPTIONS);
    expect(plan.steps).toEqual([]);
    expect(plan.findings).toEqual([
      {
        severity: 'error',
        what: 'the firewall FORWARD chain drops by default (Docker sets this), so NATed machines cannot reach beyond the host',
        fix: 'iptables -I FORWARD -i br0 -j ACCEPT && iptables -I FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      },
    ]);
  });

  test('FORWARD policy DROP: one fix line per nat network, none for the others', () => {
    const manifest = manifestOf(TWO_NAT);
    const plan = planHostInit(manifest, readyObserved(manifest, { forwardPolicyDrop: true }), OPTIONS);
    expect(plan.findings.map((f) => f.fix)).toEqual([
      'iptables -I FORWARD -i br0 -j ACCEPT && iptables -I FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n' +
        'iptables -I FORWARD -i br2 -j ACCEPT && iptables -I FORWARD -o br2 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]);
  });

  test('FORWARD policy DROP without nat networks: no finding', () => {
    const manifest = manifestOf(PLAIN);
    expect(planHostInit(manifest, readyObserved(manifest, { forwardPolicyDrop: true }), OPTIONS).findings).toEqual([]);
  });

  test('firewalld active: one warning per bridge, naming it; not an error', () => {
    const manifest = manifestOf(TWO_NAT);
    const plan = planHostInit(manifest, readyObserved(manifest, { firewalldActive: true }), OPTIONS);
    expect(plan.steps).toEqual([]);
    expect(plan.findings).toEqual(
      ['br0', 'br1', 'br2'].map((n) => ({
        severity: 'warning',
        what: `firewalld is active: traffic on bridge ${n} is filtered by its zone`,
        fix: `firewall-cmd --permanent --zone=trusted --add-interface=${n} && firewall-cmd --reload`,
      })),
    );
    expect(errorsOf(plan)).toEqual([]);
  });

  test('80-container-vb.network missing: an error saying where it was looked for and how to restore it', () => {
    const plan = planHostInit(undefined, readyObserved(undefined, { vbNetworkFound: false }), OPTIONS);
    expect(plan.steps).toEqual([]);
    expect(plan.findings).toEqual([
      {
        severity: 'error',
        what: '80-container-vb.network is missing from /etc/systemd/network, /run/systemd/network, /usr/lib/systemd/network, /lib/systemd/network: networkd may take machine veths (vb-*) off their bridge',
        fix: 'Reinstall systemd (apt-get install --reinstall systemd), or create /etc/systemd/network/80-container-vb.network with [Match] Name=vb-* Driver=veth and [Network] KeepMaster=yes LinkLocalAddressing=no',
      },
    ]);
  });

  test('findings come in a fixed order: FORWARD, then 80-container-vb, then firewalld', () => {
    const manifest = manifestOf(NAT);
    const plan = planHostInit(manifest, readyObserved(manifest, { forwardPolicyDrop: true, vbNetworkFound: false, firewalldActive: true }), OPTIONS);
    expect(plan.findings.map((f) => `${f.severity} ${f.what.split(' ').slice(0, 3).join(' ')}`)).toEqual([
      'error the firewall FORWARD',
      'error 80-container-vb.network is missing',
      'warning firewalld is active:',
    ]);
  });
});

describe('the host record', () => {
  test('accumulates: what an earlier run recorded is kept, new changes are added (sorted)', () => {
    const manifest = manifestOf(NAT);
    const earlier = hostRecord({
      files: [LIMITS_PATH, NETWORKD_CONF_PATH],
      enabledUnits: ['systemd-networkd.service'],
      installedPackages: ['dbus', 'mmdebstrap', 'systemd-container', 'zstd'],
      bridges: ['old0'],
      sysctls: LIMITS_RECORD,
    });
    // The earlier run was without a manifest; now one with a nat network (nftables, br0, forwarding).
    // The limits file is rewritten only for its header, which names the manifest now.
    const observed = readyObserved(undefined, {
      installed: ['dbus', 'mmdebstrap', 'systemd-container', 'zstd'],
      files: { [NETWORKD_CONF_PATH]: NETWORKD_CONF, [LIMITS_PATH]: LIMITS_CONF_NO_MANIFEST },
      ipForward: false,
      machinesTargetEnabled: false,
      networkState: freshState(),
      record: earlier,
    });
    const plan = planHostInit(manifest, observed, OPTIONS);
    expect(keys(plan)).toEqual([
      'install-packages nftables',
      ...NETWORK_STEPS,
      `write-file ${SYSCTL_PATH}`,
      'set-sysctl net.ipv4.ip_forward=1',
      `write-file ${LIMITS_PATH}`,
      'enable-unit machines.target',
      'write-host-record',
    ]);
    expect(recordOf(plan)).toEqual({
      version: 1,
      kind: 'host',
      files: [SYSCTL_PATH, LIMITS_PATH, P.netdev, P.network, NETWORKD_CONF_PATH, P.netRecord],
      enabledUnits: ['machines.target', 'systemd-networkd.service'],
      installedPackages: ['dbus', 'mmdebstrap', 'nftables', 'systemd-container', 'zstd'],
      bridges: ['br0', 'old0'],
      sysctls: LIMITS_RECORD,
    });
  });

  test('a record without bridges (an older version) gets them added', () => {
    const manifest = manifestOf(PLAIN);
    const old = { version: 1, kind: 'host', files: [], enabledUnits: [], installedPackages: [] } as unknown as HostRecord;
    const plan = planHostInit(manifest, readyObserved(manifest, { networkState: freshState(), record: old }), OPTIONS);
    expect(recordOf(plan)?.bridges).toEqual(['br0']);
  });

  test('a bridge updated (not created) by host init is not recorded as its own', () => {
    const manifest = manifestOf(NAT);
    // br0 was applied without nat: its .network differs now; networkd is running.
    const before = convergedState(renderDesiredState({ ...manifestOf(PLAIN), machines: {} }));
    const plan = planHostInit(manifest, readyObserved(manifest, { networkState: before, record: hostRecord() }), OPTIONS);
    expect(keys(plan)).toEqual([`network write-file update ${P.network}`, 'network reload-networkd reconfigure=[br0] bridges=[br0]']);
  });

  test('nothing recordable but a step to do and no record yet: an empty record is written', () => {
    const manifest = manifestOf(PLAIN);
    const plan = planHostInit(manifest, readyObserved(manifest, { networkdActive: false }), OPTIONS);
    expect(keys(plan)).toEqual(['enable-unit systemd-networkd.service --now', 'write-host-record']);
    expect(recordOf(plan)).toEqual(hostRecord());
  });
});

describe('kernel limits for many machines', () => {
  const limitKeys = (plan: HostInitPlan) => keys(plan).filter((k) => k.includes('sysctl') && !k.includes('ip_forward') || k === `write-file ${LIMITS_PATH}`);
  const limitsFile = (plan: HostInitPlan) => {
    const s = plan.steps.find((x) => x.kind === 'write-file' && x.path === LIMITS_PATH);
    return s?.kind === 'write-file' ? s.content : undefined;
  };
  /** N machines without a network. */
  const many = (n: number) => `machines:\n${Array.from({ length: n }, (_, i) => `  m${i}: {}\n`).join('')}`;
  const DEFAULTS = freshObserved().sysctls;
  const BODY = '# Kernel limits that every booted machine uses up, sized for this host\'s memory by nspawnctl host init\n# (docs/fresh-host.md). A value the kernel already had higher is kept as it was.\n';

  test('sized for the memory: 24 GiB raises the instances to 16384; watches and pseudo-terminals had more, and keep it', () => {
    // The kernel's own default for the watches is 1% of the memory: 192536 for 24 GiB.
    const sysctls = { ...DEFAULTS, 'fs.inotify.max_user_watches': 192536, 'user.max_inotify_watches': 192536 };
    const plan = planHostInit(undefined, freshObserved({ memTotalKiB: 24105 * 1024, sysctls }), OPTIONS);
    expect(limitKeys(plan)).toEqual([`write-file ${LIMITS_PATH}`, 'raise-sysctl fs.inotify.max_user_instances 128->16384']);
    expect(limitsFile(plan)).toBe(
      `# Generated by nspawnctl from nspawnctl host init for this host.\n# Do not edit: nspawnctl apply rewrites this file; change the manifest instead.\n\n${BODY}fs.inotify.max_user_instances = 16384\nfs.inotify.max_user_watches = 192536\nkernel.pty.max = 4096\n`,
    );
    const raise = plan.steps.find((s) => s.kind === 'raise-sysctl');
    expect(raise?.reason).toBe('room for 1506 machines (16 MiB each in 23.5 GiB of memory): 8 inotify instances each, 16 for the host');
  });

  test('sized for the memory: 1 GiB with the kernel\'s floor of 8192 watches: instances to 1024 only', () => {
    const plan = planHostInit(undefined, freshObserved({ memTotalKiB: 1024 * 1024, sysctls: { ...DEFAULTS, 'fs.inotify.max_user_watches': 8192, 'user.max_inotify_watches': 8192 } }), OPTIONS);
    expect(limitKeys(plan)).toEqual([`write-file ${LIMITS_PATH}`, 'raise-sysctl fs.inotify.max_user_instances 128->1024']);
    expect(limitsFile(plan)).toContain('fs.inotify.max_user_instances = 1024\nfs.inotify.max_user_watches = 8192\nkernel.pty.max = 4096\n');
  });

  test('sized for the memory: 256 GiB raises the pseudo-terminals too', () => {
    const plan = planHostInit(undefined, freshObserved({ memTotalKiB: 256 * 1024 * 1024, sysctls: { ...DEFAULTS, 'fs.inotify.max_user_watches': 1048576, 'user.max_inotify_watches': 1048576 } }), OPTIONS);
    expect(limitKeys(plan)).toEqual([`write-file ${LIMITS_PATH}`, 'raise-sysctl fs.inotify.max_user_instances 128->262144', 'raise-sysctl kernel.pty.max 4096->32768']);
    expect(recordOf(plan)?.sysctls).toEqual({ 'fs.inotify.max_user_instances': { before: 128, set: 262144 }, 'kernel.pty.max': { before: 4096, set: 32768 } });
  });

  test('a manifest with more machines than the memory holds: sized for them (and those running)', () => {
    const running = Array.from({ length: 100 }, (_, i) => `other${i}`);
    const plan = planHostInit(manifestOf(many(500)), freshObserved({ networkState: freshState({ networkdActive: false, running }) }), OPTIONS);
    // 600 machines: 16 + 8 x 600 = 4816 -> 8192 instances, 1024 + 26 x 600 = 16624 -> 32768 watches.
    expect(limitKeys(plan)).toEqual([`write-file ${LIMITS_PATH}`, 'raise-sysctl fs.inotify.max_user_instances 128->8192']);
    expect(limitsFile(plan)).toContain('fs.inotify.max_user_instances = 8192\nfs.inotify.max_user_watches = 32861\n');
    expect(plan.steps.find((s) => s.kind === 'raise-sysctl')?.reason).toBe('room for 600 machines (those of machines.yaml and those running): 8 inotify instances each, 16 for the host');
  });

  test('never lowers: a value the admin set higher stays, in the file too, and nothing is raised or recorded', () => {
    const sysctls = { ...DEFAULTS, 'fs.inotify.max_user_instances': 1000000, 'user.max_inotify_instances': 1000000 };
    const plan = planHostInit(undefined, freshObserved({ sysctls }), OPTIONS);
    expect(limitKeys(plan)).toEqual([`write-file ${LIMITS_PATH}`]);
    expect(limitsFile(plan)).toContain('fs.inotify.max_user_instances = 1000000\n');
    expect(recordOf(plan)?.sysctls).toBeUndefined();
    expect(recordOf(plan)?.files).toContain(LIMITS_PATH);
  });

  test('idempotent: with the file and the raised values in place, a second run plans nothing', () => {
    const first = planHostInit(undefined, freshObserved(), OPTIONS);
    const record = recordOf(first);
    const again = planHostInit(undefined, freshObserved({ installed: ['dbus', 'mmdebstrap', 'systemd-container', 'zstd'], networkdEnabled: true, networkdActive: true, machinesTargetEnabled: true, files: { [LIMITS_PATH]: limitsFile(first)! }, sysctls: { ...DEFAULTS, 'fs.inotify.max_user_instances': 4096, 'user.max_inotify_instances': 4096 }, record }), OPTIONS);
    expect(again.steps).toEqual([]);
    expect(again.findings).toEqual([]);
  });

  test('a second raise (a bigger manifest) keeps the value from before the first one for --undo', () => {
    const record = hostRecord({ files: [LIMITS_PATH], sysctls: { 'fs.inotify.max_user_instances': { before: 128, set: 4096 } } });
    const manifest = manifestOf(many(600));
    const plan = planHostInit(manifest, readyObserved(manifest, { record }), OPTIONS);
    expect(limitKeys(plan)).toEqual([`write-file ${LIMITS_PATH}`, 'raise-sysctl fs.inotify.max_user_instances 4096->8192']);
    expect(recordOf(plan)?.sysctls).toEqual({ 'fs.inotify.max_user_instances': { before: 128, set: 8192 } });
  });

  test('a kernel without these keys: no file, no step', () => {
    const plan = planHostInit(undefined, freshObserved({ sysctls: {} }), OPTIONS);
    expect(limitKeys(plan)).toEqual([]);
    expect(recordOf(plan)?.files).not.toContain(LIMITS_PATH);
  });

  describe('--check with a manifest: a limit too low for its machines is an error finding with the exact fix', () => {
    const FINDING = {
      severity: 'error',
      what: 'fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 20 would run (the 20 of machines.yaml): they need 176 inotify instances (8 per machine, 16 for the host)',
      fix: 'nspawnctl host init machines.yaml (raises it to 4096 now and keeps it in /etc/sysctl.d/50-nspawnctl.conf), or by hand: sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
      fixedBy: 'raise fs.inotify.max_user_instances from 128 to 4096',
    };

    test('20 machines on the default 128: the finding, fixed by the raise step of this plan', () => {
      const manifest = manifestOf(many(20));
      const plan = planHostInit(manifest, freshObserved(), OPTIONS);
      expect(plan.findings).toEqual([FINDING]);
      expect(keys(plan)).toContain('raise-sysctl fs.inotify.max_user_instances 128->4096');
    });

    test('machines already running count: 10 in the manifest and 10 others running', () => {
      const manifest = manifestOf(many(10));
      const running = Array.from({ length: 10 }, (_, i) => `other${i}`);
      const plan = planHostInit(manifest, freshObserved({ networkState: freshState({ networkdActive: false, running }) }), OPTIONS);
      expect(plan.findings.map((f) => f.what)).toEqual([
        'fs.inotify.max_user_instances = 128 leaves room for 14 machines, and 20 would run (the 10 of machines.yaml and 10 other running machines): they need 176 inotify instances (8 per machine, 16 for the host)',
      ]);
    });

    test('14 machines fit in 128: no finding (the raise for the memory is a step only)', () => {
      const plan = planHostInit(manifestOf(many(14)), freshObserved(), OPTIONS);
      expect(plan.findings).toEqual([]);
      expect(keys(plan)).toContain('raise-sysctl fs.inotify.max_user_instances 128->4096');
    });

    test('without a manifest: no finding', () => {
      expect(planHostInit(undefined, freshObserved(), OPTIONS).findings).toEqual([]);
    });

    test('/proc/sys read-only (a container): no raise step, the file is still written, the finding says where to fix it', () => {
      const manifest = manifestOf(many(20));
      const plan = planHostInit(manifest, freshObserved({ sysctlsUnwritable: { 'fs.inotify.max_user_instances': 'read-only', 'fs.inotify.max_user_watches': 'read-only', 'kernel.pty.max': 'read-only' } }), OPTIONS);
      expect(limitKeys(plan)).toEqual([`write-file ${LIMITS_PATH}`]);
      expect(recordOf(plan)?.sysctls).toBeUndefined();
      expect(plan.findings).toEqual([
        {
          severity: 'error',
          what: FINDING.what,
          fix: '/proc/sys is read-only here (nspawnctl runs in a container, and the limit is the kernel\'s): on the host that runs this container, sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
        },
      ]);
    });

    test('/proc/sys read-only, the manifest fits but the memory-sized value is not reached: a warning', () => {
      const plan = planHostInit(manifestOf(many(2)), freshObserved({ sysctlsUnwritable: { 'fs.inotify.max_user_instances': 'read-only' } }), OPTIONS);
      expect(plan.findings).toEqual([
        {
          severity: 'warning',
          what: 'fs.inotify.max_user_instances = 128 cannot be raised to 4096 here (/proc/sys is read-only: a container): the 2 machines have room, more may not boot',
          fix: 'On the host that runs this container: sysctl -w fs.inotify.max_user_instances=4096, and keep it with the line "fs.inotify.max_user_instances = 4096" in a file in /etc/sysctl.d/',
        },
      ]);
    });

    test('/proc/sys read-only but the values are already sufficient (set from outside): no finding, only the file', () => {
      const sysctls = { ...DEFAULTS, 'fs.inotify.max_user_instances': 4096, 'user.max_inotify_instances': 4096 };
      const plan = planHostInit(manifestOf(many(20)), freshObserved({ sysctls, sysctlsUnwritable: { 'fs.inotify.max_user_instances': 'read-only' } }), OPTIONS);
      expect(plan.findings).toEqual([]);
      expect(limitKeys(plan)).toEqual([`write-file ${LIMITS_PATH}`]);
    });

    test("the user namespace's own limit is the lower (nspawnctl in a container): named, with the fix by hand, no fixedBy", () => {
      const sysctls = { ...DEFAULTS, 'fs.inotify.max_user_instances': 8192, 'user.max_inotify_instances': 100 };
      const plan = planHostInit(manifestOf(many(20)), freshObserved({ sysctls }), OPTIONS);
      expect(plan.findings).toEqual([
        {
          severity: 'error',
          what: 'user.max_inotify_instances = 100 leaves room for 10 machines, and 20 would run (the 20 of machines.yaml): they need 176 inotify instances (8 per machine, 16 for the host)',
          fix: 'sysctl -w user.max_inotify_instances=4096 (the limit of the user namespace nspawnctl runs in), and keep it with the line "user.max_inotify_instances = 4096" in a file in /etc/sysctl.d/',
        },
      ]);
    });
  });
});
