// The plan-time check of bind mount sources (src/plan/binds.ts): a missing host path stops plan
// and apply with exit 3 (it is the host that lacks it: the manifest itself is well-formed), unless
// the entry says create: true, when apply creates it empty. Nothing is created or changed by plan.
import { ExitCode, PreflightError } from '../../src/errors';
import { parseManifest } from '../../src/manifest/load';
import { assertBindSourcesExist, findBindProblems } from '../../src/plan/binds';
import { planManifest } from '../../src/pipeline';
import { answerObserveQueries, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

/** A manifest where machine web has the given bind entries (YAML flow items, one a line). */
const withBinds = (...entries: string[]) => parseManifest('machines.yaml', yaml('machines:', '  web:', '    bind:', ...entries.map((e) => `      - ${e}`)));

function hostWithSources(): FakeHost {
  const host = new FakeHost();
  host.fs.addDir('/srv/www');
  host.fs.addFile('/srv/app.conf', 'x\n');
  host.fs.addDir('/data/real');
  host.fs.addSymlink('/srv/data', '/data/real');
  host.fs.addSymlink('/srv/dangling', '/data/gone');
  return host;
}

describe('findBindProblems', () => {
  test('sources that exist are fine: a directory, a file, and a symlink to a directory', async () => {
    expect(await findBindProblems(hostWithSources(), withBinds('"/srv/www:/var/www:ro"', '/srv/app.conf:/etc/app.conf', '{ host: /srv/data, machine: /data }'))).toEqual([]);
  });

  test('a missing source, in either form, or a dangling symlink: one problem each naming machine, entry and path, with the fixes', async () => {
    const problems = await findBindProblems(hostWithSources(), withBinds('"/srv/wwww:/var/www:ro"', '{ host: /srv/logs, machine: /var/log/app }', '/srv/dangling', '/srv/www'));
    expect(problems).toEqual([
      {
        what: 'machine web, bind[0] (/srv/wwww -> /var/www): /srv/wwww does not exist on this host',
        fix: 'Create /srv/wwww, correct machines.web.bind[0], or let apply create it empty: { host: /srv/wwww, machine: /var/www, readOnly: true, create: true }',
      },
      {
        what: 'machine web, bind[1] (/srv/logs -> /var/log/app): /srv/logs does not exist on this host',
        fix: 'Create /srv/logs, correct machines.web.bind[1], or let apply create it empty: { host: /srv/logs, machine: /var/log/app, create: true }',
      },
      {
        what: 'machine web, bind[2] (/srv/dangling -> /srv/dangling): /srv/dangling does not exist on this host',
        fix: 'Create /srv/dangling, correct machines.web.bind[2], or let apply create it empty: { host: /srv/dangling, machine: /srv/dangling, create: true }',
      },
    ]);
  });

  test('create: true lets a missing source pass (apply creates it)', async () => {
    expect(await findBindProblems(hostWithSources(), withBinds('{ host: /srv/new, machine: /new, create: true }', '{ host: /srv/www, create: true }'))).toEqual([]);
  });

  test('a source that cannot be looked at (a non-root plan below a root-only directory) is reported, create or not', async () => {
    const host = hostWithSources();
    host.fs.statResolved = async () => {
      throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    };
    expect(await findBindProblems(host, withBinds('{ host: /root/data, create: true }'))).toEqual([
      { what: 'machine web, bind[0] (/root/data -> /root/data): /root/data cannot be checked (permission denied)', fix: 'Run nspawnctl as root, and check /root/data and the directories above it.' },
    ]);
  });
});

describe('planManifest with a missing bind source', () => {
  test('throws PreflightError (exit 3) before it asks or changes anything; with create: true it plans create-bind-source', async () => {
    const host = answerObserveQueries(makeBootedHost(hostWithSources()));
    const err = await planManifest(host, withBinds('"/srv/wwww:/var/www:ro"'), '/srv/conf').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PreflightError);
    expect((err as PreflightError).exitCode).toBe(ExitCode.preflight);
    expect((err as PreflightError).message).toBe('this host is not ready:\n  - machine web, bind[0] (/srv/wwww -> /var/www): /srv/wwww does not exist on this host');
    expect(host.runner.calls).toEqual([]);
    expect(host.fs.changes).toEqual([]);
    expect(host.http.calls).toEqual([]);

    const { plan } = await planManifest(host, withBinds('{ host: /srv/wwww, machine: /var/www, readOnly: true, create: true }'), '/srv/conf');
    expect(plan.steps.filter((s) => s.kind === 'create-bind-source')).toEqual([{ kind: 'create-bind-source', machine: 'web', path: '/srv/wwww', reason: 'bind mount source does not exist' }]);
    expect(host.fs.changes).toEqual([]);
  });

  test('assertBindSourcesExist passes for a manifest without binds', async () => {
    await expect(assertBindSourcesExist(new FakeHost(), parseManifest('machines.yaml', yaml('machines:', '  web: {}')))).resolves.toBeUndefined();
  });
});
