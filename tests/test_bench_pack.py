"""``mmgen bench pack``: the baselines plan correctly and the command prints sound tables."""

import json
import math

import torch
from typer.testing import CliRunner

from mmgen.bench import pack_baselines as base
from mmgen.bench.pack import DISTRIBUTIONS, sample_lengths
from mmgen.cli import app
from mmgen.ops import plan_packs

runner = CliRunner()


def test_python_baselines_agree_with_plan_packs():
    lengths = sample_lengths(next(iter(DISTRIBUTIONS)), 3000, 256, seed=3)
    as_list = lengths.tolist()
    # best fit's pack count does not depend on tie-breaking, so any correct BFD gives ours
    assert base.python_bisect_bfd(as_list, 256) == int(plan_packs(lengths, 256).max()) + 1
    sequential = plan_packs(lengths, 256, strategy="sequential")
    assert base.python_next_fit(as_list, 256) == int(sequential.max()) + 1


def test_pad_to_longest():
    # budget 10: [3, 2, 4] pads to 3 x 4 = 12 > 10, so [3, 2] (6), [4, 1] (8), [5] (5)
    assert base.pad_to_longest([3, 2, 4, 1, 5], 10) == (3, 6 + 8 + 5)
    assert base.pad_to_longest([], 10) == (0, 0)


def test_bench_pack_json_end_to_end():
    threads = torch.get_num_threads()
    result = runner.invoke(app, ["bench", "pack", "-n", "1500", "--json"])
    assert result.exit_code == 0, result.output
    planning, metadata = json.loads(result.output)["tables"]
    rows = planning["rows"]
    planners = {row["planner"] for row in rows}
    assert {"mmgen plan_packs bfd", "bfd, bisect (Python)", "pad to longest (Python)"} <= planners
    assert ("trl pack_dataset bfd" in planners) == base.trl_available()
    for name, (capacity, _) in DISTRIBUTIONS.items():
        mine = {row["planner"]: row for row in rows if row["lengths"] == name}
        bound = math.ceil(int(sample_lengths(name, 1500, capacity).sum()) / capacity)
        assert all(row["packs"] >= bound and 0 < row["eff %"] <= 100 for row in mine.values())
        bfd = mine["mmgen plan_packs bfd"]["packs"]
        assert bfd == mine["bfd, bisect (Python)"]["packs"]
        if base.trl_available():
            assert mine["trl pack_dataset bfd"]["packs"] == bfd  # also best fit decreasing
        assert bfd <= min(row["packs"] for row in mine.values())
    assert [row["metadata per pack"] for row in metadata["rows"]][-1] == "mmgen varlen_metadata"
    assert torch.get_num_threads() == threads  # the one-thread setting does not leak


def test_bench_pack_table_and_help():
    result = runner.invoke(app, ["bench", "pack", "-n", "300", "--capacity", "4096"])
    assert result.exit_code == 0, result.output
    assert "pack: planning" in result.output and "capacity: 4096" in result.output
    assert "mmgen varlen_metadata" in result.output
    help_text = runner.invoke(app, ["bench", "pack", "-h"]).output
    for option in ("--json", "--small", "--num-samples", "--capacity"):
        assert option in help_text
    assert runner.invoke(app, ["bench", "pack", "-n", "0"]).exit_code != 0
