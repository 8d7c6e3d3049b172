"""OpenAI / Hugging Face chat content given as a list of typed parts, turned into the turn's text
with placeholders and the modality entries they stand for.

    [{"type": "text", "text": "What is in"},
     {"type": "image", "image": "a.png"},                     # path, bytes, data URL, file URL
     {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
     {"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}},
     {"type": "audio", "audio": "clip.wav"},                  # any modality name of the processor
     {"type": "ecg", "ecg": {"data": "<base64>"}}]            # ... with base64 data

A media part becomes its modality's placeholder token where it stands, so the i-th part of a
modality is the i-th item. Text parts are joined as they are (no separator), the way Hugging Face
chat templates render them. A media part without a value (``{"type": "image"}``, TRL's layout)
is a placeholder only: its items come from a per-modality column such as ``images``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from mmgen.constants import MODALITY_TYPE_KEY
from mmgen.data.media import b64decode, media_value
from mmgen.errors import DataError

# OpenAI's part types for media, and the modality each one carries
_OPENAI = {"image_url": "image", "input_audio": "audio"}
# other keys that hold a media part's value (Hugging Face processors' chat inputs)
_VALUE_KEYS = ("url", "path")


def render_parts(
    parts: list[Any],
    field: str,
    where: str,
    names: Collection[str],
    placeholders: Mapping[str, str],
) -> tuple[str, list[tuple[str, str, Any]]]:
    """``(text, [(field, modality, value), ...])`` of one turn's ``content`` parts; ``value`` is
    None for a placeholder-only part. ``where`` names the row in errors."""
    text: list[str] = []
    media: list[tuple[str, str, Any]] = []
    for j, part in enumerate(parts):
        at = f"{where}: field {field}[{j}]"
        if not isinstance(part, Mapping):
            raise _malformed(f"{at} must be an object, got {type(part).__name__}")
        kind = part.get(MODALITY_TYPE_KEY)
        if kind == "text":
            value = part.get("text")
            if not isinstance(value, str):
                raise _malformed(f"{at}.text must be a string, got {type(value).__name__}")
            text.append(value)
            continue
        name = _modality(kind, at, names)
        text.append(placeholders[name])
        media.append((f"{field}[{j}]", name, _value(part, kind, at)))
    return "".join(text), media


def _modality(kind: Any, at: str, names: Collection[str]) -> str:
    """The modality a part type carries: ``image_url`` and ``input_audio`` (OpenAI), a modality
    name, or ``<name>_url`` (vLLM's ``audio_url``, ``video_url``)."""
    name = _OPENAI.get(kind, kind) if isinstance(kind, str) else kind
    if isinstance(name, str) and name.endswith("_url") and name not in names:
        name = name[: -len("_url")]
    if isinstance(name, str) and name in names:
        return name
    known = ", ".join(names)
    if name != kind:
        raise _malformed(
            f"{at}: a {kind!r} part holds {name!r} media, not a modality here ({known})"
        )
    raise _malformed(
        f"{at}.{MODALITY_TYPE_KEY} is {kind!r}: not 'text' or a modality ({known});"
        " OpenAI's image_url and input_audio are read too"
    )


def _value(part: Mapping[str, Any], kind: str, at: str) -> Any:
    """The media a part carries: bytes for base64 data, a path or a decoded object otherwise."""
    if kind == "input_audio":
        inner = part.get(kind)
        if not isinstance(inner, Mapping) or inner.get("data") is None:
            raise _malformed(
                f"{at}.input_audio must be an object with 'data' (base64) and 'format'"
            )
        return b64decode(inner["data"], at, "input_audio data")
    if kind.endswith("_url"):
        inner = part.get(kind)
        url = inner.get("url") if isinstance(inner, Mapping) else inner
        if not isinstance(url, str):
            raise _malformed(f"{at}.{kind} must be a URL string or an object with a 'url' string")
        return media_value(url, at)
    value = part.get(kind)
    for key in _VALUE_KEYS:
        if value is None:
            value = part.get(key)
    if isinstance(value, Mapping) and "data" in value:  # {"data": <base64>}, as input_audio's
        return b64decode(value["data"], at, f"{kind} data")
    return media_value(value, at)


def _malformed(message: str) -> DataError:
    return DataError(message, reason="malformed row")
