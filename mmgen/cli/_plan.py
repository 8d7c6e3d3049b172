"""What `init` and `new-modality` share: the --dry-run / --force options and showing a plan,
then applying it (or not)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from mmgen.codegen.plan import Plan

DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan with diffs; write nothing.")
]
Force = Annotated[
    bool, typer.Option("--force", help="Overwrite files that differ from the generated text.")
]


def show_and_apply(plan: Plan, *, dry_run: bool, what: str) -> bool:
    """Print the plan; unless dry-running, write it. True when files were written."""
    from mmgen.codegen.plan import apply
    from mmgen.errors import MmgenError

    typer.echo(plan.describe(diffs=dry_run))
    if dry_run:
        if plan.conflicts:
            raise MmgenError("conflicts above: rerun with --force to overwrite them")
        typer.echo("dry run: nothing written")
        return False
    if not apply(plan):
        typer.echo(f"{what}: up to date, nothing to do")
        return False
    return True
