"""Where generated files go: a project made by ``mmgen init`` (its package's ``modalities/``,
registered at the anchor comment) or a plain ``--out`` folder; and the scaffold ``init`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmgen import project
from mmgen.codegen.render import render
from mmgen.spec.names import Names

ANCHOR = "# mmgen: modality imports above this line (`mmgen new-modality` adds them here)"
SCAFFOLD = {
    "pyproject.toml": "project/pyproject.toml.jinja",
    "README.md": "project/README.md.jinja",
    ".gitignore": "project/gitignore.jinja",
    "configs/train.yaml": "project/train.yaml.jinja",
    "{package}/__init__.py": "project/package_init.py.jinja",
    "{package}/modalities/__init__.py": "project/modalities_init.py.jinja",
    "tests/test_project.py": "project/test_project.py.jinja",
}


@dataclass(frozen=True)
class Target:
    """Where one modality's files go.

    root: folder that paths are shown relative to; modalities_dir: the folder that receives
    ``<name>/``; package: import path of that folder (``demo.modalities``, or "" for ``--out``);
    tests_dir: where the test goes; registry: the ``__init__.py`` edited at the anchor.
    """

    root: Path
    modalities_dir: Path
    package: str
    tests_dir: Path
    registry: Path | None = None

    def first_party(self, names: Names) -> tuple[str, ...]:
        """Modules ruff sorts as first-party here: the ones at the root (ruff's default ``src``),
        the project's package, and the generated package itself (not on disk before the first
        write, so ruff cannot find it alone).
        """
        local = {p.stem for p in self.root.glob("*.py")}
        folders = self.root.iterdir() if self.root.is_dir() else ()
        local |= {p.name for p in folders if (p / "__init__.py").is_file()}
        local.add(self.package.split(".")[0] if self.package else names.snake)
        return tuple(sorted(local))

    def module(self, names: Names) -> str:
        return f"{self.package}.{names.snake}" if self.package else names.snake


def project_target(directory: Path) -> Target:
    """The target inside an ``mmgen init`` project (found by ``[tool.mmgen]`` in its pyproject)."""
    package = project.package_of(directory)
    modalities = directory / package / "modalities"
    return Target(
        root=directory,
        modalities_dir=modalities,
        package=f"{package}.modalities",
        tests_dir=directory / "tests",
        registry=modalities / "__init__.py",
    )


def find_project(start: Path) -> Path:
    """The nearest folder at or above ``start`` whose pyproject.toml has ``[tool.mmgen]`` (so
    `mmgen new-modality` works from anywhere inside a project); ``start`` when there is none,
    which then fails in ``project_target`` with the reason.
    """
    return project.find_root(start) or start


def out_target(directory: Path) -> Target:
    """A plain folder: ``DIR/<name>/`` (importable as ``<name>``) and ``DIR/test_<name>.py``."""
    return Target(root=directory, modalities_dir=directory, package="", tests_dir=directory)


def scaffold(directory: Path, package: str) -> dict[Path, str]:
    """The files of a new training project (path -> text)."""
    names = Names.of(package)
    context = {
        "project": directory.name,
        "package": names.snake,
        "names": names,
        "anchor": ANCHOR,
    }
    return {
        directory / path.format(package=names.snake): render(template, context)
        for path, template in SCAFFOLD.items()
    }
