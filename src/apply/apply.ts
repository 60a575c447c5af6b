// Runs a plan's steps in order through the Host, showing progress with listr2.
import type { ListrTask } from 'listr2';
import { ExitCode, InterruptedError, NspawnctlError } from '../errors';
import { Host, withRootfs } from '../host/host';
import { bridgeNetworkPath, machineDirOf } from '../host/paths';
import { Machine } from '../manifest/schema';
import { RECORD_MODE, serializeRecord } from '../plan/records';
import { Conflict, describeStep, Plan, Step } from '../plan/steps';
import { createMachine, prepareReadOnly } from './bootstrap';
import { removeOwnedFile, writeHostEntry, writeRootfsEntry } from './files';
import { HealthReport, reloadHealth, waitHealthy } from './health';
import { Readiness, reloadMachineUnits } from './in-machine';
import { daemonReload, disableMachine, enableMachine, handBindSource, restartMachine, startMachine, stopMachine } from './machinectl';
import { CacheOptions, ImageCache } from './image-cache';
import { installPackages } from './packages';
import { restartServices } from './services';
import { rebuildMachine } from './rebuild';
import { removeStaging } from './staging';

export interface ApplyOptions {
  /** listr2 renderer: 'default' on a TTY, 'simple' for plain lines, 'silent' for --json. */
  renderer: 'default' | 'simple' | 'silent';
  /** How long a machine may take to reach "running". */
  startTimeoutMs: number;
  /** How many machines are created, configured and started at the same time. */
  jobs: number;
  /** The base-image cache; undefined bootstraps every new machine directly. */
  cache?: CacheOptions;
  /** The manifest's machines, by name (what installs and read-only preparation need of them). */
  machines?: Record<string, Machine>;
  /** Told when each step starts and ends (apply --events: JSON lines for a fleet controller). */
  onEvent?: (event: ApplyEvent) => void;
}

/** A step starting, done or failed, with its group (a machine, or HOST_GROUP) and its description. */
export interface ApplyEvent {
  event: 'step';
  status: 'start' | 'done' | 'failed';
  group: string;
  step: string;
  message?: string;
}

/** What runStep needs besides the step. */
export interface StepOptions {
  startTimeoutMs: number;
  cache?: { images: ImageCache; architecture: () => Promise<string> };
  machines?: Record<string, Machine>;
  /** Told what a machine's systemd said once the machine was ready (after a start or restart). */
  onReady?: (machine: string, readiness: Readiness) => void;
  /** Told a machine's health once its check passed. */
  onHealthy?: (machine: string, report: HealthReport) => void;
  /** The wait between two looks at a failing health check (tests). */
  sleep?: (ms: number) => Promise<void>;
}

/** The group of host-wide steps (bridges, networkd); ":" keeps it apart from machine names. */
export const HOST_GROUP = ':host';

export interface ApplyFailure {
  /** HOST_GROUP for network steps, else the machine name. */
  group: string;
  step: Step;
  error: Error;
}

export interface ApplyResult {
  done: Step[];
  failures: ApplyFailure[];
  /** Groups not attempted because an earlier failure made them pointless (or an interrupt). */
  skipped: string[];
  /** What the systemd of each machine this apply started or restarted said once it was ready. */
  ready: Record<string, Readiness>;
  /** The health of each machine whose check apply waited for. */
  health: Record<string, HealthReport>;
}

/** Which group a step belongs to: a machine's name, or HOST_GROUP for bridges and networkd. */
export function stepGroup(step: Step): string {
  if ('machine' in step) return step.machine;
  if ('owner' in step && step.owner.type === 'machine') return step.owner.name;
  return HOST_GROUP;
}

function groupLabel(group: string): string {
  return group === HOST_GROUP ? 'host (bridges, networkd)' : `machine ${group}`;
}

/**
 * Runs the steps group by group: first the host's (bridges, networkd), then the machines', up
 * to `jobs` machines at a time. A failing machine stops only its own remaining steps; the others
 * are still applied. A failure in the host group, or an interrupt, stops what has not started.
 */
export async function applyPlan(host: Host, plan: Plan, options: ApplyOptions): Promise<ApplyResult> {
  // listr2 costs about 0.1 s to load; an apply with nothing to do never gets here.
  const { Listr } = require('listr2') as typeof import('listr2');
  const groups = groupSteps(plan.steps);
  const result: ApplyResult = { done: [], failures: [], skipped: [], ready: {}, health: {} };
  const stepOptions: StepOptions = {
    startTimeoutMs: options.startTimeoutMs,
    cache: options.cache ? imageCacheFor(host, options.cache) : undefined,
    machines: options.machines ?? {},
    onReady: (machine, readiness) => {
      result.ready[machine] = readiness;
    },
    onHealthy: (machine, report) => {
      result.health[machine] = report;
    },
  };
  // registerSignalListeners off: listr2 would exit(127) on SIGINT before nspawnctl cleans up.
  const listrOptions = { exitOnError: true, registerSignalListeners: false, renderer: options.renderer, rendererOptions: { collapseErrors: false, showErrorMessage: false, collapseSubtasks: false } };

  const runGroup = (group: { name: string; steps: Step[] }): ListrTask[] =>
    group.steps.map((step, index) => ({
      title: describeStep(step),
      task: async (_ctx, task) => {
        if (host.signal?.aborted) {
          if (index === 0) result.skipped.push(group.name);
          else result.failures.push({ group: group.name, step, error: new InterruptedError() });
          throw new InterruptedError();
        }
        const event = (status: ApplyEvent['status'], message?: string) => options.onEvent?.({ event: 'step', status, group: group.name, step: describeStep(step), ...(message ? { message } : {}) });
        event('start');
        try {
          await runStep(host, step, stepOptions, (line) => {
            task.output = line;
          });
        } catch (err) {
          result.failures.push({ group: group.name, step, error: err as Error });
          event('failed', (err as Error).message);
          throw err;
        }
        result.done.push(step);
        event('done');
      },
    }));

  const hostGroup = groups.find((g) => g.name === HOST_GROUP);
  const machineGroups = groups.filter((g) => g.name !== HOST_GROUP);
  if (hostGroup) {
    try {
      await new Listr(runGroup(hostGroup), { ...listrOptions, concurrent: false } as never).run();
    } catch {
      result.skipped.push(...machineGroups.map((g) => g.name));
      return result;
    }
  }
  if (machineGroups.length === 0) return result;
  const list = new Listr(
    machineGroups.map((group) => ({
      title: groupLabel(group.name),
      task: (_ctx: unknown, parent: { newListr: (tasks: ListrTask[], o: object) => unknown }) => parent.newListr(runGroup(group), { concurrent: false, exitOnError: true }),
    })) as never,
    { ...listrOptions, concurrent: Math.max(1, options.jobs), exitOnError: false } as never,
  );
  await list.run().catch(() => undefined);
  return result;
}

/** The steps by group, in the order each group first appears; one pass (a Map), not a search per step. */
export function groupSteps(steps: Step[]): { name: string; steps: Step[] }[] {
  const groups = new Map<string, Step[]>();
  for (const step of steps) {
    const name = stepGroup(step);
    const group = groups.get(name);
    if (group) group.push(step);
    else groups.set(name, [step]);
  }
  return [...groups].map(([name, own]) => ({ name, steps: own }));
}

/** One ImageCache per apply, and the architecture asked of dpkg once, when first needed. */
export function imageCacheFor(host: Host, cache: CacheOptions): StepOptions['cache'] {
  let arch: Promise<string> | undefined;
  return {
    images: new ImageCache(host, cache),
    architecture: () => {
      arch ??= host.runner.run('dpkg', ['--print-architecture']).then((r) => r.stdout.trim());
      return arch;
    },
  };
}

/** The error apply ends with when some groups failed or were left alone for a conflict: one line each. */
export function summarizeFailures(result: Pick<ApplyResult, 'done' | 'failures' | 'skipped'>, conflicts: Conflict[] = []): NspawnctlError {
  const interrupted = result.failures.some((f) => f.error instanceof InterruptedError);
  const lines = result.failures.map((f) => {
    const who = groupLabel(f.group);
    const prefix = f.group === HOST_GROUP ? '' : `${who}: `;
    const message = prefix && f.error.message.startsWith(prefix) ? f.error.message.slice(prefix.length) : f.error.message;
    return `${who}: ${message}`;
  });
  for (const c of conflicts) lines.push(`${c.owner.type} ${c.owner.name}: left alone, conflict: ${c.message}`);
  if (result.skipped.length > 0) lines.push(`not attempted: ${result.skipped.map(groupLabel).join(', ')}`);
  // Machines whose every planned step was done (host-wide steps are not listed).
  const ok = [...new Set(result.done.map(stepGroup))].filter((g) => g !== HOST_GROUP && !result.failures.some((f) => f.group === g));
  const verb = interrupted ? 'was interrupted' : result.failures.length > 0 ? 'failed' : 'left machines with conflicts alone';
  return new NspawnctlError(`apply ${verb}${ok.length ? ` (applied: ${ok.join(', ')})` : ''}:\n${lines.map((l) => `  - ${l}`).join('\n')}`, {
    exitCode: interrupted ? ExitCode.interrupted : ExitCode.failure,
    hint: 'Fix the cause and run apply again: it continues from where this run stopped.',
    cause: result.failures[0]?.error,
  });
}

/** Carries out one step; every effect goes through `host`. */
export async function runStep(host: Host, step: Step, options: StepOptions, onLine: (line: string) => void): Promise<void> {
  const spec = (name: string): Machine => {
    const m = options.machines?.[name];
    if (!m) throw new NspawnctlError(`internal: machine ${name} is not in the manifest being applied`);
    return m;
  };
  const wait = (name: string) => ({ timeoutMs: options.startTimeoutMs, network: options.machines?.[name]?.network !== undefined });
  try {
    switch (step.kind) {
      case 'create-machine':
        return await createMachine(host, { spec: step.spec, entries: step.entries, record: step.record, onLine, cache: options.cache });
      case 'write-file': {
        const entry = step.entry;
        if (entry.inRootfs) await withRootfs(host, rootfsOf(entry.hostPath), (rootfs) => writeRootfsEntry(rootfs, entry));
        else await writeHostEntry(host, entry);
        return;
      }
      case 'remove-file':
        await removeOwnedFile(host, step.path);
        return;
      case 'write-record':
        await host.fs.writeFile(step.path, serializeRecord(step.record), { mode: RECORD_MODE, dirMode: 0o700 });
        return;
      case 'rebuild-machine': {
        const r = await rebuildMachine(host, { spec: step.spec, entries: step.entries, record: step.record, timeoutMs: options.startTimeoutMs, cache: options.cache, onLine });
        onLine(`rebuilt ${step.machine}: downtime ${(r.downtimeMs / 1000).toFixed(1)} s; the old root filesystem is kept at ${r.previous}`);
        return reportReadiness(step.machine, r.readiness, onLine);
      }
      case 'install-packages':
        return await installPackages(host, spec(step.machine), step.packages, { timeoutMs: options.startTimeoutMs, onLine });
      case 'remove-staging':
        await removeStaging(host, step.path);
        return;
      case 'create-bind-source':
        await host.fs.mkdir(step.path, 0o755);
        return;
      case 'hand-bind-source':
        return await handBindSource(host, step.machine, step.path);
      case 'enable-networkd':
        await host.runner.run('systemctl', ['enable', '--now', 'systemd-networkd.socket', 'systemd-networkd.service']);
        return await waitForBridges(host, step.bridges, 15000);
      case 'reload-networkd':
        await host.runner.run('networkctl', ['reload']);
        for (const bridge of step.reconfigure) {
          await host.runner.run('networkctl', ['reconfigure', bridge], { allowFailure: true });
        }
        return await waitForBridges(host, step.bridges, 15000);
      case 'enable-machine':
        return await enableMachine(host, step.machine);
      case 'disable-machine':
        return await disableMachine(host, step.machine);
      case 'start-machine':
        await resetRestartLimit(host, step.machine, options.machines?.[step.machine]);
        return reportReadiness(step.machine, await startMachine(host, step.machine, wait(step.machine)), onLine, options.onReady);
      case 'restart-machine':
        await resetRestartLimit(host, step.machine, options.machines?.[step.machine]);
        return reportReadiness(step.machine, await restartMachine(host, step.machine, wait(step.machine)), onLine, options.onReady);
      case 'reload-health':
        return await reloadHealth(host, step.machine, step.action);
      case 'wait-healthy': {
        const check = spec(step.machine).health;
        if (!check) throw new NspawnctlError(`internal: machine ${step.machine} has no health check`);
        const report = await waitHealthy(host, step.machine, check, { timeoutMs: options.startTimeoutMs, sleep: options.sleep });
        options.onHealthy?.(step.machine, report);
        return;
      }
      case 'prepare-read-only':
        if (step.stopFirst) await stopMachine(host, step.machine, { timeoutMs: options.startTimeoutMs });
        return await prepareReadOnly(host, spec(step.machine), step.shift, step.mountPoints, options.startTimeoutMs, onLine);
      case 'reload-units':
        return await daemonReload(host);
      case 'reload-machine-units':
        return await reloadMachineUnits(host, step.machine, step.restart, step.stop);
      case 'restart-services':
        return await restartServices(host, step, onLine);
      case 'load-filter':
        await host.runner.run('nft', ['-f', step.path]);
        return;
      case 'unload-filter':
        return await unloadFilter(host, step.table, step.chain);
    }
  } catch (err) {
    if (err instanceof NspawnctlError && !(err instanceof InterruptedError) && ownerName(step) && !err.message.startsWith('machine ')) {
      throw new NspawnctlError(`${ownerName(step)}: ${err.message}`, { hint: err.hint, cause: err, exitCode: err.exitCode });
    }
    throw err;
  }
}

/**
 * A machine whose failing health check restarts it has a start limit on its unit (the health
 * drop-in). A start or restart by apply is the admin's, not a health restart: the count starts
 * afresh, and a machine the limit left stopped (start-limit-hit) can start again.
 */
async function resetRestartLimit(host: Host, name: string, machine: Machine | undefined): Promise<void> {
  if (machine?.health?.onFailure !== 'restart') return;
  await host.runner.run('systemctl', ['reset-failed', `systemd-nspawn@${name}.service`], { allowFailure: true });
}

/** A degraded machine runs, but says which of its units failed (as progress, and in apply's summary). */
function reportReadiness(name: string, readiness: Readiness, onLine: (line: string) => void, onReady?: StepOptions['onReady']): void {
  if (readiness.state === 'degraded') onLine(describeReadiness(name, readiness));
  onReady?.(name, readiness);
}

/** One line on a machine that is ready: "machine web is running but degraded; failed units: ...". */
export function describeReadiness(name: string, readiness: Readiness): string {
  if (readiness.state === 'running') return `machine ${name} is running`;
  return `machine ${name} is running but degraded; failed units: ${readiness.failedUnits.join(', ') || '(none listed)'}`;
}

/** Deletes one chain of nspawnctl's table, and the table once no chain is left. */
export async function unloadFilter(host: Host, table: string, chain: string): Promise<void> {
  await host.runner.run('nft', ['delete', 'chain', 'bridge', table, chain], { allowFailure: true });
  const r = await host.runner.run('nft', ['-j', 'list', 'table', 'bridge', table], { allowFailure: true });
  if (r.exitCode === 0 && !r.stdout.includes('"chain":')) {
    await host.runner.run('nft', ['delete', 'table', 'bridge', table], { allowFailure: true });
  }
  // Its boot unit was removed with the network's other filter files: systemd forgets it now.
  await daemonReload(host);
}

/** Waits until networkd has created the bridges the machines will join. */
export async function waitForBridges(host: Host, bridges: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const bridge of bridges) {
    // Asked of the kernel with ip(8) rather than /sys/class/net, which shows the network
    // namespace sysfs was mounted in (not always ours inside containers).
    while ((await host.runner.run('ip', ['link', 'show', 'dev', bridge], { allowFailure: true })).exitCode !== 0) {
      if (Date.now() > deadline) {
        throw new NspawnctlError(`bridge ${bridge} did not appear within ${timeoutMs / 1000} s after networkd was reloaded`, {
          hint: `Check ${bridgeNetworkPath(bridge)} and: journalctl -u systemd-networkd`,
        });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function rootfsOf(hostPath: string): string {
  const dir = machineDirOf(hostPath);
  if (!dir) throw new NspawnctlError(`internal: ${hostPath} is not inside a machine`);
  return dir;
}

function ownerName(step: Step): string | undefined {
  if ('machine' in step) return `machine ${step.machine}`;
  if ('owner' in step) return `${step.owner.type} ${step.owner.name}`;
  return undefined;
}
