"""``mmgen bench predict`` and ``mmgen bench serve`` run and report identical answers and both
paths' rates (no speed is asserted: speed is a benchmark's job, never a test's)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmgen.cli import app

runner = CliRunner()


def bench(*args) -> dict:
    result = runner.invoke(app, ["bench", *map(str, args), "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :])


def test_bench_predict(trained_run, audio_data) -> None:
    report = bench("predict", trained_run, audio_data / "test.jsonl", "--rows", 6,
                   "--batch-size", 4)  # fmt: skip
    assert report["identical greedy answers"] == "6/6"
    rows = report["rows"]
    assert [r["path"] for r in rows] == ["model.generate, one row at a time",
                                         "mmgen predict (batch 4)"]  # fmt: skip
    assert all(r["rows/s"] > 0 for r in rows) and rows[0]["x one-at-a-time"] == 1.0


def test_bench_serve(trained_run, audio_data) -> None:
    report = bench("serve", trained_run, audio_data / "test.jsonl", "--requests", 8,
                   "--clients", 4, "--rounds", 2)  # fmt: skip
    assert len(report["concurrent / sequential per round"].split(", ")) == 2
    assert report["identical answers"] == "8/8"
    assert report["largest batch formed"] >= 1
    assert [r["clients"] for r in report["rows"]] == ["1 client, one request at a time",
                                                      "4 concurrent clients"]  # fmt: skip
    assert all(r["requests/s"] > 0 and r["tokens/s"] >= 0 for r in report["rows"])
