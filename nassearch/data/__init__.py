"""Benchmark tables and their importers: NAS-Bench-101/201 tables, latency datasets."""
