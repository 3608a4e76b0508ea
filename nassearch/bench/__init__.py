"""The benchmarks behind ``nassearch bench`` (they print tables, they never assert) and, in ``harness``, what
they share: the resumable cell loop, its results file and worker pool, config checks and table formatting."""
