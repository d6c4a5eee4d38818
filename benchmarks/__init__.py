"""Throughput and memory benchmarks: `python -m benchmarks`."""
