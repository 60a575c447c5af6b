import { Args, Flags } from '@oclif/core';
import { Audit, auditMachines } from '../apply/audit';
import { BaseCommand, jsonFlag } from '../command-base';
import { NspawnctlError } from '../errors';
import { MACHINE_NAME } from '../manifest/schema';
import { formatTable } from '../plan/format';

/** The exposure above which a hardened service fails the audit: where systemd's MEDIUM begins. */
export const DEFAULT_MAX_EXPOSURE = 5.0;

// Every service of the managed machines by exposure, worst first; fails on a hardened one above the threshold.
export default class AuditCommand extends BaseCommand {
  static override summary = 'Rate every service in the managed machines with systemd-analyze security, worst first.';
  static override description =
    "Runs systemd-analyze security inside each running managed machine (as a service of its own systemd) and lists every service unit it has loaded with its exposure, 0.0 (best) to 10.0, hardened by nspawnctl (services:) or not. Exits 1 when a hardened service is above --max-exposure, or when a named machine, or a hardened service, could not be rated: a CI gate.";
  static override examples = ['<%= config.bin %> audit', '<%= config.bin %> audit web db --max-exposure 3.5', '<%= config.bin %> audit --json'];
  static override usage = '<%= command.id %> [MACHINE...] [FLAGS]';
  static override args = { machines: Args.string({ description: 'managed machines (default: every one that runs)', required: false, multiple: true }) };
  static override flags = {
    'max-exposure': Flags.string({ description: `Fail when a service hardened by nspawnctl is rated above this (0.0 to 10.0; default ${DEFAULT_MAX_EXPOSURE.toFixed(1)}, where systemd's MEDIUM begins).`, default: DEFAULT_MAX_EXPOSURE.toFixed(1) }),
    json: jsonFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(AuditCommand);
    const max = Number(flags['max-exposure']);
    if (!/^\d{1,2}(\.\d+)?$/.test(flags['max-exposure']) || max > 10) throw new NspawnctlError(`--max-exposure takes a score from 0.0 to 10.0, not ${JSON.stringify(flags['max-exposure'])}`, { exitCode: 2 });
    const names = args.machines;
    for (const n of names ?? []) if (!MACHINE_NAME.test(n)) throw new NspawnctlError(`${JSON.stringify(n)} is not a machine name`, { exitCode: 2 });
    const host = this.createHost();
    // It runs systemd-analyze inside the machines, which only root may do.
    this.requireRoot(host, 'audit');
    const audit = await auditMachines(host, names);
    const above = audit.rows.filter((r) => r.hardened && r.exposure > max);
    // A machine named on the command line, or a hardened service, that could not be rated cannot pass.
    const unrated = audit.skipped.filter((s) => s.unit !== undefined || names !== undefined);
    if (flags.json) this.outJson({ maxExposure: max, services: audit.rows, above, skipped: audit.skipped });
    else this.printText(audit, max);
    for (const s of audit.skipped) process.stderr.write(`note: machine ${s.machine}${s.unit ? `, ${s.unit}` : ''}: not rated (${s.why})\n`);
    if (above.length > 0 || unrated.length > 0) {
      const problems = [
        ...above.map((r) => `${r.unit} in ${r.machine}: ${r.exposure.toFixed(1)} ${r.level} is above --max-exposure ${max.toFixed(1)}`),
        ...unrated.map((s) => `${s.unit ?? 'its services'} in ${s.machine}: could not be rated`),
      ];
      throw new NspawnctlError(`audit failed:\n${problems.map((p) => `  - ${p}`).join('\n')}`, {
        hint: above.length > 0 ? 'Harden them further (docs/security.md, "Services inside a machine"); nspawnctl status MACHINE shows what weighs most in each score.' : 'Start the machine (nspawnctl apply), or check the unit: nspawnctl status MACHINE.',
      });
    }
  }

  private printText(audit: Audit, max: number): void {
    if (audit.rows.length === 0) {
      this.out(audit.skipped.length === 0 ? 'No managed machine runs; nothing to rate.' : 'Nothing was rated.');
      return;
    }
    const rows = [['EXPOSURE', 'LEVEL', 'MACHINE', 'SERVICE', 'HARDENED'], ...audit.rows.map((r) => [r.exposure.toFixed(1), r.level, r.machine, r.unit, r.hardened ? 'yes' : '-'])];
    const hardened = audit.rows.filter((r) => r.hardened);
    const machines = new Set(audit.rows.map((r) => r.machine)).size;
    this.out(
      `${formatTable(rows)}\n\n${audit.rows.length} service(s) in ${machines} machine(s), ${hardened.length} hardened by nspawnctl; a hardened one fails above ${max.toFixed(1)} (0.0 is best, 10.0 worst).`,
    );
  }
}
