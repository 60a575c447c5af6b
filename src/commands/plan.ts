import { Args } from '@oclif/core';
import { BaseCommand, jsonFlag } from '../command-base';
import { fleetFlags, fleetPlan, refuseFleetFlags } from '../fleet/commands';
import { loadManifestFile, planManifest } from '../pipeline';
import { formatPlanText, planToJson } from '../plan/format';
import { describeUnreadable } from '../plan/observe';
import { estimatePlannedServices, formatServiceEstimates } from '../plan/service-report';

// Shows what apply would change, and changes nothing.
export default class Plan extends BaseCommand {
  static override summary = 'Show what apply would do, without changing anything.';
  static override description = 'Compares the manifest with the host and lists, per network and machine, what would be created, updated, restarted or left unchanged.';
  static override examples = ['<%= config.bin %> plan machines.yaml', '<%= config.bin %> plan machines.yaml --json | jq .steps', '<%= config.bin %> plan fleet.yaml --host alpha'];
  static override args = { file: Args.string({ description: 'manifest file', required: true }) };
  static override flags = { json: jsonFlag, ...fleetFlags };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Plan);
    const host = this.createHost();
    const manifest = await loadManifestFile(host, args.file);
    if (manifest.fleet) {
      const code = await fleetPlan(this.fleetIo(flags.json), manifest, flags);
      if (code !== 0) this.exit(code);
      return;
    }
    refuseFleetFlags(flags, args.file);
    const { plan, state, desired } = await planManifest(host, manifest, this.cwd());
    // As a normal user: what could not be read (each machine behind it is a conflict saying so).
    const unreadable = describeUnreadable(state.unreadable);
    if (unreadable) process.stderr.write(`note: ${unreadable}\n`);
    // Services whose hardening changes: their score before and after, estimated inside their machines.
    const services = await estimatePlannedServices(host, plan, desired, state);
    for (const n of services.notices) process.stderr.write(`note: ${n}\n`);
    if (flags.json) this.out(JSON.stringify({ ...planToJson(plan), ...(services.estimates.length ? { exposure: services.estimates } : {}) }, null, 2));
    else this.out(`${formatPlanText(plan)}${formatServiceEstimates(services.estimates)}`);
  }
}
