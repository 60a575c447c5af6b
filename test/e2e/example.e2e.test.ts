// machines.example.yaml exactly as shipped, on a host whose only way to the mirror is an HTTP
// proxy named by http_proxy (the sandbox's apt cache) and whose resolver is a dnsmasq on the
// test host's own address: the example applies with no change, and a machine resolves a name that
// only the host's resolver knows, through the bridge. Also: the mirror check for real (a suite the
// mirror lacks is exit 2 located, an unreachable proxy exit 3), and a converged host plans offline.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, e2eSuite, REPO, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-example');
const inHost = sb.exec.bind(sb);
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);

/** The example as the project ships it, bound into the sandbox read-only with the project. */
const EXAMPLE = '/opt/nspawnctl/machines.example.yaml';
/** A name only the test host's dnsmasq serves, and its answer (TEST-NET-1: never routed). */
const PROBE_NAME = 'probe.nspawnctl.test';
const PROBE_ADDRESS = '192.0.2.77';
/** A port nothing listens on, for a proxy that does not answer. */
const DEAD_PROXY = 'http://127.0.0.1:9';

/** nspawnctl inside the sandbox with `http_proxy` in its environment (how a user behind a proxy runs it). */
function nspawnctlVia(proxy: string, args: string[], check = true) {
  return inHost(['env', `http_proxy=${proxy}`, 'node', CLI, ...args], { check, timeoutMs: 900_000 });
}

function running(): string[] {
  return inHost(['machinectl', 'list', '--no-legend', '--no-pager'])
    .stdout.split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean)
    .sort();
}

/** `argv` run inside machine `name` by its own systemd (its namespaces, its resolver). */
function inMachine(name: string, argv: string[]) {
  return inHost(['systemd-run', `--machine=${name}`, '--wait', '--pipe', '--quiet', '--', ...argv], { check: false });
}

e2eSuite('machines.example.yaml as shipped', () => {
  let proxy = '';
  let hostAddress = '';

  beforeAll(() => {
    proxy = `http://${sb.up()}`;
    // The test host's own address on its uplink: not loopback, so machines reach it through the
    // bridge and the host (as they would reach a resolver beyond it through NAT).
    const addr = inHost(['ip', '-4', '-o', 'addr', 'show', 'dev', 'sbx0']).stdout;
    hostAddress = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(addr)![1];
    inHost(['apt-get', 'update', '-q'], { timeoutMs: 300_000 });
    inHost(['apt-get', 'install', '-y', '-q', 'dnsmasq-base'], { timeoutMs: 300_000 });
    inHost([
      'systemd-run',
      '--unit=e2e-dnsmasq',
      '--',
      '/usr/sbin/dnsmasq',
      '--keep-in-foreground',
      '--no-resolv',
      '--no-hosts',
      '--bind-interfaces',
      `--listen-address=${hostAddress}`,
      `--host-record=${PROBE_NAME},${PROBE_ADDRESS}`,
    ]);
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. the example applies with no change: both machines run, web has its bind, the plan is then empty', () => {
    // The file inside the sandbox is this checkout's, unchanged.
    expect(inHost(['cat', EXAMPLE]).stdout).toBe(readFileSync(join(REPO, 'machines.example.yaml'), 'utf8'));
    const r = nspawnctlVia(proxy, ['apply', EXAMPLE]);
    expect(r.stdout).toMatch(/Applied (\d+) of \1 step\(s\)\./);
    expect(running()).toEqual(['db', 'web']);
    expect(inHost(['test', '-d', '/srv/www']).code).toBe(0);
    expect(JSON.parse(nspawnctlVia(proxy, ['plan', EXAMPLE, '--json']).stdout).changes).toBe(false);
  });

  timed("2. the host's resolver becomes the dnsmasq: a machine started afterwards resolves the name it serves, one started before does not yet", () => {
    expect(inHost(['grep', '-x', 'ResolvConf=copy-host', '/etc/systemd/nspawn/web.nspawn']).code).toBe(0);
    // Until now the test host had no nameserver (the sandbox's resolv.conf is a comment), and the
    // bootstrap copied that. The machines get the host's file when they start, not before.
    sb.write('/etc/resolv.conf', `nameserver ${hostAddress}\n`);
    inHost(['sh', '-c', `for i in $(seq 1 50); do getent hosts ${PROBE_NAME} && exit 0; sleep 0.2; done; exit 1`]);
    inHost(['machinectl', 'poweroff', 'web']);
    inHost(['sh', '-c', 'for i in $(seq 1 150); do machinectl show web >/dev/null 2>&1 || exit 0; sleep 0.2; done; exit 1']);
    // apply starts it again (and returns once it is ready).
    expect(nspawnctlVia(DEAD_PROXY, ['apply', EXAMPLE]).stdout).toMatch(/Applied 1 of 1 step\(s\)\./);
    const web = inMachine('web', ['getent', 'hosts', PROBE_NAME]);
    expect({ code: web.code, out: web.stdout.trim().split(/\s+/) }).toEqual({ code: 0, out: [PROBE_ADDRESS, PROBE_NAME] });
    expect(inMachine('web', ['cat', '/etc/resolv.conf']).stdout).toBe(`nameserver ${hostAddress}\n`);
    // db still has the copy it got when it started: no nameserver, so no answer.
    expect(inMachine('db', ['getent', 'hosts', PROBE_NAME]).code).not.toBe(0);
    expect(inMachine('db', ['grep', '-c', '^nameserver', '/etc/resolv.conf']).stdout.trim()).toBe('0');
  });

  timed('3. a converged host plans offline: no mirror is asked, even when the proxy is gone', () => {
    const r = nspawnctlVia(DEAD_PROXY, ['plan', EXAMPLE]);
    expect(r.stdout).toContain('No changes: the host matches machines.example.yaml.');
  });

  timed('4. the mirror check for real: a suite the mirror lacks is exit 2 at its key; a proxy that does not answer is exit 3 naming the URL', () => {
    const extra = readFileSync(join(REPO, 'machines.example.yaml'), 'utf8') + ['  extra:', '    suite: bookwrom', '    network:', '      bridge: examplevlan', '      address: 10.77.0.13', ''].join('\n');
    sb.write('/root/extra.yaml', extra);
    const line = extra.split('\n').indexOf('    suite: bookwrom') + 1;
    const missing = nspawnctlVia(proxy, ['plan', '/root/extra.yaml'], false);
    expect({ code: missing.code, stderr: missing.stderr }).toEqual({
      code: 2,
      stderr: `/root/extra.yaml:${line}:12: machines.extra.suite: bookwrom is not a suite of http://deb.debian.org/debian (http://deb.debian.org/debian/dists/bookwrom/Release answered HTTP 404); did you mean bookworm?\nhint: Fix the manifest; nothing on the host was changed. See man nspawnctl.\n`,
    });
    const unreachable = nspawnctlVia(DEAD_PROXY, ['apply', '/root/extra.yaml'], false);
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toContain(`  - cannot reach http://deb.debian.org/debian/dists/bookwrom/Release through proxy ${DEAD_PROXY}: connection refused (needed to create machine extra)\n`);
    expect(running()).toEqual(['db', 'web']);
  });

  timed('5. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
