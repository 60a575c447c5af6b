import { Args, Flags } from '@oclif/core';
import { randomBytes } from 'node:crypto';
import { checkLogsOptions, machineLogs, requireRunningMachine } from '../apply/exec';
import { BaseCommand } from '../command-base';
import { ExitCode } from '../errors';

// A running machine's journal, read by the machine's own journalctl.
export default class Logs extends BaseCommand {
  static override summary = "Show a running machine's journal (-f to follow it).";
  static override description =
    "Runs the machine's own journalctl inside it, as a transient service of its systemd, never the host's journalctl on the machine's journal files. " +
    'What it prints comes from the machine: control characters other than newline and tab are shown escaped (\\x1b), so nothing in a log can drive your terminal. ' +
    'A machine nspawnctl does not manage, or one that is not running, is refused with exit 1. Needs root.';
  static override examples = ['<%= config.bin %> logs web -n 50', '<%= config.bin %> logs web -f -u nginx.service', '<%= config.bin %> logs db --since "-1h"'];
  static override args = { name: Args.string({ description: 'a running machine nspawnctl manages', required: true }) };
  static override flags = {
    follow: Flags.boolean({ char: 'f', description: 'Keep showing new entries until Ctrl-C.', default: false }),
    lines: Flags.integer({ char: 'n', description: 'Show the last N entries (default: all; 10 with --follow).', min: 0, helpValue: 'N' }),
    since: Flags.string({ description: 'Entries since this time ("2025-01-31 12:00", yesterday, "-1h").', helpValue: 'TIME' }),
    unit: Flags.string({ char: 'u', description: 'Only the entries of this unit of the machine (nginx.service, or a glob).', helpValue: 'UNIT' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Logs);
    const options = { follow: flags.follow, lines: flags.lines, since: flags.since, matchUnit: flags.unit };
    checkLogsOptions(options);
    const host = this.createHost();
    this.requireRoot(host, 'logs');
    await requireRunningMachine(host, args.name);
    const unit = `nspawnctl-logs-${host.pid}-${randomBytes(4).toString('hex')}.service`;
    const code = await machineLogs(host, args.name, { ...options, unit }, (text, stream) => (stream === 'stdout' ? process.stdout : process.stderr).write(text));
    // Ctrl-C is how --follow ends; like every interrupt, it does not end in exit 0.
    if (host.signal?.aborted) this.exit(ExitCode.interrupted);
    if (code !== 0) this.exit(code);
  }
}
