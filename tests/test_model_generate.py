"""generate(): transformers' generation (prefill with inputs_embeds, KV cache) against a greedy
loop that recomputes the whole sequence without a cache."""

from __future__ import annotations

import torch
from helpers.model_batches import padded_batch
from helpers.tiny_models import random_image, random_wave, tiny_multimodal

from mmgen.modalities.audio import AudioProcessor
from mmgen.modalities.image import ImageProcessor

NEW_TOKENS = 8


def _prompts(model):
    image = ImageProcessor(model.modalities["image"].config)
    audio = AudioProcessor(model.modalities["audio"].config)
    items = [image.process({"value": random_image(s)}) for s in range(2)]
    clip = audio.process({"value": random_wave(3)})
    img = [("image", i["value"], i["num_embeddings"]) for i in items]
    return [
        [1, 5, img[0], 6, 7, ("audio", clip["value"], clip["num_embeddings"]), 8],
        [1, 9, img[1], 10],
    ]


@torch.no_grad()
def greedy_without_cache(model, prompt) -> list[int]:
    batch = padded_batch([prompt], model.placeholder_ids)
    tokens: list[int] = []
    for _ in range(NEW_TOKENS):
        ids = torch.cat([batch["input_ids"], torch.tensor([tokens], dtype=torch.long)], dim=1)
        mask = torch.ones_like(ids)
        logits = model(input_ids=ids, attention_mask=mask, modalities=batch["modalities"]).logits
        tokens.append(int(logits[0, -1].argmax()))
    return tokens


def _model(clip_dir, whisper_dir):
    model = tiny_multimodal(clip_dir, whisper_dir, seed=1)
    # random weights may pick the end token early: generate a fixed number of tokens
    model.language_model.generation_config.eos_token_id = None
    return model


def test_generate_equals_greedy_loop(model_clip_dir, model_whisper_dir):
    model = _model(model_clip_dir, model_whisper_dir)
    options = dict(max_new_tokens=NEW_TOKENS, do_sample=False)
    for prompt in _prompts(model):
        batch = padded_batch([prompt], model.placeholder_ids)
        out = model.generate(batch["input_ids"][0], modalities=batch["modalities"], **options)
        assert out.shape == (1, NEW_TOKENS)
        assert out[0].tolist() == greedy_without_cache(model, prompt)


def test_generate_left_padded_batch(model_clip_dir, model_whisper_dir):
    model = _model(model_clip_dir, model_whisper_dir)
    prompts = _prompts(model)
    batch = padded_batch(prompts, model.placeholder_ids, left=True)
    out = model.generate(
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        modalities=batch["modalities"],
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        pad_token_id=0,
    )
    assert [row.tolist() for row in out] == [greedy_without_cache(model, p) for p in prompts]
