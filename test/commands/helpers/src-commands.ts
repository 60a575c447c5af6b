// Every command class in src/commands, by oclif id ("host:init"): the commands oclif loads from
// dist/ in the CLI, loaded from src/ in unit runs (which do not build).
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const COMMANDS_DIR = join(__dirname, '..', '..', '..', 'src', 'commands');

function commandFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? commandFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

export const COMMANDS: Record<string, unknown> = Object.fromEntries(
  commandFiles(COMMANDS_DIR)
    .sort()
    .map((file) => [relative(COMMANDS_DIR, file).replace(/\.ts$/, '').split('/').join(':'), (require(file) as { default: unknown }).default]),
);
