"""``mmgen bench ...``: side-by-side speed tables (one subcommand per benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Benchmarks that print a side-by-side table from one run.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# --- pack (token-budget packing, issue: varlen) ---
@app.command("pack")
def pack(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    small: bool = typer.Option(False, "--small", help="20,000 samples instead of 1,000,000."),
    num_samples: int | None = typer.Option(
        None, "-n", "--num-samples", min=1, help="Samples per length distribution (default 1M)."
    ),
    capacity: int | None = typer.Option(
        None,
        "--capacity",
        min=1,
        help="Tokens per pack for both distributions (default 2048 for gamma, 8192 lognormal).",
    ),
) -> None:
    """plan_packs vs pad-to-longest, next fit, Python bisect BFD and TRL; packed metadata."""
    from mmgen.bench.pack import run

    n = num_samples or (20_000 if small else 1_000_000)
    typer.echo(run(num_samples=n, capacity=capacity, as_json=as_json))


# --- train (packed vs padded training steps, issue: training) ---
@app.command("train")
def train(
    config: Annotated[Path, typer.Argument(help="A training config (configs/train.yaml).")],
    steps: Annotated[int, typer.Option("--steps", min=4, help="Optimizer steps per layout.")] = 60,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: dotted.key=value (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Training throughput of a config with packed vs padded batches (useful tokens/s)."""
    from mmgen.bench.train import run

    typer.echo(run(config, steps=steps, overrides=overrides or [], as_json=as_json))
