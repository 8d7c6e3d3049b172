"""``mmgen bench ...``: side-by-side speed tables (one subcommand per benchmark)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Benchmarks that print a side-by-side table from one run.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
