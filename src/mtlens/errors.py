"""Errors a user can act on; the CLI prints their message (no traceback) and exits 2."""


class MtlensError(Exception):
    """Base class of errors caused by the user's input or environment, with a message saying what to do."""


class ConfigError(MtlensError, ValueError):
    """An invalid config; the message names each offending key and what would be valid."""


class DamagedStoreError(MtlensError):
    """A file of the run store cannot be read; the message names the file and its run."""


__all__ = ["ConfigError", "DamagedStoreError", "MtlensError"]
