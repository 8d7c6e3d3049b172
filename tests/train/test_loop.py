"""The training loop in one process: it learns, logs, checkpoints, resumes exactly, chains
stages, and its outputs load as a MultimodalModel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmgen.errors import ConfigError
from mmgen.train.checkpoint import read_state
from mmgen.train.config import load_config
from mmgen.train.loop import FINAL_MODEL_DIR, train
from mmgen.train.metrics import read_metrics
from tests.train.helpers import train_losses

losses = train_losses


def test_trains_logs_checkpoints_and_saves_a_loadable_model(config_file) -> None:
    config = load_config(config_file(stages=[{"name": "full", "steps": 6}]))
    result = train(config)
    run = result.output_dir
    assert result.steps == 6 and result.stopped_by is None
    history = losses(run)
    assert sorted(history) == [1, 2, 3, 4, 5, 6]
    assert history[6] < history[1]  # it learns something in six steps
    records = read_metrics(run / "metrics.jsonl")
    train_records = [r for r in records if r["kind"] == "train"]
    assert all(r["tokens_per_s"] > 0 and 0 < r["packing"] <= 1 for r in train_records)
    assert [r["step"] for r in records if r["kind"] == "test"] == [6]
    # the last K=2 checkpoints stay, complete
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step-00000004", "step-00000006"]
    state = read_state(run / "checkpoints/step-00000006")  # verified against its manifest
    assert state["step"] == 6

    from mmgen.model import MultimodalModel

    final = MultimodalModel.from_pretrained(run / FINAL_MODEL_DIR)
    last = MultimodalModel.from_pretrained(run / "checkpoints/step-00000006/model")
    expected = last.state_dict()
    for name, value in final.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_resumed_run_matches_the_uninterrupted_one_step_for_step(config_file, tmp_path) -> None:
    path = config_file(stages=[{"name": "full", "steps": 6}], checkpoint={"every": 3, "keep": 2})
    whole = train(load_config(path)).output_dir
    # a second run continues from the first one's step-3 checkpoint into a fresh folder
    config = load_config(path, [f"output_dir={tmp_path / 'resumed'}"])
    result = train(config, resume=str(whole / "checkpoints/step-00000003"))
    assert result.steps == 6
    resumed = losses(result.output_dir)
    assert sorted(resumed) == [4, 5, 6]
    reference = losses(whole)
    for step, loss in resumed.items():
        assert loss == reference[step], (step, loss, reference[step])


def test_stages_chain_and_train_only_their_parts(config_file) -> None:
    stages = [
        {"name": "alignment", "steps": 2},
        {"name": "end_to_end", "steps": 2, "lr": 1e-3},
    ]
    path = config_file(stages=stages, checkpoint={"every": 2, "keep": 3})
    run = train(load_config(path)).output_dir

    from mmgen.model import MultimodalModel

    def weights(step: int) -> dict[str, torch.Tensor]:
        model = MultimodalModel.from_pretrained(run / f"checkpoints/step-{step:08d}/model")
        return {k: v.clone() for k, v in model.state_dict().items()}

    after_alignment, after_end_to_end = weights(2), weights(4)
    initial = _initial_weights(run)

    def changed(a, b, prefix):
        return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))

    encoder, projector = "modalities.audio.encoder.", "modalities.audio.projector."
    llm = "language_model."
    assert changed(initial, after_alignment, projector)
    assert not changed(initial, after_alignment, llm)
    assert not changed(initial, after_alignment, encoder)
    assert changed(after_alignment, after_end_to_end, llm)
    assert changed(after_alignment, after_end_to_end, projector)
    assert not changed(after_alignment, after_end_to_end, encoder)


def _initial_weights(run: Path) -> dict[str, torch.Tensor]:
    """The run's random init, rebuilt from its config (the same seed gives the same weights)."""
    from mmgen.train import build
    from mmgen.train.distributed import World

    config = load_config(run.parent / "train.yaml")
    tokenizer = build.load_tokenizer(config)
    world = World(0, 1, 0, torch.device("cpu"))
    return build.build_model(config, tokenizer, world).state_dict()


def test_lora_stage_trains_adapters_and_keeps_the_base_llm(config_file) -> None:
    lora = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    stages = [{"name": "lora", "steps": 2, "lora": lora}]
    run = train(load_config(config_file(stages=stages))).output_dir
    checkpoint = run / "checkpoints/step-00000002/model"
    assert (checkpoint / "llm_adapter").is_dir()
    config = json.loads((checkpoint / "llm_adapter/adapter_config.json").read_text())
    assert config["r"] == 4
    from mmgen.model import MultimodalModel

    trained = MultimodalModel.from_pretrained(checkpoint)
    initial = _initial_weights(run)
    base = trained.language_model.get_base_model().state_dict()
    for name, value in initial.items():
        if name.startswith("language_model."):
            key = name.removeprefix("language_model.")
            key = next(k for k in base if k.replace(".base_layer", "") == key)
            assert torch.equal(base[key], value), name
    lora_b = [v for k, v in trained.state_dict().items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # adapters moved off zero


@pytest.mark.parametrize("layout", ["padded"])
def test_padded_layout_trains_too(config_file, layout) -> None:
    result = train(load_config(config_file(packing={"layout": layout, "batch_size": 8})))
    history = losses(result.output_dir)
    assert sorted(history) == [1, 2, 3, 4]


def test_a_second_run_needs_resume_or_overwrite(config_file) -> None:
    path = config_file(stages=[{"name": "full", "steps": 4}])
    run = train(load_config(path)).output_dir
    with pytest.raises(ConfigError, match="holds checkpoints of an earlier run: pass --resume"):
        train(load_config(path))
    # resuming a finished run trains nothing more and appends no training step
    assert train(load_config(path), resume="auto").steps == 4
    assert sorted(losses(run)) == [1, 2, 3, 4]
    # --overwrite that fails before training (a mistyped data path) loses nothing
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    broken = load_config(path, ["data.train=missing.jsonl"])
    with pytest.raises(ConfigError, match=r"data\.train: file not found"):
        train(broken, overwrite=True)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == kept
    assert sorted(losses(run)) == [1, 2, 3, 4]
    # --overwrite starts again: the earlier run's checkpoints and metrics are gone
    shorter = load_config(path, ["stages.0.steps=2", "checkpoint.every=1"])
    assert train(shorter, overwrite=True).steps == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000001",
        "step-00000002",
    ]
    assert sorted(losses(run)) == [1, 2]


def test_printed_progress_lines_agree_with_the_metrics_file(config_file, capsys) -> None:
    path = config_file(
        stages=[{"name": "full", "steps": 4}], logging={"every": 2, "progress": True, "plot": False}
    )
    run = train(load_config(path)).output_dir
    printed = [line.split() for line in capsys.readouterr().out.splitlines()]
    shown = {
        int(p[1].split("/")[0]): float(p[3]) for p in printed if p[:1] == ["step"] and "/" in p[1]
    }
    logged = losses(run)  # the mean over the steps since the previous line
    assert sorted(shown) == sorted(logged) == [2, 4]
    assert all(shown[step] == round(logged[step], 4) for step in shown), (shown, logged)
