"""Benchmarks, run on purpose (bench/run.sh), never as timed tests."""
