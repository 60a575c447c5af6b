// Turns manifest text into a validated Manifest, or a ManifestError listing every problem with
// its line and column. Pure: the caller reads the file (through the Host) and passes the text.
import { Document, isMap, isPair, isScalar, isSeq, LineCounter, Node, parseDocument, visit } from 'yaml';
import { z } from 'zod';
import { ManifestError, ManifestProblem } from '../errors';
import { crossFieldIssues, KEY_MESSAGES, KnownSyscalls, MACHINE_NAME, Manifest, manifestSchema, quoteName, resolveManifest } from './schema';
import { closestMatch } from './suggest';

/** At most this many problems are reported (and located); the rest are counted. */
export const MAX_PROBLEMS = 50;

/** No manifest nests anywhere near this deep; deeper is refused before anything walks it. */
export const MAX_DEPTH = 64;
const TOO_DEEP = `YAML: nested more than ${MAX_DEPTH} levels deep (a manifest needs fewer than 10)`;

/** Manifests larger than this are refused before parsing (a manifest is hand-written text). */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

type PathKey = string | number;

/** Parses and validates; throws ManifestError with all problems found. */
export function parseManifest(file: string, text: string, known?: KnownSyscalls): Manifest {
  const problems = (message: string, line = 1, col = 1): never => {
    throw new ManifestError([{ file, line, col, path: '', message }]);
  };
  if (Buffer.byteLength(text, 'utf8') > MAX_MANIFEST_BYTES) {
    problems(`file is larger than ${MAX_MANIFEST_BYTES} bytes; a manifest is hand-written text`);
  }
  const nul = text.indexOf('\0');
  if (nul >= 0) {
    const lc = lineCol(text, nul);
    problems('file contains a NUL byte', lc.line, lc.col);
  }

  const lineCounter = new LineCounter();
  // Keys are checked below in one pass (yaml's own uniqueKeys check is quadratic in the number
  // of keys, which a hostile file can exploit).
  let doc: Document;
  try {
    doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: false, strict: true });
  } catch (err) {
    if (err instanceof RangeError) return problems(TOO_DEEP);
    throw err;
  }
  // yaml parses nesting recursively, so whether its stack runs out depends on how warm its code
  // is: both ways, a nesting deeper than any manifest needs is the same one problem.
  const overflow = doc.errors.find((e) => e.message.includes('Maximum call stack size exceeded'));
  if (overflow) {
    const pos = lineCounter.linePos(overflow.pos[0]);
    problems(TOO_DEEP, pos.line, pos.col);
  }
  if (doc.errors.length === 0) {
    const deep = tooDeepAt(doc);
    if (deep !== undefined) {
      const pos = lineCounter.linePos(deep);
      problems(TOO_DEEP, pos.line, pos.col);
    }
    const keyProblems = checkKeys(doc, lineCounter, file);
    if (keyProblems.length > 0) throw new ManifestError(limitProblems(sortProblems(keyProblems)));
  }
  if (doc.errors.length > 0) {
    throw new ManifestError(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { file, line: pos.line, col: pos.col, path: '', message: `YAML syntax: ${firstLine(e.message)}` };
      }),
    );
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 50 });
  } catch (err) {
    problems(`YAML: ${firstLine((err as Error).message)} (aliases are limited to keep expansion small)`);
  }
  if (data === null || data === undefined) problems('the manifest is empty; expected at least a machines: section');
  if (typeof data !== 'object' || Array.isArray(data)) problems('expected a mapping with networks: and machines: at the top');

  const result = manifestSchema.safeParse(data, { errorMap: friendlyErrors });
  // Only the first MAX_PROBLEMS are located (locating is linear in the document each time).
  const issues = result.success ? [] : result.error.issues.slice(0, MAX_PROBLEMS);
  const allCross = crossFieldIssues(data, known);
  const cross = allCross.slice(0, MAX_PROBLEMS);
  // An unknown-keys issue stands for one problem per key.
  const total = (result.success ? [] : result.error.issues).reduce((n, i) => n + (i.code === 'unrecognized_keys' ? i.keys.length : 1), 0) + allCross.length;
  const located = [
    ...issues.flatMap((issue) => locateIssue(file, doc, lineCounter, issue)),
    ...cross.map((issue) => ({ file, ...positionOf(doc, lineCounter, issue.path, false), path: formatPath(issue.path), message: issue.message })),
  ];
  const misplaced = misplacedMachineKeys(file, doc, lineCounter, [...issues.map((i) => i.path), ...cross.map((i) => i.path)], data);
  const found = [...located, ...misplaced];
  if (!result.success || found.length > 0) throw new ManifestError(limitProblems(sortProblems(found), total + misplaced.length));
  return resolveManifest(file, result.data);
}

/** Keys a machine takes: a machine "named" one of them is most likely a key indented too little. */
const MACHINE_KEYS: readonly string[] = allowedKeysAt(['machines', '']);
const MISINDENTED = '(is it indented one level too little? it is a key of a machine)';
const MERGE_KEY = 'merge keys (<<) are not supported; put shared settings under defaults:';

/**
 * A machine key written at the level of machine names (`network:` one level too far left) is read
 * as a machine of that name. Its name may even be valid (network, packages, files): then only its
 * body's problems show, and nothing says why. One problem at such a name says so; a name that is
 * also invalid (aptProxy) gets the same hint on its name problem instead (locateIssue).
 */
function misplacedMachineKeys(file: string, doc: Document, lc: LineCounter, paths: PathKey[][], data: unknown): ManifestProblem[] {
  const names = new Set<string>();
  for (const path of paths) {
    const name = path[0] === 'machines' ? path[1] : undefined;
    if (typeof name === 'string' && MACHINE_KEYS.includes(name) && MACHINE_NAME.test(name)) names.add(name);
  }
  const machines = (data as { machines?: Record<string, unknown> }).machines ?? {};
  return [...names]
    .filter((name) => Object.prototype.hasOwnProperty.call(machines, name))
    .map((name) => ({ file, ...positionOf(doc, lc, ['machines', name], true), path: formatPath(['machines', name]), message: `read as a machine named ${name} ${MISINDENTED}` }));
}

function locateIssue(file: string, doc: Document, lc: LineCounter, issue: z.ZodIssue): ManifestProblem[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.slice(0, MAX_PROBLEMS).map((key) => {
      const path = [...issue.path, key];
      const pos = positionOf(doc, lc, path, true);
      // YAML 1.2 has no merge keys: `<<: *common` is an ordinary key named "<<".
      return { file, ...pos, path: formatPath(path), message: key === '<<' ? MERGE_KEY : `unknown key${suggest(key, allowedKeysAt(issue.path))}` };
    });
  }
  // Names (record keys) are checked with their own messages; point at the name itself.
  const onKey = Object.values(KEY_MESSAGES).includes(issue.message);
  const pos = positionOf(doc, lc, issue.path, onKey);
  const name = issue.path[issue.path.length - 1];
  let message = issue.message;
  if (onKey && name === '<<') message = MERGE_KEY;
  else if (issue.message === KEY_MESSAGES.machine && issue.path.length === 2 && MACHINE_KEYS.includes(String(name))) message = `${message} ${MISINDENTED}`;
  return [{ file, ...pos, path: formatPath(issue.path), message }];
}

/** Finds where a path is in the YAML; falls back to the nearest existing parent. */
function positionOf(doc: Document, lc: LineCounter, path: PathKey[], preferKey: boolean): { line: number; col: number } {
  let node: unknown = doc.contents;
  let best: [number, number, number] | undefined = (node as Node | null)?.range ?? undefined;
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
      if (!pair) break;
      const last = i === path.length - 1;
      const keyNode = pair.key as Node;
      // A problem with a record key (a bad machine name) or an unknown key points at the key.
      if ((last && preferKey) || (last && pair.value === null)) {
        best = keyNode.range ?? best;
        break;
      }
      node = pair.value;
      best = (node as Node | null)?.range ?? keyNode.range ?? best;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key];
      if (!item) break;
      node = item;
      best = (item as Node).range ?? best;
    } else {
      break;
    }
  }
  const pos = lc.linePos(best ? best[0] : 0);
  return { line: pos.line, col: pos.col };
}

/** Lists the keys zod accepts at a path, for "unknown key" messages. */
function allowedKeysAt(path: PathKey[]): string[] {
  let schema: z.ZodTypeAny = manifestSchema;
  for (const key of path) {
    schema = unwrap(schema);
    if (schema instanceof z.ZodObject) schema = schema.shape[key as string];
    else if (schema instanceof z.ZodRecord) schema = schema.valueSchema;
    else if (schema instanceof z.ZodArray) schema = schema.element;
    else return [];
    if (!schema) return [];
  }
  schema = unwrap(schema);
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

function unwrap(schema: z.ZodTypeAny): z.ZodTypeAny {
  for (;;) {
    if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable) schema = schema.unwrap();
    else if (schema instanceof z.ZodDefault) schema = schema.removeDefault();
    else if (schema instanceof z.ZodEffects) schema = schema.innerType();
    // A mapping or a scalar (autoUpgrade: { ... } or false): the keys are the mapping's.
    else if (schema instanceof z.ZodUnion && (schema.options as z.ZodTypeAny[]).some((o) => o instanceof z.ZodObject)) schema = (schema.options as z.ZodTypeAny[]).find((o) => o instanceof z.ZodObject)!;
    else return schema;
  }
}

function suggest(key: string, allowed: string[]): string {
  if (allowed.length === 0) return '';
  const close = closestMatch(key, allowed, 2);
  return `${close ? ` (did you mean ${close}?)` : ''}; expected one of: ${allowed.join(', ')}`;
}

// Messages in the tool's voice: lower case, saying what was expected and what was found.
const friendlyErrors: z.ZodErrorMap = (issue, ctx) => {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.received === 'undefined') return { message: 'is required' };
      if (issue.path[issue.path.length - 1] === 'mode' && issue.received === 'number') {
        return { message: 'expected an octal mode string like "0644": quote it in YAML (an unquoted 0644 is a number)' };
      }
      // `web:` and nothing under it is null, not an empty machine.
      if (issue.received === 'null' && issue.path.length === 2 && issue.path[0] === 'machines') {
        return { message: `expected a mapping, got nothing (null); write \`${formatPath([issue.path[1]])}: {}\` for a machine with every default` };
      }
      return { message: `expected ${describeType(issue.expected)}, got ${describeType(issue.received)}` };
    case 'invalid_enum_value':
      return { message: `expected one of ${issue.options.join(', ')}, got ${JSON.stringify(issue.received)}` };
    case 'too_small':
      if (issue.type === 'number') return { message: `must be at least ${issue.minimum}` };
      return { message: ctx.defaultError };
    case 'too_big':
      if (issue.type === 'number') return { message: `must be at most ${issue.maximum}` };
      return { message: ctx.defaultError };
    default:
      return { message: ctx.defaultError };
  }
};

function describeType(t: string): string {
  switch (t) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'null':
      return 'nothing (null)';
    default:
      return `a ${t}`;
  }
}

// Keys are printed as written when plain; anything else (newlines, escapes, spaces) is quoted,
// so a hostile key cannot fake another problem line or reach the terminal raw.
export function formatPath(path: PathKey[]): string {
  return path
    .map((k, i) => {
      if (typeof k === 'number') return `[${k}]`;
      const key = /^[A-Za-z0-9_-]+$/.test(k) ? k : quoteName(k);
      return i === 0 ? key : `.${key}`;
    })
    .join('');
}

/** Where the document first nests deeper than MAX_DEPTH (an offset), walked without recursion. */
function tooDeepAt(doc: Document): number | undefined {
  const todo: [unknown, number][] = [[doc.contents, 0]];
  while (todo.length > 0) {
    const [node, depth] = todo.pop()!;
    if (!isMap(node) && !isSeq(node)) continue;
    if (depth >= MAX_DEPTH) return (node as Node).range?.[0] ?? 0;
    for (const item of node.items) {
      if (isPair(item)) todo.push([item.key, depth + 1], [item.value, depth + 1]);
      else todo.push([item, depth + 1]);
    }
  }
  return undefined;
}

/** Duplicate keys and keys that are not plain scalars, in one pass over every mapping. */
function checkKeys(doc: Document, lc: LineCounter, file: string): ManifestProblem[] {
  const problems: ManifestProblem[] = [];
  visit(doc, {
    Map(_key, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        const keyNode = pair.key as Node | null;
        const at = lc.linePos(keyNode?.range?.[0] ?? 0);
        if (!isScalar(keyNode)) {
          problems.push({ file, line: at.line, col: at.col, path: '', message: 'keys must be plain strings, not lists or mappings' });
          continue;
        }
        const name = String(keyNode.value);
        if (seen.has(name)) problems.push({ file, line: at.line, col: at.col, path: '', message: `duplicate key ${quoteName(name)} (map keys must be unique)` });
        seen.add(name);
      }
    },
  });
  return problems;
}

function limitProblems(problems: ManifestProblem[], total = problems.length): ManifestProblem[] {
  if (total <= MAX_PROBLEMS && problems.length <= MAX_PROBLEMS) return problems;
  const shown = problems.slice(0, MAX_PROBLEMS);
  const last = shown[shown.length - 1];
  return [...shown, { ...last, path: '', message: `... and ${total - shown.length} more problem(s) not shown` }];
}

function sortProblems(problems: ManifestProblem[]): ManifestProblem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.col - b.col || a.path.localeCompare(b.path));
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}

function lineCol(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, col: before[before.length - 1].length + 1 };
}
