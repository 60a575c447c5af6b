// Moving a machine between hosts, when its `host:` changed: the day-two backup on the old host,
// the archive streamed over ssh to the new host (through the controller: the hosts need not
// reach each other), restore and readiness there, then destroy on the old host. Never automatic:
// apply asks, or needs --yes. A move that fails leaves the machine where it was (the old host's
// copy is destroyed only after the new one runs), and the machine is then not created fresh on
// the new host either, so there are never two.
import { escapeControl, NspawnctlError } from '../errors';
import { Fleet, FleetHost } from '../manifest/schema';
import { HostResult, runRemote, targetOf } from './remote';
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
  /** Hosts that could not be asked: a machine may be there too. */
  unknown: HostResult[];
}

/** Where the manifest's machines are now: each host of the fleet lists what it manages. */
export async function locateMachines(transport: SshTransport, fleet: Fleet): Promise<Location> {
  const hosts = Object.values(fleet.hosts);
  const answers = await Promise.all(hosts.map((h) => runRemote(transport, h, ['list', '--json'], { timeoutMs: 120_000 })));
  const where = new Map<string, string[]>();
  const unknown: HostResult[] = [];
  answers.forEach((r) => {
    if (r.result !== 'ok' || !Array.isArray(r.json)) {
      unknown.push(r);
      return;
    }
    for (const m of r.json as { name?: unknown }[]) {
      if (typeof m.name !== 'string' || !Object.prototype.hasOwnProperty.call(fleet.data.machines, m.name)) continue;
      where.set(m.name, [...(where.get(m.name) ?? []), r.host]);
    }
  });
  return { where, unknown };
}

/**
 * The moves the manifest asks for: a machine that exists on exactly one other host of the fleet
 * and not on its own. A machine found on two hosts besides its own is a problem, not a guess.
 */
export function plannedMoves(fleet: Fleet, location: Location, selected: FleetHost[]): { moves: Move[]; problems: MoveResult[] } {
  const moves: Move[] = [];
  const problems: MoveResult[] = [];
  const chosen = new Set(selected.map((h) => h.name));
  for (const [machine, raw] of Object.entries(fleet.data.machines).sort(([a], [b]) => a.localeCompare(b))) {
    const to = raw.host!;
    const on = location.where.get(machine) ?? [];
    if (on.includes(to) || on.length === 0) continue;
    // Only moves into the hosts this command acts on (the new host applies first).
    if (!chosen.has(to)) continue;
    if (on.length > 1) problems.push({ machine, from: on.join(', '), to, result: 'failed', error: `machine ${machine} is on hosts ${on.join(' and ')}; destroy all but one of them (nspawnctl destroy ${machine} --manifest FILE --host NAME --yes)` });
    else moves.push({ machine, from: on[0], to });
  }
  return { moves, problems };
}

export function describeMove(m: Move): string {
  return `move ${m.machine}: host ${m.from} -> host ${m.to} (backup on ${m.from}, copied over ssh, restored and started on ${m.to}, then destroyed on ${m.from})`;
}

/** A directory made by mktemp on a host, checked before it goes on a command line. */
async function tempDir(t: SshTransport, h: FleetHost): Promise<string> {
  const r = await t.run(targetOf(h), ['mktemp', '-d', '/var/tmp/nspawnctl-move.XXXXXXXX'], { timeoutMs: 60_000 });
  const dir = r.stdout.trim();
  if (r.exitCode !== 0 || !/^\/var\/tmp\/nspawnctl-move\.[A-Za-z0-9]{8}$/.test(dir)) throw new NspawnctlError(`host ${h.name}: mktemp failed: ${escapeControl((r.stderr || r.stdout).trim().slice(0, 200))}`);
  return dir;
}

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
    fromDir = await tempDir(t, from);
    toDir = await tempDir(t, to);
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
    o.say(`${m.machine}: restore on ${m.to}`);
    must(await runRemote(t, to, ['restore', `${toDir}/${name}`, '--no-start', '--json'], { timeoutMs: 3_600_000 }), `restore of ${m.machine}`);
    return { ...m, result: 'ok' };
  } catch (err) {
    return { ...m, result: 'failed', error: escapeControl((err as Error).message) };
  } finally {
    const cleanup = (h: FleetHost, dir: string | undefined) => (dir ? t.run(targetOf(h), ['rm', '-rf', '--', dir], { timeoutMs: 120_000 }).catch(() => undefined) : undefined);
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
