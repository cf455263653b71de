"""Benchmarks: each module prints its figures as a table and as one JSON line."""
