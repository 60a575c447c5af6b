// schema/machines.schema.json: generated from the zod schema (scripts/json-schema.js), committed,
// and kept current by the first test here; then what editors rely on in it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { manifestJsonSchema, renderManifestJsonSchema, SCHEMA_PATH, sourcesFrom } from '../../scripts/json-schema';
import { manifestSchema } from '../../src/manifest/schema';
import { compileSchema, REPO, SCHEMA_FILE } from '../helpers/json-schema';

const sources = () => sourcesFrom(join(REPO, 'src'));
type Json = { [key: string]: any };

describe('the committed schema is generated from src/manifest/schema.ts', () => {
  test(`${SCHEMA_PATH} is up to date`, () => {
    const fresh = renderManifestJsonSchema(sources());
    const committed = readFileSync(SCHEMA_FILE, 'utf8');
    if (committed !== fresh) {
      const lines = committed.split('\n');
      const at = fresh.split('\n').findIndex((line, i) => line !== lines[i]);
      throw new Error(`${SCHEMA_PATH} is out of date with the zod schema (first difference at line ${at + 1}): run \`npm run schema\` and commit ${SCHEMA_PATH}`);
    }
  });

  test('it sits at schema/machines.schema.json in the repository root, where both packages take it from', () => {
    expect(SCHEMA_PATH).toBe('schema/machines.schema.json');
    expect(SCHEMA_FILE).toBe(join(REPO, SCHEMA_PATH));
  });

  test('it is draft-07 and compiles in ajv strict mode', () => {
    expect(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')).$schema).toBe('http://json-schema.org/draft-07/schema#');
    expect(() => compileSchema()).not.toThrow();
  });
});

describe('the generator refuses what it cannot translate', () => {
  const extended = (shape: z.ZodRawShape) => ({ ...sources(), manifestSchema: (manifestSchema as z.AnyZodObject).extend(shape) });

  test('a refinement without a hint', () => {
    expect(() => manifestJsonSchema(extended({ extra: z.string().refine((s) => s !== 'x') }))).toThrow(
      'extra: a refinement in the zod schema has no entry in HINTS (scripts/json-schema.js)',
    );
  });

  test('a transform', () => {
    expect(() => manifestJsonSchema(extended({ extra: z.string().transform((s) => s.length) }))).toThrow('extra: a zod transform has no JSON Schema');
  });

  test('an object that is not strict (zod would drop unknown keys the schema cannot know about)', () => {
    expect(() => manifestJsonSchema(extended({ extra: z.object({ a: z.string() }) }))).toThrow('extra: every manifest object is .strict(); this one is strip');
  });

  test('a zod type it does not know', () => {
    expect(() => manifestJsonSchema(extended({ extra: z.date() }))).toThrow('extra: no JSON Schema for ZodDate');
  });

  test('a hint whose refinement is gone', () => {
    const withoutNetworks = { ...sources(), manifestSchema: (manifestSchema as z.AnyZodObject).omit({ networks: true }) };
    expect(() => manifestJsonSchema(withoutNetworks)).toThrow('HINTS: no refinement at networks.*.gateway, networks.*.subnet');
  });
});

/** Every subschema with its path, for structural checks. */
function walk(schema: Json, path: string, visit: (s: Json, path: string) => void): void {
  visit(schema, path);
  for (const [key, sub] of Object.entries(schema.properties ?? {})) walk(sub as Json, `${path}.${key}`, visit);
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') walk(schema.additionalProperties, `${path}.*`, visit);
  if (schema.propertyNames) walk(schema.propertyNames, `${path}.<name>`, visit);
  if (schema.items) walk(schema.items, `${path}[]`, visit);
  for (const key of ['anyOf', 'allOf'] as const) (schema[key] ?? []).forEach((sub: Json, i: number) => walk(sub, `${path}/${key}${i}`, visit));
}

describe('what editors get from it', () => {
  const schema: Json = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8'));

  test('every key of the manifest has a description to show on hover', () => {
    const missing: string[] = [];
    walk(schema, '', (s, path) => {
      for (const [key, sub] of Object.entries(s.properties ?? {})) if (!(sub as Json).description) missing.push(`${path}.${key}`);
    });
    expect(missing).toEqual([]);
  });

  test('every object refuses unknown keys, like the loader', () => {
    const open: string[] = [];
    walk(schema, '', (s, path) => {
      if (s.properties && s.additionalProperties !== false) open.push(path);
    });
    expect(open).toEqual([]);
  });

  test('every map has its key rule: host, machine, network, environment, credential and service names', () => {
    const maps: Record<string, string> = {};
    walk(schema, '', (s, path) => {
      if (s.propertyNames) maps[path] = s.propertyNames.pattern;
    });
    expect(maps).toEqual({
      '.hosts': '^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$',
      '.networks': '^[a-z][a-z0-9_-]{0,14}$',
      '.machines': '^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$',
      '.defaults.environment': '^[A-Za-z_][A-Za-z0-9_]*$',
      '.defaults.credentials': '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$',
      '.machines.*.environment': '^[A-Za-z_][A-Za-z0-9_]*$',
      '.machines.*.credentials': '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$',
      '.machines.*.services': '^(?=.{1,247}$)(?!.*\\.\\.)(?!.*\\.service$)[A-Za-z0-9_][A-Za-z0-9_.:-]*(@[A-Za-z0-9_.:-]+)?$',
    });
  });

  test('every pattern compiles with the u flag, as editors and ajv compile them, and has a message', () => {
    const patterns: string[] = [];
    walk(schema, '', (s, path) => {
      if (s.pattern === undefined) return;
      patterns.push(path);
      expect(() => new RegExp(s.pattern, 'u')).not.toThrow();
      expect({ path, message: typeof s.patternErrorMessage }).toEqual({ path, message: 'string' });
    });
    expect(patterns.length).toBeGreaterThan(40);
  });

  test('defaults and every machine take the same settings', () => {
    const { defaults, machines } = schema.properties;
    const machine = machines.additionalProperties.properties;
    for (const [key, sub] of Object.entries(defaults.properties)) expect({ key, schema: machine[key] }).toEqual({ key, schema: sub });
  });
});
