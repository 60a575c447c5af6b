import { Args } from '@oclif/core';
import { posix } from 'node:path';
import { COMPLETION_SHELLS, CompletableCommand, CompletionShell, renderCompletion } from '../cli/completion';
import { BaseCommand } from '../command-base';
import { NspawnctlError } from '../errors';

// Prints a completion script for bash or zsh, made from the commands this nspawnctl has.
export default class Autocomplete extends BaseCommand {
  static override summary = 'Print a bash or zsh completion script: commands, flags and machine names.';
  static override description =
    'Completes commands, topics, flags, and the machines nspawnctl manages (for audit, backup, destroy, exec, logs, rebuild, rollback, shell, status and profile syscalls: the records in /var/lib/nspawnctl/machines, which only root can read). ' +
    'SHELL defaults to the one $SHELL names. Load the script into the running shell with source <(nspawnctl autocomplete bash); for every new bash, save it as ~/.local/share/bash-completion/completions/nspawnctl; for zsh, put the source line in ~/.zshrc.';
  static override examples = [
    'source <(nspawnctl autocomplete bash)',
    '<%= config.bin %> autocomplete bash > ~/.local/share/bash-completion/completions/nspawnctl',
    "echo 'source <(nspawnctl autocomplete zsh)' >> ~/.zshrc",
  ];
  static override args = { shell: Args.string({ description: 'shell to complete in', options: [...COMPLETION_SHELLS], required: false }) };

  async run(): Promise<void> {
    const { args } = await this.parse(Autocomplete);
    const shell = (args.shell ?? this.loginShell()) as CompletionShell;
    const commands = this.config.commands as unknown as CompletableCommand[];
    this.out(renderCompletion(shell, commands, { bin: this.config.bin, version: this.config.version }).trimEnd());
  }

  /** The shell $SHELL names, when it is one this command can complete for. */
  private loginShell(): CompletionShell {
    const name = posix.basename(process.env.SHELL ?? '');
    if ((COMPLETION_SHELLS as readonly string[]).includes(name)) return name as CompletionShell;
    throw new NspawnctlError(`cannot tell which shell to complete for ($SHELL is ${process.env.SHELL ? JSON.stringify(process.env.SHELL) : 'not set'})`, {
      exitCode: 2,
      hint: `name it: ${this.config.bin} autocomplete bash, or ${this.config.bin} autocomplete zsh`,
    });
  }
}
