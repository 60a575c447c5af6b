// Drives test/e2e/sandbox.sh (the disposable systemd host) from the e2e tests.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const REPO = join(__dirname, '..', '..');
const SCRIPT = join(__dirname, 'sandbox.sh');
/** Where the project is bound inside the sandbox, and the CLI there. */
export const CLI = '/opt/nspawnctl/bin/run.js';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

// One disposable host. The tests use their own names, so a sandbox someone started by hand
// (default name nsctl-sbx) is never touched. Suites run at the same time, and each name hashes
// to a network slot (sandbox.sh): test/sandbox-slots.test.ts keeps the suites' slots apart.
export class Sandbox {
  constructor(readonly name: string) {}

  /**
   * `env`: variables for the command `exec` runs inside (sandbox.sh's SANDBOX_ENV; no spaces in values).
   * `scriptEnv`: variables for sandbox.sh itself (such as SANDBOX_SSH_PUBKEY).
   */
  run(args: string[], input?: string | Buffer, timeoutMs = 600_000, env: Record<string, string> = {}, scriptEnv: Record<string, string> = {}): Result {
    const sandboxEnv = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    if (sandboxEnv.some((kv) => /\s/.test(kv))) throw new Error(`SANDBOX_ENV values cannot contain spaces: ${sandboxEnv.join(' ')}`);
    const envs = { ...process.env, ...scriptEnv, SANDBOX_NAME: this.name, SANDBOX_ENV: sandboxEnv.join(' ') };
    const r = spawnSync('bash', [SCRIPT, ...args], { input, env: envs, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    if (r.error) throw r.error;
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** Boots it (after removing leftovers of an interrupted earlier run); returns the proxy host:port. */
  up(flags: string[] = [], scriptEnv: Record<string, string> = {}): string {
    this.run(['down']);
    const up = this.run(['up', ...flags], undefined, 900_000, {}, scriptEnv);
    if (up.code !== 0) throw new Error(`sandbox ${this.name} up failed (${up.code}):\n${up.stdout.slice(-3000)}\n${up.stderr.slice(-3000)}`);
    const proxy = this.run(['ip']).stdout.trim();
    if (!/^\d+\.\d+\.\d+\.\d+:\d+$/.test(proxy)) throw new Error(`sandbox ip printed ${JSON.stringify(proxy)}`);
    return proxy;
  }

  /**
   * Boots it with OpenSSH's sshd on its own address (`up --sshd`): root may log in with the key of
   * `pubKeyPath` (a .pub file on this machine) and by no password. sshd answers when this returns.
   * `flags`: more `up` flags (--bare, --no-node, --machines-fs=SIZE). Returns the apt proxy
   * (host:port) and the sandbox's address, which this machine reaches directly.
   */
  upWithSsh(pubKeyPath: string, flags: string[] = []): { proxy: string; addr: string } {
    const proxy = this.up([...flags, '--sshd'], { SANDBOX_SSH_PUBKEY: pubKeyPath });
    return { proxy, addr: this.addr() };
  }

  /** The sandbox's own IPv4 address (its end of the link to this machine; `sandbox.sh addr`). */
  addr(): string {
    const addr = this.run(['addr']).stdout.trim();
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(addr)) throw new Error(`sandbox addr printed ${JSON.stringify(addr)}`);
    return addr;
  }

  /** The public host keys of its sshd ("TYPE BASE64 COMMENT" lines), read inside after `upWithSsh`. */
  sshHostKeys(): string[] {
    const keys = this.exec(['sh', '-c', 'cat /etc/ssh/ssh_host_*_key.pub']).stdout.split('\n').filter(Boolean);
    if (keys.length === 0 || keys.some((k) => !/^(ssh|ecdsa)-\S+ [A-Za-z0-9+/=]+( |$)/.test(k))) throw new Error(`sandbox ${this.name}: no usable host key in ${JSON.stringify(keys)}`);
    return keys;
  }

  /** Runs a command inside the sandbox host; throws with its output when it fails and `check` is not false. */
  exec(argv: string[], options: { input?: string | Buffer; check?: boolean; timeoutMs?: number; env?: Record<string, string> } = {}): Result {
    const r = this.run(['exec', '--', ...argv], options.input, options.timeoutMs, options.env);
    if (options.check !== false && r.code !== 0) {
      throw new Error(`in sandbox: ${argv.join(' ')} exited ${r.code}\nstdout:\n${r.stdout.slice(-4000)}\nstderr:\n${r.stderr.slice(-4000)}`);
    }
    return r;
  }

  /** Runs nspawnctl inside the sandbox host. */
  nspawnctl(args: string[], options: { check?: boolean; timeoutMs?: number } = {}): Result {
    return this.exec(['node', CLI, ...args], { check: options.check, timeoutMs: options.timeoutMs ?? 900_000 });
  }

  write(path: string, content: string): void {
    this.exec(['tee', path], { input: content });
  }

  /** Copies a file of this machine into the sandbox host (through the command's stdin). */
  copyIn(hostPath: string, path: string): void {
    this.exec(['sh', '-c', 'cat > "$1"', 'sh', path], { input: readFileSync(hostPath) });
  }

  /** Retries ping from the sandbox for a while: networkd inside a machine configures host0 shortly after boot. */
  pingUntilAnswered(address: string): boolean {
    return this.exec(['sh', '-c', `for i in $(seq 1 30); do ping -c 1 -W 1 ${address} >/dev/null && exit 0; sleep 1; done; exit 1`], { check: false }).code === 0;
  }

  /**
   * Every file and directory of the test host outside the given paths, with type, mode, owner,
   * size and mtime: compared before and after something a machine's root could exploit. /proc,
   * /sys, /dev, /run and /tmp are always left out, as are the machines and the journal.
   */
  hostListing(exclude: string[] = []): string[] {
    // /opt/nspawnctl is this project, bound in read-only (and edited meanwhile on this machine).
    const skip = ['/proc', '/sys', '/dev', '/run', '/tmp', '/var/tmp', '/var/lib/machines', '/var/log', '/var/lib/systemd', '/opt/nspawnctl', ...exclude];
    const prune = skip.flatMap((p, i) => [...(i ? ['-o'] : []), '-path', p]);
    const r = this.exec(['find', '/', '-xdev', '(', ...prune, ')', '-prune', '-o', '-printf', '%p %y %m %U:%G %s %T@\n'], { timeoutMs: 120_000 });
    return r.stdout.split('\n').filter(Boolean).sort();
  }

  /** Powers it off and checks that nothing of it is left on this machine. */
  downAndCheckClean(): Result {
    this.run(['down']);
    return this.run(['check-clean']);
  }
}

/** Why the e2e suite cannot run here, or undefined when it can. */
export function whyCannotRun(extraTools: string[] = []): string | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not running as root';
  for (const tool of extraTools) if (!existsSync(tool)) return `${tool} is missing`;
  for (const tool of ['/usr/bin/systemd-nspawn', '/usr/bin/mmdebstrap', '/usr/sbin/apt-cacher-ng', '/usr/bin/nsenter', '/usr/sbin/ip']) {
    if (!existsSync(tool)) return `${tool} is missing (apt-get install systemd-container mmdebstrap apt-cacher-ng iproute2)`;
  }
  if (!existsSync(join(REPO, 'dist', 'commands', 'apply.js'))) return 'dist/ is not built (run npm run build)';
  return undefined;
}

/** Registers the suite, or a loud skip when it cannot run here (a failure when it is required). */
export function e2eSuite(title: string, body: () => void, extraTools: string[] = []): void {
  const why = whyCannotRun(extraTools);
  const required = process.env.NSPAWNCTL_E2E === 'required';
  if (why && !required) {
    process.stderr.write(`\n*** nspawnctl e2e "${title}" SKIPPED: ${why}. It runs as root with systemd-container, mmdebstrap and apt-cacher-ng installed (.ci/run does this). ***\n\n`);
    describe.skip(title, body);
    return;
  }
  describe(title, () => {
    if (why) {
      test('can run here', () => {
        throw new Error(`e2e tests are required here (NSPAWNCTL_E2E=required) but cannot run: ${why}`);
      });
      return;
    }
    body();
  });
}

/** Times each test and prints the durations (the CI log shows them). */
export function timedTest(timings: string[], name: string, fn: () => void, timeoutMs = 900_000): void {
  test(
    name,
    () => {
      const start = Date.now();
      try {
        fn();
      } finally {
        const line = `[e2e] ${name}: ${((Date.now() - start) / 1000).toFixed(1)} s`;
        timings.push(line);
        process.stderr.write(`${line}\n`);
      }
    },
    timeoutMs,
  );
}
