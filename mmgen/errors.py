"""Exceptions for mistakes a user can fix (bad spec, data, config or arguments), and the "did you
mean" hint their messages share.

The CLI prints an ``MmgenError`` as one red line on stderr and exits non-zero; any other
exception is a bug in mmgen and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(
    word: str, choices: Iterable[str], *, cutoff: float = 0.6, listing: bool = False
) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``word``; when none is close,
    ``""`` (or ``"; expected one of a, b"`` with ``listing``)."""
    choices = list(choices)
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=cutoff)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of {', '.join(choices)}" if listing and choices else ""


# what str.splitlines() breaks at: an error line holding one (from a file's key or value) would
# print as several lines
_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(message: str) -> str:
    """``message`` with every line break written as its escape (``\\n``, ``\\x1e``)."""
    return message.strip().translate(_BREAKS)


class MmgenError(Exception):
    """A user-facing error: the message says what is wrong and where."""


class SpecError(MmgenError, ValueError):
    """A modality spec is malformed (the message starts with ``file:line``)."""


class ConfigError(MmgenError, ValueError):
    """A training or model config is malformed."""


class DataError(MmgenError, ValueError):
    """A dataset sample, file or media value cannot be used.

    ``reason`` is the kind of problem ``on_error: skip`` counts it under (``"missing file"``,
    ``"unreadable media"``, ...; see ``mmgen.data.skips``), or None for a plain bad sample.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        # keep the reason across processes (scan workers): an exception pickles its args only,
        # and its cause chain not at all
        return (_data_error, (str(self), reason_of(self)))


def reason_of(error: BaseException) -> str:
    """The first ``reason`` along ``error``'s cause chain, else ``"bad sample"``."""
    seen: BaseException | None = error
    while seen is not None:
        reason = getattr(seen, "reason", None)
        if reason:
            return reason
        seen = seen.__cause__
    return "bad sample"


def _data_error(message: str, reason: str) -> DataError:
    return DataError(message, reason=None if reason == "bad sample" else reason)


class ExtensionError(MmgenError, ImportError):
    """The compiled extension ``mmgen._C`` is missing, stale or failed to load."""


class CheckpointError(MmgenError):
    """A checkpoint or saved model is incomplete, corrupt or not one mmgen wrote."""


class TrainingError(MmgenError):
    """A run cannot go on (a non-finite loss, an output folder in use by another run)."""
