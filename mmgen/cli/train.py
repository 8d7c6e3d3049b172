"""`mmgen train CONFIG`: train a project's multimodal model (see mmgen/train/loop.py)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer


def train(
    config: Annotated[Path, typer.Argument(help="The training config (configs/train.yaml).")],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the run's newest checkpoint that verifies (fresh start if none).",
        ),
    ] = False,
    resume_from: Annotated[
        Path | None,
        typer.Option("--resume-from", help="Continue from this checkpoint folder (verified)."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Start again even though the run has checkpoints."),
    ] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a config value: dotted.key=value (repeatable), "
            "e.g. --set stages.0.steps=20.",
        ),
    ] = None,
) -> None:
    """Train on packed batches; on several GPUs or nodes launch it with torchrun:
    `torchrun --nproc-per-node 4 -m mmgen train configs/train.yaml`.
    """
    from transformers.utils import logging as transformers_logging

    from mmgen.train.config import load_config
    from mmgen.train.loop import train as run

    transformers_logging.disable_progress_bar()  # per-file save/load bars drown the training log
    loaded = load_config(config, overrides)
    mode = str(resume_from) if resume_from is not None else ("auto" if resume else None)
    result = run(loaded, resume=mode, overwrite=overwrite)
    if result.stopped_by is not None:
        # the same overrides: they may name the run's output_dir or change its steps
        again = "".join(f" --set {shlex.quote(o)}" for o in overrides or [])
        typer.echo(f"resume with: mmgen train {shlex.quote(str(config))}{again} --resume")
        raise typer.Exit(128 + result.stopped_by)
