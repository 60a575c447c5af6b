// The load -> observe -> plan sequence that plan, apply, list and status share.
import { posix } from 'node:path';
import { Host, STDIN_ARG, STDIN_LABEL } from './host/host';
import { readSyscallTable } from './host/syscalls';
import { MAX_MANIFEST_BYTES, parseManifest } from './manifest/load';
import { Manifest } from './manifest/schema';
import { assertCredentialsUsable } from './plan/credentials';
import { assertArchivesExist } from './plan/archives';
import { assertBindSourcesExist } from './plan/binds';
import { assertMachinesFit } from './plan/host-limits';
import { HostState, observeHost, observeHostResolver } from './plan/observe';
import { planChanges } from './plan/plan';
import { Plan } from './plan/steps';
import { DesiredState, renderDesiredState } from './render/desired';

export interface Planned {
  manifest: Manifest;
  desired: DesiredState;
  state: HostState;
  plan: Plan;
}

/**
 * Reads and validates a manifest file (`-`: standard input, located as `<stdin>`); throws
 * ManifestError (exit 2) with every problem.
 */
export async function loadManifestFile(host: Host, file: string): Promise<Manifest> {
  const text = await host.readInput(file, MAX_MANIFEST_BYTES);
  // System call names are checked against the host's systemd, asked only when the file uses them.
  const table = text.includes('systemCallFilter') ? await readSyscallTable(host) : undefined;
  return parseManifest(file === STDIN_ARG ? STDIN_LABEL : file, text, table ? { groups: new Set(table.groups.keys()), names: table.names } : undefined);
}

export interface PlanManifestOptions {
  /**
   * Ask each mirror a new machine is bootstrapped from whether it has the suite (default true;
   * list and status, which only compare, do not go on the network).
   */
  checkArchives?: boolean;
  /**
   * Check that the machines that would run fit under the kernel's limits (default true; list and
   * status, which only compare, do not).
   */
  checkLimits?: boolean;
}

/**
 * Plans the changes that would bring the host to `manifest`. Throws PreflightError (exit 3) first
 * when a credential's file cannot be handed to its machine or a bind mount's source is missing,
 * then when the machines that would run exceed a kernel limit (fs.inotify.max_user_instances),
 * and, when the plan creates machines, ManifestError (exit 2) for a suite their mirror does not
 * have or PreflightError (exit 3) for a mirror that does not answer: plan fails as apply would.
 */
export async function planManifest(host: Host, manifest: Manifest, cwd: string, now = new Date().toISOString(), options: PlanManifestOptions = {}): Promise<Planned> {
  await assertCredentialsUsable(host, manifest);
  await assertBindSourcesExist(host, manifest);
  const dns = await observeHostResolver(host);
  const desired = renderDesiredState(manifest, { resolver: dns.resolver });
  const state: HostState = { ...(await observeHost(host, desired)), dns };
  // Records name the manifest to compare with later (list, status); standard input has no path.
  const manifestPath = manifest.file === STDIN_LABEL ? STDIN_LABEL : posix.resolve(cwd, manifest.file);
  const plan = planChanges(desired, state, { manifestPath, now });
  if (options.checkLimits !== false) await assertMachinesFit(host, plan, state, manifest.file === STDIN_LABEL ? undefined : manifest.file);
  if (options.checkArchives !== false) await assertArchivesExist(host, manifest, plan);
  return { manifest, desired, state, plan };
}
