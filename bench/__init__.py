"""Benchmark suite (``make bench``): Akka's JournalPerfSpec workloads with baselines.

Not a test: nothing here asserts on time. See ``python -m bench --help`` and the README's
Performance section.
"""
