"""LoRA adapters on a modality's encoder (``peft``), and the code every LoRA adapter in mmgen
shares: the base weights under their own names, and peft's adapter files.

    add_lora(modality, "all-linear", r=8, lora_alpha=16)   # or ["q_proj", "v_proj"], a regex
    merge_lora(modality)                                   # folded into the encoder's weights

peft injects its LoRA layers in place (``inject_adapter_in_model``), so the modality's own
``forward`` runs unchanged. Only the encoder side gets adapters: the modules ``target_modules``
names among those holding parameters outside the projector (``_projector_parameters``). A saved
modality keeps its base weights as they would be without adapters (``model.safetensors``,
``assets/``) and the adapters in ``adapter/``: ``adapter_config.json`` and
``adapter_model.safetensors``, the files peft writes for the LLM's adapters (``llm_adapter/``).
Nothing here reads a pickle.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mmgen.errors import CheckpointError, ConfigError

ADAPTER_DIR = "adapter"  # modalities/<name>/adapter: the encoder's adapters
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def is_lora_parameter(name: str) -> bool:
    return "lora_" in name


def base_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the adapters, the adapted layers' weights under their own names (peft
    stores them as ``<layer>.base_layer.weight``): what the module holds without adapters."""
    return {k.replace(".base_layer.", "."): v for k, v in state.items() if not is_lora_parameter(k)}


def has_lora(module: nn.Module) -> bool:
    """Whether LoRA layers were injected into ``module`` (a modality)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # peft is optional: no peft, no adapters
        return False
    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


def encoder_modules(modality: nn.Module, target_modules: str | list[str]) -> list[str]:
    """The names of the encoder's modules ``target_modules`` picks: ``"all-linear"`` (every
    ``nn.Linear``), module names (a name or the end of one: ``q_proj`` is every attention's), or
    a regular expression matching whole names. Projector modules are never picked."""
    projector = {id(p) for p in modality._projector_parameters()}
    picked = []
    for name, module in modality.named_modules():
        own = list(module.parameters(recurse=False))
        if not name or not own or any(id(p) in projector for p in own):
            continue
        if target_modules == "all-linear":
            chosen = isinstance(module, nn.Linear)
        elif isinstance(target_modules, str):
            chosen = re.fullmatch(target_modules, name) is not None
        else:
            chosen = any(name == t or name.endswith(f".{t}") for t in target_modules)
        if chosen:
            picked.append(name)
    return picked


def add_lora(modality: nn.Module, target_modules: str | list[str] = "all-linear", **options: Any):
    """Inject LoRA layers (``peft.LoraConfig`` ``options``: ``r``, ``lora_alpha``,
    ``lora_dropout``, ...) into the encoder modules ``target_modules`` picks; returns their
    names. The adapters require gradients; every other parameter keeps its setting."""
    try:
        from peft import LoraConfig
    except ImportError as exc:  # pragma: no cover - peft is in the pinned environment
        raise ConfigError("LoRA needs peft: pip install peft") from exc
    kind = type(modality).__name__
    if has_lora(modality):
        raise ConfigError(f"{kind} already has LoRA adapters")
    names = encoder_modules(modality, target_modules)
    if not names:
        wanted = f"target_modules {target_modules!r}"
        raise ConfigError(f"no module of {kind}'s encoder matches {wanted}")
    # the exact names: a suffix such as `fc` must not reach a projector layer of the same name
    exact = "^(?:" + "|".join(re.escape(name) for name in names) + ")$"
    try:
        _inject(modality, LoraConfig(target_modules=exact, **options))
    except (ValueError, TypeError) as exc:  # a layer type peft has no LoRA for, a bad option
        first = str(exc).strip().splitlines()[0]
        where = f"{kind}'s encoder ({', '.join(names[:3])}, ...)"
        raise ConfigError(f"LoRA on {where}: {first}") from None
    return names


def _inject(modality: nn.Module, config: Any) -> None:
    from peft import inject_adapter_in_model

    # peft freezes every parameter but the adapters: what trains is the caller's choice
    trains = {id(p): p.requires_grad for p in modality.parameters()}
    inject_adapter_in_model(config, modality)
    for parameter in modality.parameters():
        parameter.requires_grad = trains.get(id(parameter), True)


def merge_lora(modality: nn.Module) -> None:
    """Fold the adapters into the weights they adapt and put the plain layers back."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not has_lora(modality):
        raise ConfigError(f"{type(modality).__name__} has no LoRA adapters to merge")
    for name, module in list(modality.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(modality.get_submodule(parent), child, module.get_base_layer())
    modality.__dict__.pop("peft_config", None)


def save_adapter(modality: nn.Module, folder: Path, state: dict[str, torch.Tensor]) -> None:
    """``modality``'s adapters (taken from its full ``state``) in peft's files under ``folder``."""
    from peft import get_peft_model_state_dict

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    modality.peft_config["default"].save_pretrained(str(folder))
    weights = get_peft_model_state_dict(modality, state_dict=state)
    tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})


def load_adapter(modality: nn.Module, folder: Path) -> None:
    """Inject the adapters saved in ``folder`` into ``modality`` and load their weights; every
    adapter weight must be there, and no other."""
    from peft import LoraConfig, set_peft_model_state_dict

    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file() or not (folder / ADAPTER_CONFIG).is_file():
        raise CheckpointError(
            f"{folder}: no {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} (mmgen loads no pickled weights)"
        )
    _inject(modality, LoraConfig.from_pretrained(str(folder)))
    result = set_peft_model_state_dict(modality, load_file(weights))
    missing = [k for k in result.missing_keys if is_lora_parameter(k)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{folder}: the adapter weights do not fit {type(modality).__name__}: missing"
            f" {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
        )
