// node bench/results.js RESULTS.json SCALE.svg < lines: turns the benchmark's lines
// ("name<TAB>median<TAB>runs", from bench/inside.sh and bench/scale.sh) into
//   - RESULTS.json: every measurement with all its runs, the scale table and each target with
//     its value and whether it was met, so that two runs can be compared (git diff, or jq);
//   - SCALE.svg: time against the number of machines for apply, no-op re-apply and plan, with
//     the raw bootstrap as a reference line (bench/plot.js);
// and prints the targets. RUNS, JOBS and CORES (environment) describe the run.
'use strict';
const { mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const { dirname } = require('node:path');
const os = require('node:os');
const { renderScaleSvg } = require('./plot');

const [jsonPath, svgPath] = process.argv.slice(2);
if (!jsonPath || !svgPath) {
  process.stderr.write('usage: node bench/results.js RESULTS.json SCALE.svg < lines\n');
  process.exit(2);
}

const measurements = {};
for (const line of readFileSync(0, 'utf8').split('\n')) {
  const [name, median, runs] = line.split('\t');
  if (!name || median === undefined) continue;
  measurements[name] = { median: Number(median), runs: (runs ?? '').trim().split(/\s+/).filter(Boolean).map(Number) };
}
const get = (name) => measurements[name]?.median;

const jobs = Number(process.env.JOBS) || 2;
const cores = Number(process.env.CORES) || os.cpus().length;
const counts = [...new Set(Object.keys(measurements).flatMap((k) => /^scale (\d+) apply$/.exec(k)?.[1] ?? []))].map(Number).sort((a, b) => a - b);
const scale = counts.map((n) => ({
  n,
  apply: get(`scale ${n} apply`),
  applyPerMachine: get(`scale ${n} apply per machine`),
  noop: get(`scale ${n} noop`),
  plan: get(`scale ${n} plan`),
  rssMB: { apply: get(`scale ${n} rss apply`), noop: get(`scale ${n} rss noop`), plan: get(`scale ${n} rss plan`) },
  diskMBPerMachine: { apparent: get(`scale ${n} disk apparent`), used: get(`scale ${n} disk used`), usedAllMachines: get(`scale ${n} disk used all`) },
}));

/** A target: met when value <= limit; undefined values (not measured in this run) are left out. */
const targets = [];
function target(name, value, limit, unit = '') {
  if (value === undefined || limit === undefined || Number.isNaN(value) || Number.isNaN(limit)) return;
  targets.push({ name, value: +value.toFixed(3), limit: +limit.toFixed(3), unit, met: value <= limit, by: +((value / limit - 1) * 100).toFixed(1) });
}
const ratio = (a, b) => (a === undefined || b === undefined ? undefined : a / b);
target('cold apply of 1 machine / raw mmdebstrap', ratio(get('apply 1 machine, cold cache'), get('raw mmdebstrap')), 0.85);
target('warm apply of 1 more machine / raw mmdebstrap', ratio(get('apply 1 more machine, warm cache'), get('raw mmdebstrap')), 0.2);
target('4 machines over 2 bases, cold / cold apply of 1', ratio(get('apply 4 machines / 2 bases, cold'), get('apply 1 machine, cold cache')), 2.0);
target('no-op re-apply of 4 machines', get('no-op re-apply of 4 machines'), 1.5, 's');
target('--version / node -e 0', ratio(get('nspawnctl --version'), get('node -e 0')), 2.5);
target('readiness: machinectl start until ready (median)', get('readiness nspawnctl'), 1.5, 's');
const last = scale[scale.length - 1];
const warm1 = get('scale warm 1');
if (last && warm1 !== undefined) {
  target(`apply of ${last.n} machines (limit: ${last.n} x warm 1 / min(jobs ${jobs}, cores ${cores}) x 1.2)`, last.apply, ((last.n * warm1) / Math.min(jobs, cores)) * 1.2, 's');
}
if (last) {
  target(`no-op re-apply of ${last.n} machines`, last.noop, 0.6, 's');
  target(`plan of ${last.n} machines`, last.plan, 0.5, 's');
  const rss = Object.values(last.rssMB).filter((v) => v !== undefined);
  if (rss.length > 0) target(`peak RSS of nspawnctl at ${last.n} machines`, Math.max(...rss), 150, 'MB');
}

const results = {
  date: new Date().toISOString(),
  host: { cores, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), kernel: os.release(), node: process.version },
  runs: Number(process.env.RUNS) || 3,
  jobs,
  measurements,
  scale,
  targets,
};
mkdirSync(dirname(jsonPath), { recursive: true });
writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
if (scale.length > 0) writeFileSync(svgPath, renderScaleSvg(results));

const width = Math.max(...targets.map((t) => t.name.length), 10);
console.log(`${'target'.padEnd(width)}  ${'value'.padStart(8)}  ${'limit'.padStart(8)}  met`);
for (const t of targets) {
  console.log(`${t.name.padEnd(width)}  ${`${t.value}${t.unit}`.padStart(8)}  ${`${t.limit}${t.unit}`.padStart(8)}  ${t.met ? 'yes' : `NO (by ${t.by} %)`}`);
}
console.log(`\nwrote ${jsonPath}${scale.length > 0 ? ` and ${svgPath}` : ''}`);
