"""Reading one dataset row into a ``Row``: its turns or text, and its modality entries.

Accepted layouts (see DESIGN.md, "Dataset format"):

- MultiMeditron: ``conversations`` (``[{"role", "content"}]``) or ``text``, plus ``modalities``
  (``[{"type": name, "value": ...}]``);
- LLaVA/ShareGPT turns ``{"from": "human"|"gpt"|"system", "value": ...}`` inside ``conversations``;
- multi_token: ``messages`` plus one list per modality named ``<name>s`` or ``<name>`` (e.g.
  ``images: ["a.png"]`` for the modality ``image``), each entry a value.

Every error names the sample (``id``, else where it came from) and the field.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mmgen.constants import MODALITIES_KEY, MODALITY_TYPE_KEY, MODALITY_VALUE_KEY
from mmgen.errors import DataError

# ShareGPT/LLaVA speaker names -> chat-template roles
_SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True)
class Entry:
    """One modality entry: ``data`` is the dataset's ``{"type", "value", ...}`` dict."""

    field: str  # where it sits in the row, e.g. "modalities[2]" or "images[0]"
    modality: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Row:
    """A dataset row in one shape. Exactly one of ``turns`` and ``text`` is set."""

    id: str
    where: str  # "sample 'id' (file.jsonl:3)": the prefix of every error about this row
    text_field: str  # "conversations", "messages" or "text"
    turns: list[Turn] | None
    text: str | None
    modalities: list[Entry]


def describe(sample_id: Any, origin: str | None) -> str:
    if sample_id is None:
        return f"sample at {origin}" if origin else "sample"
    return f"sample {str(sample_id)!r}" + (f" ({origin})" if origin else "")


def parse_row(raw: Any, *, names: Collection[str], origin: str | None = None) -> Row:
    """Read ``raw`` (one dataset row) for a processor that knows the modalities ``names``."""
    if not isinstance(raw, Mapping):
        got = type(raw).__name__
        raise DataError(f"{describe(None, origin)}: expected a JSON object, got {got}")
    sample_id = raw.get("id")
    where = describe(sample_id, origin)
    turns_key = next((k for k in ("conversations", "messages") if raw.get(k) is not None), None)
    text = raw.get("text")
    if turns_key is not None and text is not None:
        raise DataError(f"{where}: has both {turns_key!r} and 'text'; keep one")
    if turns_key is None and text is None:
        raise DataError(f"{where}: needs 'conversations', 'messages' or 'text'")
    if text is not None and not isinstance(text, str):
        raise DataError(f"{where}: field 'text' must be a string, got {type(text).__name__}")
    turns = None if turns_key is None else _turns(raw[turns_key], turns_key, where)
    return Row(
        id=str(sample_id) if sample_id is not None else (origin or "?"),
        where=where,
        text_field=turns_key or "text",
        turns=turns,
        text=text,
        modalities=_entries(raw, names, where),
    )


def _turns(value: Any, key: str, where: str) -> list[Turn]:
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"{where}: field {key!r} must be a non-empty list of turns")
    turns = []
    for i, turn in enumerate(value):
        field = f"{key}[{i}]"
        if not isinstance(turn, Mapping):
            raise DataError(f"{where}: field {field} must be an object, got {type(turn).__name__}")
        if "role" in turn:
            role, content = turn.get("role"), turn.get("content")
        elif "from" in turn:
            speaker = turn.get("from")
            role, content = _SPEAKERS.get(speaker, speaker), turn.get("value")
        else:
            raise DataError(f"{where}: field {field} needs 'role' and 'content'")
        if not isinstance(role, str) or not role:
            raise DataError(f"{where}: field {field}.role must be a non-empty string")
        if not isinstance(content, str):
            raise DataError(
                f"{where}: field {field}.content must be a string, got {type(content).__name__}"
            )
        turns.append(Turn(role, content))
    return turns


def _entries(raw: Mapping[str, Any], names: Collection[str], where: str) -> list[Entry]:
    listed = raw.get(MODALITIES_KEY)
    per_name = {}  # multi_token layout: one list per modality
    for name in names:
        key = next((k for k in (f"{name}s", name) if raw.get(k) is not None), None)
        if key is not None:
            per_name[name] = (key, raw[key])
    if listed and any(values for _, values in per_name.values()):
        keys = ", ".join(repr(k) for k, _ in per_name.values())
        raise DataError(f"{where}: has both {MODALITIES_KEY!r} and {keys}; keep one layout")
    entries = []
    if listed is not None:
        if not isinstance(listed, (list, tuple)):
            raise DataError(f"{where}: field {MODALITIES_KEY!r} must be a list")
        for i, entry in enumerate(listed):
            field = f"{MODALITIES_KEY}[{i}]"
            if not isinstance(entry, Mapping) or MODALITY_TYPE_KEY not in entry:
                need = f"an object with a {MODALITY_TYPE_KEY!r}"
                raise DataError(f"{where}: field {field} must be {need}")
            if entry[MODALITY_TYPE_KEY] not in names:
                raise DataError(
                    f"{where}: field {field}.{MODALITY_TYPE_KEY} is {entry[MODALITY_TYPE_KEY]!r},"
                    f" not a known modality ({', '.join(names)})"
                )
            if entry.get(MODALITY_VALUE_KEY) is None:
                raise DataError(f"{where}: field {field}.{MODALITY_VALUE_KEY} is missing")
            entries.append(Entry(field, entry[MODALITY_TYPE_KEY], dict(entry)))
    for name, (key, values) in per_name.items():
        if not isinstance(values, (list, tuple)):
            values = [values]  # a single value in place of a one-item list
        for i, value in enumerate(values):
            data = {MODALITY_TYPE_KEY: name, MODALITY_VALUE_KEY: value}
            entries.append(Entry(f"{key}[{i}]", name, data))
    return entries
