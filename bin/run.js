#!/usr/bin/env node
// Entry point: hands argv to oclif, which loads only the command asked for (the command list
// comes from oclif.manifest.json). Only the two oclif entry points needed here are required:
// the package index pulls in all of oclif and doubles start-up time.
// Colour is decided first (src/cli/color.ts): the colour libraries read the environment when loaded.
Object.assign(process.env, require('../dist/cli/color.js').colorOffEnvironment(process.env, require('node:tty').isatty(1)));
const { execute } = require('@oclif/core/execute');
execute({ dir: __dirname }).catch((err) => require('@oclif/core/handle').handle(err));
