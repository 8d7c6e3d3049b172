"""The batch contract between the data side (collators) and ``MultimodalModel.forward``.

Packed layout (what ``mmgen.data.collator.PackedCollator`` yields; one pack = several samples
laid end to end):

    input_ids     int64 (T,)   token ids; every position of a modality item holds that
                               modality's placeholder id (``num_embeddings`` positions per item)
    labels        int64 (T,)   -100 where no loss is taken: non-assistant turns, placeholders,
                               and the first token of every sample (so no sample is predicted
                               from the one packed before it)
    position_ids  int64 (T,)   restart at 0 for every sample
    cu_seqlens    int32 (N+1,) sample boundaries, starting at 0 and ending at T
    max_seqlen    int          longest sample in the pack (a host int, never a tensor)
    modalities    {name: ModalityBatch}  keyed by modality name (the dataset's "type"); a
                               modality with no item in the batch is absent
    sample_ids    list[str]    dataset ids of the N samples, for error messages

Padded layout (the baseline, HF-style, ``PaddedCollator``): ``input_ids``/``labels`` are (B, S),
right-padded (pad id in ``input_ids``, -100 in ``labels``), with an ``attention_mask`` (B, S) of
1/0 instead of ``cu_seqlens``/``max_seqlen``/``position_ids``; ``sample_index`` is the row.

The i-th placeholder run of a modality in row-major token order takes ``values[i]``; the model
checks that its encoder produced exactly ``num_embeddings[i]`` rows for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from mmgen.constants import IGNORE_INDEX

if TYPE_CHECKING:
    import torch


class ModalityBatch(TypedDict):
    values: list[torch.Tensor]  # processed items, in placeholder order over the whole batch
    num_embeddings: list[int]  # rows each item must become
    sample_index: list[int]  # which sample (0..N-1, or batch row) each item belongs to


class PackedBatch(TypedDict, total=False):
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int
    attention_mask: torch.Tensor
    modalities: dict[str, ModalityBatch]
    sample_ids: list[str]


def mask_first_labels(
    labels: torch.Tensor, cu_seqlens: torch.Tensor, *, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """A copy of ``labels`` with ``ignore_index`` at the first token of every packed sample.

    HF causal-LM losses shift labels left, so the label at a sample's first token is the
    target of the previous sample's last token; ignoring it makes the packed loss the
    token-weighted mean of the per-sample losses. ``labels`` is ``(T,)`` or ``(1, T)``.
    """
    if labels.shape[-1] != (total := int(cu_seqlens[-1])) or labels.dim() not in (1, 2):
        raise ValueError(
            f"labels must be (T,) or (1, T) with T = cu_seqlens[-1] = {total}, "
            f"got shape {tuple(labels.shape)}"
        )
    starts = cu_seqlens[:-1].long().to(labels.device)
    starts = starts[starts < total]  # an empty last sample starts at T
    out = labels.clone()
    out[..., starts] = ignore_index
    return out


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a batch (and of its modality items) on ``device``."""
    import torch

    if device.type == "cpu":
        return batch
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=True)
        elif key == "modalities":
            value = {name: _items_to(items, device) for name, items in value.items()}
        out[key] = value
    return out


def _items_to(items: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {**items, "values": [v.to(device, non_blocking=True) for v in items["values"]]}
