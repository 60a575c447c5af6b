// Runs a real oclif command class (subclassed by the test to inject a Host), capturing stdout, stderr and the exit code.
import { Config, Help } from '@oclif/core';
import { dirname, join } from 'node:path';
import { format } from 'node:util';

/** The repository root: oclif reads package.json there to build its Config. */
export const REPO_ROOT = join(__dirname, '..', '..');
/** The working directory the commands see (manifest paths in records are resolved against it). */
export const TEST_CWD = '/srv/conf';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** The error the command ended with, if any (an oclif ExitError for NspawnctlErrors). */
  error?: Error;
}

/** What runCommand needs of a command class: oclif's static run. */
export interface RunnableCommand {
  run(argv?: string[], opts?: string): Promise<unknown>;
}

// oclif 4.14's Config.load asks `getPlatform()`, which does `await import('wsl-utils')` (an ESM-only
// package); Jest cannot run a dynamic import without --experimental-vm-modules. config.js calls it
// through the module's exports object, so a spy there answers 'linux' (what it would return here).
const OCLIF_LIB = dirname(require.resolve('@oclif/core'));
const oclifOs = require(join(OCLIF_LIB, 'util', 'os.js')) as { getPlatform: () => Promise<string> };

// oclif's command.js adds a process.stdout 'error' listener (it ignores EPIPE) each time it is
// loaded, and Jest loads it once per test file in the same worker process: past ten such files,
// Node prints a listener-leak warning on stderr, inside whichever test is capturing stderr then.
// The listeners earlier test files left (their modules are gone) are dropped; the newest stays.
const epipeListeners = process.stdout.listeners('error').filter((l) => String(l).includes('EPIPE'));
for (const l of epipeListeners.slice(0, -1)) process.stdout.off('error', l as (err: Error) => void);

/** Runs `Cmd` with `argv`; never throws for a command failure, it returns the exit code instead. */
export async function runCommand(Cmd: RunnableCommand, argv: string[]): Promise<CommandResult> {
  const out: string[] = [];
  const err: string[] = [];
  const capture = (into: string[]) => (chunk: unknown, ...rest: unknown[]) => {
    into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
    const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    cb?.();
    return true;
  };
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(capture(out) as never);
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(capture(err) as never);
  // oclif's own output (help, warnings) goes through console.log / console.error.
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(`${format(...a)}\n`));
  const error = jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(`${format(...a)}\n`));
  const platform = jest.spyOn(oclifOs, 'getPlatform').mockResolvedValue('linux');
  const exitCodeBefore = process.exitCode;
  let exitCode = 0;
  let failure: Error | undefined;
  try {
    await Cmd.run(argv, REPO_ROOT);
  } catch (e) {
    failure = e as Error;
    const oclif = (e as { oclif?: { exit?: number } }).oclif;
    exitCode = oclif?.exit ?? 1;
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
    platform.mockRestore();
    log.mockRestore();
    error.mockRestore();
    process.exitCode = exitCodeBefore;
  }
  return { exitCode, stdout: out.join(''), stderr: err.join(''), error: failure };
}

/**
 * The text `nspawnctl ID --help` prints, made by oclif's Help from the command class in src/
 * (the CLI itself loads the compiled class from dist/, which a unit run does not build).
 */
export async function commandHelp(Cmd: object, id: string): Promise<string> {
  const platform = jest.spyOn(oclifOs, 'getPlatform').mockResolvedValue('linux');
  const out: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(`${format(...a)}\n`));
  try {
    const config = await Config.load(REPO_ROOT);
    const { cacheCommand } = require(join(OCLIF_LIB, 'util', 'cache-command.js')) as { cacheCommand: (cmd: object) => Promise<Record<string, unknown>> };
    const cached = await cacheCommand(Cmd);
    await new Help(config, { stripAnsi: true }).showCommandHelp({ ...cached, id, load: async () => Cmd } as never);
  } finally {
    platform.mockRestore();
    log.mockRestore();
  }
  return out.join('');
}
