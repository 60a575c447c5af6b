// nspawnctl runs on the distributions' own Node.js: Debian 12 ships 18.20.4, Ubuntu 24.04 18.19,
// Debian 13 20.19. Every package in the lockfile (the ones installed, and the ones a global
// install gets through npm-shrinkwrap.json) must say it runs on those, and the type
// declarations are Node 18's, so that tsc rejects an API newer than 18 in src/.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// semver comes with @oclif/core; its types are not installed.
const semver = require('semver') as { satisfies(version: string, range: string): boolean; minVersion(range: string): { version: string } | null };

const ROOT = join(__dirname, '..', '..');
const pjson = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
/** The distributions' versions, and the oldest and a current one of each supported line. */
const DISTRO_NODES = ['18.19.0', '18.19.1', '18.20.4', '20.5.0', '20.19.0', '22.0.0', '22.12.0'];

test('package.json accepts the distributions\' Node.js versions, starting at 18.19', () => {
  const range = pjson.engines.node as string;
  for (const v of DISTRO_NODES) expect({ v, ok: semver.satisfies(v, range) }).toEqual({ v, ok: true });
  expect(semver.minVersion(range)?.version).toBe('18.19.0');
  expect(semver.satisfies('18.18.2', range)).toBe(false);
  expect(lock.packages[''].engines).toEqual(pjson.engines);
});

test('every package in the lockfile runs on each of those versions (its engines.node)', () => {
  const refusals: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages as Record<string, { version?: string; engines?: unknown; dev?: boolean }>)) {
    if (path === '') continue;
    // Old packages wrote engines as an array of strings; npm ignores those.
    const range = entry.engines && !Array.isArray(entry.engines) ? (entry.engines as { node?: string }).node : undefined;
    if (!range) continue;
    for (const v of DISTRO_NODES) {
      if (!semver.satisfies(v, range)) refusals.push(`${path}@${entry.version}${entry.dev ? ' (dev)' : ''}: engines.node "${range}" refuses ${v}`);
    }
  }
  expect(refusals).toEqual([]);
});

test('the type declarations are Node 18\'s: tsc rejects APIs newer than 18', () => {
  const types = lock.packages['node_modules/@types/node'];
  expect(types.version).toMatch(/^18\./);
  expect(pjson.devDependencies['@types/node']).toMatch(/^\^18\./);
});

test('every package in the lockfile keeps its registry URL (.npmrc): npm 9 installs from it without fetching metadata', () => {
  const missing = Object.entries(lock.packages as Record<string, { resolved?: string; link?: boolean }>)
    .filter(([path, entry]) => path !== '' && !entry.link && !entry.resolved?.startsWith('https://registry.npmjs.org/'))
    .map(([path]) => path);
  expect(missing).toEqual([]);
  expect(readFileSync(join(ROOT, '.npmrc'), 'utf8')).toMatch(/^omit-lockfile-registry-resolved=false$/m);
});
