// The committed JSON Schema compiled the way an editor reads it, and the loader's verdict on the
// same text, for the tests that compare the two.
import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ManifestError } from '../../src/errors';
import { formatPath, parseManifest } from '../../src/manifest/load';
import { KnownSyscalls } from '../../src/manifest/schema';

export const REPO = join(__dirname, '..', '..');
export const SCHEMA_FILE = join(REPO, 'schema', 'machines.schema.json');
export const MODELINE = '# yaml-language-server: $schema=./schema/machines.schema.json';

/**
 * ajv in strict mode, with the keyword VS Code and yaml-language-server read for pattern
 * messages, and multipleOf computed in decimal as those editors do (0.29 is a multiple of 0.01;
 * in binary floating point 0.29 / 0.01 is not an integer).
 */
export function compileSchema(text = readFileSync(SCHEMA_FILE, 'utf8')): ValidateFunction {
  const ajv = new Ajv({ strict: true, allErrors: true, multipleOfPrecision: 9 });
  ajv.addVocabulary(['patternErrorMessage']);
  return ajv.compile(JSON.parse(text));
}

export interface Verdicts {
  /** ajv's errors, each as the manifest path the loader would print ([] when valid). */
  schema: string[];
  /** The loader's problems as `path: message` ([] when it loads). */
  loader: string[];
  loaderMessages: string[];
}

/** Both verdicts on one manifest text; the schema sees what an editor sees, the parsed YAML. */
export function judge(validate: ValidateFunction, text: string, known?: KnownSyscalls): Verdicts {
  const data: unknown = parse(text);
  const schema = validate(data) ? [] : (validate.errors ?? []).map((e) => manifestPath(data, e));
  let problems: { path: string; message: string }[] = [];
  try {
    parseManifest('machines.yaml', text, known);
  } catch (err) {
    if (!(err instanceof ManifestError)) throw err;
    problems = err.problems.filter((p) => !/^\.\.\. and \d+ more problem/.test(p.message));
  }
  return { schema: [...new Set(schema)], loader: problems.map((p) => `${p.path}: ${p.message}`), loaderMessages: problems.map((p) => p.message) };
}

/**
 * An ajv error's place, spelled like the loader's problem paths (machines.web.ports[0].host);
 * an unknown, missing or badly named key is the key's own path, as the loader reports it.
 */
export function manifestPath(data: unknown, error: ErrorObject): string {
  const keys = error.instancePath === '' ? [] : error.instancePath.slice(1).split('/').map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
  const path: (string | number)[] = [];
  let node: unknown = data;
  for (const key of keys) {
    const index = Array.isArray(node) ? Number(key) : undefined;
    path.push(index ?? key);
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  }
  const params = error.params as Record<string, unknown>;
  const last = params.additionalProperty ?? params.missingProperty ?? params.propertyName;
  if (typeof last === 'string') path.push(last);
  return printed(path);
}

/** A key path as the loader prints it: machines.web.ports[0].host, odd names quoted. */
export const printed = formatPath;

export interface YamlBlock {
  /** Where the block starts, as FILE:LINE of its first line of YAML. */
  where: string;
  text: string;
}

/** Every fenced ```yaml block of the Markdown files in docs/, indentation of the fence removed. */
export function docsYamlBlocks(): YamlBlock[] {
  const docs = join(REPO, 'docs');
  const blocks: YamlBlock[] = [];
  for (const name of readdirSync(docs).filter((n) => n.endsWith('.md')).sort()) {
    const lines = readFileSync(join(docs, name), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^( *)```yaml\s*$/.exec(lines[i]);
      if (!open) continue;
      const indent = open[1].length;
      const end = lines.findIndex((line, j) => j > i && /^ *```\s*$/.test(line));
      if (end < 0) throw new Error(`docs/${name}:${i + 1}: a yaml block that is never closed`);
      blocks.push({ where: `docs/${name}:${i + 2}`, text: `${lines.slice(i + 1, end).map((l) => l.slice(indent)).join('\n')}\n` });
      i = end;
    }
  }
  return blocks;
}
