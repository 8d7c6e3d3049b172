"""Saving and loading one modality (``BaseModality.save_pretrained`` / ``from_pretrained``).

A modality builds its encoder inside ``__init__`` from a folder its config names
(``AutoModel.from_pretrained(config.clip_name)`` in MultiMeditron's walkthrough,
``load_encoder(...)`` in generated code). A saved modality must load after that folder is gone,
so the folder travels with it, and the encoder loads from the copy by the modality's own code:

    config.json                 the modality config; the path fields point at ``assets/<field>``
    model.safetensors           every weight not stored in an asset folder (the projector, ...)
                                (a modality's ``weight_source_fields``, e.g. a timm encoder's
                                weights file, are saved as None: the weights are all here)
    assets/<field>/             the non-weight files of the folder the field named (config.json,
                                preprocessor_config.json, tokenizer files), and, when a submodule
                                of the modality was loaded from that folder, its trained weights
                                as model.safetensors in the submodule's own key space
    assets/<field>/mmgen_asset.json   which submodule those weights are (``"module"``)
    adapter/                    LoRA adapters on the encoder, when it has them (peft's files;
                                the weights above are then the base weights, ``adapters.py``)

Loading points the path fields at the asset folders and builds the modality: its own
``__init__`` runs unchanged and finds a loadable checkpoint there (``from_pretrained`` reads it
like any; ``mmgen.nn.encoders.load_encoder`` builds the encoder from its config). Then the trained
weights are loaded: each asset's into its submodule, the rest from ``model.safetensors``, and
every weight must be accounted for; then the adapters are put back. Nothing is patched. A loaded
modality keeps its asset files in memory, so saving it again does not need the folder it was
loaded from (which checkpoint rotation may have deleted).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_model, save_file
from transformers import PreTrainedConfig, PreTrainedModel

from mmgen.constants import ASSET_MARKER, WEIGHTS_NAME
from mmgen.errors import CheckpointError
from mmgen.modality import adapters

if TYPE_CHECKING:
    from mmgen.modality.base import BaseModality

ASSETS_DIR = "assets"
# config attribute listing which fields were rewritten to asset directories
ASSETS_KEY = "mmgen_assets"
# files that hold weights (never copied from a source folder: the trained values are saved)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


# keywords transformers' AutoModel.from_pretrained passes along to every from_pretrained (hub
# download options, meaningless for the local folder a saved modality or model is): accepted
_PLUMBING = {
    "_from_auto",
    "adapter_kwargs",
    "cache_dir",
    "code_revision",
    "force_download",
    "local_files_only",
    "proxies",
    "revision",
    "subfolder",
    "token",
    "trust_remote_code",
}


def check_load_options(method: str, args: tuple, kwargs: dict[str, Any]) -> None:
    """A ``TypeError`` for an argument ``from_pretrained`` does not use (as Python gives for an
    unknown keyword), rather than silently ignoring a misspelt option."""
    if args:
        raise TypeError(f"{method}() takes no positional arguments after the path, got {args!r}")
    unknown = sorted(set(kwargs) - _PLUMBING)
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")
    if kwargs.get("subfolder"):
        raise TypeError(f"{method}(): subfolder= is not supported; pass the folder itself")


def save_modality(
    model: BaseModality,
    save_directory: str | os.PathLike,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> PreTrainedConfig:
    """Write ``model`` as described in the module docstring; returns the config as written."""
    directory = Path(save_directory)
    if directory.is_file():
        raise NotADirectoryError(f"cannot save a modality to {directory}: it is a file")
    model.ensure_post_init()
    directory.mkdir(parents=True, exist_ok=True)
    state = state_dict if state_dict is not None else model.state_dict()
    lora = adapters.has_lora(model)
    if lora:  # the adapters go to adapter/; the rest is saved as without them
        adapters.save_adapter(model, directory / adapters.ADAPTER_DIR, state)
        state = adapters.base_state(state)
    else:  # adapters an earlier save left here would be loaded onto this modality
        shutil.rmtree(directory / adapters.ADAPTER_DIR, ignore_errors=True)
    config = copy.deepcopy(model.config)
    written: dict[str, str] = {}  # a folder named twice (encoder and processor) is written once
    assets: dict[str, str] = {}
    in_assets: list[str] = []  # the submodules whose weights went into an asset folder
    for field in type(model).weight_source_fields:
        setattr(config, field, None)  # the weights are in this save: none is read from there
    for field, value in model.config.to_dict().items():
        if field in type(model).weight_source_fields:
            continue
        found = None if field == "_name_or_path" else _asset_files(model, value)
        if found is None:
            continue
        key, files = found
        if key not in written:
            written[key] = f"{ASSETS_DIR}/{field}"
            module = _loaded_from(model, key)
            weights = None
            if module is not None:
                weights = {n[len(module) + 1 :]: t for n, t in state.items() if _under(n, module)}
                in_assets.append(module)
            _write_assets(directory / written[key], files, module, weights)
        assets[field] = written[key]
        setattr(config, field, written[key])
    setattr(config, ASSETS_KEY, assets)
    config._name_or_path = ""  # where it was loaded from: no path outside the folder
    config.architectures = [type(model).__name__]
    config.save_pretrained(directory)
    rest = {n: t for n, t in state.items() if not any(_under(n, m) for m in in_assets)}
    save_file(_dedupe_shared(rest), str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return config


def load_modality(
    cls: type[BaseModality],
    directory: str | os.PathLike,
    *,
    config: PreTrainedConfig | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
) -> BaseModality:
    """Build the modality saved in ``directory``; every weight it has must come from the save."""
    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} holds no {WEIGHTS_NAME}: not a saved mmgen modality")
    if config is None:
        config = cls.config_class.from_pretrained(directory)
    resolve_assets(config, directory)
    model = cls(config)
    model.ensure_post_init()
    kept = model.__dict__.setdefault("_mmgen_asset_files", {})
    from_assets: list[str] = []
    for relative in sorted(set((getattr(config, ASSETS_KEY, None) or {}).values())):
        folder = directory / relative
        kept[os.path.abspath(folder)] = _read_assets(folder)
        module = _marker(folder).get("module")
        if isinstance(module, str) and (folder / WEIGHTS_NAME).is_file():
            # whatever __init__ loaded there, the trained values are these
            load_model(_submodule(model, module, directory), folder / WEIGHTS_NAME, strict=True)
            from_assets.append(module)
    missing, unexpected = load_model(model, weights, strict=False)
    missing = [n for n in missing if not any(_under(n, m) for m in from_assets)]
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: the saved weights do not fit {cls.__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if (directory / adapters.ADAPTER_DIR).is_dir():  # LoRA adapters on the encoder
        adapters.load_adapter(model, directory / adapters.ADAPTER_DIR)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if isinstance(dtype, torch.dtype):
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    model.name_or_path = str(directory)
    return model.eval()


def resolve_assets(config: PreTrainedConfig, directory: str | os.PathLike) -> PreTrainedConfig:
    """Point the fields ``save_modality`` rewrote at the asset folders under ``directory``."""
    for field, relative in (getattr(config, ASSETS_KEY, None) or {}).items():
        setattr(config, field, os.path.abspath(Path(directory) / relative))
    return config


def _asset_files(model: BaseModality, value: Any) -> tuple[str, dict[str, bytes]] | None:
    """``(key, files)`` for a config value naming a local pretrained folder, else None.

    The files are kept on the model the first time they are read (and when it is loaded), so
    later saves do not depend on that folder."""
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


def _loaded_from(model: BaseModality, key: str) -> str | None:
    """The outermost submodule of ``model`` that transformers loaded from the folder ``key``
    (its ``name_or_path``), as a state-dict prefix; None when none was."""
    for name, module in model.named_modules():  # parents come before their children
        if name and isinstance(module, PreTrainedModel):
            source = getattr(module, "name_or_path", None)
            if isinstance(source, str) and source and os.path.abspath(source) == key:
                return name
    return None


def _local_pretrained_dir(value: str) -> Path | None:
    """``value`` as a local directory holding a config or processor file, else None."""
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


def _write_assets(
    target: Path,
    files: dict[str, bytes],
    module: str | None,
    weights: dict[str, torch.Tensor] | None,
) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name, content in files.items():
        (target / name).write_bytes(content)
    if weights:
        save_file(_dedupe_shared(weights), str(target / WEIGHTS_NAME), metadata={"format": "pt"})
    else:
        module = None
    note = {
        "module": module,  # the modality's submodule these weights belong to
        "weights": f"{WEIGHTS_NAME} here" if module else "in the modality's model.safetensors",
    }
    (target / ASSET_MARKER).write_text(json.dumps(note, indent=2) + "\n")


def _submodule(model: torch.nn.Module, name: str, directory: Path) -> torch.nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise CheckpointError(
            f"{directory}: an asset folder holds weights of {name!r}, which"
            f" {type(model).__name__} does not have"
        ) from None


def _marker(folder: Path) -> dict[str, Any]:
    try:
        note = json.loads((folder / ASSET_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def _under(name: str, prefix: str) -> bool:
    return name.startswith(prefix + ".")


def _is_weight_file(name: str) -> bool:
    return name.endswith(_WEIGHT_SUFFIXES) or name in _WEIGHT_INDEXES


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
