"""``mmgen predict``: one JSON line per row, greedy outputs equal to generating each row alone,
resumable (rows written are skipped, a line cut short is redone), bad rows as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mmgen
from mmgen.cli import app
from mmgen.data.collator import left_padded

runner = CliRunner()


def predict(*args) -> tuple[int, str]:
    result = runner.invoke(app, ["predict", *map(str, args)])
    return result.exit_code, result.output


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_row_gets_the_answer_it_gets_alone(trained_run, audio_data, tmp_path) -> None:
    out = tmp_path / "predictions.jsonl"
    # --ignore-eos: a briefly trained model may end at once; every answer is 6 tokens
    code, output = predict(trained_run, audio_data / "test.jsonl", "-o", out, "--batch-size", 5,
                           "--max-new-tokens", 6, "--ignore-eos")  # fmt: skip
    assert code == 0, output
    assert "16 rows written" in output
    got = lines(out)
    assert [line["row"] for line in got] == list(range(16))
    references = [json.loads(r)["conversations"][-1]["content"]
                  for r in (audio_data / "test.jsonl").read_text().splitlines()]  # fmt: skip
    assert [line["reference"] for line in got] == references
    assert all(line["prediction"] for line in got)  # words, not only end tokens
    # the same prompts one at a time, through model.generate as a user would write it
    model, processor = mmgen.load(trained_run)
    source = [json.loads(r) for r in (audio_data / "test.jsonl").read_text().splitlines()]
    for line, row in zip(got, source, strict=True):
        sample = processor.process(row, base_dir=audio_data, generation=True)
        batch = left_padded([sample], processor.pad_token_id)
        tokens = model.generate(**batch, max_new_tokens=6, do_sample=False, eos_token_id=None,
                                pad_token_id=processor.pad_token_id)[0].tolist()  # fmt: skip
        assert len(tokens) == 6
        assert line["prediction"] == processor.tokenizer.decode(tokens, skip_special_tokens=True)
        assert line["completion_tokens"] == len(tokens)
        assert line["prompt_tokens"] == sample.length and line["id"] == row["id"]
        assert line["prompt"] == processor.render(row, generation=True)
        assert "What notes are played in <audio>?" in line["prompt"]


def test_a_second_run_skips_what_is_written_and_redoes_a_cut_line(
    trained_run, audio_data, tmp_path
) -> None:
    out = tmp_path / "p.jsonl"
    data = audio_data / "test.jsonl"
    assert predict(trained_run, data, "-o", out, "--limit", 5, "--max-new-tokens", 4)[0] == 0
    first = out.read_text()
    assert len(first.splitlines()) == 5
    with out.open("a") as handle:
        handle.write('{"row": 5, "id": "test-00005", "predi')  # a crash mid-line
    code, output = predict(trained_run, data, "-o", out, "--max-new-tokens", 4)
    assert code == 0, output
    assert "11 rows written, 5 already there" in output
    text = out.read_text()
    assert text.startswith(first) and [line["row"] for line in lines(out)] == list(range(16))


def test_bad_rows_stop_with_one_line_or_are_written_as_errors(
    trained_run, audio_data, tmp_path
) -> None:
    rows = (audio_data / "test.jsonl").read_text().splitlines()[:3]
    bad = json.loads(rows[1])
    bad["modalities"][0]["value"]["path"] = "media/none.wav"
    (tmp_path / "rows.jsonl").write_text("\n".join([rows[0], json.dumps(bad), rows[2]]) + "\n")
    (tmp_path / "media").symlink_to(audio_data / "media")
    out = tmp_path / "p.jsonl"
    code, output = predict(trained_run, tmp_path / "rows.jsonl", "-o", out)
    assert code == 1
    assert output.strip().splitlines()[-1].startswith("error: sample 'test-00001'")
    assert "file not found" in output and "Traceback" not in output
    assert not out.exists() or out.read_text() == ""  # nothing half-written
    code, output = predict(trained_run, tmp_path / "rows.jsonl", "-o", out, "--skip-errors")
    assert code == 0, output
    got = lines(out)
    assert [line["row"] for line in got] == [0, 1, 2]
    assert got[1]["reason"] == "missing file" and "prediction" in got[2]


def test_a_prompt_longer_than_the_context_is_refused(trained_run, audio_data, tmp_path) -> None:
    out = tmp_path / "p.jsonl"
    code, output = predict(trained_run, audio_data / "test.jsonl", "-o", out, "--limit", 1,
                           "--max-new-tokens", 500)  # fmt: skip
    assert code == 1
    assert "more than the model's context of 128 tokens" in output


@pytest.mark.parametrize("problem", ["run", "output"])
def test_a_bad_run_or_output_file_is_one_line(problem, trained_run, audio_data, tmp_path) -> None:
    out = tmp_path / "p.jsonl"
    run = trained_run
    if problem == "run":
        run = tmp_path / "nowhere"
    else:
        out.write_text("not json\n")
    code, output = predict(run, audio_data / "test.jsonl", "-o", out)
    assert code == 1 and len(output.strip().splitlines()) == 1, output
    assert ("no such run" if problem == "run" else "not a prediction line") in output
