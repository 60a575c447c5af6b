import { Args, Flags } from '@oclif/core';
import { backupMachine, describeBackup, planBackup } from '../apply/backup';
import { defaultArchiveName } from '../apply/backup-format';
import { BaseCommand, jsonFlag, waitFlag } from '../command-base';

// One machine into one archive: tree, settings, record; a running one from a snapshot or a short stop.
export default class Backup extends BaseCommand {
  static override summary = 'Write a machine (root filesystem, settings, record) into one .tar.zst archive.';
  static override description =
    'Archives the root filesystem with owners, modes, ACLs, extended attributes and file capabilities (numeric IDs), the machine\'s .nspawn file and drop-ins, and its record, with a sha256 that restore checks. A running machine is read from a read-only btrfs snapshot where its root filesystem is a btrfs subvolume, otherwise it is stopped for the copy and started again; backup says which before it starts, and prints the downtime. The archive is written beside FILE under a hidden name, checked as restore would check it, and only then renamed to FILE.';
  static override examples = ['<%= config.bin %> backup web', '<%= config.bin %> backup web --to /srv/backups/web.tar.zst', '<%= config.bin %> backup web --dry-run'];
  static override args = { name: Args.string({ description: 'machine name', required: true }) };
  static override flags = {
    to: Flags.string({ description: 'The archive to write (default: NAME-<UTC time>.tar.zst in the working directory).' }),
    force: Flags.boolean({ description: 'Replace FILE when it exists.', default: false }),
    'dry-run': Flags.boolean({ description: 'Say how the machine would be read (snapshot, short stop, as it is) and stop.', default: false }),
    'stop-timeout': Flags.integer({ description: 'Seconds to wait for a clean poweroff before terminating (when it is stopped for the copy).', default: 30, min: 1 }),
    'start-timeout': Flags.integer({ description: 'Seconds the machine may take to be ready again after the copy.', default: 90, min: 1 }),
    json: jsonFlag,
    wait: waitFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Backup);
    const host = this.createHost();
    this.requireRoot(host, 'backup');
    const to = flags.to ?? defaultArchiveName(args.name, new Date());
    const say = (text: string) => (flags.json ? undefined : process.stderr.write(`${text}\n`));
    if (flags['dry-run']) {
      const plan = await planBackup(host, args.name);
      if (flags.json) this.outJson({ machine: plan.machine, file: to, method: plan.method, running: plan.running, description: plan.description });
      else this.out(`backup of ${plan.machine} to ${to}:\n  ${plan.description}`);
      return;
    }
    const report = await this.withLock(host, `backup ${args.name}`, flags.wait, async () => {
      const plan = await planBackup(host, args.name);
      say(`backup of ${plan.machine} to ${to}:\n  ${plan.description}`);
      return backupMachine(host, plan, {
        to,
        replace: flags.force,
        stopTimeoutMs: flags['stop-timeout'] * 1000,
        startTimeoutMs: flags['start-timeout'] * 1000,
        renderer: this.progressRenderer(flags.json),
        version: this.config.version,
      });
    });
    if (flags.json) this.outJson(report);
    else this.out(describeBackup(report));
  }
}
