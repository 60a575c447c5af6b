// What every command shares: how it gets its Host, and how errors become exit codes.
import { Command, Flags, Interfaces } from '@oclif/core';
import { createInterface } from 'node:readline/promises';
import { formatErrorJson, formatErrorText } from './cli/report';
import { unknownFlagsError } from './cli/suggest';
import { ExitCode, InterruptedError, NspawnctlError, PreflightError } from './errors';
import { createRealHost, Host, STDIN_ARG } from './host/host';
import { acquireLock, formatHolder } from './host/lock';
import type { FleetIo } from './fleet/commands';
import type { Manifest } from './manifest/schema';

export abstract class BaseCommand extends Command {
  static override enableJsonFlag = false;

  private readonly interrupt = new AbortController();
  private onSignal?: (signal: NodeJS.Signals) => void;

  // The first SIGINT/SIGTERM stops the running child and lets the command clean up (staging
  // directory, lock) and exit 130; a second one exits at once. Everything a command waits on
  // listens to the same AbortSignal (the Host's runner, lock and readInput; ask() below), and
  // nothing waits in a blocking read on Node's thread pool, which would keep even process.exit
  // from returning (it joins those threads).
  public override async init(): Promise<void> {
    await super.init();
    this.onSignal = (signal) => {
      if (this.interrupt.signal.aborted) process.exit(ExitCode.interrupted);
      process.stderr.write(`nspawnctl: ${signal} received, stopping (again to force)\n`);
      // The reason names the signal: exec passes it on to the command it runs in a machine.
      this.interrupt.abort(signal);
    };
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  public override async finally(err: Error | undefined): Promise<unknown> {
    if (this.onSignal) {
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
    }
    const result = await super.finally(err);
    // A command whose remaining work never waited on anything (render writing files) finishes
    // anyway; after "stopping" it must not exit 0 as if nothing had happened.
    if (err === undefined && this.interrupt.signal.aborted) {
      process.stderr.write('nspawnctl: interrupted (after the command had done its work)\n');
      this.exit(ExitCode.interrupted);
    }
    return result;
  }

  /**
   * Asks a question on the terminal. SIGINT or SIGTERM ends the wait (exit 130), and so does
   * Ctrl-C at the prompt, which readline receives as a key instead of a signal.
   */
  protected async ask(question: string): Promise<string> {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    rl.on('SIGINT', () => this.onSignal?.('SIGINT'));
    try {
      return await rl.question(question, { signal: this.interrupt.signal });
    } catch (err) {
      if (this.interrupt.signal.aborted) throw new InterruptedError(undefined, 'waiting for an answer');
      throw err;
    } finally {
      rl.close();
    }
  }

  /** Refuses (PreflightError, exit 3) unless root, before the host is read or changed. */
  protected requireRoot(host: Host, command: string): void {
    if (host.uid !== 0) throw new PreflightError([{ what: `nspawnctl ${command} must run as root`, fix: 'Run it with sudo, or as root.' }]);
  }

  /** Overridden in tests to inject a fake Host. */
  protected createHost(root = '/'): Host {
    return createRealHost(root, this.interrupt.signal);
  }

  /** Runs `fn` holding the host lock (apply, destroy, host init never interleave). */
  protected async withLock<T>(host: Host, command: string, wait: boolean, fn: () => Promise<T>): Promise<T> {
    // Only root can change the host (or create the lock in /run). Commands check this with
    // requireRoot before they read the host; this is the backstop.
    this.requireRoot(host, command);
    const release = await acquireLock(host, {
      command,
      wait,
      onWait: (h) => process.stderr.write(`nspawnctl: waiting for ${h ? formatHolder(h) : 'another nspawnctl'} to finish...\n`),
    });
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  /** The working directory used to make manifest paths absolute in records. */
  protected cwd(): string {
    return process.cwd();
  }

  /** Writes a line to stdout. */
  protected out(text: string): void {
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  private jsonPrinted = false;

  /** Prints a JSON document on stdout; an error after it adds no second document. */
  protected outJson(value: unknown): void {
    this.out(JSON.stringify(value, null, 2));
    this.jsonPrinted = true;
  }

  protected wantsJson(): boolean {
    return this.argv.includes('--json');
  }

  /**
   * The manifest --manifest names when it is a fleet's (hosts:); undefined without one, for
   * standard input (read once, by the command itself) and for a one-host manifest.
   */
  protected async fleetManifest(path: string | undefined): Promise<Manifest | undefined> {
    if (path === undefined || path === STDIN_ARG) return undefined;
    // Loaded here, not at start-up: every command shares this class, few take --manifest.
    const { loadManifestFile } = require('./pipeline') as typeof import('./pipeline');
    const manifest = await loadManifestFile(this.createHost(), path);
    return manifest.fleet ? manifest : undefined;
  }

  /** What a fleet command needs of this one: the runner, where to write, the version every host should run. */
  protected fleetIo(json: boolean): FleetIo {
    return {
      runner: this.createHost().runner,
      out: (text) => this.out(text),
      err: (text) => process.stderr.write(text),
      json,
      version: this.config.version,
      renderer: this.progressRenderer(json),
      ask: process.stdin.isTTY ? (q) => this.ask(q) : undefined,
    };
  }

  /** Plain lines when stdout is not a terminal (scripts, CI), live progress otherwise. */
  protected progressRenderer(json: boolean): 'default' | 'simple' | 'silent' {
    if (json) return 'silent';
    return process.stdout.isTTY ? 'default' : 'simple';
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    // oclif's parser says only "Nonexistent flag: --dryrun"; name the flag that was meant.
    if (isNonExistentFlagsError(err)) {
      const flags = Object.values(this.ctor.flags ?? {}).filter((f) => !f.hidden);
      return this.catch(unknownFlagsError(this.config.bin, (this.id ?? '').split(':').join(' '), err.flags, flags));
    }
    if (!(err instanceof NspawnctlError)) return super.catch(err);
    process.stderr.write(formatErrorText(err));
    if (this.wantsJson() && !this.jsonPrinted) this.out(formatErrorJson(err));
    return this.exit(err.exitCode ?? ExitCode.failure);
  }
}

/** The parser's error for unknown flags (its class is not exported by @oclif/core). */
function isNonExistentFlagsError(err: Error): err is Error & { flags: string[] } {
  return err.constructor.name === 'NonExistentFlagsError' && Array.isArray((err as { flags?: unknown }).flags);
}

export const jsonFlag = Flags.boolean({ description: 'Print machine-readable JSON on stdout.', default: false });

export const waitFlag = Flags.boolean({
  description: 'When another nspawnctl is changing this host, wait for it (--no-wait: fail with exit code 5).',
  default: true,
  allowNo: true,
});

export type FlagOutput<T extends typeof Command> = Interfaces.InferredFlags<T['flags']>;
