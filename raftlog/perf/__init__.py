"""Benchmarks behind `raftlog perf ...`: each prints figures, none asserts speed."""
