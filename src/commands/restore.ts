import { Args, Flags } from '@oclif/core';
import { assertNameFree, planRestore, restoreMachine } from '../apply/restore';
import { BaseCommand, jsonFlag, waitFlag } from '../command-base';

// A machine back from a backup archive, checked before anything is written.
export default class Restore extends BaseCommand {
  static override summary = 'Recreate a machine from a backup archive, after checking it.';
  static override description =
    'Checks the archive first: the sha256 its trailer carries, then every member (no absolute name or "..", nothing through a symlink of the archive, hard links only inside it, no device node but the harmless ones in /dev, nothing but nspawnctl-backup.json and rootfs/), then its metadata. Then it extracts the tree into the machine\'s staging directory, writes its record and settings, and renames it into place; a machine of that name is never replaced. Under its own name the machine is enabled and started as it was; with --as it is left stopped, since it has the original\'s address, and belongs to no manifest until one names it.';
  static override examples = ['<%= config.bin %> restore web-20261129T230512Z.tar.zst', '<%= config.bin %> restore web.tar.zst --as web2', '<%= config.bin %> restore web.tar.zst --dry-run --json'];
  static override args = { file: Args.string({ description: 'archive written by nspawnctl backup', required: true }) };
  static override flags = {
    as: Flags.string({ description: 'Restore it under this name (a copy: left stopped, hostname renamed, a new machine-id).' }),
    start: Flags.boolean({ description: 'Start it when it was running at backup time (--no-start: leave it stopped).', default: true, allowNo: true }),
    enable: Flags.boolean({ description: 'Enable it at boot when it was enabled at backup time (--no-enable: leave it disabled).', default: true, allowNo: true }),
    'dry-run': Flags.boolean({ description: 'Check the archive and say what would be restored; change nothing.', default: false }),
    'start-timeout': Flags.integer({ description: 'Seconds the machine may take to be ready.', default: 90, min: 1 }),
    json: jsonFlag,
    wait: waitFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Restore);
    const host = this.createHost();
    if (!flags['dry-run']) this.requireRoot(host, 'restore');
    const options = { as: flags.as, noStart: !flags.start, noEnable: !flags.enable, dryRun: flags['dry-run'], renderer: this.progressRenderer(flags.json), startTimeoutMs: flags['start-timeout'] * 1000 };
    const plan = await planRestore(host, args.file, options);
    try {
      if (flags['dry-run']) {
        const { meta } = plan.archive;
        if (flags.json) this.outJson({ machine: plan.machine, from: plan.from, file: plan.file.path, sha256: plan.archive.sha256, members: plan.archive.members, created: meta.created, nspawnctl: meta.nspawnctl, consistency: meta.consistency, start: plan.start, enable: plan.enable, record: plan.record, settings: plan.settings });
        else this.out(plan.lines.join('\n'));
        return;
      }
      if (!flags.json) process.stderr.write(`${plan.lines.join('\n')}\n`);
      const report = await this.withLock(host, `restore ${args.file}`, flags.wait, async () => {
        await assertNameFree(host, plan);
        return restoreMachine(host, plan, options);
      });
      if (flags.json) this.outJson(report);
      else this.out(`Restored ${report.machine}${report.from !== report.machine ? ` (a copy of ${report.from})` : ''} from ${report.file} (${report.members} members, sha256 ${report.sha256}); ${report.started ? 'it is running' : 'it is stopped'}${report.address ? ` with address ${report.address}` : ''}.`);
    } finally {
      await plan.file.close();
    }
  }
}
