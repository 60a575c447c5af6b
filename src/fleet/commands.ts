// plan, apply, list, status, destroy and host init over a fleet: the controller side. Each host's
// own nspawnctl does the work, with all its single-host guarantees (its lock, its records, its
// checks); the controller cuts the manifest per host, runs the hosts in parallel (apply: in
// rolling batches), shows their progress and sums their answers up, one result per host.
import { Flags } from '@oclif/core';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { DEFAULT_CACHE_DIR } from '../apply/image-cache';
import { escapeControl, ExitCode, NspawnctlError } from '../errors';
import { Runner } from '../host/runner';
import { Fleet, FleetHost, Manifest, MACHINE_NAME } from '../manifest/schema';
import { formatTable } from '../plan/format';
import { describeHostResult, forEachHost, HostResult, remoteTempDir, remoteVersion, runRemote, targetOf } from './remote';
import { fleetOf, hostSlice, machinesOn, selectHosts } from './slice';
import { describeMove, locateMachines, Location, Move, MoveResult, plannedMoves, retireMachine, transferMachine, undoTransfer } from './move';
import { checkSshOptions, SshTransport } from './ssh';

export const fleetFlags = {
  host: Flags.string({ description: 'Fleet: act on this host of hosts: (repeatable; default: every host).', multiple: true }),
  'hosts-label': Flags.string({ description: 'Fleet: act on the hosts with this label (repeatable).', multiple: true }),
  'ssh-option': Flags.string({ description: 'Fleet: an option for ssh, as ssh -o takes it (repeatable), e.g. ConnectTimeout=5.', multiple: true }),
};

export interface FleetFlagValues {
  host?: string[];
  'hosts-label'?: string[];
  'ssh-option'?: string[];
}

/** Where a fleet command writes: stdout (its answer), stderr (progress, notes). */
export interface FleetIo {
  runner: Runner;
  out: (text: string) => void;
  err: (text: string) => void;
  json: boolean;
  /** The local nspawnctl's version, which every host should run. */
  version: string;
  renderer: 'default' | 'simple' | 'silent';
  /** Asks a question on the terminal; undefined when stdin is not one. */
  ask?: (question: string) => Promise<string>;
}

/**
 * JSON for stdout: what hosts answered goes into it, and JSON.stringify leaves C1 control
 * characters (U+0080 to U+009F, which some terminals obey) as they are: they are written as \u
 * escapes, which any JSON reader reads back the same.
 */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[\u0080-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Refuses fleet flags for a manifest without hosts: (or a command given none). */
export function refuseFleetFlags(flags: FleetFlagValues & { forks?: number; serial?: number; 'max-fail'?: number }, file: string): void {
  const used = (['host', 'hosts-label', 'ssh-option'] as const).filter((k) => (flags[k] ?? []).length > 0).map((k) => `--${k}`);
  if (flags.serial !== undefined) used.push('--serial');
  if (flags['max-fail'] !== undefined) used.push('--max-fail');
  if (used.length > 0) throw new NspawnctlError(`${used.join(', ')} need(s) a manifest with hosts: (${file} has none)`, { exitCode: ExitCode.invalidManifest, hint: 'See docs/fleet.md.' });
}

/** Runs `fn` with a transport whose connections are closed afterwards, whatever happens. */
async function withTransport<T>(io: FleetIo, flags: FleetFlagValues, fn: (t: SshTransport) => Promise<T>): Promise<T> {
  const transport = new SshTransport(io.runner, { options: checkSshOptions(flags['ssh-option'] ?? []) });
  try {
    return await fn(transport);
  } finally {
    await transport.close();
  }
}

/** A note for each host whose nspawnctl is another version than this one. */
function versionNote(io: FleetIo, r: HostResult, file: string): void {
  if (r.version && r.version !== io.version) {
    io.err(`note: host ${r.host} runs nspawnctl ${r.version}, this is ${io.version}; upgrade it: nspawnctl host init ${file} --host ${r.host} --package PKG\n`);
  }
}

/** Asks a host's version first; a host without nspawnctl (or not reachable) fails there. */
async function onHost(transport: SshTransport, h: FleetHost, run: (version: string) => Promise<HostResult>): Promise<HostResult> {
  const v = await remoteVersion(transport, h);
  if (v.failure) return v.failure.result === 'not-installed' ? { ...v.failure, error: `${v.failure.error}; install it: nspawnctl host init FILE --host ${h.name} --package PKG` } : v.failure;
  return { ...(await run(v.version)), version: v.version };
}

/** How long a host may take to plan, list or show (a dead one is given up by ssh's keepalive sooner). */
const PLAN_TIMEOUT_MS = 15 * 60_000;
/** How long a host may take to apply or destroy: bootstraps of many machines take a while. */
const APPLY_TIMEOUT_MS = 6 * 3_600_000;

const exitFor = (results: HostResult[]) => (results.every((r) => r.result === 'ok') ? 0 : ExitCode.failure);

function hostsJson(results: HostResult[]): Record<string, unknown> {
  return Object.fromEntries(results.map(({ host, ...r }) => [host, r]));
}

/** The steps of a remote plan's JSON, as lines. */
function planLines(json: unknown): { steps: number; lines: string[] } {
  const p = (json ?? {}) as { steps?: { description?: string; reason?: string }[]; conflicts?: unknown[]; notices?: unknown[] };
  const steps = Array.isArray(p.steps) ? p.steps : [];
  const text = (x: unknown) => escapeControl(typeof x === 'string' ? x : JSON.stringify(x));
  return {
    steps: steps.length,
    lines: [
      ...steps.map((s, i) => `  ${i + 1}. ${text(s.description)}${s.reason ? `  (${text(s.reason)})` : ''}`),
      ...(Array.isArray(p.conflicts) ? p.conflicts : []).map((c) => `  ! ${text((c as { message?: unknown }).message ?? c)}`),
      ...(Array.isArray(p.notices) ? p.notices : []).map((n) => `  note: ${text((n as { message?: unknown }).message ?? n)}`),
    ],
  };
}

function hostLabel(h: FleetHost | undefined, name: string): string {
  return h ? `host ${name} (${h.ssh}${h.port ? `:${h.port}` : ''})` : `host ${name}`;
}

/** Notes for hosts that could not say which machines they have: a machine that moved may be there. */
function locationNotes(io: FleetIo, location: Location): void {
  for (const r of location.unknown) io.err(`note: host ${r.host} could not list its machines (${r.result}); a machine that moved away from it is not seen\n`);
}

/** Moves, and machines found on several hosts, as lines for the plan. */
function moveLines(fleet: Fleet, moves: Move[], problems: MoveResult[]): string[] {
  if (moves.length === 0 && problems.length === 0) return [];
  return [`== moves (apply asks first, or needs --yes):`, ...moves.map((m) => `  ${describeMove(m, fleet)}`), ...problems.map((p) => `  ! ${p.error}`)];
}

/**
 * plan over a fleet: the machines that moved (their `host:` changed), then one section per host,
 * then a total. Exit 1 when a host could not be planned or a machine is on several hosts.
 */
export async function fleetPlan(io: FleetIo, manifest: Manifest, flags: FleetFlagValues): Promise<number> {
  const fleet = fleetOf(manifest, 'plan');
  const hosts = selectHosts(fleet, flags.host, flags['hosts-label']);
  const { results, moves, problems } = await withTransport(io, flags, async (t) => {
    const location = await locateMachines(t, fleet);
    locationNotes(io, location);
    const { moves, problems } = plannedMoves(fleet, location, hosts);
    // A machine moving in is planned by its move, not as a new machine of its new host.
    const incoming = (host: string) => [...moves, ...problems].filter((m) => m.to === host).map((m) => m.machine);
    const results = await forEachHost(hosts, { forks: hosts.length }, (h) => onHost(t, h, () => runRemote(t, h, ['plan', '--json', '-'], { input: hostSlice(fleet, h.name, incoming(h.name)), timeoutMs: PLAN_TIMEOUT_MS })));
    return { results, moves, problems };
  });
  results.forEach((r) => versionNote(io, r, manifest.file));
  const total = results.reduce((n, r) => n + (r.result === 'ok' ? planLines(r.json).steps : 0), 0);
  const failed = results.filter((r) => r.result !== 'ok');
  const code = problems.length > 0 ? ExitCode.failure : exitFor(results);
  if (io.json) {
    io.out(jsonText({ moves, problems, hosts: hostsJson(results), total: { steps: total, moves: moves.length, hosts: results.length, failed: failed.map((r) => r.host) } }));
    return code;
  }
  const sections = results.map((r) => {
    const head = hostLabel(fleet.hosts[r.host], r.host);
    if (r.result !== 'ok') return `== ${head}: ${r.result}: ${r.error ?? ''}`;
    const p = planLines(r.json);
    const machines = machinesOn(fleet, r.host);
    return [`== ${head}: ${p.steps === 0 ? 'no changes' : `${p.steps} step(s)`} (${machines.length} machine(s): ${machines.join(', ') || 'none'})`, ...p.lines].join('\n');
  });
  const moved = moves.length > 0 ? ` and ${moves.length} move(s)` : '';
  io.out(`${[...moveLines(fleet, moves, problems), ...sections].join('\n')}\nTotal: ${total} step(s)${moved} on ${results.length - failed.length} host(s)${failed.length ? `; ${failed.length} host(s) could not be planned: ${failed.map((r) => r.host).join(', ')}` : ''}.`);
  return code;
}

export interface FleetApplyFlags extends FleetFlagValues {
  forks: number;
  serial?: number;
  'max-fail'?: number;
  yes: boolean;
  wait: boolean;
  'start-timeout': number;
  jobs: number;
  cache?: boolean;
  'cache-dir'?: string;
  'cache-max-age'?: number;
}

/** An event line of a remote apply --events, or undefined for any other line. */
function parseEvent(line: string): { status: string; group: string; step: string } | undefined {
  if (!line.startsWith('{"event":"step"')) return undefined;
  try {
    const e = JSON.parse(line) as { status?: unknown; group?: unknown; step?: unknown };
    if (typeof e.status === 'string' && typeof e.group === 'string' && typeof e.step === 'string') return { status: escapeControl(e.status), group: escapeControl(e.group), step: escapeControl(e.step) };
  } catch {
    // not an event
  }
  return undefined;
}

/**
 * apply over a fleet: each host's nspawnctl applies its slice (--no-wait unless --wait: a busy host
 * is reported, not waited on; --yes passed on only when given here). Hosts run --forks at a time,
 * in batches of --serial, stopping after --max-fail failed hosts; one listr2 task per host shows
 * its machines' steps as they start. Machines whose host: changed are then moved (asked first, or
 * --yes), each into a host that applied without it, and that host applies again with it. Exit 1
 * when any host did not apply or a move failed.
 */
export async function fleetApply(io: FleetIo, manifest: Manifest, flags: FleetApplyFlags): Promise<number> {
  const fleet = fleetOf(manifest, 'apply');
  const hosts = selectHosts(fleet, flags.host, flags['hosts-label']);
  const { Listr } = require('listr2') as typeof import('listr2');
  // The image cache flags go on as given (a --cache-dir is a path on each host).
  const cache = [...(flags.cache === false ? ['--no-cache'] : []), ...(flags['cache-dir'] !== undefined && flags['cache-dir'] !== DEFAULT_CACHE_DIR ? [`--cache-dir=${flags['cache-dir']}`] : []), ...(flags['cache-max-age'] !== undefined ? [`--cache-max-age=${flags['cache-max-age']}`] : [])];
  const args = ['apply', '--json', '--events', `--start-timeout=${flags['start-timeout']}`, `--jobs=${flags.jobs}`, ...cache, ...(flags.yes ? ['--yes'] : []), ...(flags.wait ? [] : ['--no-wait']), '-'];
  const { results, moved, problems } = await withTransport(io, flags, async (t) => {
    const location = await locateMachines(t, fleet);
    locationNotes(io, location);
    const { moves, problems } = plannedMoves(fleet, location, hosts);
    if (moves.length > 0 && !flags.yes) {
      const what = `${moves.length} machine(s) move to another host: ${moves.map((m) => `${m.machine} (${m.from} -> ${m.to})`).join(', ')}; each is backed up, copied, restored and then destroyed on its old host`;
      if (!io.ask) throw new NspawnctlError(`refusing to apply: ${what}; run apply with --yes (stdin is not a terminal)`, { exitCode: ExitCode.invalidManifest });
      const answer = await io.ask(`${what}. Move them? [y/N] `);
      if (!/^y(es)?$/i.test(answer.trim())) throw new NspawnctlError('not confirmed; nothing was changed');
    }
    const incoming = (host: string, pending: (Move | MoveResult)[]) => pending.filter((m) => m.to === host).map((m) => m.machine);
    // One listr2 group per host: a task for its networks and the host's own result, and one for
    // each of its machines, each showing that machine's step as the host's --events report it.
    const applyHost = (h: FleetHost, without: string[]) => async (): Promise<HostResult> => {
      let result: HostResult | undefined;
      const machines = machinesOn(fleet, h.name).filter((m) => !without.includes(m));
      const HOST = ':host';
      const outputs = new Map<string, { output: string }>();
      const seen = new Map<string, 'started' | 'failed'>();
      let running: Promise<void> | undefined;
      const start = () => {
        running ??= onHost(t, h, () =>
          runRemote(t, h, args, {
            input: hostSlice(fleet, h.name, without),
            timeoutMs: APPLY_TIMEOUT_MS,
            onLine: (line) => {
              const e = parseEvent(line);
              if (!e) return;
              const group = outputs.has(e.group) ? e.group : HOST;
              if (e.status === 'failed') seen.set(group, 'failed');
              else if (!seen.has(group)) seen.set(group, 'started');
              const sub = outputs.get(group);
              if (sub && e.status !== 'done') sub.output = `${group === HOST && e.group !== HOST ? `${e.group}: ` : ''}${e.step}${e.status === 'failed' ? ' [failed]' : ''}`;
            },
          }),
        ).then((r) => {
          result = r;
        });
        return running;
      };
      const subtask = (group: string, title: string) => ({
        title,
        task: async (_ctx: unknown, sub: { output: string }) => {
          outputs.set(group, sub);
          await start();
          const r = result!;
          if (seen.get(group) === 'failed') throw new Error(`${title}: failed`);
          if (group === HOST && r.result !== 'ok') throw new Error(describeHostResult(r, 'ok'));
          if (r.result !== 'ok' && !seen.has(group)) throw new Error(`${title}: not applied`);
        },
      });
      const list = new Listr(
        [
          {
            title: `${hostLabel(h, h.name)}: ${machines.join(', ') || 'no machines'}`,
            task: async (_ctx: unknown, task: { newListr: (tasks: unknown[], o: object) => { run: () => Promise<unknown> } }) => {
              // Every task's output holder is known before the first event can arrive.
              for (const g of [HOST, ...machines]) outputs.set(g, { output: '' });
              await task
                .newListr([subtask(HOST, 'networks and host'), ...machines.map((m) => subtask(m, m))], { concurrent: true, exitOnError: false })
                .run()
                .catch(() => undefined);
              // The group fails with its host (its tasks say which part).
              if (result && result.result !== 'ok') throw new Error(describeHostResult(result, 'ok'));
            },
          },
        ] as never,
        { renderer: io.renderer, exitOnError: false, registerSignalListeners: false, rendererOptions: { showErrorMessage: false, collapseErrors: false, collapseSubtasks: false } } as never,
      );
      await list.run().catch(() => undefined);
      if (running) await running;
      return result ?? { host: h.name, result: 'failed', error: 'not run' };
    };
    // 1. Every host without the machines moving into it (their networks are made all the same).
    const first = await forEachHost(hosts, { forks: flags.forks, serial: flags.serial, maxFail: flags['max-fail'] }, (h) => applyHost(h, incoming(h.name, [...moves, ...problems]))());
    const byHost = new Map(first.map((r) => [r.host, r]));
    // 2. The moves, one at a time, into hosts that applied: backup, copy, restore (stopped).
    const transferred: MoveResult[] = [];
    for (const m of moves) {
      const target = byHost.get(m.to);
      if (target && target.result !== 'ok') {
        transferred.push({ ...m, result: 'failed', error: `host ${m.to} did not apply (${target.result}); ${m.machine} stays on ${m.from}` });
        continue;
      }
      transferred.push(await transferMachine(io.runner, t, fleet, m, { startTimeoutSec: flags['start-timeout'], say: (line) => io.err(`${line}\n`) }));
    }
    // 3. Hosts that received a machine apply again, with it: it starts with the manifest's settings.
    const received = hosts.filter((h) => transferred.some((m) => m.to === h.name && m.result === 'ok'));
    const second = await forEachHost(received, { forks: flags.forks }, (h) => applyHost(h, incoming(h.name, [...transferred.filter((m) => m.result !== 'ok'), ...problems]))());
    for (const r of second) {
      const before = byHost.get(r.host);
      byHost.set(r.host, r.result === 'ok' && before ? { ...r, json: mergeApplied(before.json, r.json) } : r);
    }
    // 4. Only a machine that now runs on its new host is destroyed on its old one.
    const moved: MoveResult[] = [];
    for (const m of transferred) {
      if (m.result !== 'ok') moved.push(m);
      else if (byHost.get(m.to)?.result !== 'ok') moved.push({ ...m, result: 'failed', error: `${m.to} did not apply with ${m.machine}; ${await undoTransfer(t, fleet, m)}, and ${m.machine} runs on ${m.from} as before` });
      else moved.push(await retireMachine(t, fleet, m, (line) => io.err(`${line}\n`)));
    }
    return { results: hosts.map((h) => byHost.get(h.name)!), moved, problems };
  });
  results.forEach((r) => versionNote(io, r, manifest.file));
  const movesFailed = [...moved, ...problems].filter((m) => m.result !== 'ok');
  const code = movesFailed.length > 0 ? ExitCode.failure : exitFor(results);
  if (io.json) {
    io.out(jsonText({ moves: [...moved, ...problems], hosts: hostsJson(results), ok: code === 0 }));
    return code;
  }
  const applied = (r: HostResult) => {
    const j = (r.json ?? {}) as { applied?: unknown[]; steps?: unknown[] };
    return Array.isArray(j.steps) && j.steps.length > 0 ? `applied ${Array.isArray(j.applied) ? j.applied.length : 0} of ${j.steps.length} step(s)` : 'no changes';
  };
  io.out(
    [
      ...[...moved, ...problems].map((m) => (m.result === 'ok' ? `moved ${m.machine}: ${m.from} -> ${m.to}` : `move of ${m.machine} (${m.from} -> ${m.to}) failed: ${m.error}`)),
      ...results.map((r) => describeHostResult(r, applied(r))),
    ].join('\n'),
  );
  return code;
}

/** Two applies of one host as one answer: the steps and applied steps of both. */
function mergeApplied(a: unknown, b: unknown): unknown {
  const x = (a ?? {}) as { steps?: unknown[]; applied?: unknown[] };
  const y = (b ?? {}) as { steps?: unknown[]; applied?: unknown[] };
  return { ...y, steps: [...(x.steps ?? []), ...(y.steps ?? [])], applied: [...(x.applied ?? []), ...(y.applied ?? [])] };
}

/** list over a fleet: one table with a HOST column (or, with --json, each host's machines). */
export async function fleetList(io: FleetIo, manifest: Manifest, flags: FleetFlagValues): Promise<number> {
  const fleet = fleetOf(manifest, 'list');
  const hosts = selectHosts(fleet, flags.host, flags['hosts-label']);
  const results = await withTransport(io, flags, (t) => forEachHost(hosts, { forks: hosts.length }, (h) => onHost(t, h, () => runRemote(t, h, ['list', '--json', '--manifest', '-'], { input: hostSlice(fleet, h.name), timeoutMs: PLAN_TIMEOUT_MS }))));
  results.forEach((r) => versionNote(io, r, manifest.file));
  if (io.json) {
    io.out(jsonText({ hosts: hostsJson(results) }));
    return exitFor(results);
  }
  type Row = { name?: unknown; state?: unknown; address?: unknown; sync?: unknown; health?: { state?: unknown } | null };
  const cell = (x: unknown) => escapeControl(typeof x === 'string' ? x : x === undefined || x === null ? '-' : JSON.stringify(x));
  const rows = results.flatMap((r) => (r.result === 'ok' && Array.isArray(r.json) ? (r.json as Row[]).map((m) => [r.host, cell(m.name), cell(m.state), cell(m.address), cell(m.sync), cell(m.health?.state)]) : []));
  if (rows.length > 0) io.out(formatTable([['HOST', 'MACHINE', 'STATE', 'ADDRESS', 'MANIFEST', 'HEALTH'], ...rows]));
  else io.out('No machines are managed by nspawnctl on these hosts.');
  for (const r of results.filter((x) => x.result !== 'ok')) io.err(`${describeHostResult(r, 'ok')}\n`);
  return exitFor(results);
}

/** The host a machine of the manifest runs on (or the one --host names). */
function hostFor(manifest: Manifest, name: string, flags: FleetFlagValues, command: string): FleetHost {
  const fleet = fleetOf(manifest, command);
  if (!MACHINE_NAME.test(name)) throw new NspawnctlError(`${JSON.stringify(name)} is not a machine name`, { exitCode: ExitCode.invalidManifest, hint: 'Machine names are 1-12 characters of a-z, 0-9 and -.' });
  const named = flags.host ?? [];
  if (named.length > 1) throw new NspawnctlError(`${command} acts on one machine: give at most one --host`, { exitCode: ExitCode.invalidManifest });
  if (named.length === 1) return selectHosts(fleet, named, [])[0];
  const machine = manifest.machines[name];
  if (!machine?.host) throw new NspawnctlError(`machine ${name} is not in ${manifest.file}: name its host with --host`, { exitCode: ExitCode.invalidManifest });
  return fleet.hosts[machine.host];
}

/** status of one machine on its host; the remote answer is printed as it is (JSON) or summed up. */
export async function fleetStatus(io: FleetIo, manifest: Manifest, name: string, flags: FleetFlagValues): Promise<number> {
  const h = hostFor(manifest, name, flags, 'status');
  const r = await withTransport(io, flags, (t) => onHost(t, h, () => runRemote(t, h, ['status', name, '--json', '--manifest', '-'], { input: hostSlice(manifest.fleet!, h.name), timeoutMs: PLAN_TIMEOUT_MS })));
  versionNote(io, r, manifest.file);
  if (io.json) io.out(jsonText({ host: h.name, ...(r.result === 'ok' ? { status: r.json } : { result: r.result, error: r.error }) }));
  else if (r.result === 'ok') io.out(`host: ${h.name}\n${jsonText(r.json)}`);
  else io.err(`${describeHostResult(r, 'ok')}\n`);
  return exitFor([r]);
}

/** destroy of one machine on its host (confirmed by the caller); nothing on any other host. */
export async function fleetDestroy(io: FleetIo, manifest: Manifest, name: string, flags: FleetFlagValues & { force: boolean; wait: boolean; 'stop-timeout': number }): Promise<number> {
  const h = hostFor(manifest, name, flags, 'destroy');
  const args = ['destroy', name, '--yes', '--json', `--stop-timeout=${flags['stop-timeout']}`, ...(flags.force ? ['--force'] : []), ...(flags.wait ? [] : ['--no-wait'])];
  const r = await withTransport(io, flags, (t) => onHost(t, h, () => runRemote(t, h, args, { timeoutMs: APPLY_TIMEOUT_MS })));
  versionNote(io, r, manifest.file);
  if (io.json) io.out(jsonText({ host: h.name, ...(r.result === 'ok' ? { destroyed: r.json } : { result: r.result, error: r.error }) }));
  else if (r.result === 'ok') io.out(`Destroyed ${name} on host ${h.name}.`);
  else io.err(`${describeHostResult(r, 'ok')}\n`);
  return exitFor([r]);
}

/**
 * host init over a fleet: on each host, the local package (a .deb of `npm run package`) is copied
 * over the same connection and installed with apt-get (which brings its dependencies, nodejs among
 * them), unless the host already runs this version; then that host's nspawnctl prepares it for its
 * slice (host init -). With --check or --dry-run nothing is installed or changed.
 */
export async function fleetHostInit(io: FleetIo, manifest: Manifest, flags: FleetFlagValues & { package?: string; check: boolean; 'dry-run': boolean }): Promise<number> {
  const fleet = fleetOf(manifest, 'host init');
  const hosts = selectHosts(fleet, flags.host, flags['hosts-label']);
  const pkg = flags.package;
  if (pkg !== undefined && !/\.deb$/.test(pkg)) throw new NspawnctlError(`--package ${JSON.stringify(pkg)}: expected a .deb built by npm run package`, { exitCode: ExitCode.invalidManifest });
  const bytes = pkg !== undefined ? readFileSync(pkg) : undefined;
  const results = await withTransport(io, flags, (t) =>
    forEachHost(hosts, { forks: hosts.length }, async (h) => {
      const v = await remoteVersion(t, h);
      if (v.failure && v.failure.result !== 'not-installed' && v.failure.result !== 'failed') return v.failure;
      const installed = v.version;
      if (installed !== io.version && !flags.check && !flags['dry-run']) {
        if (!bytes) return { host: h.name, result: 'failed', error: `nspawnctl ${installed ?? 'is not installed'}${installed ? ' is installed, this is ' + io.version : ''}: give --package PKG.deb to install it` } as HostResult;
        io.err(`host ${h.name}: installing ${basename(pkg!)} (${installed ? `replacing ${installed}` : 'not installed yet'})\n`);
        const dir = await remoteTempDir(t, h, '/tmp/nspawnctl-pkg');
        const file = `${dir}/${basename(pkg!).replace(/[^A-Za-z0-9_.+~-]/g, '_')}`;
        try {
          const copy = await t.run(targetOf(h), ['dd', `of=${file}`, 'bs=1M', 'status=none'], { input: bytes, timeoutMs: 600_000 });
          if (copy.exitCode !== 0) return { host: h.name, result: 'failed', error: `copying the package failed: ${escapeControl(copy.stderr.trim().slice(0, 300))}` } as HostResult;
          // Fresh package lists first, as on any host before an install (its dependencies come from its mirror).
          const update = await t.run(targetOf(h), ['apt-get', 'update', '-qq'], { timeoutMs: 600_000 });
          if (update.exitCode !== 0) return { host: h.name, result: 'failed', exitCode: update.exitCode, error: `apt-get update failed: ${escapeControl(update.stderr.trim().split('\n').slice(-3).join(' / ').slice(0, 400))}` } as HostResult;
          // Under sudo, apt-get itself (not env) is what sudoers must allow; without a terminal debconf asks nothing.
          const aptGet = ['apt-get', 'install', '-y', '--no-install-recommends', file];
          const install = await t.run(targetOf(h), h.sudo ? aptGet : ['env', 'DEBIAN_FRONTEND=noninteractive', ...aptGet], { timeoutMs: 1_800_000 });
          if (install.exitCode !== 0) return { host: h.name, result: 'failed', exitCode: install.exitCode, error: `apt-get install failed: ${escapeControl(install.stderr.trim().split('\n').slice(-3).join(' / ').slice(0, 400))}` } as HostResult;
        } finally {
          await t.run(targetOf(h), ['rm', '-rf', '--', dir], { timeoutMs: 60_000 }).catch(() => undefined);
        }
      }
      const args = ['host', 'init', '--json', ...(flags.check ? ['--check'] : []), ...(flags['dry-run'] ? ['--dry-run'] : []), '-'];
      const r = await runRemote(t, h, args, { input: hostSlice(fleet, h.name), timeoutMs: 1_800_000 });
      // --check exits 1 with its report (not an error) when something is missing: say what.
      const report = r.json as { ready?: unknown; steps?: { description?: unknown }[]; findings?: { what?: unknown }[] } | undefined;
      if (r.result === 'failed' && report?.ready === false) {
        const missing = [...(report.steps ?? []).map((x) => x.description), ...(report.findings ?? []).map((x) => x.what)].filter((x): x is string => typeof x === 'string');
        return { ...r, error: escapeControl(`not ready: ${missing.join('; ') || 'see nspawnctl host init --check there'}`), version: io.version };
      }
      return { ...r, version: io.version };
    }),
  );
  if (io.json) io.out(jsonText({ hosts: hostsJson(results), ok: results.every((r) => r.result === 'ok') }));
  else io.out(results.map((r) => describeHostResult(r, flags.check ? 'ready' : 'ready (host init done)')).join('\n'));
  return exitFor(results);
}

