"""``Mixture``: several datasets (sources) trained together, each with its share of every epoch.

A source is a dataset (a ``MultimodalDataset``) with how much of it an epoch takes:

- ``weight``: the epoch has as many samples as all sources' rows together, split between the
  sources in proportion to their weights (largest remainder, so the counts add up exactly). A
  source whose share exceeds its rows is up-sampled, one below them down-sampled.
- ``epochs``: passes over the source per epoch, fractional allowed: ``round(epochs * rows)``
  samples. A source with neither takes ``epochs=1``.
- Weights and epochs do not mix: a mixture gives every source a weight, or none of them one.
- ``max_samples``: the source keeps only its first ``max_samples`` rows (file order, after the
  scan's skips; as LLaMA-Factory's ``max_samples``); weights and epochs count those rows.

A source drawn ``k`` times from its ``n`` rows in an epoch gives every row ``k // n`` times plus
``k % n`` distinct rows picked at random, so up-sampling repeats every row about equally and
down-sampling takes a different subset each epoch. The picks are seeded by ``(seed, epoch,
source)``: an epoch is a multiset of indices into the concatenation of the sources, a pure
function of ``(seed, epoch)``, of the same size every epoch. The samplers (``TokenBudgetSampler``,
``PaddedBatchSampler``) take it through ``epoch_indices`` and plan over it, a repeated row as
separate entries, so packs mix the sources.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmgen.errors import ConfigError


@dataclass
class MixtureSource:
    """One source: ``dataset`` (``lengths``, ``items``, ``len``, ``[i]``, ``report()``) and its
    share of an epoch: ``weight`` or ``epochs`` (neither: ``epochs=1``), ``max_samples`` rows."""

    name: str
    dataset: Any
    weight: float | None = None
    epochs: float | None = None
    max_samples: int | None = None


class Mixture(Dataset):
    """The concatenation of the sources' (kept) rows; index ``i`` is a row of one source
    (``source_of``). ``epoch_indices(seed, epoch)`` is what one epoch trains on.

    Attributes:
        lengths, items: int64 ``(N,)`` tokens and modality items per row of the concatenation.
        ids: ``"<source>:<sample id>"`` per row (for messages).
        rows: rows used per source (``max_samples`` applied); ``counts``: samples per epoch.
    """

    def __init__(self, sources: Sequence[MixtureSource]) -> None:
        self.sources = list(sources)
        _check(self.sources)
        self.rows = [_rows(s) for s in self.sources]
        ends = np.cumsum(self.rows)
        self.starts = [int(end - rows) for end, rows in zip(ends, self.rows, strict=True)]
        self._ends = torch.as_tensor(ends, dtype=torch.long)
        self.lengths = torch.cat([s.dataset.lengths[:n] for s, n in self._used()]).long()
        self.items = torch.cat([torch.as_tensor(s.dataset.items)[:n] for s, n in self._used()])
        self.ids = _Ids(self)
        self.counts = epoch_counts(self.sources, self.rows)
        # what collators and padded_dataloader read from a dataset
        self.processor = getattr(self.sources[0].dataset, "processor", None)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Any:
        source, row = self.locate(index)
        return self.sources[source].dataset[row]

    def source_of(self, indices: torch.Tensor) -> torch.Tensor:
        """The source number of each index of the concatenation."""
        return torch.bucketize(torch.as_tensor(indices, dtype=torch.long), self._ends, right=True)

    @property
    def names(self) -> list[str]:
        return [source.name for source in self.sources]

    @property
    def epoch_size(self) -> int:
        return sum(self.counts)

    def epoch_indices(self, seed: int, epoch: int) -> torch.Tensor:
        """The epoch's samples: indices of the concatenation, repeats allowed, sorted; a pure
        function of ``(seed, epoch)`` with ``epoch_size`` entries every epoch."""
        drawn = []
        for number, (start, rows, count) in enumerate(
            zip(self.starts, self.rows, self.counts, strict=True)
        ):
            # one stream per source: a source's picks do not shift when another's count changes
            rng = np.random.default_rng([seed % 2**64, epoch, number])
            whole, rest = divmod(count, rows)
            picked = rng.choice(rows, size=rest, replace=False)
            drawn.append(start + np.concatenate([np.tile(np.arange(rows), whole), picked]))
        return torch.from_numpy(np.sort(np.concatenate(drawn)).astype(np.int64))

    def truncated_size(self, index: int, max_length: int | None, max_items: int | None = None):
        source, row = self.locate(index)
        return self.sources[source].dataset.truncated_size(row, max_length, max_items)

    def report(self) -> str:
        """One line on the whole mixture (``source_lines`` has one per source)."""
        return f"mixture of {len(self.sources)} sources, {self.epoch_size} samples per epoch"

    def source_lines(self) -> list[str]:
        """Per source: the scan's report, the rows used, samples per epoch and their share."""
        lines = []
        for source, rows, count in zip(self.sources, self.rows, self.counts, strict=True):
            used = f", the first {rows} used" if rows < len(source.dataset) else ""
            passes = f"{count / rows:.3g} pass" + ("" if count == rows else "es")
            share = count / max(self.epoch_size, 1)
            lines.append(
                f"{source.name}: {source.dataset.report()}{used}; {count} per epoch"
                f" ({share:.1%} of samples, {passes})"
            )
        return lines

    def _used(self):
        return zip(self.sources, self.rows, strict=True)

    def locate(self, index: int) -> tuple[int, int]:
        """``(source number, row in that source)`` of ``index`` of the concatenation."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is outside the mixture's {len(self)} rows")
        source = bisect.bisect_right(self.starts, index) - 1
        return source, index - self.starts[source]


class _Ids(Sequence[str]):
    """``"<source>:<sample id>"`` per row, made on access: a list would copy every id."""

    def __init__(self, mixture: Mixture) -> None:
        self._mixture = mixture

    def __len__(self) -> int:
        return len(self._mixture)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        source, row = self._mixture.locate(index)
        named = self._mixture.sources[source]
        ids = getattr(named.dataset, "ids", None)
        return f"{named.name}:{ids[row] if ids is not None else f'#{row}'}"


def epoch_counts(sources: Sequence[MixtureSource], rows: Sequence[int]) -> list[int]:
    """Samples per epoch of each source (see the module docstring)."""
    weights = [source.weight for source in sources]
    if weights[0] is None:
        epochs = [1.0 if s.epochs is None else s.epochs for s in sources]
        return [math.floor(e * n + 0.5) for e, n in zip(epochs, rows, strict=True)]
    total = sum(rows)
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    # the largest remainders take the samples left, ties to the earlier source
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _check(sources: list[MixtureSource]) -> None:
    """The mistakes the training config reports at its lines, for mixtures built in Python."""
    if not sources:
        raise ConfigError("a mixture needs at least one source")
    names = [source.name for source in sources]
    for source in sources:
        what = f"mixture source {source.name!r}"
        if len(source.dataset) == 0:
            raise ConfigError(f"{what}: the dataset has no rows")
        if names.count(source.name) > 1:
            raise ConfigError(f"{what}: two sources have this name")
        if source.weight is not None and source.epochs is not None:
            raise ConfigError(f"{what}: give weight or epochs, not both")
        for key in ("weight", "epochs", "max_samples"):
            value = getattr(source, key)
            if value is not None and not value > 0:
                raise ConfigError(f"{what}: {key} must be > 0, got {value}")
        if (source.weight is None) != (sources[0].weight is None):
            raise ConfigError(f"{what}: give every source a weight, or none of them one")


def _rows(source: MixtureSource) -> int:
    rows = len(source.dataset)
    return rows if source.max_samples is None else min(rows, source.max_samples)
