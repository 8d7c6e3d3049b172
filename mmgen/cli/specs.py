"""`mmgen specs` lists the built-in modality specs; `mmgen specs show NAME` prints one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="The built-in modality specs (`mmgen specs` lists them).",
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
)


@app.callback()
def specs(ctx: typer.Context) -> None:
    """List the built-in specs with a one-line description each."""
    if ctx.invoked_subcommand is not None:
        return
    from mmgen.spec.catalog import builtin_specs
    from mmgen.spec.loading import load_spec

    found = builtin_specs()
    width = max(map(len, found), default=0)
    for name, path in found.items():
        typer.echo(f"{name:<{width}}  {load_spec(path).description}")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Built-in spec name (see `mmgen specs`).")],
) -> None:
    """Print a built-in spec (copy it to start your own: `mmgen specs show audio > my.yaml`)."""
    from mmgen.spec.catalog import builtin_spec

    spec = builtin_spec(name)
    typer.echo(Path(spec.source).read_text(encoding="utf-8"), nl=False)
