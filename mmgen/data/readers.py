"""Dataset readers: JSONL files, JSON files holding a list, parquet files, HF ``datasets``
(``save_to_disk`` folders or ``Dataset`` objects) and in-memory lists, all seen as a sequence of
``SourceRow``.

Each row carries where it came from (``train.jsonl:7``, ``train.json[12]``, ``train[12]``) for
error messages, and the folder its relative media paths resolve against: the media root when one
is given, else the dataset file's folder (a saved dataset's own folder).
"""

from __future__ import annotations

import bisect
import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmgen.data.skips import SkipLog
from mmgen.errors import DataError

ACCEPTED = ".jsonl (one object per line), .json (a list of objects), .parquet, or a folder saved"
ACCEPTED += " with datasets' save_to_disk"

_BLOCK = 1 << 24  # bytes read at a time when finding a JSONL file's lines
_KEEP_GROUPS = 2  # parquet row groups held: a scan needs one, a second spares boundary re-reads
# what a file that should hold text starts with when it holds something else
_MAGIC = {b"PAR1": "parquet data (name it .parquet)", b"\x1f\x8b": "gzip data (decompress it)"}


@dataclass(frozen=True)
class SourceRow:
    row: Any  # one sample, a mapping in the dataset format
    origin: str
    base_dir: Path | None


class JsonlSource(Sequence[SourceRow]):
    """A JSONL file, read line by line when rows are asked for: opening it only finds where its
    lines start (so a warm start on millions of rows parses none), and ``source[i]`` parses line
    ``i``. Blank lines are not rows; a line that is not UTF-8 JSON holding an object raises a
    ``DataError`` naming ``file:line`` (reason ``malformed line``) when it is read — the scan
    reads every row, so they are reported (or, under ``on_error: skip``, counted) up front.
    """

    def __init__(self, path: str | os.PathLike, *, base_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.base_dir = base_dir or self.path.resolve().parent
        with self.path.open("rb") as file:
            _check_text(self.path, file.read(4))
        self.starts, self.ends, self.numbers = _line_bounds(self.path)
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> SourceRow:  # type: ignore[override]
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        start, end, number = (
            int(self.starts[index]),
            int(self.ends[index]),
            int(self.numbers[index]),
        )
        line = os.pread(self._fd, end - start, start)  # no shared file position: fork-safe
        try:
            row = _json_line(line, first=start == 0)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise DataError(
                f"{self.path}:{number}: malformed JSONL line: {exc}", reason="malformed line"
            ) from None
        return SourceRow(row, f"{self.path}:{number}", self.base_dir)

    def origin(self, index: int) -> str:
        """Where row ``index`` is (``file.jsonl:line``), without reading it."""
        return f"{self.path}:{int(self.numbers[index])}"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}  # a worker process opens its own

    def __del__(self, _close=os.close) -> None:  # os may be gone at interpreter exit
        if getattr(self, "_fd", None) is not None:
            _close(self._fd)


def _line_bounds(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, numbers)`` of the file's non-blank lines (``ends`` exclude the newline;
    ``numbers`` are 1-based), found in fixed-size blocks so memory stays small."""
    size = path.stat().st_size
    if size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    newlines = []
    with path.open("rb") as file:
        offset = 0
        while block := file.read(_BLOCK):
            newlines.append(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + offset)
            offset += len(block)
    ends = np.concatenate([*newlines, np.asarray([size], dtype=np.int64)]).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    numbers = np.arange(1, len(starts) + 1, dtype=np.int64)
    keep = ends > starts  # empty lines (and the end after a final newline)
    with path.open("rb") as file:  # short lines may be all whitespace: look at those only
        for i in np.flatnonzero(keep & (ends - starts <= 8)):
            file.seek(int(starts[i]))
            keep[i] = bool(file.read(int(ends[i] - starts[i])).strip())
    return starts[keep], ends[keep], numbers[keep]


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
        return SourceRow(self.rows[index], self.origin(index), self.base_dir)

    def origin(self, index: int) -> str:
        return f"{self.path}[{index}]"


class ParquetSource(Sequence[SourceRow]):
    """A parquet file, read one row group at a time when first asked for: opening a large file
    reads only its footer, and a scan holds one group's media at a time. Row ``i`` is named
    ``file.parquet[i]`` in errors.

    Columns become the row's fields as pyarrow converts them: binary columns are ``bytes`` (media
    values the loaders read), structs are dicts (``datasets``' Image/Audio ``{"bytes", "path"}``),
    lists are lists. Random access (a shuffled epoch) reads a row's whole group: parquet has no
    smaller unit; the last few groups are kept.
    """

    def __init__(self, path: str | os.PathLike, *, base_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.base_dir = base_dir or self.path.resolve().parent
        metadata = self._file().metadata
        self._starts = [0]
        for group in range(metadata.num_row_groups):
            self._starts.append(self._starts[-1] + metadata.row_group(group).num_rows)

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: int) -> SourceRow:  # type: ignore[override]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: row {index} of {len(self)}")
        group = bisect.bisect_right(self._starts, index) - 1
        table = self._group(group)
        origin = self.origin(index)
        if isinstance(table, DataError):
            raise DataError(f"{origin}: {table}", reason="malformed row")
        row = table.slice(index - self._starts[group], 1).to_pylist()[0]
        return SourceRow(row, origin, self.base_dir)

    def origin(self, index: int) -> str:
        return f"{self.path}[{index}]"

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers reopen the file: an open handle does not pickle
        return {k: v for k, v in self.__dict__.items() if k not in ("_handle", "_groups", "_pid")}

    def _file(self) -> Any:
        """The open ``ParquetFile``, reopened in a new process (forked workers must not share
        one file position)."""
        if getattr(self, "_pid", None) != os.getpid():
            import pyarrow
            import pyarrow.parquet as pq

            try:
                self._handle = pq.ParquetFile(self.path)
            except (pyarrow.ArrowException, OSError) as exc:
                raise DataError(f"{self.path}: not a parquet file: {_one_line(exc)}") from None
            self._pid, self._groups = os.getpid(), OrderedDict()
        return self._handle

    def _group(self, group: int) -> Any:
        """Row group ``group`` as a pyarrow table, or the ``DataError`` reading it gave."""
        handle = self._file()
        if group in self._groups:
            self._groups.move_to_end(group)
            return self._groups[group]
        import pyarrow

        try:
            table: Any = handle.read_row_group(group)
        except (pyarrow.ArrowException, OSError) as exc:
            # kept, so the group's other rows fail at once instead of re-reading it each
            table = DataError(f"cannot read row group {group}: {_one_line(exc)}")
        self._groups[group] = table
        while len(self._groups) > _KEEP_GROUPS:
            self._groups.popitem(last=False)
        return table


def _check_text(path: Path, head: bytes) -> None:
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise DataError(f"{path}: holds {what}, not JSON text")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())  # pyarrow's messages may span lines


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
        return SourceRow(self.rows[int(index)], self.origin(index), self.base_dir)

    def origin(self, index: int) -> str:
        return f"{self.name}[{index}]"


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
    directory). A file that cannot be read at all is an error now; a row that cannot (a
    malformed JSONL line) is a ``DataError`` when it is read. ``on_error`` and ``skips`` are
    accepted for older callers and not used.
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
            if path.exists():  # a FIFO or a device: reading it could block or never end
                raise DataError(f"{path}: not a regular file (a device, FIFO or socket)")
            raise DataError(f"data file not found: {path}")
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return JsonlSource(path, base_dir=base)
        if suffix == ".json":
            return JsonListSource(path, base_dir=base)
        if suffix == ".parquet":
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
