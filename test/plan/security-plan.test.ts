// The planner for limits, AppArmor, read-only roots and isolated networks: (manifest, observed
// host) -> exact steps; and preflight refusing what this host cannot do for such a plan.
import { findMissing } from '../../src/apply/preflight';
import { HostState } from '../../src/plan/observe';
import { planChanges } from '../../src/plan/plan';
import { Plan, Step } from '../../src/plan/steps';
import { filterDigestOf, renderFilter } from '../../src/render/filter';
import { DesiredState } from '../../src/render/desired';
import { convergedState, desiredFrom, freshState, makeBootedHost, MANIFEST_PATH } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';

const NOW = '2025-01-01T00:00:00.000Z';
const SHIFTED_BASE = 65536 * 9;
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

const P = {
  nspawn: (n: string) => `/etc/systemd/nspawn/${n}.nspawn`,
  limits: (n: string) => `/etc/systemd/system/systemd-nspawn@${n}.service.d/50-nspawnctl-limits.conf`,
  apparmor: (n: string) => `/etc/systemd/system/systemd-nspawn@${n}.service.d/50-nspawnctl-apparmor.conf`,
  credentials: (n: string) => `/etc/systemd/system/systemd-nspawn@${n}.service.d/50-nspawnctl-credentials.conf`,
  record: (n: string) => `/var/lib/nspawnctl/machines/${n}.json`,
  netRecord: '/var/lib/nspawnctl/networks/lan.json',
  netdev: '/etc/systemd/network/50-nspawnctl-lan.netdev',
  network: '/etc/systemd/network/50-nspawnctl-lan.network',
  nft: '/etc/nspawnctl/filter/lan.nft',
  unit: '/etc/systemd/system/nspawnctl-filter-lan.service',
  wants: '/etc/systemd/system/sysinit.target.wants/nspawnctl-filter-lan.service',
};

/** One line per step, with the fields these features add. */
function stepKey(s: Step): string {
  switch (s.kind) {
    case 'write-file':
      return `write-file ${s.change} ${s.entry.hostPath}`;
    case 'remove-file':
    case 'write-record':
    case 'create-bind-source':
      return `${s.kind} ${s.path}`;
    case 'hand-bind-source':
      return `hand-bind-source ${s.machine} ${s.path}`;
    case 'install-packages':
      return `install-packages ${s.machine}: ${s.packages.join(' ')}${s.stopFirst ? ' (stop first)' : ''}`;
    case 'reload-networkd':
      return `reload-networkd reconfigure=[${s.reconfigure.join(',')}]`;
    case 'load-filter':
      return `load-filter ${s.owner.name} ${s.path}: ${s.reason}`;
    case 'unload-filter':
      return `unload-filter ${s.owner.name} ${s.table} ${s.chain}: ${s.reason}`;
    case 'prepare-read-only':
      return `prepare-read-only ${s.machine} shift=${String(s.shift)} mountPoints=[${s.mountPoints.join(',')}] stopFirst=${s.stopFirst}`;
    case 'reload-units':
      return `reload-units ${s.machine}: ${s.reason}`;
    case 'enable-networkd':
      return `enable-networkd ${s.bridges.join(',')}`;
    default:
      return `${s.kind} ${s.machine}`;
  }
}

function plan(desired: DesiredState, state: HostState): Plan {
  return planChanges(desired, state, { manifestPath: MANIFEST_PATH, now: NOW });
}

/** Steps planned for `manifest` on a host converged from `applied` (every machine running), edited by `edit`. */
function stepsFor(applied: string, manifest: string, edit: (s: HostState) => void = () => {}): string[] {
  const state = convergedState(desiredFrom(applied).desired);
  edit(state);
  return plan(desiredFrom(manifest).desired, state).steps.map(stepKey);
}

const LIMITS_RELOAD = 'limits changed; systemd applies them to the running machine';
const DROPINS_RELOAD = 'drop-ins of its unit changed';

describe('limits and AppArmor drop-ins', () => {
  const plain = yaml('machines:', '  web: {}');
  const limited = (memory: string) => yaml('machines:', '  web:', `    limits: { memory: ${memory} }`);
  const confined = yaml('machines:', '  web:', '    security: { apparmorProfile: nspawnctl-web }');

  test('a new machine with limits: the drop-in is written, units reloaded, then the machine started', () => {
    const { desired } = desiredFrom(limited('512M'));
    expect(plan(desired, freshState()).steps.map(stepKey)).toEqual([
      'create-machine web',
      `write-file create ${P.nspawn('web')}`,
      `write-file create ${P.limits('web')}`,
      'reload-units web: new drop-in for systemd-nspawn@web.service',
      'start-machine web',
    ]);
  });

  test('the drop-in of a new machine is in its record', () => {
    const { desired } = desiredFrom(limited('512M'));
    const create = plan(desired, freshState()).steps.find((s): s is Extract<Step, { kind: 'create-machine' }> => s.kind === 'create-machine')!;
    expect(create.record.files).toEqual([P.nspawn('web'), P.limits('web'), '/var/lib/machines/web/etc/hostname']);
  });

  test('changed limits on a running machine: written and reloaded, no restart', () => {
    expect(stepsFor(limited('512M'), limited('1G'))).toEqual([`write-file update ${P.limits('web')}`, `reload-units web: ${LIMITS_RELOAD}`]);
  });

  test('limits added to a running machine: created and reloaded, no restart', () => {
    expect(stepsFor(plain, limited('1G'))).toEqual([`write-file create ${P.limits('web')}`, `write-record ${P.record('web')}`, `reload-units web: ${LIMITS_RELOAD}`]);
  });

  test('limits removed: the drop-in is removed and units reloaded, no restart', () => {
    expect(stepsFor(limited('512M'), plain)).toEqual([`remove-file ${P.limits('web')}`, `write-record ${P.record('web')}`, `reload-units web: ${LIMITS_RELOAD}`]);
  });

  test('changed limits on a stopped machine: reloaded, then started', () => {
    expect(
      stepsFor(limited('512M'), limited('1G'), (s) => {
        s.machines.web.running = false;
      }),
    ).toEqual([`write-file update ${P.limits('web')}`, `reload-units web: ${DROPINS_RELOAD}`, 'start-machine web']);
  });

  test('unchanged limits: nothing', () => {
    expect(stepsFor(limited('512M'), limited('512M'))).toEqual([]);
  });

  test('an AppArmor profile added to a running machine: written, reloaded, restarted', () => {
    expect(stepsFor(plain, confined)).toEqual([`write-file create ${P.apparmor('web')}`, `write-record ${P.record('web')}`, `reload-units web: ${DROPINS_RELOAD}`, 'restart-machine web']);
  });

  test('an AppArmor profile changed: written, reloaded, restarted', () => {
    expect(stepsFor(confined, confined.replace('nspawnctl-web', 'other'))).toEqual([`write-file update ${P.apparmor('web')}`, `reload-units web: ${DROPINS_RELOAD}`, 'restart-machine web']);
  });

  test('an AppArmor profile removed: removed, reloaded, restarted', () => {
    expect(stepsFor(confined, plain)).toEqual([`remove-file ${P.apparmor('web')}`, `write-record ${P.record('web')}`, `reload-units web: ${DROPINS_RELOAD}`, 'restart-machine web']);
  });

  test('the summary of a live limits change is an update, not a restart', () => {
    const state = convergedState(desiredFrom(limited('512M')).desired);
    const p = plan(desiredFrom(limited('1G')).desired, state);
    expect(p.summary).toEqual([{ owner: { type: 'machine', name: 'web' }, action: 'update', changes: [`update ${P.limits('web')}`] }]);
  });
});

// systemd-nspawn loads credentials only when it starts the machine, from its command line (the
// drop-in's ExecStart=): every change restarts a running machine, after a daemon-reload.
describe('credentials drop-in', () => {
  const plain = yaml('machines:', '  web: {}');
  const withCredentials = (file: string) => yaml('machines:', '  web:', `    credentials: { db-password: ${file} }`);

  test('a new machine with credentials: the drop-in is written and recorded, units reloaded, then the machine started', () => {
    const { desired } = desiredFrom(withCredentials('/etc/nspawnctl/credentials/db'));
    const steps = plan(desired, freshState()).steps;
    expect(steps.map(stepKey)).toEqual([
      'create-machine web',
      `write-file create ${P.nspawn('web')}`,
      `write-file create ${P.credentials('web')}`,
      'reload-units web: new drop-in for systemd-nspawn@web.service',
      'start-machine web',
    ]);
    const create = steps.find((s): s is Extract<Step, { kind: 'create-machine' }> => s.kind === 'create-machine')!;
    expect(create.record.files).toEqual([P.nspawn('web'), P.credentials('web'), '/var/lib/machines/web/etc/hostname']);
  });

  test('a credential added to a running machine: written, recorded, reloaded, restarted; the .nspawn file stays', () => {
    expect(stepsFor(plain, withCredentials('/etc/nspawnctl/credentials/db'))).toEqual([
      `write-file create ${P.credentials('web')}`,
      `write-record ${P.record('web')}`,
      `reload-units web: ${DROPINS_RELOAD}`,
      'restart-machine web',
    ]);
  });

  test('a credential moved to another file: rewritten, reloaded, restarted', () => {
    expect(stepsFor(withCredentials('/etc/nspawnctl/credentials/db'), withCredentials('/etc/nspawnctl/credentials/db2'))).toEqual([
      `write-file update ${P.credentials('web')}`,
      `reload-units web: ${DROPINS_RELOAD}`,
      'restart-machine web',
    ]);
  });

  test('unchanged credentials: nothing (the files themselves are read by systemd-nspawn at each start, not by the plan)', () => {
    expect(stepsFor(withCredentials('/etc/nspawnctl/credentials/db'), withCredentials('/etc/nspawnctl/credentials/db'))).toEqual([]);
  });

  test('the last credential removed: the drop-in is removed, the record updated, units reloaded', () => {
    const steps = stepsFor(withCredentials('/etc/nspawnctl/credentials/db'), plain);
    expect(steps.slice(0, 3).map((k) => k.replace(/: .*/, ''))).toEqual([`remove-file ${P.credentials('web')}`, `write-record ${P.record('web')}`, 'reload-units web']);
  });

  // A running machine holds its credentials until its systemd-nspawn process ends.
  test('the last credential removed from a running machine: it is restarted, so it no longer holds them', () => {
    expect(stepsFor(withCredentials('/etc/nspawnctl/credentials/db'), plain)).toEqual([
      `remove-file ${P.credentials('web')}`,
      `write-record ${P.record('web')}`,
      `reload-units web: ${DROPINS_RELOAD}`,
      'restart-machine web',
    ]);
  });
});

describe('isolated networks: the filter in the kernel follows its file', () => {
  const ISOLATED = yaml(
    'networks:',
    '  lan: { subnet: 10.0.0.0/24, isolated: true }',
    'machines:',
    '  web:',
    '    network: { bridge: lan, address: 10.0.0.2, allow: [{ from: db, port: 80 }] }',
    '  db:',
    '    network: { bridge: lan, address: 10.0.0.3 }',
  );
  const OPEN = yaml(
    'networks:',
    '  lan: { subnet: 10.0.0.0/24 }',
    'machines:',
    '  web:',
    '    network: { bridge: lan, address: 10.0.0.2 }',
    '  db:',
    '    network: { bridge: lan, address: 10.0.0.3 }',
  );
  const digestOf = (text: string) => {
    const m = desiredFrom(text).manifest;
    return filterDigestOf(renderFilter(m.networks.lan, Object.values(m.machines), m.file))!;
  };
  const LIVE = digestOf(ISOLATED);

  test('a fresh host: the filter files are written and the filter loaded, before networkd reloads', () => {
    const { desired } = desiredFrom(ISOLATED);
    expect(plan(desired, freshState()).steps.map(stepKey)).toEqual([
      `write-record ${P.netRecord}`,
      `write-file create ${P.netdev}`,
      `write-file create ${P.network}`,
      `write-file create ${P.nft}`,
      `write-file create ${P.unit}`,
      `write-file create ${P.wants}`,
      `load-filter lan ${P.nft}: filter rules changed`,
      'reload-networkd reconfigure=[]',
      'create-machine db',
      `write-file create ${P.nspawn('db')}`,
      'start-machine db',
      'create-machine web',
      `write-file create ${P.nspawn('web')}`,
      'start-machine web',
    ]);
  });

  test('file unchanged and the same digest live: nothing', () => {
    expect(stepsFor(ISOLATED, ISOLATED, (s) => (s.liveFilters = { lan: LIVE }))).toEqual([]);
  });

  test('file unchanged, chain missing from the kernel: loaded again, networkd left alone', () => {
    expect(stepsFor(ISOLATED, ISOLATED, (s) => (s.liveFilters = {}))).toEqual([`load-filter lan ${P.nft}: the filter is not loaded in the kernel`]);
  });

  test('file unchanged, a stale chain in the kernel: loaded again', () => {
    expect(stepsFor(ISOLATED, ISOLATED, (s) => (s.liveFilters = { lan: '0123456789abcdef' }))).toEqual([`load-filter lan ${P.nft}: the loaded filter differs from ${P.nft}`]);
  });

  test('a changed allow rule: the file is rewritten and loaded; networkd is not reloaded', () => {
    const changed = ISOLATED.replace('port: 80', 'port: 8080');
    expect(digestOf(changed)).not.toBe(LIVE);
    const state = convergedState(desiredFrom(ISOLATED).desired);
    state.liveFilters = { lan: LIVE };
    const p = plan(desiredFrom(changed).desired, state);
    expect(p.steps.map(stepKey)).toEqual([`write-file update ${P.nft}`, `load-filter lan ${P.nft}: filter rules changed`]);
    expect(p.summary[0]).toEqual({ owner: { type: 'network', name: 'lan' }, action: 'update', changes: [`update ${P.nft}`, 'load packet filter'] });
  });

  test('a network no longer isolated: its filter files are removed and the live chain unloaded', () => {
    expect(stepsFor(ISOLATED, OPEN, (s) => (s.liveFilters = { lan: LIVE }))).toEqual([
      `write-record ${P.netRecord}`,
      `remove-file ${P.nft}`,
      `remove-file ${P.unit}`,
      `remove-file ${P.wants}`,
      'unload-filter lan nspawnctl isolate-lan: network is no longer isolated',
    ]);
  });

  test('a network no longer isolated whose chain is not live: only the files go', () => {
    expect(stepsFor(ISOLATED, OPEN, (s) => (s.liveFilters = {}))).toEqual([`write-record ${P.netRecord}`, `remove-file ${P.nft}`, `remove-file ${P.unit}`, `remove-file ${P.wants}`]);
  });

  test('a network that was never isolated: no filter step whatever the kernel has', () => {
    expect(stepsFor(OPEN, OPEN)).toEqual([]);
    expect(stepsFor(OPEN, OPEN, (s) => (s.liveFilters = {}))).toEqual([]);
  });
});

describe('read-write binds are not idmapped: their source belongs to the machine', () => {
  const bind = (b: string, security = '') => yaml('machines:', '  web:', `    bind: [${b}]`, ...(security ? [`    security: ${security}`] : []));
  const CREATED = bind('{ host: /srv/data, create: true }');

  test('a source nspawnctl creates is handed to the machine after it starts', () => {
    expect(plan(desiredFrom(CREATED).desired, freshState()).steps.map(stepKey)).toEqual([
      'create-bind-source /srv/data',
      'create-machine web',
      `write-file create ${P.nspawn('web')}`,
      'start-machine web',
      'hand-bind-source web /srv/data',
    ]);
  });

  test('converged, source owned by the machine: nothing to do; still owned by host root: handed again', () => {
    const owned = (uid: number) => (s: HostState) => {
      s.existingBindSources = ['/srv/data'];
      s.bindSourceOwners = { '/srv/data': uid };
    };
    expect(stepsFor(CREATED, CREATED, owned(SHIFTED_BASE))).toEqual([]);
    expect(stepsFor(CREATED, CREATED, owned(0))).toEqual(['hand-bind-source web /srv/data']);
    const p = plan(desiredFrom(CREATED).desired, ((s) => (owned(0)(s), s))(convergedState(desiredFrom(CREATED).desired)));
    expect(p.summary.find((m) => m.owner.name === 'web')).toMatchObject({ action: 'update', changes: ["give /srv/data to the machine's root"] });
  });

  test('a root-owned source the admin made (no create: true) is left alone, with a notice saying what to do', () => {
    const ADMIN = bind('{ host: /srv/data, machine: /data }');
    const state = convergedState(desiredFrom(ADMIN).desired);
    state.existingBindSources = ['/srv/data'];
    state.bindSourceOwners = { '/srv/data': 0 };
    const p = plan(desiredFrom(ADMIN).desired, state);
    expect(p.steps).toEqual([]);
    expect(p.notices.map((n) => n.message)).toEqual([expect.stringMatching(/^bind\[0\]: \/srv\/data is mounted read-write but belongs to host root.*chown it to the machine's UID range/)]);
  });

  test('two machines mounting one source read-write: the first by name gets it, the other a notice', () => {
    const SHARED = yaml('machines:', '  web:', '    bind: [{ host: /srv/data, create: true }]', '  app:', '    bind: [{ host: /srv/data, create: true }]', '  db:', '    bind: [{ host: /srv/data, readOnly: true }]');
    const p = plan(desiredFrom(SHARED).desired, freshState());
    expect(p.steps.map(stepKey).filter((k) => k.startsWith('hand-bind-source'))).toEqual(['hand-bind-source app /srv/data']);
    expect(p.notices.map((n) => `${n.owner.name}: ${n.message}`)).toEqual([
      'web: bind[0]: /srv/data is also mounted read-write by app, whose root owns it; web has its own UID range, so its root can only read it (give each machine its own directory, or mount it readOnly here)',
    ]);
  });

  test('read-only binds (idmapped) and machines without a user namespace keep the source as it is', () => {
    const root = (s: HostState) => {
      s.existingBindSources = ['/srv/data'];
      s.bindSourceOwners = { '/srv/data': 0 };
    };
    expect(stepsFor(bind('{ host: /srv/data, readOnly: true, create: true }'), bind('{ host: /srv/data, readOnly: true, create: true }'), root)).toEqual([]);
    const unshifted = bind('{ host: /srv/data, create: true }', '{ privateUsers: no }');
    expect(stepsFor(unshifted, unshifted, root)).toEqual([]);
  });
});

describe('read-only roots', () => {
  const RO = yaml('machines:', '  ro:', '    bind: [{ host: /srv/ro, create: true }]', '    security: { readOnly: true, tmpfs: [/tmp] }');
  const SHIFTED = 65536 * 7;

  test('a new read-only machine: its root is shifted and given its mount points before the first start', () => {
    const { desired } = desiredFrom(RO);
    expect(plan(desired, freshState()).steps.map(stepKey)).toEqual([
      'create-bind-source /srv/ro',
      'create-machine ro',
      `write-file create ${P.nspawn('ro')}`,
      'prepare-read-only ro shift=pick mountPoints=[/srv/ro,/tmp] stopFirst=false',
      'start-machine ro',
      // /srv/ro is mounted read-write and not idmapped: once ro runs, its source goes to ro's UID range
      'hand-bind-source ro /srv/ro',
    ]);
  });

  test('running, root still owned by UID 0: stopped, shifted, restarted', () => {
    expect(stepsFor(RO, RO, (s) => (s.machines.ro.rootfsUid = 0))).toEqual(['prepare-read-only ro shift=pick mountPoints=[] stopFirst=true', 'restart-machine ro']);
  });

  test('stopped, root owned by UID 0: shifted, then started', () => {
    expect(
      stepsFor(RO, RO, (s) => {
        s.machines.ro.rootfsUid = 0;
        s.machines.ro.running = false;
      }),
    ).toEqual(['prepare-read-only ro shift=pick mountPoints=[] stopFirst=false', 'start-machine ro']);
  });

  test('root already in a picked range and every mount point there: nothing', () => {
    expect(
      stepsFor(RO, RO, (s) => {
        s.machines.ro.rootfsUid = SHIFTED;
        s.machines.ro.missingMountPoints = [];
      }),
    ).toEqual([]);
    expect(stepsFor(RO, RO, (s) => (s.machines.ro.rootfsUid = SHIFTED))).toEqual([]);
  });

  test('a root whose owner is not a range base is shifted', () => {
    expect(stepsFor(RO, RO, (s) => (s.machines.ro.rootfsUid = 1000))).toEqual(['prepare-read-only ro shift=pick mountPoints=[] stopFirst=true', 'restart-machine ro']);
  });

  test('a missing mount point on a shifted root: created without stopping, then restarted', () => {
    expect(
      stepsFor(RO, RO, (s) => {
        s.machines.ro.rootfsUid = SHIFTED;
        s.machines.ro.missingMountPoints = ['/tmp'];
      }),
    ).toEqual(['prepare-read-only ro shift=undefined mountPoints=[/tmp] stopFirst=false', 'restart-machine ro']);
  });

  test('a fixed base UID: shifted to exactly it', () => {
    const fixed = RO.replace('readOnly: true', 'readOnly: true, privateUsers: 131072');
    expect(stepsFor(fixed, fixed, (s) => (s.machines.ro.rootfsUid = 131072))).toEqual([]);
    expect(stepsFor(fixed, fixed, (s) => (s.machines.ro.rootfsUid = SHIFTED))).toEqual(['prepare-read-only ro shift=131072 mountPoints=[] stopFirst=true', 'restart-machine ro']);
  });

  test('privateUsers identity: a shifted root is shifted back to 0', () => {
    const identity = RO.replace('readOnly: true', 'readOnly: true, privateUsers: identity');
    expect(stepsFor(identity, identity, (s) => (s.machines.ro.rootfsUid = 0))).toEqual([]);
    expect(stepsFor(identity, identity, (s) => (s.machines.ro.rootfsUid = SHIFTED))).toEqual(['prepare-read-only ro shift=0 mountPoints=[] stopFirst=true', 'restart-machine ro']);
  });

  test('a writable machine is never prepared', () => {
    const rw = RO.replace('readOnly: true, ', '');
    expect(stepsFor(rw, rw, (s) => (s.machines.ro.rootfsUid = 0))).toEqual([]);
  });

  test('packages added to a read-only machine, running or not, come with a rebuild (a fresh root, the old one kept)', () => {
    const more = RO.replace('    bind:', '    packages: [curl]\n    bind:');
    expect(stepsFor(RO, more, (s) => (s.machines.ro.rootfsUid = SHIFTED))).toEqual(['rebuild-machine ro']);
    expect(
      stepsFor(RO, more, (s) => {
        s.machines.ro.rootfsUid = SHIFTED;
        s.machines.ro.running = false;
      }),
    ).toEqual(['rebuild-machine ro']);
  });

  test('packages added to a running volatile machine: stopped first too', () => {
    const vol = yaml('machines:', '  web:', '    security: { volatile: state }');
    const more = vol.replace('    security:', '    packages: [curl]\n    security:');
    expect(stepsFor(vol, more)).toEqual(['install-packages web: curl (stop first)', `write-record ${P.record('web')}`, 'restart-machine web']);
  });

  test('packages added to a running writable machine: no stop, no restart', () => {
    const rw = yaml('machines:', '  web: {}');
    const install = plan(desiredFrom(rw.replace('web: {}', 'web: { packages: [curl] }')).desired, convergedState(desiredFrom(rw).desired)).steps[0];
    expect(install).toEqual({ kind: 'install-packages', machine: 'web', packages: ['curl'], aptProxy: undefined, reason: 'added to the manifest' });
    expect('stopFirst' in install).toBe(false);
  });
});

describe('preflight for these steps', () => {
  const OWNER = { type: 'network' as const, name: 'lan' };
  const planOf = (steps: Step[]): Plan => ({ manifest: MANIFEST_PATH, steps, conflicts: [], notices: [], summary: [], unmanaged: [] });
  const NFT_MISSING = { what: 'nft is not installed (isolated networks are filtered with nftables)', fix: 'apt-get install nftables, or run: nspawnctl host init MANIFEST' };

  test.each<[string, Step]>([
    ['load-filter', { kind: 'load-filter', owner: OWNER, path: P.nft, reason: 'filter rules changed' }],
    ['unload-filter', { kind: 'unload-filter', owner: OWNER, table: 'nspawnctl', chain: 'isolate-lan', reason: 'network is no longer isolated' }],
  ])('%s needs nft', async (_kind, step) => {
    const host = makeBootedHost(new FakeHost());
    expect(await findMissing(host, planOf([step]))).toEqual([NFT_MISSING]);
    host.fs.addFile('/usr/sbin/nft', '', { mode: 0o755 });
    expect(await findMissing(host, planOf([step]))).toEqual([]);
    expect(host.runner.calls).toEqual([]);
  });

  test('nft is not asked for when no filter step is planned', async () => {
    const host = makeBootedHost(new FakeHost());
    expect(await findMissing(host, planOf([{ kind: 'reload-units', machine: 'web', reason: 'x' }]))).toEqual([]);
  });

  describe('an AppArmor drop-in needs AppArmor enabled', () => {
    const confined = yaml('machines:', '  web: { security: { apparmorProfile: nspawnctl-web } }', '  db: { limits: { memory: 1G } }');
    const writes = () => {
      const { desired } = desiredFrom(confined);
      return plan(desired, freshState()).steps.filter((s) => s.kind === 'write-file' && s.entry.hostPath.includes('.service.d/'));
    };
    const DISABLED = {
      what: 'AppArmor is not enabled on this host, so apparmorProfile cannot be applied (machines: web)',
      fix: 'Boot the host with AppArmor enabled (apt-get install apparmor; security=apparmor on the kernel command line), or remove apparmorProfile from those machines.',
    };

    test('the planned drop-in writes are the two expected', () => {
      expect(writes().map(stepKey)).toEqual([`write-file create ${P.limits('db')}`, `write-file create ${P.apparmor('web')}`]);
    });

    test('no apparmor module: reported with the machine', async () => {
      const host = makeBootedHost(new FakeHost());
      expect(await findMissing(host, planOf(writes()))).toEqual([DISABLED]);
    });

    test('module loaded but disabled (N): reported', async () => {
      const host = makeBootedHost(new FakeHost());
      host.fs.addFile('/sys/module/apparmor/parameters/enabled', 'N\n');
      expect(await findMissing(host, planOf(writes()))).toEqual([DISABLED]);
    });

    test('enabled (Y): nothing missing', async () => {
      const host = makeBootedHost(new FakeHost());
      host.fs.addFile('/sys/module/apparmor/parameters/enabled', 'Y\n');
      expect(await findMissing(host, planOf(writes()))).toEqual([]);
    });

    test('a limits drop-in alone does not need AppArmor', async () => {
      const host = makeBootedHost(new FakeHost());
      expect(await findMissing(host, planOf(writes().filter((s) => s.kind === 'write-file' && s.entry.hostPath === P.limits('db'))))).toEqual([]);
    });
  });
});
