// The planner as tables: (manifest, observed host) -> steps, conflicts, notices; plus the text and
// JSON forms of a plan, and observeHost reading a converged fake host back into the same state.
import { HostState, listInterfaces, observeHost } from '../../src/plan/observe';
import { formatPlanText, planToJson } from '../../src/plan/format';
import { planChanges } from '../../src/plan/plan';
import { describeStep, Plan, Step } from '../../src/plan/steps';
import { DesiredState } from '../../src/render/desired';
import {
  answerObserveQueries,
  convergedState,
  convergeFakeHost,
  CREATED,
  desiredFrom,
  freshState,
  LIST_INTERFACES,
  LIST_MACHINES,
  makeBootedHost,
  MANIFEST_PATH,
  NETWORKD_ACTIVE,
} from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';

const NOW = '2025-01-01T00:00:00.000Z';

const BASE = `networks:
  br0: { subnet: 10.0.0.0/24 }
machines:
  web:
    network: { bridge: br0, address: 10.0.0.2 }
    bind: [{ host: /srv/www, machine: /var/www, readOnly: true, create: true }]
    files: [{ path: /etc/motd, content: "hi\\n" }]
    autostart: true
  db:
    network: { bridge: br0, address: 10.0.0.3 }
`;

/** BASE with one piece of text replaced (fails loudly if the text is not there). */
function variant(from: string, to: string): string {
  if (!BASE.includes(from)) throw new Error(`BASE does not contain ${from}`);
  return BASE.replace(from, to);
}

const P = {
  netdev: '/etc/systemd/network/50-nspawnctl-br0.netdev',
  network: '/etc/systemd/network/50-nspawnctl-br0.network',
  netRecord: '/var/lib/nspawnctl/networks/br0.json',
  webNspawn: '/etc/systemd/nspawn/web.nspawn',
  dbNspawn: '/etc/systemd/nspawn/db.nspawn',
  webRecord: '/var/lib/nspawnctl/machines/web.json',
  webMotd: '/var/lib/machines/web/etc/motd',
  webRootfs: '/var/lib/machines/web',
  staging: (n: string) => `/var/lib/machines/.nspawnctl-${n}.staging`,
};

/** One short line per step: its kind and what it acts on. */
function stepKey(s: Step): string {
  switch (s.kind) {
    case 'write-file':
      return `write-file ${s.change} ${s.entry.hostPath}`;
    case 'remove-file':
    case 'write-record':
    case 'create-bind-source':
    case 'remove-staging':
      return `${s.kind} ${s.path}`;
    case 'install-packages':
      return `install-packages ${s.machine}: ${s.packages.join(' ')}`;
    case 'enable-networkd':
      return `enable-networkd ${s.bridges.join(',')}`;
    case 'reload-networkd':
      return `reload-networkd reconfigure=[${s.reconfigure.join(',')}] bridges=[${s.bridges.join(',')}]`;
    case 'load-filter':
      return `load-filter ${s.owner.name}`;
    case 'unload-filter':
      return `unload-filter ${s.owner.name}`;
    default:
      return `${s.kind} ${s.machine}`;
  }
}

function plan(desired: DesiredState, state: HostState): Plan {
  return planChanges(desired, state, { manifestPath: MANIFEST_PATH, now: NOW });
}

interface Row {
  name: string;
  /** The manifest the state was converged from (BASE unless set). */
  appliedFrom?: string;
  /** The manifest planned now (BASE unless set). */
  manifest?: string;
  /** The observed host; by default converged from `appliedFrom`. */
  state?: (applied: DesiredState) => HostState;
  steps: string[];
  conflicts?: Plan['conflicts'];
  notices?: Plan['notices'];
  unmanaged?: string[];
  actions?: string[];
}

const converged = (d: DesiredState) => convergedState(d);
const UNSAFE_SYSTEMD = "/var/lib/machines/web/etc/systemd is a symlink: nspawnctl will not follow or use it";
const TOO_LARGE = "/var/lib/machines/web/etc/motd is larger than 1048576 bytes: nspawnctl will not follow or use it";
const INTERFACE_TAKEN = 'a network interface named br0 already exists on this host and nspawnctl did not create it; a bridge of that name would take it over (give the network another name)';
const withState = (edit: (s: HostState) => void) => (d: DesiredState) => {
  const s = convergedState(d);
  edit(s);
  return s;
};

const rows: Row[] = [
  {
    name: 'fresh host: network and machines created, started, web enabled',
    state: () => freshState(),
    steps: [
      `write-record ${P.netRecord}`,
      `write-file create ${P.netdev}`,
      `write-file create ${P.network}`,
      'reload-networkd reconfigure=[] bridges=[br0]',
      'create-machine db',
      `write-file create ${P.dbNspawn}`,
      'start-machine db',
      'create-bind-source /srv/www',
      'create-machine web',
      `write-file create ${P.webNspawn}`,
      'enable-machine web',
      'start-machine web',
    ],
    actions: ['network br0: create', 'machine db: create', 'machine web: create'],
  },
  {
    name: 'fully converged host: zero steps',
    steps: [],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: unchanged'],
  },
  {
    name: 'a changed .nspawn on a running machine: write it and restart',
    manifest: variant('    autostart: true', '    ports: [{ host: 8080, container: 80 }]\n    autostart: true'),
    steps: [`write-file update ${P.webNspawn}`, 'restart-machine web'],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: restart'],
  },
  {
    name: 'a changed user file: written, no restart',
    manifest: variant('content: "hi\\n"', 'content: "hello\\n"'),
    steps: [`write-file update ${P.webMotd}`],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: update'],
  },
  {
    name: 'a file edited by hand on the host is rewritten',
    state: withState((s) => {
      s.files[P.webMotd] = { type: 'file', content: 'edited\n', mode: 0o644 };
    }),
    steps: [`write-file update ${P.webMotd}`],
  },
  {
    name: 'a file whose mode changed by hand is rewritten',
    state: withState((s) => {
      s.files[P.webMotd] = { type: 'file', content: 'hi\n', mode: 0o666 };
    }),
    steps: [`write-file update ${P.webMotd}`],
  },
  {
    name: 'a stopped machine is started',
    state: withState((s) => {
      s.machines.db.running = false;
    }),
    steps: ['start-machine db'],
    actions: ['network br0: unchanged', 'machine db: start', 'machine web: unchanged'],
  },
  {
    name: 'an added package is installed and recorded',
    manifest: variant('    autostart: true', '    packages: [curl]\n    autostart: true'),
    steps: ['install-packages web: curl', `write-record ${P.webRecord}`],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: update'],
  },
  {
    name: 'a removed package makes apply plan a rebuild of the machine (packages are never removed in place)',
    appliedFrom: variant('    autostart: true', '    packages: [curl]\n    autostart: true'),
    steps: ['rebuild-machine web'],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: rebuild'],
  },
  {
    name: 'a user file removed from the manifest is removed, without a restart',
    manifest: variant('    files: [{ path: /etc/motd, content: "hi\\n" }]\n', ''),
    steps: [`remove-file ${P.webMotd}`, `write-record ${P.webRecord}`],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: update'],
  },
  {
    name: 'a recorded file already gone from the host is only dropped from the record',
    manifest: variant('    files: [{ path: /etc/motd, content: "hi\\n" }]\n', ''),
    state: withState((s) => {
      delete s.files[P.webMotd];
    }),
    steps: [`write-record ${P.webRecord}`],
  },
  {
    name: 'rootfs present without a record: conflict, no step for that machine',
    state: () => freshState({ machines: { web: { rootfsExists: true, rootfsUid: 0, stagingExists: false, enabled: false, running: false } } }),
    steps: [
      `write-record ${P.netRecord}`,
      `write-file create ${P.netdev}`,
      `write-file create ${P.network}`,
      'reload-networkd reconfigure=[] bridges=[br0]',
      'create-machine db',
      `write-file create ${P.dbNspawn}`,
      'start-machine db',
    ],
    conflicts: [{ owner: { type: 'machine', name: 'web' }, path: P.webRootfs, message: '/var/lib/machines/web exists and was not created by nspawnctl' }],
    actions: ['network br0: create', 'machine db: create', 'machine web: conflict'],
  },
  {
    name: '.nspawn present without a record: conflict',
    state: () => freshState({ files: { [P.webNspawn]: { type: 'file', content: '[Exec]\nBoot=yes\n', mode: 0o644 } } }),
    steps: [
      `write-record ${P.netRecord}`,
      `write-file create ${P.netdev}`,
      `write-file create ${P.network}`,
      'reload-networkd reconfigure=[] bridges=[br0]',
      'create-machine db',
      `write-file create ${P.dbNspawn}`,
      'start-machine db',
    ],
    conflicts: [{ owner: { type: 'machine', name: 'web' }, path: P.webNspawn, message: '/etc/systemd/nspawn/web.nspawn exists and was not created by nspawnctl' }],
  },
  {
    name: 'a network file present without a record: conflict',
    state: withState((s) => {
      s.networks = {};
      s.files[P.network] = { type: 'file', content: '[Match]\nName=br0\n', mode: 0o644 };
    }),
    steps: [],
    conflicts: [{ owner: { type: 'network', name: 'br0' }, path: P.network, message: '/etc/systemd/network/50-nspawnctl-br0.network exists and was not created by nspawnctl' }],
  },
  {
    name: 'a directory where a generated file goes: conflict',
    state: withState((s) => {
      s.files[P.webMotd] = { type: 'dir' };
    }),
    steps: [],
    conflicts: [{ owner: { type: 'machine', name: 'web' }, path: P.webMotd, message: '/var/lib/machines/web/etc/motd is a directory; nspawnctl will not replace it' }],
  },
  {
    name: 'a FIFO where a generated file goes: conflict (observe never read it)',
    state: withState((s) => {
      s.files[P.webMotd] = { type: 'other' };
    }),
    steps: [],
    conflicts: [{ owner: { type: 'machine', name: 'web' }, path: P.webMotd, message: '/var/lib/machines/web/etc/motd is a special file; nspawnctl will not replace it' }],
  },
  {
    // The machine's root replaced etc/systemd with a symlink: every generated file below it is
    // unsafe for the same reason, which is one conflict. web gets no step at all (not even its
    // changed motd); db is new and planned as usual.
    name: 'a symlink on the way to generated files: one conflict, no step for that machine, the new machine is planned',
    manifest: variant('content: "hi\\n"', 'content: "bye\\n"'),
    state: withState((s) => {
      delete s.machines.db;
      for (const p of Object.keys(s.files)) {
        if (p.startsWith('/var/lib/machines/db')) delete s.files[p];
        if (p.startsWith('/var/lib/machines/web/etc/systemd/')) s.files[p] = { type: 'unsafe', reason: UNSAFE_SYSTEMD };
      }
      delete s.files[P.dbNspawn];
    }),
    steps: ['create-machine db', `write-file create ${P.dbNspawn}`, 'start-machine db'],
    conflicts: [{ owner: { type: 'machine', name: 'web' }, path: '/var/lib/machines/web/etc/systemd/network/10-nspawnctl-host0.network', message: UNSAFE_SYSTEMD }],
    actions: ['network br0: unchanged', 'machine db: create', 'machine web: conflict'],
  },
  {
    name: 'a problem observe found inside a rootfs: a conflict of that machine only',
    manifest: variant('content: "hi\\n"', 'content: "bye\\n"'),
    state: withState((s) => {
      s.machines.web.problems = [TOO_LARGE];
      s.machines.db.running = false;
    }),
    steps: ['start-machine db'],
    conflicts: [{ owner: { type: 'machine', name: 'web' }, path: P.webRootfs, message: TOO_LARGE }],
    actions: ['network br0: unchanged', 'machine db: start', 'machine web: conflict'],
  },
  {
    // networkd would make an existing interface of that name the bridge (enslaving or readdressing it).
    name: 'a new network named like an interface the host has: network conflict, nothing for the network',
    state: () => freshState({ interfaces: ['lo', 'br0'] }),
    steps: ['create-machine db', `write-file create ${P.dbNspawn}`, 'start-machine db', 'create-bind-source /srv/www', 'create-machine web', `write-file create ${P.webNspawn}`, 'enable-machine web', 'start-machine web'],
    conflicts: [{ owner: { type: 'network', name: 'br0' }, path: P.netdev, message: INTERFACE_TAKEN }],
    actions: ['network br0: conflict', 'machine db: create', 'machine web: create'],
  },
  {
    name: 'the bridge of a network nspawnctl made (it has a record) is no conflict',
    state: withState((s) => {
      s.interfaces = ['lo', 'br0'];
    }),
    steps: [],
  },
  {
    name: 'networkd inactive: enable it',
    state: withState((s) => {
      s.networkdActive = false;
    }),
    steps: ['enable-networkd br0'],
  },
  {
    name: 'a changed bridge is reloaded and reconfigured',
    manifest: variant('subnet: 10.0.0.0/24 }', 'subnet: 10.0.0.0/24, nat: true }'),
    steps: [`write-file update ${P.network}`, 'reload-networkd reconfigure=[br0] bridges=[br0]'],
    actions: ['network br0: update', 'machine db: unchanged', 'machine web: unchanged'],
  },
  {
    name: 'a missing bind source with create: true is created',
    state: withState((s) => {
      s.existingBindSources = [];
    }),
    steps: ['create-bind-source /srv/www'],
  },
  {
    // The same .nspawn file: only create differs. planManifest refuses the missing source first.
    name: 'a missing bind source without create: true is never created by the planner',
    manifest: variant('bind: [{ host: /srv/www, machine: /var/www, readOnly: true, create: true }]', 'bind: ["/srv/www:/var/www:ro"]'),
    state: withState((s) => {
      s.existingBindSources = [];
    }),
    steps: [],
  },
  {
    name: 'a changed suite plans a rebuild, and host files first',
    manifest: variant('    autostart: true', '    suite: trixie\n    autostart: true\n    ports: [{ host: 8080, container: 80 }]'),
    steps: [`write-file update ${P.webNspawn}`, 'rebuild-machine web'],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: rebuild'],
  },
  {
    name: 'changed provision commands plan a rebuild',
    manifest: variant('    autostart: true', '    provision: [[touch, /x]]\n    autostart: true'),
    steps: ['rebuild-machine web'],
  },
  {
    name: 'a read-only machine is rebuilt too: a changed suite',
    manifest: variant('    autostart: true', '    suite: trixie\n    autostart: true\n    security: { readOnly: true }'),
    appliedFrom: variant('    autostart: true', '    autostart: true\n    security: { readOnly: true }'),
    // Its files were shifted into a picked UID range when it was prepared.
    state: withState((s) => {
      s.machines.web.rootfsUid = 65536 * 7;
    }),
    steps: ['rebuild-machine web'],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: rebuild'],
  },
  {
    name: 'a package added to a read-only machine comes with a rebuild (a read-only root takes none in place)',
    manifest: variant('    autostart: true', '    packages: [nginx, curl]\n    autostart: true\n    security: { readOnly: true }'),
    appliedFrom: variant('    autostart: true', '    packages: [nginx]\n    autostart: true\n    security: { readOnly: true }'),
    state: withState((s) => {
      s.machines.web.rootfsUid = 65536 * 7;
    }),
    steps: ['rebuild-machine web'],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: rebuild'],
  },
  {
    name: 'a managed machine not in the manifest is listed as unmanaged and left alone',
    state: withState((s) => {
      s.managedMachines = ['db', 'old', 'web'];
    }),
    steps: [],
    unmanaged: ['old'],
  },
  {
    name: 'autostart turned off: disable',
    manifest: variant('    autostart: true\n', ''),
    steps: ['disable-machine web'],
  },
  {
    name: 'autostart on but not enabled: enable',
    state: withState((s) => {
      s.machines.web.enabled = false;
    }),
    steps: ['enable-machine web'],
  },
  {
    name: 'a recorded machine whose rootfs vanished is created again, keeping its creation time',
    state: withState((s) => {
      s.machines.db.rootfsExists = false;
      s.machines.db.running = false;
    }),
    steps: ['create-machine db', 'start-machine db'],
  },
  {
    name: 'a leftover staging directory on a converged host is removed, and nothing else happens',
    state: withState((s) => {
      s.stagingDirs = ['old'];
    }),
    steps: [`remove-staging ${P.staging('old')}`],
    actions: ['network br0: unchanged', 'machine db: unchanged', 'machine web: unchanged'],
  },
  {
    name: 'a leftover staging directory of an existing machine is removed too',
    state: withState((s) => {
      s.stagingDirs = ['web'];
      s.machines.web.stagingExists = true;
    }),
    steps: [`remove-staging ${P.staging('web')}`],
  },
  {
    name: 'leftover staging directories come first, before the network; one whose machine is created now is left to the creation',
    state: () => freshState({ stagingDirs: ['old', 'web', 'x'] }),
    steps: [
      `remove-staging ${P.staging('old')}`,
      `remove-staging ${P.staging('x')}`,
      `write-record ${P.netRecord}`,
      `write-file create ${P.netdev}`,
      `write-file create ${P.network}`,
      'reload-networkd reconfigure=[] bridges=[br0]',
      'create-machine db',
      `write-file create ${P.dbNspawn}`,
      'start-machine db',
      'create-bind-source /srv/www',
      'create-machine web',
      `write-file create ${P.webNspawn}`,
      'enable-machine web',
      'start-machine web',
    ],
    actions: ['network br0: create', 'machine db: create', 'machine web: create'],
  },
  {
    name: 'the staging directory of a machine whose rootfs vanished is left to its re-creation',
    state: withState((s) => {
      s.machines.db.rootfsExists = false;
      s.machines.db.running = false;
      s.machines.db.stagingExists = true;
      s.stagingDirs = ['db'];
    }),
    steps: ['create-machine db', 'start-machine db'],
  },
  {
    name: 'a leftover staging directory of a machine in conflict is still removed (the conflict blocks apply anyway)',
    state: () => freshState({ machines: { web: { rootfsExists: true, rootfsUid: 0, stagingExists: true, enabled: false, running: false } }, stagingDirs: ['web'] }),
    steps: [
      `remove-staging ${P.staging('web')}`,
      `write-record ${P.netRecord}`,
      `write-file create ${P.netdev}`,
      `write-file create ${P.network}`,
      'reload-networkd reconfigure=[] bridges=[br0]',
      'create-machine db',
      `write-file create ${P.dbNspawn}`,
      'start-machine db',
    ],
    conflicts: [{ owner: { type: 'machine', name: 'web' }, path: P.webRootfs, message: '/var/lib/machines/web exists and was not created by nspawnctl' }],
  },
  {
    name: 'an unreadable machine record is a conflict',
    state: withState((s) => {
      s.machines.db.record = undefined;
      s.machines.db.recordError = '/var/lib/nspawnctl/machines/db.json is not a valid nspawnctl record: Unexpected token';
    }),
    steps: [],
    conflicts: [
      { owner: { type: 'machine', name: 'db' }, path: '/var/lib/nspawnctl/machines/db.json', message: '/var/lib/nspawnctl/machines/db.json is not a valid nspawnctl record: Unexpected token' },
      { owner: { type: 'machine', name: 'db' }, path: '/var/lib/machines/db', message: '/var/lib/machines/db exists and was not created by nspawnctl' },
      { owner: { type: 'machine', name: 'db' }, path: P.dbNspawn, message: '/etc/systemd/nspawn/db.nspawn exists and was not created by nspawnctl' },
    ],
  },
];

describe('planChanges', () => {
  test.each(rows.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    const applied = desiredFrom(row.appliedFrom ?? BASE).desired;
    const state = (row.state ?? converged)(applied);
    const desired = desiredFrom(row.manifest ?? BASE).desired;
    const p = plan(desired, state);
    expect(p.steps.map(stepKey)).toEqual(row.steps);
    expect(p.conflicts).toEqual(row.conflicts ?? []);
    expect(p.notices).toEqual(row.notices ?? []);
    expect(p.unmanaged).toEqual(row.unmanaged ?? []);
    expect(p.manifest).toBe(MANIFEST_PATH);
    if (row.actions) expect(p.summary.map((s) => `${s.owner.type} ${s.owner.name}: ${s.action}`)).toEqual(row.actions);
  });

  test('planning is pure: the state is not modified and a second plan is identical', () => {
    const { desired } = desiredFrom(BASE);
    const state = freshState();
    const before = JSON.stringify(state);
    const a = plan(desired, state);
    expect(JSON.stringify(state)).toBe(before);
    expect(plan(desired, state)).toEqual(a);
  });

  test('the records a fresh plan carries are exactly the converged ones (so a re-apply plans nothing)', () => {
    const { desired } = desiredFrom(BASE);
    const p = plan(desired, freshState());
    const create = p.steps.find((s): s is Extract<Step, { kind: 'create-machine' }> => s.kind === 'create-machine' && s.machine === 'web')!;
    const expected = convergedState(desired).machines.web.record!;
    expect(create.record).toEqual({ ...expected, created: NOW, bootstrap: { ...expected.bootstrap, bootstrapper: 'auto' } });
    expect(create.entries.map((e) => e.hostPath)).toEqual(desired.machines.find((m) => m.machine.name === 'web')!.rootfsEntries.map((e) => e.hostPath));
    const netRecord = p.steps.find((s): s is Extract<Step, { kind: 'write-record' }> => s.kind === 'write-record')!;
    expect(netRecord.record).toEqual({ ...convergedState(desired).networks.br0.record, created: NOW });
  });

  test('a machine whose rootfs vanished keeps its original creation time in the new record', () => {
    const { desired } = desiredFrom(BASE);
    const state = convergedState(desired);
    state.machines.db.rootfsExists = false;
    const create = plan(desired, state).steps.find((s) => s.kind === 'create-machine') as Extract<Step, { kind: 'create-machine' }>;
    expect(create.record.created).toBe(CREATED);
    expect(create.reason).toBe('its root filesystem /var/lib/machines/db is missing');
  });
});

describe('plan output', () => {
  test('converged: exact text, and JSON with changes:false', () => {
    const { desired } = desiredFrom(BASE);
    const p = plan(desired, convergedState(desired));
    expect(formatPlanText(p)).toBe(['= network br0: unchanged', '= machine db: unchanged', '= machine web: unchanged', '', 'No changes: the host matches machines.yaml.', ''].join('\n'));
    expect(planToJson(p)).toEqual({
      manifest: MANIFEST_PATH,
      changes: false,
      summary: [
        { owner: { type: 'network', name: 'br0' }, action: 'unchanged', changes: [] },
        { owner: { type: 'machine', name: 'db' }, action: 'unchanged', changes: [] },
        { owner: { type: 'machine', name: 'web' }, action: 'unchanged', changes: [] },
      ],
      steps: [],
      conflicts: [],
      notices: [],
      unmanaged: [],
    });
  });

  test('fresh host: exact text', () => {
    const { desired } = desiredFrom(BASE);
    expect(formatPlanText(plan(desired, freshState()))).toBe(
      [
        '+ network br0: create',
        `    create ${P.netdev}`,
        `    create ${P.network}`,
        '+ machine db: create',
        '    bootstrap debian bookworm with mmdebstrap or debootstrap',
        `    create ${P.dbNspawn}`,
        '    start',
        '+ machine web: create',
        '    create directory /srv/www',
        '    bootstrap debian bookworm with mmdebstrap or debootstrap',
        `    create ${P.webNspawn}`,
        '    enable at boot',
        '    start',
        '',
        '12 step(s):',
        '  1. record network br0 as managed by nspawnctl  (new network)',
        `  2. create ${P.netdev}  (missing)`,
        `  3. create ${P.network}  (missing)`,
        '  4. reload systemd-networkd  (bridge configuration changed)',
        '  5. create machine db: bootstrap debian bookworm (4 packages), write 5 files inside  (not on this host yet)',
        `  6. create ${P.dbNspawn}  (new machine)`,
        '  7. start db  (new machine)',
        '  8. create directory /srv/www (bind mount source of web)  (bind mount source does not exist)',
        '  9. create machine web: bootstrap debian bookworm (4 packages), write 6 files inside  (not on this host yet)',
        `  10. create ${P.webNspawn}  (new machine)`,
        '  11. enable web (start at boot)  (autostart: true)',
        '  12. start web  (new machine)',
        '',
      ].join('\n'),
    );
  });

  test('fresh host: JSON steps carry kinds, paths and reasons but no file contents', () => {
    const { desired } = desiredFrom(BASE);
    const json = planToJson(plan(desired, freshState()));
    expect(json.changes).toBe(true);
    const steps = json.steps as Record<string, unknown>[];
    expect(steps.map((s) => s.kind)).toEqual([
      'write-record',
      'write-file',
      'write-file',
      'reload-networkd',
      'create-machine',
      'write-file',
      'start-machine',
      'create-bind-source',
      'create-machine',
      'write-file',
      'enable-machine',
      'start-machine',
    ]);
    expect(steps[0]).toEqual({ kind: 'write-record', description: 'record network br0 as managed by nspawnctl', reason: 'new network', owner: { type: 'network', name: 'br0' }, path: P.netRecord });
    expect(steps[1]).toEqual({ kind: 'write-file', description: `create ${P.netdev}`, reason: 'missing', owner: { type: 'network', name: 'br0' }, path: P.netdev, change: 'create', restartNeeded: false });
    expect(steps[3]).toEqual({ kind: 'reload-networkd', description: 'reload systemd-networkd', reason: 'bridge configuration changed', reconfigure: [] });
    expect(steps[4]).toEqual({
      kind: 'create-machine',
      description: 'create machine db: bootstrap debian bookworm (4 packages), write 5 files inside',
      reason: 'not on this host yet',
      machine: 'db',
      distribution: 'debian',
      suite: 'bookworm',
      bootstrapper: 'auto',
      packages: ['dbus', 'iproute2', 'systemd', 'systemd-sysv'],
      files: [
        '/var/lib/machines/db/etc/hostname',
        '/var/lib/machines/db/etc/systemd/network/10-nspawnctl-host0.network',
        '/var/lib/machines/db/etc/systemd/system/dbus-org.freedesktop.network1.service',
        '/var/lib/machines/db/etc/systemd/system/multi-user.target.wants/systemd-networkd.service',
        '/var/lib/machines/db/etc/systemd/system/sockets.target.wants/systemd-networkd.socket',
      ],
    });
    expect(steps[7]).toEqual({ kind: 'create-bind-source', description: 'create directory /srv/www (bind mount source of web)', reason: 'bind mount source does not exist', machine: 'web', path: '/srv/www' });
    expect(steps[11]).toEqual({ kind: 'start-machine', description: 'start web', reason: 'new machine', machine: 'web' });
    expect(JSON.stringify(json)).not.toContain('Generated by nspawnctl');
  });

  test('a leftover staging directory: exact text (summary unchanged, one step) and JSON', () => {
    const { desired } = desiredFrom(BASE);
    const p = plan(desired, { ...convergedState(desired), stagingDirs: ['old'] });
    expect(formatPlanText(p)).toBe(
      [
        '= network br0: unchanged',
        '= machine db: unchanged',
        '= machine web: unchanged',
        '',
        '1 step(s):',
        `  1. remove ${P.staging('old')}  (left by an interrupted run)`,
        '',
      ].join('\n'),
    );
    const json = planToJson(p);
    expect([json.changes, json.steps]).toEqual([
      true,
      [{ kind: 'remove-staging', description: `remove ${P.staging('old')}`, reason: 'left by an interrupted run', machine: 'old', path: P.staging('old') }],
    ]);
  });

  test('conflicts, notices and unmanaged machines in the text', () => {
    const { desired } = desiredFrom(variant('    autostart: true', '    suite: trixie\n    autostart: true'));
    const state = freshState({ machines: { db: { rootfsExists: true, stagingExists: false, enabled: false, running: false } }, managedMachines: ['old'] });
    const applied = convergedState(desiredFrom(BASE).desired);
    state.machines.web = applied.machines.web;
    Object.assign(state.files, Object.fromEntries(Object.entries(applied.files).filter(([k]) => k.includes('/web'))));
    state.existingBindSources = ['/srv/www'];
    expect(formatPlanText(plan(desired, state))).toBe(
      [
        '+ network br0: create',
        `    create ${P.netdev}`,
        `    create ${P.network}`,
        '! machine db: conflict',
        '    /var/lib/machines/db exists and was not created by nspawnctl',
        '~ machine web: rebuild',
        '    rebuild (suite bookworm -> trixie); the old root filesystem is kept for rollback',
        'note: machine old is managed by nspawnctl but not in machines.yaml; it is left alone (nspawnctl destroy old removes it)',
        '',
        // A machine's conflict leaves only that machine alone.
        '1 conflict(s); apply leaves db alone and applies the rest:',
        '  ! machine db: /var/lib/machines/db exists and was not created by nspawnctl',
        '',
        '5 step(s):',
        '  1. record network br0 as managed by nspawnctl  (new network)',
        `  2. create ${P.netdev}  (missing)`,
        `  3. create ${P.network}  (missing)`,
        '  4. reload systemd-networkd  (bridge configuration changed)',
        '  5. rebuild web: build a fresh root filesystem (suite bookworm -> trixie), swap it in with one stop and one start, keep the old one for rollback  (only a fresh root filesystem brings these changes)',
        '',
      ].join('\n'),
    );
  });

  test('a machine conflict with nothing else to do: the conflict, and no step list', () => {
    const { desired } = desiredFrom(BASE);
    const state = convergedState(desired);
    state.machines.web.problems = [TOO_LARGE];
    expect(formatPlanText(plan(desired, state))).toBe(
      [
        '= network br0: unchanged',
        '= machine db: unchanged',
        '! machine web: conflict',
        `    ${TOO_LARGE}`,
        '',
        '1 conflict(s); apply leaves web alone:',
        `  ! machine web: ${TOO_LARGE}`,
        '',
      ].join('\n'),
    );
  });

  test('a network conflict: apply changes nothing, so no step list either', () => {
    const { desired } = desiredFrom(BASE);
    const p = plan(desired, freshState({ interfaces: ['lo', 'br0'] }));
    expect(p.steps.length).toBe(8);
    expect(formatPlanText(p)).toBe(
      [
        '! network br0: conflict',
        `    ${INTERFACE_TAKEN}`,
        '+ machine db: create',
        '    bootstrap debian bookworm with mmdebstrap or debootstrap',
        `    create ${P.dbNspawn}`,
        '    start',
        '+ machine web: create',
        '    create directory /srv/www',
        '    bootstrap debian bookworm with mmdebstrap or debootstrap',
        `    create ${P.webNspawn}`,
        '    enable at boot',
        '    start',
        '',
        '1 conflict(s); apply will not change anything until they are resolved:',
        `  ! network br0: ${INTERFACE_TAKEN}`,
        '',
      ].join('\n'),
    );
  });
});

describe('describeStep', () => {
  const { desired } = desiredFrom(BASE);
  const web = desired.machines.find((m) => m.machine.name === 'web')!;
  const link = web.rootfsEntries.find((e) => e.kind === 'symlink')!;
  const owner = { type: 'machine' as const, name: 'web' };
  test.each<[Step, string]>([
    [{ kind: 'write-file', owner, entry: web.hostEntries[0], change: 'update', reason: 'r' }, `update ${P.webNspawn}`],
    [{ kind: 'write-file', owner, entry: link, change: 'create', reason: 'r' }, '/var/lib/machines/web/etc/systemd/system/dbus-org.freedesktop.network1.service -> /lib/systemd/system/systemd-networkd.service'],
    [{ kind: 'remove-file', owner, path: P.webMotd, reason: 'r' }, `remove ${P.webMotd}`],
    [{ kind: 'install-packages', machine: 'web', packages: ['curl', 'jq'], reason: 'r' }, 'install into web: curl jq'],
    [{ kind: 'write-record', owner, path: P.webRecord, record: convergedState(desired).machines.web.record!, reason: 'r' }, 'record machine web as managed by nspawnctl'],
    [{ kind: 'create-bind-source', machine: 'web', path: '/srv/www', reason: 'r' }, 'create directory /srv/www (bind mount source of web)'],
    [{ kind: 'remove-staging', machine: 'old', path: P.staging('old'), reason: 'r' }, 'remove /var/lib/machines/.nspawnctl-old.staging'],
    [{ kind: 'enable-networkd', bridges: ['br0'], reason: 'r' }, 'enable and start systemd-networkd'],
    [{ kind: 'reload-networkd', reconfigure: ['br0', 'br1'], bridges: ['br0', 'br1'], reason: 'r' }, 'reload systemd-networkd and reconfigure br0, br1'],
    [{ kind: 'enable-machine', machine: 'web', reason: 'r' }, 'enable web (start at boot)'],
    [{ kind: 'disable-machine', machine: 'web', reason: 'r' }, 'disable web (do not start at boot)'],
    [{ kind: 'start-machine', machine: 'web', reason: 'r' }, 'start web'],
    [{ kind: 'restart-machine', machine: 'web', reason: 'r' }, 'restart web'],
    [
      { kind: 'create-machine', machine: 'web', spec: web.machine, entries: web.rootfsEntries, record: convergedState(desired).machines.web.record!, reason: 'r' },
      'create machine web: bootstrap debian bookworm (4 packages), write 6 files inside',
    ],
  ])('%#: %s', (step, text) => {
    // The symlink case checks the whole line, "create " prefix included.
    expect(describeStep(step)).toBe(step.kind === 'write-file' && step.entry.kind === 'symlink' ? `create ${text}` : text);
  });

  test('create-machine mentions provision commands when there are some', () => {
    const ex = desiredFrom(variant('    autostart: true', '    provision: [[touch, /a], [touch, /b]]\n    autostart: true')).desired;
    const m = ex.machines.find((x) => x.machine.name === 'web')!;
    const step: Step = { kind: 'create-machine', machine: 'web', spec: m.machine, entries: m.rootfsEntries, record: convergedState(ex).machines.web.record!, reason: 'r' };
    expect(describeStep(step)).toBe('create machine web: bootstrap debian bookworm (4 packages), write 6 files inside, run 2 provision commands');
  });
});

describe('observeHost reads a fake host into the same HostState the planner tables use', () => {
  test('converged fake host', async () => {
    const { desired } = desiredFrom(BASE);
    const host = convergeFakeHost(makeBootedHost(new FakeHost()), desired);
    const state = await observeHost(host, desired);
    expect(state).toEqual({ ...convergedState(desired), stagingDirs: [] });
    expect(plan(desired, state).steps).toEqual([]);
    expect(host.runner.argvs()).toEqual([
      ['machinectl', 'list', '--no-legend', '--no-pager', '--full'],
      ['systemctl', 'is-active', 'systemd-networkd.service'],
    ]);
    expect(host.fs.changes).toEqual([]);
    host.assertNoUnmatchedCalls();
  });

  test("reading one machine's tree fails in a way nspawnctl did not foresee (a plain error, not its own): a conflict of that machine only", async () => {
    const { desired } = desiredFrom(BASE);
    const host = convergeFakeHost(makeBootedHost(new FakeHost()), desired);
    const open = host.fs.openRootfs.bind(host.fs);
    host.fs.openRootfs = async (dir: string) => {
      const tree = await open(dir);
      if (dir === '/var/lib/machines/web') tree.inspect = async () => Promise.reject(Object.assign(new Error('EAGAIN: resource temporarily unavailable'), { code: 'EAGAIN' }));
      return tree;
    };
    const state = await observeHost(host, desired);
    expect(state.machines.web.problems).toEqual(['/var/lib/machines/web could not be read: EAGAIN: resource temporarily unavailable']);
    expect(state.machines.db.problems).toBeUndefined();
    const p = plan(desired, state);
    expect(p.conflicts.map((c) => [c.owner.name, c.message])).toEqual([['web', '/var/lib/machines/web could not be read: EAGAIN: resource temporarily unavailable']]);
    expect(p.summary.find((x) => x.owner.name === 'db')?.action).toBe('unchanged');
  });

  test('fresh fake host that is not booted with systemd asks nothing', async () => {
    const { desired } = desiredFrom(BASE);
    const host = new FakeHost();
    const state = await observeHost(host, desired);
    expect(state).toEqual({
      systemdBooted: false,
      networkdActive: undefined,
      machines: {
        db: { rootfsExists: false, rootfsUid: undefined, stagingExists: false, enabled: false, running: false },
        web: { rootfsExists: false, rootfsUid: undefined, stagingExists: false, enabled: false, running: false },
      },
      networks: { br0: {} },
      files: {},
      existingBindSources: [],
      managedMachines: [],
      stagingDirs: [],
    });
    expect(host.runner.calls).toEqual([]);
  });

  test('a network without a record: the host\'s interfaces are asked, once; the rest reads as on a fresh host', async () => {
    const { desired } = desiredFrom(BASE);
    const host = answerObserveQueries(makeBootedHost(new FakeHost()), { interfaces: ['lo', 'eth0', 'br0'] });
    const state = await observeHost(host, desired);
    expect(state.interfaces).toEqual(['lo', 'eth0', 'br0']);
    expect(host.runner.argvs()).toEqual([LIST_MACHINES, NETWORKD_ACTIVE, LIST_INTERFACES]);
    expect(plan(desired, state).conflicts.map((c) => `${c.owner.type} ${c.owner.name}: ${c.path}`)).toEqual(['network br0: /etc/systemd/network/50-nspawnctl-br0.netdev']);
  });

  test.each([
    ['ip fails', { exitCode: 1, stderr: 'ip: not found\n' }],
    ['ip prints something else than JSON', { stdout: '1: lo: <LOOPBACK,UP>\n' }],
  ])('%s: no interface is known (and none is made up)', async (_name, response) => {
    const host = new FakeHost();
    host.runner.on(LIST_INTERFACES, response);
    expect(await listInterfaces(host)).toEqual([]);
    expect(host.runner.calls.map((c) => c.options)).toEqual([{ allowFailure: true }]);
  });

  const SYMLINK_REASON = "/var/lib/machines/web/etc/systemd is a symlink: nspawnctl will not follow or use it";

  test('a hostile rootfs is read through its handle: a symlink on the way is "unsafe", a FIFO "other"; the other files and machine as usual', async () => {
    const { desired } = desiredFrom(BASE);
    const host = convergeFakeHost(makeBootedHost(new FakeHost()), desired);
    host.fs.addFile('/etc/systemd/network/10-nspawnctl-host0.network', 'the host\'s own\n');
    host.fs.swapForSymlink('/var/lib/machines/web/etc/systemd', '/etc/systemd');
    host.fs.addFifo('/var/lib/machines/db/etc/hostname');
    const state = await observeHost(host, desired);
    const expected = convergedState(desired);
    const web = desired.machines.find((m) => m.machine.name === 'web')!;
    for (const e of web.rootfsEntries.filter((x) => x.path.startsWith('/etc/systemd/'))) expected.files[e.hostPath] = { type: 'unsafe', reason: SYMLINK_REASON };
    expected.files['/var/lib/machines/db/etc/hostname'] = { type: 'other' };
    expect(state).toEqual({ ...expected, stagingDirs: [] });
    expect(host.fs.opened).toEqual(['/var/lib/machines/db', '/var/lib/machines/web']);
    expect(host.fs.changes).toEqual([]);
    // Each machine has its conflicts and nothing else; nothing is planned for either.
    const p = plan(desired, state);
    expect(p.steps).toEqual([]);
    expect(p.conflicts.map((c) => `${c.owner.name}: ${c.message}`)).toEqual([
      'db: /var/lib/machines/db/etc/hostname is a special file; nspawnctl will not replace it',
      `web: ${SYMLINK_REASON}`,
    ]);
  });

  test('a file too large to be one of nspawnctl\'s is "unsafe", not read', async () => {
    const { desired } = desiredFrom(BASE);
    const host = convergeFakeHost(makeBootedHost(new FakeHost()), desired);
    host.fs.addFile('/var/lib/machines/web/etc/motd', 'x'.repeat(1024 * 1024 + 1));
    const state = await observeHost(host, desired);
    expect(state.files['/var/lib/machines/web/etc/motd']).toEqual({
      type: 'unsafe',
      reason: "/var/lib/machines/web/etc/motd is larger than 1048576 bytes: nspawnctl will not follow or use it",
    });
  });

  test('a read-only machine whose mount point is behind a symlink: a problem of that machine alone', async () => {
    const manifest = variant('    autostart: true', '    autostart: true\n    security: { readOnly: true }');
    const { desired } = desiredFrom(manifest);
    const host = convergeFakeHost(makeBootedHost(new FakeHost()), desired);
    host.fs.addSymlink('/var/lib/machines/web/var', '/var');
    const state = await observeHost(host, desired);
    const reason = "/var/lib/machines/web/var is a symlink: nspawnctl will not follow or use it";
    expect(state.machines.web.problems).toEqual([reason]);
    expect(state.machines.web.missingMountPoints).toEqual([]);
    expect(state.machines.db.problems).toBeUndefined();
    const p = plan(desired, state);
    expect(p.conflicts).toEqual([{ owner: { type: 'machine', name: 'web' }, path: P.webRootfs, message: reason }]);
    expect(p.steps.filter((s) => 'machine' in s && s.machine === 'web')).toEqual([]);
  });

  test('staging directories left by interrupted runs: their machine names, nothing else in /var/lib/machines', async () => {
    const { desired } = desiredFrom(BASE);
    const host = convergeFakeHost(makeBootedHost(new FakeHost()), desired);
    host.fs.addDir(P.staging('web'));
    host.fs.addFile(`${P.staging('old')}/etc/hostname`, 'old\n');
    host.fs.addDir('/var/lib/machines/.nspawnctl-.staging');
    host.fs.addDir('/var/lib/machines/.nspawnctl-x.staging.bak');
    host.fs.addDir('/var/lib/machines/nspawnctl-y.staging');
    host.fs.addDir('/var/lib/machines/.other.staging');
    const state = await observeHost(host, desired);
    expect(state.stagingDirs).toEqual(['old', 'web']);
    expect([state.machines.web.stagingExists, state.machines.db.stagingExists]).toEqual([true, false]);
    expect(plan(desired, state).steps.map(stepKey)).toEqual([`remove-staging ${P.staging('old')}`, `remove-staging ${P.staging('web')}`]);
    expect(host.fs.changes).toEqual([]);
  });
});
