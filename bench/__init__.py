"""Benchmarks (never timed assertions in tests): ``python -m bench <name> [options]``."""
