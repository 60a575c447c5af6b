// Runs argv through oclif's own entry point as bin/run.js does (run, then handle on an error),
// with package.json's oclif settings but the commands and hooks of src/ (unit runs do not build).
// This is what exercises -h, `help`, topics, the command_not_found hook and parse errors.
import { Config, Plugin } from '@oclif/core';
import { run } from '@oclif/core/run';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { format } from 'node:util';
import { CommandResult, REPO_ROOT } from '../../helpers/run-command';

const OCLIF_LIB = dirname(require.resolve('@oclif/core'));
const oclifOs = require(join(OCLIF_LIB, 'util', 'os.js')) as { getPlatform: () => Promise<string> };
const oclifHandle = require(join(OCLIF_LIB, 'errors', 'handle.js')) as { handle: (err: Error) => Promise<void>; Exit: { exit: (code?: number) => void } };

/** package.json as the CLI reads it, with commands and hooks pointed at src/. */
export function sourcePjson(): { oclif: Record<string, unknown> } & Record<string, unknown> {
  const pjson = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
  const hooks = Object.fromEntries(Object.entries(pjson.oclif.hooks ?? {}).map(([k, v]) => [k, String(v).replace(/^\.\/dist\//, './src/')]));
  return { ...pjson, oclif: { ...pjson.oclif, hooks, commands: { strategy: 'explicit', target: './test/commands/helpers/src-commands', identifier: 'COMMANDS' } } };
}

/** The CLI's Config over src/ (no oclif.manifest.json, no dist/). */
export async function loadSourceConfig(): Promise<Config> {
  const platform = jest.spyOn(oclifOs, 'getPlatform').mockResolvedValue('linux');
  try {
    const plugin = new Plugin({ root: REPO_ROOT, isRoot: true, pjson: sourcePjson(), ignoreManifest: true } as never);
    await plugin.load();
    return await Config.load({ root: REPO_ROOT, plugins: new Map([[plugin.name, plugin]]) } as never);
  } finally {
    platform.mockRestore();
  }
}

/** `nspawnctl ARGV...`: stdout, stderr and the exit code, as a shell would see them. */
export async function runCli(argv: string[], env: Record<string, string | undefined> = {}): Promise<CommandResult> {
  const config = await loadSourceConfig();
  const out: string[] = [];
  const err: string[] = [];
  const capture = (into: string[]) => (chunk: unknown, ...rest: unknown[]) => {
    into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
    (rest.find((r) => typeof r === 'function') as (() => void) | undefined)?.();
    return true;
  };
  const spies = [
    jest.spyOn(process.stdout, 'write').mockImplementation(capture(out) as never),
    jest.spyOn(process.stderr, 'write').mockImplementation(capture(err) as never),
    jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(`${format(...a)}\n`)),
    jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(`${format(...a)}\n`)),
    jest.spyOn(oclifOs, 'getPlatform').mockResolvedValue('linux'),
  ];
  let exitCode = 0;
  spies.push(jest.spyOn(oclifHandle.Exit, 'exit').mockImplementation((code = 0) => void (exitCode = code)));
  const savedEnv = { ...process.env };
  const exitCodeBefore = process.exitCode;
  Object.assign(process.env, env);
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k];
  let failure: Error | undefined;
  try {
    await run(argv, config);
  } catch (e) {
    failure = e as Error;
    await oclifHandle.handle(failure);
  } finally {
    for (const spy of spies) spy.mockRestore();
    process.env = savedEnv;
    process.exitCode = exitCodeBefore;
  }
  return { exitCode, stdout: out.join(''), stderr: err.join(''), error: failure };
}
