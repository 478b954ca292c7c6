"""The project's error hierarchy, defined once in :mod:`model_pool.errors` (the bottom layer)."""
from model_pool.errors import (
                               BadInput,
                               IntegrityError,
                               MgmpError,
                               NotApplicable,
                               RegistryCorrupt,
                               StorageError,
                               TooLarge,
                               first_line,
                               one_line,
)

__all__ = ["MgmpError", "BadInput", "IntegrityError", "NotApplicable", "RegistryCorrupt", "StorageError", "TooLarge",
           "first_line", "one_line"]
