// When nspawnctl may colour its output: only when stdout is a terminal, and never with NO_COLOR
// (https://no-color.org). bin/run.js applies this before oclif or listr2 is loaded, because each
// colour library decides once, when it is loaded, from the environment.

/**
 * The environment variables to set so that no library colours: NO_COLOR=1 silences listr2's
 * colorette and oclif's ansis, FORCE_COLOR=0 oclif's supports-color (which ignores NO_COLOR,
 * and which all three would otherwise let CI=true or FORCE_COLOR switch on off a terminal).
 * Empty when colour is allowed. An explicit FORCE_COLOR (not 0 or false) keeps colour in a pipe.
 */
export function colorOffEnvironment(env: Record<string, string | undefined>, stdoutIsTTY: boolean): Record<string, string> {
  const off = { NO_COLOR: '1', FORCE_COLOR: '0' };
  if (env.NO_COLOR) return off;
  const forced = env.FORCE_COLOR !== undefined && !['0', 'false'].includes(env.FORCE_COLOR);
  return stdoutIsTTY || forced ? {} : off;
}
