// npm run bench -- --loader: real timings of parseManifest (the built loader in dist/) on the
// hostile inputs whose WORK the unit tests bound by counting (test/hostile/hostile-input.test.ts).
// Needs no root. Each time is the median of RUNS runs (default 5) after one warm-up run.
'use strict';
const { join } = require('node:path');
const { parseManifest } = require(join(__dirname, '..', 'dist', 'manifest', 'load.js'));

const RUNS = Number(process.env.RUNS) || 5;
const yaml = (...lines) => `${lines.join('\n')}\n`;
const repeat = (n, line) => Array.from({ length: n }, (_, i) => line(i));

const badMachineNames = (n) => yaml('machines:', ...repeat(n, (i) => `  M${i}: {}`));
const copiesOfOneKey = (n) => yaml('machines:', ...repeat(n, () => '  web: {}'));
const unknownKeys = (n) => yaml('machines:', '  web:', ...repeat(n, (i) => `    k${i}: 1`));
const validMachines = (n) => yaml('machines:', ...repeat(n, (i) => `  m${i}: { hostname: host${i} }`));
const overlappingNetworks = (n) => yaml('networks:', ...repeat(n, (i) => `  n${i}: { subnet: 10.0.0.0/24 }`), 'machines: {}');

function billionLaughs() {
  const levels = 'abcdefghi'.split('');
  const lines = [`a: &a [${Array(9).fill('"lol"').join(',')}]`];
  for (let i = 1; i < levels.length; i++) lines.push(`${levels[i]}: &${levels[i]} [${Array(9).fill(`*${levels[i - 1]}`).join(',')}]`);
  lines.push('machines: {}');
  return yaml(...lines);
}

/** Pairs of sizes (n and 4n) show how the time grows; the unit tests count the work instead. */
const CASES = [
  ...[1000, 4000].map((n) => [`${n} valid machines (loads)`, validMachines(n)]),
  ...[1000, 4000].map((n) => [`${n} machine names breaking the naming rule`, badMachineNames(n)]),
  ...[1000, 4000].map((n) => [`${n} copies of one key`, copiesOfOneKey(n)]),
  ...[1000, 4000].map((n) => [`${n} unknown keys in one machine`, unknownKeys(n)]),
  // A known quadratic path (every pair of networks is compared; every overlap is kept): smaller.
  ...[250, 1000].map((n) => [`${n} networks with one subnet`, overlappingNetworks(n)]),
  ['billion laughs', billionLaughs()],
  ['a 2 MB manifest (refused before parsing)', yaml('machines:', '  web:', `    files: [{ path: /x, content: "${'a'.repeat(2 * 1024 * 1024)}" }]`)],
  ['flow sequences nested 1000 deep', `machines:\n  web:\n    files: ${'['.repeat(1000)}${']'.repeat(1000)}\n`],
  ['flow mappings nested 1000 deep', `machines: ${'{a: '.repeat(1000)}1${'}'.repeat(1000)}\n`],
];

/** Milliseconds for one parseManifest; a ManifestError is the expected outcome for most inputs. */
function timeOnce(text) {
  const started = process.hrtime.bigint();
  try {
    parseManifest('machines.yaml', text);
  } catch (err) {
    if (err?.constructor?.name !== 'ManifestError') throw err;
  }
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const median = (xs) => {
  const sorted = xs.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

console.log(`loader: parseManifest from dist/, median of ${RUNS} runs after a warm-up (node ${process.version})`);
console.log(`${'input'.padEnd(44)} ${'size'.padStart(9)} ${'median'.padStart(10)}   runs (ms)`);
for (const [name, text] of CASES) {
  timeOnce(text);
  const runs = Array.from({ length: RUNS }, () => timeOnce(text));
  const size = `${(Buffer.byteLength(text) / 1024).toFixed(1)} KB`;
  console.log(`${name.padEnd(44)} ${size.padStart(9)} ${`${median(runs).toFixed(1)} ms`.padStart(10)}   ${runs.map((r) => r.toFixed(1)).join(', ')}`);
}
