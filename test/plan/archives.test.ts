// The mirror check (src/plan/archives.ts): when a plan creates machines, one HEAD request per
// distinct mirror, suite and proxy for MIRROR/dists/SUITE/Release. A 404 is a manifest error
// (exit 2) located at the key to fix, with a suggestion; no answer is exit 3 naming the URL. A plan
// that creates nothing asks nothing.
import { ExitCode, ManifestError, NspawnctlError, PreflightError } from '../../src/errors';
import { parseManifest } from '../../src/manifest/load';
import { archivesToCheck, ARCHIVE_CHECK_TIMEOUT_MS, askArchive, releaseUrl } from '../../src/plan/archives';
import { planManifest } from '../../src/pipeline';
import { inspectMachines } from '../../src/plan/inspect';
import { answerObserveQueries, convergeFakeHost, desiredFrom, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
const FILE = 'machines.yaml';
const DEBIAN = 'http://deb.debian.org/debian';

/** A booted fresh host holding `text` as machines.yaml. */
function hostFor(text: string): FakeHost {
  return answerObserveQueries(makeBootedHost(new FakeHost({ inputs: { [FILE]: text } })));
}

/** What planManifest throws for `text` on `host` (fails the test when it does not throw). */
async function planError(host: FakeHost, text: string): Promise<NspawnctlError> {
  const err = await planManifest(host, parseManifest(FILE, text), '/srv/conf').then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof NspawnctlError)) throw new Error(`expected an NspawnctlError, got ${String(err)}`);
  return err;
}

describe('the mirror check in planManifest', () => {
  test('a misspelt suite: exit 2 at the suite key, with the codename it is closest to; one request, nothing changed', async () => {
    const text = yaml('machines:', '  web:', '    suite: bookwrom');
    const host = hostFor(text);
    host.http.on(`${DEBIAN}/dists/bookwrom/Release`, { status: 404 });
    const err = await planError(host, text);
    expect(err).toBeInstanceOf(ManifestError);
    expect(err.exitCode).toBe(ExitCode.invalidManifest);
    expect(err.message).toBe(`machines.yaml:3:12: machines.web.suite: bookwrom is not a suite of ${DEBIAN} (${DEBIAN}/dists/bookwrom/Release answered HTTP 404); did you mean bookworm?`);
    expect(err.hint).toBe('Fix the manifest; nothing on the host was changed. See man nspawnctl.');
    expect(host.http.calls).toEqual([{ url: `${DEBIAN}/dists/bookwrom/Release`, timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS }]);
    expect(host.fs.changes).toEqual([]);
  });

  test('a suite in defaults shared by machines: one request, one problem at defaults.suite naming them', async () => {
    const text = yaml('defaults:', '  suite: trixy', 'machines:', '  b: {}', '  a: {}');
    const host = hostFor(text);
    host.http.on(`${DEBIAN}/dists/trixy/Release`, { status: 404 });
    const err = await planError(host, text);
    expect(err.message).toBe(`machines.yaml:2:10: defaults.suite: trixy is not a suite of ${DEBIAN} (${DEBIAN}/dists/trixy/Release answered HTTP 404); did you mean trixie? (used by machines a and b)`);
    expect(host.http.urls()).toEqual([`${DEBIAN}/dists/trixy/Release`]);
  });

  test('a suite like no known codename: the codenames of the machine\'s distribution are listed', async () => {
    const text = yaml('machines:', '  ub:', '    distribution: ubuntu', '    suite: xenial-old');
    const host = hostFor(text);
    host.http.on(() => true, { status: 404 });
    const err = await planError(host, text);
    expect(err.message).toBe(
      'machines.yaml:4:12: machines.ub.suite: xenial-old is not a suite of http://archive.ubuntu.com/ubuntu (http://archive.ubuntu.com/ubuntu/dists/xenial-old/Release answered HTTP 404); Ubuntu suites nspawnctl knows: focal, jammy, noble, oracular, plucky, questing',
    );
  });

  test('a known codename the mirror lacks: the mirror is at fault, where it is written (or the machine, for the built-in one)', async () => {
    const text = yaml('defaults:', '  mirror: http://mirror.lan/debian/pool', 'machines:', '  web: {}', '  old:', '    distribution: debian', '    suite: buster', '    mirror: http://deb.debian.org/debian');
    const own = yaml('machines:', '  old:', '    distribution: debian', '    suite: buster');
    const host = hostFor(text);
    host.http.on('http://mirror.lan/debian/pool/dists/bookworm/Release', { status: 404 }).on(`${DEBIAN}/dists/buster/Release`, { status: 410 });
    const err = await planError(host, text);
    expect(err.message).toBe(
      [
        'machines.yaml:2:11: defaults.mirror: http://mirror.lan/debian/pool has no suite bookworm (http://mirror.lan/debian/pool/dists/bookworm/Release answered HTTP 404); check it is a Debian mirror, given as the directory that holds dists/ (used by machine web)',
        `machines.yaml:8:13: machines.old.mirror: ${DEBIAN} has no suite buster (${DEBIAN}/dists/buster/Release answered HTTP 410); check it is a Debian mirror, given as the directory that holds dists/`,
      ].join('\n'),
    );
    const builtin = hostFor(own);
    builtin.http.on(`${DEBIAN}/dists/buster/Release`, { status: 404 });
    expect((await planError(builtin, own)).message).toBe(
      `machines.yaml:3:19: machines.old.distribution: ${DEBIAN} (the default debian mirror) has no suite buster (${DEBIAN}/dists/buster/Release answered HTTP 404); set mirror to an archive that still has it (old releases move to archive.debian.org or old-releases.ubuntu.com)`,
    );
  });

  test('a manifest that cannot be read again (a pipe, or moved): the problem is named, not located, still exit 2', async () => {
    const text = yaml('machines:', '  web:', '    suite: bookwrom');
    const host = hostFor(text);
    host.inputs.delete(FILE);
    host.http.on(() => true, { status: 404 });
    const err = await planError(host, text);
    expect(err).not.toBeInstanceOf(ManifestError);
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe(`machines.yaml: machines.web.suite: bookwrom is not a suite of ${DEBIAN} (${DEBIAN}/dists/bookwrom/Release answered HTTP 404); did you mean bookworm?`);
  });

  test('a mirror that does not answer, or answers something else: exit 3 naming each URL (and the proxy it went through)', async () => {
    const text = yaml('machines:', '  web: { mirror: http://mirror.lan/debian }', '  db: { aptProxy: "http://10.0.0.5:3142" }', '  app: { mirror: http://forbidden.lan/debian }');
    const host = hostFor(text);
    host.http.on('http://mirror.lan/debian/dists/bookworm/Release', { fail: 'mirror.lan does not resolve (ENOTFOUND)' });
    host.http.on(`${DEBIAN}/dists/bookworm/Release`, { fail: 'no answer within 10 s' });
    host.http.on('http://forbidden.lan/debian/dists/bookworm/Release', { status: 403 });
    const err = await planError(host, text);
    expect(err).toBeInstanceOf(PreflightError);
    expect(err.exitCode).toBe(ExitCode.preflight);
    expect(err.message).toBe(
      [
        'this host is not ready:',
        '  - cannot reach http://forbidden.lan/debian/dists/bookworm/Release: answered HTTP 403 (needed to create machine app)',
        `  - cannot reach ${DEBIAN}/dists/bookworm/Release through proxy http://10.0.0.5:3142: no answer within 10 s (needed to create machine db)`,
        '  - cannot reach http://mirror.lan/debian/dists/bookworm/Release: mirror.lan does not resolve (ENOTFOUND) (needed to create machine web)',
      ].join('\n'),
    );
    expect(err.hint).toBe(
      [
        "Check the mirror URL and this host's network. Where the mirror is reached only through a proxy, set aptProxy in the manifest or the http_proxy environment variable.",
        "Check the mirror URL and this host's network and the proxy http://10.0.0.5:3142. Where the mirror is reached only through a proxy, set aptProxy in the manifest or the http_proxy environment variable.",
        "Check the mirror URL and this host's network. Where the mirror is reached only through a proxy, set aptProxy in the manifest or the http_proxy environment variable.",
      ].join('\n'),
    );
    expect(host.http.calls).toEqual([
      { url: 'http://forbidden.lan/debian/dists/bookworm/Release', timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS },
      { url: `${DEBIAN}/dists/bookworm/Release`, proxy: 'http://10.0.0.5:3142', timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS },
      { url: 'http://mirror.lan/debian/dists/bookworm/Release', timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS },
    ]);
  });

  test('a missing suite is reported before an unreachable mirror (exit 2 first)', async () => {
    const text = yaml('machines:', '  web: { suite: bookwrom }', '  db: { mirror: http://mirror.lan/debian }');
    const host = hostFor(text);
    host.http.on(`${DEBIAN}/dists/bookwrom/Release`, { status: 404 }).on(() => true, { fail: 'connection refused' });
    expect((await planError(host, text)).exitCode).toBe(2);
  });

  test('every suite that exists: the plan goes on; one request per distinct mirror, suite and proxy', async () => {
    const text = yaml('machines:', '  a: {}', '  b: {}', '  c: { aptProxy: "http://10.0.0.5:3142" }', '  d: { distribution: ubuntu }', '  e: { suite: trixie }');
    const host = hostFor(text);
    const { plan } = await planManifest(host, parseManifest(FILE, text), '/srv/conf');
    expect(plan.steps.filter((s) => s.kind === 'create-machine')).toHaveLength(5);
    expect(host.http.calls).toEqual([
      { url: `${DEBIAN}/dists/bookworm/Release`, timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS },
      { url: `${DEBIAN}/dists/bookworm/Release`, proxy: 'http://10.0.0.5:3142', timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS },
      { url: 'http://archive.ubuntu.com/ubuntu/dists/noble/Release', timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS },
      { url: `${DEBIAN}/dists/trixie/Release`, timeoutMs: ARCHIVE_CHECK_TIMEOUT_MS },
    ]);
  });

  test('an unchanged host, or one where only files change, asks no mirror: plan stays offline', async () => {
    const text = yaml('networks:', '  br0: { subnet: 10.0.0.0/24 }', 'machines:', '  web: { network: { bridge: br0, address: 10.0.0.2 }, files: [{ path: /etc/motd, content: "hi\\n" }] }');
    const host = convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { [FILE]: text } })), desiredFrom(text).desired);
    host.http.on(() => true, { fail: 'must not be asked' });
    const { plan } = await planManifest(host, parseManifest(FILE, text), '/srv/conf');
    expect(plan.steps).toEqual([]);
    const changed = text.replace('hi\\n', 'hello\\n');
    const { plan: update } = await planManifest(host, parseManifest(FILE, changed), '/srv/conf');
    expect(update.steps.map((s) => s.kind)).toEqual(['write-file']);
    expect(host.http.calls).toEqual([]);
  });

  test('list and status only compare: a machine still to create is drift, and no mirror is asked', async () => {
    const text = yaml('machines:', '  web: {}', '  db: {}');
    const host = convergeFakeHost(makeBootedHost(new FakeHost({ inputs: { '/srv/conf/machines.yaml': text } })), desiredFrom(text).desired, { running: [] });
    await host.fs.removeTree('/var/lib/machines/db');
    host.http.on(() => true, { fail: 'must not be asked' });
    const reports = (await inspectMachines(host, '/srv/conf')).machines;
    expect(reports.map((r) => `${r.name} ${r.sync}`)).toEqual(['db drift', 'web drift']);
    expect(reports[0].changes[0]).toBe('bootstrap debian bookworm with mmdebstrap or debootstrap');
    expect(host.http.calls).toEqual([]);
  });
});

describe('askArchive', () => {
  const use = { mirror: `${DEBIAN}/`, suite: 'bookworm', machines: [] };

  test('the Release file of the suite, under the mirror with or without a trailing slash', () => {
    expect(releaseUrl(`${DEBIAN}/`, 'bookworm')).toBe(`${DEBIAN}/dists/bookworm/Release`);
    expect(releaseUrl(DEBIAN, 'noble')).toBe(`${DEBIAN}/dists/noble/Release`);
  });

  test('redirects are followed, relative or absolute, as apt follows them', async () => {
    const host = new FakeHost();
    host.http.on(`${DEBIAN}/dists/bookworm/Release`, { status: 302, location: '/mirror/debian/dists/bookworm/Release' });
    host.http.on('http://deb.debian.org/mirror/debian/dists/bookworm/Release', { status: 301, location: 'https://other.example/debian/dists/bookworm/Release' });
    expect(await askArchive(host, use)).toEqual({ kind: 'found' });
    expect(host.http.urls()).toEqual([`${DEBIAN}/dists/bookworm/Release`, 'http://deb.debian.org/mirror/debian/dists/bookworm/Release', 'https://other.example/debian/dists/bookworm/Release']);
  });

  test('a redirect loop ends after 5 redirects as unreachable; a 404 after a redirect names the last URL', async () => {
    const loop = new FakeHost();
    loop.http.on(() => true, { status: 307, location: '/again' });
    expect(await askArchive(loop, use)).toEqual({ kind: 'unreachable', url: 'http://deb.debian.org/again', reason: 'more than 5 redirects' });
    expect(loop.http.calls).toHaveLength(6);
    const moved = new FakeHost();
    moved.http.on(`${DEBIAN}/dists/bookworm/Release`, { status: 301, location: 'http://new.example/debian/dists/bookworm/Release' }).on(() => true, { status: 404 });
    expect(await askArchive(moved, use)).toEqual({ kind: 'missing', url: 'http://new.example/debian/dists/bookworm/Release', status: 404 });
  });

  test('a redirect to something that is not a URL: unreachable, naming it', async () => {
    const host = new FakeHost();
    host.http.on(() => true, { status: 302, location: 'http://[bad' });
    expect(await askArchive(host, use)).toEqual({ kind: 'unreachable', url: `${DEBIAN}/dists/bookworm/Release`, reason: 'redirected to "http://[bad", which is not a URL' });
  });

  test('archivesToCheck: only create-machine steps count, in plan order, deduplicated', () => {
    const text = yaml('machines:', '  a: {}', '  b: {}');
    const m = parseManifest(FILE, text);
    const create = (name: string) => ({ kind: 'create-machine', machine: name, spec: m.machines[name], entries: [], record: {}, reason: 'r' }) as never;
    const uses = archivesToCheck({ manifest: '', steps: [create('a'), { kind: 'start-machine', machine: 'x', reason: 'r' }, create('b')], conflicts: [], notices: [], summary: [], unmanaged: [] });
    expect(uses.map((u) => [u.mirror, u.suite, u.machines.map((x) => x.name)])).toEqual([[DEBIAN, 'bookworm', ['a', 'b']]]);
  });
});
