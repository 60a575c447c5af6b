#!/usr/bin/env node
// Writes oclif.manifest.json (the command list with flags and help) so that the CLI starts
// without loading every command module: `nspawnctl --version` and `help` stay cheap.
const { Config } = require('@oclif/core');
const { writeFileSync, rmSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
rmSync(join(root, 'oclif.manifest.json'), { force: true });
Config.load(root)
  .then((config) => {
    const plugin = config.plugins.get(config.pjson.name);
    const manifest = plugin.manifest;
    writeFileSync(join(root, 'oclif.manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    console.log(`oclif.manifest.json: ${Object.keys(manifest.commands).length} commands`);
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
