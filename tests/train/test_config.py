"""Config errors: every mistake is one line naming the file, line and key (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmgen.errors import ConfigError
from mmgen.train.config import load_config

VALID = """\
output_dir: runs/x
model:
  text_config: {model_type: llama, hidden_size: 32}
  tokenizer: tok
modalities:
  audio:
    config: {max_batch_size: 4}
data:
  train: data/train.jsonl
packing:
  capacity: 512
stages:
  - name: alignment
    steps: 10
  - name: end_to_end
    steps: 20
    lr: 1.0e-4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "configs" / "train.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.total_steps == 30
    assert config.stages[1].lr == 1e-4
    assert config.packing.strategy == "bfd"
    assert config.modalities["audio"].config == {"max_batch_size": 4}
    # relative paths are relative to the config's folder outside a project
    assert config.path(config.data.train) == tmp_path / "configs" / "data" / "train.jsonl"


def test_paths_are_relative_to_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.mmgen]\npackage = "demo"\n')
    config = load_config(write(tmp_path, VALID))
    assert config.path("data/train.jsonl") == tmp_path / "data" / "train.jsonl"


def test_a_missing_local_model_path_is_not_taken_for_a_hub_name(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.mmgen]\npackage = "demo"\n')
    config = load_config(write(tmp_path, VALID))
    (tmp_path / "tok").mkdir()
    assert config.name_or_path("tok", "model", "tokenizer") == str(tmp_path / "tok")
    assert config.name_or_path("Qwen/Qwen2.5-0.5B", "model", "llm") == "Qwen/Qwen2.5-0.5B"
    for value in ("data/demo-audio/tokenizer", "./tok2", "/nowhere/tok"):
        with pytest.raises(ConfigError) as caught:
            config.name_or_path(value, "model", "tokenizer")
        assert str(caught.value).startswith(f"{config.source}:4: model.tokenizer: no such file")


def test_unknown_key_names_file_line_and_suggestion(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("  capacity: 512", "  capacty: 512"))
    assert message.endswith("train.yaml:11: packing.capacty: unknown key; did you mean 'capacity'?")


def test_unknown_key_inside_a_named_modality(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("    config: {max", "    confg: {max"))
    assert "train.yaml:7: modalities.audio.confg: unknown key; did you mean 'config'?" in message


def test_unknown_key_inside_a_stage(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("    lr: 1.0e-4", "    learning_rate: 1.0e-4"))
    assert "train.yaml:17: stages[1].learning_rate: unknown key; expected one of name," in message


def test_wrong_type_and_bad_value(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("steps: 10", "steps: ten"))
    assert "train.yaml:14: stages[0].steps:" in message and "integer" in message
    message = error_of(tmp_path, VALID.replace("capacity: 512", "capacity: 0"))
    assert "train.yaml:11: packing.capacity: Input should be greater than 0" in message


def test_group_by_length_needs_the_padded_layout(tmp_path: Path) -> None:
    grouped = VALID.replace("capacity: 512", "capacity: 512\n  group_by_length: true")
    message = error_of(tmp_path, grouped)
    assert "train.yaml:10: packing: " in message and "group_by_length applies to layout" in message
    config = load_config(write(tmp_path, grouped), ["packing.layout=padded"])
    assert config.packing.group_by_length and config.packing.layout == "padded"


def test_missing_required_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("data:\n  train: data/train.jsonl\n", ""))
    assert message.endswith("train.yaml:1: data: required key is missing")


def test_a_stage_that_is_no_preset_must_say_what_trains(tmp_path: Path) -> None:
    text = VALID.replace("  - name: alignment\n", "  - name: warmup\n    train: {llm: false}\n")
    message = error_of(tmp_path, text)
    assert "stages[0]:" in message and "train.encoders, train.projectors" in message
    assert "did you mean" not in message
    typo = error_of(tmp_path, VALID.replace("  - name: alignment\n", "  - name: alignmnt\n"))
    assert (
        "stage 'alignmnt' is not a preset (alignment, end_to_end, lora, full); did you mean"
        " 'alignment'?; or set train.llm" in typo
    )


def test_one_source_for_the_llm(tmp_path: Path) -> None:
    text = VALID.replace("  tokenizer: tok\n", "  tokenizer: tok\n  llm: gpt2\n")
    assert "train.yaml:2: model: " in error_of(tmp_path, text)


def test_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, VALID.replace("  capacity: 512", "  capacity: [512"))
    assert message.startswith(str(tmp_path / "configs" / "train.yaml") + ":")
    assert ": yaml: " in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_replace_values_before_validation(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    config = load_config(path, ["stages.1.steps=5", "packing.capacity=64", "seed=3"])
    assert (config.stages[1].steps, config.packing.capacity, config.seed) == (5, 64, 3)
    with pytest.raises(ConfigError, match=r"expected dotted\.key=value"):
        load_config(path, ["stages.1.steps"])


def test_a_mistake_made_by_an_override_names_the_override(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    for overrides, expected in (
        (["stages.1.steps=-1"], "--set stages.1.steps=-1: stages[1].steps: Input should be"),
        (["packing.capacty=64"], "--set packing.capacty=64: packing.capacty: unknown key; did"),
        (["packing={capacty: 64}"], "--set packing={capacty: 64}: packing.capacty: unknown key"),
    ):
        with pytest.raises(ConfigError) as caught:
            load_config(path, overrides)
        assert str(caught.value).startswith(expected), caught.value
    # keys the override did not touch keep their file line; later errors see the override too
    typo = write(tmp_path / "typo", VALID.replace("capacity", "capacty"))
    with pytest.raises(ConfigError, match=rf"^{typo}:11: packing.capacty: unknown key"):
        load_config(typo, ["seed=3"])
    config = load_config(path, ["data.train=elsewhere.jsonl"])
    assert config.where("data", "train") == "--set data.train=elsewhere.jsonl: data.train"
    assert config.where("packing", "capacity") == f"{path}:11: packing.capacity"


def test_the_init_config_s_training_controls_validate_uncommented(tmp_path: Path) -> None:
    """``mmgen init``'s commented config shows per-part LRs, LoRA on the encoders and the
    checkpointing switches; uncommented as they stand, they are a valid config."""
    import re

    from typer.testing import CliRunner

    from mmgen.cli import app

    result = CliRunner().invoke(app, ["init", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    path = tmp_path / "demo" / "configs" / "train.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("gradient_checkpointing: false") == 2  # the LLM's and the encoder's
    text = re.sub(r"^  lr: 1\.0e-3 .*\n", "", text, flags=re.M)
    text = text.replace("  # lr: {llm:", "  lr: {llm:")
    for key in ("max_windows", "boundary_start", "boundary_end"):  # the modality's own fields
        text = re.sub(rf"^( +)# ({key}: )", r"\1\2", text, flags=re.M)
    lines = text.splitlines(keepends=True)
    start = lines.index("  # - name: lora\n")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  #   "))
    lines[start:end] = [line.replace("  # ", "  ", 1) for line in lines[start:end]]
    path.write_text("".join(lines), encoding="utf-8")
    switches = ["model", "modalities.audio"]
    config = load_config(path, [f"{key}.gradient_checkpointing=true" for key in switches])
    assert config.optimizer.lr.llm == 2e-5 and config.optimizer.lr.lora == 2e-4
    lora = config.stages[-1]
    assert lora.name == "lora" and lora.lora.encoder_target_modules == ["q_proj", "v_proj"]
    assert lora.train.encoders == "lora" and lora.lora.dropout == 0.05
    assert config.model.gradient_checkpointing and config.modalities["audio"].gradient_checkpointing
    audio = config.modalities["audio"].config
    assert audio["max_windows"] == 4
    assert (audio["boundary_start"], audio["boundary_end"]) == ("<audio_start>", "<audio_end>")


def test_the_readme_s_training_controls_are_a_valid_config(tmp_path: Path) -> None:
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("**Training controls**")
    block = re.search(r"```yaml\n(.*?)```", readme[start:], re.S).group(1)
    controls = yaml.safe_load(block)
    config = yaml.safe_load(VALID)
    config["model"].update(controls["model"])
    config["modalities"] = controls["modalities"]
    config["optimizer"], config["stages"] = controls["optimizer"], controls["stages"]
    loaded = load_config(write(tmp_path, yaml.safe_dump(config)))
    assert loaded.model.gradient_checkpointing
    assert loaded.modalities["image"].gradient_checkpointing
    assert loaded.optimizer.lr.encoders == 1e-5 and loaded.stages[1].lr.llm == 1e-5
    assert loaded.stages[2].lora.encoder_target_modules == ["q_proj", "v_proj"]
