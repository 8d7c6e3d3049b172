"""`mmgen export RUN OUT [--format llava]` (see mmgen/export/merged.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from mmgen.cli._generation import Checkpoint, Run


def export(
    run: Run,
    out: Annotated[Path, typer.Argument(help="The folder to write (complete or not at all).")],
    checkpoint: Checkpoint = None,
    format: Annotated[
        Literal["merged", "llava"],
        typer.Option(
            "--format",
            help="merged: an mmgen folder with LoRA merged; llava: also OUT/llava, a plain"
            " transformers LlavaForConditionalGeneration (CLIP/SigLIP image models).",
        ),
    ] = "merged",
    max_shard_size: Annotated[
        str, typer.Option("--max-shard-size", help="Largest weight file, e.g. 2GB or 500MB.")
    ] = "2GB",
    dtype: Annotated[
        str | None,
        typer.Option(help="fp32, bf16 or fp16 (default: the type the LLM was saved in)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUT when it holds files.")
    ] = False,
) -> None:
    """Export a trained model to OUT: LoRA merged, safetensors weights, tokenizer and chat
    template, processor and generation configs, and a model card (README.md)."""
    from transformers.utils import logging as transformers_logging

    from mmgen.export.merged import export as run_export

    transformers_logging.disable_progress_bar()  # per-file load and write bars
    done = run_export(
        run, out, checkpoint=checkpoint, format=format, max_shard_size=max_shard_size,
        dtype=dtype, overwrite=overwrite,
    )  # fmt: skip
    size = sum(p.stat().st_size for p in done.out.rglob("*") if p.is_file())
    merged = ", LoRA merged" if done.merged_lora else ""
    typer.echo(f"{done.out}: {done.source.folder} exported ({size / 2**20:.1f} MB{merged})")
    if done.llava is not None:
        typer.echo(f"{done.llava}: LlavaForConditionalGeneration (loads with transformers alone)")
