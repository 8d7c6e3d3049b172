"""The data side's batches train a real decoder exactly: a tiny random-init Llama with a patch
encoder merged in plain torch gives the same loss on a packed batch, on a padded batch, and on
each sample alone (token-weighted). The model side's ``MultimodalModel`` is not needed here."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers.data_samples import png_bytes

from mmgen import MultimodalProcessor
from mmgen.data import MultimodalDataset, PackedCollator, PaddedCollator
from mmgen.model.attention import packed_attention_kwargs

HIDDEN = 32


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=400,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        attn_implementation="sdpa",
    )
    return transformers.LlamaForCausalLM(config).eval()


def embed(model, batch, placeholder_ids, encoder):
    """Text positions from the embedding table, placeholder runs from the encoder, in order."""
    ids = batch["input_ids"]
    embeds = model.get_input_embeddings()(ids.clamp(min=0))
    for name, modality in batch["modalities"].items():
        rows = [encoder(value) for value in modality["values"]]
        assert [r.shape[0] for r in rows] == modality["num_embeddings"]
        embeds[ids == placeholder_ids[name]] = torch.cat(rows)
    return embeds


def patch_encoder():
    projection = torch.nn.Linear(3 * 8 * 8, HIDDEN)

    def encode(image):  # (3, H, W) -> one row per 8x8 patch, row-major like ImageProcessor
        patches = image.unfold(1, 8, 8).unfold(2, 8, 8)  # (3, H/8, W/8, 8, 8)
        return projection(patches.permute(1, 2, 0, 3, 4).reshape(-1, 3 * 64))

    return encode


def test_packed_and_padded_losses_equal_samples_alone(model, chat_tokenizer, processors):
    # no bos: the text row's first token is a target, which only the packed collator's
    # first-token masking keeps from being predicted from the previous sample
    chat_tokenizer.bos_token = None
    processor = MultimodalProcessor(chat_tokenizer, {"image": processors["image"]})
    rows = [
        {"id": "a", "conversations": [
            {"role": "user", "content": "What is in <image>?"},
            {"role": "assistant", "content": "seven"}],
         "modalities": [{"type": "image", "value": png_bytes(16, 8, seed=1)}]},
        {"id": "b", "text": "hello world one two three"},
        {"id": "c", "conversations": [
            {"role": "user", "content": "<image> and <image>"},
            {"role": "assistant", "content": "eight nine"},
            {"role": "user", "content": "and?"},
            {"role": "assistant", "content": "one"}],
         "modalities": [{"type": "image", "value": png_bytes(8, 24, seed=2)},
                        {"type": "image", "value": png_bytes(16, 16, seed=3)}]},
    ]  # fmt: skip
    dataset = MultimodalDataset(rows, processor)
    samples = [dataset[i] for i in range(len(dataset))]
    assert samples[1].labels[0] != -100
    encoder = patch_encoder()
    ids = processor.placeholder_ids
    torch.manual_seed(0)

    with torch.no_grad():
        alone = []
        for sample in samples:
            batch = PaddedCollator(processor.pad_token_id)([sample])
            out = model(inputs_embeds=embed(model, batch, ids, encoder), labels=batch["labels"])
            targets = int((batch["labels"][:, 1:] != -100).sum())
            alone.append((out.loss * targets, targets))
        expected = sum(loss for loss, _ in alone) / sum(n for _, n in alone)

        packed = PackedCollator()(samples)
        kwargs = packed_attention_kwargs(packed["cu_seqlens"], packed["max_seqlen"], "sdpa")
        out = model(
            inputs_embeds=embed(model, packed, ids, encoder)[None],
            position_ids=packed["position_ids"][None],
            labels=packed["labels"][None],
            use_cache=False,
            **kwargs,
        )
        torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)

        padded = PaddedCollator(processor.pad_token_id)(samples)
        out = model(
            inputs_embeds=embed(model, padded, ids, encoder),
            attention_mask=padded["attention_mask"],
            labels=padded["labels"],
        )
        torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
