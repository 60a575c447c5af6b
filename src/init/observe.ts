// What `nspawnctl init` asks the host, read-only and as any user: its release, every IPv4 route
// and address, its interface names, and its resolvers.
import { Host } from '../host/host';
import { StarterFacts } from './starter';

export const OS_RELEASE_PATHS = ['/etc/os-release', '/usr/lib/os-release'];
export const RESOLV_CONF_PATH = '/etc/resolv.conf';
/** systemd-resolved's list of the servers it forwards to (its stub is 127.0.0.53). */
export const RESOLVED_UPLINK_PATH = '/run/systemd/resolve/resolv.conf';
/** Every table (VPNs route through their own), IPv4 only. */
export const IP_ROUTE_ARGS = ['-json', '-4', 'route', 'show', 'table', 'all'];
/** All interfaces, with or without an address (a bridge must not take an existing name). */
export const IP_ADDR_ARGS = ['-json', 'addr', 'show'];

/** Gathers the facts; a fact that cannot be had is left undefined (the starter says so). */
export async function observeStarterFacts(host: Host): Promise<StarterFacts> {
  const facts: StarterFacts = {};
  for (const path of OS_RELEASE_PATHS) {
    facts.osRelease = await host.fs.readText(path).catch(() => undefined);
    if (facts.osRelease !== undefined) break;
  }
  facts.resolvConf = await host.fs.readText(RESOLV_CONF_PATH).catch(() => undefined);
  facts.resolvedUplink = await host.fs.readText(RESOLVED_UPLINK_PATH).catch(() => undefined);
  try {
    const routes = await host.runner.run('ip', IP_ROUTE_ARGS);
    facts.routes = (JSON.parse(routes.stdout) as { dst?: unknown }[]).map((r) => r.dst).filter((d): d is string => typeof d === 'string');
    const links = await host.runner.run('ip', IP_ADDR_ARGS);
    const parsed = JSON.parse(links.stdout) as { ifname?: unknown; addr_info?: { family?: unknown; local?: unknown; prefixlen?: unknown }[] }[];
    facts.interfaces = parsed.map((l) => l.ifname).filter((n): n is string => typeof n === 'string');
    facts.addresses = parsed.flatMap((l) => (l.addr_info ?? []).filter((a) => a.family === 'inet' && typeof a.local === 'string').map((a) => `${a.local}/${Number(a.prefixlen ?? 32)}`));
  } catch (err) {
    facts.routes = undefined;
    facts.addresses = undefined;
    facts.ipProblem = err instanceof SyntaxError ? `unexpected output: ${err.message}` : (err as Error).message.split('\n')[0].replace(/:$/, '');
  }
  return facts;
}
