"""``MultimodalDataset``: a dataset file or object, processed sample by sample.

Token-budget packing needs every sample's length before the first batch, so opening a dataset
runs the processor over it once (a scan): bad samples are found there (raised, or skipped and
counted per ``on_error``) and only lengths, item counts and item spans are kept. ``dataset[i]``
processes the sample again unless ``cache=True`` keeps the processed samples in memory (fine for
small datasets; images as float tensors are large).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

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
        cache: keep processed samples in memory instead of processing them again on access.

    Attributes:
        lengths: int64 ``(N,)`` tokens per kept sample (after the processor's truncation).
        items: int64 ``(N,)`` modality instances per kept sample.
        ids: the kept samples' ids.
        skipped: the ``SkipLog`` of this scan.
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
        media_root: str | os.PathLike | None = None,
    ) -> None:
        self.processor = processor
        self.on_error = on_error or processor.on_error
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        self.skipped = SkipLog()
        self.source = open_source(
            data,
            base_dir=base_dir,
            split=split,
            on_error=self.on_error,
            skips=self.skipped,
            media_root=media_root,
        )
        self._rows: list[int] = []  # source index of each kept sample
        self._spans: list[tuple[tuple[int, int], ...]] = []
        self._cache: list[ProcessedSample] | None = [] if cache else None
        self.ids: list[str] = []
        lengths, items = [], []
        for index in range(len(self.source)):
            sample = self.skipped.attempt(self.on_error, self._process_at, index)
            if sample is None:
                continue
            self._rows.append(index)
            self._spans.append(tuple(sample.spans()))  # () is shared: text-only rows cost ~nothing
            self.ids.append(sample.id)
            lengths.append(sample.length)
            items.append(len(sample.items))
            if self._cache is not None:
                self._cache.append(sample)
        self.lengths = torch.tensor(lengths, dtype=torch.long)
        self.items = torch.tensor(items, dtype=torch.long)
        if not self._rows:
            name = os.fspath(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__
            raise DataError(f"no usable samples in {name}: {self.report()}")
        if self.skipped.count:
            logger.warning("%s", self.report())

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> ProcessedSample:
        if self._cache is not None:
            return self._cache[index]
        return self._process(self.source[self._rows[index]])

    def truncated_size(
        self, index: int, max_length: int | None, max_items: int | None = None
    ) -> tuple[int, int]:
        """``(tokens, items)`` of sample ``index`` once ``ProcessedSample.truncate`` cuts it to
        the budgets at an item boundary; ``(0, 0)`` when it cannot be cut."""
        spans = self._spans[index]
        cut = cut_point(spans, int(self.lengths[index]), max_length, max_items)
        return cut, sum(1 for _, end in spans if end <= cut)

    def report(self) -> str:
        """One line on what the scan kept and skipped."""
        total = len(self.source) + self.skipped.reasons["malformed line"]
        kept = f"{len(self)} of {total} samples kept"
        return kept if not self.skipped.count else f"{kept}; {self.skipped.report(total)}"

    def _process(self, source: SourceRow) -> ProcessedSample:
        return self.processor.process(source.row, origin=source.origin, base_dir=source.base_dir)

    def _process_at(self, index: int) -> ProcessedSample:
        return self._process(self.source[index])
