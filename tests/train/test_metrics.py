"""metrics.jsonl: a torn last line (a run killed mid-write) is no error, and a resumed run's
rewrite keeps exactly the records it is told to."""

from __future__ import annotations

import json
from pathlib import Path

from mmgen.train.metrics import METRICS_FILE, Metrics, read_metrics


def write_records(folder: Path, *records: dict, tail: str = "") -> Path:
    path = folder / METRICS_FILE
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    path = write_records(
        tmp_path, {"kind": "train", "step": 1, "loss": 2.0}, tail='{"kind": "train", "st'
    )
    assert read_metrics(path) == [{"kind": "train", "step": 1, "loss": 2.0}]


def test_resuming_drops_what_keep_refuses_and_appends(tmp_path: Path) -> None:
    records = [{"kind": "train", "step": s, "loss": 1.0 / s} for s in (1, 2, 3, 4)]
    path = write_records(tmp_path, *records, {"kind": "eval", "step": 4}, tail="{torn")
    metrics = Metrics(tmp_path, enabled=True, keep=lambda r: r["step"] <= 2)
    metrics.log("train", 3, loss=0.5)
    metrics.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in lines] == [("train", 1), ("train", 2), ("train", 3)]
    assert lines[2]["loss"] == 0.5


def test_what_a_resumed_run_keeps() -> None:
    from mmgen.train.metrics import logged_before

    def kept(kind: str, step: int, *, resumed_at: int, final: int) -> bool:
        return logged_before({"kind": kind, "step": step}, resumed_at, final)

    # resuming mid-run at step 4: everything up to it stays, its periodic eval too
    assert kept("train", 3, resumed_at=4, final=8) and kept("eval", 4, resumed_at=4, final=8)
    assert not kept("train", 5, resumed_at=4, final=8)  # logged again
    # resuming a finished run: its final evaluations at the last step are run again
    assert kept("train", 8, resumed_at=8, final=8)
    assert not kept("eval", 8, resumed_at=8, final=8) and not kept("test", 8, resumed_at=8, final=8)
    # a longer run resumed from a shorter finished one keeps that one's end records
    assert kept("test", 8, resumed_at=8, final=12)
