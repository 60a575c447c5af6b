// machines.example.yaml and every yaml example in docs/*.md. A whole manifest starts with the
// modeline that points editors at the schema, and both the schema and the loader accept it. An
// example that shows part of a manifest (one section) has no modeline, is listed in FRAGMENTS
// with the reason, and is checked not to load on its own (else it should be a whole manifest).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileSchema, docsYamlBlocks, judge, MODELINE, REPO, YamlBlock } from '../helpers/json-schema';

const validate = compileSchema();
const blocks = docsYamlBlocks();

/** The examples that are parts of a manifest, by file and first lines. */
const FRAGMENTS = [
  { file: 'docs/manifest.md', start: 'defaults: {...}', why: 'the outline of the three top-level keys' },
  { file: 'docs/manifest.md', start: 'defaults:\n  suite: bookworm', why: 'defaults: alone, without machines:' },
  { file: 'docs/manifest.md', start: 'networks:\n  examplevlan:', why: 'networks: alone, without machines:' },
  { file: 'docs/manifest.md', start: 'machines:\n  web:\n    hostname: web', why: 'machines on the networks of the example before it' },
  { file: 'docs/manifest.md', start: 'bind:\n  - /srv/shared', why: 'bind: alone, the entries of one machine' },
  { file: 'docs/security.md', start: '    services:\n      nginx:', why: 'services: added to the machine of the worked example' },
  { file: 'docs/security.md', start: '    security:\n      preset: strict\n      capabilities', why: 'security: of the worked example, loosened to profile' },
];

const fragmentOf = (block: YamlBlock) => FRAGMENTS.filter((f) => block.where.startsWith(`${f.file}:`) && block.text.startsWith(f.start));
// A whole manifest starts with a modeline: the docs' own examples with MODELINE, the output of
// `nspawnctl init` shown in docs/commands.md with the path init writes.
const isWhole = (b: YamlBlock) => b.text.startsWith(`${MODELINE}\n`) || (b.where.startsWith('docs/commands.md:') && b.text.startsWith('# yaml-language-server: $schema='));
const wholes = blocks.filter(isWhole);
const parts = blocks.filter((b) => !isWhole(b));

test('machines.example.yaml starts with the modeline and is valid for the schema and the loader', () => {
  const text = readFileSync(join(REPO, 'machines.example.yaml'), 'utf8');
  expect(text.split('\n')[0]).toBe(MODELINE);
  expect(judge(validate, text)).toEqual({ schema: [], loader: [], loaderMessages: [] });
});

test('the docs have whole manifests and fragments to check', () => {
  expect(wholes.length).toBeGreaterThanOrEqual(4);
  expect(parts.length).toBe(FRAGMENTS.length);
});

describe('every whole manifest in docs/ is valid for the schema and the loader', () => {
  test.each(wholes.map((b) => [b.where, b]))('%s', (_where, block) => {
    expect(judge(validate, block.text)).toEqual({ schema: [], loader: [], loaderMessages: [] });
  });
});

describe('every other yaml example in docs/ is a listed fragment and does not load alone', () => {
  test.each(parts.map((b) => [b.where, b]))('%s', (where, block) => {
    expect({ where, fragments: fragmentOf(block).length }).toEqual({ where, fragments: 1 });
    expect(block.text).not.toContain('yaml-language-server');
    expect(judge(validate, block.text).loader).not.toEqual([]);
  });

  test.each(FRAGMENTS.map((f) => [`${f.file}: ${f.why}`, f]))('the fragment "%s" is still in the docs', (_name, fragment) => {
    expect(parts.filter((b) => fragmentOf(b).includes(fragment))).toHaveLength(1);
  });
});

test("docs/manifest.md: its networks and machines examples together are a valid manifest", () => {
  const networks = parts.find((b) => b.text.startsWith('networks:\n  examplevlan:'))!;
  const machines = parts.find((b) => b.text.startsWith('machines:\n  web:\n    hostname: web'))!;
  expect(judge(validate, networks.text + machines.text)).toEqual({ schema: [], loader: [], loaderMessages: [] });
});
