// The fleet's transport: the system's OpenSSH client, one multiplexed connection per host.
//
// What reaches a remote host's shell is only ever built by remoteCommand(): every word of an
// argument vector in single quotes. The manifest itself never goes on a command line: each host
// gets its slice on standard input. nspawnctl never weakens ssh: the user's ~/.ssh/config, agent
// and known_hosts are used as they are, and no option that turns host key checking off is added.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { NspawnctlError } from '../errors';
import { Runner, RunResult } from '../host/runner';
import { SSH_DESTINATION_PATTERN } from '../manifest/schema';

/** How a host is reached: `ssh` is anything ssh accepts as a destination (user@addr, an alias). */
export interface SshTarget {
  /** The host's name in the manifest. */
  name: string;
  ssh: string;
  port?: number;
  /** Run nspawnctl through `sudo -n` (the login user is not root). */
  sudo?: boolean;
}

/**
 * One word for a POSIX shell: in single quotes, where nothing is special; a single quote is
 * closed, written escaped, and reopened. The remote shell (the login shell sshd runs the command
 * line with) turns it back into exactly `word`.
 */
export function shellQuote(word: string): string {
  if (word.includes('\0')) throw new NspawnctlError('an argument for a remote host contains a NUL byte');
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** An argument vector as one remote command line: every word quoted, none left to the shell. */
export function remoteCommand(argv: string[]): string {
  if (argv.length === 0) throw new NspawnctlError('internal: an empty remote command');
  return argv.map(shellQuote).join(' ');
}


/**
 * The options --ssh-option may set: how to connect and authenticate, never what runs locally
 * (ProxyCommand, LocalCommand, KnownHostsCommand) and never less host key checking. Keys are
 * matched without regard to case, as ssh does.
 */
const ALLOWED_SSH_OPTIONS = [
  'AddressFamily', 'BindAddress', 'CertificateFile', 'Ciphers', 'Compression', 'ConnectionAttempts', 'ConnectTimeout',
  'GlobalKnownHostsFile', 'HostKeyAlgorithms', 'HostKeyAlias', 'IdentitiesOnly', 'IdentityAgent', 'IdentityFile', 'IPQoS',
  'KexAlgorithms', 'LogLevel', 'MACs', 'PreferredAuthentications', 'ProxyJump', 'PubkeyAcceptedAlgorithms', 'ServerAliveCountMax',
  'ServerAliveInterval', 'StrictHostKeyChecking', 'User', 'UserKnownHostsFile',
];
const ALLOWED = new Map(ALLOWED_SSH_OPTIONS.map((k) => [k.toLowerCase(), k]));

/**
 * --ssh-option values, checked: KEY=VALUE with a key of ALLOWED_SSH_OPTIONS and a plain value (no
 * quotes, spaces or #, which ssh would read its own way); StrictHostKeyChecking only `yes`, and no
 * known_hosts file that is not one (/dev/null, none).
 */
export function checkSshOptions(options: string[]): string[] {
  for (const o of options) {
    const m = /^([A-Za-z][A-Za-z0-9]*)=([^\s"'#\\\x00-\x1f\x7f]+)$/.exec(o);
    if (!m) {
      throw new NspawnctlError(`--ssh-option ${JSON.stringify(o)} is not KEY=VALUE as nspawnctl passes it to ssh -o`, { exitCode: 2, hint: 'For example --ssh-option ConnectTimeout=10 (no spaces, quotes or # in the value).' });
    }
    const key = ALLOWED.get(m[1].toLowerCase());
    if (!key) {
      throw new NspawnctlError(`--ssh-option ${m[1]} is not one nspawnctl passes on`, { exitCode: 2, hint: `It takes ${ALLOWED_SSH_OPTIONS.join(', ')}. Anything else (ProxyCommand, say) belongs in your ~/.ssh/config, under a Host alias that hosts: can name.` });
    }
    const value = m[2];
    const offHostKeys = (key === 'StrictHostKeyChecking' && value.toLowerCase() !== 'yes') || (key === 'UserKnownHostsFile' && (value.toLowerCase() === 'none' || posix.normalize(value) === '/dev/null'));
    if (offHostKeys) {
      throw new NspawnctlError(`--ssh-option ${o} would weaken host key checking; nspawnctl does not do that`, { exitCode: 2, hint: 'Add the host key to known_hosts (ssh-keyscan, then check its fingerprint), or set it in your ~/.ssh/config if you really mean it.' });
    }
  }
  return options;
}

export interface SshOptions {
  /** Extra `-o` options from --ssh-option. */
  options?: string[];
  /** Seconds before a connection attempt gives up (ConnectTimeout). */
  connectTimeoutSec?: number;
}

/**
 * The ssh command line for one remote command: the shared control socket (opened by the first
 * call for the host, reused by the others, kept for a minute after the last), batch mode (no
 * password prompt a script would hang on; keys and the agent only), then the user's options,
 * the port, `--`, the destination and the quoted command.
 */
export function sshArgv(target: SshTarget, controlDir: string, remoteArgv: string[], options: SshOptions = {}): string[] {
  if (!SSH_DESTINATION_PATTERN.test(target.ssh)) throw new NspawnctlError(`host ${target.name}: ssh ${JSON.stringify(target.ssh)} is not a destination ssh accepts`, { exitCode: 2 });
  const command = target.sudo ? ['sudo', '-n', '--', ...remoteArgv] : remoteArgv;
  return [
    '-o', 'ControlMaster=auto',
    '-o', `ControlPath=${join(controlDir, '%C')}`,
    '-o', 'ControlPersist=60',
    '-o', 'BatchMode=yes',
    // ssh keeps the first value it is given for an option: the user's come before the default
    // ConnectTimeout (so --ssh-option ConnectTimeout=5 counts), after what nspawnctl relies on.
    ...(options.options ?? []).flatMap((o) => ['-o', o]),
    '-o', `ConnectTimeout=${options.connectTimeoutSec ?? 15}`,
    // A host that stops answering mid-command is given up after a minute, not waited on for ever.
    '-o', 'ServerAliveInterval=15',
    '-o', 'ServerAliveCountMax=4',
    ...(target.port !== undefined ? ['-p', String(target.port)] : []),
    '--',
    target.ssh,
    remoteCommand(command),
  ];
}

/** The first line ssh said about a failed connection, for the per-host report. */
export function sshError(r: RunResult): string {
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('Warning: Permanently added'));
  return lines[lines.length - 1]?.slice(0, 300) ?? `ssh exited ${r.exitCode}`;
}

/** ssh's own exit status for "could not connect or authenticate" (a remote command's is its own). */
export const SSH_FAILED = 255;

/**
 * The connections of one nspawnctl run: a private directory for the control sockets (mode 0700,
 * removed at the end), and the hosts whose master was opened, closed with `ssh -O exit`.
 */
export class SshTransport {
  readonly controlDir: string;
  private readonly used = new Map<string, SshTarget>();

  constructor(private readonly runner: Runner, readonly sshOptions: SshOptions = {}, baseDir = tmpdir()) {
    this.controlDir = mkdtempSync(join(baseDir, 'nspawnctl-ssh-'));
  }

  /** Runs argv on the host; `input` goes to its standard input. Never throws for a non-zero exit. */
  run(target: SshTarget, argv: string[], o: { input?: string | Uint8Array; timeoutMs?: number; onLine?: (line: string) => void; afterInterrupt?: boolean } = {}): Promise<RunResult> {
    this.used.set(target.name, target);
    return this.runner.run('ssh', sshArgv(target, this.controlDir, argv, this.sshOptions), { allowFailure: true, input: o.input, timeoutMs: o.timeoutMs, onLine: o.onLine, afterInterrupt: o.afterInterrupt });
  }

  /** Closes every master this run opened and removes the socket directory. */
  async close(): Promise<void> {
    await Promise.all(
      [...this.used.values()].map((t) =>
        this.runner
          // With the user's options too: User, Port, Hostname or ProxyJump there change %C.
          .run('ssh', ['-o', `ControlPath=${join(this.controlDir, '%C')}`, ...(this.sshOptions.options ?? []).flatMap((o) => ['-o', o]), ...(t.port !== undefined ? ['-p', String(t.port)] : []), '-O', 'exit', '--', t.ssh], { allowFailure: true, timeoutMs: 10_000, afterInterrupt: true })
          .catch(() => undefined),
      ),
    );
    rmSync(this.controlDir, { recursive: true, force: true });
  }
}
