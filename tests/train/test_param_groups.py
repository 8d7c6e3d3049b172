"""Per-part learning rates and weight decay: the optimizer's groups (which parameters, LR,
decay), a part at LR 0 left as it was, the start-up summary, and an exact resume with groups."""

from __future__ import annotations

import pytest
import torch

from mmgen.errors import ConfigError
from mmgen.model.trainable import PARTS, parameter_parts
from mmgen.train import build, stages
from mmgen.train.config import PartValues, load_config
from mmgen.train.distributed import World
from mmgen.train.loop import train
from mmgen.train.param_groups import no_decay_parameters
from tests.train.helpers import train_losses

PER_PART = {"llm": 1e-3, "encoders": 1e-5, "projectors": 1e-2}


def _model(config):
    tokenizer = build.load_tokenizer(config)
    return build.build_model(config, tokenizer, World(0, 1, 0, torch.device("cpu")))


def _groups(optimizer) -> dict[tuple[str, bool], dict]:
    return {(g["part"], g["decay"]): g for g in optimizer.param_groups}


def test_the_part_names_are_the_config_keys() -> None:
    assert tuple(PartValues.model_fields) == PARTS


def test_a_group_per_part_and_decay_with_its_lr(config_file) -> None:
    optimizer_section = {"lr": PER_PART, "weight_decay": 0.1}
    config = load_config(config_file(optimizer=optimizer_section))
    model = _model(config)
    stages.apply_stage(model, config.stages[0])  # full: everything trains
    optimizer, scheduler = stages.make_optimizer(config, config.stages[0], model)
    groups = _groups(optimizer)
    assert [(g["part"], g["decay"]) for g in optimizer.param_groups] == [
        ("llm", True), ("llm", False), ("encoders", True), ("encoders", False),
        ("projectors", True), ("projectors", False),
    ]  # fmt: skip
    names = dict(model.named_parameters())
    by_id = {id(p): n for n, p in names.items()}
    grouped = {by_id[id(p)]: key for key, g in groups.items() for p in g["params"]}
    assert set(grouped) == set(names)  # every parameter, once
    parts = parameter_parts(model)
    for name, (part, decay) in grouped.items():
        assert part == parts[name], name
        assert decay == (names[name].dim() >= 2 and "norm" not in name), name
    for (part, decay), group in groups.items():
        assert group["lr"] == PER_PART[part]
        assert group["weight_decay"] == (0.1 if decay else 0.0)
    # the encoder's LayerNorm weights, the LLM's RMSNorm weights, biases: undecayed
    assert grouped["language_model.model.layers.0.input_layernorm.weight"] == ("llm", False)
    assert grouped["language_model.model.layers.0.self_attn.q_proj.weight"] == ("llm", True)
    assert grouped["modalities.audio.encoder.layer_norm.weight"] == ("encoders", False)
    assert grouped["modalities.audio.encoder.conv1.weight"] == ("encoders", True)
    projector = [n for n in names if n.startswith("modalities.audio.projector.")]
    assert {grouped[n] for n in projector if n.endswith(".bias")} == {("projectors", False)}
    assert {grouped[n] for n in projector if n.endswith(".weight")} == {("projectors", True)}
    # a 2-D weight of a norm layer (by its type) is not decayed either
    norm = torch.nn.LayerNorm(4)
    norm.weight = torch.nn.Parameter(torch.ones(2, 2))
    assert id(norm.weight) in no_decay_parameters(norm)
    # the schedule scales every group alike: the parts keep their ratios
    for _ in range(2):
        optimizer.step()
        scheduler.step()
        lrs = {g["part"]: g["lr"] for g in optimizer.param_groups}
        assert lrs["llm"] / lrs["projectors"] == pytest.approx(0.1)
        assert lrs["encoders"] / lrs["projectors"] == pytest.approx(1e-3)


def test_a_stage_lr_overrides_every_part_or_the_parts_it_names(config_file) -> None:
    stage_list = [
        {"name": "full", "steps": 2, "lr": 5e-4},
        {"name": "end_to_end", "steps": 2, "lr": {"projectors": 2e-2}},
    ]
    config = load_config(config_file(stages=stage_list, optimizer={"lr": PER_PART}))
    model = _model(config)
    for stage, expected in zip(
        config.stages, [dict.fromkeys(PER_PART, 5e-4), {**PER_PART, "projectors": 2e-2}],
        strict=True,
    ):  # fmt: skip
        stages.apply_stage(model, stage)
        optimizer, _ = stages.make_optimizer(config, stage, model)
        for group in optimizer.param_groups:
            assert group["lr"] == expected[group["part"]]


def test_a_part_that_trains_needs_an_lr(config_file) -> None:
    path = config_file(optimizer={"lr": {"llm": 1e-3, "projectors": 1e-3}})
    config = load_config(path)
    model = _model(config)
    stages.apply_stage(model, config.stages[0])  # full: the encoders train too
    with pytest.raises(ConfigError) as caught:
        stages.make_optimizer(config, config.stages[0], model)
    message = str(caught.value)
    assert "optimizer.lr: no lr for the encoders part, which stage 'full' trains" in message
    assert str(path) in message


def test_config_errors_of_per_part_values(config_file) -> None:
    with pytest.raises(ConfigError, match=r"optimizer\.lr\.encoder: unknown key; did you mean"):
        load_config(config_file(optimizer={"lr": {"encoder": 1e-3}}))
    with pytest.raises(ConfigError, match=r"optimizer\.lr\.llm: Input should be greater than"):
        load_config(config_file(optimizer={"lr": {"llm": -1.0}}))
    with pytest.raises(ConfigError, match=r"optimizer\.lr: Input should be greater than 0"):
        load_config(config_file(optimizer={"lr": 0}))  # a number for all: 0 trains nothing
    config = load_config(config_file(optimizer={"lr": 1e-3, "weight_decay": {"llm": 0.1}}))
    assert config.optimizer.weight_decay.llm == 0.1


def test_a_part_at_lr_0_stays_while_the_others_move(config_file, capsys) -> None:
    lr = {"llm": 0.0, "encoders": 3e-3, "projectors": 3e-3}
    path = config_file(optimizer={"lr": lr, "weight_decay": 0.1})
    config = load_config(path)
    initial = _model(config).state_dict()
    run = train(config).output_dir
    from mmgen.model import MultimodalModel

    trained = MultimodalModel.from_pretrained(run / "model").state_dict()
    for name, value in initial.items():
        moved = not torch.equal(trained[name], value)
        assert moved != name.startswith("language_model."), name
    out = capsys.readouterr().out
    assert "  llm: " in out and "lr 0, weight decay 0.1" in out
    assert "  projectors (biases, norms): " in out and "lr 0.003, weight decay 0" in out


def test_resume_with_groups_repeats_the_run_step_for_step(config_file, tmp_path) -> None:
    section = {"lr": {"llm": 1e-3, "encoders": 2e-3, "projectors": 5e-3}, "weight_decay": 0.05}
    path = config_file(
        stages=[{"name": "full", "steps": 6}],
        optimizer=section,
        checkpoint={"every": 3, "keep": 2},
    )
    whole = train(load_config(path)).output_dir
    config = load_config(path, [f"output_dir={tmp_path / 'resumed'}"])
    result = train(config, resume=str(whole / "checkpoints/step-00000003"))
    resumed, reference = train_losses(result.output_dir), train_losses(whole)
    assert sorted(resumed) == [4, 5, 6]
    for step, loss in resumed.items():
        assert loss == reference[step], (step, loss, reference[step])


def test_the_model_card_shows_each_stage_s_lr_per_part() -> None:
    from mmgen.export.card import _stage_lr

    parts = {"llm": 2e-5, "encoders": None, "projectors": 1e-3, "lora": None}
    assert _stage_lr(1e-4, None) == "0.0001"
    assert _stage_lr(1e-4, 5e-4) == "0.0005"
    assert _stage_lr(parts, None) == "llm 2e-05, projectors 0.001"
    stage = {"llm": None, "encoders": None, "projectors": 1e-2, "lora": None}
    assert _stage_lr(parts, stage) == "llm 2e-05, projectors 0.01"
    assert _stage_lr(1e-4, stage) == "projectors 0.01, others 0.0001"
