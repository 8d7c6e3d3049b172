"""Import blocks for generated files, sorted and grouped the way ruff's isort rules want them.

Templates list the imports they need, one statement each (conditional ones as ``"" if not x``);
``import_block`` merges ``from m import a`` / ``from m import b``, groups future / stdlib /
third-party / first-party / relative, sorts each group (plain imports before from-imports,
constants before classes before functions) and wraps long lines with a trailing comma, which
ruff format keeps at any line length.
"""

from __future__ import annotations

import sys

_WIDTH = 88  # black/ruff default: a block that fits here also fits the project's 100


def import_block(*statements: str, first_party: tuple[str, ...] = ()) -> str:
    plain: dict[int, set[str]] = {}
    froms: dict[int, dict[str, set[str]]] = {}
    for statement in statements:
        statement = statement.strip()
        if not statement:
            continue
        if statement.startswith("import "):
            module = statement.removeprefix("import ")
            plain.setdefault(_section(module, first_party), set()).add(module)
        elif statement.startswith("from ") and " import " in statement:
            module, _, names = statement.removeprefix("from ").partition(" import ")
            group = froms.setdefault(_section(module, first_party), {})
            group.setdefault(module, set()).update(n.strip() for n in names.split(","))
        else:
            raise ValueError(f"not an import statement: {statement!r}")
    blocks = []
    for section in sorted(set(plain) | set(froms)):
        lines = [f"import {m}" for m in sorted(plain.get(section, ()), key=_module_key)]
        for module in sorted(froms.get(section, {}), key=_module_key):
            lines.append(_from_line(module, sorted(froms[section][module], key=_member_key)))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _section(module: str, first_party: tuple[str, ...]) -> int:
    top = module.split(".")[0].split(" ")[0]
    if module.startswith("."):
        return 4
    if top == "__future__":
        return 0
    if top in sys.stdlib_module_names:
        return 1
    return 3 if top in first_party else 2


def _module_key(module: str) -> tuple[str, str]:
    return module.lower(), module


def _member_key(name: str) -> tuple[int, str]:
    bare = name.split(" as ")[0]
    kind = 0 if bare.isupper() and len(bare) > 1 else 1 if bare[:1].isupper() else 2
    return kind, bare.lower()


def _from_line(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= _WIDTH:
        return line
    body = "".join(f"    {name},\n" for name in names)
    return f"from {module} import (\n{body})"
