"""scripts/gpu_check.sh on a machine without a GPU: its dry run, its arguments, the runner's
time limits and stopping rule (on stand-in steps), and the markdown summary."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmgen.bench.merge import memory_bandwidth_gbps
from mmgen.cli import app
from mmgen.gpucheck import checks, plan, runner, summary
from mmgen.gpucheck.plan import Step

ROOT = Path(__file__).resolve().parents[1]
STEP_NAMES = ["torch", "build", "device", "cuda-tests", "no-sync", "ddp-nccl", "bench-merge",
              "demo-cpu", "demo-gpu"]  # fmt: skip


def listed(text: str) -> list[str]:
    """The step names of a dry run's listing (lines " 1. name  kind  limit ...")."""
    return [line.split()[1] for line in text.splitlines() if line[:3].strip().endswith(".")]


def test_dry_run_lists_every_step_and_its_limit(tmp_path):
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert listed(result.stdout) == STEP_NAMES
    for step in plan.steps(sys.executable, tmp_path):
        assert f"limit {step.limit_s:>3} s" in result.stdout
    assert str(tmp_path / "summary.md") in result.stdout
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_plan_has_what_the_issue_asks():
    steps = {s.name: s for s in plan.steps("/venv/bin/python", Path("/out"))}
    assert [s.kind for s in steps.values()].count("check") == 4
    assert "set_sync_debug_mode" in steps["no-sync"].what
    assert "--device cuda" in steps["bench-merge"].command
    assert "test_cuda_ops.py" in steps["cuda-tests"].command
    assert "MMGEN_CUDA=1" in steps["build"].command
    assert all(0 < s.limit_s <= plan.DEADLINE_S for s in steps.values())
    given = plan.steps("/env/bin/python", Path("/out"), install=False)
    assert "pip install" not in given[0].command  # --python: nothing is installed
    with pytest.raises(ValueError, match="kind must be one of"):
        Step("x", "maybe", 1, "", "true")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "nope"], "no step named 'nope'; steps: torch, build"),
        (["--skip", "demo"], "no step named 'demo'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--deadline", "0"], "--deadline must be positive, got 0"),
        (["--deadline", "soon"], "invalid int value: 'soon'"),
    ],
)
def test_bad_arguments_are_one_line(args, message, capsys):
    assert runner.main([*args, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_only_and_skip_select_steps(capsys):
    assert runner.main(["--dry-run", "--only", "device", "--only", "no-sync"]) == 0
    assert listed(capsys.readouterr().out) == ["device", "no-sync"]
    assert runner.main(["--dry-run", "--skip", "torch", "--skip", "build"]) == 0
    assert listed(capsys.readouterr().out) == STEP_NAMES[2:]


def fake_plan(*steps):
    return lambda python, out, install=True: list(steps)


def run(monkeypatch, tmp_path, steps, *args):
    monkeypatch.setattr(plan, "steps", fake_plan(*steps))
    monkeypatch.setenv("OUT", str(tmp_path))
    code = runner.main(list(args))
    return code, (tmp_path / "summary.md").read_text()


def test_runner_records_results_and_stops_at_the_first_failed_check(monkeypatch, tmp_path):
    steps = (
        Step(
            "one",
            "check",
            30,
            "reports",
            'echo "RESULT {\\"GB/s\\": 123.5, \\"path\\": \\"a|b\\"}"',
        ),
        Step("bench", "figures", 30, "a table", "printf 'path  ms\\nfused 1.0\\n'; exit 3"),
        Step("two", "check", 30, "fails", "echo broken; exit 4"),
        Step("three", "check", 30, "never runs", "touch ran"),
    )
    code, text = run(monkeypatch, tmp_path, steps)
    assert code == 1
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "passed" in rows["one"] and "FAILED" in rows["bench"]  # figures: recorded, go on
    assert "FAILED" in rows["two"] and "not run" in rows["three"]
    assert "| 123.5 | a\\|b |" in text  # the step's RESULT line, escaped for markdown
    assert "## two: FAILED" in text and "broken" in text
    assert not (ROOT / "ran").exists()
    assert (tmp_path / "two.log").read_text() == "broken\n"


def test_keep_going_runs_every_step(monkeypatch, tmp_path):
    steps = (Step("bad", "check", 30, "", "exit 1"), Step("good", "figures", 30, "", "echo table"))
    code, text = run(monkeypatch, tmp_path, steps, "--keep-going")
    assert code == 1
    assert "| good | figures | passed |" in text and "table" in text


def test_a_step_past_its_limit_is_ended_with_its_children(monkeypatch, tmp_path):
    marker = tmp_path / "late"
    steps = (Step("slow", "check", 1, "", f"(sleep 3; touch {marker}) & sleep 30"),)
    began = time.monotonic()
    code, text = run(monkeypatch, tmp_path, steps)
    assert code == 1 and time.monotonic() - began < 15
    assert "| slow | check | timed out |" in text
    time.sleep(3.5)
    assert not marker.exists()  # the whole process group was ended


def test_deadline_leaves_later_steps_not_run(monkeypatch, tmp_path):
    steps = (Step("a", "figures", 30, "", "sleep 1.5"), Step("b", "figures", 30, "", "true"))
    code, text = run(monkeypatch, tmp_path, steps, "--deadline", "1")
    assert code == 1
    assert "| a | figures | timed out |" in text and "| b | figures | not run |" in text


def test_all_passed_exits_zero(monkeypatch, tmp_path):
    code, text = run(monkeypatch, tmp_path, (Step("ok", "check", 30, "", "true"),))
    assert code == 0 and "**passed**" in text


def test_output_dir():
    assert summary.output_dir(Path("/repo"), {"OUT": "/tmp/o"}) == Path("/tmp/o")
    assert summary.output_dir(Path("/repo"), {"OUT": " "}) == Path("/repo/build/gpu-check")
    assert summary.output_dir(Path("/repo"), {}) == Path("/repo/build/gpu-check")


def test_parse_results():
    text = 'noise\nRESULT {"a": 1}\nRESULT {"b": [2]}\n RESULT {"indented": "ignored"}\n'
    assert summary.parse_results(text) == [{"a": 1}, {"b": [2]}]
    with pytest.raises(ValueError, match="must hold a JSON object"):
        summary.parse_results("RESULT [1, 2]")
    with pytest.raises(json.JSONDecodeError):
        summary.parse_results("RESULT {oops")


def test_render_tables():
    records = [
        summary.StepRecord(
            "device", "check", 60, "passed", 1.234, 0, [{"device": "H200", "peak_GB_s": 4800}]
        ),
        summary.StepRecord("demo-gpu", "figures", 180),
    ]
    text = summary.render(records, notes=["- python: `x`"])
    assert text.startswith("# mmgen GPU check\n\n**not passed**\n\n- python: `x`\n\n| step |")
    assert "| device | check | passed | 1.2 | 60 |" in text
    assert "| demo-gpu | figures | not run | - | 180 |" in text
    assert "## device\n\n| device | peak_GB_s |\n|---|---|\n| H200 | 4800 |" in text
    with pytest.raises(ValueError, match="status must be one of"):
        summary.StepRecord("x", "check", 1, "ok")


def test_demo_figures(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [
        {"kind": "train", "step": 10, "loss": 2.0, "tokens_per_s": 1000.0},
        {"kind": "train", "step": 20, "loss": 1.0, "tokens_per_s": 3000.0},
        {"kind": "test", "step": 20, "accuracy": 0.97},
    ]
    metrics.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert checks.demo_figures(metrics) == {"accuracy": 0.97, "tokens_per_s": 2000.0}
    metrics.write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(checks.CheckFailed, match="no training speed or held-out accuracy"):
        checks.demo_figures(metrics)
    with pytest.raises(checks.CheckFailed, match="wrote no"):
        checks.demo_figures(tmp_path / "missing.jsonl")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is visible")
def test_checks_without_a_gpu_fail_in_one_line():
    for name in ("device", "sync", "ddp"):
        result = subprocess.run(
            [sys.executable, "-m", "mmgen.gpucheck.checks", name],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.strip() == f"gpu check {name}: FAILED: no CUDA GPU is visible to torch"


def test_peak_bandwidth():
    assert memory_bandwidth_gbps(2_619_000, 5120) == pytest.approx(3352.3, abs=0.1)  # H100 SXM


def test_bench_merge_device_errors():
    cli = CliRunner()
    bad = cli.invoke(app, ["bench", "merge", "--device", "tpu", "--small"])
    assert bad.exit_code != 0 and "--device must be cpu or cuda, got 'tpu'" in bad.output
    if not __import__("torch").cuda.is_available():
        none = cli.invoke(app, ["bench", "merge", "--device", "cuda", "--small"])
        assert none.exit_code != 0 and "no CUDA GPU is visible" in none.output


@pytest.mark.skipif(__import__("torch").version.cuda is not None, reason="torch is a CUDA build")
def test_given_python_without_cuda_torch_stops_at_the_first_step(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert runner.main(["--python", sys.executable, "--skip", "build"]) == 1
    text = (tmp_path / "summary.md").read_text()
    assert "| torch | setup | FAILED |" in text and "| device | check | not run |" in text
    assert f"gpu_check: {sys.executable} has no CUDA build of torch" in text
    assert f"- python: `{sys.executable}`" in text


def test_readme_gpu_table_matches_the_plan():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## GPU\n")
    section = readme[start : readme.index("\n## ", start + 1)]  # up to the next section
    rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("| ")][2:]
    table = [(name.strip(), kind.strip(), limit.strip()) for name, kind, limit in rows]
    steps = plan.steps("/venv/bin/python", Path("/out"))
    assert table == [(s.name, s.kind, f"{s.limit_s} s") for s in steps]
