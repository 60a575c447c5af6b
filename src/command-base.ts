// What every command shares: how it gets its Host, and how errors become exit codes.
import { Command, Flags, Interfaces } from '@oclif/core';
import { ExitCode, ManifestError, NspawnctlError } from './errors';
import { createRealHost, Host } from './host/host';

export abstract class BaseCommand extends Command {
  static override enableJsonFlag = false;

  /** Overridden in tests to inject a fake Host. */
  protected createHost(root = '/'): Host {
    return createRealHost(root);
  }

  /** The working directory used to make manifest paths absolute in records. */
  protected cwd(): string {
    return process.cwd();
  }

  /** Writes a line to stdout. */
  protected out(text: string): void {
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  protected wantsJson(): boolean {
    return this.argv.includes('--json');
  }

  /** Plain lines when stdout is not a terminal (scripts, CI), live progress otherwise. */
  protected progressRenderer(json: boolean): 'default' | 'simple' | 'silent' {
    if (json) return 'silent';
    return process.stdout.isTTY ? 'default' : 'simple';
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (!(err instanceof NspawnctlError)) return super.catch(err);
    const lines = err instanceof ManifestError ? [err.message] : [`nspawnctl: ${err.message}`];
    if (err.hint) lines.push(`hint: ${err.hint}`);
    process.stderr.write(`${lines.join('\n')}\n`);
    if (this.wantsJson()) {
      const problems = err instanceof ManifestError ? err.problems : undefined;
      this.out(JSON.stringify({ error: { kind: err.name, message: err.message, hint: err.hint, exitCode: err.exitCode, problems } }, null, 2));
    }
    return this.exit(err.exitCode ?? ExitCode.failure);
  }
}

export const jsonFlag = Flags.boolean({ description: 'Print machine-readable JSON on stdout.', default: false });

export type FlagOutput<T extends typeof Command> = Interfaces.InferredFlags<T['flags']>;
