"""CLI command implementations; each takes parsed args and returns a JSON-able result."""
