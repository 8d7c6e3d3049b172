"""`mmgen predict RUN DATA -o predictions.jsonl` (see mmgen/infer/predict.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli._generation import (
    Checkpoint,
    Device,
    Dtype,
    IgnoreEos,
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


def predict(
    run: Run,
    data: Annotated[Path, typer.Argument(help="Rows in any format training reads.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The JSONL file of predictions (appended).")
    ] = Path("predictions.jsonl"),
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per batch.")] = 32,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N rows.")] = None,
    media_root: Annotated[
        Path | None, typer.Option("--media-root", help="Relative media paths start here.")
    ] = None,
    skip_errors: Annotated[
        bool, typer.Option("--skip-errors", help="Write bad rows as error lines and go on.")
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
    ignore_eos: IgnoreEos = False,
) -> None:
    """Generate an answer for every row of DATA: one JSON line per row (id, prompt, prediction,
    reference, token counts). Running it again skips the rows already written."""
    from mmgen.infer.predict import predict as run_predict

    options = generation_options(max_new_tokens, temperature, top_p, top_k, repetition_penalty,
                                 stop, seed, ignore_eos)  # fmt: skip
    loaded = load_model(run, checkpoint, device, dtype)
    report = run_predict(
        loaded, data, output, options=options, batch_size=batch_size, limit=limit,
        media_root=media_root, on_error="skip" if skip_errors else "raise",
    )  # fmt: skip
    rate = report.written / report.seconds if report.seconds > 0 else 0.0
    again = f", {report.skipped} already there" if report.skipped else ""
    failed = f", {report.failed} failed" if report.failed else ""
    typer.echo(
        f"{output}: {report.written} rows written{again}{failed} ({rate:.1f} rows/s,"
        f" {report.completion_tokens} tokens generated)"
    )
