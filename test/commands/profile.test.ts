// `nspawnctl profile syscalls` parses MACHINE, its flags, and after "--" the command with its own
// flags (which are not nspawnctl's); the profiler itself is tested in test/apply/profile.test.ts.
import './helpers/oclif-listeners';
import ProfileSyscalls from '../../src/commands/profile/syscalls';
import { Host } from '../../src/host/host';
import { FakeHost } from '../helpers/fake-host';
import { runCommand } from '../helpers/run-command';

jest.mock('../../src/apply/profile', () => ({
  ...jest.requireActual('../../src/apply/profile'),
  profileSyscalls: jest.fn(async (_host: unknown, machine: string, command: string[]) => ({ machine, command, exitCode: 0, syscalls: ['read'], denied: ['~@swap'], kept: [], systemCallFilter: ['~@swap'] })),
}));
const { profileSyscalls } = jest.requireMock('../../src/apply/profile') as { profileSyscalls: jest.Mock };

const profileWith = (host: Host) =>
  class extends ProfileSyscalls {
    protected override createHost(): Host {
      return host;
    }
  };

beforeEach(() => profileSyscalls.mockClear());

test('everything after "--" is the command, its flags included', async () => {
  const r = await runCommand(profileWith(new FakeHost()), ['web', '--', '/usr/sbin/nginx', '-t', '--json']);
  expect([r.exitCode, r.stderr]).toEqual([0, '']);
  expect(profileSyscalls.mock.calls.map((c) => [c[1], c[2], c[3].installStrace])).toEqual([['web', ['/usr/sbin/nginx', '-t', '--json'], false]]);
  expect(r.stdout.split('\n')[0]).toBe('# nspawnctl profile syscalls web -- "/usr/sbin/nginx" "-t" "--json"');
});

test("nspawnctl's own flags before \"--\"", async () => {
  const r = await runCommand(profileWith(new FakeHost()), ['web', '--install-strace', '--json', '--', 'psql', '-c', 'select 1']);
  expect(r.exitCode).toBe(0);
  expect(profileSyscalls.mock.calls.map((c) => [c[1], c[2], c[3].installStrace])).toEqual([['web', ['psql', '-c', 'select 1'], true]]);
  expect(JSON.parse(r.stdout)).toEqual({ machine: 'web', command: ['psql', '-c', 'select 1'], exitCode: 0, syscalls: ['read'], denied: ['~@swap'], kept: [], systemCallFilter: ['~@swap'] });
});

test('no command: exit 2 with the usage as hint, nothing run', async () => {
  const r = await runCommand(profileWith(new FakeHost()), ['web']);
  expect([r.exitCode, r.stdout]).toEqual([2, '']);
  expect(r.stderr).toBe('nspawnctl: no command to profile\nhint: nspawnctl profile syscalls web -- CMD [ARGS...]\n');
  expect(profileSyscalls).not.toHaveBeenCalled();
});
