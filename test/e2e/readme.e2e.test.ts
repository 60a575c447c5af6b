// README.md's setup command, exactly as written there (read from the file), run as root in a git
// clone of this project on a bare Debian 12 host with no node of its own: the distribution's
// nodejs and npm, the build and packages, nspawnctl on PATH, host init and apply of the example,
// whose two machines then run and answer.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runningMachines, seedNpmCache } from './distro';
import { e2eSuite, REPO, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-readme');
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);
const CLONE = '/root/nspawnctl';

/** The one-line command of the first sh block under "## The two commands" in README.md. */
function readmeSetupCommand(): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('The two commands\n'));
  const block = section && /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README.md: no sh block under "## The two commands"');
  const lines = block[1].split('\n').filter((l) => l.trim());
  expect(lines.length).toBe(1);
  return lines[0];
}

/** Runs a command on this machine; throws with its output when it fails. */
function runHere(file: string, args: string[], options: { cwd?: string; input?: Buffer } = {}): Buffer {
  const r = spawnSync(file, args, { cwd: options.cwd ?? REPO, input: options.input, timeout: 300_000, maxBuffer: 512 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status}: ${r.stderr.toString().slice(-3000)}`);
  return r.stdout;
}

/**
 * A git clone of this project (with its uncommitted changes laid over it, so that a change is
 * tested before it is committed), as a tar stream. The clone is made here: the project bound in
 * the sandbox may be a git worktree, whose .git points outside it.
 */
function cloneAsTar(): Buffer {
  const tmp = mkdtempSync('/var/tmp/nspawnctl-readme-e2e-');
  try {
    const clone = join(tmp, 'nspawnctl');
    runHere('git', ['clone', '--quiet', '--no-hardlinks', REPO, clone]);
    const changed = runHere('git', ['ls-files', '-z', '--modified', '--others', '--exclude-standard']).toString().split('\0').filter(Boolean);
    const deleted = runHere('git', ['ls-files', '-z', '--deleted']).toString().split('\0').filter(Boolean);
    if (changed.length) runHere('tar', ['-C', clone, '-x'], { input: runHere('tar', ['-C', REPO, '-c', '--null', '-T', '-'], { input: Buffer.from(changed.filter((f) => !deleted.includes(f)).join('\0')) }) });
    for (const f of deleted) rmSync(join(clone, f), { force: true });
    return runHere('tar', ['-C', tmp, '-c', 'nspawnctl']);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

e2eSuite('README.md\'s setup command on a bare Debian 12 host', () => {
  let env: Record<string, string> = {};

  beforeAll(() => {
    const proxy = sb.up(['--bare', '--no-node']);
    sb.exec(['tar', '-C', '/root', '-x'], { input: cloneAsTar() });
    // The example, with its mirror reached through the sandbox's apt cache (there is no other way
    // out), in place of the clone's machines.example.yaml: the command names that file.
    const example = readFileSync(join(REPO, 'machines.example.yaml'), 'utf8');
    const mirror = 'mirror: http://deb.debian.org/debian';
    expect(example).toContain(mirror);
    sb.write(`${CLONE}/machines.example.yaml`, example.replace(mirror, `mirror: http://${proxy}/deb.debian.org/debian`));
    env = { ...seedNpmCache(sb, REPO), DEBIAN_FRONTEND: 'noninteractive' };
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. the command, verbatim, in the clone: Debian\'s node, nspawnctl on PATH, both machines running and answering', () => {
    const command = readmeSetupCommand();
    process.stderr.write(`README setup command: ${command}\n`);
    expect(sb.exec(['sh', '-c', 'command -v node npm nspawnctl'], { check: false }).stdout).toBe('');
    const r = sb.exec(['sh', '-c', 'cd "$1" && eval "$2"', 'sh', CLONE, command], { env, check: false, timeoutMs: 1_800_000 });
    expect({ code: r.code, tail: r.code === 0 ? '' : `${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}` }).toEqual({ code: 0, tail: '' });
    expect(r.stdout).toMatch(/Applied (\d+) of \1 step\(s\)\./);
    expect(sb.exec(['sh', '-c', 'command -v node; node --version; command -v nspawnctl']).stdout.split('\n')).toEqual(['/usr/bin/node', expect.stringMatching(/^v18\./), expect.stringMatching(/^\/usr\/(local\/)?bin\/nspawnctl$/), '']);
    expect(sb.exec(['nspawnctl', '--version']).stdout).toMatch(/^nspawnctl\/\d+\.\d+\.\d+ linux-x64 node-v18\./);
    expect(runningMachines(sb)).toEqual(['db', 'web']);
    for (const address of ['10.77.0.11', '10.77.0.12']) expect({ address, answered: sb.pingUntilAnswered(address) }).toEqual({ address, answered: true });
  });

  timed('2. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
