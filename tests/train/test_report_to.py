"""``logging.report_to: [jsonl, tensorboard, wandb]``: the records of metrics.jsonl reach
TensorBoard event files and an offline W&B run with the same values (read back from the files
written), a resumed run continues both without logging a step twice, and the deprecated
``logging.tensorboard`` switch still works but may not contradict ``report_to``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.wandb_files import offline_runs, read_offline_run

from mmgen.errors import ConfigError
from mmgen.train.checkpoint import read_state
from mmgen.train.config import LoggingSection, load_config
from mmgen.train.loop import train
from mmgen.train.metrics import Metrics, read_metrics
from tests.train.test_config import VALID, write


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B offline, quiet, and with its settings and caches in the test's folder."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home"))


def board_scalars(folder: Path, tag: str) -> dict[int, float]:
    """step -> value of ``tag`` in the TensorBoard event files under ``folder/tensorboard``
    (after TensorBoard's own purge of steps a resumed writer logged again)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    steps = [event.step for event in events.Scalars(tag)]
    assert len(steps) == len(set(steps)), f"{tag}: a step logged twice: {steps}"
    return {event.step: event.value for event in events.Scalars(tag)}


def jsonl_series(folder: Path, kind: str, key: str) -> dict[int, float]:
    records = read_metrics(folder / "metrics.jsonl")
    return {r["step"]: r[key] for r in records if r["kind"] == kind and key in r}


def as_float32(series: dict[int, float]) -> dict[int, float]:
    return {step: float(np.float32(value)) for step, value in series.items()}  # TB's precision


# -- the config ------------------------------------------------------------------------------


def test_jsonl_is_always_written_and_report_to_adds_the_others() -> None:
    assert LoggingSection().reporters == ("jsonl",)  # nothing is imported unless asked
    chosen = LoggingSection(report_to=["wandb", "tensorboard"]).reporters
    assert chosen == ("jsonl", "wandb", "tensorboard")
    assert LoggingSection(report_to=["tensorboard"]).reporters == ("jsonl", "tensorboard")
    # the deprecated switch maps onto report_to
    assert LoggingSection(tensorboard=True).reporters == ("jsonl", "tensorboard")
    assert LoggingSection(tensorboard=False).reporters == ("jsonl",)
    agreeing = LoggingSection(report_to=["jsonl", "tensorboard"], tensorboard=True)
    assert agreeing.reporters == ("jsonl", "tensorboard")


@pytest.mark.parametrize(
    ("switch", "listed"), [("true", "[jsonl]"), ("false", "[tensorboard]"), ("auto", "[wandb]")]
)
def test_the_deprecated_switch_may_not_contradict_report_to(tmp_path, switch, listed) -> None:
    text = VALID + f"logging:\n  report_to: {listed}\n  tensorboard: {switch}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    line = VALID.count("\n") + 3  # logging:, report_to:, tensorboard:
    assert message.startswith(f"{tmp_path / 'configs' / 'train.yaml'}:{line}: logging.tensorboard:")
    assert "drop logging.tensorboard" in message


def test_unknown_reporters_and_wandb_keys_name_their_line(tmp_path: Path) -> None:
    line = VALID.count("\n") + 2
    with pytest.raises(ConfigError, match=rf"train.yaml:{line}: logging.report_to.1"):
        load_config(write(tmp_path, VALID + "logging:\n  report_to: [jsonl, mlflow]\n"))
    text = VALID + "logging:\n  wandb: {project: p, tag: [a]}\n"
    with pytest.raises(ConfigError, match=rf"train.yaml:{line}: logging.wandb.tag: .*'tags'"):
        load_config(write(tmp_path, text))


# -- Metrics and its reporters --------------------------------------------------------------


RECORDS = [
    ("train", 1, {"loss": 2.5, "lr": 1e-3, "sources": {"asr": 0.75, "captions": 0.25}}),
    ("train", 2, {"loss": 2.125, "lr": 9e-4}),
    ("eval", 2, {"loss": 2.0, "accuracy": 0.5}),
    ("train", 3, {"loss": 1.7, "lr": 8e-4}),
]


def log_all(metrics: Metrics, records) -> None:
    for kind, step, values in records:
        metrics.log(kind, step, **values)
    metrics.close()


def test_tensorboard_holds_every_number_of_metrics_jsonl(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    logging = LoggingSection(report_to=["tensorboard"])
    log_all(Metrics(tmp_path, enabled=True, fresh=True, logging=logging), RECORDS)
    for kind, key in (("train", "loss"), ("train", "lr"), ("eval", "accuracy")):
        expected = as_float32(jsonl_series(tmp_path, kind, key))
        assert board_scalars(tmp_path, f"{kind}/{key}") == expected
    assert board_scalars(tmp_path, "train/sources/asr") == {1: 0.75}


def test_without_report_to_nothing_but_jsonl_is_written(tmp_path: Path) -> None:
    log_all(Metrics(tmp_path, enabled=True, fresh=True, logging=LoggingSection()), RECORDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_a_resumed_tensorboard_log_has_each_step_once(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    logging = LoggingSection(report_to=["tensorboard"])
    log_all(Metrics(tmp_path, enabled=True, fresh=True, logging=logging), RECORDS)
    # resumed from a checkpoint of step 1: steps 2 and 3 are logged again, with new values
    again = [("train", 2, {"loss": 2.0}), ("train", 3, {"loss": 1.5}), ("train", 4, {"loss": 1.0})]
    resumed = Metrics(
        tmp_path, enabled=True, keep=lambda r: r["step"] <= 1, logging=logging, resumed_at=1
    )
    log_all(resumed, again)
    expected = {1: 2.5, 2: 2.0, 3: 1.5, 4: 1.0}
    assert jsonl_series(tmp_path, "train", "loss") == expected
    assert board_scalars(tmp_path, "train/loss") == expected
    assert board_scalars(tmp_path, "eval/loss") == jsonl_series(tmp_path, "eval", "loss") == {}


def test_wandb_gets_the_records_project_name_and_tags(tmp_path: Path, offline_wandb) -> None:
    logging = LoggingSection(
        report_to=["wandb"], wandb={"project": "notes", "name": "first", "tags": ["cpu", "tiny"]}
    )
    metrics = Metrics(tmp_path, enabled=True, fresh=True, logging=logging, run_config={"seed": 3})
    run_id = metrics.wandb_run_id
    log_all(metrics, RECORDS)
    (path,) = offline_runs(tmp_path)
    run = read_offline_run(path)
    assert (run.run_id, run.project, run.name, run.tags) == (
        run_id,
        "notes",
        "first",
        ["cpu", "tiny"],
    )
    assert run.config["seed"] == 3
    for kind, key in (("train", "loss"), ("train", "lr"), ("eval", "loss"), ("eval", "accuracy")):
        assert run.series(f"{kind}/{key}") == jsonl_series(tmp_path, kind, key), (kind, key)
    assert run.series("train/sources/asr") == {1: 0.75}


def test_nothing_is_imported_unless_asked(tmp_path: Path, monkeypatch) -> None:
    for module in ("wandb", "tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    log_all(Metrics(tmp_path, enabled=True, fresh=True, logging=LoggingSection()), RECORDS)
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == len(RECORDS)
    with pytest.raises(ConfigError, match="report_to lists wandb: `pip install wandb`"):
        Metrics(tmp_path, enabled=True, logging=LoggingSection(report_to=["wandb"]))


# -- a training run ----------------------------------------------------------------------------


def test_a_run_reports_to_all_three_and_a_resume_continues_them(config_file, offline_wandb) -> None:
    pytest.importorskip("tensorboard")
    path = config_file(
        stages=[{"name": "full", "steps": 4}],
        checkpoint={"every": 2, "keep": 3},
        logging={"every": 1, "progress": False, "plot": False,
                 "report_to": ["jsonl", "tensorboard", "wandb"],
                 "wandb": {"project": "mmgen-tests", "tags": ["resume"]}},
    )  # fmt: skip
    run = train(load_config(path)).output_dir
    losses = jsonl_series(run, "train", "loss")
    assert sorted(losses) == [1, 2, 3, 4]
    assert board_scalars(run, "train/loss") == as_float32(losses)
    (first,) = offline_runs(run)
    history = read_offline_run(first)
    assert history.series("train/loss") == losses
    assert history.series("test/accuracy") == jsonl_series(run, "test", "accuracy")
    assert history.name == run.name and history.tags == ["resume"]
    state = read_state(run / "checkpoints/step-00000002")
    assert state["wandb_run_id"] == history.run_id

    # the run is resumed from its step-2 checkpoint: steps 3 and 4 again, the same W&B run
    import shutil

    shutil.rmtree(run / "checkpoints/step-00000004")
    train(load_config(path), resume="auto")
    assert jsonl_series(run, "train", "loss") == losses  # the resumed run repeats the first
    assert board_scalars(run, "train/loss") == as_float32(losses)  # each step once
    second = [p for p in offline_runs(run) if p != first]
    assert len(second) == 1
    continued = read_offline_run(second[0])
    assert continued.run_id == history.run_id
    assert continued.series("train/loss") == {3: losses[3], 4: losses[4]}


def test_the_deprecated_switch_still_writes_events_and_says_so(config_file, capsys) -> None:
    pytest.importorskip("tensorboard")
    path = config_file(
        stages=[{"name": "full", "steps": 2}],
        logging={"every": 1, "progress": False, "plot": False, "tensorboard": True},
    )
    run = train(load_config(path)).output_dir
    assert board_scalars(run, "train/loss") == as_float32(jsonl_series(run, "train", "loss"))
    assert "logging.tensorboard: deprecated" in capsys.readouterr().out
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1
