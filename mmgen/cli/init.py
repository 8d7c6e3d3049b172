"""`mmgen init PROJECT`: the training-project scaffold new modalities are generated into."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli._plan import DryRun, Force, show_and_apply


def init(
    project: Annotated[Path, typer.Argument(help="Folder of the new project (created).")],
    package: Annotated[
        str | None,
        typer.Option("--package", help="Python package name (default: from the folder name)."),
    ] = None,
    dry_run: DryRun = False,
    force: Force = False,
) -> None:
    """Create a training project: pyproject, README, configs/train.yaml, package, tests."""
    from mmgen.codegen.names import Names, check_name
    from mmgen.codegen.plan import plan_files
    from mmgen.codegen.project import scaffold
    from mmgen.errors import MmgenError

    root = project.resolve()
    if root.exists() and not root.is_dir():
        raise MmgenError(f"{project}: exists and is not a folder")
    name = package or root.name
    check_name(name, "package name" if package else "project folder name (or pass --package)")
    plan = plan_files(root, scaffold(root, Names.of(name).snake), force=force)
    if show_and_apply(plan, dry_run=dry_run, what=str(project)):
        typer.secho(
            f"created {project}; next: cd {project} && mmgen new-modality audio", fg="green"
        )
