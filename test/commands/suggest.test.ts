// Did-you-mean (src/cli/suggest.ts): which name a typo most likely meant, and the exact messages.
import { closestName, editDistance, suggestCommand, suggestFlag, unknownCommandError, unknownFlagsError, unknownTopLevelFlagError } from '../../src/cli/suggest';

const NAMES = {
  commands: ['apply', 'autocomplete', 'cache:list', 'cache:prune', 'destroy', 'help', 'host:init', 'init', 'list', 'plan', 'profile:syscalls', 'render', 'status'],
  topics: ['cache', 'host', 'profile'],
};

describe('editDistance', () => {
  test.each([
    ['apply', 'apply', 0],
    ['aply', 'apply', 1],
    ['destory', 'destroy', 1], // two adjacent letters swapped: one edit
    ['dryrun', 'dry-run', 1],
    ['', 'plan', 4],
    ['plan', 'list', 4],
  ])('%s -> %s: %d', (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });
});

describe('closestName', () => {
  const top = ['apply', 'autocomplete', 'cache', 'destroy', 'exec', 'help', 'host', 'init', 'list', 'logs', 'plan', 'profile', 'render', 'shell', 'status'];
  test.each([
    ['aply', 'apply'],
    ['APPLY', 'apply'],
    ['destory', 'destroy'],
    ['stauts', 'status'],
    ['lst', 'list'],
    ['rendr', 'render'],
    // a prefix of exactly one name
    ['stat', 'status'],
    ['auto', 'autocomplete'],
  ])('%s -> %s', (typed, expected) => {
    expect(closestName(typed, top)).toBe(expected);
  });

  test.each([['frobnicate'], ['x'], ['p'], ['']])('%s -> nothing', (typed) => {
    expect(closestName(typed, top)).toBeUndefined();
  });
});

describe('suggestCommand', () => {
  test.each([
    [['aply'], 'aply', 'apply'],
    [['aply', 'machines.yaml'], 'aply', 'apply'],
    [['destory', 'web'], 'destory', 'destroy'],
    [['host', 'inti'], 'host inti', 'host init'],
    [['hots', 'init'], 'hots', 'host init'],
    [['hots'], 'hots', 'host'],
    [['cache', 'lst'], 'cache lst', 'cache list'],
    [['profile', 'syscals', 'web'], 'profile syscals', 'profile syscalls'],
    [['frobnicate'], 'frobnicate', undefined],
    [['host', 'frobnicate'], 'host frobnicate', undefined],
  ])('%j', (words, typed, suggestion) => {
    expect(suggestCommand(words, NAMES)).toEqual(suggestion === undefined ? { typed } : { typed, suggestion });
  });
});

describe('suggestFlag', () => {
  const flags = [{ name: 'dry-run' }, { name: 'json' }, { name: 'wait', allowNo: true }, { name: 'jobs', char: 'j' }];
  test.each([
    ['--dryrun', '--dry-run'],
    ['--dry_run', '--dry-run'],
    ['--dryrun=1', '--dry-run'],
    ['-dry-run', '--dry-run'],
    ['--jsno', '--json'],
    ['--no-wiat', '--no-wait'],
    ['--hlep', '--help'],
  ])('%s -> %s', (typed, expected) => {
    expect(suggestFlag(typed, flags)).toBe(expected);
  });

  test.each([['-x'], ['--frobnicate'], ['--no-json']])('%s -> nothing', (typed) => {
    expect(suggestFlag(typed, flags)).toBeUndefined();
  });
});

describe('messages', () => {
  test('an unknown command, with and without a suggestion; exit code 2', () => {
    const err = unknownCommandError('nspawnctl', ['aply'], NAMES);
    expect([err.message, err.hint, err.exitCode]).toEqual(['unknown command aply; did you mean apply?', 'nspawnctl help lists every command.', 2]);
    expect(unknownCommandError('nspawnctl', ['frobnicate'], NAMES).message).toBe('unknown command frobnicate');
  });

  test('what was typed is quoted and escaped when it is not plain', () => {
    expect(unknownCommandError('nspawnctl', ['a\u001b[2Jply'], NAMES).message).toBe('unknown command "a\\\\x1b[2Jply"');
  });

  test('unknown flags, one or several', () => {
    const flags = [{ name: 'dry-run' }, { name: 'json' }];
    const one = unknownFlagsError('nspawnctl', 'apply', ['--dryrun'], flags);
    expect([one.message, one.hint, one.exitCode]).toEqual(['unknown flag --dryrun for apply; did you mean --dry-run?', 'nspawnctl apply --help lists its flags.', 2]);
    expect(unknownFlagsError('nspawnctl', 'apply', ['--frob'], flags).message).toBe('unknown flag --frob for apply');
    expect(unknownFlagsError('nspawnctl', 'host init', ['--dryrun', '--frob', '--jsno'], flags).message).toBe(
      'unknown flags for host init: --dryrun (did you mean --dry-run?), --frob, --jsno (did you mean --json?)',
    );
  });

  test('without a command id (a command class run outside oclif), the message still reads', () => {
    const err = unknownFlagsError('nspawnctl', '', ['--jsn'], [{ name: 'json' }]);
    expect([err.message, err.hint]).toEqual(['unknown flag --jsn; did you mean --json?', 'nspawnctl --help lists its flags.']);
  });

  test('a flag before any command', () => {
    const err = unknownTopLevelFlagError('nspawnctl', '--verison');
    expect([err.message, err.hint, err.exitCode]).toEqual(['unknown flag --verison; did you mean --version?', 'nspawnctl help lists every command; flags go after the command.', 2]);
    expect(unknownTopLevelFlagError('nspawnctl', '-v').message).toBe('unknown flag -v; did you mean --version?');
    expect(unknownTopLevelFlagError('nspawnctl', '-x').message).toBe('unknown flag -x');
  });
});
