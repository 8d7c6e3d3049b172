"""``ParquetSource``: the rows of a parquet file, read one row group at a time when first asked
for, so opening a large file reads only its footer and a scan holds one group's media at a time.

Columns become the row's fields as pyarrow converts them: binary columns are ``bytes`` (media
values the loaders read), structs are dicts (``datasets``' Image/Audio ``{"bytes", "path"}``),
lists are lists. Random access (a shuffled epoch) reads a row's whole group: parquet has no
smaller unit; a few recent groups are kept.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmgen.data.readers import SourceRow
from mmgen.errors import DataError

_KEEP_GROUPS = 2  # the scan needs one; a second spares a re-read at a group boundary


class ParquetSource(Sequence[SourceRow]):
    """A parquet file; row ``i`` is named ``file.parquet[i]`` in errors."""

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
        origin = f"{self.path}[{index}]"
        if isinstance(table, DataError):
            raise DataError(f"{origin}: {table}", reason="malformed row")
        row = table.slice(index - self._starts[group], 1).to_pylist()[0]
        return SourceRow(row, origin, self.base_dir)

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
                raise DataError(f"{self.path}: not a parquet file: {exc}") from None
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
            table = DataError(f"cannot read row group {group}: {exc}")
        self._groups[group] = table
        while len(self._groups) > _KEEP_GROUPS:
            self._groups.popitem(last=False)
        return table
