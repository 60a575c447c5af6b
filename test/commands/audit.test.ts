// `nspawnctl audit`: every service of the managed machines by exposure, worst first, and the exit
// code a CI job gates on.
import AuditCommand from '../../src/commands/audit';
import { Host } from '../../src/host/host';
import { convergeFakeHost, desiredFrom, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { runCommand } from '../helpers/run-command';
import { inMachineArgv, simulateSystemd } from '../helpers/simulated-systemd';

const MANIFEST = `machines:
  web:
    packages: [nginx]
    services: { nginx: { preset: strict } }
  db: {}
  old: {}
`;

const auditWith = (host: Host) =>
  class extends AuditCommand {
    protected override createHost(): Host {
      return host;
    }
  };

const listing = (machine: string) => {
  const argv = inMachineArgv(machine, ['systemd-analyze', 'security', '--no-pager']);
  argv.splice(2, 0, '--unit=nspawnctl-audit-4242.service');
  return argv;
};
const table = (...rows: [string, string][]) => ['UNIT                                 EXPOSURE PREDICATE HAPPY', ...rows.map(([u, s]) => `${u.padEnd(37)}${s}    :-|`), ''].join('\n');

function host(nginx = '2.8 OK'): FakeHost {
  const h = makeBootedHost(new FakeHost());
  h.runner.on(listing('web'), { stdout: table(['dbus.service', '9.6 UNSAFE'], ['nginx.service', nginx], ['nspawnctl-audit-4242.service', '9.6 UNSAFE'], ['systemd-journald.service', '4.3 OK']) });
  h.runner.on(listing('db'), { stdout: table(['dbus.service', '9.6 UNSAFE'], ['systemd-networkd.service', '2.6 OK']) });
  simulateSystemd(h, { running: ['db', 'web'] });
  convergeFakeHost(h, desiredFrom(MANIFEST).desired, { queries: false });
  return h;
}

test('a table of every service, worst first, hardened ones marked; a stopped machine is noted and does not fail the audit', async () => {
  const h = host();
  const r = await runCommand(auditWith(h), []);
  expect([r.exitCode, r.stderr]).toEqual([0, 'note: machine old: not rated (not running)\n']);
  expect(r.stdout).toBe(
    [
      'EXPOSURE  LEVEL   MACHINE  SERVICE                   HARDENED',
      '9.6       UNSAFE  db       dbus.service              -',
      '9.6       UNSAFE  web      dbus.service              -',
      '4.3       OK      web      systemd-journald.service  -',
      '2.8       OK      web      nginx.service             yes',
      '2.6       OK      db       systemd-networkd.service  -',
      '',
      '5 service(s) in 2 machine(s), 1 hardened by nspawnctl; a hardened one fails above 5.0 (0.0 is best, 10.0 worst).',
      '',
    ].join('\n'),
  );
  expect(h.fs.changes).toEqual([]);
  h.assertNoUnmatchedCalls();
});

test('a hardened service above --max-exposure fails the audit (exit 1) naming it; unhardened ones never do', async () => {
  const r = await runCommand(auditWith(host('5.3 MEDIUM')), ['web', 'db']);
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toBe(
    'nspawnctl: audit failed:\n  - nginx.service in web: 5.3 MEDIUM is above --max-exposure 5.0\nhint: Harden them further (docs/security.md, "Services inside a machine"); nspawnctl status MACHINE shows what weighs most in each score.\n',
  );
  expect((await runCommand(auditWith(host('5.3 MEDIUM')), ['--max-exposure', '5.5'])).exitCode).toBe(0);
  expect((await runCommand(auditWith(host('2.8 OK')), ['--max-exposure', '2.7'])).exitCode).toBe(1);
  expect((await runCommand(auditWith(host('5.0 MEDIUM')), [])).exitCode).toBe(0);
});

test('--json: the rows, the threshold, what is above it and what was not rated', async () => {
  const r = await runCommand(auditWith(host('5.3 MEDIUM')), ['--json']);
  expect(r.exitCode).toBe(1);
  const json = JSON.parse(r.stdout);
  expect(json.maxExposure).toBe(5);
  expect(json.services[0]).toEqual({ machine: 'db', unit: 'dbus.service', exposure: 9.6, level: 'UNSAFE', hardened: false });
  expect(json.above).toEqual([{ machine: 'web', unit: 'nginx.service', exposure: 5.3, level: 'MEDIUM', hardened: true }]);
  expect(json.skipped).toEqual([{ machine: 'old', why: 'not running' }]);
});

test('a machine named on the command line that does not run fails the audit', async () => {
  const r = await runCommand(auditWith(host()), ['old']);
  expect(r.exitCode).toBe(1);
  expect(r.stdout).toBe('Nothing was rated.\n');
  expect(r.stderr).toContain('  - its services in old: could not be rated\n');
});

test('a hardened service the machine has not loaded is rated on its own; one that cannot be rated fails the audit', async () => {
  const h = makeBootedHost(new FakeHost());
  h.runner.on(listing('web'), { stdout: table(['dbus.service', '9.6 UNSAFE']) });
  h.runner.on(inMachineArgv('web', ['systemd-analyze', 'security', '--no-pager', '--', 'nginx.service']), { exitCode: 1, stderr: 'Unit nginx.service not found.\n' });
  simulateSystemd(h, { running: ['web'] });
  convergeFakeHost(h, desiredFrom(MANIFEST.replace('  db: {}\n  old: {}\n', '')).desired, { queries: false });
  const r = await runCommand(auditWith(h), []);
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toContain('note: machine web, nginx.service: not rated (machine web: systemd-analyze security nginx.service exited with 1: Unit nginx.service not found.)\n');
  expect(r.stderr).toContain('  - nginx.service in web: could not be rated\n');
});

test('bad input: exit 2 before anything runs; a normal user: exit 3; an unmanaged machine: exit 1', async () => {
  for (const argv of [['--max-exposure', 'high'], ['--max-exposure', '10.5'], ['Web']]) {
    const h = host();
    const r = await runCommand(auditWith(h), argv);
    expect([argv, r.exitCode]).toEqual([argv, 2]);
    expect(h.runner.calls).toEqual([]);
  }
  const user = host();
  user.uid = 1000;
  expect((await runCommand(auditWith(user), [])).exitCode).toBe(3);
  const r = await runCommand(auditWith(host()), ['ghost']);
  expect([r.exitCode, r.stderr]).toEqual([1, 'nspawnctl: no machine named ghost is managed by nspawnctl\nhint: nspawnctl list shows the machines nspawnctl manages.\n']);
});
