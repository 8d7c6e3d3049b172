"""Mixtures in a training config (``data.train`` as a list of sources): each mistake is one line
at its config line; a run logs each source's share of the tokens, matching the weights, and a
resumed run repeats the uninterrupted one step for step."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmgen.errors import ConfigError
from mmgen.train import build
from mmgen.train.config import load_config
from mmgen.train.loop import train
from mmgen.train.metrics import read_metrics
from tests.train.helpers import make_config, train_losses, write_config

CONFIG = """\
model:
  text_config: {model_type: llama, hidden_size: 32}
  tokenizer: tok
data:
  train:
    - {path: a.jsonl, weight: 0.7}
    - path: b.jsonl
      weight: 0.3
stages:
  - name: full
    steps: 10
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "train.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert "\n" not in str(caught.value)
    return str(caught.value).removeprefix(f"{tmp_path / 'train.yaml'}:")


def test_the_list_spelling_loads_and_a_plain_path_still_does(tmp_path: Path) -> None:
    sources = load(tmp_path, CONFIG).data.train
    assert [(s.label, s.weight, s.epochs) for s in sources] == [("a", 0.7, None), ("b", 0.3, None)]
    plain = CONFIG.replace("  train:\n    - {path: a.jsonl, weight: 0.7}\n", "  train: c.jsonl\n")
    plain = plain.replace("    - path: b.jsonl\n      weight: 0.3\n", "")
    assert load(tmp_path, plain).data.train == "c.jsonl"
    named = CONFIG.replace("    - {path: a.jsonl, weight: 0.7}", "    - extra/b.jsonl")
    named = named.replace("      weight: 0.3", "      name: second")
    assert [s.label for s in load(tmp_path, named).data.train] == ["b", "second"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("      weight: 0.3", "      weight: 0.3\n      epochs: 2",
         "9: data.train[1].epochs: give weight or epochs, not both"),
        ("weight: 0.7", "weight: 0", "6: data.train[0].weight: Input should be greater than 0"),
        ("weight: 0.7", "weight: -0.5", "6: data.train[0].weight: Input should be greater than 0"),
        ("weight: 0.7}", "weight: 0.7, max_samples: 0}",
         "6: data.train[0].max_samples: Input should be greater than 0"),
        ("      weight: 0.3", "      epochs: 2",
         "8: data.train[1].epochs: epochs, but data.train[0] has a weight: give every source a"
         " weight or none (weights and epochs do not mix)"),
        ("      weight: 0.3", "      name: bee", "7: data.train[1]: no weight, but data.train[0]"),
        ("path: b.jsonl", "path: other/a.jsonl",
         "7: data.train[1].path: the name 'a' is taken by data.train[0]; give each source a name"),
        ("weight: 0.7", "wieght: 0.7", "6: data.train[0].wieght: unknown key; did you mean"),
        ("  train:\n    - {path: a.jsonl, weight: 0.7}\n", "  train: {path: a.jsonl}\n  x:\n",
         "5: data.train: expected a path, or a list of sources {path, weight | epochs, ...}"),
        ("  train:\n", "  train: []\n  x:\n", "5: data.train: List should have at least 1 item"),
    ],
)  # fmt: skip
def test_a_bad_source_is_one_line_at_its_config_line(tmp_path, old, new, message) -> None:
    assert old in CONFIG
    assert error_of(tmp_path, CONFIG.replace(old, new)).startswith(message)


def test_a_missing_source_file_is_reported_before_any_scan(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("")
    config = load(tmp_path, CONFIG)
    # no processor: the path check of every source comes before the first scan
    with pytest.raises(ConfigError) as caught:
        build.load_split(config, None, "train")
    assert str(caught.value) == (
        f"{tmp_path / 'train.yaml'}:7: data.train[1].path: file not found: {tmp_path / 'b.jsonl'}"
    )


def mixture_config(audio_data: Path, out: Path, steps: int, **sections):
    """Two sources of the tiny audio set: 48 rows (a) and 16 rows (b). Weights 0.7 / 0.3 make
    an epoch of 64 samples, 45 from a (down-sampled) and 19 from b (up-sampled)."""
    config = make_config(audio_data, out, stages=[{"name": "full", "steps": steps}], **sections)
    config["data"]["train"] = [
        {"path": str(audio_data / "train.jsonl"), "weight": 0.7, "name": "a"},
        {"path": str(audio_data / "eval.jsonl"), "weight": 0.3, "name": "b"},
    ]
    return config


def sources(run: Path) -> dict[int, dict[str, float]]:
    records = read_metrics(run / "metrics.jsonl")
    return {r["step"]: r["sources"] for r in records if r["kind"] == "train"}


def test_a_mixture_run_logs_source_shares_and_resumes_exactly(audio_data, tmp_path, capsys):
    logging = {"every": 1, "progress": True, "plot": False}
    config = mixture_config(audio_data, tmp_path / "whole", 12, logging=logging,
                            checkpoint={"every": 5, "keep": 3})  # fmt: skip
    path = write_config(tmp_path / "train.yaml", config)
    whole = train(load_config(path)).output_dir
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    kept = "data:   {}: {} of {} samples kept; {} per epoch ({} of samples, {} passes)"
    assert kept.format("a", 48, 48, 45, "70.3%", "0.938") in lines  # 45 of 48 rows
    assert kept.format("b", 16, 16, 19, "29.7%", "1.19") in lines  # every row + 3 more
    assert "6 batches per rank" in printed  # 12 steps: two whole epochs
    progress = [line.split() for line in lines if line.startswith("step ")]
    progress = [words[2::2] for words in progress if "/" in words[1]]
    assert len(progress) == 12 and all(keys == ["loss", "tok/s", "packing"] for keys in progress)

    shares = sources(whole)
    assert sorted(shares) == list(range(1, 13))
    assert all(set(s) == {"a", "b"} and abs(s["a"] + s["b"] - 1) < 1e-3 for s in shares.values())
    assert len({s["a"] for s in shares.values()}) > 2  # a pack's mix varies around the weights
    # an epoch's tokens: packing x capacity per step. Every demo sample has one length, so an
    # epoch's token share is its sample share, 45/64: the weight 0.7 up to whole samples
    records = [r for r in read_metrics(whole / "metrics.jsonl") if r["kind"] == "train"]
    for epoch in (records[:6], records[6:]):
        tokens = sum(r["packing"] for r in epoch)
        share = sum(r["sources"]["a"] * r["packing"] for r in epoch) / tokens
        assert abs(share - 0.7) < 0.01, share

    # resumed from step 5 (mid-epoch), it crosses the epoch boundary as the whole run did
    resumed = load_config(path, [f"output_dir={tmp_path / 'resumed'}"])
    result = train(resumed, resume=str(whole / "checkpoints/step-00000005"))
    again = sources(result.output_dir)
    assert sorted(again) == list(range(6, 13))
    assert all(again[step] == shares[step] for step in again)
    reference, losses = train_losses(whole), train_losses(result.output_dir)
    assert all(losses[step] == reference[step] for step in losses), (losses, reference)

    # the draw follows the seed: another seed mixes other rows into other packs
    other = load_config(path, [f"output_dir={tmp_path / 'other'}", "seed=1", "stages.0.steps=3"])
    assert sources(train(other).output_dir) != {k: v for k, v in shares.items() if k <= 3}


def test_a_padded_mixture_logs_shares_and_a_source_left_empty_is_an_error(audio_data, tmp_path):
    config = mixture_config(audio_data, tmp_path / "padded", 2,
                            packing={"layout": "padded", "batch_size": 16})  # fmt: skip
    run = train(load_config(write_config(tmp_path / "padded.yaml", config))).output_dir
    shares = sources(run)
    assert sorted(shares) == [1, 2] and all(0 < s["b"] < 1 for s in shares.values())

    config["data"]["train"][1] = {"path": config["data"]["train"][1]["path"], "epochs": 0.01}
    config["data"]["train"][0] = {"path": config["data"]["train"][0]["path"]}
    path = write_config(tmp_path / "empty.yaml", config)
    with pytest.raises(ConfigError) as caught:
        train(load_config(path), overwrite=True)
    assert str(caught.value).startswith(f"{path}:")
    assert str(caught.value).endswith(
        "data.train[1].epochs: gives 'eval' none of the 48 samples per epoch; raise it"
    )


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_the_counted_tokens_are_those_of_the_batch_just_drawn(audio_data, tmp_path, layout):
    import torch

    from mmgen.train.data import TrainData
    from mmgen.train.distributed import World

    packing = {"capacity": 256, "layout": layout, "batch_size": 10}
    config = mixture_config(audio_data, tmp_path / "run", 2, packing=packing)
    config = load_config(write_config(tmp_path / "train.yaml", config))
    tokenizer = build.load_tokenizer(config)
    world = World(0, 1, 0, torch.device("cpu"))
    model = build.build_model(config, tokenizer, world)
    data = TrainData(config, build.build_processor(config, model, tokenizer), world)
    for _ in range(9):  # 7 batches per epoch: into the second epoch
        batch = data.next_batch()
        if layout == "packed":
            lengths = (batch["cu_seqlens"][1:] - batch["cu_seqlens"][:-1]).tolist()
        else:
            lengths = batch["attention_mask"].sum(1).tolist()
        # the sources' rows: train-* (a) and eval-* (b)
        expected = [sum(n for n, i in zip(lengths, batch["sample_ids"], strict=True)
                        if i.startswith(prefix)) for prefix in ("train-", "eval-")]  # fmt: skip
        assert data.sizes([batch])[2] == expected
