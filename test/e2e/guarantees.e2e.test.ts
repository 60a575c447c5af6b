// Never half-done, proven by breaking things on purpose in a real systemd host: apply killed
// with SIGKILL at several points, interrupted with SIGINT, run twice at once, and a machine whose
// bootstrap fails. After each, no partial machine is visible and the next apply converges.
import { CLI, e2eSuite, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-g');
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);

function manifest(proxy: string, extra = ''): string {
  return [
    'defaults:',
    `  mirror: http://${proxy}/deb.debian.org/debian`,
    'networks:',
    '  examplevlan: { subnet: 10.77.0.0/24 }',
    'machines:',
    '  ma:',
    '    network: { bridge: examplevlan, address: 10.77.0.21 }',
    '  mb:',
    '    network: { bridge: examplevlan, address: 10.77.0.22 }',
    extra,
  ].join('\n');
}

/**
 * Starts apply in the background inside the sandbox, waits until `condition` (a shell test)
 * holds, then sends `signal` to apply. Prints apply's exit status (from wait) on stdout.
 */
function applyAndKill(condition: string, signal: 'KILL' | 'INT'): { status: number; log: string } {
  const script = [
    // --no-cache: bootstrap straight into the staging directory, the path these kills aim at.
    `node ${CLI} apply /root/m.yaml --no-cache >/root/apply.log 2>&1 &`,
    'pid=$!',
    `for i in $(seq 1 6000); do if ${condition}; then break; fi; if ! kill -0 $pid 2>/dev/null; then echo "apply ended before the condition" >&2; exit 3; fi; sleep 0.02; done`,
    `kill -${signal} $pid`,
    'wait $pid; echo $?',
  ].join('\n');
  const r = sb.exec(['bash', '-c', script], { check: false, timeoutMs: 600_000 });
  const log = sb.exec(['cat', '/root/apply.log']).stdout;
  if (r.code !== 0) throw new Error(`applyAndKill(${condition}) failed: ${r.stderr}\n${log}`);
  return { status: Number(r.stdout.trim()), log };
}

/** Images machinectl shows (hidden staging directories are not among them). */
function images(): string[] {
  return sb
    .exec(['machinectl', 'list-images', '--no-legend', '--no-pager'])
    .stdout.split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean)
    .sort();
}

function running(): string[] {
  return sb
    .exec(['machinectl', 'list', '--no-legend', '--no-pager'])
    .stdout.split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean)
    .sort();
}

/** Every image machinectl shows has a record and a complete rootfs (its /usr/bin/systemd... and our hostname file). */
function expectNoPartialMachine(): void {
  for (const name of images()) {
    expect({ name, record: sb.exec(['test', '-f', `/var/lib/nspawnctl/machines/${name}.json`], { check: false }).code }).toEqual({ name, record: 0 });
    expect({ name, hostname: sb.exec(['cat', `/var/lib/machines/${name}/etc/hostname`], { check: false }).stdout }).toEqual({ name, hostname: `${name}\n` });
  }
}

/** Nobody holds the host lock: flock(1) takes it at once without waiting. */
function lockIsFree(): boolean {
  return sb.exec(['flock', '--nonblock', '/run/nspawnctl.lock', 'true'], { check: false }).code === 0;
}

function noBootstrapperRunning(): void {
  // pdeathsig: killing apply (even with SIGKILL) takes its mmdebstrap down with it. mmdebstrap
  // finishes the step it is in (an apt or dpkg child) before it exits, which took over 10 s on a
  // loaded CI machine, and on its way out it forks helpers of the same name: wait (pidwait) until
  // none is left, bounded only so that an orphan that goes on bootstrapping fails the test
  // instead of hanging it.
  const r = sb.exec(['sh', '-c', 'timeout 120 sh -c "while pgrep -x mmdebstrap >/dev/null; do pidwait -x mmdebstrap || sleep 0.2; done"'], { check: false });
  // What is left, if anything, is shown with the failure.
  const left = r.code === 0 ? '' : sb.exec(['ps', '-eo', 'pid,ppid,etimes,stat,args'], { check: false }).stdout.split('\n').filter((l) => /mmdebstrap|apt|dpkg/.test(l)).join('\n');
  expect({ mmdebstrapGone: r.code === 0, left }).toEqual({ mmdebstrapGone: true, left: '' });
}

e2eSuite('never half-done', () => {
  let proxy = '';

  beforeAll(() => {
    proxy = sb.up();
    sb.write('/root/m.yaml', manifest(proxy));
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. SIGKILL during bootstrap: nothing visible, bootstrapper gone, next run cleans the staging directory', () => {
    const r = applyAndKill('pgrep -x mmdebstrap >/dev/null && [ -d /var/lib/machines/.nspawnctl-ma.staging/usr ]', 'KILL');
    expect(r.status).toBe(137);
    noBootstrapperRunning();
    expect(images()).toEqual([]);
    expect(sb.exec(['test', '-d', '/var/lib/machines/.nspawnctl-ma.staging'], { check: false }).code).toBe(0);
    // The killed run's note stays in the lock file, but the kernel released its lock with it.
    expect(sb.exec(['cat', '/run/nspawnctl.lock']).stdout).toContain('"command":"apply /root/m.yaml"');
    expect(lockIsFree()).toBe(true);
  });

  timed('2. SIGKILL right after a rootfs is in place: it is complete and recorded', () => {
    const r = applyAndKill('[ -d /var/lib/machines/ma ]', 'KILL');
    expect(r.status).toBe(137);
    noBootstrapperRunning();
    // The leftover of run 1 was never resumed: this run bootstrapped afresh and renamed it.
    expect(sb.exec(['test', '-e', '/var/lib/machines/.nspawnctl-ma.staging'], { check: false }).code).not.toBe(0);
    expectNoPartialMachine();
  });

  timed('3. SIGKILL between file writes: the next apply converges', () => {
    const r = applyAndKill('[ -e /etc/systemd/nspawn/mb.nspawn ]', 'KILL');
    expect(r.status).toBe(137);
    expectNoPartialMachine();
    // Killed after `machinectl start mb` was issued, mb may already be starting: then the next
    // apply finds nothing to do; otherwise it does the rest. Either way it converges.
    const converge = sb.nspawnctl(['apply', '/root/m.yaml']);
    expect(`${converge.stdout}${converge.stderr}`).toMatch(/Applied (\d+) of \1 step\(s\)\.|No changes: the host matches m\.yaml\./);
    expect(running()).toEqual(['ma', 'mb']);
    expect(JSON.parse(sb.nspawnctl(['plan', '/root/m.yaml', '--json']).stdout).changes).toBe(false);
    expect(sb.exec(['ls', '-A', '/var/lib/machines']).stdout.split('\n').filter((n) => n.startsWith('.nspawnctl'))).toEqual([]);
  });

  timed('4. SIGINT during bootstrap: children stopped, staging removed, lock released, exit 130', () => {
    sb.nspawnctl(['destroy', 'mb', '--yes']);
    const r = applyAndKill('pgrep -x mmdebstrap >/dev/null && [ -d /var/lib/machines/.nspawnctl-mb.staging/usr ]', 'INT');
    expect(r.status).toBe(130);
    expect(r.log).toContain('SIGINT received');
    noBootstrapperRunning();
    expect(sb.exec(['test', '-e', '/var/lib/machines/.nspawnctl-mb.staging'], { check: false }).code).not.toBe(0);
    expect(lockIsFree()).toBe(true);
    expect(images()).toEqual(['ma']);
  });

  timed('5. two applies at once serialize on the lock; the later one finds nothing to do', () => {
    const script = [
      `node ${CLI} apply /root/m.yaml >/root/a1.log 2>&1 & p1=$!`,
      'sleep 0.5',
      `node ${CLI} apply /root/m.yaml >/root/a2.log 2>&1 & p2=$!`,
      'wait $p1; s1=$?; wait $p2; s2=$?',
      'echo "$s1 $s2"',
    ].join('\n');
    const r = sb.exec(['bash', '-c', script], { timeoutMs: 600_000 });
    expect(r.stdout.trim()).toBe('0 0');
    const logs = [sb.exec(['cat', '/root/a1.log']).stdout, sb.exec(['cat', '/root/a2.log']).stdout];
    const waited = logs.filter((l) => /waiting for PID \d+ \(apply \/root\/m\.yaml/.test(l));
    expect(waited.length).toBe(1);
    expect(waited[0]).toContain('No changes: the host matches m.yaml.');
    expect(logs.filter((l) => /Applied (\d+) of \1 step\(s\)\./.test(l)).length).toBe(1);
    expect(running()).toEqual(['ma', 'mb']);
  });

  timed('5b. --no-wait refuses while another process holds the lock, and gets it once that process is gone', () => {
    const script = [
      // Another holder: flock(1) keeps the kernel lock while its command runs; the command names
      // itself in the file the way nspawnctl does.
      `flock /run/nspawnctl.lock sh -c 'printf "{\\"pid\\":%d,\\"command\\":\\"apply other.yaml\\",\\"since\\":\\"test\\"}\\n" $$ > /run/nspawnctl.lock; exec sleep 60' & holder=$!`,
      'for i in $(seq 1 100); do grep -q "apply other.yaml" /run/nspawnctl.lock 2>/dev/null && break; sleep 0.1; done',
      `node ${CLI} apply /root/m.yaml --no-wait; echo "exit=$?"`,
      'kill $holder; pkill -f "^sleep 60$"; wait $holder 2>/dev/null',
      `node ${CLI} apply /root/m.yaml --no-wait; echo "exit=$?"`,
    ].join('\n');
    const r = sb.exec(['bash', '-c', script], { check: false });
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/another nspawnctl is changing this host: PID \d+ \(apply other\.yaml, since test\)/);
    expect(out.match(/exit=\d+/g)).toEqual(['exit=5', 'exit=0']);
    expect(lockIsFree()).toBe(true);
  });

  timed('6. a bootstrap that fails (unknown package) fails that machine only; the others keep running', () => {
    const before = { ma: sb.exec(['machinectl', 'show', 'ma', '--property=Leader', '--value']).stdout };
    sb.write('/root/m.yaml', manifest(proxy, '  bad:\n    packages: [no-such-package-nspawnctl]\n    network: { bridge: examplevlan, address: 10.77.0.23 }\n'));
    const r = sb.nspawnctl(['apply', '/root/m.yaml'], { check: false });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply failed:\n  - machine bad: ');
    // With the base image cached, the unknown package fails in apt on top of the copied base.
    expect(r.stderr).toMatch(/machine bad: command \S+ .* exited with code \d+/);
    expect(r.stderr).toContain('no-such-package-nspawnctl');
    expect(running()).toEqual(['ma', 'mb']);
    expect({ ma: sb.exec(['machinectl', 'show', 'ma', '--property=Leader', '--value']).stdout }).toEqual(before);
    expect(images()).toEqual(['ma', 'mb']);
    expect(sb.exec(['ls', '-A', '/var/lib/machines']).stdout.split('\n').filter((n) => n.startsWith('.nspawnctl'))).toEqual([]);
    expect(sb.exec(['test', '-e', '/var/lib/nspawnctl/machines/bad.json'], { check: false }).code).not.toBe(0);
  });

  timed('7. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
