// Helpers of the suites that install nspawnctl the way a user does on a bare Debian 12 host
// (the distribution's nodejs, the .deb, the README's command): apt and npm through the
// sandbox's apt-cacher-ng, and a small manifest whose mirror is that cache.
import { Sandbox } from './sandbox';

/** apt-get install inside, without questions. */
export function aptInstall(sb: Sandbox, packages: string[]): void {
  sb.exec(['apt-get', 'update', '-qq'], { timeoutMs: 300_000 });
  sb.exec(['apt-get', 'install', '-y', '-qq', ...packages], { timeoutMs: 600_000, env: { DEBIAN_FRONTEND: 'noninteractive' } });
}

/** Where npm inside finds the CA bundle copied from this machine (see npmEnv). */
const CA_INSIDE = '/root/ca-certificates.crt';

/**
 * The environment that lets npm inside reach the registry: there is no DNS and no route out, but
 * apt-cacher-ng on the host end passes CONNECT through (PassThroughPattern: .*), so it serves
 * as npm's HTTPS proxy. npm trusts the CAs this machine trusts (a TLS-inspecting proxy in front
 * of this machine included). Nothing in the command being tested changes.
 */
export function npmEnv(sb: Sandbox, proxy: string): Record<string, string> {
  sb.copyIn('/etc/ssl/certs/ca-certificates.crt', CA_INSIDE);
  return { npm_config_proxy: `http://${proxy}`, npm_config_https_proxy: `http://${proxy}`, npm_config_cafile: CA_INSIDE };
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
