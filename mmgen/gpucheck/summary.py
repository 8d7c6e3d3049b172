"""The GPU check's markdown summary: one row per step, then the figures the steps reported.

A step reports a figure by printing a line ``RESULT {json object}``; the runner collects them.
The summary is rewritten after every step, so a run cut short still leaves what it found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

RESULT_PREFIX = "RESULT "
SUMMARY_FILE = "summary.md"
STATUSES = ("passed", "FAILED", "timed out", "not run")


def output_dir(root: Path, environ: Mapping[str, str] | None = None) -> Path:
    """``$OUT`` when it is set and not empty, else ``build/gpu-check`` under ``root``."""
    environ = os.environ if environ is None else environ
    out = environ.get("OUT", "").strip()
    return Path(out) if out else root / "build" / "gpu-check"


def parse_results(output: str) -> list[dict]:
    """The ``RESULT {...}`` lines of a step's output, as dicts (a malformed one is an error: the
    step and this parser disagree)."""
    found = []
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            value = json.loads(line[len(RESULT_PREFIX) :])
            if not isinstance(value, dict):
                raise ValueError(f"a RESULT line must hold a JSON object, got {line!r}")
            found.append(value)
    return found


@dataclass
class StepRecord:
    name: str
    kind: str
    limit_s: int
    status: str = "not run"
    seconds: float | None = None
    returncode: int | None = None
    results: list[dict] = field(default_factory=list)
    tail: str = ""  # the last lines of the output: of a failed step, or a table it printed

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"step {self.name}: status must be one of {STATUSES}")


def _cell(value) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def render(records: list[StepRecord], *, title: str = "mmgen GPU check", notes=()) -> str:
    """The markdown text: the steps table, each step's results as a table, the failed steps'
    output tails."""
    passed = all(r.status == "passed" for r in records)
    lines = [f"# {title}", "", f"**{'passed' if passed else 'not passed'}**", ""]
    lines += [*notes, ""] if notes else []
    lines += _table(
        ["step", "kind", "status", "seconds", "limit s"],
        [
            [r.name, r.kind, r.status, "-" if r.seconds is None else round(r.seconds, 1),
             r.limit_s]
            for r in records
        ],
    )  # fmt: skip
    for record in records:
        if not record.results:
            continue
        columns = list(dict.fromkeys(key for result in record.results for key in result))
        rows = [[result.get(key, "") for key in columns] for result in record.results]
        lines += ["", f"## {record.name}", "", *_table(columns, rows)]
    for record in records:  # a figures step that prints a table rather than RESULT lines
        shown = record.status == "passed" and record.kind == "figures" and not record.results
        if shown and record.tail:
            lines += ["", f"## {record.name}", "", "```", record.tail, "```"]
    for record in records:
        if record.status in ("FAILED", "timed out") and record.tail:
            lines += ["", f"## {record.name}: {record.status}", "", "```", record.tail, "```"]
    return "\n".join(lines) + "\n"


def write(out: Path, records: list[StepRecord], **kwargs) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / SUMMARY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(records, **kwargs), encoding="utf-8")
    tmp.replace(path)
    return path
