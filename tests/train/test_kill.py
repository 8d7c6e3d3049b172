"""A run killed with ``kill -9`` (no handler runs, files are cut wherever it was): the output
folder stays locked to the live run until then, the next run takes the lock over, the resumed
run logs every step once, and its saves load after rotation deleted what it was resumed from.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmgen.errors import TrainingError
from mmgen.train.config import load_config
from mmgen.train.loop import train
from mmgen.train.metrics import METRICS_FILE
from tests.train.helpers import environment, speech_config, train_losses, write_config

pytestmark = pytest.mark.slow


def start_run(path: Path, project: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "mmgen", "train", str(path)]
    return subprocess.Popen(
        command, env=environment(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def stop_past_a_checkpoint(process: subprocess.Popen, run: Path) -> int:
    """Freeze the run (SIGSTOP) once it has logged a step after its latest checkpoint; returns
    that checkpoint's step."""
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no step after a checkpoint within 3 minutes"
        saved = sorted((run / "checkpoints").glob("step-*"))
        logged = train_losses(run) if (run / METRICS_FILE).is_file() else {}
        if saved and logged and max(logged) > int(saved[-1].name[5:]):
            process.send_signal(signal.SIGSTOP)
            time.sleep(0.2)  # let a save in progress show (it cannot finish now)
            saved = sorted((run / "checkpoints").glob("step-*"))
            logged = train_losses(run)
            if max(logged) > int(saved[-1].name[5:]):
                return int(saved[-1].name[5:])
            process.send_signal(signal.SIGCONT)
        time.sleep(0.05)


def test_kill_9_then_resume_twice(audio_data, speech_project, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    config = speech_config(audio_data, run, stages=[{"name": "full", "steps": 400}],
                           checkpoint={"every": 3, "keep": 1})  # fmt: skip
    path = write_config(tmp_path / "train.yaml", config)
    process = start_run(path, speech_project)
    try:
        saved = stop_past_a_checkpoint(process, run)
        # while it lives (frozen), the folder is its own: a second run and a resume are refused
        for resume in (None, "auto"):
            with pytest.raises(TrainingError) as caught:
                train(load_config(path), resume=resume)
            message = str(caught.value)
            assert f"{run} is in use by another mmgen train (pid {process.pid} on " in message
            assert "\n" not in message
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    logged_before = max(train_losses(run))
    assert logged_before > saved

    # resume a shorter run of the same config: from `saved`, with the dead run's lock
    steps = saved + 4
    capsys.readouterr()
    result = train(load_config(path, [f"stages.0.steps={steps}"]), resume="auto")
    out = capsys.readouterr().out
    assert result.steps == steps
    assert f"took over {run / 'train.lock'} from a run that is no longer running (pid" in out
    assert f"pid {process.pid} on " in out
    assert f"resuming {run / 'checkpoints'}/step-{saved:08d} at step {saved}" in out
    # every step once in metrics.jsonl, although the killed run had logged past `saved`
    records = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == list(range(1, steps + 1))
    assert [r["step"] for r in records if r["kind"] == "test"] == [steps]
    # rotation (keep 1) deleted the checkpoint the resumed run loaded its encoder assets from
    assert not (run / f"checkpoints/step-{saved:08d}").exists()
    from mmgen.model import MultimodalModel

    final = MultimodalModel.from_pretrained(run / "model")
    latest = MultimodalModel.from_pretrained(run / f"checkpoints/step-{steps:08d}/model")
    for name, value in final.state_dict().items():
        assert torch.equal(value, latest.state_dict()[name]), name
    # and that resumed run's checkpoint resumes in turn
    more = train(load_config(path, [f"stages.0.steps={steps + 2}"]), resume="auto")
    assert more.steps == steps + 2
    MultimodalModel.from_pretrained(run / "model")
    assert (run / "train.lock").read_text() == ""  # released: it names no holder
