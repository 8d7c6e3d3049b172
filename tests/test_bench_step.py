"""``mmgen bench step --small``: the command runs the real pipeline on every layout and reports
consistent figures (speed itself is shown by the command, never asserted in a test)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmgen.cli import app


def test_bench_step_small_json():
    args = ["--small", "--json", "--samples", "24", "--hidden", "32", "--layers", "1"]
    result = CliRunner().invoke(app, ["bench", "step", *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    rows = {(r["layout"], r["attention"]): r for r in report["rows"]}
    assert set(rows) == {
        ("packed", "mmgen_varlen_sdpa"),
        ("packed", "sdpa+mask"),
        ("padded", "sdpa"),
        ("padded, length-grouped", "sdpa"),
    }
    padded = rows["padded", "sdpa"]
    grouped = rows["padded, length-grouped", "sdpa"]
    packed = rows["packed", "mmgen_varlen_sdpa"]
    # the same samples go through every layout; only the padded ones compute padding
    assert (report["sizes"]["samples"], report["sizes"]["hidden"], report["sizes"]["layers"]) == (
        24,
        32,
        1,
    )
    for layout in (padded, grouped):
        assert packed["steps"] * packed["tokens/step"] == layout["steps"] * layout["tokens/step"]
        assert 0 < layout["pad %"] < 100 and layout["slots/step"] > layout["tokens/step"]
    assert packed["pad %"] == 0 and packed["slots/step"] == packed["tokens/step"]
    assert grouped["steps"] == padded["steps"]  # the same batch size, grouped by length
    assert grouped["pad %"] < padded["pad %"]
    assert 0 < report["packing_efficiency"] <= 1
    assert all(r["useful tok/s"] > 0 and r["step ms"] > 0 for r in rows.values())
    assert padded["x padded"] == 1 and grouped["x grouped"] == 1
    for row in rows.values():  # one round: each ratio is the quotient of the rates
        for column, base in (("x padded", padded), ("x grouped", grouped)):
            assert row[column] == pytest.approx(row["useful tok/s"] / base["useful tok/s"])


def test_bench_step_help_lists_its_options():
    result = CliRunner().invoke(app, ["bench", "step", "-h"])
    assert result.exit_code == 0
    options = ("--json", "--small", "--samples", "--capacity", "--batch-size", "--rounds")
    for option in (*options, "--hidden", "--layers"):
        assert option in result.output
