"""What a dataset entry's ``value`` holds, for loaders: ``bytes``, a ``path`` or an ``array``.

``datasets``' media features store ``{"bytes": ..., "path": ...}`` or ``{"array": ...,
"sampling_rate": ...}`` dicts; those are unpacked here so every loader sees the same three kinds.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmgen.constants import MODALITY_VALUE_KEY
from mmgen.errors import DataError

Kind = Literal["bytes", "path", "array"]


def read_value(
    entry: dict[str, Any], accepts: Collection[Kind] = ("bytes", "path", "array")
) -> tuple[Kind, Any]:
    """Return ``(kind, payload)``: bytes, an existing ``Path``, or the array-like as given."""
    value = entry.get(MODALITY_VALUE_KEY) if isinstance(entry, dict) else None
    if isinstance(value, dict):
        value = next(
            (value[k] for k in ("bytes", "array", "path") if value.get(k) is not None), None
        )
    if value is None:
        raise DataError(f"the modality entry has no {MODALITY_VALUE_KEY!r} to load")
    if isinstance(value, (bytes, bytearray, memoryview)):
        kind, payload = "bytes", bytes(value)
    elif isinstance(value, (str, os.PathLike)):
        kind, payload = "path", Path(value)
        if not payload.is_file():
            raise DataError(f"file not found: {payload}")
    else:
        kind, payload = "array", value
    if kind not in accepts:
        raise DataError(f"this loader takes {', '.join(accepts)} values, not {kind}")
    return kind, payload


def sampling_rate_of(entry: dict[str, Any]) -> int | None:
    """The rate an entry says its samples were recorded at (``datasets``' Audio dicts too)."""
    value = entry.get(MODALITY_VALUE_KEY)
    if isinstance(value, dict) and value.get("sampling_rate"):
        return int(value["sampling_rate"])
    rate = entry.get("sampling_rate")
    return int(rate) if rate else None


def as_array(payload: Any, dtype: str = "float32") -> np.ndarray:
    """An array payload (list, numpy array, torch tensor) as a numpy array of ``dtype``."""
    if hasattr(payload, "detach"):
        payload = payload.detach().cpu().numpy()
    return np.asarray(payload, dtype=dtype)
