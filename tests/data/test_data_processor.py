"""MultimodalProcessor: chat templates and the plain format, placeholder expansion, labels,
dataset layouts, truncation at instance boundaries, and bad samples."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers.data_samples import (
    CHATML,
    CHATML_GENERATION,
    REWRITING,
    make_tokenizer,
    png_bytes,
    wav_bytes,
)

from mmgen import MultimodalProcessor
from mmgen.errors import ConfigError, DataError

CONVERSATION = [
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": "hello world"},
    {"role": "assistant", "content": "seven"},
    {"role": "user", "content": "and now?"},
    {"role": "assistant", "content": "eight nine"},
]


def learnt(processor, sample) -> str:
    out = processor(sample)
    return processor.tokenizer.decode([t for t in out.labels.tolist() if t >= 0])


def test_chat_template_tokens_equal_the_full_template(chat_tokenizer, processors):
    # ChatML puts special tokens at every turn boundary, so per-turn tokenization must give
    # exactly the tokens of the whole rendered conversation
    processor = MultimodalProcessor(chat_tokenizer, processors)
    out = processor({"id": "a", "conversations": CONVERSATION})
    expected = chat_tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=False)
    assert out.input_ids.tolist() == expected
    assert out.input_ids.dtype == torch.long and out.labels.shape == out.input_ids.shape


def test_labels_cover_exactly_the_assistant_answers(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    out = processor({"id": "a", "conversations": CONVERSATION})
    im_end = chat_tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids, labels = out.input_ids.tolist(), out.labels.tolist()
    trained = [i for i, label in enumerate(labels) if label != -100]
    assert all(labels[i] == ids[i] for i in trained)
    # two contiguous runs: "seven<|im_end|>" and "eight nine<|im_end|>", newline after untrained
    runs = [[trained[0]]]
    for i in trained[1:]:
        if i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    texts = [chat_tokenizer.decode([ids[i] for i in run]) for run in runs]
    assert texts == ["seven<|im_end|>", "eight nine<|im_end|>"]
    assert ids[runs[0][-1]] == im_end and labels[runs[0][-1] + 1] == -100


def test_generation_markers_give_the_same_result_as_prefix_rendering(processors):
    prefix = MultimodalProcessor(make_tokenizer(CHATML), processors)
    marked = MultimodalProcessor(make_tokenizer(CHATML_GENERATION), processors)
    sample = {"id": "a", "conversations": CONVERSATION}
    a, b = prefix(sample), marked(sample)
    assert torch.equal(a.input_ids, b.input_ids)
    assert torch.equal(a.labels, b.labels)


def test_template_that_rewrites_earlier_turns_is_reported(processors):
    processor = MultimodalProcessor(make_tokenizer(REWRITING), processors)
    with pytest.raises(ConfigError, match=r"turn 2 .*prefix"):
        processor({"id": "a", "conversations": CONVERSATION})
    # a chat_template override fixes it
    fixed = MultimodalProcessor(make_tokenizer(REWRITING), processors, chat_template=CHATML)
    assert learnt(fixed, {"conversations": CONVERSATION}) == "seven<|im_end|>eight nine<|im_end|>"


def test_plain_format_without_template(plain_tokenizer, processors):
    processor = MultimodalProcessor(plain_tokenizer, processors)
    out = processor({"id": "a", "conversations": CONVERSATION})
    text = (
        "<s>System: You answer in one word.\nUser: hello world\nAssistant: seven</s>\n"
        "User: and now?\nAssistant: eight nine</s>\n"
    )
    assert out.input_ids.tolist() == plain_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert learnt(processor, {"conversations": CONVERSATION}) == " seven</s> eight nine</s>"
    # forcing the plain format on a tokenizer that has a template gives the same
    forced = MultimodalProcessor(make_tokenizer(CHATML), processors, chat_template="plain")
    assert forced({"conversations": CONVERSATION}).input_ids.tolist() == out.input_ids.tolist()


def test_token_split_at_a_turn_boundary_is_reported(processors, caplog):
    # a header ending in a space: per-turn tokenization gives " " + "seven" where the whole
    # text has " seven"
    spaced = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    for template, warned in ((spaced, True), (CHATML, False)):
        caplog.clear()
        processor = MultimodalProcessor(make_tokenizer(template), processors)
        with caplog.at_level(logging.WARNING, logger="mmgen.data"):
            processor({"conversations": CONVERSATION})
            processor({"conversations": CONVERSATION})
        assert len(caplog.records) == warned
        assert not warned or "splits a token at a turn boundary" in caplog.text


def test_generation_prompt(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    prompt = CONVERSATION[:2]
    out = processor.process({"conversations": prompt}, generation=True)
    expected = chat_tokenizer.apply_chat_template(
        prompt, tokenize=True, add_generation_prompt=True, return_dict=False
    )
    assert out.input_ids.tolist() == expected
    assert (out.labels == -100).all()
    # an evaluation row keeps its answer last: the prompt leaves it out
    with_answer = processor.process({"conversations": CONVERSATION[:3]}, generation=True)
    assert with_answer.input_ids.tolist() == expected


def test_options_round_trip(chat_tokenizer, processors):
    processor = MultimodalProcessor(
        chat_tokenizer, processors, placeholder_ids={"audio": -5}, max_length=64, on_error="skip"
    )
    again = MultimodalProcessor(chat_tokenizer, processors, **processor.to_dict())
    assert again.to_dict() == processor.to_dict()
    assert again.placeholder_ids == {"image": -1000, "audio": -5}


def test_text_sample_trains_on_all_text(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    out = processor(
        {
            "id": "t",
            "text": "a <image> hello world",
            "modalities": [{"type": "image", "value": png_bytes(16, 16)}],
        }
    )
    image_id = processor.placeholder_ids["image"]
    ids, labels = out.input_ids.tolist(), out.labels.tolist()
    assert ids[0] == chat_tokenizer.bos_token_id and ids[-1] == chat_tokenizer.eos_token_id
    assert ids.count(image_id) == 4  # 16x16 image: four 8x8 patches
    for token, label in zip(ids, labels, strict=True):
        assert label == (-100 if token in (image_id, chat_tokenizer.bos_token_id) else token)


def test_placeholders_expand_in_order_with_their_own_entries(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    sizes = [(8, 8), (16, 24), (8, 16)]  # 1, 6 and 2 embeddings
    sample = {
        "id": "m",
        "conversations": [
            {"role": "user", "content": "<image> and <audio> then <image>"},
            {"role": "assistant", "content": "<image> seven"},
        ],
        "modalities": [
            {"type": "image", "value": png_bytes(w, h, seed=i)} for i, (w, h) in enumerate(sizes)
        ]
        + [{"type": "audio", "value": wav_bytes(0.35, 8000)}],
    }
    out = processor(sample)
    ids = out.input_ids
    assert [item.modality for item in out.items] == ["image", "audio", "image", "image"]
    assert [item.num_embeddings for item in out.items] == [1, 4, 6, 2]
    assert [tuple(item.value.shape[1:]) for item in out.items if item.modality == "image"] == [
        (h, w) for w, h in sizes
    ]
    for item in out.items:
        run = ids[item.start : item.end]
        assert (run == processor.placeholder_ids[item.modality]).all()
        assert (out.labels[item.start : item.end] == -100).all()
    placeholder = ids < 0
    assert int(placeholder.sum()) == sum(item.num_embeddings for item in out.items)
    # placeholder ids are never tokenizer ids, and the text around them is plain tokens
    assert (ids[~placeholder] < len(chat_tokenizer)).all()
    assert learnt(processor, sample) == " seven<|im_end|>"


def test_custom_placeholders_and_loaders(chat_tokenizer, processors):
    processor = MultimodalProcessor(
        chat_tokenizer,
        processors,
        placeholder_tokens={"image": "[IMG]"},
        placeholder_ids={"image": -7},
        loaders={"audio": "raw-audio"},
    )
    out = processor(
        {"text": "x [IMG] <image>", "modalities": [{"type": "image", "value": png_bytes(8, 8)}]}
    )
    assert out.input_ids.tolist().count(-7) == 1
    assert chat_tokenizer.decode(out.input_ids[out.items[0].end : -1]).strip() == "<image>"
    assert processor.placeholder_ids["audio"] == -1001
    with pytest.raises(ConfigError, match="tokenizer id"):
        MultimodalProcessor(chat_tokenizer, processors, placeholder_ids={"image": 5})
    with pytest.raises(ConfigError, match="unknown modalities"):
        MultimodalProcessor(chat_tokenizer, processors, loaders={"video": "raw-image"})
    with pytest.raises(ConfigError, match=r"unknown modality loader 'raw-imag'.*raw-image"):
        MultimodalProcessor(chat_tokenizer, processors, loaders={"image": "raw-imag"})


def test_audio_loader_takes_the_processor_rate(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    assert processor.loaders["audio"].sampling_rate == 8000  # from AudioConfig.sampling_rate
    out = processor(
        {"text": "<audio>", "modalities": [{"type": "audio", "value": wav_bytes(0.5, 16000)}]}
    )
    assert out.items[0].value.shape == (4000,) and out.items[0].num_embeddings == 5


def test_multi_token_and_llava_layouts(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    multi_token = {
        "id": "mt",
        "messages": [
            {"role": "user", "content": "<image><image> hi"},
            {"role": "assistant", "content": "seven"},
        ],
        "images": [png_bytes(8, 8), png_bytes(16, 8)],
    }
    out = processor(multi_token)
    assert [item.num_embeddings for item in out.items] == [1, 2]
    llava = {
        "id": "lv",
        "image": png_bytes(8, 8),
        "conversations": [
            {"from": "human", "value": "<image>\nhi"},
            {"from": "gpt", "value": "seven"},
        ],
    }
    out = processor(llava)
    assert len(out.items) == 1 and learnt(processor, llava) == "seven<|im_end|>"


def test_count_mismatch_names_the_sample(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    sample = {
        "id": "clip-7",
        "text": "<image> <image>",
        "modalities": [{"type": "image", "value": png_bytes(8, 8)}],
    }
    with pytest.raises(
        DataError,
        match=r"'clip-7': field text has 2 <image> placeholder\(s\) but modalities has 1 'image' ",
    ):
        processor(sample)
    with pytest.raises(DataError, match=r"'clip-7'.*modalities\[0\].type is 'video'"):
        processor({"id": "clip-7", "text": "x", "modalities": [{"type": "video", "value": "a"}]})


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"not an image", r"modalities\[1\] \(image\): cannot decode image bytes"),
        ("missing.png", r"modalities\[1\] \(image\): file not found: .*missing.png"),
    ],
)
def test_bad_media_names_sample_and_field(chat_tokenizer, processors, value, match):
    processor = MultimodalProcessor(chat_tokenizer, processors)
    sample = {
        "id": "s9",
        "text": "<image> <image>",
        "modalities": [
            {"type": "image", "value": png_bytes(8, 8)},
            {"type": "image", "value": value},
        ],
    }
    with pytest.raises(DataError, match=r"sample 's9'.*" + match):
        processor.process(sample, base_dir="/nonexistent")


def test_skip_returns_none_and_counts(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors, on_error="skip")
    bad = {"id": "b", "text": "<audio>", "modalities": [{"type": "audio", "value": b"RIFF junk"}]}
    assert processor(bad) is None
    assert processor({"id": "g", "text": "fine"}) is not None
    assert processor.skipped.count == 1
    assert "skipped 1 sample (1 unreadable media)" in processor.skipped.report()
    assert "'b'" in processor.skipped.report()


def test_relative_paths_resolve_against_base_dir(tmp_path, chat_tokenizer, processors):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes(16, 8))
    processor = MultimodalProcessor(chat_tokenizer, processors)
    sample = {"text": "<image>", "modalities": [{"type": "image", "value": {"path": "img/a.png"}}]}
    assert processor.process(sample, base_dir=tmp_path).items[0].num_embeddings == 2
    sample["modalities"][0]["value"] = "img/a.png"
    assert processor.process(sample, base_dir=tmp_path).items[0].num_embeddings == 2


def test_truncation_never_cuts_an_instance(chat_tokenizer, processors):
    sample = {
        "id": "long",
        "text": "hello <image> world <image> one two three",
        "modalities": [{"type": "image", "value": png_bytes(16, 16)}] * 2,
    }
    full = MultimodalProcessor(chat_tokenizer, processors)(sample)
    first, second = full.items
    for limit in range(1, full.length + 1):
        processor = MultimodalProcessor(chat_tokenizer, processors, max_length=limit)
        if limit <= first.start:  # cut before the first image
            out = processor(sample)
            assert out.length == limit and not out.items
        elif limit < first.end:  # inside the first image: back to its start
            out = processor(sample)
            assert out.length == first.start and not out.items
        elif second.start < limit < second.end:
            out = processor(sample)
            assert out.length == second.start and len(out.items) == 1
        else:
            out = processor(sample)
            assert out.length == limit
        assert torch.equal(out.input_ids, full.input_ids[: out.length])
        assert torch.equal(out.labels, full.labels[: out.length])
    strict = MultimodalProcessor(chat_tokenizer, processors, max_length=5, truncation="error")
    with pytest.raises(DataError, match=r"'long'.*\d+ tokens, more than max_length=5"):
        strict(sample)


def test_an_instance_at_the_start_that_does_not_fit_is_an_error(chat_tokenizer, processors):
    processor = MultimodalProcessor(chat_tokenizer, processors, max_length=3, chat_template="plain")
    no_bos = {"text": "<image>", "modalities": [{"type": "image", "value": png_bytes(32, 32)}]}
    chat_tokenizer.bos_token = None
    with pytest.raises(DataError, match=r"cannot shorten .*first modality instance"):
        processor(no_bos)


def test_a_prompt_of_one_assistant_turn_is_a_data_error(chat_tokenizer, processors):
    # found by the fuzz suite: the server answered it with a 500 (the template got no message)
    processor = MultimodalProcessor(chat_tokenizer, processors)
    row = {"id": "r", "messages": [{"role": "assistant", "content": "hi"}]}
    with pytest.raises(DataError, match="sample 'r': nothing to answer: the conversation is one"):
        processor.process(row, generation=True)


def test_a_template_that_refuses_a_conversation_is_a_data_error(processors):
    strict = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system turns here') }}{% endif %}{{ m['content'] }}{% endfor %}"
    )
    processor = MultimodalProcessor(make_tokenizer(strict), processors, on_error="skip")
    row = {"id": "s", "conversations": [{"role": "system", "content": "x"},
                                        {"role": "user", "content": "y"},
                                        {"role": "assistant", "content": "z"}]}  # fmt: skip
    with pytest.raises(DataError, match="sample 's': the chat template refuses the conversation"):
        processor.process(row)
