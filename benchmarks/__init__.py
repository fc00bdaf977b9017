"""Benchmarks of ndintake against other validation pipelines: ``python -m benchmarks``."""
