"""Shared CLI plumbing: a user error becomes one red line on stderr and exit code 1."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from mmgen.errors import MmgenError, one_line


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as a red error line; return the Exit for the caller to raise."""
    typer.secho(f"error: {one_line(message)}", fg="red", err=True)
    return typer.Exit(code)


class MmgenGroup(TyperGroup):
    """The root command group: an MmgenError from any command is shown without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MmgenError as exc:
            raise fail(str(exc)) from None
