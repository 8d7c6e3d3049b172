"""``mmgen bench merge``: one run times every path in both passes on the same inputs."""

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from mmgen.cli import app

runner = CliRunner()
SMALL = ["--tokens", "2048", "--hidden", "64", "--vocab", "500", "--threads", "1"]


def test_bench_merge_json_end_to_end():
    threads = torch.get_num_threads()
    result = runner.invoke(app, ["bench", "merge", *SMALL, "--dtype", "fp32", "--json"])
    assert result.exit_code == 0, result.output  # the run also checks every path's output agrees
    doc = json.loads(result.output)
    rows = {(row["pass"], row["path"]): row for row in doc["rows"]}
    forward = {("fwd", path) for path in ("hf", "index", "packed_merge", "copy")}
    assert set(rows) == forward | {("fwd+bwd", p) for p in ("hf", "index", "packed_merge")}
    for (step, _), row in rows.items():
        assert row["dtype"] == "fp32" and row["ms"] > 0 and row["GB/s"] > 0
        assert row["x hf"] == pytest.approx(rows[step, "hf"]["ms"] / row["ms"])
        assert row["x index"] == pytest.approx(rows[step, "index"]["ms"] / row["ms"])
    assert int(doc["placeholder_tokens"].split()[0]) > 0
    assert torch.get_num_threads() == threads  # --threads does not leak into the caller


def test_bench_merge_table_and_bad_dtype():
    result = runner.invoke(app, ["bench", "merge", *SMALL, "--dtype", "bf16"])
    assert result.exit_code == 0, result.output
    assert "packed embedding merge" in result.output
    assert re.search(r"bf16 +fwd\+bwd +packed_merge", result.output)
    bad = runner.invoke(app, ["bench", "merge", "--dtype", "fp64"])
    assert bad.exit_code != 0 and "fp64" in bad.output
