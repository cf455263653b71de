"""Benchmarks, runnable as modules: `python -m bench.dora`."""
