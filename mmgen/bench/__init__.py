"""Benchmarks behind ``mmgen bench``: each builds its inputs once and prints one table."""
