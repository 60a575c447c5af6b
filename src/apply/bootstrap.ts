// Creates a machine's root filesystem: bootstrap into a hidden staging directory, write the
// generated files, run provision commands, and only then rename it into place.
import { NspawnctlError } from '../errors';
import { findProgram, Host, withRootfs } from '../host/host';
import { machineRecordPath, MACHINES_DIR, rootfsPath, stagingPath } from '../host/paths';
import { RootfsHandle } from '../host/rootfs-handle';
import { fillTemplate } from '../host/templates';
import { Machine } from '../manifest/schema';
import { MachineRecord, RECORD_MODE, serializeRecord } from '../plan/records';
import { DesiredEntry } from '../render/desired';
import { writeRootfsEntry } from './files';
import { copyImage, ImageCache } from './image-cache';
import { shiftOwnership } from './maintenance';
import { removeStaging } from './staging';
import { APT_UNSAFE_IO, chooseUnsafeIo, dropUnsafeIoConfig, syncFilesystem, UnsafeIo, unsafeIoArgs, writeUnsafeIoConfig } from './unsafe-io';

export type Bootstrapper = 'mmdebstrap' | 'debootstrap';

/** Picks the bootstrapper: the one asked for, or mmdebstrap when installed (it is faster). */
export async function chooseBootstrapper(host: Host, wanted: Machine['bootstrapper']): Promise<Bootstrapper | undefined> {
  if (wanted !== 'auto') return (await findProgram(host, wanted)) ? wanted : undefined;
  if (await findProgram(host, 'mmdebstrap')) return 'mmdebstrap';
  if (await findProgram(host, 'debootstrap')) return 'debootstrap';
  return undefined;
}

/**
 * The argv that bootstraps `spec` into `target` (an argument array; nothing goes through a shell).
 * With `unsafeIo`, mmdebstrap's dpkg skips its syncs (debootstrap's gets it from a file: see
 * bootstrapInto); only for a target that is synced and renamed into place afterwards.
 */
export function bootstrapCommand(tool: Bootstrapper, spec: Machine, target: string, unsafeIo?: UnsafeIo): { file: string; args: string[]; env: Record<string, string> } {
  const include = `--include=${spec.packages.join(',')}`;
  const components = spec.distribution === 'ubuntu' ? ['--components=main,universe'] : [];
  if (tool === 'mmdebstrap') {
    return {
      file: 'mmdebstrap',
      args: [
        `--variant=${spec.variant}`,
        include,
        ...components,
        ...(unsafeIo ? unsafeIoArgs(tool, unsafeIo) : []),
        ...(spec.aptProxy ? [`--aptopt=Acquire::http::Proxy "${spec.aptProxy}"`] : []),
        spec.suite,
        target,
        spec.mirror,
      ],
      env: {},
    };
  }
  return {
    file: 'debootstrap',
    args: [...(spec.variant === 'important' ? [] : [`--variant=${spec.variant}`]), include, ...components, spec.suite, target, spec.mirror],
    env: spec.aptProxy ? { http_proxy: spec.aptProxy } : {},
  };
}

/**
 * Bootstraps `spec` into `target`, a directory that is published only by a rename after
 * syncFilesystem: with dpkg's syncs skipped (see unsafe-io.ts), and without the bootstrap's own
 * apt and dpkg options left behind. `target` must not exist, or be an empty directory.
 */
export async function bootstrapInto(host: Host, tool: Bootstrapper, spec: Machine, target: string, onLine?: (line: string) => void): Promise<void> {
  const unsafeIo = await chooseUnsafeIo(host, tool);
  if (tool === 'debootstrap') {
    // Its dpkg runs inside the target and reads its options there: put them in first.
    if (!(await host.fs.stat(target))) await host.fs.mkdir(target, 0o755);
    await withRootfs(host, target, writeUnsafeIoConfig);
  }
  const cmd = bootstrapCommand(tool, spec, target, unsafeIo);
  await host.runner.run(cmd.file, cmd.args, { env: cmd.env, onLine, dieWithParent: true });
  await withRootfs(host, target, async (tree) => {
    await dropAptOptionsOfBootstrap(tree);
    await dropUnsafeIoConfig(tree);
  });
}

export interface CreateMachineInput {
  spec: Machine;
  entries: DesiredEntry[];
  record: MachineRecord;
  onLine?: (line: string) => void;
  /** When set, the base comes from the image cache and extra packages are installed on top. */
  cache?: { images: ImageCache; architecture: () => Promise<string> };
}

/** apt-get install as nspawnctl runs it in a machine: no prompts, no recommends, keep changed conffiles. */
export const APT_INSTALL = ['apt-get', 'install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold'];

/** Runs the whole creation; on any failure the staging directory is removed and nothing is left. */
export async function createMachine(host: Host, input: CreateMachineInput): Promise<void> {
  const { spec } = input;
  const staging = stagingPath(spec.name);
  const rootfs = rootfsPath(spec.name);
  const tool = await buildRootfs(host, input);
  try {
    if (await host.fs.stat(rootfs)) {
      // The record says the machine is ours but its rootfs reappeared half-way; never merge.
      throw new NspawnctlError(`${rootfs} appeared while machine ${spec.name} was being created`);
    }
    // The record goes first: killed between the two, the next plan sees a recorded machine
    // whose rootfs is missing and creates it again, instead of an unowned rootfs.
    const record: MachineRecord = { ...input.record, bootstrap: { ...input.record.bootstrap, bootstrapper: tool } };
    await host.fs.writeFile(machineRecordPath(spec.name), serializeRecord(record), { mode: RECORD_MODE, dirMode: 0o700 });
    await host.fs.rename(staging, rootfs);
  } catch (err) {
    await removeStaging(host, staging).catch(() => undefined);
    throw err;
  }
}

/**
 * Builds the machine's root filesystem in its staging directory (base, packages, files inside,
 * provision) and returns the bootstrapper used; on any failure the staging directory is removed.
 * create-machine renames the result into place; rebuild swaps it with the running one.
 */
export async function buildRootfs(host: Host, input: Omit<CreateMachineInput, 'record'>): Promise<Bootstrapper> {
  const { spec } = input;
  const staging = stagingPath(spec.name);
  const tool = await chooseBootstrapper(host, spec.bootstrapper);
  if (!tool) {
    throw new NspawnctlError(`machine ${spec.name}: no bootstrapper found (${spec.bootstrapper === 'auto' ? 'mmdebstrap or debootstrap' : spec.bootstrapper})`, {
      hint: 'Install one: apt-get install mmdebstrap (or run nspawnctl host init)',
    });
  }
  await host.fs.mkdir(MACHINES_DIR, 0o700);
  // A staging directory left by an interrupted run is never resumed: start clean.
  await removeStaging(host, staging);
  try {
    const extras = spec.packages.filter((p) => !spec.basePackages.includes(p));
    if (input.cache) {
      const base = await input.cache.images.ensure(spec, tool, await input.cache.architecture(), input.onLine);
      input.onLine?.(`copying base image into ${staging}`);
      await copyImage(host, base, staging);
    } else {
      input.onLine?.(`${tool} ${spec.suite} (${spec.packages.length} packages)`);
      await bootstrapInto(host, tool, spec, staging, input.onLine);
    }
    // The staging tree never booted, so it is trusted; it is still written only through its
    // handle, like every root filesystem.
    await withRootfs(host, staging, async (tree) => {
      if (input.cache) {
        // Every copy needs its own identity: an empty machine-id is filled in at first boot.
        await tree.writeFile('/etc/machine-id', '', { mode: 0o444 });
      }
      const writeEntries = async () => {
        for (const entry of input.entries) await writeRootfsEntry(tree, entry);
      };
      await writeEntries();
      if (input.cache && extras.length > 0) {
        input.onLine?.(`installing on top of the base image: ${extras.join(' ')}`);
        await withPolicyRcD(tree, async () => {
          await runInRootfs(host, spec.name, staging, ['apt-get', 'update'], { onLine: input.onLine });
          // The staging directory is synced once before it is renamed (below): dpkg need not sync.
          await runInRootfs(host, spec.name, staging, [...APT_INSTALL, ...APT_UNSAFE_IO, ...extras], { onLine: input.onLine });
          await runInRootfs(host, spec.name, staging, ['apt-get', 'clean'], { onLine: input.onLine });
        });
      }
      if (spec.provision.length > 0) {
        await withPolicyRcD(tree, async () => {
          for (const command of spec.provision) {
            input.onLine?.(`provision: ${command.join(' ')}`);
            await runInRootfs(host, spec.name, staging, command, { onLine: input.onLine });
          }
        });
        // Provision commands may have rewritten generated files; the manifest wins.
        await writeEntries();
      }
    });
    // Nothing above synced what it wrote (a copy, dpkg with unsafe I/O): one syncfs makes the
    // whole tree durable before the caller's rename publishes it.
    await syncFilesystem(host, staging);
    return tool;
  } catch (err) {
    await removeStaging(host, staging).catch(() => undefined);
    throw err;
  }
}

/**
 * Runs a command in a root filesystem that has never booted (a staging directory: trusted, as
 * it holds only what the bootstrapper and the manifest put there), with systemd-nspawn, not
 * booted, on the host's network so apt can download. Never used on a machine that has run:
 * those go through maintenance.ts or in-machine.ts.
 */
export async function runInRootfs(host: Host, name: string, dir: string, command: string[], options: { onLine?: (line: string) => void }): Promise<void> {
  await host.runner.run(
    'systemd-nspawn',
    [
      '--quiet',
      '--register=no',
      '--settings=no',
      '--console=pipe',
      // The host's resolver for downloads (bind-mounted, so the machine's own /etc/resolv.conf,
      // which may name a DNS server reachable only from the bridge, is not changed).
      '--resolv-conf=bind-host',
      '--timezone=off',
      `--machine=${name}`,
      `--directory=${dir}`,
      '--setenv=DEBIAN_FRONTEND=noninteractive',
      '--',
      ...command,
    ],
    { onLine: options.onLine, dieWithParent: true },
  );
}

/**
 * mmdebstrap keeps its --aptopt lines (our proxy) in the rootfs; apt settings inside a machine are
 * the manifest's (aptProxy renders its own file), so the bootstrap's are removed.
 */
async function dropAptOptionsOfBootstrap(tree: RootfsHandle): Promise<void> {
  await tree.removeFile('/etc/apt/apt.conf.d/99mmdebstrap');
}

/** Keeps services from starting while packages are installed into a rootfs that is not booted. */
export async function withPolicyRcD<T>(tree: RootfsHandle, fn: () => Promise<T>): Promise<T> {
  const path = '/usr/sbin/policy-rc.d';
  if (await tree.stat(path)) return fn();
  const top = await tree.top();
  await tree.writeFile(path, fillTemplate('policy-rc.d', {}), { mode: 0o755, uid: top.uid, gid: top.gid });
  try {
    return await fn();
  } finally {
    await tree.removeFile(path);
  }
}

/**
 * Readies a rootfs for ReadOnly=yes: its files are shifted into the machine's UID range once
 * (shiftOwnership), and every mount point is created, owned like the rootfs' top directory
 * (bind mounts of single files are not supported on a read-only root).
 */
export async function prepareReadOnly(host: Host, machine: Machine, shift: 'pick' | number | undefined, mountPoints: string[], timeoutMs: number, onLine?: (line: string) => void): Promise<void> {
  if (shift !== undefined) await shiftOwnership(host, machine, shift, timeoutMs, onLine);
  await withRootfs(host, rootfsPath(machine.name), async (tree) => {
    const top = await tree.top();
    for (const p of mountPoints) {
      if (await tree.stat(p)) continue;
      await tree.mkdir(p, { mode: 0o755, uid: top.uid, gid: top.gid });
    }
  });
}
