"""``mmgen.load``: a run, a checkpoint or a model folder becomes the model and a ready processor;
the saved model records where its modalities' code lives, so a fresh process needs no import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmgen
from mmgen.errors import CheckpointError, ConfigError
from tests.infer.conftest import STEPS
from tests.train.helpers import SPEECH_PACKAGE


def question(audio_data: Path) -> dict:
    """A held-out clip's question, its media path absolute."""
    turn = {"role": "user", "content": "What notes are played in <audio>?"}
    clip = {"type": "audio", "value": {"path": str(audio_data / "media/test-00000.wav")}}
    return {"id": "x", "conversations": [turn], "modalities": [clip]}


def test_a_run_loads_with_the_data_options_it_was_trained_with(trained_run) -> None:
    model, processor = mmgen.load(trained_run)
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert processor.chat_template == "plain" and processor.max_length == 64
    assert list(model.modalities) == ["audio"]
    assert type(model.modalities["audio"]).__module__.startswith(f"{SPEECH_PACKAGE}.")
    config = json.loads((trained_run / "model/config.json").read_text())
    assert config["modality_code"]["audio"]["module"].startswith(f"{SPEECH_PACKAGE}.modalities")


def test_checkpoints_are_chosen_by_name_step_or_latest(trained_run) -> None:
    final = mmgen.load(trained_run)
    latest = mmgen.load(trained_run, checkpoint="latest")
    by_step = mmgen.load(trained_run, checkpoint=STEPS - 2)
    folder = mmgen.load(trained_run / f"checkpoints/step-{STEPS - 2:08d}")
    assert latest.path == trained_run / f"checkpoints/step-{STEPS:08d}/model"
    assert by_step.path == folder.path == trained_run / f"checkpoints/step-{STEPS - 2:08d}/model"
    for name, value in final.model.state_dict().items():  # the final model is step 6's
        assert torch.equal(value, latest.model.state_dict()[name]), name
    with pytest.raises(ConfigError, match=r"no checkpoint 'step-00000005'; the run has"):
        mmgen.load(trained_run, checkpoint=5)


def test_bad_paths_are_one_line_errors(trained_run, tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such run, checkpoint or model folder"):
        mmgen.load(tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"not a run folder \(no model/ or checkpoints/\)"):
        mmgen.load(tmp_path)
    copy = tmp_path / "model"
    shutil.copytree(trained_run / "model", copy)
    weights = next((copy / "llm").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])  # damaged after it was saved
    with pytest.raises(CheckpointError, match="truncated"):
        mmgen.load(copy)
    with pytest.raises(ConfigError, match="dtype 'int8'"):
        mmgen.load(trained_run, dtype="int8")


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that can import mmgen but not the project."""
    root = Path(mmgen.__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1",
           "HOME": str(cwd)}  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_a_fresh_process_loads_and_generates_without_importing_the_project(
    trained_run, audio_data, tmp_path
) -> None:
    code = f"""
import mmgen, sys
loaded = mmgen.load({str(trained_run)!r})
out = loaded.generate([{question(audio_data)!r}], max_new_tokens=4)[0]
print("OK", type(loaded.model.modalities["audio"]).__module__, out.completion_tokens)
"""
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"OK {SPEECH_PACKAGE}.modalities")


def test_a_model_whose_code_is_gone_says_what_to_install(trained_run, tmp_path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained_run / "model", copy)
    (copy / "manifest.json").unlink()
    config = json.loads((copy / "config.json").read_text())
    config["modality_code"]["audio"]["root"] = str(tmp_path / "moved-away")
    (copy / "config.json").write_text(json.dumps(config))
    result = run_python(f"import mmgen; mmgen.load({str(copy)!r})", tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert f"modality 'audio' is defined in {SPEECH_PACKAGE}.modalities" in last
    assert "pip install -e <project>" in last
