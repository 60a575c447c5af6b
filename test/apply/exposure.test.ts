// Exposure scores: systemd-analyze security's output parsed strictly (it comes from inside a
// machine), from real output of systemd 252 in a Debian 12 machine, and from hostile output; and
// the commands that ask for it, run as services of the machine's own systemd.
import { estimateExposure, listServiceExposures, parseSecurityDetail, parseSecurityTable, readServiceExposure } from '../../src/apply/exposure';
import { FakeHost } from '../helpers/fake-host';
import { inMachineArgv } from '../helpers/simulated-systemd';

// Lines of `systemd-analyze security nginx.service` for nginx under preset strict (systemd 252,
// Debian 12), columns as printed.
const DETAIL = [
  '  NAME                                                        DESCRIPTION                                                                                         EXPOSURE',
  '✓ SystemCallFilter=~@swap                                     System call allow list defined for service, and @swap is not included                               ',
  '✗ SystemCallFilter=~@resources                                System call allow list defined for service, and @resources is included (e.g. ioprio_set is allowed)      0.2',
  '✗ RootDirectory=/RootImage=                                   Service runs within the host\'s root directory                                                            0.1',
  '  SupplementaryGroups=                                        Service runs as root, option does not matter                                                        ',
  '✗ User=/DynamicUser=                                          Service runs as root user                                                                                0.4',
  '✗ CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)                Service may change UID/GID identities/capabilities                                                       0.3',
  '✗ PrivateNetwork=                                             Service has access to the host\'s network                                                                 0.5',
  '✓ PrivateMounts=                                              Service cannot install system mounts                                                                ',
  '✗ UMask=                                                      Files created by service are world-readable by default                                                   0.1',
  '',
  '→ Overall exposure level for nginx.service: 2.8 OK :-)',
  '',
].join('\n');

// `systemd-analyze security` without units, in the same machine.
const TABLE = [
  'UNIT                                 EXPOSURE PREDICATE HAPPY',
  'console-getty.service                     9.6 UNSAFE    :-{',
  'getty@tty1.service                        9.6 UNSAFE    :-{',
  'nginx.service                             2.8 OK        :-)',
  'nspawnctl-audit-4242.service              9.6 UNSAFE    :-{',
  'systemd-journald.service                  4.3 OK        :-)',
  'systemd-networkd.service                  2.6 OK        :-)',
  '',
].join('\n');

describe('parseSecurityDetail', () => {
  test('the overall score and the unmet settings, heaviest first', () => {
    expect(parseSecurityDetail(DETAIL, 'nginx.service')).toEqual({
      exposure: 2.8,
      level: 'OK',
      unmet: [
        { name: 'PrivateNetwork=', description: "Service has access to the host's network", exposure: 0.5 },
        { name: 'User=/DynamicUser=', description: 'Service runs as root user', exposure: 0.4 },
        { name: 'CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)', description: 'Service may change UID/GID identities/capabilities', exposure: 0.3 },
        { name: 'SystemCallFilter=~@resources', description: 'System call allow list defined for service, and @resources is included (e.g. ioprio_set is allowed)', exposure: 0.2 },
        { name: 'RootDirectory=/RootImage=', description: "Service runs within the host's root directory", exposure: 0.1 },
        { name: 'UMask=', description: 'Files created by service are world-readable by default', exposure: 0.1 },
      ],
    });
  });

  test('the ASCII spelling a machine without a UTF-8 locale prints', () => {
    const ascii = DETAIL.replace(/✗/g, 'x').replace(/✓/g, '+').replace('→', '->');
    expect(parseSecurityDetail(ascii, 'nginx.service')).toMatchObject({ exposure: 2.8, level: 'OK' });
    expect(parseSecurityDetail(ascii, 'nginx.service')!.unmet).toHaveLength(6);
  });

  test('no overall line for that very unit: no score, whatever else is there', () => {
    expect(parseSecurityDetail(DETAIL, 'cron.service')).toBeUndefined();
    expect(parseSecurityDetail('', 'nginx.service')).toBeUndefined();
    expect(parseSecurityDetail('→ Overall exposure level for nginx.service: 12.5 UNSAFE', 'nginx.service')).toBeUndefined();
    expect(parseSecurityDetail('→ Overall exposure level for nginx.service: -1.0 OK', 'nginx.service')).toBeUndefined();
    expect(parseSecurityDetail('→ Overall exposure level for nginx.service: 2.8 ok', 'nginx.service')).toBeUndefined();
    expect(parseSecurityDetail('  → Overall exposure level for nginx.service: 2.8 OK', 'nginx.service')).toBeUndefined();
  });

  test('what a hostile machine prints: control characters escaped, nonsense rows ignored, the score bounded', () => {
    const hostile = [
      '✗ \x1b]0;owned\x07Evil=   clears your \x1b[2J terminal   0.9',
      '✗ Huge=   far too heavy   99.9',
      '✗ NoScore=   no number at the end',
      '→ Overall exposure level for nginx.service: 0.0 PERFECT \x1b[31m',
    ].join('\n');
    expect(parseSecurityDetail(hostile, 'nginx.service')).toEqual({
      exposure: 0,
      level: 'PERFECT',
      unmet: [{ name: '\\x1b]0;owned\\x07Evil=', description: 'clears your \\x1b[2J terminal', exposure: 0.9 }],
    });
  });

  test('only the first 5000 lines are looked at', () => {
    const flood = `${'✗ X= y 0.1\n'.repeat(6000)}→ Overall exposure level for nginx.service: 2.8 OK\n`;
    expect(parseSecurityDetail(flood, 'nginx.service')).toBeUndefined();
  });
});

describe('parseSecurityTable', () => {
  test('one row per unit with its score and word', () => {
    expect(parseSecurityTable(TABLE)).toEqual([
      { unit: 'console-getty.service', exposure: 9.6, level: 'UNSAFE' },
      { unit: 'getty@tty1.service', exposure: 9.6, level: 'UNSAFE' },
      { unit: 'nginx.service', exposure: 2.8, level: 'OK' },
      { unit: 'nspawnctl-audit-4242.service', exposure: 9.6, level: 'UNSAFE' },
      { unit: 'systemd-journald.service', exposure: 4.3, level: 'OK' },
      { unit: 'systemd-networkd.service', exposure: 2.6, level: 'OK' },
    ]);
  });

  test('escaped unit names are kept as names; rows of the wrong shape, repeats and impossible scores are dropped', () => {
    const text = [
      'systemd-fsck@dev-disk-by\\x2duuid-1.service   9.5 UNSAFE :-{',
      'nginx.service 2.8 OK',
      'nginx.service 0.0 PERFECT',
      'evil.service 11.0 OK',
      'evil.socket 1.0 OK',
      'a b.service 1.0 OK',
      '\x1b[2Jx.service 1.0 OK',
    ].join('\n');
    expect(parseSecurityTable(text)).toEqual([
      { unit: 'systemd-fsck@dev-disk-by\\x2duuid-1.service', exposure: 9.5, level: 'UNSAFE' },
      { unit: 'nginx.service', exposure: 2.8, level: 'OK' },
    ]);
  });
});

describe('asking the machine', () => {
  test("a service's score: systemd-analyze security run as a service of the machine's systemd", async () => {
    const host = new FakeHost();
    host.runner.on(inMachineArgv('web', ['systemd-analyze', 'security', '--no-pager', '--', 'nginx.service']), { stdout: DETAIL });
    expect(await readServiceExposure(host, 'web', 'nginx')).toMatchObject({ unit: 'nginx.service', exposure: 2.8, level: 'OK' });
    host.runner.on(inMachineArgv('web', ['systemd-analyze', 'security', '--no-pager', '--', 'gone.service']), { exitCode: 1, stderr: 'Unit gone.service not found.\n' });
    await expect(readServiceExposure(host, 'web', 'gone')).rejects.toThrow('machine web: systemd-analyze security gone.service exited with 1: Unit gone.service not found.');
  });

  test('every service: the listing runs under its own unit name, left out of the result', async () => {
    const host = new FakeHost();
    const argv = inMachineArgv('web', ['systemd-analyze', 'security', '--no-pager']);
    argv.splice(2, 0, '--unit=nspawnctl-audit-4242.service');
    host.runner.on(argv, { stdout: TABLE });
    expect((await listServiceExposures(host, 'web')).map((r) => r.unit)).toEqual(['console-getty.service', 'getty@tty1.service', 'nginx.service', 'systemd-journald.service', 'systemd-networkd.service']);
    host.assertNoUnmatchedCalls();
  });

  describe('an estimate before apply: the unit files rated offline, the planned drop-in given on stdin', () => {
    const isEstimate = (a: string[]) => a[0] === 'systemd-run' && a[2] === '--property=PrivateTmp=yes' && a.includes('sh') && a[a.length - 1] === 'nginx';
    const before = DETAIL.replace('2.8 OK', '9.6 UNSAFE');
    const after = DETAIL.replace('2.8 OK', '3.0 OK');

    test('both scores, from one run inside the machine with a private /tmp', async () => {
      const host = new FakeHost();
      host.runner.on(isEstimate, { stdout: `--- nspawnctl: now\n${before}--- nspawnctl: planned\n${after}` });
      expect(await estimateExposure(host, 'web', 'nginx', '[Service]\nProtectSystem=strict\n')).toEqual({ before: { exposure: 9.6, level: 'UNSAFE' }, after: { exposure: 3, level: 'OK' } });
      const call = host.runner.calls[0];
      expect(call.options?.input).toBe('[Service]\nProtectSystem=strict\n');
      expect([call.file, ...call.args].slice(0, 8)).toEqual(['systemd-run', '--machine=web', '--property=PrivateTmp=yes', '--wait', '--pipe', '--quiet', '--collect', '--']);
      // The script names the unit only through $1: its name is never part of the shell text.
      expect(call.args[call.args.length - 3]).not.toContain('nginx');
    });

    test('a unit the machine does not have', async () => {
      const host = new FakeHost();
      host.runner.on(isEstimate, { exitCode: 3 });
      expect(await estimateExposure(host, 'web', 'nginx', '')).toEqual({ missing: true });
    });

    test('a systemd-analyze without --offline (systemd before 250)', async () => {
      const host = new FakeHost();
      host.runner.on(isEstimate, { exitCode: 5, stderr: 'systemd-analyze: unrecognized option --offline=true\n' });
      expect(await estimateExposure(host, 'web', 'nginx', '')).toEqual({ unavailable: "the machine's systemd-analyze cannot rate unit files offline (it needs systemd 250 or later)" });
    });

    test('output that is not two scores is no estimate', async () => {
      const host = new FakeHost();
      host.runner.on(isEstimate, { stdout: `--- nspawnctl: now\n${before}` });
      expect(await estimateExposure(host, 'web', 'nginx', '')).toEqual({ unavailable: 'the estimate failed (exit 0): → Overall exposure level for nginx.service: 9.6 UNSAFE :-)' });
    });
  });
});
