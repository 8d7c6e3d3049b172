"""``MultimodalDataset``: a dataset file or object, its rows measured once, read on access.

Token-budget packing needs every sample's length before the first batch. Opening a dataset
measures every row (``mmgen.data.index``: text tokenized in batches, item counts from the modality
processors without decoding media where they can count, optionally in several processes) and
keeps the result — each kept row's position, length and item spans — in an index on disk, which
later runs, other ranks and ``mmgen data check`` reuse. Bad rows are found there (raised, or
skipped and counted per ``on_error``). ``dataset[i]`` reads and processes row ``i`` when asked
(in DataLoader workers), and ``cache=True`` keeps processed samples in memory once made (fine
for small datasets; images as float tensors are large).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from mmgen.data.index import DataIndex, build_index, fingerprint, load_or_build
from mmgen.data.processor import MultimodalProcessor
from mmgen.data.readers import SourceRow, open_source
from mmgen.data.sample import ProcessedSample, cut_point
from mmgen.data.skips import SkipLog
from mmgen.errors import DataError

logger = logging.getLogger("mmgen.data")


class MultimodalDataset(Dataset):
    """Processed samples of ``data`` (see ``mmgen.data.readers.open_source`` for what it takes).

    Args:
        data: a ``.jsonl``, ``.json`` or ``.parquet`` path, a ``save_to_disk`` folder, a
            ``datasets.Dataset``/``DatasetDict`` (pick ``split``), or a list of dicts.
        processor: the ``MultimodalProcessor`` that tokenizes and processes each sample.
        media_root: folder that relative media paths resolve against (default: the dataset
            file's folder); ``base_dir`` is its older name.
        on_error: ``"raise"`` or ``"skip"`` bad samples and malformed lines (default: the
            processor's). Skips are counted in ``self.skipped`` and logged once after the scan.
        cache: keep processed samples in memory once made instead of processing them again.
        index: keep the measured lengths in the index cache (``mmgen.data.index``) for later
            runs; ``False`` measures every time. Data without files (a list) is never kept.
        index_dir: where indexes are kept (default ``$MMGEN_CACHE/index``).
        scan_workers: processes that measure the rows when the index is built.
        scan_headers: read every item's header in the scan (missing and unreadable files are
            found up front); ``False`` touches no media a processor can count.
        progress: a progress bar (rows/s, ETA) while measuring, on a terminal.

    Attributes:
        lengths: int64 ``(N,)`` tokens per kept sample (after the processor's truncation).
        items: int64 ``(N,)`` modality instances per kept sample.
        ids: the kept samples' ids.
        skipped: the ``SkipLog`` of the scan.
    """

    def __init__(
        self,
        data: Any,
        processor: MultimodalProcessor,
        *,
        base_dir: str | os.PathLike | None = None,
        split: str | None = None,
        on_error: Literal["raise", "skip"] | None = None,
        cache: bool = False,
        index: bool = True,
        index_dir: str | os.PathLike | None = None,
        scan_workers: int = 1,
        scan_headers: bool = True,
        progress: bool = False,
        media_root: str | os.PathLike | None = None,
    ) -> None:
        self.processor = processor
        self.on_error = on_error or processor.on_error
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if media_root is not None and base_dir is not None:
            raise TypeError("give media_root or base_dir (its older name), not both")
        self.source, self.index = open_indexed(
            data, processor, split=split, on_error=self.on_error, index=index,
            index_dir=index_dir, scan_workers=scan_workers, scan_headers=scan_headers,
            progress=progress, media_root=media_root if media_root is not None else base_dir,
        )  # fmt: skip
        self.skipped = self.index.skipped
        if self.on_error == "raise" and len(self.index.dropped):
            # an index built while skipping (mmgen data check) holds the rows that fail
            _, reason, message = self.index.problems()[0]
            raise DataError(message, reason=reason)
        self._rows = self.index.rows
        self.lengths = torch.from_numpy(self.index.lengths)
        self.items = torch.from_numpy(self.index.items)
        self._cache: dict[int, ProcessedSample] | None = {} if cache else None
        if not len(self._rows):
            name = os.fspath(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__
            raise DataError(f"no usable samples in {name}: {self.report()}")
        if self.skipped.count:
            logger.warning("%s", self.report())

    @property
    def ids(self) -> list[str]:
        return self.index.ids()

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> ProcessedSample | None:
        """Sample ``index``, read and processed now. A value the scan did not decode may turn
        out bad here (a corrupt file, NaN in an array): under ``on_error: skip`` that sample is
        ``None`` (collators leave it out) and a warning names it; else its ``DataError``."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        source = self.source[int(self._rows[index])]
        sample = self.skipped.attempt(self.on_error, self._process, source)
        if sample is None:
            logger.warning("skipped when read: %s", self.skipped.examples[-1])
        elif self._cache is not None:
            self._cache[index] = sample
        return sample

    def truncated_size(
        self, index: int, max_length: int | None, max_items: int | None = None
    ) -> tuple[int, int]:
        """``(tokens, items)`` of sample ``index`` once ``ProcessedSample.truncate`` cuts it to
        the budgets at an item boundary; ``(0, 0)`` when it cannot be cut."""
        spans = self.index.spans(index)
        cut = cut_point(spans, int(self.lengths[index]), max_length, max_items)
        return cut, sum(1 for _, end in spans if end <= cut)

    def report(self) -> str:
        """One line on what the scan kept and skipped."""
        total = self.index.total
        kept = f"{len(self)} of {total} samples kept"
        return kept if not self.skipped.count else f"{kept}; {self.skipped.report(total)}"

    def _process(self, source: SourceRow) -> ProcessedSample:
        return self.processor.process(source.row, origin=source.origin, base_dir=source.base_dir)


def open_indexed(
    data: Any,
    processor: MultimodalProcessor,
    *,
    split: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    index: bool = True,
    index_dir: str | os.PathLike | None = None,
    scan_workers: int = 1,
    scan_headers: bool = True,
    progress: bool = False,
    media_root: str | os.PathLike | None = None,
) -> tuple[Sequence[SourceRow], DataIndex]:
    """``data``'s rows and their length index: the kept one when it reads back whole, else
    measured now (and kept when ``index``). ``MultimodalDataset`` is built on this; ``mmgen
    data check`` reads the index's problems directly (arguments as ``MultimodalDataset``'s)."""
    skipped = SkipLog()
    source = open_source(data, split=split, on_error=on_error, skips=skipped, media_root=media_root)
    key = None
    if index:
        key = fingerprint(data, processor, split=split, base_dir=media_root, headers=scan_headers)

    def build() -> DataIndex:
        return build_index(
            source, processor, on_error=on_error, skipped=skipped, workers=scan_workers,
            headers=scan_headers, progress=progress,
        )  # fmt: skip

    folder = Path(index_dir) if index_dir is not None else None
    return source, load_or_build(key, build, folder=folder)
