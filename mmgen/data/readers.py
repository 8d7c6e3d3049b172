"""Dataset readers: JSONL files, HF ``datasets`` (``load_from_disk`` folders or ``Dataset``
objects) and in-memory lists, all seen as a sequence of ``SourceRow``.

Each row carries where it came from (``train.jsonl:7``, ``train[12]``) for error messages, and the
folder its relative modality paths are relative to (the dataset file's or folder's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmgen.data.skips import SkipLog
from mmgen.errors import DataError


@dataclass(frozen=True)
class SourceRow:
    row: Any  # one sample, a mapping in the dataset format
    origin: str
    base_dir: Path | None


class JsonlSource(Sequence[SourceRow]):
    """A JSONL file, parsed when opened so malformed lines are reported up front.

    Blank lines are ignored; a line that is not a JSON object is a ``DataError`` naming
    ``file:line`` (or, with ``on_error="skip"``, skipped and counted in ``skips``).
    """

    def __init__(
        self, path: str | os.PathLike, *, on_error: str = "raise", skips: SkipLog | None = None
    ) -> None:
        self.path = Path(path)
        self.base_dir = self.path.resolve().parent
        self.rows: list[tuple[int, dict[str, Any]]] = []
        with self.path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                except ValueError as exc:  # json.JSONDecodeError is a ValueError
                    error = DataError(f"{self.path}:{number}: malformed JSONL line: {exc}")
                    if on_error == "raise" or skips is None:
                        raise error from None
                    skips.add("malformed line", error)
                    continue
                self.rows.append((number, row))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> SourceRow:  # type: ignore[override]
        number, row = self.rows[index]
        return SourceRow(row, f"{self.path}:{number}", self.base_dir)


class RowsSource(Sequence[SourceRow]):
    """Any indexable of rows: a ``datasets.Dataset`` or a list of dicts."""

    def __init__(self, rows: Any, *, name: str, base_dir: Path | None) -> None:
        self.rows, self.name, self.base_dir = rows, name, base_dir

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> SourceRow:  # type: ignore[override]
        return SourceRow(self.rows[int(index)], f"{self.name}[{index}]", self.base_dir)


def open_source(
    data: Any,
    *,
    base_dir: str | os.PathLike | None = None,
    split: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    skips: SkipLog | None = None,
) -> Sequence[SourceRow]:
    """Open ``data``: a JSONL file path, a ``save_to_disk`` folder, a ``datasets.Dataset`` /
    ``DatasetDict`` (with ``split``), or a list of dicts.

    ``base_dir`` overrides the folder relative modality paths resolve against (default: the
    JSONL file's folder, the saved dataset's folder, or the working directory).
    """
    base = Path(base_dir).resolve() if base_dir is not None else None
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            return _hf_source(_load_from_disk(path), split, path.name, base or path.resolve())
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
        source = JsonlSource(path, on_error=on_error, skips=skips)
        if base is not None:
            source.base_dir = base
        return source
    if _is_hf(data):
        return _hf_source(data, split, "dataset", base or Path.cwd())
    if isinstance(data, Sequence) and all(isinstance(row, Mapping) for row in data):
        return RowsSource(data, name="rows", base_dir=base or Path.cwd())
    raise DataError(
        f"cannot read a dataset from a {type(data).__name__}: give a JSONL path, a saved"
        " dataset folder, a datasets.Dataset or a list of dicts"
    )


def _is_hf(data: Any) -> bool:
    return type(data).__module__.startswith("datasets") and hasattr(data, "__getitem__")


def _load_from_disk(path: Path) -> Any:
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DataError(f"{path} is not a dataset saved with save_to_disk: {exc}") from None


def _hf_source(data: Any, split: str | None, name: str, base_dir: Path) -> RowsSource:
    import datasets

    if isinstance(data, (datasets.DatasetDict, dict)):
        if split is None or split not in data:
            raise DataError(f"{name} has splits {sorted(data)}; choose one with split=...")
        data, name = data[split], f"{name}/{split}"
    elif split is not None:
        raise DataError(f"split={split!r} given, but {name} is a single dataset")
    if not isinstance(data, datasets.Dataset):
        raise DataError(f"{name}: expected a datasets.Dataset, got {type(data).__name__}")
    return RowsSource(data, name=name, base_dir=base_dir)
