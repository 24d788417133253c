"""Benchmarks (``agentrl bench …``): each prints a table and writes JSON."""
