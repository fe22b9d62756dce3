"""Benchmarks: each `*_bench.py` module has a `main() -> int`. Not tests: they print
measurements and targets. Run all with `python -m benchmarks` (or `make bench`)."""
