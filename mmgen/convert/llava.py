"""A transformers ``LlavaForConditionalGeneration`` as a ``MultimodalModel``: its vision tower and
projector become an image modality (``ImageModality``), its language model and head the LLM.

    mm = from_llava(llava, image_processor=llava_processor.image_processor)

LLaVA's image token becomes the modality's placeholder id; the weights are copied, so both models
give the same logits on the same inputs (tests/test_llava_equivalence.py checks this).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoModelForCausalLM

from mmgen.modalities.image import ImageConfig, ImageModality
from mmgen.model import MultimodalModel


def from_llava(
    llava: Any, *, image_processor: Any = None, name: str = "image", max_batch_size: int = 32
) -> MultimodalModel:
    """Build a ``MultimodalModel`` holding ``llava``'s weights (copied).

    ``image_processor``: LLaVA's image processor (its ``to_dict()`` is kept in the image config,
    so ``ImageProcessor`` and ``build_processor`` work without the original checkpoint).
    """
    config = llava.config
    if not isinstance(config.vision_feature_layer, int):
        raise NotImplementedError("LLaVA with several vision_feature_layer values")
    if not config.multimodal_projector_bias:
        raise NotImplementedError("LLaVA projectors without bias")
    image_config = ImageConfig(
        hidden_size=config.text_config.hidden_size,
        max_batch_size=max_batch_size,
        encoder_config=config.vision_config.to_dict(),
        image_processor=image_processor.to_dict() if image_processor is not None else None,
        feature_layer=config.vision_feature_layer,
        drop_cls=config.vision_feature_select_strategy == "default",
        projector="mlp",
        projector_layers=2,
        projector_activation=config.projector_hidden_act,
    )
    dtype = llava.dtype
    image = ImageModality(image_config).to(dtype)
    image.encoder.load_state_dict(llava.model.vision_tower.state_dict())
    projector = llava.model.multi_modal_projector
    image.projector[0].load_state_dict(projector.linear_1.state_dict())
    image.projector[2].load_state_dict(projector.linear_2.state_dict())

    llm = AutoModelForCausalLM.from_config(config.text_config, dtype=dtype)
    getattr(llm, llm.base_model_prefix).load_state_dict(llava.model.language_model.state_dict())
    llm.get_output_embeddings().load_state_dict(llava.get_output_embeddings().state_dict())
    return MultimodalModel(language_model=llm, modalities={name: image})
