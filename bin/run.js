#!/usr/bin/env node
// Entry point: hands argv to oclif, which loads only the command asked for (the command list
// comes from oclif.manifest.json). Only the two oclif entry points needed here are required:
// the package index pulls in all of oclif and doubles start-up time.
const { execute } = require('@oclif/core/execute');
execute({ dir: __dirname }).catch((err) => require('@oclif/core/handle').handle(err));
