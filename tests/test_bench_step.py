"""``mmgen bench step --small``: the command runs the real pipeline on both layouts and reports
consistent figures (speed itself is shown by the command, never asserted in a test)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmgen.cli import app


def test_bench_step_small_json():
    result = CliRunner().invoke(app, ["bench", "step", "--small", "--json", "--samples", "24"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    rows = {(r["layout"], r["attention"]): r for r in report["rows"]}
    assert set(rows) == {
        ("packed", "mmgen_varlen_sdpa"),
        ("packed", "sdpa+mask"),
        ("padded", "sdpa"),
    }
    padded = rows["padded", "sdpa"]
    packed = rows["packed", "mmgen_varlen_sdpa"]
    # the same samples go through every layout; only the padded one computes padding
    assert report["sizes"]["samples"] == 24
    assert packed["steps"] * packed["tokens/step"] == padded["steps"] * padded["tokens/step"]
    assert packed["pad %"] == 0 and packed["slots/step"] == packed["tokens/step"]
    assert 0 < padded["pad %"] < 100 and padded["slots/step"] > padded["tokens/step"]
    assert 0 < report["packing_efficiency"] <= 1
    assert all(r["useful tok/s"] > 0 and r["step ms"] > 0 for r in rows.values())
    assert padded["x padded"] == 1


def test_bench_step_help_lists_its_options():
    result = CliRunner().invoke(app, ["bench", "step", "-h"])
    assert result.exit_code == 0
    for option in ("--json", "--small", "--samples", "--capacity", "--batch-size", "--rounds"):
        assert option in result.output
