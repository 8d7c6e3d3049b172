"""What a dataset entry's ``value`` holds, for generated loaders: ``bytes``, a ``path`` or an
``array`` — found by the built-in loaders' own ``classify`` (``datasets``' ``{"bytes": ...,
"path": ...}`` and ``{"array": ..., "sampling_rate": ...}`` dicts included), then checked
against the kinds a modality's spec accepts.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

from mmgen.errors import DataError
from mmgen.loaders._source import classify

Kind = Literal["bytes", "path", "array"]


def read_value(
    entry: dict[str, Any], accepts: Collection[Kind] = ("bytes", "path", "array")
) -> tuple[Kind, Any]:
    """Return ``(kind, payload)``: bytes, an existing ``Path``, or a numpy array."""
    source = classify(entry)
    if source.kind == "object":
        raise DataError(f"cannot load a {type(source.payload).__name__} value")
    if source.kind not in accepts:
        raise DataError(f"this loader takes {', '.join(accepts)} values, not {source.kind}")
    if source.kind == "path" and not Path(source.payload).is_file():
        raise DataError(f"file not found: {source.payload}", reason="missing file")
    return source.kind, source.payload
