"""``mmgen bench ...``: side-by-side speed tables (one subcommand per benchmark)."""

from __future__ import annotations

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
