"""`mmgen eval RUN DATA --metric ...` (see mmgen/infer/evaluate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli._generation import (
    Checkpoint,
    Device,
    Dtype,
    MaxNewTokens,
    RepetitionPenalty,
    Run,
    Seed,
    Stop,
    Temperature,
    TopK,
    TopP,
    generation_options,
    load_model,
)


def evaluate(
    run: Run,
    data: Annotated[Path, typer.Argument(help="Rows whose last assistant turn is the answer.")],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="exact_match, token_f1, bleu, chrf, rouge_l, wer, cer, multiple_choice"
            " (repeatable; default exact_match and token_f1).",
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", "-o", help="Where eval.json and predictions.jsonl go (eval/<data>)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per batch.")] = 32,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N rows.")] = None,
    media_root: Annotated[
        Path | None, typer.Option("--media-root", help="Relative media paths start here.")
    ] = None,
    skip_errors: Annotated[
        bool, typer.Option("--skip-errors", help="Leave bad rows out of the scores and go on.")
    ] = False,
    checkpoint: Checkpoint = None,
    device: Device = None,
    dtype: Dtype = None,
    max_new_tokens: MaxNewTokens = 64,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    top_k: TopK = 0,
    repetition_penalty: RepetitionPenalty = 1.0,
    stop: Stop = None,
    seed: Seed = None,
) -> None:
    """Generate answers for DATA and score them against its references: prints a table and
    writes eval.json (predictions.jsonl beside it; a rerun resumes)."""
    from mmgen.infer.evaluate import DEFAULT_METRICS, RESULT_FILE, table
    from mmgen.infer.evaluate import evaluate as run_eval
    from mmgen.metrics import check_metrics

    metrics = check_metrics(metric or list(DEFAULT_METRICS))  # before the model loads
    options = generation_options(max_new_tokens, temperature, top_p, top_k, repetition_penalty,
                                 stop, seed)  # fmt: skip
    out = output_dir if output_dir is not None else Path("eval") / data.stem
    loaded = load_model(run, checkpoint, device, dtype)
    result = run_eval(
        loaded, data, out, metrics=metrics, options=options, batch_size=batch_size, limit=limit,
        media_root=media_root, on_error="skip" if skip_errors else "raise",
    )  # fmt: skip
    typer.echo(table(result))
    extra = f"; {result['failed']} failed" if result["failed"] else ""
    if result["without_reference"]:
        extra += f"; {result['without_reference']} without a reference"
    typer.echo(f"{result['scored']} rows scored{extra}: {out / RESULT_FILE}")
