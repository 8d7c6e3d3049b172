"""Synthetic demo datasets that mmgen writes locally, so a project trains offline end to end.

    write_demo_data("audio", Path("data/demo-audio"), sizes={"train": 3000, "eval": 200, ...})

writes, in the dataset format of ``mmgen.data``::

    DIR/train.jsonl, eval.jsonl, test.jsonl   one sample per line, media by relative path
    DIR/media/<split>-<index>.wav|png        the clips or images
    DIR/tokenizer/                           a word-level tokenizer with a chat template

Tasks (one module each): ``audio`` (tone clips -> note names) and ``image`` (a coloured shape ->
"red circle"). Both are learnable in minutes by tiny random-init models on a CPU, and a model that
ignores the media is at chance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmgen.errors import MmgenError


@dataclass(frozen=True)
class Task:
    modality: str  # the dataset entries' "type" (and the placeholder <modality>)
    prompt: str
    suffix: str  # file extension of the media
    sample: Callable[[np.random.Generator], tuple[bytes, str]]  # -> (media bytes, answer)


def _tasks() -> dict[str, Task]:
    from mmgen.demo_data import audio, image

    return {
        "audio": Task("audio", audio.PROMPT, ".wav", audio.sample),
        "image": Task("image", image.PROMPT, ".png", image.sample),
    }


TOKENIZER_DIR = "tokenizer"
MEDIA_DIR = "media"


def write_demo_data(
    kind: str, out: Path, sizes: Mapping[str, int], seed: int = 0
) -> dict[str, Path]:
    """Write the ``kind`` task's splits (``sizes``: split -> samples) and its tokenizer under
    ``out``; returns split -> JSONL path (and ``"tokenizer"`` -> its folder). Same seed, same
    bytes."""
    tasks = _tasks()
    if kind not in tasks:
        raise MmgenError(f"unknown demo task {kind!r}; choose one of {', '.join(tasks)}")
    task = tasks[kind]
    (out / MEDIA_DIR).mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    answers: list[str] = []
    for number, (split, count) in enumerate(sizes.items()):
        if count < 1:
            raise MmgenError(f"--{split} must be at least 1, got {count}")
        # one stream per split: changing one split's size leaves the others as they were
        rng = np.random.default_rng([seed, number])
        rows = []
        for index in range(count):
            media, answer = task.sample(rng)
            name = f"{MEDIA_DIR}/{split}-{index:05d}{task.suffix}"
            (out / name).write_bytes(media)
            answers.append(answer)
            rows.append(_row(f"{split}-{index:05d}", task, answer, name))
        written[split] = out / f"{split}.jsonl"
        _write_lines(written[split], rows)
    from mmgen.demo_data.tokenizer import save_tokenizer

    placeholder = f"<{task.modality}>"
    save_tokenizer([task.prompt, *answers], [placeholder], out / TOKENIZER_DIR)
    written["tokenizer"] = out / TOKENIZER_DIR
    return written


def _row(sample_id: str, task: Task, answer: str, path: str) -> dict:
    return {
        "id": sample_id,
        "conversations": [
            {"role": "user", "content": task.prompt},
            {"role": "assistant", "content": answer},
        ],
        "modalities": [{"type": task.modality, "value": {"path": path}}],
    }


def _write_lines(path: Path, rows: list[dict]) -> None:
    # temp file then rename: a half-written split never looks complete
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(path)
