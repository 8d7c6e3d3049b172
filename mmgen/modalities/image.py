"""Built-in image modality: a CLIP or SigLIP vision tower and a projector (LLaVA's recipe).

config = ImageConfig(hidden_size=4096, encoder="openai/clip-vit-large-patch14-336",
                     feature_layer=-2)            # LLaVA-1.5: penultimate layer, CLS dropped
modality = ImageModality(config)
processor = ImageProcessor(config)                # PIL image -> pixel_values, num_embeddings
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoImageProcessor, PreTrainedConfig

from mmgen.constants import MODALITY_VALUE_KEY, NUM_EMBEDDINGS_KEY
from mmgen.errors import ConfigError
from mmgen.modalities._hf import (
    EncoderConfig,
    EncoderModality,
    encoder_config,
    load_encoder,
    load_preprocessor,
)
from mmgen.modality.base import BaseModalityProcessor
from mmgen.modality.registry import AutoModality


class ImageConfig(EncoderConfig):
    """``encoder``: a CLIP / SigLIP checkpoint (full or vision-only); ``encoder_config``: a
    vision config. Besides ``EncoderConfig``'s arguments:

    image_processor: name, path or ``to_dict()`` of the image processor (default: ``encoder``).
    feature_layer: hidden-state index to project (``None``: the tower's last_hidden_state;
        LLaVA uses ``-2``).
    drop_cls: drop the CLS row (``None``: drop it when the tower has one).
    """

    default_modality_type = "image"

    def __init__(
        self,
        hidden_size: int = 4096,
        max_batch_size: int = 32,
        encoder: str | None = None,
        encoder_config: dict[str, Any] | None = None,
        image_processor: str | dict[str, Any] | None = None,
        feature_layer: int | None = None,
        drop_cls: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self.image_processor = image_processor
        self.feature_layer = feature_layer
        self.drop_cls = drop_cls
        super().__init__(hidden_size, max_batch_size, encoder, encoder_config, **kwargs)

    def vision_config(self) -> PreTrainedConfig:
        return encoder_config("image modality", self.encoder, self.encoder_config, "vision_config")


def _has_cls(vision_config: PreTrainedConfig) -> bool:
    # CLIP-style towers prepend a class token; SigLIP's do not
    return vision_config.model_type.startswith(("clip", "chinese_clip", "altclip"))


def num_image_embeddings(config: ImageConfig, vision_config: PreTrainedConfig) -> int:
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    has_cls = _has_cls(vision_config)
    drop = has_cls if config.drop_cls is None else config.drop_cls
    return patches + (1 if has_cls and not drop else 0)


class ImageProcessor(BaseModalityProcessor):
    """A PIL image (or array) -> ``pixel_values`` ``(3, H, W)`` and its number of embeddings."""

    def __init__(self, config: ImageConfig) -> None:
        super().__init__(config)
        vision_config = config.vision_config()
        self.image_processor = load_preprocessor(
            "image modality", config.image_processor, config.encoder, AutoImageProcessor
        )
        self.image_size = vision_config.image_size
        self.num_embeddings = num_image_embeddings(config, vision_config)

    def process(self, modality: dict[str, Any]) -> dict[str, Any]:
        processed = dict(modality)
        pixels = self.image_processor(images=modality[MODALITY_VALUE_KEY], return_tensors="pt")
        pixels = pixels["pixel_values"][0]
        if tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
            raise ConfigError(
                f"the image processor made {tuple(pixels.shape[-2:])} pixels, but the vision "
                f"tower takes {self.image_size}x{self.image_size}: check its size/crop_size"
            )
        processed[MODALITY_VALUE_KEY] = pixels
        processed[NUM_EMBEDDINGS_KEY] = self.num_embeddings
        return processed


@AutoModality.register("mmgen_image")
class ImageModality(EncoderModality):
    """Vision tower -> chosen hidden state (CLS dropped) -> projector: ``(B, N, hidden_size)``."""

    config_class = ImageConfig
    preprocessor_class = ImageProcessor

    def __init__(self, config: ImageConfig) -> None:
        super().__init__(config)
        self.encoder = load_encoder(
            "image modality", config.encoder, config.encoder_config, "vision_config"
        )
        vision_config = self.encoder.config
        has_cls = _has_cls(vision_config)
        self.drop_cls = has_cls if config.drop_cls is None else bool(config.drop_cls and has_cls)
        self.projector = self.build_projector(vision_config.hidden_size)
        self.post_init()

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        pixel_values = torch.stack(list(inputs)).to(self.encoder.device, self.encoder.dtype)
        layer = self.config.feature_layer
        out = self.encoder(pixel_values=pixel_values, output_hidden_states=layer is not None)
        features = out.last_hidden_state if layer is None else out.hidden_states[layer]
        if self.drop_cls:
            features = features[:, 1:]
        return self.projector(features)
