"""One sample (an image and an audio clip in a user turn, then an answer) written in every row
layout mmgen reads, and in every file format, for tests that check all of them process alike.

Imported as ``from helpers.layouts import ...``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from helpers.data_samples import png_bytes, wav_bytes

PROMPT = ["Look: ", "image", " and listen: ", "audio", " What is it?"]
ANSWER = "seven"
IMAGE, AUDIO = "media/a.png", "media/b.wav"


def write_media(folder: Path) -> tuple[bytes, bytes]:
    """``folder/media/a.png`` (16x8) and ``folder/media/b.wav`` (0.3 s at 16 kHz); their bytes."""
    image, audio = png_bytes(16, 8), wav_bytes(0.3, 16000)
    (folder / "media").mkdir(parents=True, exist_ok=True)
    (folder / IMAGE).write_bytes(image)
    (folder / AUDIO).write_bytes(audio)
    return image, audio


def prompt_text() -> str:
    return "".join(f"<{p}>" if p in ("image", "audio") else p for p in PROMPT)


def multimeditron(image: Any = IMAGE, audio: Any = AUDIO) -> dict[str, Any]:
    return {
        "id": "s",
        "conversations": [
            {"role": "user", "content": prompt_text()},
            {"role": "assistant", "content": ANSWER},
        ],
        "modalities": [{"type": "image", "value": image}, {"type": "audio", "value": audio}],
    }


def llava(image: Any = IMAGE, audio: Any = AUDIO) -> dict[str, Any]:
    return {
        "id": "s",
        "image": image,
        "audio": audio,
        "conversations": [
            {"from": "human", "value": prompt_text()},
            {"from": "gpt", "value": ANSWER},
        ],
    }


def parts(media: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The prompt as typed content parts, ``media[name]`` being each media part."""
    return [media.get(p, {"type": "text", "text": p}) for p in PROMPT]


def openai(image: bytes, audio: bytes) -> dict[str, Any]:
    """OpenAI's chat layout: base64 in a data URL and in ``input_audio``."""
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    data = base64.b64encode(audio).decode()
    media = {
        "image": {"type": "image_url", "image_url": {"url": url}},
        "audio": {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
    }
    return {
        "id": "s",
        "messages": [
            {"role": "user", "content": parts(media)},
            {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
        ],
    }


def hf_chat(image: Any = IMAGE, audio: Any = AUDIO) -> dict[str, Any]:
    """Hugging Face's chat layout: the media in the part, under the modality's name."""
    media = {"image": {"type": "image", "image": image}, "audio": {"type": "audio", "audio": audio}}
    return {
        "id": "s",
        "messages": [
            {"role": "user", "content": parts(media)},
            {"role": "assistant", "content": ANSWER},
        ],
    }


def trl(image: Any = IMAGE, audio: Any = AUDIO) -> dict[str, Any]:
    """TRL's layout: placeholder-only parts, the media in per-modality columns."""
    row = hf_chat(None, None)
    return {**row, "images": [image], "audios": [audio]}


def write_file(path: Path, rows: list[Any]) -> Path:
    """``rows`` as ``path``'s format: .jsonl, .json, .parquet, or a save_to_disk folder."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    else:
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path
