// `nspawnctl profile syscalls MACHINE --service UNIT [--duration D]`: its flags, the line that
// says when to exercise the service, and the two outputs; the profiler is tested in
// test/apply/profile-service.test.ts.
import './helpers/oclif-listeners';
import ProfileSyscalls from '../../src/commands/profile/syscalls';
import { Host } from '../../src/host/host';
import { FakeHost } from '../helpers/fake-host';
import { runCommand } from '../helpers/run-command';

const PROFILE = { machine: 'web', service: 'nginx', durationS: 90, processes: 3, syscalls: ['accept4'], extra: [], unknown: [], denied: ['@keyring'], optional: ['@resources'], kept: [], systemCallFilter: ['@system-service', '~@keyring'] };

jest.mock('../../src/apply/profile-service', () => ({
  ...jest.requireActual('../../src/apply/profile-service'),
  profileService: jest.fn(async (_host: unknown, _machine: string, _service: string, options: { onReady?: (n: number) => void }) => {
    options.onReady?.(3);
    return PROFILE;
  }),
}));
const { profileService } = jest.requireMock('../../src/apply/profile-service') as { profileService: jest.Mock };

const profileWith = (host: Host) =>
  class extends ProfileSyscalls {
    protected override createHost(): Host {
      return host;
    }
  };

beforeEach(() => profileService.mockClear());

test('--service: traced for --duration; the line to start exercising it on stderr; the YAML on stdout', async () => {
  const r = await runCommand(profileWith(new FakeHost()), ['web', '--service', 'nginx', '--duration', '90s']);
  expect(r.exitCode).toBe(0);
  expect(profileService.mock.calls.map((c) => [c[1], c[2], c[3].durationS, c[3].installStrace])).toEqual([['web', 'nginx', 90, false]]);
  expect(r.stderr).toBe('nspawnctl: tracing nginx.service in web (3 processes) for 90 s: exercise it now\n');
  expect(r.stdout).toContain('services:\n  nginx:\n    systemCallFilter:\n      - "@system-service"\n      - "~@keyring"\n      # - "~@resources"\n');
});

test('--json: the profile as data; the ready line stays on stderr', async () => {
  const r = await runCommand(profileWith(new FakeHost()), ['web', '--service', 'nginx', '--json', '--install-strace']);
  expect(JSON.parse(r.stdout)).toEqual(PROFILE);
  expect(r.stderr).toContain('exercise it now');
  expect(profileService.mock.calls[0][3]).toMatchObject({ durationS: 60, installStrace: true });
});

test.each([
  [['web', '--service', 'nginx', '--', '/bin/true'], 'nspawnctl: give --service or a command after --, not both\n'],
  [['web', '--service', 'nginx.service'], 'nspawnctl: "nginx.service" is not a unit name without .service, like nginx\n'],
  [['web', '--service', '../x'], 'nspawnctl: "../x" is not a unit name without .service, like nginx\n'],
  [['web', '--service', 'nginx', '--duration', '2h'], 'nspawnctl: --duration takes 1s to 1h, like 60s or 2m, not "2h"\n'],
])('%j: exit 2, nothing traced', async (argv, stderr) => {
  const r = await runCommand(profileWith(new FakeHost()), argv);
  expect([r.exitCode, r.stderr]).toEqual([2, stderr]);
  expect(profileService).not.toHaveBeenCalled();
});
