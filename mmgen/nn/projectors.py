"""Projectors from an encoder's width to the LLM's hidden size."""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN


class LinearProjector(nn.Linear):
    """One linear layer ``in_features -> out_features``."""

    def __init__(self, in_features: int, out_features: int, *, dtype: torch.dtype | None = None):
        super().__init__(in_features, out_features, dtype=dtype)


class MLPProjector(nn.Sequential):
    """LLaVA-style MLP: ``layers`` linear layers with ``activation`` between them
    (``layers=2, activation="gelu"`` is LLaVA-1.5's ``mlp2x_gelu``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        layers: int = 2,
        activation: str = "gelu",
        dtype: torch.dtype | None = None,
    ):
        if layers < 1:
            raise ValueError(f"MLPProjector needs layers >= 1, got {layers}")
        if activation not in ACT2FN:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACT2FN)}")
        modules: list[nn.Module] = [nn.Linear(in_features, out_features, dtype=dtype)]
        for _ in range(layers - 1):
            modules += [ACT2FN[activation], nn.Linear(out_features, out_features, dtype=dtype)]
        super().__init__(*modules)
