"""Benchmarks and load tests (their own issue)."""
