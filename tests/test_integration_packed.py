"""Issue 4 end to end: dataset rows -> ``model.build_processor`` -> ``MultimodalDataset`` ->
``packed_dataloader`` (the real ``TokenBudgetSampler`` + ``PackedCollator``) -> ``MultimodalModel``
-> backward. One pack must train the model exactly as its samples do alone: the same
token-weighted loss, the same gradients on every parameter (LLM, encoders, projectors), and each
sample's own logits; the padded layout (``padded_dataloader``) must agree too. With sdpa and
eager (block-diagonal mask) and ``mmgen_varlen_sdpa`` (attention per sample).

"Alone" is built by hand, independent of the collator, ``packed_merge`` and the processor's item
bookkeeping: a sample's embeddings are the embedding-table rows of its text ids, and for the k-th
item of a modality in token order the modality's output for the k-th entry of that type in the
row (processed here from the original image / waveform), run through the plain LLM.
"""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from helpers.tiny_models import random_image, random_wave, tiny_multimodal, tiny_tokenizer

from mmgen.data import MultimodalDataset, packed_dataloader, padded_dataloader
from mmgen.errors import DataError
from mmgen.model.attention import VARLEN_SDPA


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    random_image(seed).save(buffer, format="PNG")  # lossless: the reference sees the same pixels
    return buffer.getvalue()


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# per row: modality name -> seeds of its entries, in order
MEDIA = {
    "one": {"image": [10]},
    "many": {"image": [11, 12, 13], "audio": [20]},
    "caption": {"image": [14], "audio": [21]},
}
ROWS = [
    {"id": "none", "conversations": [_user("what is the cat ?"), _assistant("a red dog .")]},
    {"id": "one", "conversations": [_user("what is in <image> ?"), _assistant("a blue cat")]},
    {"id": "many", "conversations": [
        _user("<image> <image> say <audio> ?"), _assistant("yes , two"),
        _user("and <image> ?"), _assistant("no , one picture")]},
    # no bos (see the fixture): a text row's first token is a target, which only the collator's
    # and the model's first-label masking keep from being predicted by the previous sample
    {"id": "text", "text": "the dog is red , the cat is blue ."},
    {"id": "caption", "text": "<audio> the sound , <image> the picture"},
]  # fmt: skip


def _raw(name: str, seed: int):
    """What the loader should hand the processor: a PIL image, or a waveform at 16 kHz."""
    return random_wave(seed) if name == "audio" else random_image(seed)


def _rows(rows: list[dict], media: dict[str, dict[str, list[int]]]) -> list[dict]:
    out = []
    for row in rows:
        entries = [
            {"type": name, "value": random_wave(seed) if name == "audio" else _png(seed)}
            for name, seeds in media.get(row["id"], {}).items()
            for seed in seeds
        ]
        out.append({**row, "modalities": entries})
    return out


@pytest.fixture
def tokenizer():
    tokenizer = tiny_tokenizer()
    tokenizer.bos_token = None
    return tokenizer


def _reference(model, sample, media: dict[str, list[int]]):
    """``(logits, loss, targets)`` of one sample run alone through the plain LLM; ``media`` holds
    the seeds of the row's entries per modality, in order."""
    weight = model.get_input_embeddings().weight
    ids = sample.input_ids
    rows = weight[ids.clamp(min=0)].unbind(0)
    sources = {
        name: iter([_raw(name, s) for s in media.get(name, [])]) for name in model.modalities
    }
    kind = {pid: name for name, pid in model.placeholder_ids.items()}
    parts, t = [], 0
    while t < len(ids):
        name = kind.get(int(ids[t]))
        if name is None:
            parts.append(rows[t][None])
            t += 1
            continue
        modality = model.modalities[name]
        processor = type(modality).preprocessor_class(modality.config)
        features = modality([processor.process({"value": next(sources[name])})["value"]])[0]
        assert bool((ids[t : t + len(features)] == model.placeholder_ids[name]).all())
        parts.append(features)
        t += len(features)
    for name, left in sources.items():
        assert next(left, None) is None, f"{sample.id}: an unused {name} entry"
    out = model.language_model(inputs_embeds=torch.cat(parts)[None], labels=sample.labels[None])
    return out.logits[0], out.loss, int((sample.labels[1:] != -100).sum())


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _assert_same_grads(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _lora(model) -> None:
    """LoRA adapters on the LLM, B made non-zero (as if trained) so A gets gradients too."""
    model.add_lora(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, parameter in model.language_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    model.set_trainable("lora")


@pytest.mark.parametrize(
    ("attn", "stage"),
    [("sdpa", "full"), ("eager", "full"), (VARLEN_SDPA, "full"), (VARLEN_SDPA, "lora")],
)
def test_pack_trains_like_its_samples_alone(
    model_clip_dir, model_whisper_dir, tokenizer, attn, stage
):
    model = tiny_multimodal(model_clip_dir, model_whisper_dir, attn_implementation=attn).train()
    if stage == "lora":
        _lora(model)
    dataset = MultimodalDataset(_rows(ROWS, MEDIA), model.build_processor(tokenizer))
    samples = {dataset[i].id: dataset[i] for i in range(len(dataset))}
    assert {len(s.items) for s in samples.values()} == {0, 1, 2, 4}
    loader = packed_dataloader(dataset, capacity=512, max_items=8, seed=3)
    (batch,) = list(loader)  # every sample in one pack, in the sampler's (shuffled) order
    order = batch["sample_ids"]
    # the test bites on first-label masking: a sample packed after another starts with a target
    assert any(samples[i].labels[0] != -100 for i in order[1:]), order

    # alone: the token-weighted mean of the per-sample losses
    references = {i: _reference(model, samples[i], MEDIA.get(i, {})) for i in order}
    targets = sum(n for _, _, n in references.values())
    (sum(loss * n for _, loss, n in references.values()) / targets).backward()
    expected_loss = sum(loss.detach() * n for _, loss, n in references.values()) / targets
    expected_grads = _grads(model)
    # every trainable parameter learns (LLM or its adapters, encoders, projectors), except
    # CLIP's pooled-output norm: the image modality reads the tower's hidden states
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert expected_grads.keys() == {n for n in trainable if ".post_layernorm." not in n}
    if stage == "lora":
        assert {n for n in trainable if n.startswith("language_model.")} == {
            n for n in trainable if "lora_" in n
        }

    out = model(**batch)
    out.loss.backward()
    torch.testing.assert_close(out.loss.detach(), expected_loss, rtol=1e-5, atol=1e-6)
    _assert_same_grads(_grads(model), expected_grads)
    bounds = itertools.pairwise(batch["cu_seqlens"].tolist())
    for sample_id, (a, b) in zip(order, bounds, strict=True):
        torch.testing.assert_close(
            out.logits[a:b].detach(), references[sample_id][0].detach(), rtol=0, atol=1e-4
        )
    # as mmgen train calls it: the collator's packing trusted (no re-check, no re-masking)
    with torch.no_grad():
        trusted = model(**batch, validate_packing=False)
    assert torch.equal(trusted.loss, out.loss.detach())
    assert torch.equal(trusted.logits, out.logits.detach())

    # the padded baseline on the same samples: same loss, gradients and per-sample logits
    (padded,) = list(padded_dataloader(dataset, batch_size=len(dataset), shuffle=False))
    out_padded = model(**padded)
    out_padded.loss.backward()
    torch.testing.assert_close(out_padded.loss.detach(), expected_loss, rtol=1e-5, atol=1e-6)
    _assert_same_grads(_grads(model), expected_grads)
    for row, sample_id in enumerate(padded["sample_ids"]):
        logits = references[sample_id][0].detach()
        torch.testing.assert_close(
            out_padded.logits[row, : len(logits)].detach(), logits, rtol=0, atol=1e-4
        )


def test_two_image_encoders_take_their_own_entries(model_clip_dir, model_xray_dir, tokenizer):
    """Two modalities of one type ("image" and "xray": two CLIPs, both loaded by raw-image): each
    dataset entry goes to the encoder its "type" names, interleaved in any order."""
    from helpers.tiny_models import image_modality, tiny_llm

    from mmgen import MultimodalModel

    torch.manual_seed(0)
    image = image_modality(model_clip_dir)
    xray = image_modality(model_xray_dir)
    model = MultimodalModel(language_model=tiny_llm(), modalities={"image": image, "xray": xray})
    media = {"a": {"xray": [1, 2], "image": [3]}, "b": {"image": [4, 5]}, "c": {"xray": [6]}}
    rows = [
        {"id": "a", "text": "<xray> the <image> is <xray> red"},
        {"id": "b", "conversations": [_user("<image> <image> ?"), _assistant("two")]},
        {"id": "c", "text": "a dog <xray>"},
        {"id": "d", "text": "no picture"},
    ]
    dataset = MultimodalDataset(_rows(rows, media), model.build_processor(tokenizer))
    (batch,) = list(packed_dataloader(dataset, capacity=512, seed=0))
    assert {name: len(b["values"]) for name, b in batch["modalities"].items()} == {
        "image": 3,
        "xray": 3,
    }
    with torch.no_grad():
        out = model(**batch)
        references = {i: _reference(model, dataset[k], media.get(i, {}))
                      for k, i in enumerate(dataset.ids)}  # fmt: skip
    bounds = itertools.pairwise(batch["cu_seqlens"].tolist())
    for sample_id, (a, b) in zip(batch["sample_ids"], bounds, strict=True):
        torch.testing.assert_close(out.logits[a:b], references[sample_id][0], rtol=0, atol=1e-4)
    targets = sum(n for _, _, n in references.values())
    expected = sum(loss * n for _, loss, n in references.values()) / targets
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_bad_samples_are_named_or_skipped_and_the_rest_trains(
    model_clip_dir, model_whisper_dir, tokenizer
):
    model = tiny_multimodal(model_clip_dir, model_whisper_dir).train()
    bad = [
        {"id": "corrupt-image", "text": "<image> red",
         "modalities": [{"type": "image", "value": b"\x89PNG but not really"}]},
        {"id": "corrupt-audio", "text": "<audio> say",
         "modalities": [{"type": "audio", "value": {"bytes": b"RIFF....WAVEfmt "}}]},
        {"id": "missing-file", "text": "<image>",
         "modalities": [{"type": "image", "value": {"path": "/nonexistent/x.png"}}]},
        {"id": "mismatch", "text": "<image> <image>",
         "modalities": [{"type": "image", "value": _png(1)}]},
    ]  # fmt: skip
    rows = _rows(ROWS, MEDIA)
    with pytest.raises(DataError, match=r"'corrupt-image'.*field modalities\[0\] \(image\)"):
        MultimodalDataset([*rows[:2], *bad], model.build_processor(tokenizer))

    processor = model.build_processor(tokenizer, on_error="skip")
    dataset = MultimodalDataset([*rows[:2], *bad, *rows[2:]], processor)
    assert dataset.ids == [row["id"] for row in ROWS]
    assert dataset.report().startswith(
        "5 of 9 samples kept; skipped 4 of 9 samples"
        " (1 missing file, 1 placeholder mismatch, 2 unreadable media)"
    )
    (batch,) = list(packed_dataloader(dataset, capacity=512))
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.modalities["audio"].projector[0].weight.grad is not None
