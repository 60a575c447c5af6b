// restart-services: the machine's systemd is reloaded and asked, over its bus, about each unit;
// a unit that is not there, or did not load its drop-in, stops apply naming it; those that run
// are restarted; a failed restart names the unit and shows its journal, read inside the machine.
import { NspawnctlError } from '../../src/errors';
import { restartServices, showUnits } from '../../src/apply/services';
import { removeOwnedFile } from '../../src/apply/files';
import { FakeHost } from '../helpers/fake-host';
import { inMachineArgv } from '../helpers/simulated-systemd';

const DROPIN = (u: string) => `/etc/systemd/system/${u}.service.d/50-nspawnctl-hardening.conf`;
const SHOW = (...units: string[]) => ['systemctl', '--machine=web', 'show', '--property=Id,LoadState,ActiveState,DropInPaths,MainPID', '--', ...units.map((u) => `${u}.service`)];
const RELOAD = ['systemctl', '--machine=web', 'daemon-reload'];
const RESTART = (u: string) => ['systemctl', '--machine=web', 'restart', '--', `${u}.service`];
const SYNC = inMachineArgv('web', ['journalctl', '--sync']);
const JOURNAL = (u: string) => inMachineArgv('web', ['journalctl', '--no-pager', '--quiet', '--lines=15', `--unit=${u}.service`]);

/** One block of `systemctl show` output. */
function block(u: string, o: { load?: string; active?: string; dropIns?: string[]; pid?: number } = {}): string {
  return [`Id=${u}.service`, `LoadState=${o.load ?? 'loaded'}`, `ActiveState=${o.active ?? 'active'}`, `DropInPaths=${(o.dropIns ?? [DROPIN(u)]).join(' ')}`, `MainPID=${o.pid ?? 0}`].join('\n');
}

function hostWith(show: string): FakeHost {
  const host = new FakeHost();
  host.runner.on(RELOAD, {});
  host.runner.on((a) => a[0] === 'systemctl' && a[2] === 'show', { stdout: `${show}\n` });
  host.runner.on((a) => a[0] === 'systemctl' && a[2] === 'restart', {});
  return host;
}

async function failure(p: Promise<unknown>): Promise<NspawnctlError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof NspawnctlError) return err;
    throw err;
  }
  throw new Error('expected it to fail');
}

test('reload, one show for every unit, then a restart of each one that runs; a stopped one is left for its next start', async () => {
  const host = hostWith([block('nginx'), block('cron', { active: 'inactive' }), block('old', { active: 'failed' })].join('\n\n'));
  const lines: string[] = [];
  await restartServices(host, { machine: 'web', units: ['nginx', 'cron'], released: ['old'], afterBoot: false }, (l) => lines.push(l));
  expect(host.runner.argvs()).toEqual([RELOAD, SHOW('nginx', 'cron', 'old'), RESTART('nginx'), RESTART('old')]);
  expect(lines).toEqual(['restarted nginx.service in web', 'cron.service is not running in web; its hardening applies when it starts', 'restarted old.service in web']);
});

test('after the machine (re)started: no reload, no restart, only the checks', async () => {
  const host = hostWith([block('nginx'), block('cron', { active: 'inactive' })].join('\n\n'));
  await restartServices(host, { machine: 'web', units: ['nginx', 'cron'], released: [], afterBoot: true }, () => {});
  expect(host.runner.argvs()).toEqual([SHOW('nginx', 'cron')]);
});

test('a unit that is not in the machine stops apply naming it, before anything is restarted', async () => {
  const host = hostWith([block('nginx'), block('ngnix', { load: 'not-found', active: 'inactive', dropIns: [DROPIN('ngnix')] })].join('\n\n'));
  const err = await failure(restartServices(host, { machine: 'web', units: ['nginx', 'ngnix'], released: [], afterBoot: false }, () => {}));
  expect(err.message).toBe('service ngnix: machine web has no unit ngnix.service (its systemd says LoadState=not-found)');
  expect(err.hint).toBe('services: names units of the machine, without .service. Add the package that ships it to packages:, or fix the name (systemctl --machine=web list-unit-files --type=service lists them).');
  expect(host.runner.argvs().filter((a) => a[2] === 'restart')).toEqual([]);
});

test('a masked unit is said to be masked', async () => {
  const host = hostWith(block('nginx', { load: 'masked' }));
  expect((await failure(restartServices(host, { machine: 'web', units: ['nginx'], released: [], afterBoot: true }, () => {}))).message).toBe('service nginx: nginx.service is masked in machine web');
});

test('a released unit that went away with its package is skipped', async () => {
  const host = hostWith(block('old', { load: 'not-found', active: 'inactive', dropIns: [] }));
  await restartServices(host, { machine: 'web', units: [], released: ['old'], afterBoot: false }, () => {});
  expect(host.runner.argvs()).toEqual([RELOAD, SHOW('old')]);
});

test('a drop-in the machine did not load (an alias, a volatile /etc) is an error naming it', async () => {
  const host = hostWith(block('sshd', { dropIns: ['/lib/systemd/system/ssh.service.d/x.conf'] }));
  const err = await failure(restartServices(host, { machine: 'web', units: ['sshd'], released: [], afterBoot: false }, () => {}));
  expect(err.message).toBe(`service sshd: the systemd of machine web did not load its hardening ${DROPIN('sshd')} (it loads: /lib/systemd/system/ssh.service.d/x.conf)`);
  expect(err.hint).toContain('Is sshd an alias of another unit?');
});

test('a restart that fails names the unit, with systemctl\'s words and the unit\'s journal read inside the machine, escaped', async () => {
  const host = new FakeHost();
  host.runner.on(RELOAD, {});
  host.runner.on(SHOW('nginx'), { stdout: `${block('nginx')}\n` });
  host.runner.on(RESTART('nginx'), { exitCode: 1, stderr: 'Job for nginx.service failed because the control process exited with error code.\n' });
  host.runner.on(SYNC, {}).on(JOURNAL('nginx'), { stdout: 'nginx[81]: open() "/var/log/nginx/error.log" failed (30: Read-only file system)\x1b[31m\n' });
  const err = await failure(restartServices(host, { machine: 'web', units: ['nginx'], released: [], afterBoot: false }, () => {}));
  expect(err.message).toBe(
    'service nginx: nginx.service did not start again in machine web with its new hardening (Job for nginx.service failed because the control process exited with error code.); its journal ends:\nnginx[81]: open() "/var/log/nginx/error.log" failed (30: Read-only file system)\\x1b[31m',
  );
  expect(err.hint).toBe(
    'Its hardening may stop it: loosen services.nginx (docs/security.md, "Service presets"), or see what it calls with nspawnctl profile syscalls web --service nginx; then apply again. Meanwhile: journalctl --machine=web -u nginx.service',
  );
  host.assertNoUnmatchedCalls();
});

test('after boot, a hardened service that failed to start is an error with its journal', async () => {
  const host = new FakeHost();
  host.runner.on(SHOW('nginx'), { stdout: `${block('nginx', { active: 'failed' })}\n` });
  host.runner.on(SYNC, {}).on(JOURNAL('nginx'), { stdout: 'nginx.service: Failed with result \'exit-code\'.\n' });
  const err = await failure(restartServices(host, { machine: 'web', units: ['nginx'], released: [], afterBoot: true }, () => {}));
  expect(err.message).toBe("service nginx: nginx.service failed to start in machine web; its journal ends:\nnginx.service: Failed with result 'exit-code'.");
});

test('showUnits: blocks in argument order; a count that does not match is refused, not guessed', async () => {
  const host = hostWith([block('a', { pid: 42 }), block('b', { active: 'inactive' })].join('\n\n'));
  const states = await showUnits(host, 'web', ['a', 'b']);
  expect(states.get('a')).toEqual({ id: 'a.service', loadState: 'loaded', activeState: 'active', dropInPaths: [DROPIN('a')], mainPid: 42 });
  expect(states.get('b')?.activeState).toBe('inactive');
  const short = hostWith(block('a'));
  expect((await failure(showUnits(short, 'web', ['a', 'b']))).message).toBe('machine web: systemctl show answered 1 blocks for 2 units');
});

describe("removing a drop-in (through the machine's RootfsHandle)", () => {
  const rootfs = '/var/lib/machines/web';
  const hostPath = (u: string) => `${rootfs}${DROPIN(u)}`;

  test('takes its directory along when nothing else is in it', async () => {
    const host = new FakeHost();
    host.fs.addDir(rootfs).addFile(hostPath('nginx'), '[Service]\n');
    expect(await removeOwnedFile(host, hostPath('nginx'))).toBe(true);
    expect(host.fs.changes).toEqual([`remove ${hostPath('nginx')}`, `rmdir ${rootfs}/etc/systemd/system/nginx.service.d`]);
  });

  test("leaves the directory when the admin's own drop-in is there too", async () => {
    const host = new FakeHost();
    host.fs.addDir(rootfs).addFile(hostPath('nginx'), '[Service]\n').addFile(`${rootfs}/etc/systemd/system/nginx.service.d/60-local.conf`, '[Service]\n');
    await removeOwnedFile(host, hostPath('nginx'));
    expect(host.fs.changes).toEqual([`remove ${hostPath('nginx')}`]);
  });

  test('refuses a drop-in directory the machine turned into a symlink, and changes nothing', async () => {
    const host = new FakeHost();
    host.fs.addDir(rootfs).addDir('/etc/ssh').addFile('/etc/ssh/50-nspawnctl-hardening.conf', 'host file\n');
    host.fs.addSymlink(`${rootfs}/etc/systemd/system/nginx.service.d`, '/etc/ssh');
    await expect(removeOwnedFile(host, hostPath('nginx'))).rejects.toThrow('is a symlink: nspawnctl will not follow or use it');
    expect(host.fs.changes).toEqual([]);
    expect(host.fs.textAt('/etc/ssh/50-nspawnctl-hardening.conf')).toBe('host file\n');
  });
});
