"""YAML files validated by a pydantic model, with every error as ``file:line: key: message``.

The file is composed once to learn the line of every key, then loaded with ``SafeLoader`` (no
tags run) and validated. An unknown key gets a "did you mean" hint from the keys the model
accepts at that place, so a typo such as ``packing.capacty`` reads::

    configs/train.yaml:31: packing.capacty: unknown key; did you mean 'capacity'?

A value set from the command line (``--set packing.capacty=64``) is named that way instead of by
a file line: ``--set packing.capacty=64: packing.capacty: unknown key; ...``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mmgen.errors import ConfigError
from mmgen.spec.loading import dotted, line_of  # the spec files' key paths, shared

Model = TypeVar("Model", bound=BaseModel)
Location = tuple[str | int, ...]
# where each key path was written: its file line, or the `--set ...` that set it
Origins = dict[Location, int | str]


def load_yaml_model(
    path: str | Path, model: type[Model], overrides: list[str] | None = None
) -> tuple[Model, Origins]:
    """Read ``path`` and validate it as ``model``; return it with the origin of every key path
    (its line, or the override that set it).
    ``overrides`` (``dotted.key=value``, the value parsed as YAML) replace values before
    validation, e.g. ``stages.0.steps=20``.

    Raises:
        ConfigError: the file is missing or unreadable, is not YAML, is not a mapping, or
            fails validation (the first problem, with a count of the others).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)  # SafeLoader: no tags run
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{mark.line + 1 if mark else 1}: yaml: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the file must be a mapping of keys, not a {type(data)}")
    lines: Origins = {}
    _index(root, (), lines)
    for override in overrides or []:
        loc = _override(data, override)
        for key in [k for k in lines if k[: len(loc)] == loc]:
            del lines[key]  # the file's lines below it no longer hold these values
        lines[loc] = f"--set {override}"
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        messages = [_message(error, model, path, lines) for error in exc.errors()]
        more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
        raise ConfigError(messages[0] + more) from None


def _override(data: dict[str, Any], override: str) -> Location:
    """Apply one ``dotted.key=value``; return the key path it set (list indices as ints)."""
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {override!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {override!r}: the value is not valid YAML") from None
    node: Any = data
    loc: list[str | int] = []
    for depth, part in enumerate(parts[:-1]):
        step: str | int = int(part) if isinstance(node, list) and part.isdigit() else part
        loc.append(step)
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            if not isinstance(node, dict):
                missing = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {key}: {missing} not found") from None
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
        return (*loc, int(last))
    if isinstance(node, dict):
        node[last] = value
        return (*loc, last)
    raise ConfigError(f"--set {key}: cannot set {last!r} inside a {type(node).__name__}")


def where(path: str | Path, lines: Origins, loc: Location) -> str:
    """``file:line: dotted.key`` for a key path (the nearest enclosing key that has a line), or
    ``--set key=value: dotted.key`` when an override set it."""
    origin = line_of(lines, loc)
    key = dotted(loc) if loc else "(top level)"
    return f"{origin}: {key}" if isinstance(origin, str) else f"{path}:{origin}: {key}"


def _index(node: Any, loc: Location, lines: Origins) -> None:
    if node is None:
        return
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            lines[(*loc, name)] = key.start_mark.line + 1
            _index(value, (*loc, name), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines)


def _message(error: dict[str, Any], model: type[BaseModel], path: Path, lines) -> str:
    # pydantic puts union branches and validator tags into loc; keep the keys of the data only
    loc = tuple(part for part in error["loc"] if isinstance(part, int) or not _is_tag(part))
    text = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        text = f"unknown key{_suggest(model, loc)}"
    elif error["type"] == "missing":
        text = "required key is missing"
    return f"{where(path, lines, loc)}: {text}"


def _is_tag(part: str) -> bool:
    return "[" in part or part in {"int", "str", "float", "bool", "none", "list", "dict"}


def _suggest(model: type[BaseModel], loc: Location) -> str:
    """``; did you mean 'x'?`` from the fields of the model that owns ``loc[-1]``."""
    owner = _walk(model, loc[:-1])
    if owner is None:
        return ""
    known = list(owner.model_fields)
    hint = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f"; did you mean {hint[0]!r}?" if hint else f"; expected one of: {', '.join(known)}"


def _walk(annotation: Any, loc: Location) -> type[BaseModel] | None:
    """The pydantic model at ``loc`` below ``annotation``: through fields of models, values of
    ``dict[str, X]``, items of ``list[X]`` and the branches of ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not loc:
            return annotation
        field = annotation.model_fields.get(loc[0]) if isinstance(loc[0], str) else None
        return _walk(field.annotation, loc[1:]) if field is not None else None
    origin = getattr(annotation, "__origin__", None)
    args = getattr(annotation, "__args__", ())
    if loc and origin is dict and len(args) == 2:
        return _walk(args[1], loc[1:])
    if loc and origin is list and args:
        return _walk(args[0], loc[1:])
    for arg in args:  # X | None, unions
        found = _walk(arg, loc)
        if found is not None:
            return found
    return None
