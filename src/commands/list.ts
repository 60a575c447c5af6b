import { Flags } from '@oclif/core';
import { formatAge } from '../cli/age';
import { BaseCommand, jsonFlag } from '../command-base';
import { fleetFlags, fleetList, refuseFleetFlags } from '../fleet/commands';
import { formatTable } from '../plan/format';
import { inspectMachines, MachineReport } from '../plan/inspect';

/** How long ago `nspawnctl upgrade` last upgraded it; "never", or "-" when its record could not be read. */
function upgradedColumn(r: MachineReport, now: number): string {
  if (!r.record) return '-';
  return r.upgraded ? formatAge(r.upgraded, now) : 'never';
}

// One line per machine nspawnctl manages.
export default class List extends BaseCommand {
  static override summary = 'List the machines nspawnctl manages, with state, address, drift and health.';
  static override examples = ['<%= config.bin %> list', '<%= config.bin %> list --json', '<%= config.bin %> list --manifest machines.yaml', '<%= config.bin %> list --manifest fleet.yaml'];
  static override flags = {
    manifest: Flags.string({ char: 'f', description: 'Compare with this manifest instead of the one each machine was applied from.' }),
    json: jsonFlag,
    ...fleetFlags,
  };

  /** The time ages are counted to (tests fix it). */
  protected now(): number {
    return Date.now();
  }

  async run(): Promise<void> {
    const { flags } = await this.parse(List);
    // A fleet manifest (hosts:): one table over its hosts, each listed by its own nspawnctl.
    const fleet = await this.fleetManifest(flags.manifest);
    if (fleet) {
      const code = await fleetList(this.fleetIo(flags.json), fleet, flags);
      if (code !== 0) this.exit(code);
      return;
    }
    refuseFleetFlags(flags, flags.manifest ?? 'no --manifest');
    const { machines: reports, notices } = await inspectMachines(this.createHost(), this.cwd(), undefined, flags.manifest);
    for (const n of notices) process.stderr.write(`note: ${n}\n`);
    if (flags.json) {
      // Each hardened service with its score; status shows what weighs in it.
      const brief = (r: (typeof reports)[number]) => r.services.map(({ unmet: _unmet, ...s }) => s);
      this.out(JSON.stringify(reports.map(({ record: _record, ...r }) => ({ ...r, upgraded: r.upgraded ?? null, services: brief(r) })), null, 2));
      return;
    }
    if (reports.length === 0) {
      // Unless the records could not be read (the note says so), there are none.
      if (notices.length === 0) this.out('No machines are managed by nspawnctl on this host.');
      return;
    }
    const now = this.now();
    // The HEALTH column appears once some machine has a health check.
    const health = reports.some((r) => r.health);
    const rows = [
      ['MACHINE', 'STATE', 'ADDRESS', 'MANIFEST', 'UPGRADED', ...(health ? ['HEALTH'] : [])],
      ...reports.map((r) => [r.name, r.state, r.address ?? '-', r.sync, upgradedColumn(r, now), ...(health ? [r.health?.state ?? '-'] : [])]),
    ];
    this.out(formatTable(rows));
  }
}
