// Preloaded into the CLI by the benchmark (node --require bench/peak-rss.js bin/run.js ...):
// when the process exits, writes its peak resident set size in KB (getrusage's ru_maxrss, this
// process only, not the programs it ran) to the file named by PEAK_RSS_FILE.
'use strict';
const { writeFileSync } = require('node:fs');

const file = process.env.PEAK_RSS_FILE;
if (file) process.on('exit', () => writeFileSync(file, `${process.resourceUsage().maxRSS}\n`));
