"""Rendering: a sandboxed jinja2 environment over ``templates/`` and the filters that put spec
values into generated code safely, plus the anchor edit used to register a modality.

Spec strings never reach generated code raw: ``py`` prints any value as a Python literal (strings
always double-quoted with every special character escaped, so quotes, backslashes, newlines and
``{{ }}`` stay data), ``docline`` makes one safe line of docstring or comment text.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from mmgen.errors import MmgenError
from mmgen.resources import templates_dir


def environment(root: Path | None = None) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(root or templates_dir())),
        undefined=StrictUndefined,  # a missing value is an error, never an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # the output is Python, escaped by `py`, not HTML
    )
    env.filters["py"] = py_literal
    env.filters["docline"] = docline
    env.filters["wrap"] = wrap
    return env


def render(template: str, context: dict[str, Any], root: Path | None = None) -> str:
    return environment(root).get_template(template).render(**context)


def py_string(text: str) -> str:
    """``text`` as a double-quoted Python string literal (the quote style ruff format keeps)."""
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        else:
            out.append(repr(char)[1:-1])  # \n, \t, \x00, lone surrogates ... escaped by repr
    out.append('"')
    return "".join(out)


def py_literal(value: Any) -> str:
    """A Python literal for a JSON-like value (ruff format lays out the long ones)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MmgenError(f"{value!r} cannot be written into generated code")
        return repr(value)
    if isinstance(value, str):
        return py_string(value)
    if isinstance(value, dict):
        items = (f"{py_string(str(k))}: {py_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    raise MmgenError(f"a {type(value).__name__} cannot be written into generated code")


def docline(text: str) -> str:
    """One line of prose that is safe inside a docstring or after ``#``."""
    flat = " ".join(str(text).split())
    flat = "".join(ch if ch.isprintable() else " " for ch in flat)
    return flat.replace("\\", "/").replace('"""', "'''").rstrip('"')


def wrap(text: str, indent: int, width: int = 88) -> str:
    """``docline`` text wrapped to ``width`` columns, continuation lines indented by ``indent``
    (the first line is placed by the template).
    """
    lines = textwrap.wrap(docline(text), width - indent - 4, break_on_hyphens=False)
    return ("\n" + " " * indent).join(lines)


def insert_at_anchor(text: str, anchor: str, line: str, *, where: str) -> str:
    """Return ``text`` with ``line`` in the sorted block of lines just above the ``anchor``
    comment; unchanged when ``line`` is already there (so registering twice is a no-op).
    A missing anchor is an error: silently appending could register in the wrong place.
    """
    lines = text.splitlines(keepends=True)
    at = next((i for i, existing in enumerate(lines) if existing.strip() == anchor), None)
    if at is None:
        raise MmgenError(
            f"{where}: anchor comment {anchor!r} not found; add it on its own line where"
            " generated modalities should be registered"
        )
    if any(existing.rstrip("\n") == line for existing in lines):
        return text
    start = at
    while start > 0 and lines[start - 1].startswith(_block_prefix(line)):
        start -= 1
    block = sorted([*lines[start:at], line + "\n"])
    return "".join(lines[:start] + block + lines[at:])


def _block_prefix(line: str) -> str:
    if line.startswith("import "):
        return "import "
    return line.split(" import ")[0] + " import " if " import " in line else line
