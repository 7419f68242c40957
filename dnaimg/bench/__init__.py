"""Benchmarks and evaluation, runnable as modules (``python -m dnaimg.bench.speed`` ...)."""
