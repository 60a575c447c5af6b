// Runs before each unit test file. @oclif/core's command.js adds an 'error' listener to
// process.stdout when it is loaded, and jest loads it afresh for every test file while the
// worker's process (and its stdout) stays the same. After ten files in one worker, Node would
// print a MaxListenersExceededWarning on stderr, at a moment that falls into some later test's
// captured output. One listener per loaded copy is expected here, so the limit is lifted.
process.stdout.setMaxListeners(0);
process.stderr.setMaxListeners(0);
