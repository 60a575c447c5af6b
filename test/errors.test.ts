// The error texts users see: located manifest problems, failed commands, preflight lists.
import { CommandFailedError, escapeControl, ExitCode, formatArgv, formatProblem, InterruptedError, ManifestError, OwnershipError, PreflightError, tailLines, UnsafePathError } from '../src/errors';

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

describe('output from inside a machine reaches the terminal only with its control characters escaped', () => {
  test('escapeControl: ESC, the C1 CSI, DEL, carriage return, NUL and BEL become visible escapes; newline, tab and text stay', () => {
    expect(escapeControl('\x1b[2J\x1b]0;pwned\x07')).toBe('\\x1b[2J\\x1b]0;pwned\\x07');
    expect(escapeControl('a\u009b31mb')).toBe('a\\u009b31mb');
    expect(escapeControl('x\x7fy\u0085z')).toBe('x\\x7fy\\u0085z');
    expect(escapeControl('50%\rDone\r\n')).toBe('50%\\x0dDone\\x0d\n');
    expect(escapeControl('\0\x08')).toBe('\\x00\\x08');
    expect(escapeControl('line 1\n\tindented, ümlaut, €, 日本\n')).toBe('line 1\n\tindented, ümlaut, €, 日本\n');
    // Every C0 and C1 control but \n and \t, and DEL: 65 - 2 + 1.
    const all = Array.from({ length: 0xa0 }, (_, i) => String.fromCharCode(i)).join('');
    const kept = escapeControl(all).replace(/\\x[0-9a-f]{2}|\\u00[89][0-9a-f]/g, '');
    expect(kept).toBe(`\t\n${Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)).join('')}`);
  });

  test('tailLines escapes what it keeps', () => {
    expect(tailLines('one\n\x1b[31mtwo\n\nthree\x9b\n', 2)).toBe('\\x1b[31mtwo\nthree\\u009b');
  });

  test('a failed command\'s stderr tail is escaped in the message and in stderrTail', () => {
    const err = new CommandFailedError(['apt-get', 'install', 'x'], 100, 'E: broken\n\x1b[2J\x1b[H\rfake prompt$ \n');
    expect(err.message).toBe('command apt-get install x exited with code 100:\n    E: broken\n    \\x1b[2J\\x1b[H\\x0dfake prompt$ ');
    expect(err.stderrTail).toBe('E: broken\n\\x1b[2J\\x1b[H\\x0dfake prompt$ ');
  });
});

test('UnsafePathError names the path, why, and that nspawnctl never follows it; the hint says where to fix it', () => {
  const err = new UnsafePathError('/var/lib/machines/web/etc/systemd', 'is a symlink');
  expect([err.message, err.path, err.exitCode, err.hint]).toEqual([
    "/var/lib/machines/web/etc/systemd is a symlink: nspawnctl will not follow or use it",
    '/var/lib/machines/web/etc/systemd',
    1,
    'Something inside the machine replaced it. Inspect it from inside the machine, remove or fix it there, and apply again.',
  ]);
});
