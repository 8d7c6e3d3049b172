"""Batched generation (``mmgen.model.generation``): a prompt's greedy output in a batch of
prompts of other lengths equals its output alone, for two LLM families; right padding is moved
left, packed batches are refused; stop strings, streaming, sampling options and seeds."""

from __future__ import annotations

import pytest
import torch
from helpers.tiny_models import LLM_HIDDEN, LLM_VOCAB, random_image, tiny_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from mmgen.data.collator import PackedCollator, left_padded
from mmgen.errors import ConfigError
from mmgen.model import MultimodalModel
from mmgen.model.generation import GenerationOptions, generate

FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}
QUESTIONS = [
    "one <image> two",
    "three three <image> one two three one two three one two",
    "<image> <image> two one",
    "two",
]


def make(family: str, clip_dir, seed: int = 0):
    from helpers.tiny_models import image_modality

    config_class, model_class = FAMILIES[family]
    config = config_class(
        vocab_size=LLM_VOCAB, hidden_size=LLM_HIDDEN, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    llm = model_class(config)
    model = MultimodalModel(language_model=llm, modalities={"image": image_modality(clip_dir)})
    tokenizer = tiny_tokenizer()
    return model.eval(), model.build_processor(tokenizer, chat_template="plain")


def prompts(processor):
    samples = []
    for k, question in enumerate(QUESTIONS):
        images = [{"type": "image", "value": random_image(k * 2 + i)}
                  for i in range(question.count("<image>"))]  # fmt: skip
        row = {"id": f"q{k}", "conversations": [{"role": "user", "content": question}],
               "modalities": images}  # fmt: skip
        samples.append(processor.process(row, generation=True))
    return samples


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_prompt_in_a_batch_gets_its_output_alone(family, model_clip_dir) -> None:
    model, processor = make(family, model_clip_dir)
    model.language_model.generation_config.eos_token_id = None  # fixed-length outputs
    samples = prompts(processor)
    assert len({s.length for s in samples}) == len(samples)  # every prompt its own length
    options = GenerationOptions(max_new_tokens=12)
    together = generate(model, processor, samples, options)
    alone = [generate(model, processor, [s], options)[0] for s in samples]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert len({tuple(c.token_ids) for c in alone}) > 1  # the prompts do change the output
    for completion, sample in zip(together, samples, strict=True):
        assert completion.prompt_tokens == sample.length


def test_right_padding_is_moved_left_and_packed_batches_are_refused(model_clip_dir) -> None:
    model, processor = make("llama", model_clip_dir)
    samples = prompts(processor)
    left = left_padded(samples, processor.pad_token_id)
    right_ids, right_mask = left["input_ids"].clone(), left["attention_mask"].clone()
    for row, sample in enumerate(samples):  # the same prompts, padded on the right
        right_ids[row] = torch.roll(right_ids[row], sample.length)
        right_mask[row] = torch.roll(right_mask[row], sample.length)
    assert not torch.equal(right_mask, left["attention_mask"])
    options = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    expected = model.generate(**left, **options)
    got = model.generate(right_ids, right_mask, left["modalities"], **options)
    assert torch.equal(got, expected)
    packed = PackedCollator()(samples)
    with pytest.raises(ValueError, match="'cu_seqlens': a packed or training batch"):
        model.generate(**packed, max_new_tokens=4)


def test_stop_strings_end_the_text_and_are_left_out(model_clip_dir) -> None:
    model, processor = make("llama", model_clip_dir)
    model.language_model.generation_config.eos_token_id = None
    options = GenerationOptions(max_new_tokens=12)
    # a prompt whose (random-weight) answer has two words: the second is the stop string
    found = [(s, c) for s in prompts(processor) for c in generate(model, processor, [s], options)]
    sample, free = next((s, c) for s, c in found if len(c.text.split()) >= 2)
    assert free.finish_reason == "length" and len(free.token_ids) == 12
    stop = free.text.split()[1]
    stopped = generate(model, processor, [sample],
                       GenerationOptions(max_new_tokens=12, stop=(stop,)))[0]  # fmt: skip
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.find(stop)]
    assert stopped.token_ids == free.token_ids[: len(stopped.token_ids)]


def test_streamed_tokens_are_the_completions(model_clip_dir) -> None:
    model, processor = make("qwen2", model_clip_dir)
    samples = prompts(processor)
    streamed: dict[int, list[int]] = {i: [] for i in range(len(samples))}
    options = GenerationOptions(max_new_tokens=10, temperature=0.9, top_p=0.8, seed=3)
    completions = generate(model, processor, samples, options,
                           on_token=lambda row, token: streamed[row].append(token))  # fmt: skip
    assert [streamed[i] for i in range(len(samples))] == [c.token_ids for c in completions]
    again = generate(model, processor, samples, options)
    assert [c.token_ids for c in again] == [c.token_ids for c in completions]  # seeded
    other = generate(model, processor, samples, options.replace(seed=4))
    assert [c.token_ids for c in other] != [c.token_ids for c in completions]


@pytest.mark.parametrize(
    "bad",
    [{"max_new_tokens": 0}, {"temperature": -1.0}, {"top_p": 0.0}, {"top_k": -2},
     {"repetition_penalty": float("nan")}, {"stop": ("",)}, {"max_new_tokens": True}],
)  # fmt: skip
def test_bad_options_are_one_line_errors(bad) -> None:
    with pytest.raises(ConfigError, match=f"generation option {next(iter(bad))}="):
        GenerationOptions(**bad)


def test_ignore_eos_generates_every_token(model_clip_dir) -> None:
    model, processor = make("llama", model_clip_dir)
    samples = prompts(processor)[:1]
    options = GenerationOptions(max_new_tokens=9)
    first = generate(model, processor, samples, options.replace(ignore_eos=True))[0].token_ids[0]
    # the model's generation config names the token it makes first as an end token
    model.language_model.generation_config.eos_token_id = first
    ended = generate(model, processor, samples, options)[0]
    assert ended.completion_tokens == 0 and ended.finish_reason == "stop"
    forced = generate(model, processor, samples, options.replace(ignore_eos=True))[0]
    assert forced.completion_tokens == 9 and forced.finish_reason == "length"
