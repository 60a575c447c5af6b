// The fleet's transport: what reaches a remote shell (checked with the real /bin/sh, and bash when
// there is one), the exact ssh command line (checked against the real ssh's own reading of it
// with ssh -G when ssh is installed), --ssh-option's checks, and SshTransport's connections.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { NspawnctlError } from '../../src/errors';
import { checkSshOptions, remoteCommand, shellQuote, sshArgv, SshTarget, SshTransport } from '../../src/fleet/ssh';
import { FakeHost } from '../helpers/fake-host';

const hasProgram = (p: string) => spawnSync(p, ['-c', 'exit 0']).status === 0;
const SHELLS = ['sh', ...(hasProgram('bash') ? ['bash'] : [])];
const HAS_SSH = spawnSync('ssh', ['-V']).status === 0;
const withSsh = HAS_SSH ? test : test.skip;

let dir: string;
let marker: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nspawnctl-ssh-test-'));
  marker = join(dir, 'PWNED');
  // Something for an unquoted * to expand to.
  writeFileSync(join(dir, 'glob-bait'), '');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The hostile words, each with a name; the marker path is only known per test. */
function corpus(m: string): [string, string][] {
  return [
    ['command substitution', `$(touch ${m})`],
    ['backticks', `\`touch ${m}\``],
    ['semicolon', `; touch ${m}`],
    ['and-and', `&& touch ${m}`],
    ['pipe', `| touch ${m}`],
    ['single quote', "it's"],
    ['single quote breaking out', `'; touch ${m}; '`],
    ['the escape sequence itself', `'\\''`],
    ['double quotes', `"$(touch ${m})"`],
    ['newline then a command', `x\ntouch ${m}`],
    ['tab', 'a\tb'],
    ['glob', '*'],
    ['tilde', '~'],
    ['tilde path', '~/x'],
    ['option-looking', '-rf'],
    ['empty string', ''],
    ['only spaces', '   '],
    ['variables', '$HOME ${PATH} $0 $@ $?'],
    ['backslashes', 'a\\b\\\\c\\'],
    ['redirection', `> ${m}`],
    ['background', `& touch ${m} &`],
    ['subshell and braces', `(touch ${m}) { touch ${m}; }`],
    ['history and comment', '!! # not a comment'],
    ['control characters', '\x01\x1b[31m\x7f\r'],
    ['unicode', 'grüße 日本語 🚀 \u202e\u200b'],
    ['10 KB', `${"a'b\"c$`\\ ".repeat(1024)}`.slice(0, 10 * 1024)],
  ];
}

/** Runs `printf '%s\0' WORDS...` as one remote command line through `shell -c`; the words it printed. */
function roundTrip(shell: string, words: string[]): { words: Buffer[]; status: number | null; stderr: string } {
  const r = spawnSync(shell, ['-c', remoteCommand(['printf', '%s\\0', ...words])], { cwd: dir, env: { ...process.env, HOME: dir } });
  const out = r.stdout;
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = out.indexOf(0); i >= 0; i = out.indexOf(0, start)) {
    parts.push(out.subarray(start, i));
    start = i + 1;
  }
  expect(start).toBe(out.length);
  return { words: parts, status: r.status, stderr: r.stderr.toString() };
}

describe('shellQuote and remoteCommand', () => {
  test('a word is put in single quotes, a single quote written as quote-backslash-quote-quote', () => {
    expect(shellQuote('plan')).toBe("'plan'");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(shellQuote('')).toBe("''");
  });

  test('remoteCommand quotes every word and joins them with one space', () => {
    expect(remoteCommand(['nspawnctl', 'status', 'web', '--json'])).toBe("'nspawnctl' 'status' 'web' '--json'");
  });

  test('an empty argument vector is refused', () => {
    expect(() => remoteCommand([])).toThrow('internal: an empty remote command');
  });

  test('a NUL byte is refused, alone or among other words', () => {
    expect(() => shellQuote('a\0b')).toThrow(new NspawnctlError('an argument for a remote host contains a NUL byte'));
    expect(() => remoteCommand(['nspawnctl', 'status', 'web\0; touch /tmp/x'])).toThrow(NspawnctlError);
    expect(() => remoteCommand(['\0'])).toThrow('contains a NUL byte');
  });

  describe.each(SHELLS)('through the real %s', (shell) => {
    test.each(corpus('MARKER'))('%s arrives byte for byte and runs nothing', (_name, template) => {
      const word = template.split('MARKER').join(marker);
      const r = roundTrip(shell, [word]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.words).toEqual([Buffer.from(word, 'utf8')]);
      expect(existsSync(marker)).toBe(false);
    });

    test('the whole corpus in one command line: every word in its place, nothing ran', () => {
      const words = corpus(marker).map(([, w]) => w);
      const r = roundTrip(shell, words);
      expect(r.status).toBe(0);
      expect(r.words).toEqual(words.map((w) => Buffer.from(w, 'utf8')));
      expect(existsSync(marker)).toBe(false);
      expect(readdirSync(dir)).toEqual(['glob-bait']);
    });
  });

  test('the marker check can fail: the same payloads without quoting do run', () => {
    // The control for the tests above: joined by hand instead of by remoteCommand, the shell runs them.
    for (const [name, word] of corpus(marker).filter(([n]) => ['command substitution', 'backticks', 'semicolon', 'newline then a command'].includes(n))) {
      rmSync(marker, { force: true });
      spawnSync('sh', ['-c', `printf '%s' ${word}`], { cwd: dir });
      expect([name, existsSync(marker)]).toEqual([name, true]);
    }
  });

  test('any string without NUL survives the real sh unchanged (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc
            .oneof(fc.string({ unit: 'binary', maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 10 }), fc.stringMatching(/^[-'"$`\\;&|*?~(){}<>!#\n\t ]{0,12}$/))
            .map((w) => w.replace(/\0/g, ''))
            // A lone surrogate has no UTF-8 form: it could not arrive as itself, quoted or not.
            .filter((w) => !/\p{Surrogate}/u.test(w)),
          { minLength: 1, maxLength: 6 },
        ),
        (words) => {
          const r = roundTrip('sh', words);
          expect(r.words).toEqual(words.map((w) => Buffer.from(w, 'utf8')));
        },
      ),
      { numRuns: 150 },
    );
    expect(readdirSync(dir)).toEqual(['glob-bait']);
  });
});

describe('sshArgv', () => {
  const alpha: SshTarget = { name: 'alpha', ssh: 'root@10.0.0.5' };
  const beta: SshTarget = { name: 'beta', ssh: 'deploy@beta.example', port: 2222, sudo: true };
  const PLAN = ['nspawnctl', 'plan', '--json', '-'];

  test('without port or sudo: control socket, batch mode, default timeout, --, destination, quoted command', () => {
    expect(sshArgv(alpha, '/run/user/0/ctl', PLAN)).toEqual([
      '-o', 'ControlMaster=auto',
      '-o', 'ControlPath=/run/user/0/ctl/%C',
      '-o', 'ControlPersist=60',
      '-o', 'BatchMode=yes',
      '-o', 'ConnectTimeout=15',
      '-o', 'ServerAliveInterval=15',
      '-o', 'ServerAliveCountMax=4',
      '--',
      'root@10.0.0.5',
      "'nspawnctl' 'plan' '--json' '-'",
    ]);
  });

  test('with port, sudo and --ssh-option values: -p before --, sudo -n -- inside the quoted command, each option after -o', () => {
    expect(sshArgv(beta, '/tmp/c', PLAN, { options: ['ServerAliveInterval=10', 'IdentitiesOnly=yes'], connectTimeoutSec: 7 })).toEqual([
      '-o', 'ControlMaster=auto',
      '-o', 'ControlPath=/tmp/c/%C',
      '-o', 'ControlPersist=60',
      '-o', 'BatchMode=yes',
      '-o', 'ServerAliveInterval=10',
      '-o', 'IdentitiesOnly=yes',
      '-o', 'ConnectTimeout=7',
      '-o', 'ServerAliveInterval=15',
      '-o', 'ServerAliveCountMax=4',
      '-p', '2222',
      '--',
      'deploy@beta.example',
      "'sudo' '-n' '--' 'nspawnctl' 'plan' '--json' '-'",
    ]);
  });

  test('sudo: false and a port: no sudo in the command, the port still given', () => {
    const argv = sshArgv({ name: 'g', ssh: 'gamma', port: 22, sudo: false }, '/c', ['nspawnctl', '--version']);
    expect(argv.slice(-5)).toEqual(['-p', '22', '--', 'gamma', "'nspawnctl' '--version'"]);
  });

  test.each([
    ['starting with -', '-oProxyCommand=touch /tmp/x'],
    ['a bare option', '-v'],
    ['a space', 'root@a b'],
    ['a newline', 'root@a\nb'],
    ['a trailing newline', 'root@a\n'],
    ['a tab', 'a\tb'],
    ['empty', ''],
  ])('a destination with %s is refused with exit code 2', (_what, ssh) => {
    let thrown: unknown;
    try {
      sshArgv({ name: 'bad', ssh }, '/c', ['nspawnctl', '--version']);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(NspawnctlError);
    expect((thrown as NspawnctlError).exitCode).toBe(2);
    expect((thrown as NspawnctlError).message).toBe(`host bad: ssh ${JSON.stringify(ssh)} is not a destination ssh accepts`);
  });

  withSsh('the real ssh reads it as meant: the user\'s ConnectTimeout wins over the default, nspawnctl\'s control options over the user\'s', () => {
    // ssh keeps the first value given for an option.
    const argv = sshArgv(beta, dir, PLAN, { options: ['ConnectTimeout=5', 'BatchMode=no', `ControlPath=${join(dir, 'other')}`] });
    const r = spawnSync('ssh', ['-G', '-F', '/dev/null', ...argv], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const config = Object.fromEntries(r.stdout.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]));
    expect({ user: config.user, hostname: config.hostname, port: config.port, batchmode: config.batchmode, connecttimeout: config.connecttimeout, controlmaster: config.controlmaster, controlpersist: config.controlpersist })
      .toEqual({ user: 'deploy', hostname: 'beta.example', port: '2222', batchmode: 'yes', connecttimeout: '5', controlmaster: 'auto', controlpersist: '60' });
    expect(config.controlpath).toMatch(new RegExp(`^${dir}/[0-9a-f]{40}$`));
  });
});

describe('checkSshOptions', () => {
  function refusal(option: string): NspawnctlError {
    try {
      checkSshOptions(['ConnectTimeout=5', option]);
    } catch (err) {
      if (err instanceof NspawnctlError) return err;
      throw err;
    }
    throw new Error(`expected ${JSON.stringify(option)} to be refused`);
  }

  test('accepts the allowed options as KEY=VALUE, in any case, and returns them unchanged', () => {
    const options = ['ConnectTimeout=5', 'serveraliveinterval=10', 'StrictHostKeyChecking=yes', 'UserKnownHostsFile=/etc/ssh/fleet_known_hosts', 'GlobalKnownHostsFile=/dev/null', 'IdentityFile=/root/.ssh/fleet', 'ProxyJump=bastion'];
    expect(checkSshOptions(options)).toBe(options);
    expect(checkSshOptions([])).toEqual([]);
  });

  test.each([
    'StrictHostKeyChecking=no',
    'StrictHostKeyChecking=off',
    'stricthostkeychecking=NO',
    'StrictHostKeyChecking=false',
    'StrictHostKeyChecking=accept-new',
    'UserKnownHostsFile=/dev/null',
    'UserKnownHostsFile=/dev//null',
    'UserKnownHostsFile=none',
  ])('refuses %j: it would weaken host key checking (exit code 2)', (option) => {
    const err = refusal(option);
    expect(err.message).toBe(`--ssh-option ${option} would weaken host key checking; nspawnctl does not do that`);
    expect(err.exitCode).toBe(2);
    expect(err.hint).toMatch(/known_hosts/);
  });

  test.each([
    ['ProxyCommand=/usr/bin/nc', 'ProxyCommand'],
    ['ProxyCommand=sh', 'ProxyCommand'],
    ['LocalCommand=id', 'LocalCommand'],
    ['PermitLocalCommand=yes', 'PermitLocalCommand'],
    ['KnownHostsCommand=/bin/true', 'KnownHostsCommand'],
    ['CheckHostIP=no', 'CheckHostIP'],
    ['ControlPath=/tmp/other', 'ControlPath'],
  ])('refuses %j: an option nspawnctl does not pass on (it could run a local command or change what nspawnctl relies on)', (option, key) => {
    const err = refusal(option);
    expect(err.message).toBe(`--ssh-option ${key} is not one nspawnctl passes on`);
    expect(err.exitCode).toBe(2);
  });

  test.each([
    ['a newline smuggling a second option', 'ConnectTimeout=5\nProxyCommand=touch /tmp/x'],
    ['a carriage return', 'ConnectTimeout=5\r'],
    ['a NUL byte', 'ConnectTimeout=5\0'],
    ['a command-line flag', '-v'],
    ['a key without value', 'ConnectTimeout'],
    ['a value without key', '=5'],
    ['an empty string', ''],
    ['a space instead of =', 'StrictHostKeyChecking no'],
    ['a value in quotes', 'StrictHostKeyChecking="no"'],
    ['a comment after the value', 'StrictHostKeyChecking=yes #'],
  ])('refuses %s: not KEY=VALUE (exit code 2)', (_what, option) => {
    const err = refusal(option);
    expect(err.message).toBe(`--ssh-option ${JSON.stringify(option)} is not KEY=VALUE as nspawnctl passes it to ssh -o`);
    expect(err.exitCode).toBe(2);
  });

  withSsh('each refused host-key option is one the real ssh reads as checking off', () => {
    const weakening = ['StrictHostKeyChecking=false', 'StrictHostKeyChecking="no"', "StrictHostKeyChecking='no'", 'StrictHostKeyChecking=off', 'UserKnownHostsFile="/dev/null"', 'UserKnownHostsFile=none'];
    for (const o of weakening) {
      const r = spawnSync('ssh', ['-G', '-F', '/dev/null', '-o', o, 'example.org'], { encoding: 'utf8' });
      const lines = r.stdout.split('\n');
      const off = lines.includes('stricthostkeychecking false') || lines.includes('userknownhostsfile /dev/null') || lines.includes('userknownhostsfile none');
      expect([o, off]).toEqual([o, true]);
    }
  });
});

describe('SshTransport', () => {
  const alpha: SshTarget = { name: 'alpha', ssh: 'root@10.0.0.5' };
  const beta: SshTarget = { name: 'beta', ssh: 'deploy@beta.example', port: 2222, sudo: true };

  test('its control directory is private (0700) and under the given base directory', () => {
    const t = new SshTransport(new FakeHost().runner, {}, dir);
    expect(t.controlDir.startsWith(join(dir, 'nspawnctl-ssh-'))).toBe(true);
    expect(statSync(t.controlDir).mode & 0o777).toBe(0o700);
  });

  test('run() calls ssh with sshArgv, the input on stdin, and returns a failed exit instead of throwing', async () => {
    const host = new FakeHost();
    host.runner.on((argv) => argv[0] === 'ssh' && argv.includes('root@10.0.0.5'), { exitCode: 255, stderr: 'ssh: connect to host 10.0.0.5 port 22: Connection refused\n' });
    const options = { options: ['ConnectTimeout=5'] };
    const t = new SshTransport(host.runner, options, dir);
    const r = await t.run(alpha, ['nspawnctl', 'plan', '--json', '-'], { input: 'machines: {}\n', timeoutMs: 1234 });
    expect(r.exitCode).toBe(255);
    expect(host.runner.calls).toHaveLength(1);
    const call = host.runner.calls[0];
    expect([call.file, ...call.args]).toEqual(['ssh', ...sshArgv(alpha, t.controlDir, ['nspawnctl', 'plan', '--json', '-'], options)]);
    expect(call.options).toMatchObject({ allowFailure: true, input: 'machines: {}\n', timeoutMs: 1234 });
    host.assertNoUnmatchedCalls();
  });

  test('close() runs ssh -O exit once per host used, with its port and the user\'s options, and removes the control directory', async () => {
    const host = new FakeHost();
    host.runner.on((argv) => argv[0] === 'ssh');
    const t = new SshTransport(host.runner, { options: ['User=ops'] }, dir);
    await t.run(alpha, ['nspawnctl', '--version']);
    await t.run(alpha, ['nspawnctl', 'plan', '--json', '-']);
    await t.run(beta, ['nspawnctl', '--version']);
    const before = host.runner.calls.length;
    await t.close();
    const closing = host.runner.argvs().slice(before);
    const control = `ControlPath=${join(t.controlDir, '%C')}`;
    expect(closing.sort()).toEqual([
      ['ssh', '-o', control, '-o', 'User=ops', '-O', 'exit', '--', 'root@10.0.0.5'],
      ['ssh', '-o', control, '-o', 'User=ops', '-p', '2222', '-O', 'exit', '--', 'deploy@beta.example'],
    ]);
    expect(existsSync(t.controlDir)).toBe(false);
    expect(readdirSync(dir)).toEqual(['glob-bait']);
    host.assertNoUnmatchedCalls();
  });

  test('close() of a transport that ran nothing runs nothing and still removes the directory', async () => {
    const host = new FakeHost();
    const t = new SshTransport(host.runner, {}, dir);
    await t.close();
    expect(host.runner.calls).toEqual([]);
    expect(existsSync(t.controlDir)).toBe(false);
  });

  test('close() removes the directory even when ssh -O exit itself fails', async () => {
    const host = new FakeHost();
    // Only the run is scripted: the -O exit call throws (an unexpected command).
    host.runner.on((argv) => argv[0] === 'ssh' && !argv.includes('-O'), { exitCode: 0 });
    const t = new SshTransport(host.runner, {}, dir);
    await t.run(alpha, ['true']);
    await expect(t.close()).resolves.toBeUndefined();
    expect(host.runner.unmatched).toHaveLength(1);
    expect(existsSync(t.controlDir)).toBe(false);
  });

  withSsh('the -O exit command line names the same control socket the runs used (the real ssh\'s %C)', async () => {
    const host = new FakeHost();
    host.runner.on((argv) => argv[0] === 'ssh');
    const options = { options: ['User=ops', 'ProxyJump=bastion.example'] };
    const t = new SshTransport(host.runner, options, dir);
    await t.run(beta, ['nspawnctl', '--version']);
    await t.close();
    const [run, exit] = host.runner.argvs();
    const controlPath = (argv: string[]) => {
      const r = spawnSync('ssh', ['-G', '-F', '/dev/null', ...argv.slice(1).filter((a) => a !== '-O' && a !== 'exit')], { encoding: 'utf8' });
      return r.stdout.split('\n').find((l) => l.startsWith('controlpath '));
    };
    expect(controlPath(exit)).toBeDefined();
    expect(controlPath(exit)).toBe(controlPath(run));
  });
});
