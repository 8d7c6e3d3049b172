"""Reading a spec file: YAML with the line of every key, validated by the schema in
:mod:`mmgen.spec.schema`, every problem turned into ``file:line: field: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mmgen.errors import SpecError
from mmgen.spec.schema import _FIELD_MARK, Spec, _hint

_MAX_BYTES = 256 * 1024


def load_spec(path: str | Path, text: str | None = None) -> Spec:
    """Read and validate a spec file; every problem is a SpecError ``file:line: field: message``."""
    path = Path(path)
    if text is None:
        try:
            if path.stat().st_size > _MAX_BYTES:
                raise SpecError(f"{path}: larger than {_MAX_BYTES // 1024} KiB; not a spec")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: cannot read: {exc}") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "<spec>") -> Spec:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)  # SafeLoader: no tags are constructed
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}:{line}: yaml: {problem}") from None
    lines: dict[tuple, int] = {}
    _index(root, (), lines, source, set())
    if not isinstance(data, dict):
        raise SpecError(f"{source}:1: spec: must be a mapping of keys (name, encoder, ...)")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        located = sorted(_format(error, source, lines) for error in exc.errors())
        messages = [message for _, message in located]
        error = SpecError(_join(messages))
        error.messages = messages  # every problem, for `mmgen validate`
        raise error from None
    spec._source, spec._lines = source, lines
    return spec


def _join(messages: list[str]) -> str:
    more = len(messages) - 1
    return messages[0] + (f" (and {more} more; see `mmgen validate`)" if more else "")


def _index(node: Any, path: tuple, lines: dict[tuple, int], source: str, seen: set) -> None:
    """Map each key path to its line; reject duplicate keys and YAML aliases."""
    if node is None:
        return
    if id(node) in seen:
        raise SpecError(f"{source}:{node.start_mark.line + 1}: yaml: anchors/aliases not allowed")
    seen.add(id(node))
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            if name in keys:
                where = dotted((*path, name))
                raise SpecError(f"{source}:{key.start_mark.line + 1}: {where}: duplicate key")
            keys.add(name)
            lines[(*path, name)] = key.start_mark.line + 1
            _index(value, (*path, name), lines, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), lines, source, seen)


def line_of(lines: dict[tuple, int], loc: tuple) -> int:
    for end in range(len(loc), -1, -1):
        if tuple(loc[:end]) in lines:
            return lines[tuple(loc[:end])]
    return 1


def dotted(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "spec"


def _format(error: dict[str, Any], source: str, lines: dict[tuple, int]) -> tuple[int, str]:
    # pydantic adds the union branch or validator name to loc; keep only the path in the data
    loc = tuple(p for p in error["loc"] if isinstance(p, int) or not _is_type_tag(p))
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith(_FIELD_MARK):
        _, field, message = message.split(_FIELD_MARK, 2)
        loc = (*loc, field)
    if error["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}{_did_you_mean(loc)}"
    elif error["type"] == "missing":
        message = "required"
    line = line_of(lines, loc)
    return line, f"{source}:{line}: {dotted(loc)}: {message}"


def _is_type_tag(part: str) -> bool:
    return part[:1].islower() and ("[" in part or part in {"int", "str", "float", "bool", "none"})


def _did_you_mean(loc: tuple) -> str:
    model: Any = Spec
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = _model_of(field.annotation) if field else None
        if model is None:
            return ""
    known = [f.alias or name for name, f in model.model_fields.items()]
    return _hint(str(loc[-1]), known)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
