"""YAML files validated by a pydantic model — modality specs and training configs alike — with
every problem as ``file:line: key: message``.

The text is composed once to learn the line of every key (duplicate keys are errors), then
loaded with ``SafeLoader`` (no tags run) and validated. An unknown key gets a "did you mean" hint
from the keys the model accepts at that place, so a typo such as ``packing.capacty`` reads::

    configs/train.yaml:31: packing.capacty: unknown key; did you mean 'capacity'?

A value set from the command line (``--set packing.capacty=64``) is named that way instead of by
a file line: ``--set packing.capacty=64: packing.capacty: unknown key; ...``. A validator that
rejects one key of its model raises ``field_error(key, message)`` to be reported at that key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mmgen.errors import MmgenError, did_you_mean, one_line

Model = TypeVar("Model", bound=BaseModel)
Location = tuple[str | int, ...]
# where each key path was written: its file line, or the `--set ...` that set it
Origins = dict[Location, int | str]

_FIELD_MARK = "\x00"
# what any YAML file mmgen reads may hold: deeper nesting would exhaust the composer's recursion,
# a longer integer Python's digit limit (and nothing mmgen reads counts that high)
MAX_DEPTH = 64
MAX_SCALAR = 64 * 1024  # characters in one value
MAX_INT_DIGITS = 32


def load_yaml_model(
    path: str | Path,
    model: type[Model],
    *,
    error: type[MmgenError],
    overrides: list[str] | None = None,
    max_bytes: int = 1 << 20,
    aliases: bool = True,
    text: str | None = None,
    see: str = "",
) -> tuple[Model, Origins]:
    """Read ``path`` (or ``text``, named ``path`` in messages) and validate it as ``model``;
    return it with the origin of every key path (its line, or the override that set it).

    ``overrides`` (``dotted.key=value``, the value parsed as YAML) replace values before
    validation, e.g. ``stages.0.steps=20``. ``aliases=False`` refuses YAML anchors and aliases.
    ``see`` names where to read every problem (``"see `mmgen validate`"``).

    Raises:
        error: the file is missing, unreadable or too large, is not YAML, is not a mapping, or
            fails validation: the first problem (with a count of the others), every problem in
            the exception's ``messages``.
    """
    source = str(path)
    if text is None:
        text = read_text(Path(path), error=error, max_bytes=max_bytes)
    data, lines = parse(text, source, error=error, aliases=aliases)
    for override in overrides or []:
        loc = apply_override(data, override, error=error)
        for key in [k for k in lines if k[: len(loc)] == loc]:
            del lines[key]  # the file's lines below it no longer hold these values
        lines[loc] = f"--set {one_line(override)}"  # an error line quotes it: keep it one
    return validate(model, data, lines, source, error=error, see=see), lines


def read_text(path: Path, *, error: type[MmgenError], max_bytes: int) -> str:
    """The file as UTF-8 text, refused past ``max_bytes`` read (never trusting ``stat``'s size)
    and refused unless it is a regular file (a FIFO or ``/dev/zero`` would block or never end).
    """
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise error(f"{path}: is a folder, not a file")
        raise error(f"{path}: not a regular file (a device, FIFO or socket)")
    with os.fdopen(fd, "rb") as handle:
        try:
            raw = handle.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: larger than {max_bytes // 1024} KiB; not a file mmgen reads")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None


def parse(
    text: str, source: str, *, error: type[MmgenError], aliases: bool = True
) -> tuple[dict[str, Any], Origins]:
    """The mapping in ``text`` and the line of each key path."""
    try:
        root, data = load_bounded(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = one_line(getattr(exc, "problem", None) or str(exc).splitlines()[0])
        raise error(f"{source}:{mark.line + 1 if mark else 1}: yaml: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{source}:1: the file must be a mapping of keys, not a {type(data).__name__}")
    lines: Origins = {}
    _index(root, (), lines, source, error, set() if not aliases else None)
    return data, lines


class BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` (no tags run) that refuses nesting deeper than ``MAX_DEPTH``, a value
    longer than ``MAX_SCALAR`` characters and an integer of more than ``MAX_INT_DIGITS``
    characters, each as a ``yaml.YAMLError`` at its line."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR:
            problem = f"a value of {len(event.value)} characters (at most {MAX_SCALAR})"
            raise yaml.composer.ComposerError(None, None, problem, event.start_mark)
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            problem = f"nested more than {MAX_DEPTH} levels deep"
            raise yaml.composer.ComposerError(None, None, problem, event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: Any) -> int:
        if len(node.value) > MAX_INT_DIGITS:
            problem = f"an integer of {len(node.value)} digits (at most {MAX_INT_DIGITS})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return super().construct_yaml_int(node)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


def load_bounded(text: str) -> tuple[Any, Any]:
    """The composed root node of ``text`` (None when empty) and the data built from it, both
    from one parse by ``BoundedLoader``."""
    loader = BoundedLoader(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def validate(
    model: type[Model],
    data: Any,
    lines: Origins,
    source: str,
    *,
    error: type[MmgenError],
    see: str = "",
) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        located = sorted(
            (_sort_key(lines, loc), message)
            for loc, message in (_message(e, model, source, lines) for e in exc.errors())
        )
        messages = list(dict.fromkeys(message for _, message in located))
        see = f"; {see}" if see else ""
        more = f" (and {len(messages) - 1} more{see})" if len(messages) > 1 else ""
        raised = error(messages[0] + more)
        raised.messages = messages  # every problem, for `mmgen validate`
        raise raised from None


def apply_override(data: dict[str, Any], override: str, *, error: type[MmgenError]) -> Location:
    """Apply one ``dotted.key=value``; return the key path it set (list indices as ints)."""
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise error(f"--set {override!r}: expected dotted.key=value")
    try:
        value = load_bounded(text)[1]
    except yaml.YAMLError as exc:
        problem = one_line(getattr(exc, "problem", None) or "not valid YAML")
        raise error(f"--set {override!r}: the value is not valid YAML: {problem}") from None
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
                raise error(f"--set {one_line(key)}: {one_line(missing)} not found") from None
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
        return (*loc, int(last))
    if isinstance(node, dict):
        node[last] = value
        return (*loc, last)
    raise error(f"--set {one_line(key)}: cannot set {last!r} inside a {type(node).__name__}")


def where(source: str | Path, lines: Origins, loc: Location) -> str:
    """``file:line: dotted.key`` for a key path (the nearest enclosing key that has a line), or
    ``--set key=value: dotted.key`` when an override set it."""
    origin = line_of(lines, loc)
    key = dotted(loc) if loc else "(top level)"
    return f"{origin}: {key}" if isinstance(origin, str) else f"{source}:{origin}: {key}"


def line_of(lines: Origins, loc: Location) -> int | str:
    for end in range(len(loc), -1, -1):
        if tuple(loc[:end]) in lines:
            return lines[tuple(loc[:end])]
    return 1


def dotted(loc: Location) -> str:
    text = ""
    for part in loc:
        if not isinstance(part, (int, str)) or (isinstance(part, str) and not _plain(part)):
            part = repr(part)  # a key such as "a\x1e" stays on one line, and visible
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _plain(key: str) -> bool:
    return bool(key) and key.isprintable() and key.strip() == key


def field_error(field: str, message: str) -> ValueError:
    """Raised by a model validator: a problem of the model's key ``field``, reported at its line
    (``field`` as written in the file, i.e. its alias)."""
    return ValueError(f"{_FIELD_MARK}{field}{_FIELD_MARK}{message}")


def _index(node: Any, loc: Location, lines: Origins, source: str, error, seen: set | None) -> None:
    """Map each key path to its line; reject duplicate keys (and aliases when ``seen`` is a
    set: an alias is a node met twice)."""
    if node is None:
        return
    if seen is not None:
        if id(node) in seen:
            line = node.start_mark.line + 1
            raise error(f"{source}:{line}: yaml: anchors/aliases are not allowed here")
        seen.add(id(node))
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            if name in keys:
                line = key.start_mark.line + 1
                raise error(f"{source}:{line}: {dotted((*loc, name))}: duplicate key")
            keys.add(name)
            lines[(*loc, name)] = key.start_mark.line + 1
            typed = _typed_key(key)
            if typed is not None:  # `1:` is the int 1 in the data (and in pydantic's errors)
                lines.setdefault((*loc, typed), key.start_mark.line + 1)
            _index(value, (*loc, name), lines, source, error, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines, source, error, seen)


def _typed_key(key: Any) -> Any:
    """A scalar key that loads as something other than a string (``1``, ``true``), as loaded."""
    if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:str":
        return None
    try:
        typed = yaml.constructor.SafeConstructor().construct_object(key)
        hash(typed)
    except (yaml.YAMLError, TypeError, ValueError):
        return None
    return None if isinstance(typed, str) else typed


def _message(error: dict[str, Any], model: type[BaseModel], source: str, lines) -> tuple:
    # pydantic puts union branches and validator tags into loc; keep the keys of the data only
    # (a key of the data that looks like a tag, such as `a[`, is a key: it has a line)
    kept: list[Any] = []
    for part in error["loc"]:
        if isinstance(part, int) or (*kept, part) in lines or not _is_tag(part):
            kept.append(part)
    loc = tuple(kept)
    text = error["msg"].removeprefix("Value error, ")
    if text.startswith(_FIELD_MARK):
        _, field, text = text.split(_FIELD_MARK, 2)
        loc = (*loc, field)
    if error["type"] == "extra_forbidden":
        owner = _walk(model, loc[:-1])
        known = [f.alias or name for name, f in owner.model_fields.items()] if owner else []
        text = f"unknown key{did_you_mean(str(loc[-1]), known, listing=True) if loc else ''}"
    elif error["type"] == "missing":
        text = "required key is missing"
    return loc, f"{where(source, lines, loc)}: {text}"


def _sort_key(lines: Origins, loc: Location) -> tuple:
    origin = line_of(lines, loc)
    return (1, 0, origin) if isinstance(origin, str) else (0, origin, "")


def _is_tag(part: str) -> bool:
    return part[:1].islower() and (
        "[" in part
        or part in {"int", "str", "float", "bool", "none", "list", "dict"}
        or part.startswith(("constrained-", "function-"))
    )


def _walk(annotation: Any, loc: Location) -> type[BaseModel] | None:
    """The pydantic model at ``loc`` below ``annotation``: through fields of models (by name or
    alias), values of ``dict[str, X]``, items of ``list[X]`` and the branches of unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not loc:
            return annotation
        fields = annotation.model_fields
        field = next(
            (f for name, f in fields.items() if loc[0] in (name, f.alias)), None
        ) if isinstance(loc[0], str) else None  # fmt: skip
        return _walk(field.annotation, loc[1:]) if field is not None else None
    origin = getattr(annotation, "__origin__", None)
    args = getattr(annotation, "__args__", ())
    if loc and origin is dict and len(args) == 2:
        return _walk(args[1], loc[1:])
    if loc and origin is list and args:
        return _walk(args[0], loc[1:])
    for arg in args:  # X | None, unions, Annotated
        found = _walk(arg, loc)
        if found is not None:
            return found
    return None
