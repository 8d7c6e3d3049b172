"""Build model batches by hand (the data side's collator lands separately): a sample is a list of
token ids and ``(modality name, processed value, num_embeddings)`` items, in text order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

Item = tuple[str, torch.Tensor, int]


def _expand(sample: Sequence[int | Item], placeholder_ids: Mapping[str, int]) -> list[int]:
    ids: list[int] = []
    for part in sample:
        if isinstance(part, tuple):
            ids += [placeholder_ids[part[0]]] * part[2]
        else:
            ids.append(int(part))
    return ids


def _modalities(samples: Sequence[Sequence[int | Item]]) -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    for index, sample in enumerate(samples):
        for part in sample:
            if isinstance(part, tuple):
                name, value, count = part
                batch = out.setdefault(
                    name, {"values": [], "num_embeddings": [], "sample_index": []}
                )
                batch["values"].append(value)
                batch["num_embeddings"].append(count)
                batch["sample_index"].append(index)
    return out


def packed_batch(
    samples: Sequence[Sequence[int | Item]], placeholder_ids: Mapping[str, int]
) -> dict[str, Any]:
    """The packed layout of ``mmgen.data.batch``; labels are the text ids, -100 on the first
    token of each sample and on placeholders."""
    rows = [_expand(s, placeholder_ids) for s in samples]
    lengths = [len(r) for r in rows]
    input_ids = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    labels = input_ids.masked_fill(input_ids < 0, -100)
    labels[cu_seqlens[:-1].long()] = -100
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": torch.cat([torch.arange(n) for n in lengths]),
        "cu_seqlens": cu_seqlens,
        "max_seqlen": max(lengths),
        "modalities": _modalities(samples),
        "sample_ids": [f"sample-{i}" for i in range(len(samples))],
    }


def padded_batch(
    samples: Sequence[Sequence[int | Item]],
    placeholder_ids: Mapping[str, int],
    *,
    pad_id: int = 0,
    left: bool = False,
) -> dict[str, Any]:
    """The padded layout: ``(B, S)`` ids with an attention mask (right padding by default)."""
    rows = [_expand(s, placeholder_ids) for s in samples]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        input_ids[i, span] = torch.tensor(row)
        attention_mask[i, span] = 1
    labels = input_ids.masked_fill((input_ids < 0) | (attention_mask == 0), -100)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "modalities": _modalities(samples),
        "sample_ids": [f"sample-{i}" for i in range(len(samples))],
    }
