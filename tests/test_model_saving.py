"""save_pretrained / from_pretrained of a whole MultimodalModel."""

from __future__ import annotations

import shutil

import torch
from helpers.model_batches import packed_batch
from helpers.tiny_models import (
    random_image,
    random_wave,
    save_tiny_clip,
    save_tiny_whisper,
    tiny_multimodal,
    tiny_tokenizer,
)
from transformers import AutoModel, AutoModelForCausalLM

from mmgen import MultimodalModel
from mmgen.modalities.audio import AudioProcessor
from mmgen.modalities.image import ImageProcessor


def _batch(model):
    image = ImageProcessor(model.modalities["image"].config).process({"value": random_image(1)})
    audio = AudioProcessor(model.modalities["audio"].config).process({"value": random_wave(1)})
    samples = [
        [5, ("image", image["value"], image["num_embeddings"]), 6, 7],
        [8, ("audio", audio["value"], audio["num_embeddings"]), 9],
    ]
    return packed_batch(samples, model.placeholder_ids)


def _perturb(module):
    # as if trained: a reload that fell back on the original checkpoints would differ
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))


def test_round_trip_after_sources_are_deleted(tmp_path):
    clip, whisper = save_tiny_clip(tmp_path / "clip"), save_tiny_whisper(tmp_path / "whisper")
    model = tiny_multimodal(clip, whisper)
    _perturb(model)
    batch = _batch(model)
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "saved", tokenizer=tiny_tokenizer())
    shutil.rmtree(clip)
    shutil.rmtree(whisper)

    for loaded in (
        MultimodalModel.from_pretrained(tmp_path / "saved"),
        AutoModel.from_pretrained(tmp_path / "saved"),
    ):
        assert isinstance(loaded, MultimodalModel)
        assert loaded.placeholder_ids == model.placeholder_ids
        assert loaded.placeholder_tokens == model.placeholder_tokens
        rebuilt = _batch(loaded)  # processors rebuilt from the saved files
        for name, items in rebuilt["modalities"].items():
            for got, want in zip(items["values"], batch["modalities"][name]["values"], strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=0)
        with torch.no_grad():
            torch.testing.assert_close(loaded(**batch).logits, expected, rtol=0, atol=0)
    # the LLM part is a plain transformers checkpoint
    llm = AutoModelForCausalLM.from_pretrained(tmp_path / "saved" / "llm")
    torch.testing.assert_close(
        llm.get_input_embeddings().weight, model.get_input_embeddings().weight, rtol=0, atol=0
    )


def test_saved_tokenizer_is_the_default_for_the_processor(tmp_path, model_clip_dir):
    from mmgen.model.serialization import load_tokenizer

    model = tiny_multimodal(model_clip_dir)
    model.save_pretrained(tmp_path / "saved", tokenizer=tiny_tokenizer())
    loaded = MultimodalModel.from_pretrained(tmp_path / "saved")
    tokenizer = load_tokenizer(loaded)
    assert tokenizer.convert_ids_to_tokens(tokenizer("what <image>").input_ids) == [
        "what",
        "<image>",
    ]


def test_lora_round_trip(tmp_path, model_clip_dir, model_whisper_dir):
    model = tiny_multimodal(model_clip_dir, model_whisper_dir)
    model.add_lora(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    _perturb(model)
    batch = _batch(model)
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "llm_adapter" / "adapter_config.json").is_file()
    loaded = MultimodalModel.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, expected, rtol=0, atol=0)
    loaded.set_trainable("lora")  # the adapters came back trainable
    assert any("lora_" in n for n, p in loaded.named_parameters() if p.requires_grad)
    # a model without adapters saved over it leaves no adapters behind to be loaded
    plain = tiny_multimodal(model_clip_dir, model_whisper_dir)
    plain.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "llm_adapter").exists()
    with torch.no_grad():
        again = MultimodalModel.from_pretrained(tmp_path / "saved")(**batch).logits
        torch.testing.assert_close(again, plain(**batch).logits, rtol=0, atol=0)


def test_dtype_on_load(tmp_path, model_clip_dir):
    tiny_multimodal(model_clip_dir).save_pretrained(tmp_path / "saved")
    loaded = MultimodalModel.from_pretrained(tmp_path / "saved", dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
