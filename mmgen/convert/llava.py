"""A transformers ``LlavaForConditionalGeneration`` as a ``MultimodalModel``: its CLIP vision tower
and projector become the built-in image modality (``mmgen/modalities/image``, generated from
``specs/image.yaml``), its language model and head the LLM.

    mm = from_llava(llava, "converted/vision", image_processor=llava_processor.image_processor)

The vision tower and image processor are written to ``folder`` (the image modality loads its
encoder and processor by path, like any checkpoint); LLaVA's image token becomes the modality's
placeholder id; the weights are copied, so both models give the same logits on the same inputs
(tests/test_llava_equivalence.py checks this). Saving the result copies ``folder`` into the
saved model, so the folder is not needed afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, CLIPVisionModel

from mmgen.modalities.image import ImageConfig, ImageModality
from mmgen.model import MultimodalModel


def from_llava(
    llava: Any,
    folder: str | Path,
    *,
    image_processor: Any,
    name: str = "image",
    max_batch_size: int = 32,
) -> MultimodalModel:
    """Build a ``MultimodalModel`` holding ``llava``'s weights (copied); ``image_processor`` is
    LLaVA's image processor, saved with the vision tower in ``folder``."""
    config = llava.config
    vision_type = getattr(config.vision_config, "model_type", None)
    if vision_type != "clip_vision_model":
        raise NotImplementedError(f"LLaVA with a {vision_type} vision tower (CLIP only)")
    if not isinstance(config.vision_feature_layer, int):
        raise NotImplementedError("LLaVA with several vision_feature_layer values")
    if config.vision_feature_select_strategy != "default":  # the image modality drops CLS
        raise NotImplementedError("LLaVA with vision_feature_select_strategy='full'")
    if not config.multimodal_projector_bias:
        raise NotImplementedError("LLaVA projectors without bias")
    dtype = llava.dtype
    folder = str(folder)
    tower = CLIPVisionModel(config.vision_config).to(dtype)
    tower.load_state_dict(llava.model.vision_tower.state_dict())
    tower.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    image_config = ImageConfig(
        hidden_size=config.text_config.hidden_size,
        max_batch_size=max_batch_size,
        encoder_name_or_path=folder,
        processor_name_or_path=folder,
        hidden_state=config.vision_feature_layer,
        projector_layers=2,
        projector_activation=config.projector_hidden_act,
    )
    image = ImageModality(image_config).to(dtype)
    projector = llava.model.multi_modal_projector
    image.projector[0].load_state_dict(projector.linear_1.state_dict())
    image.projector[2].load_state_dict(projector.linear_2.state_dict())

    llm = AutoModelForCausalLM.from_config(config.text_config, dtype=dtype)
    getattr(llm, llm.base_model_prefix).load_state_dict(llava.model.language_model.state_dict())
    llm.get_output_embeddings().load_state_dict(llava.get_output_embeddings().state_dict())
    return MultimodalModel(language_model=llm, modalities={name: image})
