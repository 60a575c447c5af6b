// Shared by the hostile-input tests: load a manifest expecting a ManifestError, and run the real
// plan/apply commands against a FakeHost that records every command and every write.
import Apply from '../../src/commands/apply';
import Plan from '../../src/commands/plan';
import { ExitCode, formatProblem, ManifestError } from '../../src/errors';
import { Host } from '../../src/host/host';
import { parseManifest } from '../../src/manifest/load';
import { answerObserveQueries, makeBootedHost } from '../helpers/converged';
import { FakeHost } from '../helpers/fake-host';
import { CommandResult, runCommand, TEST_CWD } from '../helpers/run-command';

export const FILE = 'machines.yaml';
export const HINT = 'Fix the manifest; nothing on the host was changed. See man nspawnctl.';
export const MACHINE_NAME_RULE = 'machine names are 1-12 characters of a-z, 0-9 and -, not starting or ending with - (vb-NAME must fit in 15 characters)';
export const BRIDGE_NAME_RULE = 'network names become bridge interface names: 1-15 characters, a lowercase letter first, then a-z 0-9 _ -';
export const ENV_NAME_RULE = 'expected an environment variable name (letters, digits and _, not starting with a digit)';
export const PATH_RULE = 'expected an absolute path of letters, digits and . _ @ + - /';
export const DOT_SEGMENTS = 'path must not contain "." or ".." segments';
export const SINGLE_SPELLING = 'path must name a file or directory below /, without "//" or a trailing "/"';
export const PACKAGE_RULE = 'expected a Debian package name like nginx';
export const URL_RULE = 'expected an http:// or https:// URL';
export const IPV4_RULE = 'expected an IPv4 address like 10.77.0.11';
export const HOSTNAME_RULE = 'expected a hostname like web or web.example.org';
export const DEFAULTS_KEYS = 'distribution, suite, mirror, variant, bootstrapper, packages, aptProxy, dns, authorizedKeys, environment, credentials, security, limits, health, autoUpgrade';
export const MACHINE_KEYS = `${DEFAULTS_KEYS}, hostname, network, bind, ports, files, provision, autostart, host, services`;

/** Joins lines into manifest text ending with a newline. */
export const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

/** Parses `text`; returns the ManifestError, and fails on success or on any other error. */
export function loadError(text: string, file = FILE): ManifestError {
  let thrown: unknown;
  try {
    parseManifest(file, text);
  } catch (err) {
    thrown = err;
  }
  if (thrown === undefined) throw new Error('expected the manifest to be rejected, but it loaded');
  if (!(thrown instanceof ManifestError)) {
    throw new Error(`expected a ManifestError, got ${(thrown as Error)?.constructor?.name}: ${(thrown as Error)?.stack ?? String(thrown)}`);
  }
  return thrown;
}

/** Asserts every problem, in order, as FILE:LINE:COL: path: message, exit code 2 and the hint. */
export function expectProblems(text: string, expected: string[]): ManifestError {
  const err = loadError(text);
  expect(err.problems.map(formatProblem)).toEqual(expected);
  expect(err.message).toBe(expected.join('\n'));
  expect(err.exitCode).toBe(ExitCode.invalidManifest);
  expect(err.exitCode).toBe(2);
  expect(err.hint).toBe(HINT);
  return err;
}

/** A booted host where networkd runs and no machine exists; the manifest is machines.yaml. */
export function freshBootedHost(manifest: string): FakeHost {
  return answerObserveQueries(makeBootedHost(new FakeHost({ inputs: { [FILE]: manifest } })));
}

const planWith = (host: Host) =>
  class extends Plan {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

const applyWith = (host: Host) =>
  class extends Apply {
    protected override createHost(): Host {
      return host;
    }

    protected override cwd(): string {
      return TEST_CWD;
    }
  };

export const runPlan = (host: Host, argv: string[] = [FILE]): Promise<CommandResult> => runCommand(planWith(host), argv);
export const runApply = (host: Host, argv: string[] = [FILE]): Promise<CommandResult> => runCommand(applyWith(host), argv);

/**
 * Runs `command` (plan or apply) on a fresh FakeHost holding `manifest` and asserts the refusal:
 * exit 2, exactly the problems and the hint on stderr, nothing on stdout, no external command
 * run and nothing written.
 */
export async function expectRefusedByCommand(command: 'plan' | 'apply', manifest: string, expected: string[]): Promise<void> {
  const host = freshBootedHost(manifest);
  const r = await (command === 'plan' ? runPlan : runApply)(host);
  expect(r.exitCode).toBe(2);
  expect(r.stderr).toBe(`${expected.join('\n')}\nhint: ${HINT}\n`);
  expect(r.stdout).toBe('');
  expect(host.runner.calls).toEqual([]);
  expect(host.fs.changes).toEqual([]);
}
