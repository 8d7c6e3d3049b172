"""Training stages: which of LLM, encoders and projectors train; LoRA adapters via ``peft`` on
the LLM (a ``PeftModel``) and on encoders (``mmgen.modality.adapters``).

The stages of the modality walkthroughs, by name:

    alignment    only the projectors train (LLM and encoders frozen)
    end_to_end   LLM and projectors train; encoders frozen
    lora         the LoRA adapters (the LLM's, and the encoders' when they have some) and the
                 projectors train (call ``add_lora`` / ``add_encoder_lora`` first)
    full         everything trains
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from mmgen.errors import ConfigError
from mmgen.modality import adapters

if TYPE_CHECKING:
    from mmgen.model.modeling import MultimodalModel

# the parts of a model, each with its own learning rate in training (``optimizer.lr``); LoRA
# adapters are the ``lora`` part wherever they sit
PARTS = ("llm", "encoders", "projectors", "lora")

STAGES: dict[str, dict[str, Any]] = {
    "alignment": {"llm": False, "encoders": False, "projectors": True},
    "end_to_end": {"llm": True, "encoders": False, "projectors": True},
    "lora": {"llm": "lora", "encoders": "lora", "projectors": True},
    "full": {"llm": True, "encoders": True, "projectors": True},
}


def is_lora(module: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # peft is optional: no peft, no adapters
        return False
    return isinstance(module, PeftModel)


_lora_parameter = adapters.is_lora_parameter


def _per_modality(model: MultimodalModel, value: Any, what: str) -> dict[str, bool]:
    """``True``/``False`` for all, an iterable of names that train, or a name -> bool mapping."""
    names = list(model.modalities)
    if isinstance(value, bool):
        return dict.fromkeys(names, value)
    if isinstance(value, Mapping):
        chosen = {str(k): bool(v) for k, v in value.items()}
    elif isinstance(value, Iterable) and not isinstance(value, str):
        chosen = dict.fromkeys(names, False) | {str(k): True for k in value}
    else:
        raise ConfigError(
            f"{what} must be a bool, a list of modality names or a mapping: {value!r}"
        )
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ConfigError(f"{what} names unknown modalities {unknown}; the modalities are {names}")
    return chosen


def set_trainable(
    model: MultimodalModel,
    stage: str | None = None,
    *,
    llm: bool | str | None = None,
    encoders: bool | Iterable[str] | Mapping[str, bool] | None = None,
    projectors: bool | Iterable[str] | Mapping[str, bool] | None = None,
) -> dict[str, int]:
    """Set ``requires_grad`` by part and return the trainable parameter count per part.

    ``stage`` picks a preset from ``STAGES``; explicit arguments override it, ``None`` leaves a
    part as it is (the ``lora`` preset leaves an LLM without adapters frozen when encoders have
    some). ``llm``: ``True`` (all LLM weights, adapters included), ``False``, or
    ``"lora"`` (only the LoRA adapters). ``encoders`` / ``projectors``: a bool for every
    modality, the names of those that train, or name -> bool; ``encoders="lora"``: only the
    adapters of the encoders that have some. Encoders and projectors are switched through each
    modality's ``(un)freeze_modality_embedder`` / ``(un)freeze_projection``.
    """
    chosen: dict[str, Any] = {}
    if stage is not None:
        if stage not in STAGES:
            raise ConfigError(f"unknown training stage {stage!r}; choose one of {sorted(STAGES)}")
        chosen.update(STAGES[stage])
    for key, value in (("llm", llm), ("encoders", encoders), ("projectors", projectors)):
        if value is not None:
            chosen[key] = value

    if stage == "lora" and llm is None and not is_lora(model.language_model):
        if not any(adapters.has_lora(m) for m in model.modalities.values()):
            raise ConfigError(
                "the lora stage needs LoRA adapters: call model.add_lora(...) (or"
                " add_encoder_lora) first"
            )
        chosen["llm"] = False  # adapters on the encoders only: the LLM stays as it is
    if "llm" in chosen:
        mode = chosen["llm"]
        if mode == "lora" and not is_lora(model.language_model):
            raise ConfigError("llm='lora' needs LoRA adapters: call model.add_lora(...) first")
        if mode not in (True, False, "lora"):
            raise ConfigError(f"llm must be True, False or 'lora', got {mode!r}")
        for name, parameter in model.language_model.named_parameters():
            parameter.requires_grad = mode is True or (mode == "lora" and _lora_parameter(name))
    if chosen.get("encoders") == "lora":
        for modality in model.modalities.values():
            modality.freeze_modality_embedder()
            projector = {id(p) for p in modality._projector_parameters()}
            for name, parameter in modality.named_parameters():
                if _lora_parameter(name) and id(parameter) not in projector:
                    parameter.requires_grad = True
    elif "encoders" in chosen:
        for name, train in _per_modality(model, chosen["encoders"], "encoders").items():
            modality = model.modalities[name]
            (modality.unfreeze_modality_embedder if train else modality.freeze_modality_embedder)()
    if "projectors" in chosen:
        for name, train in _per_modality(model, chosen["projectors"], "projectors").items():
            modality = model.modalities[name]
            (modality.unfreeze_projection if train else modality.freeze_projection)()
    return trainable_counts(model)


def parameter_parts(model: MultimodalModel) -> dict[str, str]:
    """The part (``PARTS``) of every parameter, by name: ``lora`` for the adapters (on the LLM
    or an encoder), ``llm``, ``projectors`` (each modality's ``_projector_parameters``), and
    ``encoders`` for the rest of each modality."""
    projectors = {
        id(p) for modality in model.modalities.values() for p in modality._projector_parameters()
    }
    parts = {}
    for name, parameter in model.named_parameters():
        if _lora_parameter(name):
            parts[name] = "lora"
        elif name.startswith("language_model."):
            parts[name] = "llm"
        else:
            parts[name] = "projectors" if id(parameter) in projectors else "encoders"
    return parts


def trainable_counts(model: MultimodalModel) -> dict[str, int]:
    """Trainable parameters per part: ``llm`` and ``modality:<name>``."""
    counts = {"llm": sum(p.numel() for p in model.language_model.parameters() if p.requires_grad)}
    for name, modality in model.modalities.items():
        counts[f"modality:{name}"] = sum(
            p.numel() for p in modality.parameters() if p.requires_grad
        )
    return counts


def add_lora(language_model: nn.Module, config: Any = None, **options: Any) -> nn.Module:
    """``peft.get_peft_model`` on the LLM with a ``LoraConfig`` (given, or built from
    ``options``, e.g. ``r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]``). peft freezes
    the LLM's own weights; the adapters train.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - peft is in the pinned environment
        raise ConfigError("LoRA needs peft: pip install peft") from exc
    if is_lora(language_model):
        raise ConfigError("the LLM already has LoRA adapters")
    if config is None:
        config = LoraConfig(task_type="CAUSAL_LM", **options)
    elif options:
        raise ConfigError("give a LoraConfig or LoRA options, not both")
    return get_peft_model(language_model, config)


def merge_lora(language_model: nn.Module) -> nn.Module:
    if not is_lora(language_model):
        raise ConfigError("the LLM has no LoRA adapters to merge")
    return language_model.merge_and_unload()


def add_encoder_lora(
    model: MultimodalModel,
    target_modules: str | list[str] | Mapping[str, str | list[str]] = "all-linear",
    **options: Any,
) -> dict[str, list[str]]:
    """LoRA adapters on the encoders (``mmgen.modality.adapters.add_lora``): the modules
    ``target_modules`` picks in every modality's encoder, or, as a mapping, in the encoders of
    the modalities it names (``{"image": ["q_proj", "v_proj"]}``). ``options``: peft's
    ``LoraConfig`` (``r``, ``lora_alpha``, ``lora_dropout``). Returns the adapted modules."""
    if isinstance(target_modules, Mapping):
        chosen = {str(k): v for k, v in target_modules.items()}
    else:
        chosen = dict.fromkeys(model.modalities, target_modules)
    unknown = sorted(set(chosen) - set(model.modalities))
    if unknown:
        raise ConfigError(
            f"encoder LoRA names unknown modalities {unknown}; the modalities are"
            f" {list(model.modalities)}"
        )
    return {
        name: adapters.add_lora(model.modalities[name], targets, **options)
        for name, targets in chosen.items()
    }


def has_lora(model: MultimodalModel) -> bool:
    """Whether the model has LoRA adapters: on its LLM or on any encoder."""
    return is_lora(model.language_model) or any(
        adapters.has_lora(m) for m in model.modalities.values()
    )
