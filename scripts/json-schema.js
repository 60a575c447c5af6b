#!/usr/bin/env node
// @ts-check
// Writes schema/machines.schema.json, the JSON Schema editors use to complete and check
// machines.yaml, from the manifest's zod schema (src/manifest/schema.ts, compiled to dist/), so
// that the loader stays the one source of truth. `npm run schema` runs it after a build;
// test/manifest/json-schema.test.ts regenerates the text from src/ and fails when the committed
// file differs.
//
// zod 3 has no JSON Schema output of its own and zod-to-json-schema is no longer maintained (it
// also drops the key patterns of records whose keys carry a refinement), so this walks the few
// zod types the manifest uses and refuses any other. Refinements (refine, superRefine) are code
// that no converter can read: each one is translated by an entry of HINTS (made by hintsFor
// below), found by the key path where it sits, and a refinement without an entry, or an entry
// without a refinement, stops the generator. What an entry cannot express is said in its
// `loaderOnly` text (and in a $comment of the output); rules across keys (crossFieldIssues) are
// not zod refinements and stay with the loader (the agreement tests list them).
'use strict';

const { existsSync, mkdirSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

/** Where the schema lives, relative to the repository root; both packages ship it there. */
const SCHEMA_PATH = 'schema/machines.schema.json';

// draft-07: yaml-language-server (VS Code's YAML extension, Neovim, Helix, ...) validates
// draft-07 and older fully, newer drafts only in part; nothing here needs a newer keyword.
const DRAFT = 'http://json-schema.org/draft-07/schema#';

// Sources is declared again in scripts/json-schema.d.ts, for the tests.
/**
 * @typedef {{ [key: string]: any }} Json
 * @typedef {{ _def: any }} Zod
 * @typedef {{
 *   manifestSchema: Zod,
 *   RESERVED_ROOTFS_PATHS: readonly string[],
 *   CAPABILITIES: readonly string[],
 *   SIZE: RegExp,
 *   UID_RANGE: number,
 *   MACHINES_DIR: string,
 *   ADDRESS_FAMILIES: readonly string[],
 * }} Sources
 * @typedef {{ at: string[], apply: (schema: Json) => Json, loaderOnly?: string }} Hint
 */

// One IPv4 octet as parseIpv4 takes it: 0-255 without leading zeros.
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const IPV4 = `${OCTET}(?:\\.${OCTET}){3}`;
// One path segment of SAFE_PATH's characters, neither "." nor ".." (`end` closes a segment).
const segment = (/** @type {string} */ end) => `/(?!\\.\\.?(?:${end}))[A-Za-z0-9._@+-]+`;
const PATH = `(?:${segment('/|$')})+`;
const PATH_MESSAGE = 'expected an absolute path of letters, digits and . _ @ + - /, without "." or ".." segments, "//" or a trailing "/"';
const ONE_LINE = '^[^\\n\\r\\u0000]*$';

// Only the syntax characters: editors and ajv compile patterns with the u flag, which refuses
// other escapes such as "\-".
const escapeRegExp = (/** @type {string} */ s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Settings of `defaults:` that every machine may set too: the same hint in both places. */
const both = (/** @type {string} */ suffix) => [`defaults.${suffix}`, `machines.*.${suffix}`];

/** A string schema with one more pattern; a second one goes in allOf (one message each). */
function addPattern(/** @type {Json} */ schema, /** @type {string} */ pattern, /** @type {string} */ message) {
  if (schema.pattern === undefined) return { ...schema, pattern, patternErrorMessage: message };
  return { ...schema, allOf: [...(schema.allOf ?? []), { pattern, patternErrorMessage: message }] };
}

/** The schema's own pattern replaced by one that says everything the refinements add. */
const withPattern = (/** @type {string} */ pattern, /** @type {string} */ message, extra = {}) => (/** @type {Json} */ schema) => ({
  ...schema,
  pattern,
  patternErrorMessage: message,
  ...extra,
});

/**
 * files: may not take a path nspawnctl writes inside the machine, a directory above one, or a
 * path below one (reservedPathProblem). A fixed list, so one pattern says it.
 */
function reservedPathPattern(/** @type {readonly string[]} */ reserved) {
  const exact = new Set();
  for (const path of reserved) {
    const parts = path.split('/');
    for (let i = 2; i <= parts.length; i++) exact.add(parts.slice(0, i).join('/'));
  }
  const alternatives = (/** @type {Iterable<string>} */ paths) => [...paths].sort().map(escapeRegExp).join('|');
  return `^(?!(?:${alternatives(exact)})$)(?!(?:${alternatives(reserved)})/)`;
}

/** How each refinement of the zod schema reads in JSON Schema, by the key path it is at. */
function hintsFor(/** @type {Sources} */ s) {
  const machinesDir = escapeRegExp(s.MACHINES_DIR);
  const ipv4 = withPattern(`^${IPV4}$`, 'expected an IPv4 address like 10.77.0.11');
  /** @type {Hint[]} */
  const hints = [
    { at: both('dns[]'), apply: ipv4 },
    { at: ['networks.*.gateway'], apply: ipv4, loaderOnly: 'a host address of the subnet' },
    {
      at: ['machines.*.network.address'],
      apply: ipv4,
      loaderOnly: "a host address of the bridge's subnet, not its gateway, used by one machine; the bridge declared under networks",
    },
    {
      at: ['networks.*.subnet'],
      apply: withPattern(`^${IPV4}/(?:0?[89]|[12][0-9]|30)$`, 'expected a subnet like 10.77.0.0/24, with a prefix length from /8 to /30'),
      loaderOnly: 'the address is the network address of its prefix (10.77.0.5/24 is refused); networks do not overlap',
    },
    {
      at: ['machines.*.files[].path'],
      apply: (schema) =>
        addPattern(
          withPattern(`^${PATH}$`, PATH_MESSAGE, { maxLength: 1024 })(schema),
          reservedPathPattern(s.RESERVED_ROOTFS_PATHS),
          'nspawnctl writes this path itself, or a path below it, or it is below a file nspawnctl writes (docs/manifest.md: "Paths files: may not take")',
        ),
      loaderOnly: 'a path listed once per machine',
    },
    {
      at: both('credentials.*'),
      apply: withPattern(
        `^(?!${machinesDir}(?:/|$))${PATH}$`,
        `${PATH_MESSAGE}, outside ${s.MACHINES_DIR}`,
        { maxLength: 1024 },
      ),
      loaderOnly: 'the file is not inside a directory some machine binds read-write',
    },
    {
      at: ['machines.*.bind[]'],
      apply: (() => {
        // HOST[:MACHINE][:ro|rw]; parseBind splits at ":", which no path may hold.
        const part = `(?=[^:]{1,1024}(?::|$))(?:${segment('/|:|$')})+`;
        return withPattern(
          `^${part}(?::${part})?(?::(?:ro|rw))?$`,
          'expected HOST_PATH[:MACHINE_PATH][:ro|rw] like /srv/www:/var/www:ro, each path absolute, of letters, digits and . _ @ + - /, without "." or ".." segments, "//" or a trailing "/"',
        );
      })(),
      loaderOnly: 'a machine path used by one bind only',
    },
    {
      // The mapping form of a bind: two absolute paths.
      at: ['machines.*.bind[].host', 'machines.*.bind[].machine'],
      apply: withPattern(`^${PATH}$`, PATH_MESSAGE, { maxLength: 1024 }),
      loaderOnly: 'a machine path used by one bind only; the host path exists, unless create: true',
    },
    {
      at: [...both('security.inaccessible[]'), ...both('security.tmpfs[]')],
      apply: withPattern(`^${PATH}$`, PATH_MESSAGE),
    },
    {
      at: both('security.devices[].path'),
      apply: withPattern(`^/dev${PATH}$`, `${PATH_MESSAGE}, below /dev/`),
    },
    {
      at: [...both('security.capabilities.drop[]'), ...both('security.capabilities.add[]')],
      apply: (schema) => ({ ...schema, enum: [...s.CAPABILITIES] }),
      loaderOnly: 'a capability in only one of drop and add',
    },
    {
      at: both('security.privateUsers'),
      apply: (schema) => ({ ...schema, multipleOf: s.UID_RANGE, minimum: s.UID_RANGE, maximum: 0x100000000 - 2 * s.UID_RANGE }),
    },
    {
      // The union of a byte count and a size text; the text is the branch that gets the pattern.
      at: [...both('limits.memory'), ...both('limits.memorySwap')],
      apply: (schema) => ({
        ...schema,
        anyOf: schema.anyOf.map((/** @type {Json} */ branch) =>
          branch.type === 'string' ? withPattern(s.SIZE.source, 'expected a size like 512M or 2G (K, M, G, T are powers of 1024), or a number of bytes')(branch) : branch,
        ),
      }),
    },
    {
      at: both('limits.cpus'),
      apply: (schema) => ({ ...schema, multipleOf: 0.01 }),
      loaderOnly: 'cpus and cpuQuota not both set',
    },
    {
      at: [...both('environment.*'), ...both('authorizedKeys[]'), 'machines.*.provision[][]'],
      apply: (schema) => addPattern(schema, ONE_LINE, 'must be one line (no newline or NUL)'),
    },
    {
      at: ['machines.*.files[].content'],
      apply: (schema) => addPattern(schema, '^[^\\u0000]*$', 'content must not contain NUL'),
    },
    {
      // ReadWritePaths= takes systemd's "-" in front: the path is ignored when it is missing.
      at: ['machines.*.services.*.readWritePaths[]'],
      apply: withPattern(`^-?${PATH}$`, `${PATH_MESSAGE}, optionally with - in front`),
    },
    {
      at: ['machines.*.services.*.capabilities.keep[]', 'machines.*.services.*.capabilities.drop[]'],
      apply: (schema) => ({ ...schema, enum: [...s.CAPABILITIES] }),
    },
    {
      at: ['machines.*.services.*.capabilities'],
      // Both together are refused; ajv's strict mode wants the two named in the same subschema.
      apply: (schema) => ({ ...schema, not: { required: ['keep', 'drop'], properties: { keep: {}, drop: {} } } }),
    },
    {
      at: ['machines.*.services.*.restrictAddressFamilies[]'],
      apply: (schema) => ({ ...schema, enum: [...s.ADDRESS_FAMILIES] }),
    },
    {
      // zod's record would drop the key silently; the schema refuses it by name.
      at: [...both('environment.<name>'), ...both('credentials.<name>'), 'machines.*.services.<name>'],
      apply: (schema) => ({ ...schema, not: { const: '__proto__' } }),
    },
  ];
  return hints;
}

/** Key order in the output: what a reader looks for first comes first. */
const KEY_ORDER = [
  '$schema', 'title', 'description', '$comment', 'type', 'const', 'enum', 'pattern', 'patternErrorMessage', 'minLength', 'maxLength',
  'multipleOf', 'minimum', 'exclusiveMinimum', 'maximum', 'exclusiveMaximum', 'minItems', 'maxItems', 'items', 'required',
  'properties', 'propertyNames', 'additionalProperties', 'anyOf', 'allOf', 'not', 'default',
];

/**
 * The schema with its keywords in KEY_ORDER; manifest keys under properties keep the zod order.
 * @returns {Json}
 */
function ordered(/** @type {Json} */ schema) {
  const unknown = Object.keys(schema).filter((k) => !KEY_ORDER.includes(k));
  if (unknown.length > 0) throw new Error(`unexpected JSON Schema keywords ${unknown.join(', ')}`);
  const keys = Object.keys(schema).sort((a, b) => KEY_ORDER.indexOf(a) - KEY_ORDER.indexOf(b));
  return Object.fromEntries(
    keys.map((k) => {
      const value = schema[k];
      if (k === 'items' || k === 'propertyNames' || k === 'not' || (k === 'additionalProperties' && value !== false)) return [k, ordered(value)];
      if (k === 'anyOf' || k === 'allOf') return [k, value.map(ordered)];
      if (k === 'properties') return [k, Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, ordered(sub)]))];
      return [k, value];
    }),
  );
}

/** Converts one zod type at `path` (like machines.*.files[].path). */
function convert(/** @type {Zod} */ type, /** @type {string} */ path, /** @type {{ hints: Map<string, Hint>, used: Set<string> }} */ ctx) {
  const def = type._def;
  const child = (/** @type {string} */ key) => (path === '' ? key : `${path}.${key}`);
  /** @type {Json} */
  let out;
  switch (def.typeName) {
    case 'ZodOptional':
      out = convert(def.innerType, path, ctx);
      break;
    case 'ZodDefault':
      out = { ...convert(def.innerType, path, ctx), default: def.defaultValue() };
      break;
    case 'ZodEffects': {
      // Every refinement stacked here is read by one hint.
      let inner = type;
      const descriptions = [];
      while (inner._def.typeName === 'ZodEffects') {
        if (inner._def.effect.type !== 'refinement') {
          throw new Error(`${path}: a zod ${inner._def.effect.type} has no JSON Schema; convert it by hand in scripts/json-schema.js`);
        }
        if (inner._def.description !== undefined) descriptions.push(inner._def.description);
        inner = inner._def.schema;
      }
      const hint = ctx.hints.get(path);
      if (!hint) throw new Error(`${path}: a refinement in the zod schema has no entry in HINTS (scripts/json-schema.js); say how it reads in JSON Schema, or what only the loader checks`);
      if (ctx.used.has(path)) throw new Error(`${path}: two separate refinements at one key path; HINTS can only describe one`);
      ctx.used.add(path);
      out = hint.apply(convert(inner, path, ctx));
      if (descriptions.length > 0) out.description = descriptions[0];
      if (hint.loaderOnly) out.$comment = `Checked by the loader only: ${hint.loaderOnly}.`;
      break;
    }
    case 'ZodObject': {
      if (def.unknownKeys !== 'strict') throw new Error(`${path || '(top)'}: every manifest object is .strict(); this one is ${def.unknownKeys}`);
      const shape = def.shape();
      const properties = Object.fromEntries(Object.entries(shape).map(([key, value]) => [key, convert(value, child(key), ctx)]));
      const required = Object.keys(shape).filter((key) => !shape[key].isOptional());
      out = { type: 'object', ...(required.length > 0 ? { required } : {}), properties, additionalProperties: false };
      break;
    }
    case 'ZodRecord':
      out = { type: 'object', propertyNames: convert(def.keyType, child('<name>'), ctx), additionalProperties: convert(def.valueType, child('*'), ctx) };
      break;
    case 'ZodArray':
      out = {
        type: 'array',
        ...(def.minLength ? { minItems: def.minLength.value } : {}),
        ...(def.maxLength ? { maxItems: def.maxLength.value } : {}),
        items: convert(def.type, `${path}[]`, ctx),
      };
      if (def.exactLength) throw new Error(`${path}: exact array lengths are not converted`);
      break;
    case 'ZodString': {
      out = { type: 'string' };
      for (const check of def.checks) {
        if (check.kind !== 'regex') throw new Error(`${path}: string check ${check.kind} is not converted`);
        if (check.regex.flags !== '') throw new Error(`${path}: regex flags ${check.regex.flags} have no JSON Schema`);
        out = addPattern(out, check.regex.source, check.message);
      }
      break;
    }
    case 'ZodNumber': {
      out = { type: 'number' };
      for (const check of def.checks) {
        if (check.kind === 'int') out.type = 'integer';
        else if (check.kind === 'min') out[check.inclusive ? 'minimum' : 'exclusiveMinimum'] = check.value;
        else if (check.kind === 'max') out[check.inclusive ? 'maximum' : 'exclusiveMaximum'] = check.value;
        else throw new Error(`${path}: number check ${check.kind} is not converted`);
      }
      break;
    }
    case 'ZodBoolean':
      out = { type: 'boolean' };
      break;
    case 'ZodEnum':
      out = { type: 'string', enum: [...def.values] };
      break;
    case 'ZodLiteral':
      out = { const: def.value };
      break;
    case 'ZodUnion':
      // A union inside a union is one list of choices.
      out = {
        anyOf: def.options
          .map((/** @type {Zod} */ option) => convert(option, path, ctx))
          .flatMap((/** @type {Json} */ o) => (Object.keys(o).length === 1 && o.anyOf ? o.anyOf : [o])),
      };
      break;
    case 'ZodPipeline':
      // The input's checks, then the output's: both must hold.
      out = { allOf: [convert(def.in, path, ctx), convert(def.out, path, ctx)] };
      break;
    default:
      throw new Error(`${path || '(top)'}: no JSON Schema for ${def.typeName}`);
  }
  if (def.description !== undefined) out = { ...out, description: def.description };
  return out;
}

/** The JSON Schema of machines.yaml, from the manifest's zod schema and a few constants. */
function manifestJsonSchema(/** @type {Sources} */ sources) {
  const hints = new Map();
  for (const hint of hintsFor(sources)) {
    for (const at of hint.at) {
      if (hints.has(at)) throw new Error(`HINTS: ${at} is listed twice`);
      hints.set(at, hint);
    }
  }
  const ctx = { hints, used: new Set() };
  const body = convert(sources.manifestSchema, '', ctx);
  const unused = [...hints.keys()].filter((at) => !ctx.used.has(at));
  if (unused.length > 0) throw new Error(`HINTS: no refinement at ${unused.join(', ')}; remove or move these entries`);
  return ordered({
    $schema: DRAFT,
    title: 'nspawnctl manifest (machines.yaml)',
    ...body,
    $comment: 'Generated from src/manifest/schema.ts by scripts/json-schema.js (npm run schema): do not edit. The loader checks more: see docs/manifest.md, "Editor completion".',
  });
}

/** The file's text: two-space indents, one newline at the end. */
function renderManifestJsonSchema(/** @type {Sources} */ sources) {
  return `${JSON.stringify(manifestJsonSchema(sources), null, 2)}\n`;
}

/** The constants the generator needs, from one compiled tree (dist/ or, in tests, src/). */
function sourcesFrom(/** @type {string} */ dir) {
  return {
    ...require(join(dir, 'manifest', 'schema')),
    ...require(join(dir, 'manifest', 'security')),
    ...require(join(dir, 'manifest', 'services')),
    ...require(join(dir, 'host', 'paths')),
  };
}

module.exports = { SCHEMA_PATH, manifestJsonSchema, renderManifestJsonSchema, sourcesFrom };

if (require.main === module) {
  const root = join(__dirname, '..');
  const dist = join(root, 'dist');
  if (!existsSync(join(dist, 'manifest', 'schema.js'))) {
    console.error('json-schema: dist/ is not built; run npm run schema (it builds first)');
    process.exit(1);
  }
  const text = renderManifestJsonSchema(sourcesFrom(dist));
  const target = join(root, SCHEMA_PATH);
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text);
  console.log(`${SCHEMA_PATH}: ${text.length} bytes`);
}
