"""``mmgen_varlen_sdpa``: sdpa per packed sample (packed == alone is in test_packed_attention.py);
everywhere else it must be transformers' sdpa, bit for bit."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers.tiny_models import tiny_llm

import mmgen.model  # noqa: F401  (registers the implementation with transformers)
from mmgen import ops
from mmgen.model.attention import VARLEN_SDPA, packed_attention_kwargs, varlen_sdpa_attention


def _pair(**overrides):
    """The same tiny Llama (GQA: 4 heads, 2 key/value heads) under sdpa and mmgen_varlen_sdpa."""
    sdpa = tiny_llm(seed=0, attn_implementation="sdpa", **overrides)
    varlen = tiny_llm(seed=0, attn_implementation="sdpa", **overrides)
    varlen.set_attn_implementation(VARLEN_SDPA)  # transformers accepts the registered name
    assert varlen.config._attn_implementation == VARLEN_SDPA
    return sdpa, varlen


def test_padded_batches_and_generation_are_plain_sdpa():
    sdpa, varlen = _pair()
    ids = torch.randint(3, 90, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding, as in batched generation
    with torch.no_grad():
        expected = sdpa(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(
            varlen(input_ids=ids, attention_mask=mask).logits, expected, rtol=0, atol=0
        )
    for model in (sdpa, varlen):
        model.generation_config.eos_token_id = None  # a fixed number of new tokens
    options = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(varlen.generate(ids, **options), sdpa.generate(ids, **options))


def test_packed_row_takes_the_varlen_keywords():
    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    kwargs = packed_attention_kwargs(cu, 7, VARLEN_SDPA)
    assert set(kwargs) == {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}
    assert torch.equal(kwargs["cu_seq_lens_q"], cu) and kwargs["max_length_q"] == 7


def test_packed_gradients_flow_and_match_the_mask_path():
    sdpa, varlen = _pair()
    meta = ops.varlen_metadata([5, 1, 8])
    ids = torch.randint(3, 90, (1, 14), generator=torch.Generator().manual_seed(1))
    outputs = []
    for model, impl in ((sdpa, "sdpa"), (varlen, VARLEN_SDPA)):
        kwargs = packed_attention_kwargs(meta.cu_seqlens, meta.max_seqlen, impl)
        out = model(input_ids=ids, position_ids=meta.position_ids[None], use_cache=False, **kwargs)
        out.logits.square().mean().backward()
        outputs.append((out.logits, model.model.layers[0].self_attn.q_proj.weight.grad))
    (mask_logits, mask_grad), (varlen_logits, varlen_grad) = outputs
    torch.testing.assert_close(varlen_logits, mask_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(varlen_grad, mask_grad, rtol=1e-4, atol=1e-6)


def test_sliding_window_longer_than_a_sample_is_refused():
    config = transformers.MistralConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
    )  # fmt: skip
    config._attn_implementation = VARLEN_SDPA
    model = transformers.MistralForCausalLM(config).eval()

    def run(lengths):
        meta = ops.varlen_metadata(lengths)
        kwargs = packed_attention_kwargs(meta.cu_seqlens, meta.max_seqlen, VARLEN_SDPA)
        ids = torch.arange(3, 3 + sum(lengths))[None]
        return model(input_ids=ids, position_ids=meta.position_ids[None], **kwargs)

    run([3, 4])  # every sample within the window: the window never applies
    with pytest.raises(ValueError, match="sliding-window attention \\(window 4\\)"):
        run([3, 6])


def test_bad_layouts_are_clear_errors():
    module = torch.nn.Module()
    q = torch.zeros(2, 4, 6, 8)
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    with pytest.raises(ValueError, match="one row of T"):
        varlen_sdpa_attention(module, q, q, q, None, cu_seq_lens_q=cu)
    q = q[:1]
    with pytest.raises(ValueError, match="cu_seq_lens_k must equal"):
        varlen_sdpa_attention(module, q, q, q, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu.flip(0))
    out, _ = varlen_sdpa_attention(module, q, q, q, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    assert out.shape == (1, 6, 4, 8)


def test_from_pretrained_accepts_the_name(tmp_path):
    tiny_llm().save_pretrained(tmp_path)
    llm = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation=VARLEN_SDPA
    )
    assert llm.config._attn_implementation == VARLEN_SDPA
