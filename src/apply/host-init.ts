// Observes and changes the host for `host init` (and undoes it).
import { NspawnctlError, OwnershipError, PermissionDeniedError, PreflightError } from '../errors';
import { findProgram, Host } from '../host/host';
import { isWithin } from '../host/paths';
import { Manifest } from '../manifest/schema';
import { HOST_RECORD_PATH, HostInitObserved, HostInitStep, HostRecord, requiredPackages } from '../plan/host-init';
import { findUnwritableSysctls, LIMITS_PATH, MEMINFO_PATH, parseMemTotal, parseSysctl, readSysctls, sysctlPath } from '../plan/host-limits';
import { isSystemdBooted, listManagedMachines, observeHost } from '../plan/observe';
import { renderDesiredState } from '../render/desired';
import { runStep } from './apply';

const NETWORKD_BINARIES = ['/lib/systemd/systemd-networkd', '/usr/lib/systemd/systemd-networkd'];
const VB_NETWORK = ['/etc/systemd/network', '/run/systemd/network', '/usr/lib/systemd/network', '/lib/systemd/network'].map((d) => `${d}/80-container-vb.network`);

async function unitIs(host: Host, verb: 'is-enabled' | 'is-active', unit: string): Promise<string> {
  const r = await host.runner.run('systemctl', [verb, unit], { allowFailure: true });
  return r.stdout.trim();
}

/** Which of `packages` dpkg has installed, in one dpkg-query call. */
async function installedPackages(host: Host, packages: string[]): Promise<string[]> {
  const r = await host.runner.run('dpkg-query', ['-W', '-f=${Package} ${Status}\\n', ...packages], { allowFailure: true });
  return r.stdout
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length >= 4 && f[f.length - 1] === 'installed' && f[f.length - 3] === 'install')
    .map((f) => f[0].split(':')[0]);
}

async function forwardPolicyDrops(host: Host): Promise<boolean> {
  for (const tool of ['iptables', 'iptables-legacy']) {
    if (!(await findProgram(host, tool))) continue;
    const r = await host.runner.run(tool, ['-S', 'FORWARD'], { allowFailure: true });
    if (r.stdout.split('\n').some((l) => l.trim() === '-P FORWARD DROP')) return true;
  }
  if (await findProgram(host, 'nft')) {
    const r = await host.runner.run('nft', ['list', 'ruleset'], { allowFailure: true });
    if (/hook forward priority [^;]*; policy drop;/.test(r.stdout)) return true;
  }
  return false;
}

export async function observeHostInit(host: Host, manifest: Manifest | undefined): Promise<HostInitObserved> {
  // What a normal user cannot read (host init --check): noted with the network state's, not fatal.
  const denied: string[] = [];
  const readText = async (path: string) => {
    try {
      return await host.fs.readText(path);
    } catch (err) {
      if (!(err instanceof PermissionDeniedError)) throw err;
      denied.push(err.path);
      return undefined;
    }
  };
  const networkdBinary = (await Promise.all(NETWORKD_BINARIES.map((p) => host.fs.stat(p)))).some(Boolean);
  const ubuntuKeyring = (await host.fs.stat('/usr/share/keyrings/ubuntu-archive-keyring.gpg')) !== undefined;
  const wanted = requiredPackages(manifest, { networkdBinary, ubuntuKeyring });
  const files: Record<string, string> = {};
  for (const p of ['/etc/sysctl.d/50-nspawnctl-forward.conf', '/etc/systemd/networkd.conf.d/50-nspawnctl.conf', LIMITS_PATH]) {
    const t = await readText(p);
    if (t !== undefined) files[p] = t;
  }
  const recordText = await readText(HOST_RECORD_PATH);
  const hasSystemctl = (await findProgram(host, 'systemctl')) !== undefined;
  const observed: HostInitObserved = {
    systemdBooted: await isSystemdBooted(host),
    installed: await installedPackages(host, wanted),
    networkdBinary,
    networkdEnabled: hasSystemctl && (await unitIs(host, 'is-enabled', 'systemd-networkd.service')) === 'enabled',
    networkdActive: hasSystemctl && (await unitIs(host, 'is-active', 'systemd-networkd.service')) === 'active',
    machinesTargetEnabled: hasSystemctl && (await unitIs(host, 'is-enabled', 'machines.target')) === 'enabled',
    ipForward: ((await host.fs.readText('/proc/sys/net/ipv4/ip_forward')) ?? '0').trim() === '1',
    files,
    vbNetworkFound: (await Promise.all(VB_NETWORK.map((p) => host.fs.stat(p)))).some(Boolean),
    forwardPolicyDrop: await forwardPolicyDrops(host),
    firewalldActive: hasSystemctl && (await unitIs(host, 'is-active', 'firewalld.service')) === 'active',
    ubuntuKeyring,
    networkState: await observeHost(host, renderDesiredState({ file: manifest?.file ?? '', networks: manifest?.networks ?? {}, machines: {} })),
    record: recordText ? (JSON.parse(recordText) as HostRecord) : undefined,
    sysctls: await readSysctls(host),
    sysctlsUnwritable: await findUnwritableSysctls(host),
    memTotalKiB: parseMemTotal(await host.fs.readText(MEMINFO_PATH)),
  };
  // iptables -S and nft list ruleset need CAP_NET_ADMIN; for anyone else they fail.
  if (host.uid !== 0) denied.push('the firewall rules (iptables -S FORWARD, nft list ruleset)');
  const unreadable = [...(observed.networkState.unreadable ?? []), ...denied];
  if (unreadable.length > 0) observed.networkState.unreadable = [...new Set(unreadable)].sort();
  return observed;
}

export async function assertHostInitPossible(host: Host): Promise<void> {
  const missing = [];
  if (host.uid !== 0) missing.push({ what: 'nspawnctl host init must run as root', fix: 'Run it with sudo, or as root.' });
  if (!(await isSystemdBooted(host))) missing.push({ what: 'the host was not booted with systemd (no /run/systemd/system)', fix: 'nspawnctl needs systemd as PID 1.' });
  if (!(await findProgram(host, 'apt-get'))) missing.push({ what: 'apt-get is missing: host init supports Debian and Ubuntu', fix: 'Install the packages by hand: systemd-container mmdebstrap' });
  if (missing.length) throw new PreflightError(missing);
}

export async function runHostInitStep(host: Host, step: HostInitStep, onLine: (line: string) => void): Promise<void> {
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  switch (step.kind) {
    case 'install-packages':
      await host.runner.run('apt-get', ['update'], { env, onLine });
      await host.runner.run('apt-get', ['install', '-y', ...step.packages], { env, onLine });
      return;
    case 'write-file':
      await host.fs.writeFile(step.path, step.content, { mode: 0o644 });
      return;
    case 'enable-unit':
      await host.runner.run('systemctl', ['enable', ...(step.now ? ['--now'] : []), step.unit]);
      return;
    case 'set-sysctl': {
      // networkd may already have set it (IPForward= on a nat bridge) by the time this runs.
      const current = await host.fs.readText(`/proc/sys/${step.key.replace(/\./g, '/')}`);
      if (current?.trim() === step.value) return;
      await host.runner.run('sysctl', ['-w', `${step.key}=${step.value}`]);
      return;
    }
    case 'raise-sysctl': {
      // Read again: a limit someone raised further meanwhile stays where it is.
      const current = parseSysctl(await host.fs.readText(sysctlPath(step.key)));
      if (current !== undefined && current >= step.value) return;
      try {
        await host.runner.run('sysctl', ['-w', `${step.key}=${step.value}`]);
      } catch (err) {
        throw new NspawnctlError(`could not raise ${step.key} from ${current ?? step.from} to ${step.value}: ${(err as Error).message}`, {
          hint: `${LIMITS_PATH} already holds the value for the next boot. To raise it now: sysctl -w ${step.key}=${step.value} (in a container whose /proc/sys is read-only, on the host that runs it).`,
          cause: err,
        });
      }
      return;
    }
    case 'network':
      return runStep(host, step.step, { startTimeoutMs: 90_000 }, onLine);
    case 'write-host-record':
      await host.fs.writeFile(HOST_RECORD_PATH, `${JSON.stringify(step.record, null, 2)}\n`, { mode: 0o644 });
      return;
  }
}

export interface UndoResult {
  removed: string[];
  disabled: string[];
  bridges: string[];
  packages: string[];
  /** Kernel limits set back to the value they had before host init raised them. */
  restored: { key: string; from: number; to: number }[];
  /** Kernel limits host init raised that are left as they are, and why. */
  leftAlone: { key: string; value?: number; reason: string }[];
  /** There was no record: host init has not changed this host, or --undo already ran. */
  nothingToUndo: boolean;
}

/**
 * Removes what host init recorded: its files, the units it enabled. Packages stay (listed).
 * Without a record there is nothing to undo, which is success: a second --undo changes nothing.
 */
export async function undoHostInit(host: Host, force: boolean, onLine: (line: string) => void): Promise<UndoResult> {
  const text = await host.fs.readText(HOST_RECORD_PATH);
  if (!text) return { removed: [], disabled: [], bridges: [], packages: [], restored: [], leftAlone: [], nothingToUndo: true };
  const record = JSON.parse(text) as HostRecord;
  const machines = await listManagedMachines(host);
  if (machines.length > 0 && !force) {
    throw new OwnershipError(`machines managed by nspawnctl still exist (${machines.join(', ')}); undoing host init would break them`, 'Destroy them first, or pass --force.');
  }
  const removed: string[] = [];
  for (const path of record.files) {
    if (!['/etc/sysctl.d', '/etc/systemd', '/var/lib/nspawnctl/networks'].some((d) => isWithin(path, d))) continue;
    if (await host.fs.removeFile(path)) {
      removed.push(path);
      onLine(`removed ${path}`);
    }
  }
  const bridges = record.bridges ?? [];
  if (bridges.length > 0 && (await unitIs(host, 'is-active', 'systemd-networkd.service')) === 'active') {
    await host.runner.run('networkctl', ['reload'], { allowFailure: true });
    for (const bridge of bridges) {
      // Removing the .netdev does not remove the interface; networkctl delete does.
      await host.runner.run('networkctl', ['delete', bridge], { allowFailure: true });
      onLine(`deleted bridge ${bridge}`);
    }
  }
  for (const unit of record.enabledUnits) {
    await host.runner.run('systemctl', ['disable', unit], { allowFailure: true });
    onLine(`disabled ${unit}`);
  }
  const { restored, leftAlone } = await restoreSysctls(host, record, onLine);
  await host.fs.removeFile(HOST_RECORD_PATH);
  return { removed, disabled: record.enabledUnits, bridges, packages: record.installedPackages, restored, leftAlone, nothingToUndo: false };
}

/**
 * Sets each limit host init raised back to its value from before, but only while it still has the
 * value host init set: one that someone changed since is theirs, and stays.
 */
async function restoreSysctls(host: Host, record: HostRecord, onLine: (line: string) => void): Promise<Pick<UndoResult, 'restored' | 'leftAlone'>> {
  const restored: UndoResult['restored'] = [];
  const leftAlone: UndoResult['leftAlone'] = [];
  for (const [key, { before, set }] of Object.entries(record.sysctls ?? {})) {
    const current = parseSysctl(await host.fs.readText(sysctlPath(key)));
    if (current !== set) {
      const reason = current === undefined ? 'it cannot be read' : `it is ${current} now, not the ${set} host init set: someone changed it since`;
      leftAlone.push({ key, ...(current !== undefined ? { value: current } : {}), reason });
      onLine(`left ${key} alone: ${reason}`);
      continue;
    }
    const r = await host.runner.run('sysctl', ['-w', `${key}=${before}`], { allowFailure: true });
    if (r.exitCode === 0) {
      restored.push({ key, from: set, to: before });
      onLine(`restored ${key} = ${before}`);
    } else {
      const reason = `sysctl -w ${key}=${before} failed (${r.stderr.trim() || `exit ${r.exitCode}`}); it stays ${current} until the next boot`;
      leftAlone.push({ key, value: current, reason });
      onLine(`left ${key} alone: ${reason}`);
    }
  }
  return { restored, leftAlone };
}
