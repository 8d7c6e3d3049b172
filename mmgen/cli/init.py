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
    from mmgen.codegen.plan import plan_files
    from mmgen.codegen.project import ANCHOR, scaffold
    from mmgen.errors import MmgenError
    from mmgen.spec.names import Names, check_name

    root = project.resolve()
    if root.exists() and not root.is_dir():
        raise MmgenError(f"{project}: exists and is not a folder")
    name = package or root.name
    check_name(name, "package name" if package else "project folder name (or pass --package)")
    package_name = Names.of(name).snake
    files = scaffold(root, package_name)
    # the registry of an existing project lists its generated modalities: keep it as it is
    # (replacing it with the empty scaffold, even with --force, would unregister them)
    registry = root / package_name / "modalities" / "__init__.py"
    edits = {}
    if registry.is_file() and ANCHOR in registry.read_text(encoding="utf-8", errors="replace"):
        del files[registry]
        edits[registry] = (lambda text: text, "modality registry, kept")
    plan = plan_files(root, files, force=force, edits=edits)
    if show_and_apply(plan, dry_run=dry_run, what=str(project)):
        typer.secho(
            f"created {project}; next: cd {project} && mmgen new-modality audio", fg="green"
        )
