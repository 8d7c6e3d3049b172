"""Saving and loading a whole ``MultimodalModel``.

A saved model is a folder of standard parts, each loadable alone:

    config.json                  MultimodalConfig (LLM config, modality configs, placeholders)
    llm/                         the LLM (transformers' save_pretrained: AutoModelForCausalLM)
    llm_adapter/                 the LoRA adapters, when the LLM has them (peft's format)
    modalities/<name>/           each modality (BaseModality.save_pretrained: config, weights and
                                 the encoder/processor files its config points at; adapter/:
                                 its encoder's LoRA adapters, in peft's format like llm_adapter/)
    tokenizer files              when a tokenizer is given to save_pretrained
    mmgen_processor.json         the data options (max_length, truncation, chat template) when a
                                 processor is given: ``build_processor`` starts from them

``config.json`` records the module defining each modality's class (``modality_code``): loading
imports it first (a project's generated package, from the folder it was trained from when it is
not installed), so a saved model needs no manual import; when it cannot be found the error says
what to install.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedConfig

from mmgen.errors import CheckpointError, ConfigError
from mmgen.modality import adapters
from mmgen.model.trainable import is_lora

if TYPE_CHECKING:
    from mmgen.model.modeling import MultimodalModel

LLM_DIR = "llm"
ADAPTER_DIR = "llm_adapter"
MODALITIES_DIR = "modalities"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PROCESSOR_FILE = "mmgen_processor.json"
# MultimodalProcessor options a saved model keeps (placeholders are in config.json)
PROCESSOR_OPTIONS = ("max_length", "truncation", "chat_template")


def _part(state_dict: dict[str, torch.Tensor] | None, prefix: str):
    if state_dict is None:
        return None
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _base_state_dict(peft_model) -> dict[str, torch.Tensor]:
    # the LLM's own weights under their usual names, as an encoder's (peft renames wrapped
    # layers' weights to `<layer>.base_layer.weight` and adds `lora_*` tensors beside them)
    return adapters.base_state(peft_model.get_base_model().state_dict())


def save(
    model: MultimodalModel,
    save_directory: str | os.PathLike,
    *,
    tokenizer: Any = None,
    processor: Any = None,
    state_dict: dict[str, torch.Tensor] | None = None,
    **kwargs: Any,
) -> None:
    directory = Path(save_directory)
    if directory.is_file():
        raise NotADirectoryError(f"cannot save a model to {directory}: it is a file")
    directory.mkdir(parents=True, exist_ok=True)
    llm = model.language_model
    if is_lora(llm):
        if state_dict is not None:
            raise NotImplementedError("save_pretrained(state_dict=...) with LoRA adapters")
        llm.get_base_model().save_pretrained(
            directory / LLM_DIR, state_dict=_base_state_dict(llm), **kwargs
        )
        llm.save_pretrained(directory / ADAPTER_DIR)
    else:
        llm.save_pretrained(
            directory / LLM_DIR, state_dict=_part(state_dict, "language_model."), **kwargs
        )
        # adapters an earlier save left here would be loaded onto this LLM
        shutil.rmtree(directory / ADAPTER_DIR, ignore_errors=True)
    saved = {}  # each modality's config as written: its path fields point into the folder
    for name, modality in model.modalities.items():
        written = modality.save_pretrained(
            directory / MODALITIES_DIR / name, state_dict=_part(state_dict, f"modalities.{name}.")
        )
        saved[name] = written if isinstance(written, PreTrainedConfig) else modality.config
    # a copy: the live config keeps the names the running model was built from
    config = copy.copy(model.config)
    config.llm = None  # the weights are in llm/, not at the original name
    config.text_config = copy.copy(config.text_config)
    config.text_config._name_or_path = ""  # where it was loaded from: no path outside the folder
    config.modalities = saved
    config.modality_code = {name: _code_of(m) for name, m in model.modalities.items()}
    if tokenizer is not None:
        config.tokenizer = None  # saved beside; loading points at this folder
    config.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    if processor is not None:
        options = processor.to_dict()
        kept = {key: options[key] for key in PROCESSOR_OPTIONS}
        (directory / PROCESSOR_FILE).write_text(json.dumps(kept, indent=2) + "\n")


def _code_of(modality: torch.nn.Module) -> dict[str, str | None]:
    """Where ``modality``'s class comes from: its module, and the folder holding its top-level
    package (None for mmgen's own, which needs no path)."""
    module = type(modality).__module__
    top = sys.modules.get(module.split(".")[0])
    root = None
    if top is not None and top.__name__ != "mmgen" and getattr(top, "__file__", None):
        root = str(Path(top.__file__).resolve().parent.parent)
    return {"module": module, "root": root}


def import_modality_code(directory: Path) -> None:
    """Import the modules ``directory/config.json`` says define its modalities (registering
    them), before the config is read. One that cannot be imported is a ``ConfigError`` saying
    what to install."""
    try:
        recorded = json.loads((directory / "config.json").read_text()).get("modality_code") or {}
    except (OSError, ValueError):
        return  # from_pretrained reports a missing or broken config.json
    for name, entry in recorded.items():
        module, root = entry.get("module"), entry.get("root")
        if not module or module in sys.modules:
            continue
        try:
            importlib.import_module(module)
            continue
        except ModuleNotFoundError as exc:
            if not module.startswith(str(exc.name)):  # the module exists; one it imports does not
                raise ConfigError(
                    f"{directory}: modality {name!r}: importing {module} failed: {exc}"
                ) from None
        if root and Path(root, module.split(".")[0]).is_dir():
            sys.path.append(root)  # the project folder the model was trained from
            importlib.import_module(module)
            continue
        package = module.split(".")[0]
        raise ConfigError(
            f"{directory}: modality {name!r} is defined in {module}, which cannot be imported:"
            f" install the project that generated it (`pip install -e <project>`, the folder"
            f" holding the {package!r} package) or put that folder on PYTHONPATH"
        )


def processor_options(directory: Path) -> dict[str, Any]:
    """The data options a model was saved with (``{}`` when none were)."""
    path = directory / PROCESSOR_FILE
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    return {key: saved[key] for key in PROCESSOR_OPTIONS if key in saved}


def load(
    cls: type[MultimodalModel],
    directory: str | os.PathLike,
    *,
    config: Any = None,
    dtype: torch.dtype | str | None = None,
    attn_implementation: str | None = None,
    device_map: Any = None,
    is_trainable: bool = True,
    **options: Any,
) -> MultimodalModel:
    from mmgen.modality.registry import AutoModality
    from mmgen.modality.saving import check_load_options

    check_load_options("MultimodalModel.from_pretrained", (), options)
    from mmgen.model.config import MultimodalConfig

    directory = Path(directory)
    if not (directory / LLM_DIR).is_dir():
        raise FileNotFoundError(f"{directory} has no {LLM_DIR}/: not a saved MultimodalModel")
    if not isinstance(config, MultimodalConfig):
        import_modality_code(directory)
        config = MultimodalConfig.from_pretrained(directory)
    options: dict[str, Any] = {}
    if dtype is not None:
        options["dtype"] = dtype
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    if device_map is not None:
        options["device_map"] = device_map
    # safetensors only: a pickled weight file (pytorch_model.bin) placed in a saved model must
    # not be read, and mmgen never writes one
    llm = AutoModelForCausalLM.from_pretrained(directory / LLM_DIR, use_safetensors=True, **options)
    if (directory / ADAPTER_DIR).is_dir():
        from peft import PeftModel

        if not (directory / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file():
            raise CheckpointError(
                f"{directory / ADAPTER_DIR}: no {ADAPTER_WEIGHTS} (mmgen loads no pickled weights)"
            )

        llm = PeftModel.from_pretrained(llm, directory / ADAPTER_DIR, is_trainable=is_trainable)
    modalities = {}
    for name, modality_config in config.modalities.items():
        path = directory / MODALITIES_DIR / name
        modality_cls = AutoModality.get(modality_config.model_type)
        modalities[name] = modality_cls.from_pretrained(
            path, dtype=dtype, device_map=device_map if isinstance(device_map, str) else None
        )
    model = cls(config, language_model=llm, modalities=modalities)
    model.name_or_path = str(directory)
    model.processor_options = processor_options(directory)
    if (directory / "tokenizer_config.json").is_file():
        model.config.tokenizer = str(directory)
    return model.eval()


def load_tokenizer(model: MultimodalModel):
    source = model.config.tokenizer or model.config.llm
    if source is None:
        raise ConfigError(
            "no tokenizer: pass one, or set MultimodalConfig.tokenizer (or llm) to a name or path"
        )
    return AutoTokenizer.from_pretrained(source)
