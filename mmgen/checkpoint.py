"""Saving and loading one modality (``BaseModality.save_pretrained`` / ``from_pretrained``).

A walkthrough-style modality builds its encoder inside ``__init__`` with
``AutoModel.from_pretrained(config.clip_name)``. transformers' own ``from_pretrained`` cannot load
such a model (it builds the outer model on the meta device, where the inner load breaks), and the
checkpoint would still depend on the original encoder directory. So a modality checkpoint is:

    config.json          the modality config; path fields rewritten to ``assets/<field>``
    model.safetensors    every weight of the modality (encoder and projector), as trained
    assets/<field>/      the non-weight files of each local directory the config names
                         (the encoder's config.json, preprocessor_config.json, tokenizer files)

Loading reads the config, points its path fields at ``assets/``, builds the modality eagerly
while nested ``from_pretrained`` calls on an asset directory build from its config alone (their
weights are in ``model.safetensors``), then loads ``model.safetensors`` strictly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_model, save_file
from transformers import PreTrainedConfig, PreTrainedModel

if TYPE_CHECKING:
    from mmgen.modality import BaseModality

WEIGHTS_NAME = "model.safetensors"
ASSETS_DIR = "assets"
# written into each asset directory: nested from_pretrained calls on it build from config only
ASSET_MARKER = "mmgen_asset.json"
# config attribute listing which fields were rewritten to asset directories
ASSETS_KEY = "mmgen_assets"
# files that hold weights (never copied into assets: model.safetensors has the trained values)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _is_weight_file(name: str) -> bool:
    return name.endswith(_WEIGHT_SUFFIXES) or name in _WEIGHT_INDEXES


def _local_pretrained_dir(value: Any) -> Path | None:
    """``value`` as a local directory holding a config or processor file, else None."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    if not path.is_dir():
        return None
    markers = ("config.json", "preprocessor_config.json", "tokenizer_config.json", ASSET_MARKER)
    return path if any((path / name).is_file() for name in markers) else None


def _copy_assets(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.is_file() and not _is_weight_file(entry.name) and entry.name != ASSET_MARKER:
            shutil.copy2(entry, target / entry.name)
    note = {"weights": "stored in the parent modality's model.safetensors", "source": str(source)}
    (target / ASSET_MARKER).write_text(json.dumps(note, indent=2) + "\n")


def _dedupe_shared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (tied weights): keep the first name of each
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    out = {}
    for name, tensor in state_dict.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.device.type != "meta" and key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach().contiguous().cpu()
    return out


def save_modality(
    model: BaseModality,
    save_directory: str | os.PathLike,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write ``model`` as described in the module docstring."""
    directory = Path(save_directory)
    if directory.is_file():
        raise NotADirectoryError(f"cannot save a modality to {directory}: it is a file")
    directory.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    # a name a config points at twice (encoder and processor) is copied once
    copied: dict[Path, str] = {}
    assets: dict[str, str] = {}
    for field, value in model.config.to_dict().items():
        source = _local_pretrained_dir(value)
        if source is None or field == "_name_or_path":
            continue
        resolved = source.resolve()
        if resolved not in copied:
            relative = f"{ASSETS_DIR}/{field}"
            target = directory / relative
            if target.resolve() != resolved:  # saving over the checkpoint it was loaded from
                if target.exists():
                    shutil.rmtree(target)
                _copy_assets(source, target)
            copied[resolved] = relative
        assets[field] = copied[resolved]
        setattr(config, field, copied[resolved])
    setattr(config, ASSETS_KEY, assets)
    config.architectures = [type(model).__name__]
    config.save_pretrained(directory)
    tensors = _dedupe_shared(state_dict if state_dict is not None else model.state_dict())
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})


def resolve_assets(config: PreTrainedConfig, directory: str | os.PathLike) -> PreTrainedConfig:
    """Point the fields ``save_modality`` rewrote at the asset folders under ``directory``."""
    for field, relative in (getattr(config, ASSETS_KEY, None) or {}).items():
        setattr(config, field, str(Path(directory) / relative))
    return config


_patch_lock = threading.RLock()
_patch_depth = 0
_original_from_pretrained = PreTrainedModel.__dict__["from_pretrained"]


def _from_pretrained_or_asset(cls, pretrained_model_name_or_path, *args, **kwargs):
    path = pretrained_model_name_or_path
    if path is None or not (Path(path) / ASSET_MARKER).is_file():
        return _original_from_pretrained.__func__(cls, path, *args, **kwargs)
    # an asset directory: build from its config; the caller loads the trained weights after
    config = kwargs.get("config")
    if not isinstance(config, PreTrainedConfig):
        config = cls.config_class.from_pretrained(path)
    options = {k: kwargs[k] for k in ("dtype", "attn_implementation") if k in kwargs}
    model = cls._from_config(config, **options)
    model.name_or_path = str(path)
    return model


@contextlib.contextmanager
def _nested_loads_from_assets():
    """While active, ``SomeModel.from_pretrained(asset_dir)`` builds from config only."""
    global _patch_depth
    with _patch_lock:
        if _patch_depth == 0:
            PreTrainedModel.from_pretrained = classmethod(_from_pretrained_or_asset)
        _patch_depth += 1
        try:
            yield
        finally:
            _patch_depth -= 1
            if _patch_depth == 0:
                PreTrainedModel.from_pretrained = _original_from_pretrained


def load_modality(
    cls: type[BaseModality],
    directory: str | os.PathLike,
    *,
    config: PreTrainedConfig | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
) -> BaseModality:
    """Build the modality saved in ``directory`` and load its weights strictly."""
    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} holds no {WEIGHTS_NAME}: not a saved mmgen modality")
    if config is None:
        config = cls.config_class.from_pretrained(directory)
    resolve_assets(config, directory)
    with _nested_loads_from_assets():
        model = cls(config)
    load_model(model, weights, strict=True)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if isinstance(dtype, torch.dtype):
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    model.name_or_path = str(directory)
    return model.eval()
