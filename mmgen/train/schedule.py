"""Learning-rate schedule: linear warmup, then linear, cosine or constant decay to a floor.

A function of the step alone (``LambdaLR``), so resuming restores it exactly from its step count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

Kind = Literal["linear", "cosine", "constant"]


def lr_multiplier(
    kind: Kind, total_steps: int, warmup_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """``step -> factor`` of the base LR for ``step`` in ``0..total_steps-1``.

    Warmup rises linearly from ``1/warmup`` to 1 (the first step already moves the weights);
    afterwards the factor decays from 1 to ``min_ratio`` at the last step.
    """
    if total_steps < 1 or warmup_steps < 0 or not 0.0 <= min_ratio <= 1.0:
        raise ValueError(
            f"bad schedule: total_steps={total_steps}, warmup_steps={warmup_steps}, "
            f"min_ratio={min_ratio}"
        )
    if kind not in ("linear", "cosine", "constant"):
        raise ValueError(f"unknown schedule {kind!r}; choose linear, cosine or constant")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        span = max(1, total_steps - 1 - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        shape = 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return min_ratio + (1.0 - min_ratio) * shape

    return factor
