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
weights are in ``model.safetensors``), then loads ``model.safetensors`` strictly. The loaded
modality keeps its asset files in memory, so saving it again (the next checkpoint of a resumed
run) does not need the folder it was loaded from, which checkpoint rotation may have deleted.
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
    from mmgen.modality.base import BaseModality

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


def _read_assets(source: Path) -> dict[str, bytes]:
    """The non-weight files of ``source`` (configs, processor and tokenizer files), in memory."""
    return {
        entry.name: entry.read_bytes()
        for entry in sorted(source.iterdir())
        if entry.is_file() and not _is_weight_file(entry.name) and entry.name != ASSET_MARKER
    }


def _write_assets(files: dict[str, bytes], target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name, content in files.items():
        (target / name).write_bytes(content)
    note = {"weights": "stored in the parent modality's model.safetensors"}
    (target / ASSET_MARKER).write_text(json.dumps(note, indent=2) + "\n")


def _asset_files(model: BaseModality, value: Any) -> tuple[str, dict[str, bytes]] | None:
    """``(key, files)`` for a config value naming a local pretrained folder, else None.

    The files are kept on the model the first time they are read (and when it is loaded), so
    later saves do not depend on that folder: a modality loaded from a checkpoint is saved whole
    after checkpoint rotation has deleted the folder it was loaded from."""
    if not isinstance(value, str) or not value:
        return None
    kept = model.__dict__.setdefault("_mmgen_asset_files", {})
    key = os.path.abspath(value)
    if key not in kept:
        source = _local_pretrained_dir(value)
        if source is None:
            return None
        kept[key] = _read_assets(source)
    return key, kept[key]


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
) -> PreTrainedConfig:
    """Write ``model`` as described in the module docstring; returns the config as written."""
    directory = Path(save_directory)
    if directory.is_file():
        raise NotADirectoryError(f"cannot save a modality to {directory}: it is a file")
    directory.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    # a folder a config points at twice (encoder and processor) is written once
    written: dict[str, str] = {}
    assets: dict[str, str] = {}
    for field, value in model.config.to_dict().items():
        found = None if field == "_name_or_path" else _asset_files(model, value)
        if found is None:
            continue
        key, files = found
        if key not in written:
            written[key] = f"{ASSETS_DIR}/{field}"
            _write_assets(files, directory / written[key])
        assets[field] = written[key]
        setattr(config, field, written[key])
    setattr(config, ASSETS_KEY, assets)
    config._name_or_path = ""  # where it was loaded from: no path outside the folder
    config.architectures = [type(model).__name__]
    config.save_pretrained(directory)
    tensors = _dedupe_shared(state_dict if state_dict is not None else model.state_dict())
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return config


def resolve_assets(config: PreTrainedConfig, directory: str | os.PathLike) -> PreTrainedConfig:
    """Point the fields ``save_modality`` rewrote at the asset folders under ``directory``."""
    for field, relative in (getattr(config, ASSETS_KEY, None) or {}).items():
        setattr(config, field, os.path.abspath(Path(directory) / relative))
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
    kept = model.__dict__.setdefault("_mmgen_asset_files", {})
    for relative in set((getattr(config, ASSETS_KEY, None) or {}).values()):
        kept[os.path.abspath(directory / relative)] = _read_assets(directory / relative)
    load_model(model, weights, strict=True)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if isinstance(dtype, torch.dtype):
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    model.name_or_path = str(directory)
    return model.eval()
