// A health check's command goes into a unit file inside the machine: each argument must come back
// from systemd exactly as the manifest wrote it.
import { parseManifest } from '../../src/manifest/load';
import { healthStartLimitSeconds, quoteExecArgument, renderHealthDropIn, renderHealthEntries } from '../../src/render/health';

describe('quoteExecArgument', () => {
  // These arguments were checked on systemd 252 (Debian 12): a oneshot with ExecStart="/usr/bin/printf"
  // "<%%s>\\n" followed by each of them, quoted like this, printed every one unchanged.
  test.each([
    ['plain', '"plain"'],
    ['a b', '"a b"'],
    ['say "hi"', '"say \\"hi\\""'],
    ['a\\b', '"a\\\\b"'],
    ['100%', '"100%%"'],
    ['%h', '"%%h"'],
    ['$HOME ${X} $$', '"$$HOME $${X} $$$$"'],
    [';', '";"'],
    ['', '""'],
    ['#x;y=z', '"#x;y=z"'],
    ["'q'", '"\'q\'"'],
  ])('%j -> %s', (arg, quoted) => {
    expect(quoteExecArgument(arg)).toBe(quoted);
  });
});

describe('renderHealthEntries and renderHealthDropIn', () => {
  const load = (health: string) => parseManifest('machines.yaml', `machines:\n  web:\n    health: ${health}\n`).machines.web;

  test('no check: no file inside, no drop-in', () => {
    const m = parseManifest('machines.yaml', 'machines:\n  web: {}\n').machines.web;
    expect([renderHealthEntries(m, '# h'), renderHealthDropIn(m, 'machines.yaml')]).toEqual([[], undefined]);
  });

  test('the service: a oneshot retried every interval, `retries` runs within its start limit, reset by a passing run', () => {
    const [service, timer, link] = renderHealthEntries(load('{ command: [curl, -f, "http://x/"], interval: 20s, timeout: 3s, retries: 4 }'), '# h');
    expect(service).toEqual({
      kind: 'file',
      path: '/etc/systemd/system/nspawnctl-health.service',
      mode: 0o644,
      restart: false,
      content: [
        '# h',
        '[Unit]',
        'Description=nspawnctl health check of machine web',
        'StartLimitIntervalSec=115s',
        'StartLimitBurst=4',
        '',
        '[Service]',
        'Type=oneshot',
        'ExecStart="curl" "-f" "http://x/"',
        'ExecStartPost=systemctl reset-failed nspawnctl-health.service',
        'TimeoutStartSec=3s',
        'Restart=on-failure',
        'RestartSec=20s',
        '',
      ].join('\n'),
    });
    expect(timer.kind === 'file' && timer.content.split('\n').slice(1)).toEqual(['[Unit]', 'Description=nspawnctl health check of machine web, every 20 s', '', '[Timer]', 'OnActiveSec=20s', 'OnUnitInactiveSec=20s', 'AccuracySec=1s', '', '[Install]', 'WantedBy=timers.target', '']);
    expect(link).toEqual({ kind: 'symlink', path: '/etc/systemd/system/timers.target.wants/nspawnctl-health.timer', target: '/etc/systemd/system/nspawnctl-health.timer', restart: false });
  });

  test('the start limit window holds a whole streak of failed runs: retries + 1 runs of interval + timeout', () => {
    const m = load('{ command: [x], interval: 2s, timeout: 2s, retries: 1 }');
    expect(healthStartLimitSeconds(m.health!)).toBe(8);
  });

  test('onFailure: restart: StartLimitAction=reboot inside, and the host unit may start restartLimit + 1 times within restartWindow', () => {
    const m = load('{ command: [x], onFailure: restart, restartLimit: 5, restartWindow: 2h }');
    expect(renderHealthEntries(m, '# h')[0]).toEqual(expect.objectContaining({ content: expect.stringContaining('\nStartLimitAction=reboot\n') }));
    expect(renderHealthDropIn(m, 'machines.yaml')?.split('\n').slice(3)).toEqual(['[Unit]', 'StartLimitIntervalSec=7200s', 'StartLimitBurst=6', '']);
    expect(renderHealthDropIn(load('{ command: [x] }'), 'machines.yaml')).toBeUndefined();
  });
});
