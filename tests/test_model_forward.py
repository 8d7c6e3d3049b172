"""MultimodalModel.forward on packed and padded batches against a per-sample reference built by
hand (embedding rows and modality outputs concatenated, run through the LLM alone)."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers.model_batches import packed_batch, padded_batch
from helpers.tiny_models import (
    IMAGE_PATCHES,
    LLM_HIDDEN,
    image_config,
    image_modality,
    random_image,
    random_wave,
    tiny_llm,
    tiny_multimodal,
)

from mmgen import MultimodalConfig, MultimodalModel
from mmgen.errors import ConfigError
from mmgen.modalities.audio import AudioProcessor
from mmgen.modalities.image import ImageModality, ImageProcessor


@pytest.fixture
def model(model_clip_dir, model_whisper_dir):
    return tiny_multimodal(model_clip_dir, model_whisper_dir)


def _image(model, seed, name="image"):
    config = model.modalities[name].config
    item = ImageProcessor(config).process({"value": random_image(seed)})
    return (name, item["value"], item["num_embeddings"])


def _audio(model, seed):
    item = AudioProcessor(model.modalities["audio"].config).process({"value": random_wave(seed)})
    return ("audio", item["value"], item["num_embeddings"])


def _samples(model):
    return [
        [5, 6, _image(model, 0), 7, 8, _audio(model, 0), 9],
        [10, 11, 12, 13],  # no modality
        [14, _image(model, 1), _image(model, 2), 15, 16],
        [_audio(model, 1), 17, _image(model, 3), 18],
    ]


@torch.no_grad()
def reference_logits(model, sample) -> torch.Tensor:
    weight = model.get_input_embeddings().weight
    rows = []
    for part in sample:
        if isinstance(part, tuple):
            rows.append(model.modalities[part[0]]([part[1]])[0])
        else:
            rows.append(weight[part][None])
    return model.language_model(inputs_embeds=torch.cat(rows)[None]).logits[0]


def _split(logits, cu_seqlens):
    bounds = cu_seqlens.tolist()
    return [logits[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_each_sample_alone(model_clip_dir, model_whisper_dir, attn):
    model = tiny_multimodal(model_clip_dir, model_whisper_dir, attn_implementation=attn)
    samples = _samples(model)
    batch = packed_batch(samples, model.placeholder_ids)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (batch["input_ids"].shape[0], model.config.text_config.vocab_size)
    for got, sample in zip(_split(out.logits, batch["cu_seqlens"]), samples, strict=True):
        torch.testing.assert_close(got, reference_logits(model, sample), rtol=1e-4, atol=1e-5)


def test_packed_without_position_ids_or_max_seqlen(model):
    batch = packed_batch(_samples(model), model.placeholder_ids)
    with torch.no_grad():
        full = model(**batch).logits
        del batch["position_ids"], batch["max_seqlen"]
        torch.testing.assert_close(model(**batch).logits, full, rtol=0, atol=0)


def test_padded_logits_equal_each_sample_alone(model):
    samples = _samples(model)
    batch = padded_batch(samples, model.placeholder_ids)
    with torch.no_grad():
        logits = model(**batch).logits
    for row, sample in enumerate(samples):
        reference = reference_logits(model, sample)
        torch.testing.assert_close(
            logits[row, : reference.shape[0]], reference, rtol=1e-4, atol=1e-5
        )


def test_packed_loss_is_the_token_weighted_loss_of_the_samples(model):
    samples = _samples(model)
    batch = packed_batch(samples, model.placeholder_ids)
    loss = model(**batch).loss
    total, count = 0.0, 0
    labels = batch["labels"]
    for (a, b), sample in zip(
        zip(batch["cu_seqlens"][:-1].tolist(), batch["cu_seqlens"][1:].tolist(), strict=True),
        samples,
        strict=True,
    ):
        logits = reference_logits(model, sample)
        targets = labels[a + 1 : b]
        losses = torch.nn.functional.cross_entropy(logits[:-1], targets, reduction="none")
        total += losses[targets != -100].sum()
        count += int((targets != -100).sum())
    torch.testing.assert_close(loss, total / count, rtol=1e-5, atol=1e-6)


def test_gradients_reach_projectors_and_llm(model):
    batch = packed_batch(_samples(model), model.placeholder_ids)
    model.train()
    model(**batch).loss.backward()
    for name in ("image", "audio"):
        grads = [p.grad for p in model.modalities[name].projector.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_encoder_runs_in_chunks_of_max_batch_size(model):
    samples = [[1, _image(model, s), 2] for s in range(5)]
    batch = packed_batch(samples, model.placeholder_ids)
    image = model.modalities["image"]
    calls = []
    handle = image.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        with torch.no_grad():
            whole = model(**batch).logits
            image.config.max_batch_size = 2
            chunked = model(**batch).logits
    finally:
        handle.remove()
    assert calls == [5, 2, 2, 1]
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_wrong_num_embeddings_names_modality_and_sample(model):
    samples = [[1, _image(model, 0), 2], [3, _image(model, 1), 4]]
    name, value, count = samples[1][1]
    samples[1][1] = (name, value, count - 1)
    batch = packed_batch(samples, model.placeholder_ids)
    with pytest.raises(ConfigError, match=r"'image': item 1 \(sample 'sample-1'\) became 16 "):
        model(**batch)


def test_bad_modality_output_is_a_clear_error(model):
    batch = packed_batch([[1, _image(model, 0), 2]], model.placeholder_ids)
    model.modalities["image"].forward = lambda inputs: torch.zeros(IMAGE_PATCHES, LLM_HIDDEN)
    with pytest.raises(ConfigError, match="modality 'image' returned"):
        model(**batch)


def test_placeholder_count_mismatch_names_the_placeholders(model):
    batch = packed_batch([[1, _image(model, 0), 2]], model.placeholder_ids)
    batch["input_ids"][1] = 3  # one placeholder position fewer than the item's rows
    with pytest.raises(ValueError, match="image=-1000"):
        model(**batch)


def test_unknown_modality_in_batch(model):
    batch = packed_batch([[1, _image(model, 0), 2]], model.placeholder_ids)
    batch["modalities"]["video"] = batch["modalities"].pop("image")
    with pytest.raises(ConfigError, match=r"\['video'\].*\['image', 'audio'\]"):
        model(**batch)


def test_layout_errors(model):
    batch = packed_batch([[1, 2, 3]], model.placeholder_ids)
    with pytest.raises(ValueError, match="ends at"):
        model(input_ids=batch["input_ids"], cu_seqlens=torch.tensor([0, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"must be \(T,\)"):
        model(input_ids=batch["input_ids"][None], cu_seqlens=batch["cu_seqlens"])


def test_two_image_encoders_are_told_apart_by_name(model_clip_dir, model_xray_dir):
    torch.manual_seed(0)
    image = image_modality(model_clip_dir)
    xray = image_modality(model_xray_dir)
    model = MultimodalModel(
        language_model=tiny_llm(), modalities={"image": image, "xray": xray}
    ).eval()
    assert model.placeholder_ids == {"image": -1000, "xray": -1001}
    assert model.placeholder_tokens == {"image": "<image>", "xray": "<xray>"}
    samples = [
        [1, _image(model, 0, "xray"), 2, _image(model, 1), 3],
        [4, _image(model, 2), _image(model, 3, "xray"), _image(model, 4, "xray")],
    ]
    batch = packed_batch(samples, model.placeholder_ids)
    with torch.no_grad():
        logits = model(**batch).logits
    for got, sample in zip(_split(logits, batch["cu_seqlens"]), samples, strict=True):
        torch.testing.assert_close(got, reference_logits(model, sample), rtol=1e-4, atol=1e-5)


def test_hidden_size_mismatch_is_caught_at_construction(model_clip_dir):
    image = image_modality(model_clip_dir, hidden_size=32)
    with pytest.raises(ConfigError, match=r"'image' projects to hidden_size=32.*is 64"):
        MultimodalModel(language_model=tiny_llm(), modalities={"image": image})


def test_config_placeholders(model_clip_dir):
    image = image_config(model_clip_dir).to_dict()
    config = MultimodalConfig(
        text_config=tiny_llm().config.to_dict(),
        modalities={"image": image, "scan": dict(image)},
        placeholder_ids={"scan": 5000},
        placeholder_tokens={"image": "<img>"},
    )
    assert config.placeholder_ids == {"image": -1000, "scan": 5000}
    assert config.placeholder_tokens == {"image": "<img>", "scan": "<scan>"}
    with pytest.raises(ConfigError, match="'image' and 'scan' share the placeholder id -1000"):
        MultimodalConfig(
            modalities={"image": image, "scan": image}, placeholder_ids={"scan": -1000}
        )
    with pytest.raises(ConfigError, match=r"unknown modalities \['audio'\]"):
        MultimodalConfig(modalities={"image": image}, placeholder_ids={"audio": 1})
    with pytest.raises(ConfigError, match=r"without '.'"):
        MultimodalConfig(modalities={"a.b": image})
    with pytest.raises(ConfigError, match="registered"):
        MultimodalConfig(modalities={"image": {"model_type": "nope", "hidden_size": 1}})

    again = MultimodalConfig.from_dict(config.to_dict())
    assert again.placeholder_ids == config.placeholder_ids
    assert again.modalities["scan"].encoder_name_or_path == str(model_clip_dir)
    assert again.text_config.hidden_size == LLM_HIDDEN


def test_model_built_from_config_with_llm_path(tmp_path, model_clip_dir):
    tiny_llm(seed=3).save_pretrained(tmp_path / "llm")
    image = image_config(model_clip_dir).to_dict()
    model = MultimodalModel(
        MultimodalConfig(llm=str(tmp_path / "llm"), modalities={"image": image})
    )
    reference = tiny_llm(seed=3)
    torch.testing.assert_close(
        model.get_input_embeddings().weight, reference.get_input_embeddings().weight
    )
    assert isinstance(model.modalities["image"], ImageModality)
    assert model.config.modalities["image"] is model.modalities["image"].config


def test_config_refuses_unknown_arguments(model_clip_dir):
    image = image_config(model_clip_dir).to_dict()
    with pytest.raises(
        ConfigError, match="unknown argument 'llm_config'; did you mean 'text_config'"
    ):
        MultimodalConfig(llm_config={"model_type": "llama"}, modalities={"image": image})
    with pytest.raises(
        ConfigError, match="unknown argument 'modalitys'; did you mean 'modalities'"
    ):
        MultimodalConfig(modalitys={"image": image})
