"""``mmgen eval``: the scores in eval.json are the metrics of the predictions written beside it,
the same answers ``mmgen predict`` gives; bad metric names fail before the model loads."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmgen.cli import app
from mmgen.metrics import score

runner = CliRunner()


def test_eval_scores_the_predictions_it_writes(trained_run, audio_data, tmp_path) -> None:
    out = tmp_path / "eval"
    metrics = ["exact_match", "token_f1", "bleu", "wer", "multiple_choice"]
    args = ["eval", trained_run, audio_data / "test.jsonl", "-o", out, "--max-new-tokens", 8]
    args += [arg for name in metrics for arg in ("-m", name)]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert report["scored"] == len(lines) == 16
    expected = score(list(report["metrics"]), [x["prediction"] for x in lines],
                     [x["reference"] for x in lines])  # fmt: skip
    assert report["metrics"] == expected
    assert report["lower_is_better"] == ["wer"]
    for name, value in expected.items():  # the printed table
        assert f"{name}" in result.output and f"{value:.4g}" in result.output
    # the answers are predict's
    again = tmp_path / "p.jsonl"
    args = ["predict", trained_run, audio_data / "test.jsonl", "-o", again, "--max-new-tokens", 8]
    assert runner.invoke(app, [str(a) for a in args]).exit_code == 0
    assert [json.loads(x)["prediction"] for x in again.read_text().splitlines()] == [
        x["prediction"] for x in lines
    ]


def test_an_unknown_metric_is_one_line_before_loading(tmp_path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "no-run"), "d.jsonl", "-m", "blue"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown metric 'blue'; did you mean 'bleu'?"


def test_rows_without_references_cannot_be_scored(trained_run, audio_data, tmp_path) -> None:
    rows = [json.loads(x) for x in (audio_data / "test.jsonl").read_text().splitlines()[:2]]
    for row in rows:
        row["conversations"] = row["conversations"][:1]
        row["modalities"][0]["value"]["path"] = str(
            audio_data / row["modalities"][0]["value"]["path"]
        )
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = runner.invoke(app, ["eval", str(trained_run), str(data), "-o", str(tmp_path / "e")])
    assert result.exit_code == 1
    assert "no row has a reference answer" in result.output.strip().splitlines()[-1]
