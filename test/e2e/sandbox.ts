// Drives test/e2e/sandbox.sh (the disposable systemd host) from the e2e tests.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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

/** The tests use their own sandbox name, so a sandbox someone started by hand is never touched. */
export const SANDBOX_NAME = 'nsctl-e2e';

export function sandbox(args: string[], input?: string, timeoutMs = 600_000): Result {
  const env = { ...process.env, SANDBOX_NAME };
  const r = spawnSync('bash', [SCRIPT, ...args], { input, env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a command inside the sandbox host; throws with its output when it fails and `check` is set. */
export function inHost(argv: string[], options: { input?: string; check?: boolean; timeoutMs?: number } = {}): Result {
  const r = sandbox(['exec', '--', ...argv], options.input, options.timeoutMs);
  if (options.check !== false && r.code !== 0) {
    throw new Error(`in sandbox: ${argv.join(' ')} exited ${r.code}\nstdout:\n${r.stdout.slice(-4000)}\nstderr:\n${r.stderr.slice(-4000)}`);
  }
  return r;
}

/** Runs nspawnctl inside the sandbox host. */
export function nspawnctl(args: string[], options: { check?: boolean; timeoutMs?: number } = {}): Result {
  return inHost(['node', CLI, ...args], { check: options.check, timeoutMs: options.timeoutMs ?? 900_000 });
}

export function writeInHost(path: string, content: string): void {
  inHost(['tee', path], { input: content });
}

/** Why the e2e suite cannot run here, or undefined when it can. */
export function whyCannotRun(): string | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not running as root';
  for (const tool of ['/usr/bin/systemd-nspawn', '/usr/bin/mmdebstrap', '/usr/sbin/apt-cacher-ng', '/usr/bin/nsenter', '/usr/sbin/ip']) {
    if (!existsSync(tool)) return `${tool} is missing (apt-get install systemd-container mmdebstrap apt-cacher-ng iproute2)`;
  }
  if (!existsSync(join(REPO, 'dist', 'commands', 'apply.js'))) return 'dist/ is not built (run npm run build)';
  return undefined;
}
