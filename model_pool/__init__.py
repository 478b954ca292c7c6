"""The model zoo: datasets, architectures, modification recipes, the registry and the pool builder (no import of mgmp)."""
