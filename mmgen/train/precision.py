"""Mixed precision: bf16/fp16 autocast on GPUs, fp32 on CPU unless asked otherwise.

Weights and optimizer state stay in fp32 (autocast only runs matmuls in low precision), so a
checkpoint is the same whatever the precision. fp16 needs a gradient scaler (its range is
small); bf16 does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from mmgen.errors import ConfigError


def resolve(precision: str, device: torch.device) -> str:
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError("precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"  # CPU bf16 autocast is slower than fp32 on most CPUs


def autocast_factory(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A function returning a fresh autocast context for each forward."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
