// Typed errors: core code throws these and never exits; commands map them to exit codes.

/** Exit codes used by every command. */
export const ExitCode = {
  failure: 1,
  invalidManifest: 2,
  preflight: 3,
  conflict: 4,
  busy: 5,
  interrupted: 130,
} as const;

export interface ErrorOptions {
  hint?: string;
  exitCode?: number;
  cause?: unknown;
}

// The base of every error nspawnctl reports to a user: a message plus an optional hint.
export class NspawnctlError extends Error {
  readonly hint?: string;
  readonly exitCode: number;

  constructor(message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ExitCode.failure;
  }
}

/** One problem found in a manifest, already located in the file. */
export interface ManifestProblem {
  file: string;
  line: number;
  col: number;
  path: string;
  message: string;
}

/**
 * What every manifest error ends with. The reference is the installed man page (docs/ exists only
 * in a checkout); the project has no documentation site to link to.
 */
export const MANIFEST_HINT = 'Fix the manifest; nothing on the host was changed. See man nspawnctl.';

// Every problem of a manifest at once, formatted FILE:LINE:COL: path: message.
export class ManifestError extends NspawnctlError {
  readonly problems: ManifestProblem[];

  constructor(problems: ManifestProblem[]) {
    super(problems.map(formatProblem).join('\n'), {
      exitCode: ExitCode.invalidManifest,
      hint: MANIFEST_HINT,
    });
    this.problems = problems;
  }
}

/** Formats one manifest problem the way compilers do, so editors can jump to it. */
export function formatProblem(p: ManifestProblem): string {
  const where = p.path === '' ? '' : `${p.path}: `;
  return `${p.file}:${p.line}:${p.col}: ${where}${p.message}`;
}

// An external command that failed: argv, exit code and the end of its stderr.
export class CommandFailedError extends NspawnctlError {
  readonly argv: string[];
  readonly code: number | undefined;
  readonly stderrTail: string;
  /** It was stopped because it ran longer than it was given. */
  readonly timedOut: boolean;

  constructor(argv: string[], code: number | undefined, stderr: string, cause?: unknown, options: { timedOut?: boolean } = {}) {
    const tail = tailLines(stderr, 15);
    const status = options.timedOut ? 'timed out' : code === undefined ? 'could not be run' : `exited with code ${code}`;
    super(`command ${formatArgv(argv)} ${status}${tail ? `:\n${indent(tail)}` : ''}`, { cause });
    this.argv = argv;
    this.code = code;
    this.stderrTail = tail;
    this.timedOut = options.timedOut ?? false;
  }
}

// SIGINT or SIGTERM arrived: the running child was stopped and nothing after it ran.
export class InterruptedError extends NspawnctlError {
  /** `argv`: the command that was stopped; `during`: what was stopped instead (reading input). */
  constructor(argv?: string[], during?: string) {
    super(
      during ? `interrupted while ${during}; nothing was changed` : `interrupted${argv ? ` while running ${formatArgv(argv)}` : ''}; the next apply continues from here`,
      { exitCode: ExitCode.interrupted },
    );
  }
}

// The host cannot do the job: reported before anything is changed.
export class PreflightError extends NspawnctlError {
  readonly missing: { what: string; fix: string }[];

  constructor(missing: { what: string; fix: string }[]) {
    super(
      `this host is not ready:\n${missing.map((m) => `  - ${m.what}`).join('\n')}`,
      {
        exitCode: ExitCode.preflight,
        hint: missing.map((m) => m.fix).join('\n'),
      },
    );
    this.missing = missing;
  }
}

// The kernel refused nspawnctl a path (EACCES or EPERM), usually a normal user reaching root's
// files (/var/lib/machines is 0700). Typed, so that what only observes the host (plan, list,
// status) can say what it could not see, and nothing mistakes "not allowed" for "not there".
export class PermissionDeniedError extends NspawnctlError {
  readonly path: string;
  /** EACCES or EPERM, as on the error it replaces (callers may test `code`). */
  readonly code: string;

  constructor(operation: string, path: string, options: { code: string; asRoot: boolean; cause?: unknown }) {
    super(`cannot ${operation} ${path}: ${options.code === 'EPERM' ? 'operation not permitted' : 'permission denied'}`, {
      cause: options.cause,
      hint: options.asRoot
        ? 'Even root was refused: look for a read-only mount, an immutable file (lsattr) or a security module (AppArmor) denying it.'
        : 'nspawnctl works on root\'s files (/var/lib/machines, /var/lib/nspawnctl, /etc/systemd); run it as root.',
    });
    this.path = path;
    this.code = options.code;
  }
}

// A path inside a machine's root filesystem that nspawnctl will not use: a symlink or a
// non-directory where it needs a directory, a special file where it needs a regular one, or a
// file too large to be one of its own. Following it could reach the host.
export class UnsafePathError extends NspawnctlError {
  readonly path: string;

  constructor(path: string, what: string) {
    super(`${path} ${what}: nspawnctl will not follow or use it`, {
      hint: 'Something inside the machine replaced it. Inspect it from inside the machine, remove or fix it there, and apply again.',
    });
    this.path = path;
  }
}

// Something exists that nspawnctl did not create, and it refuses to touch it.
export class OwnershipError extends NspawnctlError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: ExitCode.conflict, hint });
  }
}

/** The last `n` non-empty lines of a text, with control characters made visible. */
export function tailLines(text: string, n: number): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return escapeControl(lines.slice(-n).join('\n'));
}

/**
 * Output that a machine produced (apt lines, its journal, stderr) shown safely: every control
 * character except newline and tab is written as an escape (\x1b, \u009b), so nothing a machine
 * prints can move the cursor, rewrite lines or change the terminal.
 */
export function escapeControl(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x80 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

/** Shows an argv for humans; quotes only what needs it. Never used to run anything. */
export function formatArgv(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}
