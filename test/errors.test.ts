// The error texts users see: located manifest problems, failed commands, preflight lists.
import { CommandFailedError, ExitCode, formatArgv, formatProblem, InterruptedError, ManifestError, OwnershipError, PreflightError } from '../src/errors';

test('exit codes', () => {
  expect(ExitCode).toEqual({ failure: 1, invalidManifest: 2, preflight: 3, conflict: 4, busy: 5, interrupted: 130 });
  expect(new ManifestError([]).exitCode).toBe(2);
  expect(new PreflightError([]).exitCode).toBe(3);
  expect(new OwnershipError('x').exitCode).toBe(4);
  expect(new CommandFailedError(['true'], 1, '').exitCode).toBe(1);
  expect(new InterruptedError().exitCode).toBe(130);
});

test('an interrupt names the command it stopped, if any, and says the next apply continues', () => {
  expect(new InterruptedError().message).toBe('interrupted; the next apply continues from here');
  expect(new InterruptedError(['mmdebstrap', '--variant=minbase', 'bookworm', '/var/lib/machines/.nspawnctl-web.staging']).message).toBe(
    'interrupted while running mmdebstrap --variant=minbase bookworm /var/lib/machines/.nspawnctl-web.staging; the next apply continues from here',
  );
});

test('formatProblem: FILE:LINE:COL: path: message, and no path for whole-file problems', () => {
  expect(formatProblem({ file: 'm.yaml', line: 3, col: 7, path: 'machines.web', message: 'bad' })).toBe('m.yaml:3:7: machines.web: bad');
  expect(formatProblem({ file: 'm.yaml', line: 1, col: 1, path: '', message: 'empty' })).toBe('m.yaml:1:1: empty');
});

test('a failed command names its argv (quoted only where needed), exit code and the last 15 stderr lines', () => {
  const stderr = `${Array.from({ length: 20 }, (_, i) => `line ${i + 1}`).join('\n')}\n\n`;
  const cause = new Error('original');
  const err = new CommandFailedError(['apt-get', 'install', '-y', 'a b', 'x"y'], 100, stderr, cause);
  expect(err.message).toBe(`command apt-get install -y "a b" "x\\"y" exited with code 100:\n${Array.from({ length: 15 }, (_, i) => `    line ${i + 6}`).join('\n')}`);
  expect(err.argv).toEqual(['apt-get', 'install', '-y', 'a b', 'x"y']);
  expect(err.code).toBe(100);
  expect(err.cause).toBe(cause);
  expect(new CommandFailedError(['nope'], undefined, '').message).toBe('command nope could not be run');
  expect(formatArgv(['--include=a,b', 'http://x/y', '@x%+='])).toBe('--include=a,b http://x/y @x%+=');
});

test('a preflight error lists every missing thing and every fix', () => {
  const err = new PreflightError([
    { what: 'a is missing', fix: 'install a' },
    { what: 'b is missing', fix: 'install b' },
  ]);
  expect(err.message).toBe('this host is not ready:\n  - a is missing\n  - b is missing');
  expect(err.hint).toBe('install a\ninstall b');
});
