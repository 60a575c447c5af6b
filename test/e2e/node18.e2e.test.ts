// nspawnctl on Debian 12's own Node.js (18.20.4, from the archive) instead of the Node 20 this
// machine runs: the unit suite passes under it, and host init and apply of a small manifest
// work on a bare host with it (a machine runs and answers ping).
import { aptInstall, runningMachines, smallManifest } from './distro';
import { e2eSuite, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-n18');
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);

e2eSuite('Debian 12\'s own Node.js 18', () => {
  let proxy = '';

  beforeAll(() => {
    // Bare, and without this machine's node: `node` inside is only what apt installs.
    proxy = sb.up(['--bare', '--no-node']);
    sb.write('/root/machines.yaml', smallManifest(proxy, { name: 'n18net', prefix: '10.78.0' }));
  }, 900_000);

  afterAll(() => {
    sb.run(['down']);
    process.stderr.write(`\n${timings.join('\n')}\n`);
  }, 120_000);

  timed('1. apt installs Debian\'s nodejs: node --version is v18, at /usr/bin/node', () => {
    expect(sb.exec(['sh', '-c', 'command -v node'], { check: false }).code).not.toBe(0);
    expect(sb.exec(['ls', '-A', '/usr/local/bin']).stdout).toBe('');
    aptInstall(sb, ['nodejs']);
    expect(sb.exec(['sh', '-c', 'command -v node']).stdout.trim()).toBe('/usr/bin/node');
    expect(sb.exec(['node', '--version']).stdout.trim()).toMatch(/^v18\.(19|2\d)\.\d+$/);
    expect(sb.exec(['dpkg-query', '-W', '-f=${Version}', 'nodejs']).stdout).toMatch(/^18\./);
  });

  timed('2. the unit suite passes under it', () => {
    // groff, zsh, zstd and openssh-client: the man page, zsh completion, archive trailer and ssh -G tests skip without them, and a skip here
    // would hide a failure under Node 18 (the summary below must say "passed" only).
    aptInstall(sb, ['groff-base', 'zsh', 'zstd', 'openssh-client']);
    // The project is bound read-only; jest writes only its cache, under TMPDIR. /var/tmp is on
    // disk like CI's /tmp (the sandbox's /tmp is a tmpfs, whose directory sizes differ from the
    // 4096 the fake filesystem reports).
    const r = sb.exec(['sh', '-c', 'cd /opt/nspawnctl && TMPDIR=/var/tmp node node_modules/jest/bin/jest.js --selectProjects unit --ci 2>&1'], { check: false, timeoutMs: 600_000 });
    const summary = r.stdout.split('\n').filter((l) => /^(Tests|Test Suites):/.test(l));
    expect({ code: r.code, summary, failures: r.code === 0 ? '' : r.stdout.slice(-6000) }).toEqual({ code: 0, summary: [expect.stringMatching(/^Test Suites: \d+ passed, \d+ total$/), expect.stringMatching(/^Tests: +\d+ passed, \d+ total$/)], failures: '' });
  });

  timed('3. nspawnctl --version names node v18', () => {
    expect(sb.nspawnctl(['--version']).stdout).toMatch(/^nspawnctl\/\d+\.\d+\.\d+ linux-x64 node-v18\./);
  });

  timed('4. host init and apply on the bare host: the machine runs and answers ping', () => {
    const init = sb.nspawnctl(['host', 'init', '/root/machines.yaml']);
    expect(init.stdout).toMatch(/Host init done: \d+ step\(s\)\./);
    const apply = sb.nspawnctl(['apply', '/root/machines.yaml']);
    expect(apply.stdout).toMatch(/Applied (\d+) of \1 step\(s\)\./);
    expect(runningMachines(sb)).toEqual(['one']);
    expect({ answered: sb.pingUntilAnswered('10.78.0.11') }).toEqual({ answered: true });
  });

  timed('5. the sandbox leaves nothing behind on this machine', () => {
    const clean = sb.downAndCheckClean();
    expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
  });
});
