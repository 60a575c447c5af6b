// Starting, stopping and enabling machines through machinectl and systemctl.
import { NspawnctlError, tailLines } from '../errors';
import { Host } from '../host/host';
import { Readiness, waitUntilReady } from './in-machine';

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** After it registers, also wait until networkd inside configured host0. */
  network?: boolean;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The machine's state as machined reports it ("running", "opening", ...), or undefined if absent. */
export async function machineState(host: Host, name: string): Promise<string | undefined> {
  const r = await host.runner.run('machinectl', ['show', name, '--property=State', '--value'], { allowFailure: true });
  return r.exitCode === 0 ? r.stdout.trim() || undefined : undefined;
}

/** PID of the machine's init, as seen from the host. */
export async function machineLeader(host: Host, name: string): Promise<number | undefined> {
  const r = await host.runner.run('machinectl', ['show', name, '--property=Leader', '--value'], { allowFailure: true });
  const pid = Number(r.stdout.trim());
  return r.exitCode === 0 && pid > 0 ? pid : undefined;
}

/** The host UIDs of a running machine's user namespace (its root is `base`), from its leader's uid_map. */
export async function machineUserRange(host: Host, name: string, leader?: number): Promise<{ base: number; count: number }> {
  const pid = leader ?? (await machineLeader(host, name));
  if (pid === undefined) throw new NspawnctlError(`machine ${name} is not running, so its UID range is not known`);
  const map = (await host.fs.readText(`/proc/${pid}/uid_map`)) ?? '';
  const root = map
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number))
    .find(([inside]) => inside === 0);
  if (!root || !Number.isInteger(root[1]) || !Number.isInteger(root[2])) throw new NspawnctlError(`machine ${name}: cannot read its UID range from /proc/${pid}/uid_map`);
  return { base: root[1], count: root[2] };
}

/**
 * Gives a read-write bind source nspawnctl created to the machine's root: the directory itself
 * is chowned to the first UID and GID of the machine's range (read-write binds are not idmapped).
 */
export async function handBindSource(host: Host, name: string, path: string): Promise<void> {
  const info = await host.fs.stat(path);
  if (info?.type !== 'dir') throw new NspawnctlError(`${path} is not a directory, so it is not handed to machine ${name}`);
  const { base } = await machineUserRange(host, name);
  await host.fs.chown(path, base, base);
}

/** Makes systemd re-read unit files and drop-ins (cgroup limits apply to running units). */
export async function daemonReload(host: Host): Promise<void> {
  await host.runner.run('systemctl', ['daemon-reload']);
}

/**
 * Starts a machine and returns once it is usable: registered, its systemd done starting up,
 * and (with a network) host0 configured. What apply's return promises rests on this.
 */
export async function startMachine(host: Host, name: string, wait: WaitOptions): Promise<Readiness> {
  const deadline = Date.now() + wait.timeoutMs;
  await host.runner.run('machinectl', ['start', name]);
  await waitForRunning(host, name, wait);
  return waitUntilReady(host, name, { deadline, network: wait.network ?? false, sleep: wait.sleep });
}

// systemctl restart stops and starts the unit synchronously, and the new systemd-nspawn reads
// the changed .nspawn file; machinectl reboot would keep the old process's settings.
export async function restartMachine(host: Host, name: string, wait: WaitOptions): Promise<Readiness> {
  const deadline = Date.now() + wait.timeoutMs;
  await host.runner.run('systemctl', ['restart', `systemd-nspawn@${name}.service`]);
  await waitForRunning(host, name, wait);
  return waitUntilReady(host, name, { deadline, network: wait.network ?? false, sleep: wait.sleep });
}

export async function enableMachine(host: Host, name: string): Promise<void> {
  await host.runner.run('machinectl', ['enable', name]);
}

export async function disableMachine(host: Host, name: string): Promise<void> {
  await host.runner.run('machinectl', ['disable', name]);
}

async function waitForRunning(host: Host, name: string, wait: WaitOptions): Promise<void> {
  const sleep = wait.sleep ?? defaultSleep;
  const deadline = Date.now() + wait.timeoutMs;
  let state: string | undefined;
  for (;;) {
    state = await machineState(host, name);
    if (state === 'running') return;
    if (Date.now() >= deadline) break;
    await sleep(wait.intervalMs ?? 500);
  }
  const journal = await host.runner.run('journalctl', ['--no-pager', '--quiet', '-n', '25', '-u', `systemd-nspawn@${name}.service`], { allowFailure: true });
  throw new NspawnctlError(`machine ${name} did not reach state "running" within ${Math.round(wait.timeoutMs / 1000)} s (state: ${state ?? 'not registered'})${journal.stdout.trim() ? `; its unit's journal ends:\n${tailLines(journal.stdout, 25)}` : ''}`, {
    hint: `Inspect it with: systemctl status systemd-nspawn@${name}.service`,
  });
}

/** Powers a machine off cleanly; terminates it when it does not stop within the timeout. */
export async function stopMachine(host: Host, name: string, wait: WaitOptions): Promise<'stopped' | 'terminated' | 'not-running'> {
  if ((await machineState(host, name)) === undefined) return 'not-running';
  const sleep = wait.sleep ?? defaultSleep;
  await host.runner.run('machinectl', ['poweroff', name], { allowFailure: true });
  const unit = `systemd-nspawn@${name}.service`;
  if (await waitUntilGone(host, name, unit, wait.timeoutMs, wait.intervalMs ?? 500, sleep)) return 'stopped';
  await host.runner.run('machinectl', ['terminate', name], { allowFailure: true });
  if (await waitUntilGone(host, name, unit, 15000, wait.intervalMs ?? 500, sleep)) return 'terminated';
  throw new NspawnctlError(`machine ${name} is still registered after poweroff and terminate`, {
    hint: `Check it with: machinectl status ${name}`,
  });
}

/** Waits until machined no longer knows the machine and its unit is no longer active. */
export async function waitUntilGone(host: Host, name: string, unitName: string, timeoutMs: number, intervalMs = 500, sleep = defaultSleep): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await machineState(host, name)) === undefined) {
      // The unit may still be deactivating after machined dropped the machine.
      const unit = await host.runner.run('systemctl', ['is-active', unitName], { allowFailure: true });
      if (!['active', 'deactivating', 'activating'].includes(unit.stdout.trim())) return true;
    }
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}
