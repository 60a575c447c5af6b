#!/usr/bin/env node
// Writes the man page (BIN.1) and the bash completion file (BIN.bash) into OUTDIR, from
// oclif.manifest.json (and the manifests of the plugins package.json lists), docs/commands.md
// and docs/design.md. Needs `npm run build` first. Used by scripts/package.sh.
//   node scripts/package-docs.js OUTDIR
const { existsSync, mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

const root = join(__dirname, '..');
const outDir = process.argv[2];
if (!outDir) {
  console.error('usage: node scripts/package-docs.js OUTDIR');
  process.exit(2);
}
const dist = join(root, 'dist');
if (!existsSync(join(root, 'oclif.manifest.json')) || !existsSync(join(dist, 'packaging', 'man-page.js'))) {
  console.error('package-docs: oclif.manifest.json or dist/ is missing: run npm run build first');
  process.exit(1);
}
const { commandDocs } = require(join(dist, 'packaging', 'commands.js'));
const { exitCodesFrom, tableUnder } = require(join(dist, 'packaging', 'docs-sections.js'));
const { renderManPage } = require(join(dist, 'packaging', 'man-page.js'));
const { renderBashCompletion } = require(join(dist, 'packaging', 'bash-completion.js'));
const { MACHINE_RECORDS_DIR } = require(join(dist, 'host', 'paths.js'));

const pjson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const bin = pjson.oclif.bin;
const manifests = [JSON.parse(readFileSync(join(root, 'oclif.manifest.json'), 'utf8'))];
const sources = ['oclif.manifest.json'];
// Commands of plugins (e.g. help, autocomplete) come from the plugin's own manifest.
for (const plugin of pjson.oclif.plugins ?? []) {
  let file;
  try {
    file = join(dirname(require.resolve(`${plugin}/package.json`, { paths: [root] })), 'oclif.manifest.json');
  } catch {
    console.error(`package-docs: plugin ${plugin} is not installed`);
    process.exit(1);
  }
  if (!existsSync(file)) {
    console.error(`package-docs: plugin ${plugin} has no oclif.manifest.json; its commands would be missing`);
    process.exit(1);
  }
  manifests.push(JSON.parse(readFileSync(file, 'utf8')));
  sources.push(`${plugin}'s manifest`);
}
const commands = commandDocs(manifests, bin);
// SOURCE_DATE_EPOCH (reproducible builds) or today.
const epoch = process.env.SOURCE_DATE_EPOCH ? Number(process.env.SOURCE_DATE_EPOCH) * 1000 : Date.now();
const date = new Date(epoch).toISOString().slice(0, 10);
const topics = Object.fromEntries(Object.entries(pjson.oclif.topics ?? {}).map(([k, v]) => [k, v.description ?? '']));

const man = renderManPage({
  bin,
  version: pjson.version,
  description: pjson.description,
  date,
  commands,
  topics,
  exitCodes: exitCodesFrom(readFileSync(join(root, 'docs', 'commands.md'), 'utf8')),
  files: tableUnder(readFileSync(join(root, 'docs', 'design.md'), 'utf8'), '## Files nspawnctl writes'),
  source: [...sources, 'docs/commands.md', 'docs/design.md'].join(', '),
});
const completion = renderBashCompletion({ bin, commands, machineRecordsDir: MACHINE_RECORDS_DIR, source: sources.join(', ') });
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, `${bin}.1`), man);
writeFileSync(join(outDir, `${bin}.bash`), completion);
console.log(`package-docs: ${bin}.1 and ${bin}.bash (${commands.length} commands) in ${outDir}`);
