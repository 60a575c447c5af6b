// Colour (src/cli/color.ts, applied by bin/run.js before any colour library loads): only on a
// terminal, never with NO_COLOR.
import { spawnSync } from 'node:child_process';
import { colorOffEnvironment } from '../../src/cli/color';

const OFF = { NO_COLOR: '1', FORCE_COLOR: '0' };

test.each([
  // [environment, stdout is a terminal, variables set]
  [{}, true, {}],
  [{}, false, OFF],
  [{ NO_COLOR: '1' }, true, OFF],
  [{ NO_COLOR: 'yes' }, false, OFF],
  // no-color.org: an empty NO_COLOR does not count
  [{ NO_COLOR: '' }, true, {}],
  // CI=true does not colour a pipe (colorette and ansis would)
  [{ CI: 'true', GITHUB_ACTIONS: 'true' }, false, OFF],
  // an explicit FORCE_COLOR keeps colour in a pipe; NO_COLOR still wins
  [{ FORCE_COLOR: '1' }, false, {}],
  [{ FORCE_COLOR: '0' }, false, OFF],
  [{ FORCE_COLOR: 'false' }, false, OFF],
  [{ FORCE_COLOR: '1', NO_COLOR: '1' }, true, OFF],
])('%j, terminal %s -> %j', (env, tty, expected) => {
  expect(colorOffEnvironment(env, tty)).toEqual(expected);
});

// The variables really silence each colour library nspawnctl loads: listr2's colorette, oclif's
// ansis and supports-color, each asked in a fresh process where colour was forced on first.
test('NO_COLOR=1 FORCE_COLOR=0 turns off colorette, ansis and supports-color', () => {
  const probe = "console.log(JSON.stringify([require('colorette').isColorSupported, require('ansis').isSupported(), Boolean(require('supports-color').stdout)]))";
  const ask = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, ['-e', probe], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as boolean[];
  };
  expect(ask({ FORCE_COLOR: '1', CI: 'true', GITHUB_ACTIONS: 'true' })).toEqual([true, true, true]);
  expect(ask({ FORCE_COLOR: '1', CI: 'true', GITHUB_ACTIONS: 'true', ...colorOffEnvironment({ NO_COLOR: '1' }, true) })).toEqual([false, false, false]);
  expect(ask({ CI: 'true', GITHUB_ACTIONS: 'true', ...colorOffEnvironment({ CI: 'true', GITHUB_ACTIONS: 'true' }, false) })).toEqual([false, false, false]);
});
