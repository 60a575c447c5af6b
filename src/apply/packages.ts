// Installs packages added to the manifest into an existing machine.
import { Host } from '../host/host';
import { rootfsPath } from '../host/paths';
import { APT_INSTALL, runInRootfs, withPolicyRcD } from './bootstrap';
import { enterMachineArgs, machineLeader } from './machinectl';


/**
 * A running machine gets the packages through nsenter into its mount, PID and user namespaces
 * while keeping the host's network namespace, so apt reaches the mirror even when the machine's
 * own network cannot. A stopped machine gets them through systemd-nspawn on its rootfs.
 */
export async function installPackages(host: Host, name: string, packages: string[], onLine?: (line: string) => void): Promise<void> {
  const leader = await machineLeader(host, name);
  if (leader !== undefined) {
    const enter = await enterMachineArgs(host, leader, { network: false });
    const env = ['env', 'DEBIAN_FRONTEND=noninteractive', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
    await host.runner.run('nsenter', [...enter, '--', ...env, 'apt-get', 'update'], { onLine, dieWithParent: true });
    await host.runner.run('nsenter', [...enter, '--', ...env, ...APT_INSTALL, ...packages], { onLine, dieWithParent: true });
    return;
  }
  const rootfs = rootfsPath(name);
  const shiftedIds = ((await host.fs.stat(rootfs))?.uid ?? 0) !== 0;
  await withPolicyRcD(host, rootfs, async () => {
    await runInRootfs(host, name, rootfs, ['apt-get', 'update'], { onLine, shiftedIds });
    await runInRootfs(host, name, rootfs, [...APT_INSTALL, ...packages], { onLine, shiftedIds });
  });
}
