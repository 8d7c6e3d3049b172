"""Media values written as strings: data URLs and base64 become bytes, ``file:`` URLs become
paths, remote URLs are refused (training reads local data only: nothing is downloaded), and any
other string stays a path (relative ones resolve against the media root later).

Decoding here, while the row is read, gives every loader (built-in, generated or a user's) plain
bytes, and names the row and field of a malformed value.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlparse

from mmgen.errors import DataError

_REMOTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # scheme:// (a Windows "C:\" does not match)


def media_value(value: Any, at: str) -> Any:
    """``value`` with a data URL decoded to bytes and a ``file:`` URL turned into its path;
    ``at`` (``"sample 'x' (f.jsonl:3): field messages[0].content[1]"``) prefixes errors."""
    if not isinstance(value, str):
        return value
    if value.startswith("data:"):
        return data_url(value, at)
    if value.startswith("file:"):
        parsed = urlparse(value)
        if parsed.netloc not in ("", "localhost"):
            raise DataError(
                f"{at}: {value[:80]!r} is a file URL on another host", reason="remote media"
            )
        return unquote(parsed.path)
    if _REMOTE.match(value):
        raise DataError(
            f"{at}: remote URL {value[:80]!r}: media must be local files (nothing is downloaded);"
            " download it and give its path",
            reason="remote media",
        )
    return value


def data_url(url: str, at: str) -> bytes:
    """The bytes of ``data:[<type>][;base64],<data>`` (RFC 2397)."""
    header, comma, payload = url[len("data:") :].partition(",")
    if not comma:
        raise DataError(
            f"{at}: malformed data URL: no ',' before the data", reason="unreadable media"
        )
    if header.endswith(";base64"):
        data = b64decode(payload, at, "data URL")
    else:
        data = unquote_to_bytes(payload)
    if not data:
        raise DataError(f"{at}: the data URL holds no data", reason="unreadable media")
    return data


def b64decode(text: Any, at: str, what: str = "base64 data") -> bytes:
    if not isinstance(text, str):
        got = type(text).__name__
        raise DataError(f"{at}: {what} must be a base64 string, got {got}", reason="malformed row")
    try:
        # line breaks are common in base64 written by other tools; anything else is an error
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataError(
            f"{at}: malformed base64 in the {what}: {exc}", reason="unreadable media"
        ) from None
