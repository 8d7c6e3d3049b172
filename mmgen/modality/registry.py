"""Registries: ``AutoModalityLoader`` (loaders by name) and ``AutoModality`` (modalities by name,
also registered with transformers' ``AutoConfig`` / ``AutoModel``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from transformers import AutoConfig, AutoModel

from mmgen.errors import did_you_mean
from mmgen.modality.base import BaseModality, BaseModalityConfig, BaseModalityLoader

T = TypeVar("T")


def _same_class(a: type, b: type) -> bool:
    # a module imported twice (tests, notebooks) re-creates its classes: allow re-registration
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _builtin(cls: type) -> bool:
    """mmgen's own classes (``raw-audio``, the modalities in ``mmgen/modalities/``)."""
    return cls.__module__ == "mmgen" or cls.__module__.startswith("mmgen.")


def _takes(registry: dict[str, type], name: str, new: type, kind: str) -> bool:
    """Whether ``new`` gets ``name``: a free name or its own, or a built-in's, which user code
    takes over whatever the import order (a project that generates its own ``audio``, the
    MultiMeditron walkthrough's ``raw-image``); a built-in never takes a user class's name, and
    two user classes cannot share one."""
    existing = registry.get(name)
    if existing is None or _same_class(existing, new) or (_builtin(existing) and not _builtin(new)):
        return True
    if _builtin(new):
        return False
    raise ValueError(f"{kind} name {name!r} is already registered by {existing.__qualname__}")


def _unknown(kind: str, name: str, known: dict[str, Any]) -> KeyError:
    hint = did_you_mean(name, known)
    return KeyError(f"unknown {kind} {name!r}{hint} (registered: {', '.join(sorted(known))})")


def is_transformers_model_type(name: str) -> bool:
    """True for transformers' own model types (``clip``, ``whisper``, ``llama``, ...): the Auto
    classes would map them to a modality, so loading that model family would break."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return name in CONFIG_MAPPING_NAMES


class AutoModalityLoader:
    """``@AutoModalityLoader.register("raw-image")`` on a loader class; ``from_name`` builds one."""

    _registry: ClassVar[dict[str, type[BaseModalityLoader]]] = {}

    def __init__(self) -> None:
        raise TypeError("use AutoModalityLoader.from_name(name)")

    @classmethod
    def register(cls, name: str):
        def decorator(loader_cls: type[T]) -> type[T]:
            if not (isinstance(loader_cls, type) and issubclass(loader_cls, BaseModalityLoader)):
                raise TypeError(f"{loader_cls!r} must subclass BaseModalityLoader")
            if _takes(cls._registry, name, loader_cls, "loader"):
                loader_cls.name = name
                cls._registry[name] = loader_cls
            return loader_cls

        return decorator

    @classmethod
    def from_name(cls, name: str, **kwargs: Any) -> BaseModalityLoader:
        if name not in cls._registry:
            raise _unknown("modality loader", name, cls._registry)
        return cls._registry[name](**kwargs)

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls._registry)


class AutoModality:
    """``@AutoModality.register("name")`` on a ``BaseModality`` subclass.

    Registration sets ``config_class.model_type = name`` and registers the pair with
    transformers' ``AutoConfig`` and ``AutoModel``, so ``AutoModel.from_pretrained`` finds it.
    """

    _registry: ClassVar[dict[str, type[BaseModality]]] = {}

    def __init__(self) -> None:
        raise TypeError("use AutoModality.from_config(config) or .from_pretrained(path)")

    @classmethod
    def register(cls, name: str):
        def decorator(modality_cls: type[T]) -> type[T]:
            if not (isinstance(modality_cls, type) and issubclass(modality_cls, BaseModality)):
                raise TypeError(f"{modality_cls!r} must subclass BaseModality")
            config_cls = modality_cls.config_class
            if config_cls is BaseModalityConfig:
                raise TypeError(
                    f"{modality_cls.__qualname__}.config_class must be its own BaseModalityConfig"
                    " subclass (registration sets its model_type)"
                )
            if modality_cls.preprocessor_class is None:
                raise TypeError(f"{modality_cls.__qualname__} must set preprocessor_class")
            if is_transformers_model_type(name):
                raise ValueError(
                    f"modality name {name!r} is a transformers model type: registering it would"
                    f" replace transformers' own {name!r} config; choose another name"
                )
            if not _takes(cls._registry, name, modality_cls, "modality"):
                return modality_cls  # a project's own modality of this name stays
            config_cls.model_type = name
            cls._registry[name] = modality_cls
            AutoConfig.register(name, config_cls, exist_ok=True)
            AutoModel.register(config_cls, modality_cls, exist_ok=True)
            return modality_cls

        return decorator

    @classmethod
    def get(cls, name: str) -> type[BaseModality]:
        if name not in cls._registry:
            raise _unknown("modality", name, cls._registry)
        return cls._registry[name]

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls._registry)

    @classmethod
    def config_from_dict(cls, config: dict[str, Any], **kwargs: Any) -> BaseModalityConfig:
        if "model_type" not in config:
            raise KeyError("a modality config dict needs its 'model_type' (the registered name)")
        return cls.get(config["model_type"]).config_class.from_dict(config, **kwargs)

    @classmethod
    def from_config(
        cls, config: BaseModalityConfig | dict[str, Any], **kwargs: Any
    ) -> BaseModality:
        if isinstance(config, dict):
            config = cls.config_from_dict(config)
        return cls.get(config.model_type)(config, **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> BaseModality:
        """Load a modality saved with ``save_pretrained``; its class comes from the registered
        ``model_type`` in ``path/config.json``.
        """
        config_file = Path(path) / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path} has no config.json: not a saved modality")
        model_type = json.loads(config_file.read_text()).get("model_type")
        if model_type not in cls._registry:
            raise _unknown("modality", str(model_type), cls._registry)
        return cls._registry[model_type].from_pretrained(path, **kwargs)
