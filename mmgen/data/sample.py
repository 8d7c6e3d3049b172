"""``ProcessedSample``: one dataset sample after ``MultimodalProcessor`` (what collators consume).

Cutting a sample short never splits a modality instance: its ``num_embeddings`` placeholder
positions stay together or go together, so the model's row-count check always holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from mmgen.errors import DataError


@dataclass(frozen=True)
class ModalityItem:
    """One modality instance of a sample, in placeholder order.

    Attributes:
        modality: the modality name (the dataset's ``"type"``, a key of the processors mapping).
        value: the processor's output under ``MODALITY_VALUE_KEY`` (what the encoder consumes).
        num_embeddings: how many placeholder positions (and encoder rows) the item takes.
        start: position of its first placeholder id in the sample's ``input_ids``.
    """

    modality: str
    value: Any
    num_embeddings: int
    start: int

    @property
    def end(self) -> int:
        return self.start + self.num_embeddings


@dataclass(frozen=True)
class SampleSize:
    """What packing needs of a sample, known without processing it (``MultimodalProcessor.
    measure``): its id, its length in tokens and each item's ``(start, end)`` span, after the
    processor's truncation. What ``mmgen data check`` reports on is kept beside them: each
    item's modality, the tokens the loss learns (``targets``) and the length before truncation
    (``full_length``)."""

    id: str
    length: int
    spans: tuple[tuple[int, int], ...]
    modalities: tuple[str, ...] = ()
    targets: int = 0
    full_length: int = 0


@dataclass(frozen=True)
class ProcessedSample:
    """A tokenized sample with its placeholders expanded.

    Attributes:
        id: the dataset id (``"id"`` field), else where the sample came from (``file.jsonl:7``).
        input_ids: int64 ``(L,)``; item ``k`` fills ``input_ids[items[k].start:items[k].end]``
            with its modality's placeholder id (never a tokenizer id).
        labels: int64 ``(L,)``; ``-100`` on non-assistant turns and placeholders, the token id
            elsewhere (not shifted: the model shifts, as HF causal LMs do).
        items: the modality instances in placeholder (token) order.
    """

    id: str
    input_ids: torch.Tensor
    labels: torch.Tensor
    items: list[ModalityItem] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    def __len__(self) -> int:
        return self.length

    def spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` token positions of each item, in order."""
        return [(item.start, item.end) for item in self.items]

    def truncate(self, max_length: int | None, max_items: int | None = None) -> ProcessedSample:
        """The longest prefix with at most ``max_length`` tokens and ``max_items`` items that does
        not cut through an item; ``self`` when it already fits. Raises ``DataError`` when no
        non-empty prefix fits (the first item alone is too long).
        """
        cut = cut_point(self.spans(), self.length, max_length, max_items)
        if cut == self.length:
            return self
        if cut == 0:
            raise DataError(
                f"sample {self.id!r}: cannot shorten to max_length={max_length}, max_items="
                f"{max_items} without cutting through its first modality instance"
                f" ({self.items[0].modality}, {self.items[0].num_embeddings} positions)"
            )
        kept = [item for item in self.items if item.end <= cut]
        return replace(self, input_ids=self.input_ids[:cut], labels=self.labels[:cut], items=kept)


def cut_point(
    spans: Sequence[tuple[int, int]],
    length: int,
    max_length: int | None,
    max_items: int | None = None,
) -> int:
    """Where ``truncate`` cuts a sample of ``length`` tokens whose items occupy ``spans``: the
    largest cut ``<= max_length`` that keeps at most ``max_items`` items and falls on an item
    boundary (0 when nothing fits). Shared by the sampler (planned lengths) and the collator
    (actual cut), so the two always agree.
    """
    cut = length if max_length is None else min(length, max_length)
    if max_items is not None and len(spans) > max_items:
        cut = min(cut, spans[max_items][0])
    for start, end in spans:
        if start < cut < end:
            return start
        if start >= cut:
            break
    return cut
