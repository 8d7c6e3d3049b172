"""The package layout the README's "Architecture" section describes: every folder is a package
(so a wheel ships it), imports flow one way between layers, and no two files import each other,
directly or through others (imports inside functions count: they are dependencies too)."""

from __future__ import annotations

import ast
from pathlib import Path

import mmgen

ROOT = Path(mmgen.__file__).parent

# the layer of each top-level part: a module may import its own part and lower layers only
LAYERS = {
    "__main__": 13,
    "cli": 12,
    "gpucheck": 12,  # scripts/gpu_check.sh: runs the tests, bench and demo as steps
    "bench": 11,
    "serve": 10,  # the OpenAI-compatible server
    "export": 10,  # a trained model as a folder to share or serve; loads it through infer
    "infer": 9,  # using a trained model: load, predict, evaluate, chat
    "train": 8,
    "codegen": 8,
    "convert": 8,
    "demo_data": 8,
    "model": 7,
    "data": 6,
    "modalities": 5,  # the built-in modalities, generated from specs/*.yaml
    "loaders": 4,
    "modality": 3,
    "nn": 2,
    "ops": 2,
    "spec": 2,
    "metrics": 2,  # scores of generated answers (eval, training evaluation)
    "testing": 2,
    "yamlfile": 1,
    "lazy": 0,
    "resources": 1,
    "project": 1,
    "errors": 0,
    "constants": 0,
    "__init__": 0,  # mmgen/__init__.py: the public names, resolved lazily (it may name any)
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The mmgen modules ``path`` imports anywhere in it (``from a import b``: ``a.b`` when that
    is a module, else ``a``)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent / "x")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {  # imports under `if TYPE_CHECKING:` are for annotations, not dependencies
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            if not base.startswith("mmgen"):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
    return {name for name in found if name in known and name != module_name(path)}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def part(name: str) -> str:
    pieces = name.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def test_every_folder_is_a_package() -> None:
    for folder in ROOT.rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
            assert (folder / "__init__.py").is_file(), f"{folder} has no __init__.py"


def test_every_part_has_a_layer() -> None:
    parts = {part(name) for name in modules()} - {"_C"}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def test_imports_flow_down_the_layers() -> None:
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            if part(target) != part(name) and LAYERS[part(target)] >= LAYERS[part(name)]:
                if part(name) == "__init__":  # the top-level package names public classes
                    continue
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_circles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not circles, f"import circles: {circles}"


def test_nothing_patches_transformers_or_rewrites_subclasses() -> None:
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "PreTrainedModel.from_pretrained =" not in text, path
        assert "__init_subclass__" not in text, path  # no rewriting of users' __init__
