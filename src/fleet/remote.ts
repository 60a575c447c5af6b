// Running nspawnctl on a fleet's hosts: each host's own nspawnctl, reached over ssh, with the
// host's slice of the manifest on standard input and --json, its answer read back as JSON.
// Nothing of the manifest is on a remote command line except what the command needs (a machine
// name for status and destroy, checked by the manifest's rules, and quoted anyway).
import { escapeControl, NspawnctlError } from '../errors';
import { RunResult } from '../host/runner';
import { FleetHost } from '../manifest/schema';
import { SSH_FAILED, sshError, SshTarget, SshTransport } from './ssh';

/** The program run on every host (the .deb and the npm package put it on PATH). */
export const REMOTE_PROGRAM = 'nspawnctl';
/** nspawnctl's exit code for "another nspawnctl holds the host lock" (--no-wait). */
export const EXIT_BUSY = 5;

export type HostResultKind = 'ok' | 'failed' | 'unreachable' | 'busy' | 'not-installed' | 'skipped';

/** What one host did: its nspawnctl's JSON, or why there is none. */
export interface HostResult {
  host: string;
  result: HostResultKind;
  exitCode?: number;
  /** The remote nspawnctl's JSON answer (stdout), when it printed one. */
  json?: unknown;
  /** Why it failed: ssh's error, the remote error's message, or why it was not run. */
  error?: string;
  /** The remote nspawnctl's version, when it was asked. */
  version?: string;
}

export function targetOf(h: FleetHost): SshTarget {
  return { name: h.name, ssh: h.ssh, ...(h.port !== undefined ? { port: h.port } : {}), sudo: h.sudo };
}

/** The last JSON document nspawnctl printed on stdout (its --json answer, or its error). */
export function parseJsonOutput(stdout: string): unknown {
  const text = stdout.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    // A remote that printed text before its JSON: the JSON starts at one of the last lines that
    // open one (a few are tried, from the end: a hostile answer cannot make this quadratic).
    const lines = text.split('\n');
    let tried = 0;
    for (let i = lines.length - 1; i >= 0 && tried < MAX_JSON_STARTS; i--) {
      if (lines[i] === '{' || lines[i] === '[' || lines[i].startsWith('{"')) {
        tried++;
        try {
          return JSON.parse(lines.slice(i).join('\n'));
        } catch {
          // keep looking
        }
      }
    }
    return undefined;
  }
}

/** How many lines that could start the JSON answer are tried, from the end. */
const MAX_JSON_STARTS = 4;

/** The message of a remote nspawnctl's JSON error ({"error": {"message": ...}}), if that is what it printed. */
function remoteErrorMessage(json: unknown): string | undefined {
  const e = (json as { error?: unknown } | undefined)?.error;
  if (typeof e === 'string') return e;
  const m = (e as { message?: unknown } | undefined)?.message;
  if (typeof m === 'string') return m;
  // apply --json that failed prints its result, with each failed machine's message, not an error.
  const failures = (json as { failures?: unknown } | undefined)?.failures;
  if (!Array.isArray(failures)) return undefined;
  const said = failures.flatMap((f: { group?: unknown; message?: unknown }) => (typeof f?.message === 'string' ? [`${typeof f.group === 'string' ? `${f.group}: ` : ''}${f.message}`] : []));
  return said.length > 0 ? said.join('; ') : undefined;
}

/** `text` with `prefix` in front, unless it starts with it already (ssh's own errors say "ssh: "). */
const prefixed = (prefix: string, text: string) => (text.startsWith(prefix) ? text : `${prefix}${text}`);

/** A run's outcome as a HostResult: ssh could not connect, nspawnctl is missing, busy, failed or ok. */
export function interpretRun(host: string, r: RunResult): HostResult {
  const json = parseJsonOutput(r.stdout);
  const base = { host, exitCode: r.exitCode, ...(json !== undefined ? { json } : {}) };
  if (r.exitCode === 0) return { ...base, result: 'ok' };
  if (r.exitCode === SSH_FAILED && json === undefined) return { ...base, result: 'unreachable', error: prefixed('ssh: ', escapeControl(sshError(r))) };
  // sudo says "sudo: nspawnctl: command not found" and exits 1.
  const missing = r.exitCode === 127 || (r.exitCode === 1 && new RegExp(`^sudo: ${REMOTE_PROGRAM}: command not found`, 'm').test(r.stderr));
  if (missing && json === undefined) return { ...base, result: 'not-installed', error: `${REMOTE_PROGRAM} is not installed there (${escapeControl(sshError(r))})` };
  const message = escapeControl(remoteErrorMessage(json) ?? sshError(r));
  if (r.exitCode === EXIT_BUSY) return { ...base, result: 'busy', error: message };
  return { ...base, result: 'failed', error: message };
}

/** Runs `nspawnctl ARGS` on the host, `input` on its standard input. */
export async function runRemote(transport: SshTransport, h: FleetHost, args: string[], o: { input?: string; onLine?: (line: string) => void; timeoutMs?: number } = {}): Promise<HostResult> {
  const r = await transport.run(targetOf(h), [REMOTE_PROGRAM, ...args], { input: o.input, onLine: o.onLine, timeoutMs: o.timeoutMs });
  return interpretRun(h.name, r);
}

/** The remote nspawnctl's version ("0.1.0"), or the HostResult that says why there is none. */
export async function remoteVersion(transport: SshTransport, h: FleetHost): Promise<{ version: string; failure?: undefined } | { version?: undefined; failure: HostResult }> {
  const r = await transport.run(targetOf(h), [REMOTE_PROGRAM, '--version'], { timeoutMs: 60_000 });
  const m = /^nspawnctl\/(\S+)/.exec(r.stdout.trim());
  // Escaped like the remote's error text: it is shown in notes and messages.
  if (r.exitCode === 0 && m) return { version: escapeControl(m[1]) };
  const res = interpretRun(h.name, r);
  return { failure: res.result === 'ok' ? { ...res, result: 'failed', error: `${REMOTE_PROGRAM} --version printed ${escapeControl(JSON.stringify(r.stdout.slice(0, 80)))}` } : res };
}

/**
 * A directory `prefix`.XXXXXXXX made by mktemp on the host. What mktemp printed is checked to be
 * exactly that before it is used in another command.
 */
export async function remoteTempDir(transport: SshTransport, h: FleetHost, prefix: string): Promise<string> {
  const r = await transport.run(targetOf(h), ['mktemp', '-d', `${prefix}.XXXXXXXX`], { timeoutMs: 60_000 });
  const dir = r.stdout.trim();
  if (r.exitCode !== 0 || dir.length !== prefix.length + 9 || !dir.startsWith(`${prefix}.`) || !/^[A-Za-z0-9]{8}$/.test(dir.slice(prefix.length + 1))) {
    throw new NspawnctlError(`host ${h.name}: mktemp failed: ${escapeControl((r.stderr || r.stdout).trim().slice(0, 200))}`);
  }
  return dir;
}

/**
 * Runs `task` for each host, at most `forks` at once; with `serial`, in batches of that many
 * hosts, one batch after the other, and with `maxFail` no new batch starts once that many hosts
 * failed (the rest are "skipped"). Results in host order.
 */
export async function forEachHost(hosts: FleetHost[], o: { forks: number; serial?: number; maxFail?: number }, task: (h: FleetHost) => Promise<HostResult>): Promise<HostResult[]> {
  const results = new Map<string, HostResult>();
  const batchSize = o.serial ?? hosts.length;
  let failed = 0;
  for (let start = 0; start < hosts.length; start += batchSize) {
    const batch = hosts.slice(start, start + batchSize);
    if (o.maxFail !== undefined && failed >= o.maxFail) {
      for (const h of batch) results.set(h.name, { host: h.name, result: 'skipped', error: `not started: ${failed} host(s) failed (--max-fail ${o.maxFail})` });
      continue;
    }
    let next = 0;
    const worker = async () => {
      while (next < batch.length) {
        const h = batch[next++];
        // --max-fail without --serial (one batch): no new host starts once that many failed.
        if (o.maxFail !== undefined && failed >= o.maxFail) {
          results.set(h.name, { host: h.name, result: 'skipped', error: `not started: ${failed} host(s) failed (--max-fail ${o.maxFail})` });
          continue;
        }
        const r = await task(h).catch((err: Error): HostResult => ({ host: h.name, result: 'failed', error: err.message }));
        results.set(h.name, r);
        if (r.result !== 'ok') failed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(Math.max(1, o.forks), batch.length) }, worker));
  }
  return hosts.map((h) => results.get(h.name)!);
}

/** One line per host for the summary: "alpha: ok", "beta: unreachable: ssh: ...". */
export function describeHostResult(r: HostResult, ok: string): string {
  if (r.result === 'ok') return `${r.host}: ${ok}`;
  return `${r.host}: ${r.result}${r.error ? `: ${r.error}` : ''}`;
}
