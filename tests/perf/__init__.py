"""Benchmarks run as scripts (`python tests/perf/bench_core.py`); pytest does not collect them."""
