"""`mmgen new-modality NAME`: generate a modality's loader, config, processor, modality and test
from a YAML spec, and register it in the project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli._plan import DryRun, Force, show_and_apply
from mmgen.errors import MmgenError


def new_modality(
    name: Annotated[
        str,
        typer.Argument(help="Modality name; alone, it picks the built-in spec of that name."),
    ],
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="Generate from this YAML spec file; NAME names the result."),
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            help="Project made by `mmgen init` (default: the one around the current folder).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write into this plain folder instead of a project."),
    ] = None,
    dry_run: DryRun = False,
    force: Force = False,
) -> None:
    """Generate a modality from a YAML spec into a project (or a plain folder)."""
    from mmgen.codegen.generate import plan_modality, spec_label
    from mmgen.codegen.project import find_project, out_target, project_target
    from mmgen.codegen.references import check_references
    from mmgen.spec.catalog import resolve

    if project is not None and out is not None:
        raise MmgenError("give either --project or --out, not both")
    modality, builtin = resolve(name, spec)
    check_references(modality)  # a misspelt class or activation: an error now, not at import
    if out is not None:
        target = out_target(out.resolve())
        _check_shadowing(modality.names.snake, target.root)
    else:
        target = project_target(project.resolve() if project else find_project(Path.cwd()))
    plan = plan_modality(modality, target, label=spec_label(modality, builtin), force=force)
    if show_and_apply(plan, dry_run=dry_run, what=modality.names.snake):
        test = target.tests_dir / f"test_{modality.names.snake}.py"
        typer.secho(f"generated {modality.names.snake}; run its test: pytest {test}", fg="green")


def _check_shadowing(module: str, folder: Path) -> None:
    """With --out the package is imported by its bare name: refuse names of installed modules."""
    import importlib.util

    found = importlib.util.find_spec(module)
    origin = Path(found.origin).resolve() if found and found.origin else None
    if found is not None and not (origin and origin.is_relative_to(folder)):
        raise MmgenError(
            f"modality name {module!r} would shadow the installed module {module!r}; pick another"
        )
