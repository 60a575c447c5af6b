import { Args, loadHelpClass } from '@oclif/core';
import { commandNamesOf, unknownCommandError } from '../cli/suggest';
import { BaseCommand } from '../command-base';

// `nspawnctl help [COMMAND]`: the same text as `nspawnctl [COMMAND] --help` (or -h).
export default class HelpCommand extends BaseCommand {
  static override summary = 'Show the commands, or the usage, flags and examples of one command.';
  static override description = 'The same text as COMMAND --help or COMMAND -h. Without COMMAND, the list of commands. COMMAND may be a topic (host, cache, profile) or a command in it (host init).';
  static override examples = ['<%= config.bin %> help', '<%= config.bin %> help apply', '<%= config.bin %> help host init'];
  static override strict = false;
  static override args = { command: Args.string({ description: 'command or topic, its words separated by spaces', required: false }) };

  async run(): Promise<void> {
    const { argv } = await this.parse(HelpCommand);
    const words = argv as string[];
    const id = words.join(':');
    if (words.length > 0 && !this.config.findCommand(id) && !this.config.findTopic(id)) {
      throw unknownCommandError(this.config.bin, words, commandNamesOf(this.config));
    }
    const Help = await loadHelpClass(this.config);
    await new Help(this.config, this.config.pjson.oclif.helpOptions ?? this.config.pjson.helpOptions).showHelp(words);
  }
}
