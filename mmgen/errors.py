"""Exceptions for mistakes a user can fix (bad spec, data, config or arguments).

The CLI prints an ``MmgenError`` as one red line on stderr and exits non-zero; any other
exception is a bug in mmgen and keeps its traceback.
"""


class MmgenError(Exception):
    """A user-facing error: the message says what is wrong and where."""


class SpecError(MmgenError, ValueError):
    """A modality spec is malformed (the message starts with ``file:line``)."""


class ConfigError(MmgenError, ValueError):
    """A training or model config is malformed."""


class DataError(MmgenError, ValueError):
    """A dataset sample, file or media value cannot be used."""


class ExtensionError(MmgenError, ImportError):
    """The compiled extension ``mmgen._C`` is missing, stale or failed to load."""


class CheckpointError(MmgenError):
    """A checkpoint or saved model is incomplete, corrupt or not one mmgen wrote."""


class TrainingError(MmgenError):
    """A run cannot go on (a non-finite loss, an output folder in use by another run)."""
