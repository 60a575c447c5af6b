// Runs external programs with argument arrays only (never a shell), through execa.
import { accessSync, constants } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { CommandFailedError, escapeControl, InterruptedError } from '../errors';
import type { PipeCommand, PipelineOptions, PipelineResult } from './archive-io';

/** Directories searched for programs; fixed, so PATH tricks cannot change what runs as root. */
export const PROGRAM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The absolute path of a program in PROGRAM_DIRS, or undefined. */
export function resolveProgram(file: string): string | undefined {
  if (file.includes('/')) return file;
  for (const dir of PROGRAM_DIRS) {
    try {
      accessSync(`${dir}/${file}`, constants.X_OK);
      return `${dir}/${file}`;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export interface RunOptions {
  /** Text written to the program's stdin; stdin is closed otherwise. */
  input?: string | Uint8Array;
  /** Extra environment variables (added to the inherited environment). */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Return a non-zero exit instead of throwing. */
  allowFailure?: boolean;
  /** Called with each line of output while the program runs (progress display), control characters escaped. */
  onLine?: (line: string) => void;
  /**
   * Long-running programs (bootstrappers, apt) get SIGTERM when nspawnctl dies, even by SIGKILL
   * (setpriv --pdeathsig), so no orphan keeps writing into a directory the next run cleans.
   */
  dieWithParent?: boolean;
  /**
   * The program uses nspawnctl's own stdin, stdout and stderr (nothing is captured: the result's
   * stdout and stderr are empty). For a program that talks to the user directly: a command run
   * inside a machine, a shell there.
   */
  inheritStdio?: boolean;
  /**
   * Each piece of output is handed over as it arrives, as text, and none is kept (the result's
   * stdout and stderr are empty): for output that may never end (journalctl --follow).
   */
  onOutput?: (text: string, stream: 'stdout' | 'stderr') => void;
  /**
   * An interrupt (SIGINT/SIGTERM) does not stop the program: the caller stops what the program
   * started (a unit inside a machine), and the program then ends by itself; its result is
   * returned as usual. It runs in its own process group, so a Ctrl-C at the terminal reaches
   * nspawnctl alone, and it gets SIGTERM when nspawnctl dies (as with dieWithParent).
   */
  waitOnInterrupt?: boolean;
  /**
   * Runs even after an interrupt, and is not stopped by it: a short command that ends what an
   * interrupted one started (a unit inside a machine), or reads how it ended. Give it a timeout.
   */
  afterInterrupt?: boolean;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

// The seam every external command goes through; tests use a recording fake.
export interface Runner {
  run(file: string, args: string[], options?: RunOptions): Promise<RunResult>;
  /**
   * Runs programs with each one's output piped into the next (tar into zstd), through Node,
   * which hashes and counts the bytes; see src/host/archive-io.ts.
   */
  pipeline(commands: PipeCommand[], options: PipelineOptions): Promise<PipelineResult>;
}

/**
 * The lines of a program's output as progress shows them: split at \n, \r\n and a lone \r
 * (progress meters), blank ones dropped, control characters escaped, because output may come
 * from inside a machine and nothing in it may reach a terminal raw.
 */
export function outputLines(text: string): string[] {
  return text
    .split(/\r\n|\n|\r/)
    .filter((line) => line.trim() !== '')
    .map(escapeControl);
}

/** Longest piece of output held back while its line is not finished (a longer one is passed on as it is). */
const MAX_PENDING_LINE = 64 * 1024;

/**
 * Turns a stream's chunks into whole lines for onLine: a line cut between two reads (or a
 * character cut between its bytes) is held back until its end arrives, so a JSON line is never
 * seen in two pieces. A carriage return ends a line too (progress bars redraw with it).
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(private readonly onLine: (line: string) => void) {}

  write(chunk: Buffer | string): void {
    const text = this.pending + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    const cut = Math.max(text.lastIndexOf('\n'), text.lastIndexOf('\r'));
    if (cut < 0 && text.length <= MAX_PENDING_LINE) {
      this.pending = text;
      return;
    }
    const done = cut < 0 ? text : text.slice(0, cut + 1);
    this.pending = cut < 0 ? '' : text.slice(cut + 1);
    for (const line of outputLines(done)) this.onLine(line);
  }

  end(): void {
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    for (const line of outputLines(rest)) this.onLine(line);
  }
}

/** The real runner. execa is ESM-only and loaded on first use, which keeps startup fast. */
export function createExecaRunner(signal?: AbortSignal): Runner {
  return {
    async pipeline(commands, options) {
      // Loaded on first use, like execa: most commands never run a pipeline.
      const { runPipeline } = require('./archive-io') as typeof import('./archive-io');
      return runPipeline(commands, options, signal);
    },
    async run(file, args, options = {}) {
      const argv = [file, ...args];
      const program = resolveProgram(file);
      if (!program) {
        // Reported like a shell's "command not found", so callers can treat it as a failure.
        const message = `${file}: not found in ${PROGRAM_DIRS.join(':')}`;
        if (options.allowFailure) return { exitCode: 127, stdout: '', stderr: message };
        throw new CommandFailedError(argv, undefined, message);
      }
      if (signal?.aborted && !options.afterInterrupt) throw new InterruptedError();
      const ownGroup = options.dieWithParent === true || options.waitOnInterrupt === true;
      const setpriv = ownGroup ? resolveProgram('setpriv') : undefined;
      const [exe, exeArgs] = setpriv ? [setpriv, ['--pdeathsig', 'TERM', '--', program, ...args]] : [program, args];
      const { execa } = await import('execa');
      const streamed = options.onOutput !== undefined;
      const child = execa(exe, exeArgs, {
        // Long-running children get their own process group, so an interrupt stops the whole
        // tree (mmdebstrap's apt and dpkg too), not just the process nspawnctl started.
        detached: ownGroup,
        cancelSignal: ownGroup || options.afterInterrupt ? undefined : signal,
        reject: false,
        shell: false,
        input: options.input,
        stdin: options.inheritStdio ? 'inherit' : options.input === undefined ? 'ignore' : undefined,
        stdout: options.inheritStdio ? 'inherit' : 'pipe',
        stderr: options.inheritStdio ? 'inherit' : 'pipe',
        buffer: !streamed && !options.inheritStdio,
        env: options.env,
        extendEnv: true,
        timeout: options.timeoutMs,
        killSignal: 'SIGTERM',
        forceKillAfterDelay: 5000,
        stripFinalNewline: false,
        encoding: 'utf8',
      });
      if (options.onOutput) {
        const onOutput = options.onOutput;
        for (const stream of ['stdout', 'stderr'] as const) {
          // A character split between two chunks is kept until its end arrives.
          const decoder = new StringDecoder('utf8');
          child[stream]?.on('data', (chunk: Buffer | string) => {
            const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
            if (text) onOutput(text, stream);
          });
          child[stream]?.on('end', () => {
            const rest = decoder.end();
            if (rest) onOutput(rest, stream);
          });
        }
      }
      if (options.onLine) {
        const onLine = options.onLine;
        for (const stream of [child.stdout, child.stderr]) {
          const lines = new LineSplitter(onLine);
          stream?.on('data', (chunk: Buffer | string) => lines.write(chunk));
          stream?.on('end', () => lines.end());
        }
      }
      const stopGroup = () => {
        if (child.pid === undefined) return;
        const kill = (sig: NodeJS.Signals) => {
          try {
            process.kill(-child.pid!, sig);
          } catch {
            // already gone
          }
        };
        kill('SIGTERM');
        setTimeout(() => kill('SIGKILL'), 5000).unref();
      };
      if (options.dieWithParent && !options.waitOnInterrupt && signal) signal.addEventListener('abort', stopGroup, { once: true });
      let r;
      try {
        r = await child;
      } finally {
        signal?.removeEventListener('abort', stopGroup);
      }
      if (r.isCanceled || (signal?.aborted && !options.waitOnInterrupt && !options.afterInterrupt)) throw new InterruptedError(argv);
      const stdout = String(r.stdout ?? '');
      const stderr = String(r.stderr ?? '');
      if (r.exitCode === undefined) {
        const why = r.timedOut ? `timed out after ${options.timeoutMs} ms` : (r.originalMessage ?? r.shortMessage ?? 'failed to start');
        throw new CommandFailedError(argv, undefined, `${stderr}\n${why}`, r.cause ?? r, { timedOut: r.timedOut === true });
      }
      if (r.exitCode !== 0 && !options.allowFailure) {
        throw new CommandFailedError(argv, r.exitCode, stderr || stdout, r);
      }
      return { exitCode: r.exitCode, stdout, stderr };
    },
  };
}
