"""`mmgen demo-data KIND`: write a synthetic dataset and its tokenizer (the offline demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo_data(
    kind: Annotated[str, typer.Argument(help="The task: audio (tones -> note names) or image.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder to write (default: data/demo-KIND).")
    ] = None,
    train: Annotated[int, typer.Option("--train", help="Training samples.")] = 3000,
    eval_: Annotated[int, typer.Option("--eval", help="Eval samples (loss, accuracy).")] = 200,
    test: Annotated[int, typer.Option("--test", help="Held-out samples (final accuracy).")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same files.")] = 0,
) -> None:
    """Write DIR/{train,eval,test}.jsonl, their media and DIR/tokenizer for `mmgen train`."""
    from mmgen.demo_data import write_demo_data

    folder = out if out is not None else Path("data") / f"demo-{kind}"
    written = write_demo_data(
        kind, folder, {"train": train, "eval": eval_, "test": test}, seed=seed
    )
    for name, path in written.items():
        typer.echo(f"{name:<9} {path}")
