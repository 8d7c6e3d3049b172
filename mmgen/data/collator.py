"""Collators: ``ProcessedSample`` lists -> the batch contract of ``mmgen.data.batch``.

``PackedCollator`` lays a pack's samples end to end (``cu_seqlens``, restarting
``position_ids``, the first label of every sample set to -100); ``PaddedCollator`` builds the
HF-style padded baseline. Both list modality items in placeholder order over the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mmgen.constants import IGNORE_INDEX
from mmgen.data.batch import ModalityBatch, PackedBatch, mask_first_labels
from mmgen.data.sample import ProcessedSample


class PackedCollator:
    """Packs a batch of samples into one sequence of ``T = sum(lengths)`` tokens.

    Args:
        max_length, max_items: cut a sample over these budgets at a modality-instance boundary
            first (``ProcessedSample.truncate``); set them to the sampler's ``capacity`` and
            ``max_items`` when it plans with ``overlong="truncate"``.
    """

    def __init__(self, *, max_length: int | None = None, max_items: int | None = None) -> None:
        self.max_length, self.max_items = max_length, max_items

    def __call__(self, samples: Sequence[ProcessedSample | None]) -> PackedBatch | None:
        samples = _fit(samples, self.max_length, self.max_items)
        if not samples:
            return None
        from mmgen import ops  # the compiled extension, loaded on first batch

        lengths = torch.tensor([s.length for s in samples], dtype=torch.long)
        cu_seqlens, position_ids, _, max_seqlen = ops.varlen_metadata(lengths)
        labels = torch.cat([s.labels for s in samples])
        return PackedBatch(
            input_ids=torch.cat([s.input_ids for s in samples]),
            labels=mask_first_labels(labels, cu_seqlens),
            position_ids=position_ids,
            cu_seqlens=cu_seqlens,
            max_seqlen=int(max_seqlen),
            modalities=modality_batches(samples),
            sample_ids=[s.id for s in samples],
        )


class PaddedCollator:
    """Pads a batch to its longest sample (right padding): ``(B, S)`` ``input_ids``, ``labels``
    (-100 on padding) and ``attention_mask``.

    Args:
        pad_token_id: the id padding holds (``MultimodalProcessor.pad_token_id``); it must be a
            real vocabulary id, since the model looks padding up in its embedding table.
        max_length, max_items: as for ``PackedCollator``.
        pad_to_multiple_of: round ``S`` up to a multiple of this.
    """

    def __init__(
        self,
        pad_token_id: int,
        *,
        max_length: int | None = None,
        max_items: int | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        self.pad_token_id, self.multiple = pad_token_id, pad_to_multiple_of
        self.max_length, self.max_items = max_length, max_items

    def __call__(self, samples: Sequence[ProcessedSample | None]) -> PackedBatch | None:
        samples = _fit(samples, self.max_length, self.max_items)
        if not samples:
            return None
        width = max(s.length for s in samples)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        shape = (len(samples), width)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        for row, sample in enumerate(samples):
            input_ids[row, : sample.length] = sample.input_ids
            labels[row, : sample.length] = sample.labels
            attention_mask[row, : sample.length] = 1
        return PackedBatch(
            input_ids=input_ids,
            labels=labels,
            attention_mask=attention_mask,
            modalities=modality_batches(samples),
            sample_ids=[s.id for s in samples],
        )


def modality_batches(samples: Sequence[ProcessedSample]) -> dict[str, ModalityBatch]:
    """Items per modality in placeholder order over the batch (sample by sample, then token
    order); a modality with no item in the batch is absent."""
    batches: dict[str, ModalityBatch] = {}
    for index, sample in enumerate(samples):
        for item in sample.items:
            batch = batches.setdefault(
                item.modality, ModalityBatch(values=[], num_embeddings=[], sample_index=[])
            )
            batch["values"].append(item.value)
            batch["num_embeddings"].append(item.num_embeddings)
            batch["sample_index"].append(index)
    return batches


def _fit(
    samples: Sequence[ProcessedSample | None], max_length: int | None, max_items: int | None
) -> list[ProcessedSample]:
    """The samples cut to the budgets; a ``None`` (a sample skipped when it was read, under
    ``on_error: skip``) is left out, so a batch of nothing but those collates to ``None``."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    kept = [sample for sample in samples if sample is not None]
    if max_length is None and max_items is None:
        return kept
    return [sample.truncate(max_length, max_items) for sample in kept]


def left_padded(samples: Sequence[Any], pad_token_id: int) -> dict[str, Any]:
    """Prompts for ``generate``: ``(B, S)`` ids padded on the left (new tokens follow every
    prompt directly), their attention mask, and the modality items in placeholder order."""
    width = max(sample.length for sample in samples)
    input_ids = torch.full((len(samples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, sample in enumerate(samples):
        input_ids[row, width - sample.length :] = sample.input_ids
        attention_mask[row, width - sample.length :] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "modalities": modality_batches(samples),
        "sample_ids": [sample.id for sample in samples],
    }
