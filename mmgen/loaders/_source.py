"""Where a modality value comes from: bytes, a file path, an array, or an already-decoded object.

Dataset values take several shapes (JSONL paths, ``datasets`` binary columns, Image/Audio feature
dicts such as ``{"bytes": ..., "path": ...}``, numpy arrays); every built-in loader accepts all of
them through ``classify``, so each loader only writes its decoding.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from mmgen.constants import MODALITY_VALUE_KEY
from mmgen.errors import DataError

Kind = Literal["bytes", "path", "array", "object"]
T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    kind: Kind
    payload: Any  # bytes | Path | np.ndarray | decoded object
    sampling_rate: int | None = None  # for arrays that carry one (e.g. datasets' Audio feature)

    def decode(
        self, media: str, decoder: Callable[[io.BytesIO | Path], T], errors: tuple[type, ...]
    ) -> T:
        """Run ``decoder`` on the bytes or file ("bytes" and "path" kinds), reporting a missing
        file as such and the decoder's ``errors`` as undecodable media."""
        if self.kind == "bytes":
            handle, what = io.BytesIO(self.payload), f"{media} bytes"
        elif self.payload.is_file():
            handle, what = self.payload, f"{media} file {self.payload}"
        elif self.payload.exists():  # a folder, FIFO or device: never opened
            raise DataError(f"not a regular file: {self.payload}", reason="unreadable media")
        else:
            raise DataError(f"file not found: {self.payload}", reason="missing file")
        try:
            return decoder(handle)
        except DataError:  # the decoder's own verdict (e.g. a size limit) stands as it is
            raise
        except errors as exc:
            raise DataError(f"cannot decode {what}: {exc}", reason="unreadable media") from exc


def classify(entry: dict[str, Any]) -> Source:
    """Find the data in a dataset entry ``{"type": ..., "value": ...}``.

    A dict value is searched for ``bytes``, then ``array``, then ``path`` (the first one that is
    not None), so datasets' ``{"bytes": b, "path": "x.png"}`` decodes the bytes it carries.
    """
    value = entry.get(MODALITY_VALUE_KEY) if isinstance(entry, dict) else None
    if value is None:
        raise DataError(f"no {MODALITY_VALUE_KEY!r} in the modality entry")
    rate = entry.get("sampling_rate")
    if isinstance(value, dict):
        rate = value.get("sampling_rate", rate)
        for key in ("bytes", "array", "path"):
            if value.get(key) is not None:
                value = value[key]
                break
        else:
            raise DataError("the value dict holds none of 'bytes', 'array', 'path'")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Source("bytes", bytes(value))
    if isinstance(value, (str, os.PathLike)):
        return Source("path", Path(value))
    if isinstance(value, (list, tuple, np.ndarray)):
        return Source("array", np.asarray(value), rate)
    if type(value).__module__.startswith("torch"):
        return Source("array", value.detach().cpu().numpy(), rate)
    return Source("object", value, rate)


def resolve_paths(entry: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Return ``entry`` with a relative path value made relative to ``base_dir`` (the dataset's
    folder); other values are returned untouched.
    """
    if base_dir is None:
        return entry
    value = entry.get(MODALITY_VALUE_KEY)
    if isinstance(value, (str, os.PathLike)) and not Path(value).is_absolute():
        return {**entry, MODALITY_VALUE_KEY: str(base_dir / value)}
    path = value.get("path") if isinstance(value, dict) else None
    if isinstance(path, (str, os.PathLike)) and not Path(path).is_absolute():
        return {**entry, MODALITY_VALUE_KEY: {**value, "path": str(base_dir / path)}}
    return entry
