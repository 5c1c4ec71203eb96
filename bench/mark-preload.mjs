// Loaded by bench/cold-start.ts with `--import`, after tsx (plain JavaScript, nothing to
// transform): tells the parent on stderr that Node and tsx are up and the core's own modules are
// about to load. The text must match PRELOAD_MARK in bench/lib.ts.
process.stderr.write('aiplat-bench: preload\n');
