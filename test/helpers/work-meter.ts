// Measures the work parseManifest does by counting it, never by timing it, so that the unit tests
// can bound a hostile input's cost without a clock (a clock fails on a busy 2-core CI machine).
//
// The loader's own code (every module in src/manifest/) is compiled here a second time, with one
// counted step added at the entry of every function (arrow callbacks included) and at every
// iteration of every loop. A call of a searching or copying method (SCANNING below) on an array or
// a string costs its length, so `seen.includes(name)` in a loop counts as the loop it is. The
// metered copy imports the real yaml package with every function wrapped, so that each call from
// the loader into yaml is counted too. Its other imports (zod, src/errors.ts) are the ones the
// tests use, so a ManifestError from the metered copy is the tests' ManifestError.
//
// Not counted: work inside yaml and zod, and inside other builtins (spreads, Object.keys, string
// methods such as split). The tests bound those directly where it matters (the options yaml is
// called with, whether the parser is called at all).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import ts from 'typescript';
import * as realYaml from 'yaml';
import type { parseManifest as ParseManifest } from '../../src/manifest/load';

const METERED_DIR = join(__dirname, '..', '..', 'src', 'manifest');
const LOADER = join(METERED_DIR, 'load.ts');
/** The names of the counting functions inserted into the metered code. */
const STEP = '__workMeterStep';
const SCAN = '__workMeterScan';
/** Methods charged the length of the array or string they are called on (an upper bound). */
const SCANNING = new Set(['includes', 'indexOf', 'lastIndexOf', 'join', 'slice', 'concat', 'splice', 'flat', 'reverse', 'sort']);

/** What one parseManifest call cost. */
export interface Work {
  /** Function entries, loop iterations and scanned elements in src/manifest/. */
  steps: number;
  /** Calls from src/manifest/ into each yaml function (parseDocument, visit, isPair, ...). */
  yamlCalls: Record<string, number>;
  /** The options of the last parseDocument call, if it was called. */
  parseOptions?: unknown;
  /** steps plus every yaml call: the number the tests bound. */
  total: number;
  /** What parseManifest threw, if it threw. */
  error?: unknown;
}

export interface WorkMeter {
  /** Runs the metered parseManifest once on `text` and returns what it cost. */
  measure(text: string, file?: string): Work;
}

/** Compiles the loader with counted steps; one meter can measure any number of inputs. */
export function createWorkMeter(): WorkMeter {
  let steps = 0;
  let yamlCalls: Record<string, number> = {};
  let parseOptions: unknown;
  const counters = {
    step: () => {
      steps++;
    },
    scan: (receiver: unknown) => {
      if (typeof receiver === 'string' || Array.isArray(receiver)) steps += receiver.length;
      return receiver;
    },
  };
  const yaml = countingYaml((name, args) => {
    yamlCalls[name] = (yamlCalls[name] ?? 0) + 1;
    if (name === 'parseDocument') parseOptions = args[1];
  });
  const parse = (loadMetered(LOADER, new Map(), yaml, counters) as { parseManifest: typeof ParseManifest }).parseManifest;
  return {
    measure(text, file = 'machines.yaml') {
      steps = 0;
      yamlCalls = {};
      parseOptions = undefined;
      let error: unknown;
      try {
        parse(file, text);
      } catch (err) {
        error = err;
      }
      const total = steps + Object.values(yamlCalls).reduce((a, b) => a + b, 0);
      return { steps, yamlCalls, parseOptions, total, error };
    },
  };
}

/** How much more work 4n costs than n; linear work is at most 4 (see expectLinearWork). */
export interface Growth {
  n: number;
  at1x: Work;
  at4x: Work;
  ratio: number;
}

/**
 * Allowed growth from n to 4n. Work a + b*n grows by at most 4; a sort of n problems (n log n)
 * by 4.8 at n = 1000; a quadratic term by up to 16. Anything above 5 is not linear.
 */
export const MAX_GROWTH = 5;

/** Measures `makeInput(n)` and `makeInput(4n)`; fails with both counts unless the work is linear. */
export function expectLinearWork(meter: WorkMeter, makeInput: (n: number) => string, n = 1000): Growth {
  const at1x = meter.measure(makeInput(n));
  const at4x = meter.measure(makeInput(4 * n));
  const ratio = at4x.total / at1x.total;
  if (!(at1x.total > 0) || !(ratio <= MAX_GROWTH)) {
    throw new Error(
      `the loader's work is not linear in the input: ${n} -> ${4 * n} grew the counted work ${ratio.toFixed(2)}x ` +
        `(at most ${MAX_GROWTH}x allowed)\n  at ${n}: ${describeWork(at1x)}\n  at ${4 * n}: ${describeWork(at4x)}`,
    );
  }
  return { n, at1x, at4x, ratio };
}

/** One line: the total, the steps and the yaml calls by name. */
export function describeWork(work: Work): string {
  const calls = Object.entries(work.yamlCalls)
    .map(([name, count]) => `${name} ${count}`)
    .join(', ');
  return `${work.total} (steps ${work.steps}; yaml calls: ${calls || 'none'})`;
}

/** The yaml package with its functions (not its classes) wrapped so that every call is reported. */
function countingYaml(onCall: (name: string, args: unknown[]) => void): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(realYaml).map(([name, value]) => {
      if (typeof value !== 'function' || !/^[a-z]/.test(name)) return [name, value];
      const fn = value as (...args: unknown[]) => unknown;
      return [
        name,
        (...args: unknown[]) => {
          onCall(name, args);
          return fn(...args);
        },
      ];
    }),
  );
}

interface Counters {
  step: () => void;
  scan: (receiver: unknown) => unknown;
}

/** Loads one module of src/manifest/ compiled with counted steps (its siblings likewise). */
function loadMetered(file: string, loaded: Map<string, { exports: unknown }>, yaml: unknown, counters: Counters): unknown {
  const cached = loaded.get(file);
  if (cached) return cached.exports;
  const module = { exports: {} as unknown };
  loaded.set(file, module);
  const requireFrom = (id: string): unknown => {
    if (id === 'yaml') return yaml;
    if (!id.startsWith('.')) return require(id);
    const target = resolve(dirname(file), id);
    return target.startsWith(METERED_DIR + sep) ? loadMetered(`${target}.ts`, loaded, yaml, counters) : require(target);
  };
  const run = new Function('exports', 'require', 'module', '__filename', '__dirname', STEP, SCAN, compileWithSteps(file));
  run(module.exports, requireFrom, module, file, dirname(file), counters.step, counters.scan);
  return module.exports;
}

function compileWithSteps(file: string): string {
  const out = ts.transpileModule(readFileSync(file, 'utf8'), {
    fileName: file,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    transformers: { before: [addSteps] },
  });
  return out.outputText;
}

/**
 * A TypeScript transform: `STEP();` first in every function body and every loop body, and
 * `x.includes(y)` (any SCANNING method) becomes `SCAN(x).includes(y)`.
 */
function addSteps(context: ts.TransformationContext): (file: ts.SourceFile) => ts.SourceFile {
  const f = context.factory;
  const stepStatement = () => f.createExpressionStatement(f.createCallExpression(f.createIdentifier(STEP), undefined, []));
  const prepend = (body: ts.Statement) => f.createBlock([stepStatement(), ...(ts.isBlock(body) ? body.statements : [body])], true);
  const scanning = (call: ts.CallExpression): ts.CallExpression => {
    const callee = call.expression;
    // Left alone inside an optional chain (`a?.b.includes(x)`), where wrapping `a?.b` would change what it means.
    if (!ts.isPropertyAccessExpression(callee) || ts.isOptionalChain(callee) || ts.isOptionalChain(call) || !SCANNING.has(callee.name.text)) return call;
    const scanned = f.createCallExpression(f.createIdentifier(SCAN), undefined, [callee.expression]);
    return f.updateCallExpression(call, f.updatePropertyAccessExpression(callee, scanned, callee.name), call.typeArguments, call.arguments);
  };
  const visitorIn =
    (parent: ts.Node) =>
    (node: ts.Node): ts.Node => {
      let visited = ts.visitEachChild(node, visitorIn(node), context);
      if (ts.isCallExpression(visited)) visited = scanning(visited);
      if (ts.isFunctionLike(parent) && (parent as ts.FunctionLikeDeclaration).body === node) {
        // An arrow's expression body becomes `{ STEP(); return expression; }`.
        return ts.isBlock(visited) ? prepend(visited) : f.createBlock([stepStatement(), f.createReturnStatement(visited as ts.Expression)], true);
      }
      if (ts.isIterationStatement(parent, false) && parent.statement === node) return prepend(visited as ts.Statement);
      return visited;
    };
  return (file) => ts.visitEachChild(file, visitorIn(file), context);
}
