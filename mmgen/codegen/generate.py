"""Generate one modality from a spec: render its files and plan writing them into a target."""

from __future__ import annotations

from pathlib import Path

from mmgen.codegen.context import build_context, modality_templates
from mmgen.codegen.formatting import format_python
from mmgen.codegen.plan import Plan, plan_files
from mmgen.codegen.project import ANCHOR, Target
from mmgen.codegen.render import docline, insert_at_anchor, render
from mmgen.errors import MmgenError
from mmgen.spec.schema import Spec


def spec_label(spec: Spec, builtin: bool) -> str:
    """How generated headers name the spec: ``"audio" (built-in audio.yaml)``."""
    where = "built-in " if builtin else ""
    return docline(f'"{spec.name}" ({where}{Path(spec.source).name})')


def render_modality(spec: Spec, target: Target, label: str) -> dict[Path, str]:
    """Every generated file of the modality (path -> text, formatted by ruff), nothing written."""
    names = spec.names
    context = build_context(spec, package=target.module(names), spec_label=label)
    folder = target.modalities_dir / names.snake
    templates = {folder / name: template for name, template in modality_templates(spec).items()}
    templates[target.tests_dir / f"test_{names.snake}.py"] = "modality/test.py.jinja"
    first_party = target.first_party(names)
    return {
        path: format_python(path, render(template, context), first_party)
        for path, template in templates.items()
    }


def plan_modality(spec: Spec, target: Target, *, label: str, force: bool = False) -> Plan:
    module = target.modalities_dir / f"{spec.names.snake}.py"
    if module.exists():
        # a package <name>/ beside a module <name>.py would silently shadow the module
        raise MmgenError(f"{module}: a module of that name exists; choose another modality name")
    files = render_modality(spec, target, label)
    edits = {}
    if target.registry is not None:
        module = target.module(spec.names)
        line = f"import {module}  # noqa: F401 (registers the modality)"

        def register(text: str) -> str:
            return insert_at_anchor(text, ANCHOR, line, where=str(target.registry))

        edits[target.registry] = (register, f"registers {spec.names.snake}")
    return plan_files(target.root, files, force=force, edits=edits)
