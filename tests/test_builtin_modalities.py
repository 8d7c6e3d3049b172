"""mmgen's built-in modalities are what `mmgen new-modality NAME --project .` generates from
specs/NAME.yaml (the repository is an mmgen project whose package is ``mmgen``): regenerating
every one gives byte-identical files, the way projects that check in generated code verify it.
After changing a template or a spec, regenerate them with that command for every built-in spec
and review the diff."""

from __future__ import annotations

from pathlib import Path

import pytest

import mmgen
from mmgen.codegen.generate import plan_modality, spec_label
from mmgen.codegen.plan import Verdict
from mmgen.codegen.project import project_target
from mmgen.modality.registry import AutoModality, AutoModalityLoader
from mmgen.spec.catalog import builtin_specs, resolve

REPO = Path(mmgen.__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not (REPO / "specs").is_dir(), reason="needs the source tree (an installed mmgen has no specs/)"
)


@pytest.mark.parametrize("name", sorted(builtin_specs()))
def test_regenerating_a_builtin_changes_nothing(name: str) -> None:
    spec, builtin = resolve(name, None)
    plan = plan_modality(spec, project_target(REPO), label=spec_label(spec, builtin))
    changed = [
        f"{action.verdict.value} {action.path.relative_to(REPO)}"
        for action in plan.actions
        if action.verdict is not Verdict.IDENTICAL
    ]
    assert not changed, (
        f"mmgen/modalities/{name} is not what specs/{name}.yaml generates: {changed}; run"
        f" `mmgen new-modality {name} --project .` and review the diff"
    )


def test_one_modality_system() -> None:
    import mmgen.modalities  # noqa: F401  (registers the built-ins)

    assert set(builtin_specs()) <= set(AutoModality.names())
    assert not [name for name in AutoModality.names() if name.startswith("mmgen_")]
    for name in builtin_specs():
        assert AutoModality.get(name).__module__ == f"mmgen.modalities.{name}.modality"
    assert AutoModalityLoader.from_name("raw-audio") is not None
