import { Args, Flags } from '@oclif/core';
import { imageCacheFor } from '../apply/apply';
import { DEFAULT_CACHE_DIR } from '../apply/image-cache';
import { rebuildMachine, SwapReport } from '../apply/rebuild';
import { BaseCommand, jsonFlag, waitFlag } from '../command-base';
import { ExitCode, NspawnctlError } from '../errors';
import { STDIN_LABEL } from '../host/host';
import { MACHINE_NAME } from '../manifest/schema';
import { loadManifestFile, planManifest } from '../pipeline';
import { readMachineRecord } from '../plan/observe';
import { newMachineRecord } from '../plan/plan';
import { changesBlockingRebuild } from '../plan/rebuild';

/** One line on how long the machine was down, for rebuild and rollback. */
export function describeSwap(verb: string, r: SwapReport): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const down = r.wasRunning ? `downtime ${s(r.downtimeMs)} (stop ${s(r.stopMs)}, start until ready ${s(r.startMs)})` : `it was stopped; started and ready in ${s(r.startMs)}`;
  const degraded = r.readiness.state === 'degraded' ? `; running but degraded, failed units: ${r.readiness.failedUnits.join(', ') || '(none listed)'}` : '';
  return `${verb} ${r.machine}: ${down}${degraded}. The replaced root filesystem is kept at ${r.previous} (nspawnctl rollback ${r.machine} swaps it back).`;
}

// Replaces a machine's root filesystem with a fresh one built from the manifest, keeping the old one.
export default class Rebuild extends BaseCommand {
  static override summary = 'Rebuild a machine\'s root filesystem from the manifest, keeping the old one for rollback.';
  static override description =
    'Builds a fresh root filesystem in staging (base image, packages, files, provision), then stops the machine, swaps the directories and starts it: one stop, one start, and the downtime is printed. The old root filesystem is kept as /var/lib/machines/.nspawnctl-NAME.previous (replacing an earlier one) until the next rebuild; nspawnctl rollback swaps it back. Bind mounts are not touched. When the new root filesystem does not reach readiness, the old one is swapped back and started, and rebuild exits 1 naming why. The manifest is the one the machine was applied from, or --manifest.';
  static override examples = ['<%= config.bin %> rebuild web --yes', '<%= config.bin %> rebuild web -f machines.yaml --yes'];
  static override args = { name: Args.string({ description: 'machine name', required: true }) };
  static override flags = {
    manifest: Flags.string({ char: 'f', description: 'Build from this manifest instead of the one the machine was applied from.' }),
    yes: Flags.boolean({ char: 'y', description: 'Do not ask for confirmation (required when stdin is not a terminal).', default: false }),
    'start-timeout': Flags.integer({ description: 'Seconds the machine may take to stop, and to become ready after its start.', default: 90, min: 1 }),
    'cache-dir': Flags.string({ description: 'Where base images are kept.', default: DEFAULT_CACHE_DIR, env: 'NSPAWNCTL_CACHE_DIR' }),
    'cache-max-age': Flags.integer({ description: 'Days after which a base image is rebootstrapped (security updates).', default: 7, min: 0, env: 'NSPAWNCTL_CACHE_MAX_AGE' }),
    cache: Flags.boolean({ description: 'Copy the base from a cached image (--no-cache: bootstrap it).', default: true, allowNo: true }),
    json: jsonFlag,
    wait: waitFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Rebuild);
    const name = args.name;
    if (!MACHINE_NAME.test(name)) throw new NspawnctlError(`"${name}" is not a machine name nspawnctl could have created (1-12 characters of a-z, 0-9 and -)`, { exitCode: ExitCode.invalidManifest });
    const host = this.createHost();
    this.requireRoot(host, 'rebuild');
    const { record, recordError } = await readMachineRecord(host, name);
    if (recordError) throw new NspawnctlError(recordError);
    if (!record) throw new NspawnctlError(`no machine named ${name} is managed by nspawnctl`, { hint: 'nspawnctl list shows the machines nspawnctl manages; apply creates them.' });
    const file = flags.manifest ?? record.manifest;
    if (file === STDIN_LABEL) throw new NspawnctlError(`machine ${name} was applied from standard input; name its manifest with --manifest FILE`, { exitCode: ExitCode.invalidManifest });
    const manifest = await loadManifestFile(host, file);
    const spec = manifest.machines[name];
    if (!spec) throw new NspawnctlError(`machine ${name} is not in ${file}`, { exitCode: ExitCode.invalidManifest, hint: 'Rebuild builds from the manifest: name one that has it with --manifest FILE.' });
    if (!flags.yes) {
      if (!process.stdin.isTTY) throw new NspawnctlError(`refusing to rebuild ${name} without --yes (stdin is not a terminal)`, { exitCode: ExitCode.invalidManifest });
      const answer = await this.ask(`Rebuild machine ${name} (it restarts; its current root filesystem becomes the previous one)? Type its name to confirm: `);
      if (answer.trim() !== name) throw new NspawnctlError('not confirmed; nothing was changed');
    }
    const report = await this.withLock(host, `rebuild ${name}`, flags.wait, async () => {
      const { plan, desired } = await planManifest(host, manifest, this.cwd());
      const blocking = changesBlockingRebuild(plan, name);
      if (blocking.length > 0) {
        throw new NspawnctlError(`machine ${name}: the manifest has changes that rebuild does not make (it replaces the root filesystem only):\n${blocking.map((l) => `  - ${l}`).join('\n')}`, {
          hint: `Apply them first: nspawnctl apply ${file}`,
        });
      }
      const m = desired.machines.find((d) => d.machine.name === name)!;
      return rebuildMachine(host, {
        spec,
        entries: m.rootfsEntries,
        record: newMachineRecord(m, plan.manifest, record.created),
        timeoutMs: flags['start-timeout'] * 1000,
        cache: flags.cache ? imageCacheFor(host, { dir: flags['cache-dir'], maxAgeMs: flags['cache-max-age'] * 86_400_000 }) : undefined,
        onLine: flags.json ? undefined : (line) => process.stderr.write(`${line}\n`),
      });
    });
    if (flags.json) this.outJson(report);
    else this.out(describeSwap('Rebuilt', report));
  }
}
