"""Benchmark harness: the real bot against the project's fakes, figures with baselines from one run."""
