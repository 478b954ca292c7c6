"""Errors that the CLI turns into one line on stderr and exit code 2."""


class MgmpError(Exception):
    """Bad input: an unknown name, a malformed file, a failed integrity check."""


class IntegrityError(MgmpError):
    """A model file does not match its recorded sha256, or is not a safe format."""
