"""walt's benchmark suites: `python -m walt.benchmark --suite=<name>`."""
