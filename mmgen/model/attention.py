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
    labels = mask_first_labels(labels, cu_seqlens)      # mmgen.data.batch
    out = model(input_ids=ids, position_ids=pos, labels=labels, use_cache=False, **kwargs)

The ``attn_implementation="mmgen_varlen_sdpa"`` defined here does without the mask. The
block-diagonal mask is exact, but every query then attends over the whole pack (T^2 work per
layer instead of the sum of L_i^2, most of it masked out) and the float mask alone is T^2
elements. On this
2-core CPU, with 4096-token packs of ~20 samples, that mask path made a tiny model's packed training
step about 1.8x slower than running attention per sample (``mmgen bench step`` shows both).

This attention implementation takes the flash-attention varlen keywords (``cu_seq_lens_q``/``_k``,
which ``packed_attention_kwargs`` returns for it) and runs transformers' own sdpa on each sample's
slice with a causal mask: the same kernel, GQA handling and dropout as ``"sdpa"``, with no mask
tensor. Without those keywords (padded batches, generation with a KV cache) it is ``"sdpa"``
unchanged. Transformers still builds its boolean ``(T, T)`` mask for a packed row (it detects
packing from the restarting position ids, ~75 ms at T=4096 here); it is ignored.

    import mmgen.model   # registers the name with transformers
    llm = AutoModelForCausalLM.from_pretrained(path, attn_implementation="mmgen_varlen_sdpa")
    # or, on a loaded model: model.language_model.set_attn_implementation("mmgen_varlen_sdpa")
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3", "flash_attention_4")
MASK_IMPLEMENTATIONS = ("sdpa", "eager")
VARLEN_SDPA = "mmgen_varlen_sdpa"


def packed_attention_kwargs(
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    attn_implementation: str | None,
    *,
    dtype: torch.dtype | None = None,
    total: int | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    """Keyword arguments that make a HF decoder's attention exact on a packed row.

    Args:
        cu_seqlens: int32 ``(N+1,)`` sample boundaries, from 0 to T, on the model's device
            (the returned tensors live where it lives).
        max_seqlen: the longest sample (a host int).
        attn_implementation: the model's ``config._attn_implementation``.
        dtype: the model's compute dtype; the sdpa/eager mask is built in it (sdpa requires a
            float mask to match the query dtype). Defaults to float32.
        total: T, the packed length (a host int, e.g. ``input_ids.shape[-1]``): sizes the
            sdpa/eager mask without reading ``cu_seqlens``; must equal ``cu_seqlens[-1]``.
        validate: ``False`` when ``cu_seqlens`` was built and checked on the host (the
            collator's ``varlen_metadata``): the mask skips its host check of ``cu_seqlens``.
            With ``total`` given, the mask is then built on CUDA without a host sync (the flash
            and ``mmgen_varlen_sdpa`` keywords never read ``cu_seqlens``).

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

    impl = attn_implementation or ""
    # mmgen_varlen_sdpa (below) reads the flash keywords: sdpa per sample, no mask
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
        mask = ops.block_diagonal_causal_mask(
            cu_seqlens, mask_dtype, total=total, validate=validate
        )
        return {"attention_mask": mask}
    supported = ", ".join((*FLASH_IMPLEMENTATIONS, *MASK_IMPLEMENTATIONS, VARLEN_SDPA))
    raise ValueError(
        f"packed attention is not supported with attn_implementation={attn_implementation!r}: "
        f"use one of {supported} (set it with "
        "from_pretrained(..., attn_implementation=...))"
    )


def _is_hub_flash_kernel(impl: str) -> bool:
    # kernels from the Hub, e.g. "kernels-community/flash-attn2", run transformers' flash path
    name = impl.lower()
    return "/" in name and "flash" in name and not name.startswith("paged")


def varlen_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function (``AttentionInterface``): ``query`` ``(B, heads, T, D)``,
    ``key``/``value`` ``(B, kv_heads, T, D)`` -> ``((B, T, heads, D), None)``."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu_q, cu_k = kwargs.pop("cu_seq_lens_q", None), kwargs.pop("cu_seq_lens_k", None)
    max_length = kwargs.pop("max_length_q", None)
    kwargs.pop("max_length_k", None)
    if cu_q is None:  # not packed: plain sdpa with the mask transformers built
        return sdpa_attention_forward(
            module, query, key, value, attention_mask,
            dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs,
        )  # fmt: skip
    total = query.shape[2]
    if query.shape[0] != 1 or key.shape[2] != total or int(cu_q[-1]) != total:
        raise ValueError(
            f"{VARLEN_SDPA}: a packed batch is one row of T = cu_seq_lens_q[-1] tokens without a "
            f"KV cache; got query {tuple(query.shape)}, key {tuple(key.shape)}, "
            f"cu_seq_lens_q ending at {int(cu_q[-1])}"
        )
    if cu_k is not None and not torch.equal(cu_k.to(cu_q.device), cu_q):
        raise ValueError(f"{VARLEN_SDPA}: cu_seq_lens_k must equal cu_seq_lens_q")
    window = kwargs.get("sliding_window")
    if window is not None and (max_length is None or int(max_length) > int(window)):
        raise ValueError(
            f"{VARLEN_SDPA}: sliding-window attention (window {window}) is not applied per "
            f"sample; keep packed samples at most {window} tokens or use sdpa"
        )
    if kwargs.get("position_bias") is not None:
        raise ValueError(f"{VARLEN_SDPA}: position_bias is not supported")
    outputs = [
        sdpa_attention_forward(
            module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None,
            dropout=dropout, scaling=scaling, is_causal=True, **kwargs,
        )[0]
        for a, b in itertools.pairwise(cu_q.tolist())
        if b > a
    ]  # fmt: skip
    if not outputs:  # T = 0
        return query.transpose(1, 2).contiguous(), None
    return torch.cat(outputs, dim=1), None


def register() -> None:
    """Make ``attn_implementation="mmgen_varlen_sdpa"`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention)
    # padded batches and generation get exactly sdpa's mask
    AttentionMaskInterface.register(VARLEN_SDPA, sdpa_mask)
