// A remote nspawnctl's answer as a per-host result (what ssh's and nspawnctl's exit codes mean),
// its JSON read back from stdout, and forEachHost's scheduling: --forks at a time, --serial
// batches in order, --max-fail stopping new batches, results in host order whatever finishes first.
import { forEachHost, HostResult, interpretRun, parseJsonOutput } from '../../src/fleet/remote';
import { FleetHost } from '../../src/manifest/schema';

const hostsNamed = (...names: string[]): FleetHost[] => names.map((name) => ({ name, ssh: `root@${name}`, sudo: false, labels: [] }));
const ok = (h: FleetHost): HostResult => ({ host: h.name, result: 'ok' });
const failed = (h: FleetHost): HostResult => ({ host: h.name, result: 'failed', error: 'boom' });
/** Lets every pending promise callback and timer of this turn run. */
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('interpretRun', () => {
  test('exit 0 with JSON: ok, with the JSON', () => {
    expect(interpretRun('alpha', { exitCode: 0, stdout: '{"steps":[{"description":"create machine web"}]}\n', stderr: '' })).toEqual({
      host: 'alpha',
      exitCode: 0,
      result: 'ok',
      json: { steps: [{ description: 'create machine web' }] },
    });
  });

  test("255 without JSON: unreachable, with ssh's last stderr line (not the known-hosts warning)", () => {
    const r = interpretRun('beta', {
      exitCode: 255,
      stdout: '',
      stderr: "Warning: Permanently added '10.0.0.6' (ED25519) to the list of known hosts.\r\nroot@10.0.0.6: Permission denied (publickey).\r\n",
    });
    expect(r).toEqual({ host: 'beta', exitCode: 255, result: 'unreachable', error: 'ssh: root@10.0.0.6: Permission denied (publickey).' });
  });

  test('255 with nothing on stderr: unreachable, saying how ssh exited', () => {
    expect(interpretRun('beta', { exitCode: 255, stdout: '', stderr: '' })).toMatchObject({ result: 'unreachable', error: 'ssh: ssh exited 255' });
  });

  test('255 with a JSON answer is the remote nspawnctl failing, not ssh', () => {
    const r = interpretRun('beta', { exitCode: 255, stdout: '{"error":{"message":"odd"}}', stderr: '' });
    expect(r).toMatchObject({ result: 'failed', error: 'odd' });
  });

  test('127: nspawnctl is not installed there, with the shell\'s words', () => {
    expect(interpretRun('gamma', { exitCode: 127, stdout: '', stderr: 'bash: line 1: nspawnctl: command not found\n' })).toEqual({
      host: 'gamma',
      exitCode: 127,
      result: 'not-installed',
      error: 'nspawnctl is not installed there (bash: line 1: nspawnctl: command not found)',
    });
  });

  test('5: busy (another nspawnctl holds the host lock), with the remote message', () => {
    const stdout = `${JSON.stringify({ error: { kind: 'NspawnctlError', message: 'another nspawnctl holds the host lock (pid 4242)', exitCode: 5 } }, null, 2)}\n`;
    expect(interpretRun('alpha', { exitCode: 5, stdout, stderr: 'nspawnctl: another nspawnctl holds the host lock (pid 4242)\n' })).toMatchObject({
      result: 'busy',
      exitCode: 5,
      error: 'another nspawnctl holds the host lock (pid 4242)',
    });
  });

  test('1 with the JSON error: failed, with its message (not stderr)', () => {
    const stdout = `${JSON.stringify({ error: { kind: 'ManifestError', message: '-:3:5: machines.web: bad', hint: 'Fix the manifest', exitCode: 2 } }, null, 2)}\n`;
    const r = interpretRun('alpha', { exitCode: 1, stdout, stderr: 'something else\n' });
    expect(r.result).toBe('failed');
    expect(r.error).toBe('-:3:5: machines.web: bad');
    expect(r.json).toEqual(JSON.parse(stdout));
  });

  test('1 without JSON: failed, with the last stderr line', () => {
    expect(interpretRun('alpha', { exitCode: 1, stdout: '', stderr: 'first\nsudo: a password is required\n' })).toEqual({ host: 'alpha', exitCode: 1, result: 'failed', error: 'sudo: a password is required' });
  });

  test("a remote's error text reaches the report with its control characters escaped", () => {
    expect(interpretRun('a', { exitCode: 255, stdout: '', stderr: 'ssh: \x1b[2Jgone\n' }).error).toBe('ssh: \\x1b[2Jgone');
    expect(interpretRun('a', { exitCode: 127, stdout: '', stderr: '\x07nspawnctl: not found' }).error).toBe('nspawnctl is not installed there (\\x07nspawnctl: not found)');
    expect(interpretRun('a', { exitCode: 1, stdout: JSON.stringify({ error: { message: 'bad \x9b31m' } }), stderr: '' }).error).toBe('bad \\u009b31m');
  });

  test('an error given as a plain string is its message', () => {
    expect(interpretRun('alpha', { exitCode: 1, stdout: '{"error":"plain"}', stderr: 'x' }).error).toBe('plain');
  });
});

describe('parseJsonOutput', () => {
  test('the whole output when it is one JSON document', () => {
    expect(parseJsonOutput('  {"a": [1, 2]}\n')).toEqual({ a: [1, 2] });
    expect(parseJsonOutput('[]')).toEqual([]);
  });

  test('text before a pretty-printed JSON document: the document', () => {
    expect(parseJsonOutput('note: the image cache is old\nwarning: x {not json}\n{\n  "steps": [],\n  "changes": false\n}\n')).toEqual({ steps: [], changes: false });
  });

  test('text and event lines before a one-line document: the last document', () => {
    expect(parseJsonOutput('hello\n{"event":"step","status":"start"}\n{"ok":true}\n')).toEqual({ ok: true });
  });

  test('no JSON, or none at all: undefined', () => {
    expect(parseJsonOutput('')).toBeUndefined();
    expect(parseJsonOutput('  \n')).toBeUndefined();
    expect(parseJsonOutput('nspawnctl: command not found\n')).toBeUndefined();
    expect(parseJsonOutput('{\n  "cut": \n')).toBeUndefined();
  });
});

describe('forEachHost', () => {
  test('runs at most --forks tasks at once, and does use that many', async () => {
    let running = 0;
    let most = 0;
    const results = await forEachHost(hostsNamed('a', 'b', 'c', 'd', 'e', 'f', 'g'), { forks: 3 }, async (h) => {
      running++;
      most = Math.max(most, running);
      await tick(2);
      running--;
      return ok(h);
    });
    expect(most).toBe(3);
    expect(results.map((r) => r.result)).toEqual(Array(7).fill('ok'));
  });

  test('--forks 1 runs one host after the other', async () => {
    const log: string[] = [];
    await forEachHost(hostsNamed('a', 'b', 'c'), { forks: 1 }, async (h) => {
      log.push(`start ${h.name}`);
      await tick();
      log.push(`end ${h.name}`);
      return ok(h);
    });
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  test('--serial: batches one after the other, the hosts of a batch at the same time', async () => {
    const log: string[] = [];
    // Later hosts of a batch finish first: a batch still waits for all of its hosts.
    const delay: Record<string, number> = { a: 15, b: 1, c: 10, d: 1, e: 1 };
    await forEachHost(hostsNamed('a', 'b', 'c', 'd', 'e'), { forks: 5, serial: 2 }, async (h) => {
      log.push(`start ${h.name}`);
      await tick(delay[h.name]);
      log.push(`end ${h.name}`);
      return ok(h);
    });
    expect(log).toEqual(['start a', 'start b', 'end b', 'end a', 'start c', 'start d', 'end d', 'end c', 'start e', 'end e']);
  });

  test('--max-fail: once that many hosts failed no new batch starts; the rest are skipped, never run', async () => {
    const ran: string[] = [];
    const results = await forEachHost(hostsNamed('a', 'b', 'c'), { forks: 5, serial: 1, maxFail: 1 }, async (h) => {
      ran.push(h.name);
      return failed(h);
    });
    expect(ran).toEqual(['a']);
    expect(results).toEqual([
      { host: 'a', result: 'failed', error: 'boom' },
      { host: 'b', result: 'skipped', error: 'not started: 1 host(s) failed (--max-fail 1)' },
      { host: 'c', result: 'skipped', error: 'not started: 1 host(s) failed (--max-fail 1)' },
    ]);
  });

  test('--max-fail 2 lets a batch start after one failure, and counts any result but ok as failed', async () => {
    const ran: string[] = [];
    const outcome: Record<string, HostResult['result']> = { a: 'unreachable', b: 'ok', c: 'busy', d: 'ok' };
    const results = await forEachHost(hostsNamed('a', 'b', 'c', 'd'), { forks: 1, serial: 1, maxFail: 2 }, async (h) => {
      ran.push(h.name);
      return { host: h.name, result: outcome[h.name] };
    });
    expect(ran).toEqual(['a', 'b', 'c']);
    expect(results.map((r) => r.result)).toEqual(['unreachable', 'ok', 'busy', 'skipped']);
    expect(results[3].error).toBe('not started: 2 host(s) failed (--max-fail 2)');
  });

  test('a batch already running finishes even when it passes --max-fail', async () => {
    const ran: string[] = [];
    const results = await forEachHost(hostsNamed('a', 'b', 'c'), { forks: 2, serial: 2, maxFail: 1 }, async (h) => {
      ran.push(h.name);
      return failed(h);
    });
    expect(ran.sort()).toEqual(['a', 'b']);
    expect(results.map((r) => r.result)).toEqual(['failed', 'failed', 'skipped']);
  });

  test('--max-fail without --serial (one batch): hosts already running finish, no new one starts', async () => {
    const ran: string[] = [];
    const results = await forEachHost(hostsNamed('a', 'b', 'c', 'd'), { forks: 1, maxFail: 1 }, async (h) => {
      ran.push(h.name);
      return h.name === 'a' ? failed(h) : ok(h);
    });
    expect(ran).toEqual(['a']);
    expect(results.map((r) => r.result)).toEqual(['failed', 'skipped', 'skipped', 'skipped']);
  });

  test('a task that throws is a failed result with its message, and the other hosts still run', async () => {
    const results = await forEachHost(hostsNamed('a', 'b', 'c'), { forks: 3 }, async (h) => {
      if (h.name === 'b') throw new Error('connection reset');
      return ok(h);
    });
    expect(results).toEqual([
      { host: 'a', result: 'ok' },
      { host: 'b', result: 'failed', error: 'connection reset' },
      { host: 'c', result: 'ok' },
    ]);
  });

  test('results are in host order, whatever order the hosts finish in', async () => {
    const delay: Record<string, number> = { a: 12, b: 6, c: 1 };
    const finished: string[] = [];
    const results = await forEachHost(hostsNamed('a', 'b', 'c'), { forks: 3 }, async (h) => {
      await tick(delay[h.name]);
      finished.push(h.name);
      return ok(h);
    });
    expect(finished).toEqual(['c', 'b', 'a']);
    expect(results.map((r) => r.host)).toEqual(['a', 'b', 'c']);
  });

  test('no hosts: no task, no results', async () => {
    const task = jest.fn(async (h: FleetHost) => ok(h));
    expect(await forEachHost([], { forks: 5, serial: 1, maxFail: 1 }, task)).toEqual([]);
    expect(task).not.toHaveBeenCalled();
  });
});

test("a failed apply --json answers with its result, not an error: the failed machines' own messages are the host's error", () => {
  const stdout = JSON.stringify({ steps: [{}], applied: [], failures: [{ group: 'web', step: {}, message: 'machine web did not reach running within 90 s' }] });
  expect(interpretRun('alpha', { exitCode: 1, stdout, stderr: 'hint: Fix the cause and run apply again\n' })).toMatchObject({ result: 'failed', error: 'web: machine web did not reach running within 90 s' });
});
