// nspawnctl upgrade: apt-get update and full-upgrade inside running machines, through their own
// systemd (in-machine.ts), never from the host. What a machine prints is its root's to forge, so
// only package names and versions that look like Debian's are taken from it, and it can lie only
// about itself. A failing machine stops only its own upgrade; the others go on.
import type { ListrTask } from 'listr2';
import { ExitCode, InterruptedError, NspawnctlError, PreflightError, tailLines } from '../errors';
import { Host } from '../host/host';
import { machineRecordPath, nspawnFilePath } from '../host/paths';
import { isSystemdBooted, listManagedMachines, listRunningMachines, readMachineRecord } from '../plan/observe';
import { RECORD_MODE, serializeRecord } from '../plan/records';
import { APT_FULL_UPGRADE, APT_UPDATE, APT_UPGRADE_ENV } from '../render/auto-upgrade';
import { APT_TIMEOUT_MS, runInMachine, SHORT_TIMEOUT_MS } from './in-machine';
import { restartMachine } from './machinectl';

/** One package that changed (or would): `from` absent for a new package, `to` absent for a removed one. */
export interface PackageChange {
  package: string;
  from?: string;
  to?: string;
}

/** A machine upgrade acts on: running, writable while it runs, with a network. */
export interface UpgradeTarget {
  name: string;
  /** Whether readiness after a restart also waits for its network (it has a bridge). */
  network: boolean;
}

export interface MachineUpgrade {
  name: string;
  status: 'upgraded' | 'up to date' | 'would upgrade' | 'skipped' | 'failed';
  /** What changed, or with --dry-run what would change. */
  changes: PackageChange[];
  /** Why the machine needs a restart to run what was installed; empty when it does not. */
  restartNeeded: string[];
  /** Set once --restart restarted it: how long it was down (stop to ready). */
  restarted?: { downtimeSeconds: number; state: 'running' | 'degraded'; failedUnits: string[] };
  /** When the upgrade was recorded (the record's `upgraded`). */
  upgraded?: string;
  /** Why it was skipped. */
  reason?: string;
  /** Why its upgrade failed (status "failed"). */
  error?: string;
  /** Why --restart could not restart it. */
  restartError?: string;
}

export interface UpgradeReport {
  dryRun: boolean;
  machines: MachineUpgrade[];
}

/** Names and versions as Debian spells them; anything else a machine prints is ignored. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]{0,127}(:[a-z0-9][a-z0-9-]{0,31})?$/;
const VERSION = /^[0-9A-Za-z][0-9A-Za-z.+~:-]{0,127}$/;
/** At most this many packages are taken from one machine's output (a real upgrade has hundreds). */
export const MAX_PACKAGES = 20_000;

/**
 * Packages whose new version the running machine keeps using the old copy of until it restarts:
 * its PID 1 (systemd and its private library), the C library every process has mapped, and the
 * system bus, which cannot be restarted on its own.
 */
export const RESTART_PACKAGES: readonly string[] = ['dbus', 'dbus-daemon', 'libc6', 'libsystemd-shared', 'systemd'];

/** The file Debian's maintainer scripts create (in a tmpfs /run) when a new package needs a reboot, and its list of packages. */
export const REBOOT_REQUIRED_FILE = '/run/reboot-required';
export const REBOOT_REQUIRED_PKGS_FILE = '/run/reboot-required.pkgs';

/** `apt-get --simulate full-upgrade`: what full-upgrade would do, as Inst/Remv/Conf lines, changing nothing. */
export const APT_SIMULATE_FULL_UPGRADE: readonly string[] = ['apt-get', '--simulate', ...APT_FULL_UPGRADE.slice(1).filter((a) => a !== '--yes')];

/** Every installed package with its version, one per line: status, name, version, tab-separated. */
export const DPKG_QUERY_INSTALLED: readonly string[] = ['dpkg-query', '--show', '--showformat=${db:Status-Abbrev}\\t${binary:Package}\\t${Version}\\n'];

function packageOk(name: string | undefined): name is string {
  return name !== undefined && PACKAGE_NAME.test(name);
}

function versionOk(version: string | undefined): version is string {
  return version !== undefined && VERSION.test(version);
}

/**
 * The packages `apt-get --simulate full-upgrade` says it would change. It prints
 * `Inst NAME [OLD] (NEW ORIGIN [ARCH])` for an upgrade (no [OLD] for a new package) and
 * `Remv NAME [OLD]` for a removal. Lines that are not such, or whose name or version is not
 * Debian's syntax, are ignored: the text comes from inside the machine.
 */
export function parseSimulatedUpgrade(text: string): PackageChange[] {
  const changes = new Map<string, PackageChange>();
  for (const line of text.split('\n')) {
    if (changes.size >= MAX_PACKAGES) break;
    if (line.length > 1000) continue;
    const inst = /^Inst (\S+) (?:\[(\S+)\] )?\((\S+)[ )]/.exec(line);
    const remv = inst ? undefined : /^Remv (\S+)(?: \[(\S+)\])?\s*$/.exec(line);
    if (inst) {
      const [, name, from, to] = inst;
      if (!packageOk(name) || !versionOk(to) || (from !== undefined && !versionOk(from)) || changes.has(name)) continue;
      changes.set(name, { package: name, ...(from !== undefined ? { from } : {}), to });
    } else if (remv) {
      const [, name, from] = remv;
      if (!packageOk(name) || (from !== undefined && !versionOk(from)) || changes.has(name)) continue;
      changes.set(name, { package: name, ...(from !== undefined ? { from } : {}) });
    }
  }
  return [...changes.values()].sort((a, b) => a.package.localeCompare(b.package));
}

/**
 * Installed packages and their versions from DPKG_QUERY_INSTALLED's output. A package whose
 * status is "not installed" or "config-files" (removed, its configuration kept) is not installed.
 */
export function parseInstalledPackages(text: string): Map<string, string> {
  const installed = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (installed.size >= MAX_PACKAGES) break;
    const [status, name, version, ...rest] = line.split('\t');
    if (rest.length > 0 || status === undefined || status.length < 2 || 'nc'.includes(status[1])) continue;
    if (!packageOk(name) || !versionOk(version) || installed.has(name)) continue;
    installed.set(name, version);
  }
  return installed;
}

/** What changed between two listings of installed packages, by name. */
export function diffInstalledPackages(before: Map<string, string>, after: Map<string, string>): PackageChange[] {
  const names = [...new Set([...before.keys(), ...after.keys()])].sort((a, b) => a.localeCompare(b));
  const changes: PackageChange[] = [];
  for (const name of names) {
    const from = before.get(name);
    const to = after.get(name);
    if (from === to) continue;
    changes.push({ package: name, ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) });
  }
  return changes;
}

/** Whether the machine says it needs a restart: /run/reboot-required exists, and which packages /run/reboot-required.pkgs names. */
export interface RebootRequired {
  required: boolean;
  packages: string[];
}

/**
 * Why a machine needs a restart: /run/reboot-required (which packages put it there), or a package
 * in RESTART_PACKAGES that changed (or, `planned`, would change). Empty: it does not.
 */
export function restartReasons(changes: PackageChange[], reboot: RebootRequired, planned = false): string[] {
  const reasons: string[] = [];
  if (reboot.required) reasons.push(`${REBOOT_REQUIRED_FILE} exists${reboot.packages.length ? ` (${reboot.packages.join(', ')})` : ''}`);
  for (const c of changes) {
    const base = c.package.replace(/:.*$/, '');
    if (!RESTART_PACKAGES.includes(base) || c.to === undefined) continue;
    reasons.push(`${c.package} ${planned ? 'would be' : 'was'} ${c.from === undefined ? 'installed' : 'upgraded'}`);
  }
  return reasons;
}

/** Asks inside the running machine whether /run/reboot-required exists (a tmpfs: the host cannot see it). */
export async function readRebootRequired(host: Host, name: string): Promise<RebootRequired> {
  const test = await runInMachine(host, name, ['test', '-e', REBOOT_REQUIRED_FILE], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  if (test.exitCode === 1) return { required: false, packages: [] };
  if (test.exitCode !== 0) {
    throw new NspawnctlError(`machine ${name}: could not tell whether ${REBOOT_REQUIRED_FILE} exists (test exited ${test.exitCode}${test.stderr.trim() ? `: ${tailLines(test.stderr, 2)}` : ''})`);
  }
  const pkgs = await runInMachine(host, name, ['cat', REBOOT_REQUIRED_PKGS_FILE], { allowFailure: true, timeoutMs: SHORT_TIMEOUT_MS });
  const packages = pkgs.exitCode === 0 ? [...new Set(pkgs.stdout.split('\n').map((l) => l.trim()).filter(packageOk))].sort().slice(0, 20) : [];
  return { required: true, packages };
}

async function installedPackages(host: Host, name: string): Promise<Map<string, string>> {
  const r = await runInMachine(host, name, [...DPKG_QUERY_INSTALLED], { timeoutMs: SHORT_TIMEOUT_MS });
  return parseInstalledPackages(r.stdout);
}

/** What a machine's .nspawn file says about its root and network (the settings it runs with). */
export interface NspawnFacts {
  readOnly: boolean;
  volatile?: string;
  network: boolean;
}

/** Reads the few settings of /etc/systemd/nspawn/NAME.nspawn that decide whether upgrade can act; undefined when it is missing. */
export async function readNspawnFacts(host: Host, name: string): Promise<NspawnFacts | undefined> {
  const text = await host.fs.readText(nspawnFilePath(name));
  if (text === undefined) return undefined;
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*(ReadOnly|Volatile|Bridge|Private|VirtualEthernet)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) values.set(m[1], m[2]);
  }
  const yes = (v: string | undefined) => v !== undefined && ['yes', 'true', '1', 'on'].includes(v.toLowerCase());
  const volatile = values.get('Volatile');
  const isVolatile = volatile !== undefined && !['no', 'false', '0', 'off'].includes(volatile.toLowerCase());
  // Without Private=yes the unit's own --network-veth gives it a veth; nspawnctl writes
  // Private=yes and VirtualEthernet=no exactly for machines without a network.
  const network = values.has('Bridge') || !(yes(values.get('Private')) && values.get('VirtualEthernet')?.toLowerCase() === 'no');
  return { readOnly: yes(values.get('ReadOnly')), ...(isVolatile ? { volatile } : {}), network };
}

/**
 * The machines to upgrade: `names`, or every managed machine. A machine that is stopped, whose
 * root does not keep changes while it runs (read-only or volatile), or that has no network is
 * skipped with the reason; when it was named, nothing is done and the error says why.
 */
export async function selectUpgradeTargets(host: Host, names?: string[]): Promise<{ targets: UpgradeTarget[]; skipped: MachineUpgrade[] }> {
  if (!(await isSystemdBooted(host))) {
    throw new PreflightError([{ what: 'this host is not booted with systemd (/run/systemd/system is missing), so no machine runs here', fix: 'Run nspawnctl upgrade on a host booted with systemd.' }]);
  }
  const managed = (await listManagedMachines(host)).sort();
  const wanted = names ? [...new Set(names)] : managed;
  const unknown = wanted.filter((n) => !managed.includes(n));
  if (unknown.length > 0) {
    throw new NspawnctlError(`no machine named ${unknown.join(', ')} is managed by nspawnctl`, { hint: 'nspawnctl list shows the machines nspawnctl manages.' });
  }
  const running = new Set(await listRunningMachines(host));
  const targets: UpgradeTarget[] = [];
  const skipped: MachineUpgrade[] = [];
  for (const name of wanted) {
    const facts = await readNspawnFacts(host, name);
    let reason: string | undefined;
    if (!running.has(name)) reason = 'it is not running (start it, then upgrade it)';
    else if (facts?.readOnly) reason = 'its root is read-only while it runs (security.readOnly), so its packages cannot change in place';
    else if (facts?.volatile) reason = `its root is volatile (security.volatile: ${facts.volatile}), so an upgrade would be lost when it stops`;
    else if (facts && !facts.network) reason = 'it has no network, so apt inside it cannot download';
    if (reason) skipped.push({ name, status: 'skipped', changes: [], restartNeeded: [], reason });
    else targets.push({ name, network: facts?.network ?? true });
  }
  if (names && skipped.length > 0) {
    throw new NspawnctlError(`cannot upgrade ${skipped.map((s) => `machine ${s.name}: ${s.reason}`).join('; ')}`, {
      hint: 'Nothing was upgraded. Without names, upgrade acts on every running machine it can and lists the others.',
    });
  }
  return { targets, skipped };
}

export interface UpgradeOptions {
  dryRun: boolean;
  /** How many machines are upgraded at the same time. */
  jobs: number;
  /** Restart the machines that need it, one at a time, once every upgrade is done. */
  restart: boolean;
  /** How long a restarted machine may take to be ready. */
  startTimeoutMs: number;
  /** listr2 renderer: 'default' on a TTY, 'simple' for plain lines, 'silent' for --json. */
  renderer: 'default' | 'simple' | 'silent';
  /** The time recorded as `upgraded` (ISO 8601). */
  now?: () => string;
  /** Milliseconds, for the downtime of a restart. */
  clock?: () => number;
}

/**
 * Upgrades `targets` (up to `jobs` at a time) and, with `restart`, restarts those that need it one
 * after another, each waited for as apply waits (its systemd running, its network configured).
 * Every failure is kept in its machine's entry; nothing here throws for one machine.
 */
export async function upgradeMachines(host: Host, targets: UpgradeTarget[], options: UpgradeOptions): Promise<MachineUpgrade[]> {
  // listr2 costs about 0.1 s to load.
  const { Listr } = require('listr2') as typeof import('listr2');
  const now = options.now ?? (() => new Date().toISOString());
  const clock = options.clock ?? Date.now;
  const results = new Map<string, MachineUpgrade>(targets.map((t) => [t.name, { name: t.name, status: 'up to date', changes: [], restartNeeded: [] }]));
  const listrOptions = { registerSignalListeners: false, renderer: options.renderer, rendererOptions: { collapseErrors: false, showErrorMessage: false, collapseSubtasks: false } };
  const apt = { env: { ...APT_UPGRADE_ENV }, dieWithParent: true, timeoutMs: APT_TIMEOUT_MS };

  type Task = { output: string; title: string };
  // Titles name the machine: with plain lines (no terminal), the machines' steps interleave.
  const step = (target: UpgradeTarget, title: string, fn: (result: MachineUpgrade, task: Task) => Promise<void>): ListrTask => ({
    title: `${target.name}: ${title}`,
    task: async (_ctx, task) => {
      const result = results.get(target.name)!;
      try {
        if (host.signal?.aborted) throw new InterruptedError();
        await fn(result, task as unknown as Task);
      } catch (err) {
        result.status = 'failed';
        result.error = describeFailure(target.name, err);
        throw err;
      }
    },
  });

  const machineTasks = (target: UpgradeTarget): ListrTask[] => {
    const name = target.name;
    const onLine = (task: Task) => (line: string) => {
      task.output = line;
    };
    let before = new Map<string, string>();
    return [
      step(target, 'refresh the package lists (apt-get update)', async (_r, task) => {
        await runInMachine(host, name, [...APT_UPDATE], { ...apt, onLine: onLine(task) });
      }),
      ...(options.dryRun
        ? [
            step(target, 'list what would change (apt-get --simulate full-upgrade)', async (r, task) => {
              const sim = await runInMachine(host, name, [...APT_SIMULATE_FULL_UPGRADE], apt);
              r.changes = parseSimulatedUpgrade(sim.stdout);
              r.status = r.changes.length > 0 ? 'would upgrade' : 'up to date';
              task.title = `${name}: ${r.changes.length} package(s) would change`;
            }),
          ]
        : [
            step(target, 'upgrade the packages (apt-get full-upgrade)', async (r, task) => {
              before = await installedPackages(host, name);
              await runInMachine(host, name, [...APT_FULL_UPGRADE], { ...apt, onLine: onLine(task) });
              r.changes = diffInstalledPackages(before, await installedPackages(host, name));
              r.status = r.changes.length > 0 ? 'upgraded' : 'up to date';
              task.title = `${name}: ${r.changes.length} package(s) changed`;
            }),
          ]),
      step(target, 'check whether it needs a restart', async (r, task) => {
        r.restartNeeded = restartReasons(r.changes, await readRebootRequired(host, name), options.dryRun);
        task.title = `${name}: ${r.restartNeeded.length > 0 ? `needs a restart: ${r.restartNeeded.join('; ')}` : 'no restart needed'}`;
      }),
      ...(options.dryRun
        ? []
        : [
            step(target, 'record the upgrade', async (r) => {
              r.upgraded = now();
              await recordUpgrade(host, name, r.upgraded);
            }),
          ]),
    ];
  };

  if (targets.length > 0) {
    const list = new Listr(
      targets.map((t) => ({
        title: `machine ${t.name}`,
        task: (_ctx: unknown, parent: { newListr: (tasks: ListrTask[], o: object) => unknown }) => parent.newListr(machineTasks(t), { concurrent: false, exitOnError: true }),
      })) as never,
      { ...listrOptions, concurrent: Math.max(1, options.jobs), exitOnError: false } as never,
    );
    await list.run().catch(() => undefined);
  }

  const toRestart = options.restart && !options.dryRun ? targets.filter((t) => results.get(t.name)!.status !== 'failed' && results.get(t.name)!.restartNeeded.length > 0) : [];
  if (toRestart.length > 0 && !host.signal?.aborted) {
    // One at a time: a restart is downtime, and a machine that fails to come back stops no other.
    const list = new Listr(
      toRestart.map((t) => ({
        title: `restart ${t.name}`,
        task: async (_ctx: unknown, task: Task) => {
          const result = results.get(t.name)!;
          try {
            if (host.signal?.aborted) throw new InterruptedError();
            const start = clock();
            const readiness = await restartMachine(host, t.name, { timeoutMs: options.startTimeoutMs, network: t.network });
            const downtimeSeconds = Math.round((clock() - start) / 100) / 10;
            result.restarted = { downtimeSeconds, state: readiness.state, failedUnits: readiness.failedUnits };
            task.title = `restarted ${t.name} (down ${downtimeSeconds.toFixed(1)} s)${readiness.state === 'degraded' ? `; degraded, failed units: ${readiness.failedUnits.join(', ') || '(none listed)'}` : ''}`;
          } catch (err) {
            result.restartError = describeFailure(t.name, err);
            throw err;
          }
        },
      })) as never,
      { ...listrOptions, concurrent: false, exitOnError: false } as never,
    );
    await list.run().catch(() => undefined);
  }
  return targets.map((t) => results.get(t.name)!);
}

/** Sets the machine record's `upgraded` (records stay 0600 in their 0700 directory). */
export async function recordUpgrade(host: Host, name: string, when: string): Promise<void> {
  const { record, recordError } = await readMachineRecord(host, name);
  if (!record) throw new NspawnctlError(`machine ${name}: its record cannot be read${recordError ? `: ${recordError}` : ''}, so the upgrade was not recorded`);
  await host.fs.writeFile(machineRecordPath(name), serializeRecord({ ...record, upgraded: when }), { mode: RECORD_MODE, dirMode: 0o700 });
}

/** One line for a failure, without repeating the machine's name. */
function describeFailure(name: string, err: unknown): string {
  if (err instanceof InterruptedError) return 'interrupted';
  const message = err instanceof Error ? err.message : String(err);
  const prefix = `machine ${name}: `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

function describeChange(c: PackageChange): string {
  if (c.from === undefined) return `${c.package} ${c.to} (new)`;
  if (c.to === undefined) return `${c.package} ${c.from} (removed)`;
  return `${c.package} ${c.from} -> ${c.to}`;
}

/** The summary for people: per machine what changed (or would) and whether it needs a restart. */
export function formatUpgradeReport(report: UpgradeReport, restartAsked: boolean): string {
  const out: string[] = [];
  const count = (n: number) => `${n} package${n === 1 ? '' : 's'}`;
  for (const m of report.machines) {
    switch (m.status) {
      case 'skipped':
        out.push(`${m.name}: skipped: ${m.reason}`);
        continue;
      case 'failed':
        out.push(`${m.name}: failed: ${m.error}`);
        break;
      case 'up to date':
        out.push(`${m.name}: up to date`);
        break;
      case 'would upgrade':
        out.push(`${m.name}: would change ${count(m.changes.length)}`);
        break;
      case 'upgraded':
        out.push(`${m.name}: changed ${count(m.changes.length)}`);
        break;
    }
    for (const c of m.changes) out.push(`    ${describeChange(c)}`);
    if (m.restartNeeded.length > 0) out.push(`    ${report.dryRun && m.changes.length > 0 ? 'would need' : 'needs'} a restart: ${m.restartNeeded.join('; ')}`);
    if (m.restarted) out.push(`    restarted (down ${m.restarted.downtimeSeconds.toFixed(1)} s)${m.restarted.state === 'degraded' ? `, degraded: ${m.restarted.failedUnits.join(', ') || '(no failed unit listed)'}` : ''}`);
    if (m.restartError) out.push(`    restart failed: ${m.restartError}`);
  }
  const pending = report.machines.filter((m) => m.restartNeeded.length > 0 && !m.restarted && !m.restartError);
  if (pending.length > 0 && !(restartAsked && !report.dryRun)) {
    const names = pending.map((m) => m.name);
    const them = names.length === 1 ? 'it' : 'them one at a time';
    out.push('', `Restart needed: ${names.join(', ')}. nspawnctl upgrade --restart ${names.join(' ')} restarts ${them} and waits until ${names.length === 1 ? 'it is' : 'each is'} ready (or restart ${them} when convenient).`);
  }
  if (report.machines.length === 0) out.push('No machine is managed by nspawnctl on this host.');
  return `${out.join('\n')}\n`;
}

/** The error upgrade ends with when a machine failed: one line per failed upgrade or restart. */
export function summarizeUpgradeFailures(report: UpgradeReport): NspawnctlError | undefined {
  const lines = report.machines.flatMap((m) => [...(m.error !== undefined ? [`machine ${m.name}: ${m.error}`] : []), ...(m.restartError !== undefined ? [`machine ${m.name}: restart failed: ${m.restartError}`] : [])]);
  if (lines.length === 0) return undefined;
  const interrupted = report.machines.some((m) => m.error === 'interrupted' || m.restartError === 'interrupted');
  const done = report.machines.filter((m) => m.status === 'upgraded' || m.status === 'up to date' || m.status === 'would upgrade').map((m) => m.name);
  return new NspawnctlError(`upgrade ${interrupted ? 'was interrupted' : 'failed'}${done.length ? ` (${report.dryRun ? 'listed' : 'done'}: ${done.join(', ')})` : ''}:\n${lines.map((l) => `  - ${l}`).join('\n')}`, {
    exitCode: interrupted ? ExitCode.interrupted : ExitCode.failure,
    hint: 'The other machines were not held up. Fix the cause and run nspawnctl upgrade again for the machines named.',
  });
}
