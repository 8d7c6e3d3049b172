"""From a batch's modality items to the LLM's input embeddings.

Each modality's encoder runs on its items in chunks of ``config.max_batch_size``; every item must
become exactly the ``num_embeddings`` rows its processor announced (the placeholder run it fills).
``mmgen.ops.packed_merge`` then builds ``inputs_embeds`` in one pass: text positions from the
embedding table, placeholder positions from the feature rows in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from mmgen.data.batch import ModalityBatch
from mmgen.errors import ConfigError
from mmgen.modality.base import BaseModality
from mmgen.model.checkpointing import CHECKPOINT_FORWARD


def _describe_item(index: int, batch: ModalityBatch, sample_ids: Sequence[str] | None) -> str:
    sample_index = batch.get("sample_index")
    if sample_index is None or index >= len(sample_index):
        return f"item {index}"
    sample = sample_index[index]
    if sample_ids is not None and 0 <= sample < len(sample_ids):
        return f"item {index} (sample {sample_ids[sample]!r})"
    return f"item {index} (sample #{sample})"


def _per_item(name: str, output: Any, count: int) -> list[torch.Tensor]:
    """A modality's output as one ``(N_i, H)`` tensor per input item."""
    if isinstance(output, torch.Tensor) and output.dim() == 3 and output.shape[0] == count:
        return list(output.unbind(0))
    if (
        isinstance(output, (list, tuple))
        and len(output) == count
        and all(isinstance(t, torch.Tensor) and t.dim() == 2 for t in output)
    ):
        return list(output)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise ConfigError(
        f"modality {name!r} returned {shape} for {count} items; a modality's forward must return "
        f"a ({count}, N, hidden_size) tensor or a list of {count} (N_i, hidden_size) tensors"
    )


def encode_modality(
    name: str,
    modality: BaseModality,
    batch: ModalityBatch,
    hidden_size: int,
    sample_ids: Sequence[str] | None = None,
) -> torch.Tensor:
    """Run ``modality`` on ``batch["values"]`` in chunks; return all rows ``(sum N_i, H)``."""
    values = list(batch["values"])
    counts = list(batch["num_embeddings"])
    if len(values) != len(counts):
        raise ValueError(
            f"modality {name!r}: {len(values)} values but {len(counts)} num_embeddings"
        )
    chunk = int(modality.config.max_batch_size or len(values) or 1)
    if chunk < 1:
        raise ConfigError(f"modality {name!r}: max_batch_size must be >= 1, got {chunk}")
    parameter = next(modality.parameters(), None)
    device = parameter.device if parameter is not None else None
    dtype = parameter.dtype if parameter is not None else None
    # activation checkpointing of an encoder transformers cannot checkpoint per layer
    checkpoint = getattr(modality, CHECKPOINT_FORWARD, False) and modality.training
    rows: list[torch.Tensor] = []
    for start in range(0, len(values), chunk):
        items = [
            v.to(device=device, dtype=dtype if v.is_floating_point() else None)
            for v in values[start : start + chunk]
        ]
        if checkpoint and torch.is_grad_enabled():
            output = torch.utils.checkpoint.checkpoint(modality, items, use_reentrant=False)
        else:
            output = modality(items)
        for offset, item_rows in enumerate(_per_item(name, output, len(items))):
            index = start + offset
            if item_rows.shape[0] != counts[index]:
                raise ConfigError(
                    f"modality {name!r}: {_describe_item(index, batch, sample_ids)} became "
                    f"{item_rows.shape[0]} embeddings, but its processor announced "
                    f"num_embeddings={counts[index]} (the placeholder run it must fill)"
                )
            if item_rows.shape[-1] != hidden_size:
                raise ConfigError(
                    f"modality {name!r} projects to width {item_rows.shape[-1]}, but the LLM's "
                    f"hidden size is {hidden_size}"
                )
            rows.append(item_rows)
    return torch.cat(rows) if rows else torch.empty(0, hidden_size, device=device, dtype=dtype)


def merge_embeddings(
    input_ids: torch.Tensor,
    embedding: nn.Module,
    modalities: Mapping[str, BaseModality],
    placeholder_ids: Mapping[str, int],
    batches: Mapping[str, ModalityBatch] | None,
    sample_ids: Sequence[str] | None = None,
    *,
    validate: bool = True,
) -> torch.Tensor:
    """``inputs_embeds`` (``input_ids.shape + (H,)``) for a packed or padded batch."""
    from mmgen.ops import packed_merge

    batches = dict(batches or {})
    unknown = sorted(set(batches) - set(modalities))
    if unknown:
        raise ConfigError(
            f"the batch holds modalities {unknown} that the model does not have; "
            f"its modalities are {list(modalities)}"
        )
    weight = embedding.weight
    hidden_size = weight.shape[-1]
    features = []
    for name, modality in modalities.items():
        batch = batches.get(name)
        if batch and len(batch["values"]):
            rows = encode_modality(name, modality, batch, hidden_size, sample_ids)
        else:
            rows = weight.new_empty(0, hidden_size)
        features.append(rows.to(device=weight.device, dtype=weight.dtype))
    ids = [placeholder_ids[name] for name in modalities]
    # embeddings that scale their output (Gemma) scale text rows only, as HF's VLMs do
    scale = getattr(embedding, "embed_scale", None)
    if scale is not None and float(scale) != 1.0:
        features = [
            f / scale.to(f.dtype) if torch.is_tensor(scale) else f / scale for f in features
        ]
    try:
        out = packed_merge(input_ids, weight, features, ids, validate=validate)
    except (ValueError, IndexError) as exc:
        names = ", ".join(f"{name}={pid}" for name, pid in zip(modalities, ids, strict=True))
        raise type(exc)(f"{exc} (placeholder ids: {names})") from exc
    if scale is not None and float(scale) != 1.0:
        out = out * (scale.to(out.dtype) if torch.is_tensor(scale) else scale)
    return out
