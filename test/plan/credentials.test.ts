// The plan-time check of credential files (src/plan/credentials.ts): every file must exist, be a
// regular file once symlinks are followed, be closed to other users and lie where no machine can
// swap it; otherwise plan and apply stop with exit 3 before anything runs or changes. The check
// looks at metadata only: the file's content is never read.
import { ExitCode, PreflightError } from '../../src/errors';
import { parseManifest } from '../../src/manifest/load';
import { assertCredentialsUsable, findCredentialProblems } from '../../src/plan/credentials';
import { planManifest } from '../../src/pipeline';
import { makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
const DIR = '/etc/nspawnctl/credentials';

/** A manifest where machine web has the credentials given as NAME: PATH lines. */
const withCredentials = (...lines: string[]) => parseManifest('machines.yaml', yaml('machines:', '  web:', '    credentials:', ...lines.map((l) => `      ${l}`)));

/** The problems found for `lines` on `host`, as "what | fix". */
async function problems(host: FakeHost, ...lines: string[]): Promise<string[]> {
  return (await findCredentialProblems(host, withCredentials(...lines))).map((p) => `${p.what} | ${p.fix}`);
}

function hostWithFiles(): FakeHost {
  const host = new FakeHost();
  host.fs.addDir(DIR, { mode: 0o700 });
  host.fs.addFile(`${DIR}/db-password`, 'not read\n', { mode: 0o600 });
  host.fs.addFile(`${DIR}/group-readable`, 'not read\n', { mode: 0o640 });
  host.fs.addFile(`${DIR}/open`, 'not read\n', { mode: 0o644 });
  host.fs.addFile(`${DIR}/writable`, 'not read\n', { mode: 0o602 });
  host.fs.addFile(`${DIR}/wide-open`, 'not read\n', { mode: 0o666 });
  // certbot's layout: live/NAME/privkey.pem is a relative symlink into archive/.
  host.fs.addFile('/etc/letsencrypt/archive/web.example.org/privkey1.pem', 'not read\n', { mode: 0o600 });
  host.fs.addSymlink('/etc/letsencrypt/live/web.example.org/privkey.pem', '../../archive/web.example.org/privkey1.pem');
  host.fs.addFile('/etc/ssl/certs/ca.pem', 'not read\n', { mode: 0o644 });
  host.fs.addSymlink(`${DIR}/ca-link`, '/etc/ssl/certs/ca.pem');
  return host;
}

describe('findCredentialProblems', () => {
  test('regular files closed to other users are accepted: 0600, 0640, and through a relative symlink', async () => {
    expect(await problems(hostWithFiles(), `db: ${DIR}/db-password`, `grp: ${DIR}/group-readable`, 'tls.key: /etc/letsencrypt/live/web.example.org/privkey.pem')).toEqual([]);
  });

  test('a missing file', async () => {
    expect(await problems(hostWithFiles(), `db: ${DIR}/nope`)).toEqual([
      `machine web, credential db: ${DIR}/nope does not exist | Create ${DIR}/nope (owned by root, chmod 0600), or correct credentials.db of machine web.`,
    ]);
  });

  test('a dangling symlink is a missing file', async () => {
    const host = hostWithFiles();
    host.fs.addSymlink(`${DIR}/dangling`, `${DIR}/gone`);
    expect(await problems(host, `db: ${DIR}/dangling`)).toEqual([
      `machine web, credential db: ${DIR}/dangling does not exist | Create ${DIR}/dangling (owned by root, chmod 0600), or correct credentials.db of machine web.`,
    ]);
  });

  test('a directory, named directly or through a symlink', async () => {
    const host = hostWithFiles();
    host.fs.addSymlink('/etc/dir-link', DIR);
    expect(await problems(host, `a: ${DIR}`, 'b: /etc/dir-link')).toEqual([
      `machine web, credential a: ${DIR} is a directory, not a regular file | Point credentials.a of machine web at a regular file: systemd-nspawn loads one file per credential.`,
      `machine web, credential b: /etc/dir-link (a symlink to ${DIR}) is a directory, not a regular file | Point credentials.b of machine web at a regular file: systemd-nspawn loads one file per credential.`,
    ]);
  });

  test('a file other users may read or write, named directly or through a symlink', async () => {
    expect(await problems(hostWithFiles(), `a: ${DIR}/open`, `b: ${DIR}/writable`, `c: ${DIR}/wide-open`, `d: ${DIR}/ca-link`)).toEqual([
      `machine web, credential a: ${DIR}/open is readable by every user on this host (mode 0644) | chmod o-r ${DIR}/open`,
      `machine web, credential b: ${DIR}/writable is writable by every user on this host (mode 0602) | chmod o-w ${DIR}/writable`,
      `machine web, credential c: ${DIR}/wide-open is readable and writable by every user on this host (mode 0666) | chmod o-rw ${DIR}/wide-open`,
      `machine web, credential d: ${DIR}/ca-link (a symlink to /etc/ssl/certs/ca.pem) is readable by every user on this host (mode 0644) | chmod o-r ${DIR}/ca-link`,
    ]);
  });

  test('a symlink leading into a machine directory or into a directory a machine mounts read-write', async () => {
    const host = hostWithFiles();
    host.fs.addFile('/var/lib/machines/web/etc/key', 'not read\n', { mode: 0o600 });
    host.fs.addSymlink(`${DIR}/in-machine`, '/var/lib/machines/web/etc/key');
    host.fs.addFile('/srv/data/key', 'not read\n', { mode: 0o600 });
    host.fs.addSymlink(`${DIR}/in-bind`, '/srv/data/key');
    const manifest = parseManifest('machines.yaml', yaml('machines:', '  web:', '    bind: ["/srv/data:/data"]', `    credentials: { a: ${DIR}/in-machine, b: ${DIR}/in-bind }`));
    const fix = 'Keep credential files in a directory only root can write, outside every machine, such as /etc/nspawnctl/credentials.';
    expect(await findCredentialProblems(host, manifest)).toEqual([
      { what: `machine web, credential a: ${DIR}/in-machine (a symlink to /var/lib/machines/web/etc/key) is inside /var/lib/machines: a machine could replace it with a symlink to any host file`, fix },
      { what: `machine web, credential b: ${DIR}/in-bind (a symlink to /srv/data/key) is inside /srv/data, which machine web mounts read-write: that machine could replace it with a symlink to any host file`, fix },
    ]);
  });

  test("a file inside what another machine mounts, even read-only: that machine's root would read it; its own machine's read-only bind is fine", async () => {
    const host = hostWithFiles();
    const manifest = parseManifest(
      'machines.yaml',
      yaml('machines:', '  web:', `    credentials: { db: ${DIR}/db-password }`, '    bind: ["/etc/nspawnctl:/mnt/own:ro"]', '  db:', '    bind: ["/etc/nspawnctl:/mnt/conf:ro"]'),
    );
    expect(await findCredentialProblems(host, manifest)).toEqual([
      {
        what: `machine web, credential db: ${DIR}/db-password is inside /etc/nspawnctl, which machine db mounts: that machine could read it`,
        fix: 'Keep credential files in a directory only root can read, outside every bind mount source, such as /etc/nspawnctl/credentials.',
      },
    ]);
  });

  test('a file that cannot be looked at (not root, or a symlink loop) cannot be checked', async () => {
    const host = hostWithFiles();
    host.fs.addSymlink(`${DIR}/loop`, `${DIR}/loop`);
    const statResolved = host.fs.statResolved.bind(host.fs);
    host.fs.statResolved = async (path: string) => {
      if (path === '/root/secret') throw Object.assign(new Error(`EACCES: permission denied, lstat '${path}'`), { code: 'EACCES' });
      return statResolved(path);
    };
    const fix = (file: string) => `Run nspawnctl as root (credential files are usually readable by root only), and check ${file} and the symlinks on its way.`;
    expect(await problems(host, 'a: /root/secret', `b: ${DIR}/loop`)).toEqual([
      `machine web, credential a: /root/secret cannot be checked (permission denied) | ${fix('/root/secret')}`,
      `machine web, credential b: ${DIR}/loop cannot be checked (ELOOP: ${DIR}/loop) | ${fix(`${DIR}/loop`)}`,
    ]);
  });

  test('a credential from defaults is checked once and reported once, naming every machine that gets it', async () => {
    const manifest = parseManifest('machines.yaml', yaml('defaults:', `  credentials: { ca: ${DIR}/open }`, 'machines:', '  web: {}', '  db: {}', '  app:', `    credentials: { ca: ${DIR}/db-password }`));
    const host = hostWithFiles();
    const looked: string[] = [];
    const statResolved = host.fs.statResolved.bind(host.fs);
    host.fs.statResolved = async (path: string) => {
      looked.push(path);
      return statResolved(path);
    };
    expect(await findCredentialProblems(host, manifest)).toEqual([{ what: `machines db, web, credential ca: ${DIR}/open is readable by every user on this host (mode 0644)`, fix: `chmod o-r ${DIR}/open` }]);
    expect(looked).toEqual([`${DIR}/db-password`, `${DIR}/open`]);
  });
});

describe('planManifest with unusable credential files', () => {
  test('throws PreflightError (exit 3) listing every problem, before it asks or changes anything, without reading any file', async () => {
    const host = makeBootedHost(hostWithFiles());
    const readText = host.fs.readText.bind(host.fs);
    const read: string[] = [];
    host.fs.readText = async (path: string) => {
      read.push(path);
      return readText(path);
    };
    const manifest = withCredentials(`a: ${DIR}/nope`, `b: ${DIR}`, `c: ${DIR}/open`, `d: ${DIR}/db-password`);
    const err = await planManifest(host, manifest, '/srv/conf').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PreflightError);
    expect((err as PreflightError).exitCode).toBe(ExitCode.preflight);
    expect((err as PreflightError).message).toBe(
      [
        'this host is not ready:',
        `  - machine web, credential a: ${DIR}/nope does not exist`,
        `  - machine web, credential b: ${DIR} is a directory, not a regular file`,
        `  - machine web, credential c: ${DIR}/open is readable by every user on this host (mode 0644)`,
      ].join('\n'),
    );
    expect((err as PreflightError).hint).toBe(
      [
        `Create ${DIR}/nope (owned by root, chmod 0600), or correct credentials.a of machine web.`,
        'Point credentials.b of machine web at a regular file: systemd-nspawn loads one file per credential.',
        `chmod o-r ${DIR}/open`,
      ].join('\n'),
    );
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
    expect(read).toEqual([]);
  });

  test('assertCredentialsUsable passes when every file is fine, and for a manifest without credentials', async () => {
    const host = hostWithFiles();
    await expect(assertCredentialsUsable(host, withCredentials(`a: ${DIR}/db-password`, 'b: /etc/letsencrypt/live/web.example.org/privkey.pem'))).resolves.toBeUndefined();
    await expect(assertCredentialsUsable(new FakeHost(), parseManifest('machines.yaml', yaml('machines:', '  web: {}')))).resolves.toBeUndefined();
  });
});
