// oclif runs this only when the words typed name no command or topic: it says which command was
// probably meant and exits 2 (a usage error), instead of oclif's bare "command aply not found".
import type { Hook } from '@oclif/core/hooks';
import { ExitError } from '@oclif/core/errors';
import { formatErrorJson, formatErrorText } from '../cli/report';
import { commandNamesOf, unknownCommandError, unknownTopLevelFlagError } from '../cli/suggest';

const hook: Hook<'command_not_found'> = async function ({ id, argv, config }) {
  const err = id.startsWith('-') ? unknownTopLevelFlagError(config.bin, id) : unknownCommandError(config.bin, id.split(':'), commandNamesOf(config));
  process.stderr.write(formatErrorText(err));
  if (argv?.includes('--json')) process.stdout.write(formatErrorJson(err));
  throw new ExitError(err.exitCode);
};

export default hook;
