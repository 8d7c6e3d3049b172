"""Packed == alone: a packed row gives each sample's own logits, loss and gradients.

Tiny random-init decoders of three HF families, saved and loaded back by path, with sdpa, eager
and mmgen_varlen_sdpa attention. The packed forward uses restarting position ids, the mask (or
varlen keywords) from ``packed_attention_kwargs`` and ``mask_first_labels``; the reference runs
every sample alone.
"""

import pytest
import torch
import transformers

from mmgen import ops
from mmgen.constants import IGNORE_INDEX
from mmgen.data.batch import mask_first_labels
from mmgen.model.attention import VARLEN_SDPA, packed_attention_kwargs, register

register()  # attn_implementation="mmgen_varlen_sdpa" (mmgen.model does this on import)

FAMILIES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
}
TINY = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)
LENGTHS = [7, 12, 1, 9, 4]  # the 1-token sample has no target at all


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    paths = {}
    for name, (config_class, model_class) in FAMILIES.items():
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(name)
        model_class(config_class(**TINY)).save_pretrained(path)
        paths[name] = path
    return paths


def load(saved_models, family, impl):
    model_class = FAMILIES[family][1]
    model = model_class.from_pretrained(
        saved_models[family], attn_implementation=impl, dtype=torch.float32
    )
    return model.eval()


def make_samples(seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, TINY["vocab_size"], (n,), generator=gen) for n in LENGTHS]
    labels = []
    for sample in ids:
        label = sample.clone()
        label[: len(sample) // 3] = IGNORE_INDEX  # a prompt that takes no loss
        labels.append(label)
    return ids, labels


def packed_inputs(ids, labels, impl):
    meta = ops.varlen_metadata([len(s) for s in ids])
    kwargs = packed_attention_kwargs(meta.cu_seqlens, meta.max_seqlen, impl, dtype=torch.float32)
    return {
        "input_ids": torch.cat(ids)[None],
        "position_ids": meta.position_ids[None],
        "labels": mask_first_labels(torch.cat(labels)[None], meta.cu_seqlens),
        **kwargs,
    }


def alone_reference(model, ids, labels):
    """Per-sample logits, and the token-weighted mean of the per-sample losses."""
    logits, weighted, targets = [], 0.0, 0
    for sample, label in zip(ids, labels, strict=True):
        out = model(input_ids=sample[None], labels=label[None])
        logits.append(out.logits[0])
        n = int((label[1:] != IGNORE_INDEX).sum())  # HF shifts: label t+1 is position t's target
        if n:
            weighted = weighted + out.loss * n
            targets += n
    return torch.cat(logits), weighted / targets


@pytest.mark.parametrize("impl", ["sdpa", "eager", VARLEN_SDPA])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_packed_equals_alone(saved_models, family, impl):
    model = load(saved_models, family, impl)
    ids, labels = make_samples()

    ref_logits, ref_loss = alone_reference(model, ids, labels)
    ref_loss.backward()
    ref_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    out = model(**packed_inputs(ids, labels, impl))
    out.loss.backward()

    assert (out.logits[0] - ref_logits).abs().max().item() <= 1e-4
    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_without_the_mask_or_label_masking_samples_leak(saved_models):
    """The controls: each ingredient is needed, so the equalities above can fail."""
    model = load(saved_models, "llama", "sdpa")
    ids, labels = make_samples()
    ref_logits, ref_loss = alone_reference(model, ids, labels)
    inputs = packed_inputs(ids, labels, "sdpa")

    no_mask = {k: v for k, v in inputs.items() if k != "attention_mask"}
    leaked = model(**no_mask).logits[0]  # use_cache defaults on: HF ignores the position ids
    assert (leaked - ref_logits).abs().max().item() > 1e-2

    raw_labels = {**inputs, "labels": torch.cat(labels)[None]}
    assert abs(model(**raw_labels).loss.item() - ref_loss.item()) > 1e-4


def test_bfloat16_mask_matches_model_dtype(saved_models):
    model = load(saved_models, "qwen2", "sdpa").to(torch.bfloat16)
    ids, _ = make_samples(seed=1)
    meta = ops.varlen_metadata([len(s) for s in ids])
    kwargs = packed_attention_kwargs(meta.cu_seqlens, meta.max_seqlen, "sdpa", dtype=model.dtype)
    assert kwargs["attention_mask"].dtype == torch.bfloat16
    packed = model(input_ids=torch.cat(ids)[None], position_ids=meta.position_ids[None], **kwargs)
    alone = torch.cat([model(input_ids=s[None]).logits[0] for s in ids])
    assert (packed.logits[0].float() - alone.float()).abs().max().item() <= 0.02  # leak: ~0.5


@pytest.mark.parametrize("impl", ["flash_attention_2", "flash_attention_3", "flash_attention_4"])
def test_flash_attention_gets_varlen_kwargs(impl):
    from transformers.modeling_flash_attention_utils import FlashAttentionKwargs

    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    kwargs = packed_attention_kwargs(cu, 7, impl)
    assert set(kwargs) == set(FlashAttentionKwargs.__annotations__)  # the names transformers reads
    assert (
        torch.equal(kwargs["cu_seq_lens_q"], cu)
        and kwargs["cu_seq_lens_k"] is kwargs["cu_seq_lens_q"]
    )
    assert kwargs["cu_seq_lens_q"].dtype == torch.int32
    assert kwargs["max_length_q"] == kwargs["max_length_k"] == 7
    assert set(packed_attention_kwargs(cu, 7, "kernels-community/flash-attn2")) == set(kwargs)


def test_sdpa_and_eager_get_the_mask():
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    for impl in ("sdpa", "eager"):
        kwargs = packed_attention_kwargs(cu, 3, impl, dtype=torch.float16)
        assert set(kwargs) == {"attention_mask"}
        assert torch.equal(
            kwargs["attention_mask"], ops.block_diagonal_causal_mask(cu, torch.float16)
        )
        # the model's packed step: T given, cu_seqlens trusted (sync-free on CUDA); same mask
        trusted = packed_attention_kwargs(cu, 3, impl, dtype=torch.float16, total=5, validate=False)
        assert torch.equal(trusted["attention_mask"], kwargs["attention_mask"])
        with pytest.raises(ValueError, match="total = 4 but cu_seqlens ends at 5"):
            packed_attention_kwargs(cu, 3, impl, total=4, validate=False)


@pytest.mark.parametrize(
    "impl", ["flex_attention", "paged|eager", "paged|flash_attention_2", None, "magic"]
)
def test_other_implementations_raise(impl):
    with pytest.raises(ValueError, match="packed attention is not supported"):
        packed_attention_kwargs(torch.tensor([0, 4], dtype=torch.int32), 4, impl)


def test_mask_first_labels():
    cu = torch.tensor([0, 3, 3, 5, 7], dtype=torch.int32)  # an empty third sample
    labels = torch.arange(10, 17)
    out = mask_first_labels(labels, cu)
    assert out.tolist() == [-100, 11, 12, -100, 14, -100, 16]
    assert labels.tolist() == list(range(10, 17))  # the input is left alone
    assert mask_first_labels(labels[None], cu).tolist() == [out.tolist()]
    trailing_empty = torch.tensor([0, 7, 7], dtype=torch.int32)
    assert mask_first_labels(labels, trailing_empty, ignore_index=-1)[0].item() == -1
    with pytest.raises(ValueError, match="T = cu_seqlens\\[-1\\] = 7"):
        mask_first_labels(torch.zeros(6, dtype=torch.int64), cu)
