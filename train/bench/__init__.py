"""Benchmarks: measurements that take minutes to hours (make bench-*), not tests."""
