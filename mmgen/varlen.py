"""Exact packed attention for Hugging Face decoders: what to pass so packed samples stay apart.

A packed batch is one row of T tokens holding N samples (``mmgen/data/batch.py``). Restarting
``position_ids`` alone does not isolate them: transformers 5.x infers packing from position ids
only when no cache object exists, and a causal LM builds a ``DynamicCache`` whenever ``use_cache``
is on, so sdpa and eager then attend across samples (0.5 max abs logit error measured on a tiny
Llama). This module returns what makes attention exact for each implementation:

- flash_attention_2/3/4 (and hub flash kernels): the varlen kwargs ``cu_seq_lens_q/k`` and
  ``max_length_q/k`` (``transformers.modeling_flash_attention_utils.FlashAttentionKwargs``);
- sdpa and eager: a 4-D additive block-diagonal causal mask as ``attention_mask``.
  ``transformers.masking_utils._preprocess_mask_arguments`` returns any 4-D mask as-is (no
  causal or padding mask is combined with it), so it must encode causality itself. It must be
  float: eager adds it to the scores, where a bool mask would be wrong.

Typical use (``input_ids``/``position_ids`` shaped ``(1, T)``)::

    kwargs = packed_attention_kwargs(cu_seqlens, max_seqlen, model.config._attn_implementation,
                                     dtype=model.dtype)
    labels = mask_first_labels(labels, cu_seqlens)
    out = model(input_ids=ids, position_ids=pos, labels=labels, use_cache=False, **kwargs)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100  # the label that HF losses skip
FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3", "flash_attention_4")
MASK_IMPLEMENTATIONS = ("sdpa", "eager")


def packed_attention_kwargs(
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    attn_implementation: str | None,
    *,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Keyword arguments that make a HF decoder's attention exact on a packed row.

    Args:
        cu_seqlens: int32 ``(N+1,)`` sample boundaries, from 0 to T, on the model's device
            (the returned tensors live where it lives).
        max_seqlen: the longest sample (a host int).
        attn_implementation: the model's ``config._attn_implementation``.
        dtype: the model's compute dtype; the sdpa/eager mask is built in it (sdpa requires a
            float mask to match the query dtype). Defaults to float32.

    Returns:
        For flash attention and ``mmgen_varlen_sdpa``: ``cu_seq_lens_q``, ``cu_seq_lens_k``,
        ``max_length_q``, ``max_length_k``. For sdpa and eager: ``attention_mask``, the
        ``(1, 1, T, T)`` additive block-diagonal causal mask (T x T memory and work: use flash
        attention or ``mmgen_varlen_sdpa`` for long packs).

    Raises:
        ValueError: any other implementation (e.g. flex_attention or paged attention), for which
            mmgen cannot guarantee that samples stay apart.
    """
    import torch

    from mmgen import ops
    from mmgen.varlen_sdpa import VARLEN_SDPA

    impl = attn_implementation or ""
    # mmgen_varlen_sdpa (mmgen/varlen_sdpa.py) reads the flash keywords: sdpa per sample, no mask
    if impl in FLASH_IMPLEMENTATIONS or impl == VARLEN_SDPA or _is_hub_flash_kernel(impl):
        cu = cu_seqlens.to(torch.int32)
        return {
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": int(max_seqlen),
            "max_length_k": int(max_seqlen),
        }
    if impl in MASK_IMPLEMENTATIONS:
        mask_dtype = dtype if dtype is not None else torch.float32
        return {"attention_mask": ops.block_diagonal_causal_mask(cu_seqlens, mask_dtype)}
    supported = ", ".join((*FLASH_IMPLEMENTATIONS, *MASK_IMPLEMENTATIONS, VARLEN_SDPA))
    raise ValueError(
        f"packed attention is not supported with attn_implementation={attn_implementation!r}: "
        f"use one of {supported} (set it with "
        "from_pretrained(..., attn_implementation=...))"
    )


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


def _is_hub_flash_kernel(impl: str) -> bool:
    # kernels from the Hub, e.g. "kernels-community/flash-attn2", run transformers' flash path
    name = impl.lower()
    return "/" in name and "flash" in name and not name.startswith("paged")
