import { Args } from '@oclif/core';
import { BaseCommand, jsonFlag } from '../command-base';
import { loadManifestFile, planManifest } from '../pipeline';
import { formatPlanText, planToJson } from '../plan/format';
import { describeUnreadable } from '../plan/observe';

// Shows what apply would change, and changes nothing.
export default class Plan extends BaseCommand {
  static override summary = 'Show what apply would do, without changing anything.';
  static override description = 'Compares the manifest with the host and lists, per network and machine, what would be created, updated, restarted or left unchanged.';
  static override examples = ['<%= config.bin %> plan machines.yaml', '<%= config.bin %> plan machines.yaml --json | jq .steps'];
  static override args = { file: Args.string({ description: 'manifest file', required: true }) };
  static override flags = { json: jsonFlag };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Plan);
    const host = this.createHost();
    const { plan, state } = await planManifest(host, await loadManifestFile(host, args.file), this.cwd());
    // As a normal user: what could not be read (each machine behind it is a conflict saying so).
    const unreadable = describeUnreadable(state.unreadable);
    if (unreadable) process.stderr.write(`note: ${unreadable}\n`);
    this.out(flags.json ? JSON.stringify(planToJson(plan), null, 2) : formatPlanText(plan));
  }
}
