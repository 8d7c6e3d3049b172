"""``mmgen bench tokens --small``: the same clips through both rows; the fixed window costs 750
embeddings per clip, the real length the ones that cover each clip (speed itself is shown by
the command, never asserted in a test)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from mmgen.bench.tokens import FIXED, REAL, SMALL, clip_seconds
from mmgen.cli import app


def test_bench_tokens_small_json():
    args = ["--small", "--json", "--clips", "8", "--hidden", "32", "--layers", "1"]
    result = CliRunner().invoke(app, ["bench", "tokens", *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    fixed, real = report["rows"]
    assert (fixed["audio embeddings"], real["audio embeddings"]) == (FIXED, REAL)
    assert fixed["positions/clip"] == 750  # one 30 s window per clip
    seconds = clip_seconds(type(SMALL)(**report["sizes"]))
    # 25 embeddings per second: ceil(ceil(frames / 2) / 2) with frames = ceil(samples / 160)
    covering = [math.ceil(math.ceil(math.ceil(round(s * 16000) / 160) / 2) / 2) for s in seconds]
    assert real["positions/clip"] == pytest.approx(sum(covering) / len(covering))
    assert real["useful %"] == pytest.approx(100) and fixed["useful %"] < 50
    assert real["packs"] < fixed["packs"]
    assert real["clips/step"] > fixed["clips/step"]
    assert fixed["x fixed"] == 1
    assert real["x fixed"] == pytest.approx(real["clips/s"] / fixed["clips/s"])
