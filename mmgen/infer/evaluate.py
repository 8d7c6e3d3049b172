"""``mmgen eval``: predict a dataset (``mmgen.infer.predict``) and score the answers against the
rows' references (``mmgen.metrics``); ``eval.json`` keeps the scores, ``predictions.jsonl`` the
answers (so an interrupted evaluation resumes where it stopped)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mmgen.errors import DataError
from mmgen.infer.predict import predict
from mmgen.metrics import LOWER_IS_BETTER, check_metrics, score

PREDICTIONS_FILE = "predictions.jsonl"
RESULT_FILE = "eval.json"
DEFAULT_METRICS = ("exact_match", "token_f1")


def evaluate(
    loaded: Any,
    data: str | os.PathLike,
    out_dir: Path,
    *,
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    options: Any = None,
    batch_size: int = 32,
    limit: int | None = None,
    media_root: str | os.PathLike | None = None,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Scores of ``loaded``'s answers to ``data``'s rows; writes ``out_dir/eval.json``."""
    from mmgen.model.generation import GenerationOptions

    metrics = check_metrics(metrics)
    options = options or GenerationOptions()
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = out_dir / PREDICTIONS_FILE
    report = predict(
        loaded, data, predictions, options=options, batch_size=batch_size, limit=limit,
        media_root=media_root, on_error=on_error,
    )  # fmt: skip
    lines = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line["row"] < report.total]
    answered = [line for line in lines if "prediction" in line]
    scored = [line for line in answered if "reference" in line]
    if not scored:
        raise DataError(
            f"{data}: no row has a reference answer (a final assistant turn) to score against"
        )
    result = {
        "model": str(loaded.path),
        "data": str(data),
        "rows": report.total,
        "scored": len(scored),
        "without_reference": len(answered) - len(scored),
        "failed": len(lines) - len(answered),
        "metrics": score(
            metrics, [x["prediction"] for x in scored], [x["reference"] for x in scored]
        ),
        "lower_is_better": sorted(set(metrics) & LOWER_IS_BETTER),
        "generation": asdict(options),
        "predictions": str(predictions),
    }
    target = out_dir / RESULT_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return result


def table(result: dict[str, Any]) -> str:
    """The scores as an aligned two-column table."""
    rows = [(name, f"{value:.4g}") for name, value in result["metrics"].items()]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(lines)
