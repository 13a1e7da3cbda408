"""Benchmarks of the erasure pipeline against the real broker, databases and sandbox (`make bench`)."""
