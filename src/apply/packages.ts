// Installs packages added to the manifest into an existing machine, always inside the machine:
// its own apt, with its own configuration, on its own network, in its cgroup and namespaces.
import { NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { Machine } from '../manifest/schema';
import { APT_INSTALL } from './bootstrap';
import { APT_TIMEOUT_MS, runInMachine } from './in-machine';
import { machineState, startMachine, stopMachine } from './machinectl';
import { withMaintenanceBoot } from './maintenance';

const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive' };

/** apt-get update and install inside the running machine `name`. */
export async function aptInstallInMachine(host: Host, name: string, packages: string[], onLine?: (line: string) => void): Promise<void> {
  const run = { env: APT_ENV, onLine, dieWithParent: true, timeoutMs: APT_TIMEOUT_MS };
  await runInMachine(host, name, ['apt-get', 'update'], run);
  await runInMachine(host, name, [...APT_INSTALL, ...packages], run);
}

/**
 * A machine whose root is writable while it runs gets them in place (it is started first when
 * it is stopped). A read-only or volatile one is stopped and booted once with a writable root
 * (withMaintenanceBoot); the plan starts it normally afterwards.
 */
export async function installPackages(host: Host, machine: Machine, packages: string[], options: { timeoutMs: number; onLine?: (line: string) => void }): Promise<void> {
  if (!machine.network) {
    throw new NspawnctlError(`machine ${machine.name} has no network, so apt inside it cannot download ${packages.join(' ')}`, {
      hint: 'Packages added after creation are installed by the machine itself: give it a network (with nat: true, or an aptProxy reachable from its bridge), or destroy it and apply again to build it with them.',
    });
  }
  const wait = { timeoutMs: options.timeoutMs, network: true };
  const running = (await machineState(host, machine.name)) === 'running';
  if (machine.security.readOnly || machine.security.volatile !== 'no') {
    if (running) await stopMachine(host, machine.name, wait);
    await withMaintenanceBoot(host, machine, options.timeoutMs, () => aptInstallInMachine(host, machine.name, packages, options.onLine));
    return;
  }
  if (!running) await startMachine(host, machine.name, wait);
  await aptInstallInMachine(host, machine.name, packages, options.onLine);
}
