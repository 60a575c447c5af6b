// Helpers of the suites that install nspawnctl the way a user does on a bare Debian 12 host
// (the distribution's nodejs, the .deb, the README's command): apt through the sandbox's
// apt-cacher-ng, npm from a cache made here, and a small manifest whose mirror is that apt cache.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox } from './sandbox';

/** apt-get install inside, without questions. */
export function aptInstall(sb: Sandbox, packages: string[]): void {
  sb.exec(['apt-get', 'update', '-qq'], { timeoutMs: 300_000 });
  sb.exec(['apt-get', 'install', '-y', '-qq', ...packages], { timeoutMs: 600_000, env: { DEBIAN_FRONTEND: 'noninteractive' } });
}

/**
 * npm inside installs from a cache made here, offline: the sandbox has no route out, and neither
 * apt-cacher-ng's CONNECT pass-through nor a small CONNECT proxy of our own carried Debian npm 9's
 * hundreds of parallel requests through this machine's connection to the registry reliably
 * (responses cut off, requests left hanging for the 5-minute fetch timeout). The cache holds
 * every package of the lockfile, fetched here by `npm ci --cache`; `npm_config_offline=true` in
 * the environment makes npm use only it. Nothing in the command being tested changes.
 */
export function seedNpmCache(sb: Sandbox, projectDir: string): Record<string, string> {
  const tmp = mkdtempSync('/var/tmp/nspawnctl-npm-cache-');
  try {
    copyFileSync(join(projectDir, 'package.json'), join(tmp, 'package.json'));
    copyFileSync(join(projectDir, 'package-lock.json'), join(tmp, 'package-lock.json'));
    const ci = spawnSync('npm', ['ci', '--cache', join(tmp, 'cache'), '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: tmp, encoding: 'utf8', timeout: 300_000 });
    if (ci.status !== 0) throw new Error(`npm ci --cache (to seed the sandbox's npm cache) exited ${ci.status}: ${ci.stderr.slice(-3000)}`);
    const tar = spawnSync('tar', ['-C', join(tmp, 'cache'), '-c', '.'], { maxBuffer: 1024 * 1024 * 1024 });
    if (tar.status !== 0) throw new Error(`tar of the npm cache exited ${tar.status}`);
    sb.exec(['sh', '-c', 'mkdir -p /root/.npm && tar -C /root/.npm -x'], { input: tar.stdout });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { npm_config_offline: 'true' };
}

/** One network and one machine, bootstrapped through the sandbox's apt cache. */
export function smallManifest(proxy: string, network: { name: string; prefix: string }): string {
  return [
    'defaults:',
    '  distribution: debian',
    '  suite: bookworm',
    `  mirror: http://${proxy}/deb.debian.org/debian`,
    'networks:',
    `  ${network.name}:`,
    `    subnet: ${network.prefix}.0/24`,
    `    gateway: ${network.prefix}.1`,
    'machines:',
    '  one:',
    `    network: { bridge: ${network.name}, address: ${network.prefix}.11 }`,
    '',
  ].join('\n');
}

/** The names machinectl lists as running. */
export function runningMachines(sb: Sandbox): string[] {
  return sb
    .exec(['machinectl', 'list', '--no-legend', '--no-pager'])
    .stdout.split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean)
    .sort();
}
