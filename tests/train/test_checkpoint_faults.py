"""Fault injection on the training state (in one process, small and fast): damaged checkpoints
are found and skipped, crafted ones run nothing, saved models are self-contained, a non-finite
loss or media value cannot poison a run.

The run under test uses a generated modality (``conftest.speech_project``), whose config names
its encoder and feature extractor by path: the files a self-contained checkpoint must carry.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mmgen.errors import CheckpointError, DataError, TrainingError
from mmgen.train.checkpoint import read_state
from mmgen.train.config import load_config
from mmgen.train.loop import train
from mmgen.train.manifest import MANIFEST_FILE, write_manifest
from mmgen.train.metrics import METRICS_FILE
from tests.train.helpers import speech_config, train_losses, write_config

STEPS = 6


@pytest.fixture(scope="module")
def finished(audio_data: Path, speech_project: Path, tmp_path_factory) -> Path:
    """A finished 6-step run with checkpoints at steps 2, 4 and 6 (do not modify: copy)."""
    root = tmp_path_factory.mktemp("finished")
    config = speech_config(audio_data, root / "run", stages=[{"name": "full", "steps": STEPS}],
                           checkpoint={"every": 2, "keep": 3})  # fmt: skip
    write_config(root / "train.yaml", config)
    train(load_config(root / "train.yaml"))
    return root


def copy_run(finished: Path, tmp_path: Path, *overrides: str):
    """A private copy of the finished run and its config (with ``overrides`` applied)."""
    shutil.copytree(finished / "run", tmp_path / "run")
    config = yaml_config(finished / "train.yaml")
    config["output_dir"] = str(tmp_path / "run")
    path = write_config(tmp_path / "train.yaml", config)
    return tmp_path / "run", load_config(path, list(overrides))


def yaml_config(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def data_start(path: Path) -> int:
    """Where a safetensors file's tensor bytes begin (after its 8-byte length and header)."""
    (header,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header


def flip_bit(path: Path, offset: int | None = None) -> None:
    content = bytearray(path.read_bytes())
    offset = len(content) // 2 if offset is None else offset
    content[offset] ^= 0x10
    path.write_bytes(bytes(content))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def write_nan(path: Path) -> None:
    """fp32 NaN over one weight in the middle of a safetensors file; the header stays valid."""
    start = data_start(path)
    offset = start + ((path.stat().st_size - start) // 2) // 4 * 4
    content = bytearray(path.read_bytes())
    content[offset : offset + 4] = struct.pack("<f", math.nan)
    path.write_bytes(bytes(content))


# -- every file of a checkpoint, damaged in turn -----------------------------------------------


def test_every_file_truncated_or_bit_flipped_is_found(finished: Path, tmp_path: Path) -> None:
    source = finished / "run/checkpoints/step-00000006"
    listed = json.loads((source / MANIFEST_FILE).read_text())["files"]
    assert {
        "trainer_state.json",
        "trainer_state.safetensors",
        "model/llm/model.safetensors",
        "model/modalities/audio/model.safetensors",
        "model/modalities/audio/assets/encoder_name_or_path/config.json",
    } <= set(listed)
    for name in [*sorted(listed), MANIFEST_FILE]:
        for damage, why in ((truncate, "truncated"), (flip_bit, "SHA-256 differs")):
            folder = tmp_path / f"{damage.__name__}-{name.replace('/', '_')}"
            shutil.copytree(source, folder)
            damage(folder / name)
            if name == MANIFEST_FILE:
                why = "unreadable" if damage is truncate else ""
            with pytest.raises(CheckpointError, match="not a valid checkpoint") as caught:
                read_state(folder)
            assert str(folder / name) in str(caught.value) or name == MANIFEST_FILE
            assert why in str(caught.value), (name, str(caught.value))
            shutil.rmtree(folder)
    read_state(source)  # the untouched one verifies


# -- resuming past a damaged newest checkpoint -------------------------------------------------


def nan_in_weights(folder: Path) -> None:
    write_nan(folder / "model/llm/model.safetensors")


def delete_state(folder: Path) -> None:
    (folder / "trainer_state.json").unlink()


def truncate_state(folder: Path) -> None:
    truncate(folder / "trainer_state.json")


def truncate_weights(folder: Path) -> None:
    truncate(folder / "model/modalities/audio/model.safetensors")


def truncate_config(folder: Path) -> None:
    truncate(folder / "model/config.json")


@pytest.mark.parametrize(
    "damage", [nan_in_weights, delete_state, truncate_state, truncate_weights, truncate_config]
)
def test_resume_falls_back_past_a_damaged_newest_checkpoint(
    finished: Path, tmp_path: Path, capsys, damage
) -> None:
    run, config = copy_run(finished, tmp_path, "stages.0.steps=8")
    damage(run / "checkpoints/step-00000006")
    capsys.readouterr()
    result = train(config, resume="auto")
    out = capsys.readouterr().out
    assert result.steps == 8
    assert "checkpoint step-00000006 does not verify" in out, out
    assert "moved aside to step-00000006.invalid" in out
    assert "resuming from step-00000004, the newest checkpoint that verifies" in out
    losses = train_losses(run)
    assert sorted(losses) == list(range(1, 9)) and all(math.isfinite(v) for v in losses.values())
    # steps 5 and 6 again, from the same state, data and RNG: the same losses as the first time
    reference = train_losses(finished / "run")
    assert losses[5] == reference[5] and losses[6] == reference[6]
    lines = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in lines]
    assert len(keys) == len(set(keys)), keys  # every record once
    assert (run / "checkpoints/step-00000006.invalid").is_dir()


def test_when_no_checkpoint_verifies_the_run_stops_with_one_line(finished, tmp_path) -> None:
    run, config = copy_run(finished, tmp_path)
    for step in (2, 4, 6):
        truncate_state(run / f"checkpoints/step-{step:08d}")
    with pytest.raises(CheckpointError) as caught:
        train(config, resume="auto")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot resume: none of the 3 checkpoint")
    assert "step-00000006" in message and "trainer_state.json" in message


def test_non_finite_weights_under_a_matching_manifest_are_caught(finished, tmp_path) -> None:
    run, config = copy_run(finished, tmp_path)
    checkpoint = run / "checkpoints/step-00000006"
    nan_in_weights(checkpoint)
    (checkpoint / MANIFEST_FILE).unlink()
    write_manifest(checkpoint, step=6)  # as if the NaN had been saved
    with pytest.raises(CheckpointError, match=r"language_model\..* holds non-finite values"):
        train(config, resume=str(checkpoint))


# -- crafted checkpoints: nothing in them runs -------------------------------------------------


class RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


PLACES = [
    "trainer_state.json",
    "trainer_state.safetensors",
    "trainer_state.pt",  # the pickle an older mmgen wrote, added beside
    MANIFEST_FILE,
    "model/config.json",
    "model/llm/config.json",
    "model/llm/model.safetensors",
    "model/llm/pytorch_model.bin",  # in place of model.safetensors
    "model/modalities/audio/config.json",
    "model/modalities/audio/model.safetensors",
    "model/modalities/audio/assets/encoder_name_or_path/config.json",
    "model/modalities/audio/assets/processor_name_or_path/preprocessor_config.json",
]


@pytest.mark.parametrize("consistent", [False, True], ids=["stale-manifest", "forged-manifest"])
@pytest.mark.parametrize("place", PLACES)
def test_a_crafted_pickle_anywhere_runs_nothing(finished, tmp_path, place, consistent) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps(RunsACommand(marker))
    checkpoint = tmp_path / "shared-checkpoint"
    shutil.copytree(finished / "run/checkpoints/step-00000006", checkpoint)
    if place.endswith("pytorch_model.bin"):
        (checkpoint / "model/llm/model.safetensors").unlink()
    (checkpoint / place).write_bytes(payload)
    if consistent and place != MANIFEST_FILE:  # an attacker lists the pickle in the manifest
        (checkpoint / MANIFEST_FILE).unlink()
        write_manifest(checkpoint, step=6)
    config = load_config(finished / "train.yaml", [f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(CheckpointError) as caught:
        train(config, resume=str(checkpoint))
    message = str(caught.value)
    assert "not a valid checkpoint" in message and "\n" not in message
    assert str(checkpoint) in message
    assert not marker.exists(), "the pickle in the checkpoint ran"
    pickle.loads(payload)  # the control: this payload does run when unpickled
    assert marker.exists()


def test_mmgen_never_unpickles() -> None:
    import mmgen

    root = Path(mmgen.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for call in ("torch.load(", "pickle.load", "weights_only=False"):
            assert call not in text, f"{path.relative_to(root)} calls {call}"


# -- self-contained saves ----------------------------------------------------------------------


def test_saves_after_a_resume_are_self_contained(finished: Path, tmp_path: Path) -> None:
    run, config = copy_run(finished, tmp_path, "stages.0.steps=10", "checkpoint.keep=1")
    train(config, resume="auto")  # from step 6; rotation deletes step-6 and its assets folder
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000010"]
    for folder in (run / "model", run / "checkpoints/step-00000010/model"):
        assets = folder / "modalities/audio/assets"
        assert sorted(p.name for p in assets.iterdir()) == [
            "encoder_name_or_path", "processor_name_or_path"
        ]  # fmt: skip
        for path in folder.rglob("*"):  # no path outside the folder, in any file
            if path.is_file() and path.suffix in (".json", ".jinja", ".txt"):
                text = path.read_text(encoding="utf-8")
                assert str(tmp_path) not in text and str(finished) not in text, path
    # the final model alone, moved away from everything the run wrote, loads and runs
    moved = shutil.copytree(run / "model", tmp_path / "elsewhere/model")
    shutil.rmtree(run / "random_init")
    shutil.rmtree(run / "model")
    from mmgen.model import MultimodalModel

    model = MultimodalModel.from_pretrained(moved)
    processor = model.build_processor(_tokenizer(moved))
    assert processor.processors["audio"] is not None
    again = MultimodalModel.from_pretrained(tmp_path / "run/checkpoints/step-00000010/model")
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    # and the run resumes once more from a checkpoint written by a resumed run
    more = load_config(tmp_path / "train.yaml", ["stages.0.steps=12", "checkpoint.keep=1"])
    assert train(more, resume="auto").steps == 12
    MultimodalModel.from_pretrained(run / "model")


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


# -- non-finite losses and media ---------------------------------------------------------------


@pytest.fixture
def nan_at_step(monkeypatch):
    """``nan_at_step(n)``: the n-th training forward returns a NaN loss (n=3: step 3)."""
    from mmgen.model import MultimodalModel

    real = MultimodalModel.forward

    def arm(step: int) -> None:
        calls = {"n": 0}

        def forward(self, *args, **kwargs):
            out = real(self, *args, **kwargs)
            if self.training:
                calls["n"] += 1
                if calls["n"] == step:
                    out.loss = out.loss * math.nan
            return out

        monkeypatch.setattr(MultimodalModel, "forward", forward)

    return arm


def test_a_non_finite_loss_stops_the_run_without_saving_it(finished, tmp_path, nan_at_step):
    config = load_config(
        finished / "train.yaml", [f"output_dir={tmp_path / 'run'}", "checkpoint.every=1"]
    )
    nan_at_step(3)
    with pytest.raises(TrainingError) as caught:
        train(config)
    message = str(caught.value)
    assert message.startswith("step 3: the loss is nan")
    assert "stopped without saving this state" in message and "step-00000002" in message
    assert "train.on_nonfinite: skip" in message
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000001", "step-00000002"
    ]  # fmt: skip
    assert not (run / "model").exists()
    assert sorted(train_losses(run)) == [1, 2]


def test_on_nonfinite_skip_skips_and_counts(finished, tmp_path, nan_at_step, capsys) -> None:
    overrides = [f"output_dir={tmp_path / 'run'}", "train.on_nonfinite=skip"]
    config = load_config(finished / "train.yaml", overrides)
    nan_at_step(3)
    result = train(config)
    assert result.steps == STEPS
    assert "step 3: the loss is nan (gradient norm nan): skipped (1 skipped so far)" in (
        capsys.readouterr().out
    )
    run = tmp_path / "run"
    records = {r["step"]: r for r in _train_records(run)}
    assert "loss" not in records[3] and records[3]["skipped_steps"] == 1
    assert all(math.isfinite(records[s]["loss"]) for s in records if s != 3)
    assert read_state(run / "checkpoints/step-00000006")["skipped_steps"] == 1
    # the skipped step changed no weight: steps 1-2 as the reference run, then one step fewer
    from mmgen.model import MultimodalModel

    model = MultimodalModel.from_pretrained(run / "model")
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def _train_records(run: Path) -> list[dict]:
    lines = (run / METRICS_FILE).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def nan_row(kind: str, data: Path) -> str:
    wave = (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    wave[4000] = np.nan
    if kind == "array":
        value = {"array": wave.tolist(), "sampling_rate": 16000}
    else:  # a float WAV file that holds a NaN sample
        soundfile.write(data / "nan.wav", wave, 16000, subtype="FLOAT")
        value = {"path": "nan.wav"}
    return json.dumps({
        "id": f"nan-{kind}",
        "conversations": [{"role": "user", "content": "What notes are played in <audio>?"},
                          {"role": "assistant", "content": "C4 C4 C4"}],
        "modalities": [{"type": "audio", "value": value}],
    })  # fmt: skip


@pytest.mark.parametrize("kind", ["array", "wav"])
def test_non_finite_media_values_are_a_bad_sample(finished, audio_data, tmp_path, kind) -> None:
    data = Path(shutil.copytree(audio_data, tmp_path / "data"))
    train_file = data / "train.jsonl"
    train_file.write_text(train_file.read_text() + nan_row(kind, data) + "\n")
    overrides = [f"output_dir={tmp_path / 'run'}", f"data.train={train_file}"]
    config = load_config(finished / "train.yaml", overrides)
    with pytest.raises(DataError, match=rf"sample 'nan-{kind}'.*NaN or infinite"):
        train(config)
    skipping = load_config(finished / "train.yaml", [*overrides, "data.on_error=skip"])
    result = train(skipping, overwrite=True)
    assert result.steps == STEPS
    assert all(math.isfinite(v) for v in train_losses(tmp_path / "run").values())


def test_a_final_model_verifies_and_init_from_refuses_a_damaged_one(finished, tmp_path) -> None:
    from mmgen.train.manifest import verify_manifest

    assert verify_manifest(finished / "run/model")["files"]  # the final model has its manifest
    model = Path(shutil.copytree(finished / "run/model", tmp_path / "model"))
    flip_bit(model / "llm/model.safetensors")
    overrides = [f"output_dir={tmp_path / 'run'}", "model.text_config=null",
                 f"model.init_from={model}"]  # fmt: skip
    with pytest.raises(CheckpointError, match=r"llm/model\.safetensors: not a valid checkpoint"):
        train(load_config(finished / "train.yaml", overrides))
