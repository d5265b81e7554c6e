"""Benchmarks of the product against its alternatives (``make bench``); never part of ``make test``."""
