// `nspawnctl autocomplete`: the scripts it prints, and what they complete when bash runs them
// (words before the cursor in, completions out, as bash's programmable completion would ask).
import './helpers/oclif-listeners';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompletableCommand, renderCompletion } from '../../src/cli/completion';
import { MACHINE_ARGUMENTS, renderMachineNamesFunction } from '../../src/cli/machine-names';
import { loadSourceConfig, runCli } from './helpers/cli';
import { COMMANDS } from './helpers/src-commands';

let dir: string;
let script: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nspawnctl-complete-'));
  const records = join(dir, 'machines');
  require('node:fs').mkdirSync(records);
  // Two machines, a temporary sibling of a record, and names no machine can have.
  for (const f of ['web.json', 'db.json', '.web.json.nspawnctl-1a2b', 'notes.txt', 'Bad.json', '$(touch PWNED).json']) writeFileSync(join(records, f), '{}');
  const config = await loadSourceConfig();
  script = renderCompletion('bash', config.commands as unknown as CompletableCommand[], { bin: 'nspawnctl', version: '0.1.0', machinesDir: records });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What bash completes for the words (the last one is the word under the cursor). */
function complete(words: string[]): string[] {
  const harness = `${script}\nCOMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _nspawnctl; printf '%s\\n' "\${COMPREPLY[@]}"\n`;
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', harness, 'bash', ...words], { cwd: dir, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout.split('\n').filter((l) => l !== '');
}

describe('the bash completion', () => {
  test.each([
    [['nspawnctl', ''], ['apply', 'audit', 'autocomplete', 'backup', 'cache', 'destroy', 'exec', 'help', 'host', 'init', 'list', 'logs', 'plan', 'profile', 'rebuild', 'render', 'restore', 'rollback', 'shell', 'status', 'upgrade']],
    [['nspawnctl', 'a'], ['apply', 'audit', 'autocomplete']],
    [['nspawnctl', 'host', ''], ['init']],
    [['nspawnctl', 'cache', ''], ['list', 'prune']],
    [['nspawnctl', 'profile', ''], ['syscalls']],
    [['nspawnctl', '-'], ['--help', '--version']],
    // machine names: the records, nothing else in their directory
    [['nspawnctl', 'destroy', ''], ['db', 'web']],
    [['nspawnctl', 'destroy', 'w'], ['web']],
    [['nspawnctl', 'status', ''], ['db', 'web']],
    [['nspawnctl', 'backup', ''], ['db', 'web']],
    [['nspawnctl', 'backup', '--to', 'x.tar.zst', 'w'], ['web']],
    [['nspawnctl', 'profile', 'syscalls', ''], ['db', 'web']],
    [['nspawnctl', 'destroy', '--yes', ''], ['db', 'web']],
    [['nspawnctl', 'destroy', '--stop-timeout', '5', ''], ['db', 'web']],
    [['nspawnctl', 'destroy', '--stop-timeout', '=', '5', ''], ['db', 'web']],
    [['nspawnctl', 'status', '-f', 'machines.yaml', 'w'], ['web']],
    // only the first argument is a machine; after "--" comes another program's command line
    [['nspawnctl', 'destroy', 'web', ''], []],
    [['nspawnctl', 'profile', 'syscalls', 'web', '--', ''], []],
    // flags of the command the words name
    [['nspawnctl', 'apply', '--c'], ['--cache', '--cache-dir', '--cache-max-age']],
    [['nspawnctl', 'apply', 'm.yaml', '--no-'], ['--no-cache', '--no-wait']],
    [['nspawnctl', 'host', 'init', '--'], ['--check', '--dry-run', '--force', '--help', '--host', '--hosts-label', '--json', '--no-wait', '--package', '--ssh-option', '--undo', '--wait']],
    [['nspawnctl', 'list', '-'], ['--help', '--host', '--hosts-label', '--json', '--manifest', '--ssh-option', '-f']],
    [['nspawnctl', 'profile', 'syscalls', '--'], ['--duration', '--help', '--install-strace', '--json', '--service']],
    // a flag's value, and files (bash's default when nothing is offered) for FILE arguments
    [['nspawnctl', 'apply', '--jobs', ''], []],
    [['nspawnctl', 'render', 'm.yaml', '--out', '=', ''], []],
    [['nspawnctl', 'plan', ''], []],
    [['nspawnctl', 'init', ''], []],
    // option values
    [['nspawnctl', 'autocomplete', ''], ['bash', 'zsh']],
    [['nspawnctl', 'autocomplete', 'z'], ['zsh']],
    // help COMMAND...: command words only
    [['nspawnctl', 'help', ''], ['apply', 'audit', 'autocomplete', 'backup', 'cache', 'destroy', 'exec', 'help', 'host', 'init', 'list', 'logs', 'plan', 'profile', 'rebuild', 'render', 'restore', 'rollback', 'shell', 'status', 'upgrade']],
    [['nspawnctl', 'help', 'host', ''], ['init']],
    [['nspawnctl', 'help', '-'], []],
  ])('%j -> %j', (words, expected) => {
    expect(complete(words)).toEqual(expected);
  });

  test('a record named like a command substitution is neither offered nor run', () => {
    expect(complete(['nspawnctl', 'destroy', '$'])).toEqual([]);
    expect(existsSync(join(dir, 'PWNED'))).toBe(false);
  });

  test('parses with bash -n, and registers itself for nspawnctl with file names as the fallback', () => {
    const r = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8' });
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(script.trimEnd().endsWith('\ncomplete -o default -F _nspawnctl nspawnctl')).toBe(true);
  });
});

describe('nspawnctl autocomplete', () => {
  test('bash: the script, with a header saying how to load it', async () => {
    const r = await runCli(['autocomplete', 'bash']);
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    expect(r.stdout.split('\n').slice(0, 6)).toEqual([
      '# bash completion for nspawnctl 0.1.0: commands, flags, and the managed machines for audit, backup, destroy, exec, logs, rebuild, rollback, shell, status and profile syscalls.',
      '# Printed by `nspawnctl autocomplete bash`. Load it into this shell with',
      '#   source <(nspawnctl autocomplete bash)',
      '# and into every new one by saving it where bash-completion looks:',
      '#   nspawnctl autocomplete bash > ~/.local/share/bash-completion/completions/nspawnctl',
      '',
    ]);
    expect(r.stdout).toContain(`\n${renderMachineNamesFunction('/var/lib/nspawnctl/machines')}\n`);
    expect(r.stdout).toContain("  for f in '/var/lib/nspawnctl/machines'/*.json; do\n");
    expect(spawnSync('bash', ['-n'], { input: r.stdout }).status).toBe(0);
  });

  test('zsh: the same completion behind zsh\'s bashcompinit', async () => {
    const bash = await runCli(['autocomplete', 'bash']);
    const r = await runCli(['autocomplete', 'zsh']);
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    const [header, body] = [r.stdout.split('\n').slice(0, 7), r.stdout.split('\n').slice(7).join('\n')];
    expect(header).toEqual([
      '# zsh completion for nspawnctl 0.1.0: commands, flags, and the managed machines for audit, backup, destroy, exec, logs, rebuild, rollback, shell, status and profile syscalls.',
      '# Printed by `nspawnctl autocomplete zsh`. Load it from ~/.zshrc with',
      '#   source <(nspawnctl autocomplete zsh)',
      "# It is the bash completion run by zsh's bashcompinit, so both shells complete alike.",
      '(( $+functions[compdef] )) || { autoload -U compinit && compinit }',
      'autoload -U +X bashcompinit && bashcompinit',
      '',
    ]);
    expect(body).toBe(bash.stdout.split('\n').slice(6).join('\n'));
  });

  const hasZsh = spawnSync('zsh', ['-c', 'true']).status === 0;
  (hasZsh ? test : test.skip)('zsh: parses with zsh -n (skipped where zsh is not installed)', async () => {
    const r = await runCli(['autocomplete', 'zsh']);
    const check = spawnSync('zsh', ['-n'], { input: r.stdout, encoding: 'utf8' });
    expect([check.status, check.stderr]).toEqual([0, '']);
  });

  test('without SHELL argument: the shell $SHELL names', async () => {
    const zsh = await runCli(['autocomplete'], { SHELL: '/usr/bin/zsh' });
    expect([zsh.exitCode, zsh.stdout.split('\n')[0]]).toEqual([0, '# zsh completion for nspawnctl 0.1.0: commands, flags, and the managed machines for audit, backup, destroy, exec, logs, rebuild, rollback, shell, status and profile syscalls.']);
    const bash = await runCli(['autocomplete'], { SHELL: '/bin/bash' });
    expect([bash.exitCode, bash.stdout.split('\n')[0]]).toEqual([0, '# bash completion for nspawnctl 0.1.0: commands, flags, and the managed machines for audit, backup, destroy, exec, logs, rebuild, rollback, shell, status and profile syscalls.']);
  });

  test('another shell, or none, is a usage error (exit 2) naming the choices', async () => {
    const fish = await runCli(['autocomplete'], { SHELL: '/usr/bin/fish' });
    expect([fish.exitCode, fish.stdout]).toEqual([2, '']);
    expect(fish.stderr).toBe('nspawnctl: cannot tell which shell to complete for ($SHELL is "/usr/bin/fish")\nhint: name it: nspawnctl autocomplete bash, or nspawnctl autocomplete zsh\n');
    const none = await runCli(['autocomplete'], { SHELL: undefined });
    expect(none.stderr).toBe('nspawnctl: cannot tell which shell to complete for ($SHELL is not set)\nhint: name it: nspawnctl autocomplete bash, or nspawnctl autocomplete zsh\n');
    const named = await runCli(['autocomplete', 'fish']);
    expect(named.exitCode).toBe(2);
    expect(named.stderr).toContain('Expected fish to be one of: bash, zsh');
  });
});

test('every machine argument is a real argument of its command (completion offers machines there)', () => {
  for (const [id, arg] of Object.entries(MACHINE_ARGUMENTS)) {
    const Cmd = COMMANDS[id] as { args: Record<string, unknown> };
    expect([id, Object.keys(Cmd.args)[0]]).toEqual([id, arg]);
  }
});
