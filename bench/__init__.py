"""Benchmarks: ``make bench`` (``python -m bench``) prints every figure the issues name.

Nothing here asserts a speed; the figures depend on the machine and are for reading.
"""
