"""Variable-length batching ops: token-budget packing, packed-layout metadata, pad/unpad, mask.

The kernels live in ``csrc/cpu/plan_packs.cpp``, ``csrc/cpu/varlen.cpp`` and
``csrc/cuda/varlen.cu`` (schemas in ``csrc/ops.cpp``, per-token logic in
``csrc/include/mmgen/varlen.h``); this module adds argument coercion, fake kernels and autograd.

Layout: N sequences laid end to end in T tokens; ``cu_seqlens`` (int32, ``(N+1,)``) holds their
boundaries, from 0 to T.

Host synchronisation on CUDA: by default (``validate=True``) every op reads ``cu_seqlens`` /
``lengths`` on the host to check them and size its output, one host sync when they are on the
GPU. With ``validate=False`` and every size the op needs given as a host int (``pad_varlen``:
``max_seqlen``; ``unpad_varlen`` and ``block_diagonal_causal_mask``: ``total``;
``varlen_metadata``: ``total`` and ``max_seqlen``) a CUDA call reads nothing back, so it can be
captured in a CUDA graph; the same checks then run as device-side asserts (bad input fails the
next synchronising CUDA call instead of raising). On the CPU reading costs nothing: the checks
always run and a given size is always compared with the data (a wrong one is a ``ValueError``).
The autograd backward of pad/unpad is sync-free on CUDA.
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


def varlen_metadata(
    lengths: torch.Tensor | Sequence[int],
    *,
    total: int | None = None,
    max_seqlen: int | None = None,
    validate: bool = True,
) -> VarlenMetadata:
    """``cu_seqlens``, ``position_ids``, ``seq_idx``, ``max_seqlen`` of sequences laid end to end.

    ``lengths`` is ``(N,)`` (any integer dtype; outputs go to its device). ``total`` (T, the sum
    of the lengths) and ``max_seqlen`` (the longest length), when given, must equal what the
    lengths give. On CUDA this reads the lengths on the host once, to check them and size the
    outputs, unless ``validate=False`` and both sizes are given (then sync-free, checked by
    device-side asserts).
    """
    if total is None or max_seqlen is None:
        _needs_values(lengths, "varlen_metadata: lengths")
    lengths = _as_int(lengths, torch.int64, "varlen_metadata: lengths", validate)
    total = _size(total, "varlen_metadata: total")
    max_seqlen = _size(max_seqlen, "varlen_metadata: max_seqlen")
    _fits_int32(lengths, "varlen_metadata", validate)
    return VarlenMetadata(
        *torch.ops.mmgen.varlen_metadata(
            lengths, total=total, max_seqlen=max_seqlen, validate=validate
        )
    )


def pad_varlen(
    x: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    value: float = 0.0,
    *,
    validate: bool = True,
) -> torch.Tensor:
    """``(T, ...)`` packed rows -> ``(N, max_seqlen, ...)``, with ``value`` in the padding.

    Differentiable (the backward is ``unpad_varlen``, sync-free). ``cu_seqlens`` may stay on the
    CPU when ``x`` is on CUDA (its copy to the device then synchronises). ``validate=False`` with
    ``cu_seqlens`` on the GPU skips the host check of ``cu_seqlens``: sync-free, checked by
    device-side asserts (``max_seqlen`` and ``x.shape[0]`` give every size).
    """
    cu_seqlens = _as_int(cu_seqlens, torch.int32, "pad_varlen: cu_seqlens", validate)
    max_seqlen = _size(max_seqlen, "pad_varlen: max_seqlen")
    if cu_seqlens.dim() != 1 or cu_seqlens.shape[0] == 0:
        shape = tuple(cu_seqlens.shape)
        raise ValueError(f"pad_varlen: cu_seqlens must be 1-D (N+1,) from 0, got shape {shape}")
    if max_seqlen < 0:
        raise ValueError(f"pad_varlen: max_seqlen = {max_seqlen} is negative")
    if isinstance(x, torch.Tensor) and not (x.dtype.is_floating_point or x.dtype.is_complex):
        info = torch.iinfo(x.dtype) if x.dtype != torch.bool else None
        low, high = (info.min, info.max) if info else (0, 1)
        whole = math.isfinite(value) and float(value) == int(value)
        if not whole or not low <= int(value) <= high:
            raise ValueError(f"pad_varlen: value {value} does not fit x's dtype {x.dtype}")
    return torch.ops.mmgen.pad_varlen(x, cu_seqlens, max_seqlen, value, validate=validate)


def unpad_varlen(
    x: torch.Tensor,
    lengths: torch.Tensor | Sequence[int],
    *,
    total: int | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """``(N, S, ...)`` padded rows -> ``(T, ...)``: the first ``lengths[n]`` rows of every ``x[n]``.

    The exact inverse of ``pad_varlen`` on the valid region; differentiable. ``total`` (T, the
    sum of the lengths), when given, must equal it; on CUDA, ``validate=False`` with ``total``
    given and ``lengths`` on the GPU is sync-free (checked by device-side asserts).
    """
    if total is None:
        _needs_values(lengths, "unpad_varlen: lengths")
        _needs_values(x, "unpad_varlen: x")
    lengths = _as_int(lengths, torch.int64, "unpad_varlen: lengths", validate)
    total = _size(total, "unpad_varlen: total")
    _fits_int32(lengths, "unpad_varlen", validate)
    return torch.ops.mmgen.unpad_varlen(x, lengths, total=total, validate=validate)


def block_diagonal_causal_mask(
    cu_seqlens: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    *,
    total: int | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """The ``(1, 1, T, T)`` additive mask that keeps packed sequences apart in attention.

    0 where query and key are in the same sequence and key <= query; ``torch.finfo(dtype).min``
    elsewhere. HF models take it as ``attention_mask`` with sdpa and eager attention; pass the
    model's dtype (sdpa requires the mask to match the query dtype). T x T memory: prefer the
    flash-attention varlen path for long packs (``mmgen.model.attention.packed_attention_kwargs``).

    ``total`` (T, the last boundary), when given, must equal ``cu_seqlens[-1]``; on CUDA,
    ``validate=False`` with ``total`` given is sync-free (checked by device-side asserts).
    """
    if total is None:
        _needs_values(cu_seqlens, "block_diagonal_causal_mask: cu_seqlens")
    name = "block_diagonal_causal_mask: cu_seqlens"
    cu_seqlens = _as_int(cu_seqlens, torch.int32, name, validate)
    total = _size(total, "block_diagonal_causal_mask: total")
    return torch.ops.mmgen.block_diagonal_causal_mask(
        cu_seqlens, dtype, total=total, validate=validate
    )


def _size(value: int | None, name: str) -> int | None:
    """A host size as an int (``None`` stays ``None``). Tensors are refused (reading a device
    tensor here would be the host sync the size is given to avoid), and so are floats."""
    if value is None:
        return None
    if isinstance(value, bool | float | str | bytes) or torch.is_tensor(value):
        raise TypeError(f"{name} must be a host int, got {type(value).__name__}")
    return int(value)


def _checks_values(values: torch.Tensor, validate: bool) -> bool:
    """Whether the host may read ``values`` to check them: not on the meta device (no values),
    not while torch.compile traces (a branch on data breaks the graph), and not on a GPU under
    ``validate=False`` (sync-free: the device-side asserts check there)."""
    if values.device.type == "meta" or torch.compiler.is_compiling():
        return False
    return validate or values.device.type == "cpu"


def _fits_int32(lengths: torch.Tensor, op: str, validate: bool = True) -> None:
    """One length past int32 would wrap the kernels' int64 running total (``[1, 2**63 - 1]``
    summed to a negative number that passed their check): refuse it here."""
    if lengths.numel() and _checks_values(lengths, validate):
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


def _as_int(
    values: torch.Tensor | Sequence[int], dtype: torch.dtype, name: str, validate: bool = True
) -> torch.Tensor:
    """``values`` as an integer tensor of ``dtype``; floats are refused, not truncated."""
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(values)
    if values.numel() == 0:  # [] and torch.tensor([]) are float32, with nothing to truncate
        return values.to(dtype)
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got {values.dtype}")
    narrowing = values.dtype != dtype and values.dtype.itemsize > dtype.itemsize
    if narrowing and _checks_values(values, validate):
        # narrowing wraps silently (2**32 + 2 would act as 2): check the range first
        info = torch.iinfo(dtype)
        low, high = int(values.min()), int(values.max())
        if low < info.min or high > info.max:
            bad = high if high > info.max else low
            raise ValueError(f"{name}: {bad} does not fit {dtype} ({info.min}..{info.max})")
    return values.to(dtype)


# --- fake kernels: shapes for meta tensors and torch.compile. Sizes that depend on the data
# (T, the longest length) become unbacked symbolic ints from the dynamic-size API, unless given
# as host ints; then the shapes are static and plain meta tensors work too.


def _dynamic_size():
    return torch.library.get_ctx().new_dynamic_size()


@torch.library.register_fake("mmgen::plan_packs")
def _plan_packs_fake(lengths, capacity, strategy="bfd", items=None, max_items=None):
    return lengths.new_empty(lengths.shape)


@torch.library.register_fake("mmgen::varlen_metadata")
def _varlen_metadata_fake(lengths, *, total=None, max_seqlen=None, validate=True):
    total = _dynamic_size() if total is None else total
    longest = _dynamic_size() if max_seqlen is None else max_seqlen
    return (
        lengths.new_empty(lengths.shape[0] + 1, dtype=torch.int32),
        lengths.new_empty(total, dtype=torch.int64),
        lengths.new_empty(total, dtype=torch.int32),
        longest,
    )


@torch.library.register_fake("mmgen::pad_varlen")
def _pad_varlen_fake(x, cu_seqlens, max_seqlen, value=0, *, validate=True):
    return x.new_empty((cu_seqlens.shape[0] - 1, max_seqlen, *x.shape[1:]))


@torch.library.register_fake("mmgen::unpad_varlen")
def _unpad_varlen_fake(x, lengths, *, total=None, validate=True):
    total = _dynamic_size() if total is None else total
    return x.new_empty((total, *x.shape[2:]))


@torch.library.register_fake("mmgen::block_diagonal_causal_mask")
def _mask_fake(cu_seqlens, dtype=None, *, total=None, validate=True):
    total = _dynamic_size() if total is None else total
    return cu_seqlens.new_empty((1, 1, total, total), dtype=dtype or torch.float32)


# --- autograd: pad and unpad are each other's backward (both are pure row moves). The backward
# knows every size on the host (T, max_seqlen) and gets boundaries the forward already checked,
# so it runs with validate=False: sync-free on CUDA (and fully checked on the CPU, where the
# checks always run).


def _pad_setup(ctx, inputs, keyword_only_inputs, output):
    ctx.total = inputs[0].shape[0]
    ctx.save_for_backward(inputs[1])


def _pad_backward(ctx, grad):
    (cu_seqlens,) = ctx.saved_tensors
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).to(torch.int64)
    grad_x = torch.ops.mmgen.unpad_varlen(grad, lengths, total=ctx.total, validate=False)
    return grad_x, None, None, None


def _unpad_setup(ctx, inputs, keyword_only_inputs, output):
    x, lengths = inputs
    ctx.max_seqlen = x.shape[1]
    ctx.save_for_backward(lengths)


def _unpad_backward(ctx, grad):
    (lengths,) = ctx.saved_tensors
    cu_seqlens = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    grad_x = torch.ops.mmgen.pad_varlen(grad, cu_seqlens, ctx.max_seqlen, 0, validate=False)
    return grad_x, None


torch.library.register_autograd("mmgen::pad_varlen", _pad_backward, setup_context=_pad_setup)
torch.library.register_autograd("mmgen::unpad_varlen", _unpad_backward, setup_context=_unpad_setup)
