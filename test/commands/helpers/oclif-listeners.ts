// Import first in a test file that loads @oclif/core. Each load of oclif's command.js (once per
// test file: Jest gives each its own module registry) adds an 'error' listener to the one real
// process.stdout; past ten, Node prints a MaxListenersExceededWarning into whichever test is
// capturing stderr. The files that existed before these helpers load it nine times at most.
process.stdout.setMaxListeners(Math.max(process.stdout.getMaxListeners(), 100));

export {};
