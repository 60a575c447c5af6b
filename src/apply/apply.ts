// Runs a plan's steps in order through the Host, showing progress with listr2.
import { Listr, ListrTask } from 'listr2';
import { NspawnctlError } from '../errors';
import { Host } from '../host/host';
import { bridgeNetworkPath } from '../host/paths';
import { serializeRecord } from '../plan/records';
import { describeStep, Plan, Step } from '../plan/steps';
import { createMachine } from './bootstrap';
import { removeOwnedFile, writeEntry } from './files';
import { disableMachine, enableMachine, restartMachine, startMachine } from './machinectl';
import { installPackages } from './packages';

export interface ApplyOptions {
  /** listr2 renderer: 'default' on a TTY, 'simple' for plain lines, 'silent' for --json. */
  renderer: 'default' | 'simple' | 'silent';
  /** How long a machine may take to reach "running". */
  startTimeoutMs: number;
}

export interface ApplyResult {
  done: Step[];
}

/** Executes every step; stops at the first failure (nothing after it runs). */
export async function applyPlan(host: Host, plan: Plan, options: ApplyOptions): Promise<ApplyResult> {
  const done: Step[] = [];
  const tasks: ListrTask[] = plan.steps.map((step) => ({
    title: describeStep(step),
    task: async (_ctx, task) => {
      await runStep(host, step, options, (line) => {
        task.output = line;
      });
      done.push(step);
    },
  }));
  const list = new Listr(tasks, {
    concurrent: false,
    exitOnError: true,
    renderer: options.renderer,
    rendererOptions: { collapseErrors: false, showErrorMessage: false },
  } as never);
  await list.run();
  return { done };
}

/** Carries out one step; every effect goes through `host`. */
export async function runStep(host: Host, step: Step, options: Pick<ApplyOptions, 'startTimeoutMs'>, onLine: (line: string) => void): Promise<void> {
  const wait = { timeoutMs: options.startTimeoutMs };
  try {
    switch (step.kind) {
      case 'create-machine':
        return await createMachine(host, { spec: step.spec, entries: step.entries, record: step.record, onLine });
      case 'write-file':
        await writeEntry(host, step.entry, step.entry.hostPath, step.entry.inRootfs ? rootfsOf(step.entry.hostPath) : undefined);
        return;
      case 'remove-file':
        await removeOwnedFile(host, step.path);
        return;
      case 'write-record':
        await host.fs.writeFile(step.path, serializeRecord(step.record), { mode: 0o644 });
        return;
      case 'install-packages':
        return await installPackages(host, step.machine, step.packages, onLine);
      case 'create-bind-source':
        await host.fs.mkdir(step.path, 0o755);
        return;
      case 'enable-networkd':
        await host.runner.run('systemctl', ['enable', '--now', 'systemd-networkd.socket', 'systemd-networkd.service']);
        return await waitForBridges(host, step.bridges, 15000);
      case 'reload-networkd':
        await host.runner.run('networkctl', ['reload']);
        for (const bridge of step.reconfigure) {
          await host.runner.run('networkctl', ['reconfigure', bridge], { allowFailure: true });
        }
        return await waitForBridges(host, step.bridges, 15000);
      case 'enable-machine':
        return await enableMachine(host, step.machine);
      case 'disable-machine':
        return await disableMachine(host, step.machine);
      case 'start-machine':
        return await startMachine(host, step.machine, wait);
      case 'restart-machine':
        return await restartMachine(host, step.machine, wait);
    }
  } catch (err) {
    if (err instanceof NspawnctlError && ownerName(step) && !err.message.startsWith('machine ')) {
      throw new NspawnctlError(`${ownerName(step)}: ${err.message}`, { hint: err.hint, cause: err, exitCode: err.exitCode });
    }
    throw err;
  }
}

/** Waits until networkd has created the bridges the machines will join. */
export async function waitForBridges(host: Host, bridges: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const bridge of bridges) {
    // Asked of the kernel with ip(8) rather than /sys/class/net, which shows the network
    // namespace sysfs was mounted in (not always ours inside containers).
    while ((await host.runner.run('ip', ['link', 'show', 'dev', bridge], { allowFailure: true })).exitCode !== 0) {
      if (Date.now() > deadline) {
        throw new NspawnctlError(`bridge ${bridge} did not appear within ${timeoutMs / 1000} s after networkd was reloaded`, {
          hint: `Check ${bridgeNetworkPath(bridge)} and: journalctl -u systemd-networkd`,
        });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function rootfsOf(hostPath: string): string {
  const m = /^\/var\/lib\/machines\/[^/]+/.exec(hostPath);
  if (!m) throw new NspawnctlError(`internal: ${hostPath} is not inside a machine`);
  return m[0];
}

function ownerName(step: Step): string | undefined {
  if ('machine' in step) return `machine ${step.machine}`;
  if ('owner' in step) return `${step.owner.type} ${step.owner.name}`;
  return undefined;
}
