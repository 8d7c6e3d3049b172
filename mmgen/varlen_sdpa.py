"""``mmgen_varlen_sdpa``: exact packed attention for transformers decoders, one sample at a time.

``mmgen.varlen`` keeps packed samples apart under sdpa/eager with a ``(T, T)`` block-diagonal
mask. That is exact, but every query then attends over the whole pack (T^2 work per layer instead
of the sum of L_i^2, most of it masked out) and the float mask alone is T^2 elements. On this
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

VARLEN_SDPA = "mmgen_varlen_sdpa"


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
