"""Benchmarks behind ``mgmp bench ...``: each returns a JSON-able result and a markdown table."""
