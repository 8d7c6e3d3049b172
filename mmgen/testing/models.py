"""Offline stand-ins for generated tests: tiny random-init encoders and processors saved to disk,
so the generated code loads them by path exactly as it would load a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_tiny_model(model_class: type, path: str | Path, *, seed: int = 0, **config: Any) -> str:
    """Build ``model_class`` from its own config class with ``config`` (random init from
    ``seed``), save it with ``save_pretrained`` to ``path`` and return the path as a string.

    The caller's random state is left as it was: in a distributed run only rank 0 saves, and
    the ranks must go on drawing the same numbers (FSDP does not sync initial weights).
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(model_class.config_class(**config))
    model.save_pretrained(path)
    return str(path)


def save_tiny_processor(processor_class: type, path: str | Path, **options: Any) -> str:
    """Build a processor (feature extractor, image processor) from keyword options, save it to
    ``path`` and return the path as a string.
    """
    processor_class(**options).save_pretrained(path)
    return str(path)
