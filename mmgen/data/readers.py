"""Dataset readers: JSONL files, JSON files holding a list, parquet files, HF ``datasets``
(``save_to_disk`` folders or ``Dataset`` objects) and in-memory lists, all seen as a sequence of
``SourceRow``.

Each row carries where it came from (``train.jsonl:7``, ``train.json[12]``, ``train[12]``) for
error messages, and the folder its relative media paths resolve against: the media root when one
is given, else the dataset file's folder (a saved dataset's own folder).
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

ACCEPTED = ".jsonl (one object per line), .json (a list of objects), .parquet, or a folder saved"
ACCEPTED += " with datasets' save_to_disk"

# what a file that should hold text starts with when it holds something else
_MAGIC = {b"PAR1": "parquet data (name it .parquet)", b"\x1f\x8b": "gzip data (decompress it)"}


@dataclass(frozen=True)
class SourceRow:
    row: Any  # one sample, a mapping in the dataset format
    origin: str
    base_dir: Path | None


class JsonlSource(Sequence[SourceRow]):
    """A JSONL file, parsed when opened so malformed lines are reported up front.

    Blank lines are ignored; a line that is not UTF-8 JSON holding an object is a ``DataError``
    naming ``file:line`` (or, with ``on_error="skip"``, skipped and counted in ``skips``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        on_error: str = "raise",
        skips: SkipLog | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.base_dir = base_dir or self.path.resolve().parent
        self.rows: list[tuple[int, dict[str, Any]]] = []
        with self.path.open("rb") as file:
            _check_text(self.path, file.read(4))
            file.seek(0)
            for number, line in enumerate(file, start=1):
                try:
                    row = _json_line(line, first=number == 1)
                except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                    error = DataError(
                        f"{self.path}:{number}: malformed JSONL line: {exc}",
                        reason="malformed line",
                    )
                    if on_error == "raise" or skips is None:
                        raise error from None
                    skips.add("malformed line", error)
                    continue
                if row is not None:
                    self.rows.append((number, row))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> SourceRow:  # type: ignore[override]
        number, row = self.rows[index]
        return SourceRow(row, f"{self.path}:{number}", self.base_dir)


def _json_line(line: bytes, first: bool) -> dict[str, Any] | None:
    """The object on one JSONL line (None for a blank line)."""
    try:
        text = line.decode("utf-8-sig" if first else "utf-8")  # a leading BOM is common
    except UnicodeDecodeError as exc:
        byte = line[exc.start]
        raise ValueError(f"not UTF-8 text (byte 0x{byte:02x} at column {exc.start + 1})") from None
    if not text.strip():
        return None
    row = json.loads(text)
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {_json_type(row)}")
    return row


class JsonListSource(Sequence[SourceRow]):
    """A ``.json`` file holding a list of rows (LLaVA's layout), read whole when opened.

    A file that is not UTF-8 JSON holding a list is one ``DataError`` (nothing in it can be
    trusted); an element that is not an object is a malformed row, named ``file.json[index]``.
    """

    def __init__(self, path: str | os.PathLike, *, base_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.base_dir = base_dir or self.path.resolve().parent
        data = self.path.read_bytes()
        _check_text(self.path, data[:4])
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            byte = data[exc.start]
            raise DataError(f"{self.path}:{line}: not UTF-8 text (byte 0x{byte:02x})") from None
        del data
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = ""
            if exc.msg == "Extra data":  # a second value after the first: JSON Lines
                hint = "; a file with one object per line is JSON Lines: name it .jsonl"
            where = f"{self.path}:{exc.lineno}:{exc.colno}"
            raise DataError(f"{where}: not valid JSON: {exc.msg}{hint}") from None
        if not isinstance(rows, list):
            raise DataError(f"{self.path}: expected a JSON list of rows, got {_json_type(rows)}")
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> SourceRow:  # type: ignore[override]
        return SourceRow(self.rows[index], f"{self.path}[{index}]", self.base_dir)


def _check_text(path: Path, head: bytes) -> None:
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise DataError(f"{path}: holds {what}, not JSON text")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "null" if value is None else "a number")


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
    media_root: str | os.PathLike | None = None,
) -> Sequence[SourceRow]:
    """Open ``data``: a ``.jsonl``, ``.json`` (a list) or ``.parquet`` file, a ``save_to_disk``
    folder, a ``datasets.Dataset`` / ``DatasetDict`` (with ``split``), or a list of dicts.

    ``media_root`` (``base_dir`` is its older name) is the folder relative media paths resolve
    against (default: the dataset file's folder, the saved dataset's folder, or the working
    directory). Malformed JSONL lines are raised or, under ``on_error="skip"``, counted in
    ``skips``; a file that cannot be read at all is always an error.
    """
    if media_root is not None and base_dir is not None:
        raise TypeError("give media_root or base_dir (its older name), not both")
    root = media_root if media_root is not None else base_dir
    base = Path(root).resolve() if root is not None else None
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            return _hf_source(_load_from_disk(path), split, path.name, base or path.resolve())
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return JsonlSource(path, on_error=on_error, skips=skips, base_dir=base)
        if suffix == ".json":
            return JsonListSource(path, base_dir=base)
        if suffix == ".parquet":
            from mmgen.data.parquet import ParquetSource  # pyarrow loads only for parquet

            return ParquetSource(path, base_dir=base)
        raise DataError(f"{path}: cannot read a {suffix or 'extensionless'} file; give {ACCEPTED}")
    if _is_hf(data):
        return _hf_source(data, split, "dataset", base or Path.cwd())
    if isinstance(data, Sequence) and all(isinstance(row, Mapping) for row in data):
        return RowsSource(data, name="rows", base_dir=base or Path.cwd())
    raise DataError(
        f"cannot read a dataset from a {type(data).__name__}: give a file ({ACCEPTED}),"
        " a datasets.Dataset or a list of dicts"
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
