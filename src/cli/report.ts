// How an NspawnctlError reaches the user, from a command or from the command-not-found hook:
// "nspawnctl: MESSAGE" and "hint: HINT" on stderr, and with --json an error document on stdout.
import { ManifestError, NspawnctlError } from '../errors';

/** The lines for stderr, newline-terminated (a manifest's problems are located, without the prefix). */
export function formatErrorText(err: NspawnctlError): string {
  const lines = err instanceof ManifestError ? [err.message] : [`nspawnctl: ${err.message}`];
  if (err.hint) lines.push(`hint: ${err.hint}`);
  return `${lines.join('\n')}\n`;
}

/** The JSON document for stdout when --json was given, newline-terminated. */
export function formatErrorJson(err: NspawnctlError): string {
  const problems = err instanceof ManifestError ? err.problems : undefined;
  return `${JSON.stringify({ error: { kind: err.name, message: err.message, hint: err.hint, exitCode: err.exitCode, problems } }, null, 2)}\n`;
}
