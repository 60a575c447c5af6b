// Day two, for real, in a disposable systemd host: exec and logs reach into a running machine
// through its own systemd; apply returns only once the machine's systemd is up; a health check
// runs on the machine's own timer, a failing one makes apply exit 1 naming the machine and
// status --json report it; and onFailure: restart has the machine's systemd reboot it when its
// service breaks, so that it comes back. See test/e2e/README.md.
import { CLI, e2eSuite, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-day2');
const inHost = sb.exec.bind(sb);
const nspawnctl = sb.nspawnctl.bind(sb);
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);

/** A unit file written by the manifest, as YAML lines under `files:`. */
function unitFile(name: string, lines: string[]): string[] {
  return [`      - path: /etc/systemd/system/${name}`, '        content: |', ...lines.map((l) => `          ${l}`)];
}

/**
 * app: a boot that takes a while (slow.service, part of multi-user.target, sleeps 4 s before it
 * writes a line), and a check that passes once it ran. hc (with `hc`): a check that prints a
 * line and fails until /run/hc-ok exists. rs (with `rs`): a service and a check that it is
 * active, rebooting the machine when it is not.
 */
function manifest(proxy: string, o: { hc?: boolean; rs?: boolean } = {}): string {
  return [
    'defaults:',
    `  mirror: http://${proxy}/deb.debian.org/debian`,
    '  health: { interval: 2s, timeout: 5s }',
    'machines:',
    '  app:',
    '    files:',
    ...unitFile('slow.service', [
      '[Unit]',
      'Description=takes a while to start',
      '[Service]',
      'Type=oneshot',
      'RemainAfterExit=yes',
      'ExecStart=/bin/sh -c "sleep 4; echo day2-slow-service-done"',
      '[Install]',
      'WantedBy=multi-user.target',
    ]),
    '    provision: [[systemctl, enable, slow.service]]',
    // Run by apply, then hourly: what status and list show of it stays put during the test
    // (a check being run at the moment of a look is "unknown").
    '    health: { command: [systemctl, is-active, --quiet, slow.service], interval: 1h }',
    ...(o.hc
      ? [
          '  hc:',
          '    health:',
          '      command: [sh, -c, "echo day2-check-says $(cat /run/hc-ok 2>/dev/null || echo no-file); test -e /run/hc-ok"]',
          '      retries: 2',
        ]
      : []),
    ...(o.rs
      ? [
          '  rs:',
          '    files:',
          ...unitFile('svc.service', ['[Unit]', 'Description=the service rs is for', '[Service]', 'ExecStart=/bin/sleep infinity', '[Install]', 'WantedBy=multi-user.target']),
          '    provision: [[systemctl, enable, svc.service]]',
          '    health: { command: [systemctl, is-active, --quiet, svc.service], retries: 1, onFailure: restart, restartLimit: 2 }',
        ]
      : []),
    '',
  ].join('\n');
}

/** Runs nspawnctl inside the test host with `input` on its standard input. */
function nspawnctlWithInput(args: string[], input: string) {
  return inHost(['node', CLI, ...args], { input, check: false });
}

/** What the machine's own systemd says, asked from the test host (no --wait: as it is now). */
function systemState(machine: string): string {
  return inHost(['systemctl', `--machine=${machine}`, 'is-system-running'], { check: false }).stdout.trim();
}

function leader(name: string): number {
  return Number(inHost(['machinectl', 'show', name, '--property=Leader', '--value']).stdout.trim());
}

function statusJson(name: string): { state: string; health?: { state: string; detail: string; output?: string[] } } {
  return JSON.parse(nspawnctl(['status', name, '--json']).stdout);
}

/**
 * Waits, inside the test host, until `condition` (a shell test) holds: on the state it names, not
 * on a clock (jest's test timeout is the only bound).
 */
function waitUntil(condition: string): void {
  inHost(['sh', '-c', `until ${condition}; do sleep 0.5; done`], { timeoutMs: 600_000 });
}

/** Waits until status --json says the machine is healthy; returns that status. */
function waitHealthy(name: string): ReturnType<typeof statusJson> {
  const file = `/root/status-${name}.json`;
  waitUntil(`node ${CLI} status ${name} --json >${file} && grep -q '"state": "healthy"' ${file}`);
  return JSON.parse(inHost(['cat', file]).stdout);
}

e2eSuite('day two: exec, logs, readiness and health checks', () => {
  let proxy = '';

  beforeAll(() => {
    proxy = sb.up();
    sb.write('/root/m.yaml', manifest(proxy));
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. apply returns only once the machine\'s systemd is running, and its check passed', () => {
    const r = nspawnctl(['apply', '/root/m.yaml', '--json']);
    // Asked right after apply returned, without waiting: the boot is over (slow.service, which
    // holds it up for 4 s, has finished), so systemd says running, not starting.
    expect(systemState('app')).toBe('running');
    const slow = inHost(['systemctl', '--machine=app', 'show', 'slow.service', '--property=ActiveState,Result,ExecMainStatus']).stdout;
    expect(slow.split('\n').filter(Boolean).sort()).toEqual(['ActiveState=active', 'ExecMainStatus=0', 'Result=success']);
    const json = JSON.parse(r.stdout);
    expect(json.ready).toEqual({ app: { state: 'running', failedUnits: [] } });
    expect(json.health).toEqual({ app: { state: 'healthy', detail: 'the check passed' } });
    // The check is the machine's own: a timer of its systemd, enabled.
    expect(inHost(['systemctl', '--machine=app', 'is-enabled', 'nspawnctl-health.timer']).stdout.trim()).toBe('enabled');
    expect(statusJson('app').health).toMatchObject({ state: 'healthy' });
    const list = nspawnctl(['list']).stdout.split('\n');
    expect(list[0]).toMatch(/^MACHINE +STATE +ADDRESS +MANIFEST +UPGRADED +HEALTH$/);
    expect(list[1]).toMatch(/^app +running +- +in sync +never +healthy$/);
  });

  timed('2. exec: the command\'s output, error output, exit status and standard input, run inside the machine', () => {
    const r = inHost(['node', CLI, 'exec', 'app', '--', 'sh', '-c', 'echo "out of $(hostname)"; echo "to stderr" >&2; exit 7'], { check: false });
    expect([r.code, r.stdout, r.stderr]).toEqual([7, 'out of app\n', 'to stderr\n']);
    expect(nspawnctl(['exec', 'app', '--', 'true']).code).toBe(0);
    // Standard input goes through unchanged; --env, --cwd and --user reach the command.
    const piped = nspawnctlWithInput(['exec', 'app', '--', 'sha256sum'], 'day two\n'.repeat(1000));
    const local = inHost(['sha256sum'], { input: 'day two\n'.repeat(1000) }).stdout;
    expect([piped.code, piped.stdout]).toEqual([0, local]);
    const env = nspawnctl(['exec', 'app', '--env', 'GREETING=hello $USER', '--cwd', '/etc', '--user', 'nobody', '--', 'sh', '-c', 'echo "$GREETING|$(pwd)|$(id -un)"']);
    expect(env.stdout).toBe('hello $USER|/etc|nobody\n');
    // It ran inside: the machine's PID namespace (its systemd is PID 1 there), not the test host's.
    expect(nspawnctl(['exec', 'app', '--', 'cat', '/proc/1/comm']).stdout).toBe('systemd\n');
    expect(nspawnctl(['exec', 'app', '--', 'cat', '/etc/hostname']).stdout).toBe('app\n');
    // A name nspawnctl does not manage: exit 1, nothing run.
    const ghost = nspawnctl(['exec', 'ghost', '--', 'touch', '/root/ghost-ran'], { check: false });
    expect(ghost.code).toBe(1);
    expect(ghost.stderr).toContain('ghost');
    expect(inHost(['test', '-e', '/root/ghost-ran'], { check: false }).code).toBe(1);
  });

  timed('3. logs: a line the machine wrote to its journal', () => {
    // Written at boot by slow.service, on its standard output (the machine's journald has it).
    expect(nspawnctl(['logs', 'app', '-u', 'slow.service']).stdout).toContain('day2-slow-service-done');
    // Written now by a program in the machine: journald takes it in on its own time, so this
    // waits until the machine's journal shows it, through nspawnctl logs.
    const marker = `day2-marker-${process.pid}`;
    nspawnctl(['exec', 'app', '--', 'logger', '-t', 'day2', marker]);
    waitUntil(`node ${CLI} logs app -n 50 | grep -q 'day2\\[[0-9]*\\]: ${marker}$'`);
    const last = nspawnctl(['logs', 'app', '-n', '50']).stdout;
    expect(last).toMatch(new RegExp(`app day2\\[\\d+\\]: ${marker}\\n`));
    expect(last.trimEnd().split('\n').length).toBeLessThanOrEqual(50);
  });

  timed('4. a failing check: apply exits 1 naming the machine with its output; status --json and list report it', () => {
    sb.write('/root/m.yaml', manifest(proxy, { hc: true }));
    const r = nspawnctl(['apply', '/root/m.yaml'], { check: false });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('machine hc is not healthy: its check failed 2 time(s) in a row');
    expect(r.stderr).toContain('day2-check-says no-file');
    // The machine runs (its check failed, not its boot); the other machine was not touched.
    expect(systemState('hc')).toMatch(/^(running|degraded)$/);
    const status = statusJson('hc');
    expect(status.state).toBe('running');
    expect(status.health).toMatchObject({ state: 'unhealthy', detail: expect.stringContaining('retries are used up') });
    expect(status.health?.output).toContain('day2-check-says no-file');
    const list = JSON.parse(nspawnctl(['list', '--json']).stdout);
    expect(list.map((m: { name: string; health?: { state: string } }) => [m.name, m.health?.state])).toEqual([
      ['app', 'healthy'],
      ['hc', 'unhealthy'],
    ]);
    // Once the check can pass, the machine's own timer finds it healthy again (no nspawnctl runs).
    nspawnctl(['exec', 'hc', '--', 'sh', '-c', 'echo yes > /run/hc-ok']);
    expect(waitHealthy('hc').health).toEqual({ state: 'healthy', detail: 'the last check passed', output: ['day2-check-says yes'] });
  });

  timed('5. a machine that is not running: exec and logs exit 1 and run nothing', () => {
    // systemctl stop returns once the machine's unit is stopped.
    inHost(['systemctl', 'stop', 'systemd-nspawn@hc.service']);
    const exec = nspawnctl(['exec', 'hc', '--', 'true'], { check: false });
    expect([exec.code, exec.stderr]).toEqual([1, expect.stringContaining('machine hc is not running; nothing was run')]);
    expect(nspawnctl(['logs', 'hc'], { check: false }).code).toBe(1);
    expect(statusJson('hc').health).toEqual({ state: 'unknown', detail: 'the machine is not running' });
  });

  timed('6. onFailure: restart: when its service breaks, the machine reboots itself and comes back', () => {
    sb.write('/root/m.yaml', manifest(proxy, { hc: true, rs: true }));
    // apply starts hc again (stopped above), whose check fails again on a fresh /run: exit 1 for
    // hc alone, while rs is created and comes up healthy.
    const r = nspawnctl(['apply', '/root/m.yaml', '--json'], { check: false });
    const json = JSON.parse(r.stdout);
    expect(json.health.rs).toEqual({ state: 'healthy', detail: 'the check passed' });
    expect(json.failures.map((f: { group: string }) => f.group)).toEqual(['hc']);
    const before = { leader: leader('rs'), boot: nspawnctl(['exec', 'rs', '--', 'cat', '/proc/sys/kernel/random/boot_id']).stdout };
    expect(inHost(['systemctl', 'show', 'systemd-nspawn@rs.service', '--property=NRestarts', '--value']).stdout.trim()).toBe('0');
    // Break the service: killed, and not restarted by its own unit (no Restart=).
    const broken = Date.now();
    nspawnctl(['exec', 'rs', '--', 'systemctl', 'kill', '--signal=KILL', 'svc.service']);
    // The check fails, its start limit (retries: 1) is hit, the machine's systemd reboots it,
    // and the host's systemd restarts its unit: wait for that restart to be counted.
    waitUntil(`[ "$(systemctl show systemd-nspawn@rs.service --property=NRestarts --value)" = 1 ]`);
    // Then for its systemd to be up again (its bus refuses a connection until it is).
    waitUntil(`[ "$(systemctl --machine=rs is-system-running --wait 2>/dev/null)" = running ]`);
    expect(systemState('rs')).toBe('running');
    // Measured, not bounded (docs/operations.md quotes it): service killed to machine up again.
    timings.push(`[e2e] rs: service killed -> machine rebooted and running again: ${((Date.now() - broken) / 1000).toFixed(1)} s (interval 2s, retries 1)`);
    const after = { leader: leader('rs'), boot: nspawnctl(['exec', 'rs', '--', 'cat', '/proc/sys/kernel/random/boot_id']).stdout };
    expect(after.leader).not.toBe(before.leader);
    expect(after.boot).not.toBe(before.boot);
    expect(nspawnctl(['exec', 'rs', '--', 'systemctl', 'is-active', 'svc.service']).stdout).toBe('active\n');
    // Its check runs on its timer after the boot and passes.
    expect(waitHealthy('rs')).toMatchObject({ state: 'running', health: { state: 'healthy' } });
  });
});
