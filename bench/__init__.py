"""Benchmark scripts (run each as ``uv run python bench/<name>.py``); a package so that they can
share ``bench.common``."""
