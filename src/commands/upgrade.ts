import { Args, Flags } from '@oclif/core';
import { formatUpgradeReport, selectUpgradeTargets, summarizeUpgradeFailures, UpgradeReport, upgradeMachines } from '../apply/upgrade';
import { BaseCommand, jsonFlag, waitFlag } from '../command-base';
import { NspawnctlError } from '../errors';
import { MACHINE_NAME } from '../manifest/schema';

// Brings the packages of running machines up to date, inside each machine.
export default class Upgrade extends BaseCommand {
  static override summary = 'Upgrade the packages of running machines (apt-get update and full-upgrade inside each).';
  static override description =
    'Runs apt-get update and apt-get full-upgrade inside each running machine (as a transient service of its own systemd), without questions and keeping changed configuration files, up to --jobs machines at a time, while holding the host lock. ' +
    'Prints what changed per machine and names the machines that need a restart (/run/reboot-required inside, or a new libc6, systemd or dbus); --restart restarts those one at a time and waits until each is ready. ' +
    'Without NAME, every managed machine that runs is upgraded, and the others are listed as skipped: stopped, read-only or volatile roots, no network. A machine that fails does not stop the others; upgrade then exits 1 naming it.';
  static override examples = [
    '<%= config.bin %> upgrade --dry-run',
    '<%= config.bin %> upgrade',
    '<%= config.bin %> upgrade web db --restart',
    '<%= config.bin %> upgrade --json --jobs 4',
  ];
  static override args = {
    names: Args.string({ description: 'machines to upgrade (default: every managed machine that runs)', required: false, multiple: true }),
  };
  static override flags = {
    'dry-run': Flags.boolean({ description: 'List the packages that would change, per machine (apt-get --simulate); installs nothing. The package lists inside are still refreshed.', default: false }),
    restart: Flags.boolean({ description: 'Restart the machines that need it after the upgrade, one at a time, each waited for until ready.', default: false }),
    jobs: Flags.integer({ char: 'j', description: 'How many machines to upgrade at the same time.', default: 2, min: 1 }),
    'start-timeout': Flags.integer({ description: 'Seconds a restarted machine may take to be ready.', default: 90, min: 1 }),
    json: jsonFlag,
    wait: waitFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Upgrade);
    const names = args.names;
    for (const n of names ?? []) {
      if (!MACHINE_NAME.test(n)) throw new NspawnctlError(`${JSON.stringify(n)} is not a machine name`, { exitCode: 2, hint: 'nspawnctl list shows the machines nspawnctl manages.' });
    }
    const host = this.createHost();
    // Even a dry run refreshes the package lists inside the machines: root, and the lock.
    this.requireRoot(host, 'upgrade');
    const label = `upgrade${flags['dry-run'] ? ' --dry-run' : ''}${names?.length ? ` ${names.join(' ')}` : ''}`;
    await this.withLock(host, label, flags.wait, async () => {
      const { targets, skipped } = await selectUpgradeTargets(host, names);
      const upgraded = await upgradeMachines(host, targets, {
        dryRun: flags['dry-run'],
        jobs: flags.jobs,
        restart: flags.restart,
        startTimeoutMs: flags['start-timeout'] * 1000,
        renderer: this.progressRenderer(flags.json),
      });
      const report: UpgradeReport = { dryRun: flags['dry-run'], machines: [...upgraded, ...skipped].sort((a, b) => a.name.localeCompare(b.name)) };
      if (flags.json) this.outJson(report);
      else this.out(formatUpgradeReport(report, flags.restart));
      const failed = summarizeUpgradeFailures(report);
      if (failed) throw failed;
    });
  }
}
