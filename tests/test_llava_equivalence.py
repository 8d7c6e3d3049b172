"""A tiny transformers LLaVA (random init) and the same weights in a MultimodalModel give the same
logits: HF's padded batch from its own processor vs mmgen's packed batch."""

from __future__ import annotations

import itertools

import torch
from helpers.tiny_models import (
    IMAGE_PATCHES,
    LLM_HIDDEN,
    random_image,
    tiny_clip_processor,
    tiny_clip_vision_config,
    tiny_llm_config,
    tiny_tokenizer,
)
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from mmgen.convert import from_llava
from mmgen.modalities.image import ImageProcessor


def _llava():
    tokenizer = tiny_tokenizer()
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=tiny_clip_vision_config(),
        text_config=tiny_llm_config().to_dict(),
        image_token_index=image_token,
        image_seq_length=IMAGE_PATCHES,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=tiny_clip_processor(),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    return model, processor


def test_llava_padded_equals_mmgen_packed(tmp_path):
    llava, processor = _llava()
    texts = ["what is in <image> ?", "say the red cat in <image> and the dog in <image> , yes no"]
    images = [random_image(0), random_image(1), random_image(2)]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert inputs["attention_mask"][0].sum() < inputs["attention_mask"][1].sum()
    with torch.no_grad():
        hf_logits = llava(**inputs).logits

    folder = tmp_path / "vision"
    model = from_llava(llava, folder, image_processor=processor.image_processor).eval()
    assert model.get_input_embeddings().weight.shape[-1] == LLM_HIDDEN
    placeholder = model.placeholder_ids["image"]
    image_processor = ImageProcessor(model.modalities["image"].config)
    values = [image_processor.process({"value": im})["value"] for im in images]
    torch.testing.assert_close(torch.stack(values), inputs["pixel_values"], rtol=0, atol=0)

    rows = [
        ids[mask.bool()]
        for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)
    ]
    input_ids = torch.cat(rows)
    input_ids[input_ids == llava.config.image_token_id] = placeholder
    lengths = [len(r) for r in rows]
    cu_seqlens = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    batch = {
        "input_ids": input_ids,
        "cu_seqlens": cu_seqlens,
        "max_seqlen": max(lengths),
        "modalities": {
            "image": {
                "values": values,
                "num_embeddings": [IMAGE_PATCHES] * 3,
                "sample_index": [0, 1, 1],
            }
        },
    }
    with torch.no_grad():
        logits = model(**batch).logits
    for row, (start, end) in enumerate(itertools.pairwise(cu_seqlens.tolist())):
        valid = inputs["attention_mask"][row].bool()
        torch.testing.assert_close(logits[start:end], hf_logits[row][valid], rtol=1e-4, atol=1e-5)
