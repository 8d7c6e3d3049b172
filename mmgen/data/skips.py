"""``SkipLog``: what ``on_error="skip"`` left out, counted by reason, for the end-of-scan report.

The reason is the ``DataError``'s own (``mmgen.errors.DataError.reason``, looked up along the
``raise ... from`` chain, since the processor re-raises a loader's error with the sample's name):

- ``malformed line``: a JSONL line that is not UTF-8 JSON text holding an object (the line never
  becomes a sample, so it is counted on top of the dataset's length);
- ``malformed row``: a row whose fields have the wrong JSON types or miss what the layout needs;
- ``missing file``, ``unreadable media``, ``remote media`` (an http(s) URL: nothing is
  downloaded), ``placeholder mismatch`` (placeholders and items disagree);
- ``bad sample``: anything else (too long with ``truncation: error``, NaN values, ...).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from mmgen.errors import DataError, reason_of

T = TypeVar("T")
logger = logging.getLogger("mmgen.data")


class SkipLog:
    """Counts skipped samples by reason and keeps the first few messages, and the first
    message of every reason (``firsts``)."""

    def __init__(self, keep: int = 3) -> None:
        self.reasons: Counter[str] = Counter()
        self.examples: list[str] = []
        self.firsts: dict[str, str] = {}
        self._keep = keep

    def attempt(
        self, on_error: Literal["raise", "skip"], work: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T | None:
        """``work(*args, **kwargs)``; a ``DataError`` it raises is raised again
        (``on_error="raise"``), or counted here under its reason and ``None`` returned
        (``"skip"``)."""
        try:
            return work(*args, **kwargs)
        except DataError as error:
            if on_error == "raise":
                raise
            self.add(reason_of(error), error)
            return None

    def add(self, reason: str, error: BaseException | str) -> None:
        self.reasons[reason] += 1
        self.firsts.setdefault(reason, str(error))
        if len(self.examples) < self._keep:
            self.examples.append(str(error))
        logger.debug("skipped (%s): %s", reason, error)

    @property
    def count(self) -> int:
        return sum(self.reasons.values())

    def __len__(self) -> int:
        return self.count

    def report(self, total: int | None = None) -> str:
        """One line: ``skipped 3 of 120 samples (2 missing files, 1 malformed line); first
        missing file: ...; first malformed line: ...`` (the first example of each reason)."""
        if not self.count:
            return "skipped 0 samples"
        of = f" of {total}" if total is not None else ""
        samples = "sample" if self.count == 1 and total is None else "samples"
        reasons = ", ".join(
            f"{n} {_PLURALS.get(reason, reason) if n != 1 else reason}"
            for reason, n in sorted(self.reasons.items())
        )
        firsts = "; ".join(
            f"first {reason}: {self.firsts.get(reason) or self.examples[0]}"
            for reason in sorted(self.reasons)
        )
        return f"skipped {self.count}{of} {samples} ({reasons}); {firsts}"


_PLURALS = {
    "bad sample": "bad samples",
    "malformed line": "malformed lines",
    "malformed row": "malformed rows",
    "missing file": "missing files",
    "placeholder mismatch": "placeholder mismatches",
}
