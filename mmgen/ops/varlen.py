"""Variable-length batching ops: token-budget packing, packed-layout metadata, pad/unpad, mask.

The kernels live in ``csrc/cpu/plan_packs.cpp``, ``csrc/cpu/varlen.cpp`` and
``csrc/cuda/varlen.cu`` (schemas in ``csrc/ops.cpp``, per-token logic in
``csrc/include/mmgen/varlen.h``); this module adds argument coercion, fake kernels and autograd.

Layout: N sequences laid end to end in T tokens; ``cu_seqlens`` (int32, ``(N+1,)``) holds their
boundaries, from 0 to T.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from mmgen.ops.extension import load

load()  # registers the torch.ops.mmgen ops this module wraps


class VarlenMetadata(NamedTuple):
    cu_seqlens: torch.Tensor  # int32 (N+1,), starts at 0, ends at T
    position_ids: torch.Tensor  # int64 (T,), restarts at 0 for every sequence
    seq_idx: torch.Tensor  # int32 (T,), the sequence of every token
    max_seqlen: int  # the longest sequence, as a host int


def plan_packs(
    lengths: torch.Tensor | Sequence[int],
    capacity: int,
    *,
    strategy: str = "bfd",
    items: torch.Tensor | Sequence[int] | None = None,
    max_items: int | None = None,
) -> torch.Tensor:
    """Assign every sample to a pack whose total length fits ``capacity`` tokens.

    Args:
        lengths: ``(N,)`` sample lengths in tokens (any integer dtype, list or tensor).
        capacity: the token budget of one pack.
        strategy: ``"bfd"`` best-fit decreasing (fewest packs; O(N log C)), ``"ffd"`` first-fit
            decreasing, or ``"sequential"`` next-fit in dataset order (keeps sample order).
        items: ``(N,)`` per-sample counts for a second budget, e.g. modality instances, which
            bounds the encoder's batch (``BaseModalityConfig.max_batch_size``).
        max_items: the per-pack budget for ``items``; give both or neither.

    Returns:
        int64 ``(N,)`` on the CPU: the pack of each sample, packs numbered 0..P-1 in the order
        they were opened. Deterministic: the same input always gives the same plan.

    Raises:
        ValueError: a sample longer than ``capacity`` or with more items than ``max_items``
            (names its index and size), a negative value, an unknown strategy, or only one of
            ``items`` / ``max_items``.
        TypeError: non-integer lengths or items.
    """
    _needs_values(lengths, "plan_packs: lengths")
    lengths = _as_int(lengths, torch.int64, "plan_packs: lengths").cpu()
    if items is not None:
        _needs_values(items, "plan_packs: items")
        items = _as_int(items, torch.int64, "plan_packs: items").cpu()
    return torch.ops.mmgen.plan_packs(
        lengths, int(capacity), strategy, items, None if max_items is None else int(max_items)
    )


def varlen_metadata(lengths: torch.Tensor | Sequence[int]) -> VarlenMetadata:
    """``cu_seqlens``, ``position_ids``, ``seq_idx``, ``max_seqlen`` of sequences laid end to end.

    ``lengths`` is ``(N,)`` (any integer dtype; outputs go to its device). On CUDA this reads the
    lengths on the host once, to size the outputs.
    """
    _needs_values(lengths, "varlen_metadata: lengths")
    lengths = _as_int(lengths, torch.int64, "varlen_metadata: lengths")
    _fits_int32(lengths, "varlen_metadata")
    return VarlenMetadata(*torch.ops.mmgen.varlen_metadata(lengths))


def pad_varlen(
    x: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, value: float = 0.0
) -> torch.Tensor:
    """``(T, ...)`` packed rows -> ``(N, max_seqlen, ...)``, with ``value`` in the padding.

    Differentiable (the backward is ``unpad_varlen``). ``cu_seqlens`` may stay on the CPU when
    ``x`` is on CUDA.
    """
    cu_seqlens = _as_int(cu_seqlens, torch.int32, "pad_varlen: cu_seqlens")
    if cu_seqlens.dim() != 1 or cu_seqlens.shape[0] == 0:
        shape = tuple(cu_seqlens.shape)
        raise ValueError(f"pad_varlen: cu_seqlens must be 1-D (N+1,) from 0, got shape {shape}")
    if int(max_seqlen) < 0:
        raise ValueError(f"pad_varlen: max_seqlen = {int(max_seqlen)} is negative")
    if isinstance(x, torch.Tensor) and not (x.dtype.is_floating_point or x.dtype.is_complex):
        info = torch.iinfo(x.dtype) if x.dtype != torch.bool else None
        low, high = (info.min, info.max) if info else (0, 1)
        whole = math.isfinite(value) and float(value) == int(value)
        if not whole or not low <= int(value) <= high:
            raise ValueError(f"pad_varlen: value {value} does not fit x's dtype {x.dtype}")
    return torch.ops.mmgen.pad_varlen(x, cu_seqlens, int(max_seqlen), value)


def unpad_varlen(x: torch.Tensor, lengths: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """``(N, S, ...)`` padded rows -> ``(T, ...)``: the first ``lengths[n]`` rows of every ``x[n]``.

    The exact inverse of ``pad_varlen`` on the valid region; differentiable.
    """
    _needs_values(lengths, "unpad_varlen: lengths")
    _needs_values(x, "unpad_varlen: x")
    lengths = _as_int(lengths, torch.int64, "unpad_varlen: lengths")
    _fits_int32(lengths, "unpad_varlen")
    return torch.ops.mmgen.unpad_varlen(x, lengths)


def block_diagonal_causal_mask(
    cu_seqlens: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``(1, 1, T, T)`` additive mask that keeps packed sequences apart in attention.

    0 where query and key are in the same sequence and key <= query; ``torch.finfo(dtype).min``
    elsewhere. HF models take it as ``attention_mask`` with sdpa and eager attention; pass the
    model's dtype (sdpa requires the mask to match the query dtype). T x T memory: prefer the
    flash-attention varlen path for long packs (``mmgen.model.attention.packed_attention_kwargs``).
    """
    _needs_values(cu_seqlens, "block_diagonal_causal_mask: cu_seqlens")
    cu_seqlens = _as_int(cu_seqlens, torch.int32, "block_diagonal_causal_mask: cu_seqlens")
    return torch.ops.mmgen.block_diagonal_causal_mask(cu_seqlens, dtype)


def _fits_int32(lengths: torch.Tensor, op: str) -> None:
    """One length past int32 would wrap the kernels' int64 running total (``[1, 2**63 - 1]``
    summed to a negative number that passed their check): refuse it here."""
    # (not while torch.compile traces: a value check there would break the graph)
    if lengths.numel() and lengths.device.type != "meta" and not torch.compiler.is_compiling():
        longest, at = (int(v) for v in lengths.reshape(-1).max(0))
        if longest > torch.iinfo(torch.int32).max:
            raise ValueError(
                f"{op}: lengths[{at}] = {longest} is more than 2^31 - 1 tokens; cu_seqlens is int32"
            )


def _needs_values(values: object, name: str) -> None:
    """Ops whose output size follows their values cannot run on meta tensors (FakeTensors, as
    torch.compile traces with, are fine): say so instead of torch's multi-line error."""
    if isinstance(values, torch.Tensor) and values.device.type == "meta":
        raise ValueError(
            f"{name} is a meta tensor, but this op's output size depends on data values;"
            " trace with FakeTensors (torch.compile) instead"
        )


def _as_int(values: torch.Tensor | Sequence[int], dtype: torch.dtype, name: str) -> torch.Tensor:
    """``values`` as an integer tensor of ``dtype``; floats are refused, not truncated."""
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(values)
    if values.numel() == 0:  # [] and torch.tensor([]) are float32, with nothing to truncate
        return values.to(dtype)
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got {values.dtype}")
    narrowing = values.dtype != dtype and values.dtype.itemsize > dtype.itemsize
    # meta tensors hold no values to check; torch.compile's trace must not branch on them
    if narrowing and values.device.type != "meta" and not torch.compiler.is_compiling():
        # narrowing wraps silently (2**32 + 2 would act as 2): check the range first
        info = torch.iinfo(dtype)
        low, high = int(values.min()), int(values.max())
        if low < info.min or high > info.max:
            bad = high if high > info.max else low
            raise ValueError(f"{name}: {bad} does not fit {dtype} ({info.min}..{info.max})")
    return values.to(dtype)


# --- fake kernels: shapes for meta tensors and torch.compile. Sizes that depend on the data
# (T, the longest length) become unbacked symbolic ints from the dynamic-size API.


@torch.library.register_fake("mmgen::plan_packs")
def _plan_packs_fake(lengths, capacity, strategy="bfd", items=None, max_items=None):
    return lengths.new_empty(lengths.shape)


@torch.library.register_fake("mmgen::varlen_metadata")
def _varlen_metadata_fake(lengths):
    ctx = torch.library.get_ctx()
    total, longest = ctx.new_dynamic_size(), ctx.new_dynamic_size()
    return (
        lengths.new_empty(lengths.shape[0] + 1, dtype=torch.int32),
        lengths.new_empty(total, dtype=torch.int64),
        lengths.new_empty(total, dtype=torch.int32),
        longest,
    )


@torch.library.register_fake("mmgen::pad_varlen")
def _pad_varlen_fake(x, cu_seqlens, max_seqlen, value=0):
    return x.new_empty((cu_seqlens.shape[0] - 1, max_seqlen, *x.shape[1:]))


@torch.library.register_fake("mmgen::unpad_varlen")
def _unpad_varlen_fake(x, lengths):
    total = torch.library.get_ctx().new_dynamic_size()
    return x.new_empty((total, *x.shape[2:]))


@torch.library.register_fake("mmgen::block_diagonal_causal_mask")
def _mask_fake(cu_seqlens, dtype=None):
    total = torch.library.get_ctx().new_dynamic_size()
    return cu_seqlens.new_empty((1, 1, total, total), dtype=dtype or torch.float32)


# --- autograd: pad and unpad are each other's backward (both are pure row moves).


def _pad_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _pad_backward(ctx, grad):
    (cu_seqlens,) = ctx.saved_tensors
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).to(torch.int64)
    return torch.ops.mmgen.unpad_varlen(grad, lengths), None, None, None


def _unpad_setup(ctx, inputs, output):
    x, lengths = inputs
    ctx.max_seqlen = x.shape[1]
    ctx.save_for_backward(lengths)


def _unpad_backward(ctx, grad):
    (lengths,) = ctx.saved_tensors
    cu_seqlens = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    return torch.ops.mmgen.pad_varlen(grad, cu_seqlens, ctx.max_seqlen, 0), None


torch.library.register_autograd("mmgen::pad_varlen", _pad_backward, setup_context=_pad_setup)
torch.library.register_autograd("mmgen::unpad_varlen", _unpad_backward, setup_context=_unpad_setup)
