"""``mmgen bench ...``: side-by-side speed tables (one subcommand per benchmark)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Benchmarks that print a side-by-side table from one run.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# --- step (packed vs padded training step, issue 4) ---
@app.command("step")
def step(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    small: bool = typer.Option(
        False, "--small", help="48 samples, 1024-token packs, a 64-wide LLM: a few seconds."
    ),
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Samples in the mix (default 256; 48 with --small)."
    ),
    capacity: int | None = typer.Option(
        None, "--capacity", min=64, help="Tokens per packed step (default 4096; 1024 --small)."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Samples per padded step (default: capacity / mean sample length).",
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Timed passes over all batches per layout (default 3)."
    ),
    threads: int = typer.Option(
        1,
        "--threads",
        min=1,
        help="torch CPU threads (1: beside other jobs on 2 cores, 2 threads ran up to 50x slower).",
    ),
) -> None:
    """One forward + backward of a tiny MultimodalModel: packed vs padded, useful tokens/s."""
    from dataclasses import replace

    from mmgen.bench.step import SMALL, Sizes, run

    sizes = SMALL if small else Sizes()
    given = {"samples": samples, "capacity": capacity, "batch_size": batch_size, "rounds": rounds}
    sizes = replace(sizes, **{k: v for k, v in given.items() if v is not None})
    typer.echo(run(sizes, threads=threads, as_json=as_json))
