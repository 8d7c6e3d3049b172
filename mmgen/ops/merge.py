"""``packed_merge``: an LLM's input embeddings from token ids and modality features, in one pass.

The kernels live in ``csrc/cpu/merge.cpp`` and ``csrc/cuda/merge.cu`` (schemas in
``csrc/ops.cpp``); this module adds the Python-side argument checks, the fake kernels and autograd.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

from mmgen.ops.extension import load

load()  # registers the torch.ops.mmgen ops this module wraps

_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def packed_merge(
    input_ids: torch.Tensor,
    weight: torch.Tensor,
    features: Sequence[torch.Tensor],
    placeholder_ids: Sequence[int],
    *,
    validate: bool = True,
) -> torch.Tensor:
    """Embed ``input_ids`` with ``weight``, putting modality feature rows at placeholder positions.

    ``out[t] = features[k][r]`` where ``input_ids[t] == placeholder_ids[k]`` and ``r`` counts the
    earlier positions (row-major over the whole batch) holding that id; otherwise
    ``out[t] = weight[input_ids[t]]``.

    Args:
        input_ids: int64 ``(T,)`` packed or ``(B, S)`` padded token ids.
        weight: the ``(V, H)`` embedding table (fp32, fp16 or bf16).
        features: K tensors ``(N_k, H)``, same dtype and device as ``weight``; ``N_k`` must equal
            the number of positions holding ``placeholder_ids[k]``.
        placeholder_ids: K distinct ints (at most 32). They may lie outside ``[0, V)``, e.g.
            LLaVA's -200, and are never looked up in ``weight``, so no vocabulary resize is needed;
            an id inside the vocabulary is still a placeholder.
        validate: on CUDA, check the placeholder counts and text ids, which costs one host
            synchronisation. ``False`` makes the forward sync-free; bad input then trips a
            device-side assert instead of raising. The CPU always checks (it costs nothing there).

    Returns:
        ``input_ids.shape + (H,)`` in ``weight``'s dtype. Backward: the grad to ``weight`` sums the
        output grad rows at text positions only, deterministically; the grad to ``features[k]`` is
        the output grad rows at its positions. Frozen ``weight`` or features get no gradient work.

    Raises:
        TypeError: ``input_ids`` not int64, ``weight`` not floating point, a feature's dtype
            differs from ``weight``'s, or a placeholder id is not an int.
        ValueError: wrong number of dims, hidden size or device mismatch, duplicate placeholder
            ids, one feature tensor per id not given, or a placeholder's position count differs
            from its feature rows (names the id and both counts).
        IndexError: a text id outside ``[0, V)`` (names the id and its position).
    """
    ids = _check(input_ids, weight, features, placeholder_ids)
    return torch.ops.mmgen.packed_merge(input_ids, weight, list(features), ids, validate=validate)


def _check(input_ids, weight, features, placeholder_ids) -> list[int]:
    """The cheap metadata checks (the kernels check the data: counts and ids)."""
    for name, value in (("input_ids", input_ids), ("weight", weight)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"packed_merge: {name} must be a torch.Tensor, got {type(value)}")
    if input_ids.dtype != torch.int64:
        raise TypeError(f"packed_merge: input_ids must be int64 token ids, got {input_ids.dtype}")
    if input_ids.dim() not in (1, 2):
        raise ValueError(
            "packed_merge: input_ids must be 1-D (T,) packed or 2-D (B, S) padded, "
            f"got {input_ids.dim()}-D of shape {tuple(input_ids.shape)}"
        )
    if weight.dim() != 2:
        raise ValueError(
            f"packed_merge: weight must be 2-D (V, H), got shape {tuple(weight.shape)}"
        )
    if weight.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"packed_merge: weight must be fp32, fp16 or bf16, got {weight.dtype}")
    if input_ids.device != weight.device:
        raise ValueError(
            f"packed_merge: input_ids is on {input_ids.device} but weight is on {weight.device}"
        )
    ids = _placeholder_list(placeholder_ids)
    if isinstance(features, torch.Tensor):
        raise ValueError("packed_merge: features must be a list of tensors, one per placeholder id")
    if len(features) != len(ids):
        raise ValueError(
            f"packed_merge: got {len(features)} feature tensors for {len(ids)} placeholder ids "
            "(need one per id)"
        )
    hidden = weight.shape[1]
    for k, f in enumerate(features):
        if not isinstance(f, torch.Tensor):
            raise TypeError(f"packed_merge: features[{k}] must be a torch.Tensor, got {type(f)}")
        if f.dim() != 2:
            raise ValueError(
                f"packed_merge: features[{k}] must be 2-D (N, H), got {tuple(f.shape)}"
            )
        if f.shape[1] != hidden:
            raise ValueError(
                f"packed_merge: features[{k}] has hidden size {f.shape[1]} but weight has {hidden}"
            )
        if f.dtype != weight.dtype:
            raise TypeError(
                f"packed_merge: features[{k}] is {f.dtype} but weight is {weight.dtype}"
            )
        if f.device != weight.device:
            raise ValueError(
                f"packed_merge: features[{k}] is on {f.device} but weight is on {weight.device}"
            )
    return ids


def _placeholder_list(placeholder_ids) -> list[int]:
    ids = []
    for k, pid in enumerate(placeholder_ids):
        if isinstance(pid, bool) or not hasattr(pid, "__index__"):
            raise TypeError(f"packed_merge: placeholder_ids[{k}] must be an int, got {pid!r}")
        ids.append(operator.index(pid))
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"packed_merge: placeholder_ids must be distinct, got {dup} twice: {ids}")
    return ids


# Fake kernels: output shapes without running the op, so meta tensors and torch.compile work.
@torch.library.register_fake("mmgen::packed_merge")
def _packed_merge_fake(input_ids, weight, features, placeholder_ids, *, validate=True):
    _check(input_ids, weight, features, placeholder_ids)  # so traced and meta calls fail early too
    return weight.new_empty((*input_ids.shape, weight.shape[1]))


@torch.library.register_fake("mmgen::packed_merge_backward")
def _packed_merge_backward_fake(
    grad_out, input_ids, vocab_size, feature_rows, placeholder_ids, weight_grad, feature_grads
):
    hidden = grad_out.shape[-1]
    table = grad_out.new_empty((vocab_size if weight_grad else 0, hidden))
    rows = [n if want else 0 for n, want in zip(feature_rows, feature_grads, strict=True)]
    return table, [grad_out.new_empty((n, hidden)) for n in rows]


def _setup_context(ctx, inputs, keyword_only_inputs, output):
    input_ids, weight, features, placeholder_ids = inputs
    # only the ids and shapes are needed: the backward never reads weight or feature values
    ctx.save_for_backward(input_ids)
    ctx.vocab_size = weight.shape[0]
    ctx.feature_rows = [f.shape[0] for f in features]
    ctx.placeholder_ids = placeholder_ids


def _backward(ctx, grad):
    (input_ids,) = ctx.saved_tensors
    _, weight_grad, feature_grads, _ = ctx.needs_input_grad
    feature_grads = [bool(want) for want in feature_grads]
    table, grads = torch.ops.mmgen.packed_merge_backward(
        grad,
        input_ids,
        ctx.vocab_size,
        ctx.feature_rows,
        ctx.placeholder_ids,
        bool(weight_grad),
        feature_grads,
    )
    grads = [g if want else None for g, want in zip(grads, feature_grads, strict=True)]
    # torch matches the grads' structure to the inputs', where an empty list (no placeholders)
    # is a list node rather than a leaf
    ids_grad = None if ctx.placeholder_ids else []
    return None, table if weight_grad else None, grads, ids_grad


# Autograd through the compiled kernel (frozen weight/features skip their gradient work).
torch.library.register_autograd("mmgen::packed_merge", _backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output):
    grad_out, input_ids, vocab_size, feature_rows, placeholder_ids = inputs[:5]
    ctx.save_for_backward(input_ids)
    ctx.shape = (vocab_size, grad_out.shape[-1])
    ctx.feature_rows = list(feature_rows)
    ctx.placeholder_ids = list(placeholder_ids)
    ctx.options = {"dtype": grad_out.dtype, "device": grad_out.device}


def _double_backward(ctx, table_grad, feature_grads):
    (input_ids,) = ctx.saved_tensors
    # The backward is linear in grad_out and is the forward's adjoint, so its own adjoint is the
    # forward: the grad to grad_out is packed_merge of the incoming grads. A gradient that was
    # not produced (frozen weight or feature) contributes zeros.
    hidden = ctx.shape[1]
    if table_grad is None or table_grad.shape[0] != ctx.shape[0]:
        table_grad = torch.zeros(ctx.shape, **ctx.options)
    features = [
        g if g is not None and g.shape[0] == n else torch.zeros((n, hidden), **ctx.options)
        for g, n in zip(feature_grads, ctx.feature_rows, strict=True)
    ]
    grad = packed_merge(input_ids, table_grad, features, ctx.placeholder_ids)
    return grad, None, None, None, None, None, None


# Double backward (e.g. gradient penalties): without it, torch would only warn and return wrong
# second-order gradients.
torch.library.register_autograd(
    "mmgen::packed_merge_backward", _double_backward, setup_context=_setup_backward_context
)
