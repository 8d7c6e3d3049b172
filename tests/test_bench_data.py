"""``mmgen bench data`` through the CLI, in its smallest sizes: both tables, every startup
(full processing, cold scan with 1 and with 2 workers, warm start) present with positive times,
and the JSON form. Speeds are never asserted."""

import json
import tempfile

import pytest
import torch
from typer.testing import CliRunner

from mmgen.bench.data_memory import extrapolate
from mmgen.cli import app

pytestmark = pytest.mark.slow  # two runs, one starting a pool of scan workers: ~30 s

runner = CliRunner()


def test_bench_data_json_with_a_pool_of_workers(tmp_path):
    threads = torch.get_num_threads()
    # 600 rows: two chunks of the scan, so the forced pool of 2 workers measures the second
    args = ["bench", "data", "-n", "600", "-n", "40", "--full-sample", "20", "--media-files",
            "16", "--workers", "2", "--dir", str(tmp_path), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    startup, memory = json.loads(result.stdout)["tables"]
    assert torch.get_num_threads() == threads  # the one-thread setting does not leak
    lines = {(r["rows"], r["startup"], r["workers"]): r for r in startup["rows"]}
    for n in (40, 600):
        full = lines[n, "full processing", 1]
        assert full["timed"] == min(n, 20)
        for key in ((n, "cold metadata scan", 1), (n, "cold metadata scan", 2),
                    (n, "warm start (index)", "-")):  # fmt: skip
            line = lines[key]
            assert line["timed"] == n
            assert line["s"] > 0 and line["rows/s"] > 0 and line["x full"] > 0
            assert line["x full"] == pytest.approx(full["s"] / line["s"])
            assert line["cpu s"] > 0 and line["x full cpu"] > 0
        assert full["s"] > 0 and full["rows/s"] == pytest.approx(n / full["s"])
        assert full["cpu s"] > 0 and full["x full cpu"] == 1.0
    assert len(startup["rows"]) == 8
    for key in ("data", "processor", "full processing", "cold metadata scan", "warm start",
                "targets"):  # fmt: skip
        assert startup[key]
    assert [r["rows"] for r in memory["rows"]] == [40, 600, "1000000 (extrapolated)"]
    for line in memory["rows"][:2]:
        assert line["warm s"] > 0 and line["arrays MB"] > 0 and line["index file MB"] > 0
        assert line["peak MB"] >= line["kept MB"] and line["heap peak MB"] > 0
    assert memory["rows"][2]["warm s"] == "n/a"  # 600 rows are too few to extrapolate from
    assert "n/a" in memory["extrapolated"] and "1M rows: n/a" in startup["targets"]
    assert (tmp_path / "rows-600.jsonl").is_file()  # --dir keeps the data
    assert len(list((tmp_path / "media" / "audio").iterdir())) == 16


def test_bench_data_table_in_a_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = ["bench", "data", "-n", "30", "--full-sample", "10", "--media-files", "8",
            "--workers", "1", "--rounds", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "mmgen bench data: startup of the data side" in text
    header = next(line for line in text.splitlines() if line.startswith("rows  startup"))
    assert header.split() == ["rows", "startup", "workers", "timed", "s", "rows/s", "x", "full",
                              "x", "full/worker", "cpu", "s", "x", "full", "cpu"]  # fmt: skip
    for startup in ("full processing", "cold metadata scan", "warm start (index)"):
        assert any(line.startswith(f"30    {startup}") for line in text.splitlines()), startup
    assert "1000000 (extrapolated)" in text and "targets: at 30 rows" in text
    assert "rounds: 2" in text and "x full per round at 30 rows: cold 1 worker" in text
    assert list(tmp_path.iterdir()) == []  # the synthetic data is removed


def test_bench_data_help():
    help_text = runner.invoke(app, ["bench", "data", "-h"]).output
    for option in ("--rows", "--workers", "--small", "--full-sample", "--media-files",
                   "--rounds", "--dir", "--json"):  # fmt: skip
        assert option in help_text


def test_the_1m_extrapolation():
    def probe(rows, seconds, peak, heap, kept, arrays, file):
        return {"rows": rows, "seconds": seconds, "peak_mb": peak, "heap_peak_mb": heap,
                "kept_mb": kept, "arrays_mb": arrays, "file_mb": file}  # fmt: skip

    memory = [probe(10_000, 0.02, 11.0, 11.0, 1.0, 0.9, 0.6),
              probe(100_000, 0.05, 32.0, 33.0, 9.0, 8.7, 5.6)]  # fmt: skip
    guess = extrapolate(memory)
    assert guess["seconds"] == pytest.approx(0.05 + 0.03 / 90_000 * 900_000)
    assert guess["arrays_mb"] == pytest.approx(8.7 + 7.8 / 90_000 * 900_000)
    assert guess["file_mb"] == pytest.approx(5.6 + 5.0 / 90_000 * 900_000)
    assert guess["kept_mb"] == pytest.approx(9.0 + guess["arrays_mb"] - 8.7)  # grows by arrays
    # the index read holds the kept arrays and the mapped file at once
    assert guess["peak_mb"] == pytest.approx(guess["kept_mb"] + guess["file_mb"])
    assert guess["heap_peak_mb"] == pytest.approx(guess["arrays_mb"])
    assert extrapolate(memory, n=120_000)["peak_mb"] == 32.0  # the line scan's blocks
    memory[1]["seconds"] = 0.01  # a fall between the two is noise: flat, never negative
    assert extrapolate(memory)["seconds"] == pytest.approx(0.01)
    assert extrapolate(memory[1:])["seconds"] is None  # one N: no line
