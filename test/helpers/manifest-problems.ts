// The located problems a manifest is rejected with (exit 2), as the CLI prints them; a manifest
// that loads fails the test.
import { ExitCode, formatProblem, ManifestError } from '../../src/errors';
import { parseManifest } from '../../src/manifest/load';

export function problems(text: string): string[] {
  try {
    parseManifest('machines.yaml', text);
  } catch (err) {
    if (!(err instanceof ManifestError)) throw err;
    expect(err.exitCode).toBe(ExitCode.invalidManifest);
    return err.problems.map(formatProblem);
  }
  throw new Error('expected the manifest to be rejected, but it loaded');
}
