// Moving a machine between hosts, when its `host:` changed: the day-two backup on the old host,
// the archive streamed over ssh to the new host (through the controller: the hosts need not
// reach each other), restore and readiness there, then destroy on the old host. Never automatic:
// apply asks, or needs --yes. A move that fails leaves the machine where it was (the old host's
// copy is destroyed only after the new one runs), and the machine is then not created fresh on
// the new host either, so there are never two.
import { escapeControl, NspawnctlError } from '../errors';
import { Fleet, FleetHost } from '../manifest/schema';
import { HostResult, remoteTempDir, runRemote, targetOf } from './remote';
import { sshArgv, SshTransport } from './ssh';
import { Runner } from '../host/runner';

export interface Move {
  machine: string;
  from: string;
  to: string;
}

export interface MoveResult extends Move {
  result: 'ok' | 'failed';
  error?: string;
}

export interface Location {
  /** Machine name -> the hosts nspawnctl manages it on (from each host's list --json). */
  where: Map<string, string[]>;
  /** Machine name -> hosts where a machine of that name was made from another manifest (a file there). */
  foreign: Map<string, string[]>;
  /** Hosts that could not be asked: a machine may be there too. */
  unknown: HostResult[];
}

/** How a machine's record names a manifest read from standard input: what the fleet's hosts get. */
const FLEET_MANIFEST = '<stdin>';

/**
 * Where the manifest's machines are now: each host of the fleet lists what it manages. Only a
 * machine applied by a fleet controller (its record names standard input as its manifest) counts
 * as a machine of this fleet; one of the same name made from a file on that host is another
 * machine, reported as a problem, never moved.
 */
export async function locateMachines(transport: SshTransport, fleet: Fleet): Promise<Location> {
  const hosts = Object.values(fleet.hosts);
  const answers = await Promise.all(
    hosts.map((h) => runRemote(transport, h, ['list', '--json'], { timeoutMs: LOCATE_TIMEOUT_MS }).catch((err: Error): HostResult => ({ host: h.name, result: 'failed', error: escapeControl(err.message) }))),
  );
  const where = new Map<string, string[]>();
  const foreign = new Map<string, string[]>();
  const unknown: HostResult[] = [];
  answers.forEach((r) => {
    if (r.result !== 'ok' || !Array.isArray(r.json)) {
      unknown.push(r);
      return;
    }
    for (const m of r.json as { name?: unknown; manifest?: unknown }[]) {
      if (typeof m.name !== 'string' || !Object.prototype.hasOwnProperty.call(fleet.data.machines, m.name)) continue;
      const into = m.manifest === FLEET_MANIFEST ? where : foreign;
      into.set(m.name, [...(into.get(m.name) ?? []), r.host]);
    }
  });
  return { where, foreign, unknown };
}

/** How long a host may take to list its machines. */
const LOCATE_TIMEOUT_MS = 120_000;

/**
 * The moves the manifest asks for: a machine that exists on exactly one other host of the fleet
 * and not on its own. A machine found on two hosts besides its own is a problem, not a guess.
 */
export function plannedMoves(fleet: Fleet, location: Location, selected: FleetHost[]): { moves: Move[]; problems: MoveResult[] } {
  const moves: Move[] = [];
  const problems: MoveResult[] = [];
  const chosen = new Set(selected.map((h) => h.name));
  const destroyHint = (machine: string, host: string) => `nspawnctl destroy ${machine} --manifest FILE --host ${host} --yes`;
  for (const [machine, raw] of Object.entries(fleet.data.machines).sort(([a], [b]) => a.localeCompare(b))) {
    const to = raw.host!;
    // Only moves into the hosts this command acts on (the new host applies first).
    if (!chosen.has(to)) continue;
    const on = location.where.get(machine) ?? [];
    const elsewhere = on.filter((h) => h !== to);
    const foreign = (location.foreign.get(machine) ?? []).filter((h) => h !== to);
    for (const h of foreign) {
      problems.push({ machine, from: h, to, result: 'failed', error: `host ${h} has a machine ${machine} that this fleet did not make (it was applied from a manifest file there): it is not moved, and ${machine} is not created on ${to} while it exists; rename one of them, or destroy that one (${destroyHint(machine, h)})` });
    }
    if (foreign.length > 0) continue;
    if (elsewhere.length === 0) continue;
    if (on.includes(to)) {
      // Moved before, but an old copy is left (a move that stopped half-way): never two running unnoticed.
      problems.push({ machine, from: elsewhere.join(', '), to, result: 'failed', error: `machine ${machine} runs on ${to} and also on ${elsewhere.join(' and ')}; destroy the old copy (${destroyHint(machine, elsewhere[0])})` });
    } else if (elsewhere.length > 1) {
      problems.push({ machine, from: elsewhere.join(', '), to, result: 'failed', error: `machine ${machine} is on hosts ${elsewhere.join(' and ')}; destroy all but one of them (${destroyHint(machine, elsewhere[0])})` });
    } else {
      moves.push({ machine, from: elsewhere[0], to });
    }
  }
  return { moves, problems };
}

export function describeMove(m: Move, fleet?: Fleet): string {
  const binds = fleet?.data.machines[m.machine]?.bind?.length ? `; its bind mounts are not carried: their data stays on ${m.from}` : '';
  return `move ${m.machine}: host ${m.from} -> host ${m.to} (backup on ${m.from}, copied over ssh, restored and started on ${m.to}, then destroyed on ${m.from}${binds})`;
}

/** Where a move keeps the archive on each host, while it is copied. */
const MOVE_DIR = '/var/tmp/nspawnctl-move';

/** sha256 of a file on a host, by its own sha256sum. */
async function sha256On(t: SshTransport, h: FleetHost, file: string): Promise<string> {
  const r = await t.run(targetOf(h), ['sha256sum', '--', file], { timeoutMs: 600_000 });
  const m = /^([0-9a-f]{64}) /.exec(r.stdout);
  if (r.exitCode !== 0 || !m) throw new NspawnctlError(`host ${h.name}: sha256sum of the archive failed: ${escapeControl(r.stderr.trim().slice(0, 200))}`);
  return m[1];
}

/** Fails with what the host's nspawnctl said. */
function must(r: HostResult, what: string): HostResult {
  if (r.result !== 'ok') throw new NspawnctlError(`${what} on host ${r.host}: ${r.result}${r.error ? `: ${r.error}` : ''}`);
  return r;
}

/**
 * The first half of a move: the machine's backup on its old host, the archive copied to the new
 * host through the controller (and its sha256 compared on both), restored there stopped. The
 * new host's apply then starts it with the manifest's settings (its address may be new there),
 * and only after that does retireMachine destroy the old copy. Until then the old one runs on.
 */
export async function transferMachine(runner: Runner, t: SshTransport, fleet: Fleet, m: Move, o: { startTimeoutSec: number; say: (line: string) => void }): Promise<MoveResult> {
  const from = fleet.hosts[m.from];
  const to = fleet.hosts[m.to];
  let fromDir: string | undefined;
  let toDir: string | undefined;
  try {
    fromDir = await remoteTempDir(t, from, MOVE_DIR);
    toDir = await remoteTempDir(t, to, MOVE_DIR);
    const name = `${m.machine}.tar.zst`;
    o.say(`${m.machine}: backup on ${m.from}`);
    must(await runRemote(t, from, ['backup', m.machine, '--to', `${fromDir}/${name}`, '--json', `--start-timeout=${o.startTimeoutSec}`], { timeoutMs: 3_600_000 }), `backup of ${m.machine}`);
    o.say(`${m.machine}: copying the archive from ${m.from} to ${m.to}`);
    await runner.pipeline(
      [
        { file: 'ssh', args: sshArgv(targetOf(from), t.controlDir, ['cat', '--', `${fromDir}/${name}`], t.sshOptions) },
        { file: 'ssh', args: sshArgv(targetOf(to), t.controlDir, ['dd', `of=${toDir}/${name}`, 'bs=1M', 'status=none'], t.sshOptions) },
      ],
      { output: { kind: 'discard' } },
    );
    const [a, b] = await Promise.all([sha256On(t, from, `${fromDir}/${name}`), sha256On(t, to, `${toDir}/${name}`)]);
    if (a !== b) throw new NspawnctlError(`the archive of ${m.machine} arrived on ${m.to} with sha256 ${b}, not ${a} as on ${m.from}`);
    // The archive came from the old host: it must be the machine asked for, under its own name.
    const look = must(await runRemote(t, to, ['restore', `${toDir}/${name}`, '--dry-run', '--json'], { timeoutMs: 3_600_000 }), `the check of ${m.machine}'s archive`);
    const said = (look.json ?? {}) as { machine?: unknown; from?: unknown };
    if (said.machine !== m.machine || said.from !== m.machine) {
      throw new NspawnctlError(`the archive host ${m.from} gave for ${m.machine} holds machine ${escapeControl(JSON.stringify(said.from ?? null))}; nothing was restored`);
    }
    // Stopped and not enabled: the new host's apply rewrites its settings from the manifest and starts it.
    o.say(`${m.machine}: restore on ${m.to}`);
    must(await runRemote(t, to, ['restore', `${toDir}/${name}`, '--no-start', '--no-enable', '--json'], { timeoutMs: 3_600_000 }), `restore of ${m.machine}`);
    return { ...m, result: 'ok' };
  } catch (err) {
    return { ...m, result: 'failed', error: escapeControl((err as Error).message) };
  } finally {
    // Also after an interrupt: an archive of a whole machine is not left in /var/tmp.
    const cleanup = (h: FleetHost, dir: string | undefined) => (dir ? t.run(targetOf(h), ['rm', '-rf', '--', dir], { timeoutMs: 120_000, afterInterrupt: true }).catch(() => undefined) : undefined);
    await Promise.all([cleanup(from, fromDir), cleanup(to, toDir)]);
  }
}

/** The last half of a move, once the new host runs the machine: destroy it on the old host. */
export async function retireMachine(t: SshTransport, fleet: Fleet, m: Move, say: (line: string) => void): Promise<MoveResult> {
  say(`${m.machine}: destroy on ${m.from}`);
  const r = await runRemote(t, fleet.hosts[m.from], ['destroy', m.machine, '--yes', '--json'], { timeoutMs: 600_000 });
  if (r.result === 'ok') return { ...m, result: 'ok' };
  return { ...m, result: 'failed', error: `${m.machine} runs on ${m.to}, but its old copy on ${m.from} was not destroyed (${r.result}${r.error ? `: ${r.error}` : ''}); destroy it: nspawnctl destroy ${m.machine} --manifest FILE --host ${m.from} --yes` };
}

/**
 * A restored machine whose new host then failed to apply: it never ran there, and its settings
 * are still the archive's, so it is destroyed again; the old copy runs on.
 */
export async function undoTransfer(t: SshTransport, fleet: Fleet, m: Move): Promise<string> {
  const r = await runRemote(t, fleet.hosts[m.to], ['destroy', m.machine, '--yes', '--json'], { timeoutMs: 600_000 });
  return r.result === 'ok' ? `the copy restored on ${m.to} was removed again` : `the copy restored on ${m.to} (stopped) could not be removed (${r.result}${r.error ? `: ${r.error}` : ''}); destroy it there`;
}
