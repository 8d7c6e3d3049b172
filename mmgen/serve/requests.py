"""A chat request as a prompt: its messages become a dataset row (content parts as
``mmgen.data.parts`` reads them: ``text``, ``image_url``, ``input_audio``, a modality name),
processed by the model's processor. Media given by path (a ``file:`` URL, or a path under a
modality part) is read only inside the server's allowed folders; data URLs and base64 need none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmgen.constants import MODALITY_VALUE_KEY
from mmgen.data.rows import parse_row
from mmgen.errors import DataError
from mmgen.serve.schema import ChatRequest


def prompt(
    request: ChatRequest, processor: Any, allowed: Sequence[Path], request_id: str
) -> tuple[Any, dict[str, Any]]:
    """``(the processed prompt, the row it came from)``; a ``DataError`` for anything wrong in
    the request's content (a path outside the allowed folders, undecodable media, ...)."""
    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    for message in messages:
        message.setdefault("content", "")
        if message["role"] == "developer":  # OpenAI's newer name for the system role
            message["role"] = "system"
    row = {"id": request_id, "messages": messages}
    parsed = parse_row(row, names=processor.names, origin="request",
                       placeholders=processor.placeholder_tokens)  # fmt: skip
    base = allowed[0] if allowed else None
    for entry in parsed.modalities:
        _check_path(entry.data.get(MODALITY_VALUE_KEY), entry.field, allowed, base)
    sample = processor.process(row, origin="request", base_dir=base, generation=True)
    return sample, row


def _check_path(value: Any, field: str, allowed: Sequence[Path], base: Path | None) -> None:
    path = value.get("path") if isinstance(value, dict) and "bytes" not in value else value
    if not isinstance(path, (str, os.PathLike)):
        return  # bytes (base64, data URLs): nothing is read from disk
    if not allowed:
        raise DataError(
            f"{field}: media by path is not accepted by this server; send base64 data or a data"
            " URL (or start it with --allowed-media-dir)"
        )
    target = Path(path) if Path(path).is_absolute() else base / path
    real = Path(os.path.realpath(target))
    if not any(real.is_relative_to(folder) for folder in allowed):
        raise DataError(f"{field}: {path} is outside the folders this server may read")
