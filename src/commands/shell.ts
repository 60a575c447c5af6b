import { Args, Flags } from '@oclif/core';
import { checkExecOptions, requireRunningMachine, shellInMachine } from '../apply/exec';
import { BaseCommand } from '../command-base';
import { NspawnctlError } from '../errors';

// An interactive login shell inside a running machine.
export default class Shell extends BaseCommand {
  static override summary = 'Open an interactive login shell inside a running machine.';
  static override description =
    "Runs machinectl shell: machined asks the machine's own systemd to start a login shell on a pseudo-terminal of the machine, and connects it to yours (press ^] three times within a second to leave). " +
    'It needs a terminal; from a script, use nspawnctl exec NAME -- CMD. A machine nspawnctl does not manage, or one that is not running, is refused with exit 1. Needs root.';
  static override examples = ['<%= config.bin %> shell web', '<%= config.bin %> shell db --user postgres'];
  static override args = { name: Args.string({ description: 'a running machine nspawnctl manages', required: true }) };
  static override flags = {
    user: Flags.string({ char: 'u', description: 'Log in as this user of the machine (a name or UID; default root).' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Shell);
    checkExecOptions({ user: flags.user });
    if (!this.onTerminal()) {
      throw new NspawnctlError('a shell needs a terminal, and standard input or output is not one; nothing was run', {
        exitCode: 2,
        hint: `To run a command without a terminal: nspawnctl exec ${args.name} -- CMD [ARGS...]`,
      });
    }
    const host = this.createHost();
    this.requireRoot(host, 'shell');
    await requireRunningMachine(host, args.name);
    const code = await shellInMachine(host, args.name, flags.user);
    if (code !== 0) this.exit(code);
  }

  /** Overridden in tests. */
  protected onTerminal(): boolean {
    return process.stdin.isTTY === true && process.stdout.isTTY === true;
  }
}
