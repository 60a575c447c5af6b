#!/usr/bin/env node
// Entry point: hands argv to oclif, which loads the compiled commands from dist/.
const oclif = require('@oclif/core');
oclif.execute({ dir: __dirname }).catch(oclif.Errors.handle);
