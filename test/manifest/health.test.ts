// The `health:` key: what it resolves to (defaults merged key by key), and each kind of bad value
// with its exact located message (exit 2).
import { durationSeconds } from '../../src/manifest/health';
import { parseManifest } from '../../src/manifest/load';
import { problems } from '../helpers/manifest-problems';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;


describe('health: resolved', () => {
  test('a machine without health: none', () => {
    expect(parseManifest('machines.yaml', yaml('machines:', '  web: {}')).machines.web.health).toBeUndefined();
  });

  test('only a command: every other key takes its default', () => {
    const m = parseManifest('machines.yaml', yaml('machines:', '  web:', '    health: { command: [curl, -fsS, http://localhost/] }')).machines.web;
    expect(m.health).toEqual({ command: ['curl', '-fsS', 'http://localhost/'], intervalSec: 30, timeoutSec: 5, retries: 3, onFailure: 'none', restartLimit: 3, restartWindowSec: 3600 });
  });

  test('defaults.health and the machine merged key by key; a machine without health: takes the defaults; no command anywhere: no check', () => {
    const manifest = parseManifest(
      'machines.yaml',
      yaml(
        'defaults:',
        '  health: { interval: 10s, onFailure: restart, command: [/bin/true] }',
        'machines:',
        '  web:',
        '    health: { command: [test, -e, /run/ok], retries: 2, restartWindow: 30min }',
        '  db: {}',
      ),
    );
    expect(manifest.machines.web.health).toEqual({ command: ['test', '-e', '/run/ok'], intervalSec: 10, timeoutSec: 5, retries: 2, onFailure: 'restart', restartLimit: 3, restartWindowSec: 1800 });
    expect(manifest.machines.db.health).toEqual({ command: ['/bin/true'], intervalSec: 10, timeoutSec: 5, retries: 3, onFailure: 'restart', restartLimit: 3, restartWindowSec: 3600 });
    // Timing in defaults alone gives no machine a check.
    expect(parseManifest('machines.yaml', yaml('defaults:', '  health: { interval: 1min }', 'machines:', '  web: {}')).machines.web.health).toBeUndefined();
  });

  test.each([
    ['45s', 45],
    ['2m', 120],
    ['5min', 300],
    ['1h', 3600],
  ])('%s is %i s', (text, seconds) => {
    expect(durationSeconds(text)).toBe(seconds);
  });
});

describe('health: bad values, located', () => {
  test('time spans, retries, onFailure, an unknown key', () => {
    expect(
      problems(
        yaml(
          'machines:',
          '  web:',
          '    health:',
          '      command: [curl]',
          '      interval: 30',
          '      timeout: 5 s',
          '      retries: 0',
          '      onFailure: reboot',
          '      restartWindow: 0h',
          '      retry: 3',
        ),
      ),
    ).toEqual([
      'machines.yaml:5:17: machines.web.health.interval: expected a string, got a number',
      'machines.yaml:6:16: machines.web.health.timeout: expected a time span like 30s, 5min or 1h (a whole number and s, m, min or h)',
      'machines.yaml:7:16: machines.web.health.retries: must be at least 1',
      'machines.yaml:8:18: machines.web.health.onFailure: expected one of none, restart, got "reboot"',
      'machines.yaml:9:22: machines.web.health.restartWindow: expected a time span like 30s, 5min or 1h (a whole number and s, m, min or h)',
      'machines.yaml:10:7: machines.web.health.retry: unknown key; expected one of: command, interval, timeout, retries, onFailure, restartLimit, restartWindow',
    ]);
  });

  test('the command: not empty, one line per argument, a program systemd takes as one', () => {
    expect(problems(yaml('machines:', '  web:', '    health: { command: [] }'))).toEqual(['machines.yaml:3:24: machines.web.health.command: a health check command needs at least the program']);
    expect(problems(yaml('machines:', '  web:', '    health: { command: [curl, "a\\nb"] }'))).toEqual(['machines.yaml:3:31: machines.web.health.command[1]: an argument must be one line without control characters']);
    const program = 'the program must be an absolute path (/usr/bin/curl) or a plain name (curl) of letters, digits and _ . + -; for a shell line, write [sh, -c, "..."]';
    for (const bad of ['-curl', '"curl -fsS"', '$HOME/check', '"%h/check"', 'bin/check', '"@curl"', '/usr/bin/', '""']) {
      expect(problems(yaml('machines:', '  web:', `    health: { command: [${bad}] }`))).toEqual([`machines.yaml:3:25: machines.web.health.command[0]: ${program}`]);
    }
    // In defaults too.
    expect(problems(yaml('defaults:', '  health: { command: ["+x"] }', 'machines:', '  web: {}'))).toEqual([`machines.yaml:2:23: defaults.health.command[0]: ${program}`]);
  });

  test('a machine that sets health: without a command, here or in defaults', () => {
    expect(problems(yaml('machines:', '  web:', '    health: { interval: 10s }'))).toEqual(['machines.yaml:3:13: machines.web.health: a health check needs a command (here, or in defaults.health)']);
    expect(() => parseManifest('machines.yaml', yaml('defaults:', '  health: { command: [/bin/true] }', 'machines:', '  web:', '    health: { interval: 10s }'))).not.toThrow();
  });
});
