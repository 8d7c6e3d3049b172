"""What the built-in modalities share: an encoder and a preprocessor from a pretrained name or
path, or from a config dict (random init: tests, and checkpoints converted from other models),
and the config fields and modality methods of "transformers encoder + projector".
"""

from __future__ import annotations

from typing import Any

import transformers
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.utils import logging

from mmgen.errors import ConfigError
from mmgen.modality.base import BaseModality, BaseModalityConfig
from mmgen.nn.projectors import build_projector


def config_from_dict(config: dict[str, Any] | PreTrainedConfig) -> PreTrainedConfig:
    if isinstance(config, PreTrainedConfig):
        return config
    config = dict(config)
    if "model_type" not in config:
        raise ConfigError(f"encoder_config needs its 'model_type': {sorted(config)}")
    return AutoConfig.for_model(config.pop("model_type"), **config)


def encoder_config(name: str, path: str | None, config: Any, part: str | None) -> PreTrainedConfig:
    """The encoder's config: ``part`` (e.g. ``"vision_config"``) of ``path``'s config when it has
    one (a full CLIP checkpoint holds text and vision configs), else the whole config."""
    if path is not None:
        config = AutoConfig.from_pretrained(path)
    elif config is not None:
        config = config_from_dict(config)
    else:
        raise ConfigError(f"{name}: set `encoder` (a pretrained name or path) or `encoder_config`")
    return getattr(config, part, None) or config if part else config


def load_encoder(name: str, path: str | None, config: Any, part: str | None) -> PreTrainedModel:
    """The encoder model for ``encoder_config(...)``: pretrained weights from ``path`` when given
    (a vision tower loads alone from a full CLIP/SigLIP checkpoint), else random init."""
    sub_config = encoder_config(name, path, config, part)
    model_cls = AutoModel._model_mapping[type(sub_config)]
    if path is None:
        return model_cls._from_config(sub_config)
    if part is None or getattr(AutoConfig.from_pretrained(path), part, None) is None:
        return model_cls.from_pretrained(path)
    # a tower out of a dual checkpoint: the other tower's weights are expected leftovers, and
    # transformers would print each of them as "UNEXPECTED"
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return model_cls.from_pretrained(path)
    finally:
        logging.set_verbosity(verbosity)


def load_preprocessor(name: str, source: Any, fallback: str | None, auto_cls: Any):
    """A transformers image processor / feature extractor from a name or path (``source``, else
    the encoder's ``fallback``), or from the dict ``to_dict()`` gave."""
    source = source if source is not None else fallback
    if isinstance(source, str):
        return auto_cls.from_pretrained(source)
    if isinstance(source, dict):
        kind = source.get("image_processor_type") or source.get("feature_extractor_type")
        processor_cls = getattr(transformers, kind or "", None)
        if processor_cls is None:
            raise ConfigError(f"{name}: unknown processor type {kind!r} in the processor dict")
        options = {k: v for k, v in source.items() if not k.endswith("_type")}
        return processor_cls(**options)
    raise ConfigError(f"{name}: set the processor (a name, path or dict) or `encoder`")


class EncoderConfig(BaseModalityConfig):
    """Fields of a built-in modality: a transformers encoder and a projector.

    Args:
        hidden_size: the LLM's hidden size.
        max_batch_size: most items per encoder call.
        encoder: name or path of the pretrained encoder checkpoint.
        encoder_config: the encoder's config as a dict (with ``model_type``), for a randomly
            initialised encoder when ``encoder`` is not given.
        projector, projector_layers, projector_activation: see ``mmgen.nn.projectors``.
    """

    default_modality_type = "unknown"  # set by each subclass

    def __init__(
        self,
        hidden_size: int = 4096,
        max_batch_size: int = 32,
        encoder: str | None = None,
        encoder_config: dict[str, Any] | PreTrainedConfig | None = None,
        projector: str = "mlp",
        projector_layers: int = 2,
        projector_activation: str = "gelu",
        **kwargs: Any,
    ) -> None:
        modality_type = kwargs.pop("modality_type", None) or self.default_modality_type
        if isinstance(encoder_config, PreTrainedConfig):
            encoder_config = encoder_config.to_dict()
        self.encoder = encoder
        self.encoder_config = encoder_config
        self.projector = projector
        self.projector_layers = projector_layers
        self.projector_activation = projector_activation
        super().__init__(
            hidden_size=hidden_size,
            max_batch_size=max_batch_size,
            modality_type=modality_type,
            **kwargs,
        )


class EncoderModality(BaseModality):
    """A built-in modality: ``self.encoder`` (the embedder) and ``self.projector``."""

    def build_projector(self, in_features: int) -> nn.Module:
        config = self.config
        return build_projector(
            config.projector,
            in_features,
            config.hidden_size,
            layers=config.projector_layers,
            activation=config.projector_activation,
        )

    def freeze_modality_embedder(self) -> None:
        self.encoder.requires_grad_(False)

    def unfreeze_modality_embedder(self) -> None:
        self.encoder.requires_grad_(True)
