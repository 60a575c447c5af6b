// Types of scripts/json-schema.js, for the tests that regenerate the schema from src/.

/** What the generator reads: the zod schema and the constants its refinements use. */
export interface JsonSchemaSources {
  manifestSchema: unknown;
  RESERVED_ROOTFS_PATHS: readonly string[];
  CAPABILITIES: readonly string[];
  SIZE: RegExp;
  UID_RANGE: number;
  MACHINES_DIR: string;
  ADDRESS_FAMILIES: readonly string[];
}

/** schema/machines.schema.json, relative to the repository root. */
export const SCHEMA_PATH: string;

export function manifestJsonSchema(sources: JsonSchemaSources): Record<string, unknown>;

/** The text of schema/machines.schema.json. */
export function renderManifestJsonSchema(sources: JsonSchemaSources): string;

/** The sources from one tree: dist/ when run by npm, src/ in the tests. */
export function sourcesFrom(dir: string): JsonSchemaSources;
