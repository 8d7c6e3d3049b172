"""Reading one dataset row into a ``Row``: its turns or text, and its modality entries.

Accepted layouts (see DESIGN.md, "Dataset format"):

- MultiMeditron: ``conversations`` (``[{"role", "content"}]``) or ``text``, plus ``modalities``
  (``[{"type": name, "value": ...}]``);
- LLaVA/ShareGPT turns ``{"from": "human"|"gpt"|"system", "value": ...}`` inside ``conversations``,
  the media under the modality's name (``"image": "x.jpg"`` or a list of them, likewise
  ``audio`` or any modality name);
- multi_token: ``messages`` plus one list per modality named ``<name>s`` or ``<name>`` (e.g.
  ``images: ["a.png"]`` for the modality ``image``), each entry a value;
- OpenAI / Hugging Face chat: turns whose ``content`` is a list of typed parts
  (``mmgen.data.parts``); each media part becomes a placeholder where it stands.

String values may be data URLs or ``file:`` URLs (``mmgen.data.media``). Every error names the
sample (``id``, else where it came from) and the field, and carries the reason ``on_error: skip``
counts it under (``mmgen.data.skips``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mmgen.constants import (
    MODALITIES_KEY,
    MODALITY_TYPE_KEY,
    MODALITY_VALUE_KEY,
    default_placeholder_token,
)
from mmgen.data.media import media_value
from mmgen.data.parts import render_parts
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

    field: str  # where it sits in the row: "modalities[2]", "images[0]", "messages[0].content[1]"
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


def parse_row(
    raw: Any,
    *,
    names: Collection[str],
    origin: str | None = None,
    placeholders: Mapping[str, str] | None = None,
) -> Row:
    """Read ``raw`` (one dataset row) for a processor that knows the modalities ``names``;
    ``placeholders`` (default ``<name>``) is what a media part of a turn's content becomes."""
    if not isinstance(raw, Mapping):
        got = type(raw).__name__
        raise _malformed(f"{describe(None, origin)}: expected a JSON object, got {got}")
    sample_id = raw.get("id")
    where = describe(sample_id, origin)
    turns_key = next((k for k in ("conversations", "messages") if raw.get(k) is not None), None)
    text = raw.get("text")
    if turns_key is not None and text is not None:
        raise _malformed(f"{where}: has both {turns_key!r} and 'text'; keep one")
    if turns_key is None and text is None:
        raise _malformed(f"{where}: needs 'conversations', 'messages' or 'text'")
    if text is not None and not isinstance(text, str):
        raise _malformed(f"{where}: field 'text' must be a string, got {type(text).__name__}")
    if text is not None:
        _check_unicode(text, where, "text")
    tokens = {n: (placeholders or {}).get(n) or default_placeholder_token(n) for n in names}
    parts: list[Entry] = []  # media carried by typed content parts, in text order
    turns = None
    if turns_key is not None:
        turns = _turns(raw[turns_key], turns_key, where, names, tokens, parts)
    return Row(
        id=str(sample_id) if sample_id is not None else (origin or "?"),
        where=where,
        text_field=turns_key or "text",
        turns=turns,
        text=text,
        modalities=_entries(raw, names, where, parts),
    )


def _turns(
    value: Any,
    key: str,
    where: str,
    names: Collection[str],
    placeholders: Mapping[str, str],
    parts: list[Entry],
) -> list[Turn]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _malformed(f"{where}: field {key!r} must be a non-empty list of turns")
    turns = []
    for i, turn in enumerate(value):
        field = f"{key}[{i}]"
        if not isinstance(turn, Mapping):
            raise _malformed(f"{where}: field {field} must be an object, got {type(turn).__name__}")
        if "role" in turn:
            role, content, content_key = turn.get("role"), turn.get("content"), "content"
        elif "from" in turn:
            speaker = turn.get("from")
            role, content, content_key = _SPEAKERS.get(speaker, speaker), turn.get("value"), "value"
        else:
            raise _malformed(f"{where}: field {field} needs 'role' and 'content'")
        if not isinstance(role, str) or not role:
            raise _malformed(f"{where}: field {field}.role must be a non-empty string")
        if isinstance(content, (list, tuple)):
            content, media = render_parts(
                content, f"{field}.{content_key}", where, names, placeholders
            )
            for at, name, value in media:
                if value is not None:  # else a placeholder only: its item is in a column
                    parts.append(
                        Entry(at, name, {MODALITY_TYPE_KEY: name, MODALITY_VALUE_KEY: value})
                    )
        elif not isinstance(content, str):
            raise _malformed(
                f"{where}: field {field}.{content_key} must be a string or a list of parts,"
                f" got {type(content).__name__}"
            )
        _check_unicode(role, where, f"{field}.role")
        _check_unicode(content, where, f"{field}.{content_key}")
        turns.append(Turn(role, content))
    return turns


def _entries(
    raw: Mapping[str, Any], names: Collection[str], where: str, parts: list[Entry]
) -> list[Entry]:
    listed = raw.get(MODALITIES_KEY)
    per_name = {}  # LLaVA and multi_token layouts: the media under the modality's name
    for name in names:
        key = next((k for k in (f"{name}s", name) if raw.get(k) is not None), None)
        if key is not None:
            per_name[name] = (key, raw[key])
    layouts = [repr(k) for k, values in per_name.values() if _given(values)]
    if listed:
        layouts.insert(0, repr(MODALITIES_KEY))
    if parts:
        layouts.insert(0, f"the content parts ({parts[0].field})")
    if len(layouts) > 1 and (parts or listed):
        raise _malformed(f"{where}: has media in {' and in '.join(layouts)}; keep one layout")
    if parts:
        return parts
    entries = []
    if listed is not None:
        if not isinstance(listed, (list, tuple)):
            raise _malformed(f"{where}: field {MODALITIES_KEY!r} must be a list")
        for i, entry in enumerate(listed):
            field = f"{MODALITIES_KEY}[{i}]"
            if not isinstance(entry, Mapping) or MODALITY_TYPE_KEY not in entry:
                need = f"an object with a {MODALITY_TYPE_KEY!r}"
                raise _malformed(f"{where}: field {field} must be {need}")
            if entry[MODALITY_TYPE_KEY] not in names:
                raise _malformed(
                    f"{where}: field {field}.{MODALITY_TYPE_KEY} is {entry[MODALITY_TYPE_KEY]!r},"
                    f" not a known modality ({', '.join(names)})"
                )
            if entry.get(MODALITY_VALUE_KEY) is None:
                raise _malformed(f"{where}: field {field}.{MODALITY_VALUE_KEY} is missing")
            value = media_value(entry[MODALITY_VALUE_KEY], f"{where}: field {field}")
            entries.append(
                Entry(field, entry[MODALITY_TYPE_KEY], {**entry, MODALITY_VALUE_KEY: value})
            )
    for name, (key, values) in per_name.items():
        if not isinstance(values, (list, tuple)):
            entries.append(_entry(key, name, values, where))  # one value, LLaVA's "image": "x.jpg"
            continue
        entries += [_entry(f"{key}[{i}]", name, value, where) for i, value in enumerate(values)]
    return entries


def _entry(field: str, name: str, value: Any, where: str) -> Entry:
    value = media_value(value, f"{where}: field {field}")
    return Entry(field, name, {MODALITY_TYPE_KEY: name, MODALITY_VALUE_KEY: value})


def _given(values: Any) -> bool:
    return not isinstance(values, (list, tuple)) or len(values) > 0


def _check_unicode(text: str, where: str, field: str) -> None:
    """A JSON ``\\ud800`` escape gives a lone surrogate: no tokenizer can encode it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _malformed(
            f"{where}: field {field} holds a lone surrogate ({text[exc.start]!r} at character"
            f" {exc.start + 1}), not Unicode text"
        ) from None


def _malformed(message: str) -> DataError:
    return DataError(message, reason="malformed row")
