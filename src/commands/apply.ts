import { Args, Flags } from '@oclif/core';
import { applyPlan, describeReadiness, summarizeFailures } from '../apply/apply';
import { DEFAULT_CACHE_DIR } from '../apply/image-cache';
import { assertReady } from '../apply/preflight';
import { BaseCommand, jsonFlag, waitFlag } from '../command-base';
import { fleetApply, fleetFlags, fleetPlan, refuseFleetFlags } from '../fleet/commands';
import { ExitCode, NspawnctlError, OwnershipError } from '../errors';
import { loadManifestFile, planManifest } from '../pipeline';
import { formatPlanText, hostConflicts, planToJson, stepToJson } from '../plan/format';
import { describeUnreadable } from '../plan/observe';

// Converges the host to the manifest: the plan, carried out step by step.
export default class Apply extends BaseCommand {
  static override summary = 'Create, update and start machines so the host matches the manifest.';
  static override description = 'Plans like `nspawnctl plan`, checks the host can do it, then carries out the steps while holding the host lock. A second apply of an unchanged manifest does nothing. Machines that are not in the manifest are never touched. When one machine fails, the others are still applied and apply exits 1 with a summary.';
  static override examples = ['<%= config.bin %> apply machines.yaml', '<%= config.bin %> apply machines.yaml --dry-run', '<%= config.bin %> apply machines.yaml --json --no-wait', '<%= config.bin %> apply fleet.yaml --serial 1 --max-fail 1'];
  static override args = { file: Args.string({ description: 'manifest file', required: true }) };
  static override flags = {
    json: jsonFlag,
    wait: waitFlag,
    'dry-run': Flags.boolean({ description: 'Show the plan and stop.', default: false }),
    yes: Flags.boolean({ char: 'y', description: 'Rebuild machines the plan rebuilds without asking (required when stdin is not a terminal).', default: false }),
    'start-timeout': Flags.integer({ description: 'Seconds a machine may take to reach "running".', default: 90, min: 1 }),
    jobs: Flags.integer({ char: 'j', description: 'How many machines to create, configure and start at the same time.', default: 2, min: 1 }),
    'cache-dir': Flags.string({ description: 'Where base images are kept.', default: DEFAULT_CACHE_DIR, env: 'NSPAWNCTL_CACHE_DIR' }),
    'cache-max-age': Flags.integer({ description: 'Days after which a base image is rebootstrapped (security updates).', default: 7, min: 0, env: 'NSPAWNCTL_CACHE_MAX_AGE' }),
    cache: Flags.boolean({ description: 'Copy new machines from a cached base image (--no-cache: bootstrap each one).', default: true, allowNo: true }),
    events: Flags.boolean({ description: 'Write each step\'s start and end as a JSON line on stderr (what a fleet controller shows).', default: false }),
    ...fleetFlags,
    forks: Flags.integer({ description: 'Fleet: how many hosts to apply at the same time.', default: 5, min: 1 }),
    serial: Flags.integer({ description: 'Fleet: apply in rolling batches of this many hosts, one batch after the other.', min: 1 }),
    'max-fail': Flags.integer({ description: 'Fleet: start no new batch once this many hosts failed.', min: 1 }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Apply);
    const host = this.createHost();
    const manifest = await loadManifestFile(host, args.file);
    if (manifest.fleet && !flags['dry-run']) {
      const code = await fleetApply(this.fleetIo(flags.json), manifest, flags);
      if (code !== 0) this.exit(code);
      return;
    }
    if (manifest.fleet) {
      const code = await fleetPlan(this.fleetIo(flags.json), manifest, flags);
      if (code !== 0) this.exit(code);
      return;
    }
    refuseFleetFlags(flags, args.file);
    if (flags['dry-run']) {
      const { plan, state } = await planManifest(host, manifest, this.cwd());
      const unreadable = describeUnreadable(state.unreadable);
      if (unreadable) process.stderr.write(`note: ${unreadable}\n`);
      this.out(flags.json ? JSON.stringify({ ...planToJson(plan), applied: [] }, null, 2) : formatPlanText(plan));
      return;
    }
    // Checked before the host is read: a normal user could not read enough of it to plan.
    this.requireRoot(host, 'apply');
    await this.withLock(host, `apply ${args.file}`, flags.wait, async () => {
      const { plan } = await planManifest(host, manifest, this.cwd());
      // A network's conflict stops everything; a machine's conflict stops only that machine.
      if (plan.steps.length === 0 || hostConflicts(plan).length > 0) {
        if (flags.json) this.outJson({ ...planToJson(plan), applied: [] });
        else process.stderr.write(formatPlanText(plan));
        if (plan.conflicts.length > 0) throw new OwnershipError(`${plan.conflicts.length} conflict(s); nothing was changed`, 'Resolve them (see above), or destroy the machine with --force if it is really yours.');
        return;
      }
      await assertReady(host, plan);
      if (!flags.json) process.stderr.write(formatPlanText(plan));
      const rebuilt = plan.steps.flatMap((st) => (st.kind === 'rebuild-machine' ? [st.machine] : []));
      if (rebuilt.length > 0 && !flags.yes) {
        const what = `the plan rebuilds ${rebuilt.join(', ')} (a fresh root filesystem; the old one is kept for rollback)`;
        if (!process.stdin.isTTY) throw new NspawnctlError(`refusing to apply: ${what}; run apply with --yes (stdin is not a terminal)`, { exitCode: ExitCode.invalidManifest });
        const answer = await this.ask(`${what}. Rebuild? [y/N] `);
        if (!/^y(es)?$/i.test(answer.trim())) throw new NspawnctlError('not confirmed; nothing was changed');
      }
      const result = await applyPlan(host, plan, {
        renderer: this.progressRenderer(flags.json),
        startTimeoutMs: flags['start-timeout'] * 1000,
        jobs: flags.jobs,
        cache: flags.cache ? { dir: flags['cache-dir'], maxAgeMs: flags['cache-max-age'] * 86_400_000 } : undefined,
        machines: manifest.machines,
        onEvent: flags.events ? (e) => process.stderr.write(`${JSON.stringify(e)}\n`) : undefined,
      });
      if (flags.json) {
        const failures = result.failures.map((f) => ({ group: f.group, step: stepToJson(f.step), message: f.error.message }));
        this.outJson({ ...planToJson(plan), applied: result.done.map(stepToJson), failures, skipped: result.skipped, ready: result.ready, health: result.health });
      } else {
        // A degraded machine runs: apply succeeds, and says which of its units failed.
        const degraded = Object.entries(result.ready).filter(([, r]) => r.state === 'degraded');
        this.out([`Applied ${result.done.length} of ${plan.steps.length} step(s).`, ...degraded.map(([name, r]) => describeReadiness(name, r))].join('\n'));
      }
      if (result.failures.length > 0 || plan.conflicts.length > 0) throw summarizeFailures(result, plan.conflicts);
    });
  }
}
