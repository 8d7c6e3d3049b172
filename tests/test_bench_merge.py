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
    both = ("hf", "index", "index-prealloc", "packed_merge")
    forward = {("fwd", path) for path in (*both, "copy", "copy-prealloc")}
    assert set(rows) == forward | {("fwd+bwd", path) for path in both}
    baselines = ("hf", "index", "index-prealloc", "copy", "copy-prealloc")
    for (step, _), row in rows.items():
        assert row["dtype"] == "fp32" and row["ms"] > 0 and row["GB/s"] > 0
        for base in baselines:  # every row has a ratio to every baseline its pass has
            if (step, base) in rows:
                assert row[f"x {base}"] == pytest.approx(rows[step, base]["ms"] / row["ms"])
            else:
                assert step == "fwd+bwd" and base.startswith("copy") and row[f"x {base}"] == "-"
    assert int(doc["placeholder_tokens"].split()[0]) > 0
    assert torch.get_num_threads() == threads  # --threads does not leak into the caller


def test_bench_merge_table_and_bad_dtype():
    result = runner.invoke(app, ["bench", "merge", *SMALL, "--dtype", "bf16"])
    assert result.exit_code == 0, result.output
    assert "packed embedding merge" in result.output
    assert re.search(r"bf16 +fwd\+bwd +packed_merge", result.output)
    assert re.search(r"bf16 +fwd +copy-prealloc", result.output)
    assert "x index-prealloc" in result.output and "x copy-prealloc" in result.output
    bad = runner.invoke(app, ["bench", "merge", "--dtype", "fp64"])
    assert bad.exit_code != 0 and "fp64" in bad.output
