// The .deb on a bare Debian 12 host with no node of ours: lintian finds no error in it; apt-get
// install of it pulls Debian's nodejs and the tools through the apt cache; host init and apply
// work with the installed nspawnctl; --help, the man page and the bash completion are there and
// work; dpkg --purge removes every file it installed and leaves the machines and their state.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { aptInstall, runningMachines, smallManifest } from './distro';
import { e2eSuite, REPO, Sandbox, timedTest } from './sandbox';

const sb = new Sandbox('nsctl-e2e-deb');
const timings: string[] = [];
const timed = (name: string, fn: () => void) => timedTest(timings, name, fn);
const DEB_INSIDE = '/root/nspawnctl.deb';

/** Runs a command on this machine; throws with its output when it fails. */
function runHere(file: string, args: string[], timeoutMs = 600_000): string {
  const r = spawnSync(file, args, { cwd: REPO, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status}:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  return r.stdout;
}

/** Every managed machine's state as nspawnctl and systemd see it: compared around the purge. */
function machineState(): string {
  return sb.exec(['sh', '-c', 'find /var/lib/nspawnctl /etc/systemd/nspawn /var/lib/machines -maxdepth 2 -printf "%p %y %s %T@\\n" | sort']).stdout;
}

e2eSuite(
  'the .deb on a bare Debian 12 host',
  () => {
    let out = '';
    let deb = '';

    beforeAll(() => {
      // Built here, not in pkg/: other suites may run `npm run package` at the same time.
      out = mkdtempSync('/var/tmp/nspawnctl-deb-e2e-');
      runHere('bash', ['scripts/package.sh', '--out', out]);
      deb = join(out, readdirSync(out).find((f) => f.endsWith('_all.deb')) ?? 'missing.deb');
      const proxy = sb.up(['--bare', '--no-node']);
      sb.write('/root/machines.yaml', smallManifest(proxy, { name: 'debnet', prefix: '10.79.0' }));
    }, 900_000);

    afterAll(() => {
      sb.run(['down']);
      if (out) rmSync(out, { recursive: true, force: true });
      process.stderr.write(`\n${timings.join('\n')}\n`);
    }, 120_000);

    timed('1. the package: its fields, its files, and no lintian error', () => {
      const field = (name: string) => runHere('dpkg-deb', ['-f', deb, name]).trim();
      expect([field('Package'), field('Architecture'), field('Depends'), field('Recommends')]).toEqual([
        'nspawnctl',
        'all',
        'nodejs (>= 18.19), systemd-container, mmdebstrap | debootstrap',
        'nftables, apt-cacher-ng',
      ]);
      const files = runHere('dpkg-deb', ['-c', deb]).split('\n').map((l) => l.split(/\s+/).slice(5).join(' '));
      for (const f of ['./usr/bin/nspawnctl', './usr/lib/nspawnctl/bin/run.js', './usr/lib/nspawnctl/oclif.manifest.json', './usr/lib/nspawnctl/node_modules/@oclif/core/package.json', './usr/share/man/man1/nspawnctl.1.gz', './usr/share/bash-completion/completions/nspawnctl', './usr/share/doc/nspawnctl/copyright', './usr/share/doc/nspawnctl/changelog.gz']) {
        expect(files).toContain(f);
      }
      // Only production dependencies.
      expect(files.filter((f) => /node_modules\/(jest|typescript|ts-jest|fast-check)\//.test(f))).toEqual([]);
      const lintian = spawnSync('lintian', ['--no-tag-display-limit', deb], { encoding: 'utf8', timeout: 300_000 });
      const tags = `${lintian.stdout}${lintian.stderr}`.split('\n').filter((l) => /^[EW]: /.test(l));
      process.stderr.write(`lintian:\n${tags.join('\n')}\n`);
      expect(tags.filter((l) => l.startsWith('E: '))).toEqual([]);
      expect(lintian.status).toBe(0);
    });

    timed('1b. the npm package: npm install -g of it puts nspawnctl on PATH and it runs, with the lockfile\'s versions', () => {
      const tgz = join(out, readdirSync(out).find((f) => f.endsWith('.tgz')) ?? 'missing.tgz');
      const prefix = join(out, 'global');
      runHere('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', tgz]);
      const installed = join(prefix, 'lib', 'node_modules', 'nspawnctl');
      const pjson = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
      expect(pjson.private).toBeUndefined();
      expect(pjson.files).toEqual(expect.arrayContaining(['bin', 'dist', 'templates', 'schema', 'oclif.manifest.json', 'npm-shrinkwrap.json']));
      expect(readdirSync(installed).sort()).toEqual(expect.arrayContaining(['bin', 'dist', 'node_modules', 'npm-shrinkwrap.json', 'oclif.manifest.json', 'package.json', 'templates']));
      // npm-shrinkwrap.json in the package: the versions of the lockfile, not the newest in range.
      const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8'));
      for (const dep of Object.keys(pjson.dependencies)) {
        const version = JSON.parse(readFileSync(join(installed, 'node_modules', dep, 'package.json'), 'utf8')).version;
        expect({ dep, version }).toEqual({ dep, version: lock.packages[`node_modules/${dep}`].version });
      }
      const env = { ...process.env, PATH: `${join(prefix, 'bin')}:${process.env.PATH}` };
      const which = spawnSync('sh', ['-c', 'command -v nspawnctl && nspawnctl --version && nspawnctl render --help'], { cwd: out, env, encoding: 'utf8' });
      expect(which.status).toBe(0);
      expect(which.stdout.split('\n').slice(0, 2)).toEqual([join(prefix, 'bin', 'nspawnctl'), expect.stringMatching(/^nspawnctl\/\d+\.\d+\.\d+ /)]);
      expect(which.stdout).toContain('$ nspawnctl render');
    });

    timed('2. apt-get install ./nspawnctl_*_all.deb pulls Debian\'s nodejs and the tools through the apt cache', () => {
      sb.copyIn(deb, DEB_INSIDE);
      expect(sb.exec(['sh', '-c', 'command -v node'], { check: false }).code).not.toBe(0);
      aptInstall(sb, [DEB_INSIDE]);
      const installed = sb.exec(['dpkg-query', '-W', '-f=${Package} ${Status}\\n', 'nspawnctl', 'nodejs', 'systemd-container', 'mmdebstrap', 'nftables', 'apt-cacher-ng']).stdout;
      expect(installed.trim().split('\n').sort()).toEqual(['apt-cacher-ng', 'mmdebstrap', 'nftables', 'nodejs', 'nspawnctl', 'systemd-container'].map((p) => `${p} install ok installed`));
      expect(sb.exec(['sh', '-c', 'command -v nspawnctl']).stdout.trim()).toBe('/usr/bin/nspawnctl');
      expect(sb.exec(['nspawnctl', '--version']).stdout).toMatch(/^nspawnctl\/\d+\.\d+\.\d+ linux-x64 node-v18\./);
    });

    timed('3. host init and apply with the installed nspawnctl: the machine runs and answers ping', () => {
      expect(sb.exec(['nspawnctl', 'host', 'init', '/root/machines.yaml'], { timeoutMs: 600_000 }).stdout).toMatch(/Host init done: \d+ step\(s\)\./);
      expect(sb.exec(['nspawnctl', 'apply', '/root/machines.yaml'], { timeoutMs: 900_000 }).stdout).toMatch(/Applied (\d+) of \1 step\(s\)\./);
      expect(runningMachines(sb)).toEqual(['one']);
      expect({ answered: sb.pingUntilAnswered('10.79.0.11') }).toEqual({ answered: true });
    });

    timed('4. --help, man nspawnctl (every command of the installed manifest) and bash completion (machine names too)', () => {
      const help = sb.exec(['nspawnctl', '--help']).stdout;
      expect(help).toContain('USAGE\n  $ nspawnctl [COMMAND]');
      aptInstall(sb, ['man-db', 'bash-completion']);
      const ids = Object.values(JSON.parse(sb.exec(['cat', '/usr/lib/nspawnctl/oclif.manifest.json']).stdout).commands as Record<string, { id: string; hidden?: boolean }>)
        .filter((c) => !c.hidden)
        .map((c) => c.id.replace(/:/g, ' '))
        .sort();
      expect(ids.length).toBeGreaterThan(5);
      const sections = sb.exec(['sh', '-c', 'zcat /usr/share/man/man1/nspawnctl.1.gz | sed -n "s/^\\.SS \\"\\(.*\\)\\"$/\\1/p"']).stdout.split('\n').filter(Boolean).map((s) => s.replace(/\\-/g, '-'));
      expect(sections).toEqual(ids);
      const man = sb.exec(['man', 'nspawnctl'], { env: { MANWIDTH: '100', MANPAGER: 'cat' } });
      expect(man.stderr).toBe('');
      expect(man.stdout).toMatch(/^NSPAWNCTL\(1\) +User Commands +NSPAWNCTL\(1\)/);
      for (const heading of ['NAME', 'SYNOPSIS', 'COMMANDS', 'EXIT STATUS', 'FILES', 'SEE ALSO']) expect(man.stdout).toContain(`\n${heading}\n`);
      expect(man.stdout).toContain('nspawnctl host init [FILE]');
      // bash-completion's loader finds the file by the command's name, and it completes.
      const loaded = sb.exec(['bash', '-c', 'source /usr/share/bash-completion/bash_completion; _completion_loader nspawnctl; complete -p nspawnctl']).stdout.trim();
      expect(loaded).toBe('complete -F _nspawnctl nspawnctl');
      const completeLine = (...words: string[]) =>
        sb.exec(['bash', '-c', 'source /usr/share/bash-completion/completions/nspawnctl; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _nspawnctl; printf "%s\\n" "${COMPREPLY[@]}"', 'bash', 'nspawnctl', ...words]).stdout.split('\n').filter(Boolean).sort();
      expect(completeLine('st')).toEqual(['status']);
      expect(completeLine('host', '')).toEqual(['init']);
      expect(completeLine('destroy', '')).toEqual(['one']);
      expect(completeLine('status', 'o')).toEqual(['one']);
    });

    timed('5. dpkg --purge removes every file it installed and leaves the machines, /var/lib/machines and /var/lib/nspawnctl alone', () => {
      // dpkg lists the root directory as "/.".
      const files = sb.exec(['dpkg-query', '-L', 'nspawnctl']).stdout.split('\n').filter((p) => p.startsWith('/') && p !== '/.');
      expect(files.length).toBeGreaterThan(500);
      const before = machineState();
      sb.exec(['dpkg', '--purge', 'nspawnctl']);
      expect(sb.exec(['dpkg-query', '-W', 'nspawnctl'], { check: false }).code).not.toBe(0);
      // What is still there must be a directory another package owns (/usr/bin, /usr/share/man/man1).
      const left = sb.exec(['sh', '-c', 'while IFS= read -r p; do if [ -e "$p" ] || [ -L "$p" ]; then if [ -d "$p" ] && [ ! -L "$p" ] && dpkg-query -S "$p" >/dev/null 2>&1; then :; else echo "$p"; fi; fi; done'], { input: `${files.join('\n')}\n` }).stdout;
      expect(left).toBe('');
      expect(sb.exec(['test', '-e', '/usr/lib/nspawnctl'], { check: false }).code).not.toBe(0);
      expect(machineState()).toBe(before);
      expect(before).toContain('/var/lib/nspawnctl/machines/one.json f');
      expect(before).toContain('/var/lib/machines/one d');
      expect(runningMachines(sb)).toEqual(['one']);
      expect({ answered: sb.pingUntilAnswered('10.79.0.11') }).toEqual({ answered: true });
    });

    timed('6. the sandbox leaves nothing behind on this machine', () => {
      const clean = sb.downAndCheckClean();
      expect({ code: clean.code, out: clean.stdout + clean.stderr }).toEqual({ code: 0, out: expect.stringContaining('sandbox: clean') });
    });
  },
  ['/usr/bin/dpkg-deb', '/usr/bin/lintian'],
);
