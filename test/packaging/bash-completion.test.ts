// The generated bash completion, run by bash: command words and topics, flags, flag values,
// manifest files, and managed machines' names from their records.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderBashCompletion } from '../../src/packaging/bash-completion';
import { commandDocs } from '../../src/packaging/commands';
import { CLI_MANIFEST, PLUGIN_MANIFEST } from './fixture';

let dir: string;
let script: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nspawnctl-completion-'));
  mkdirSync(join(dir, 'records'));
  writeFileSync(join(dir, 'records', 'alpha.json'), '{}');
  writeFileSync(join(dir, 'records', 'beta.json'), '{}');
  writeFileSync(join(dir, 'records', 'notes.txt'), '');
  mkdirSync(join(dir, 'cwd', 'sub'), { recursive: true });
  for (const f of ['a.yaml', 'b.yml', 'c.txt']) writeFileSync(join(dir, 'cwd', f), '');
  script = join(dir, 'nspawnctl.bash');
  writeFileSync(script, renderBashCompletion({ bin: 'nspawnctl', commands: commandDocs([CLI_MANIFEST, PLUGIN_MANIFEST], 'nspawnctl'), machineRecordsDir: join(dir, 'records'), source: 'a fixture' }));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What bash offers for the command line `line` (the cursor at its end), sorted. */
function complete(line: string, scriptPath = script): string[] {
  const words = ['nspawnctl', ...line.split(' ')];
  const out = execFileSync('bash', ['--norc', '--noprofile', '-c', 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _nspawnctl; printf "%s\\n" "${COMPREPLY[@]}"', 'bash', scriptPath, ...words], {
    cwd: join(dir, 'cwd'),
    encoding: 'utf8',
  });
  return out.split('\n').filter(Boolean).sort();
}

test.each([
  ['', ['--help', '--version', 'apply', 'destroy', 'help', 'host', 'profile']],
  ['h', ['help', 'host']],
  ['host ', ['check', 'init']],
  ['host i', ['init']],
  ['profile ', ['syscalls']],
  ['apply -', ['--dry-run', '--help', '--jobs', '--mode', '--no-wait', '--wait', '-j']],
  ['apply m.yaml --no-', ['--no-wait']],
  ['apply --mode ', ['fast', 'safe']],
  ['apply --jobs ', []],
  ['apply ', ['a.yaml', 'b.yml', 'sub']],
  ['apply a.yaml ', []],
  ['host init --out ', ['sub']],
  ['host init -o sub ', ['a.yaml', 'b.yml', 'sub']],
  ['destroy ', ['alpha', 'beta']],
  ['destroy a', ['alpha']],
  ['destroy alpha ', []],
  ['destroy -f a.yaml ', ['alpha', 'beta']],
  ['destroy -y ', ['alpha', 'beta']],
  ['destroy --manifest ', ['a.yaml', 'b.yml', 'sub']],
  ['profile syscalls ', ['alpha', 'beta']],
  ['profile syscalls alpha -- ', []],
  ['help ', []],
])('nspawnctl %s<TAB>', (line, expected) => {
  expect(complete(line)).toEqual(expected);
});

test('no records directory: no machine names, no error', () => {
  const other = join(dir, 'other.bash');
  writeFileSync(other, renderBashCompletion({ bin: 'nspawnctl', commands: commandDocs([CLI_MANIFEST], 'nspawnctl'), machineRecordsDir: join(dir, 'missing'), source: 'a fixture' }));
  expect(complete('destroy ', other)).toEqual([]);
});

test('the file says it is generated, and registers the function for the binary', () => {
  const text = renderBashCompletion({ bin: 'nspawnctl', commands: [], machineRecordsDir: '/var/lib/nspawnctl/machines', source: 'oclif.manifest.json' });
  expect(text.split('\n')[0]).toBe('# bash completion for nspawnctl(1). Generated from oclif.manifest.json by scripts/package.sh; do not edit.');
  expect(text.trimEnd().split('\n').pop()).toBe('complete -F _nspawnctl nspawnctl');
  expect(execFileSync('bash', ['-n'], { input: text, encoding: 'utf8' })).toBe('');
});
