"""`mmgen validate SPEC`: check a modality spec without generating anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def validate(
    spec: Annotated[Path, typer.Argument(help="The YAML spec file to check.")],
) -> None:
    """Check a spec: schema, names, formula, classes; print every problem as file:line."""
    from mmgen.codegen.context import context_errors
    from mmgen.codegen.references import error_line, reference_errors
    from mmgen.errors import SpecError, one_line
    from mmgen.spec.loading import load_spec

    try:
        loaded = load_spec(spec)  # the schema: every problem, or none
        found = reference_errors(loaded) + context_errors(loaded)
        messages = [str(error) for error in sorted(found, key=error_line)]
    except SpecError as exc:
        messages = getattr(exc, "messages", [str(exc)])
    if messages:
        for message in messages:
            typer.secho(f"error: {one_line(message)}", fg="red", err=True)
        raise typer.Exit(1)
    typer.secho(f"{spec}: valid spec for modality {loaded.names.snake!r}", fg="green")
