"""``mmgen bench serve RUN DATA``: the server's throughput with N concurrent clients against the
same requests sent one at a time.

    mmgen bench serve runs/demo/model data/demo-audio/test.jsonl --requests 64 --clients 8

A live ``mmgen serve`` app (uvicorn, in this process) gets one chat request per row (the row's
question, its media as base64 parts: what a remote client sends), greedy, first one client
sending them in turn, then ``clients`` threads at once, the two ways taking turns ``rounds``
times (figures: medians). The answers must be identical. Requests/s and generated tokens/s are
printed side by side, with the largest batch the server formed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mmgen.bench.table import emit


def run(
    model_path: Path, data: Path, *, requests: int, clients: int, max_tokens: int,
    max_batch_size: int, threads: int, as_json: bool, rounds: int = 3,
) -> str:  # fmt: skip
    import torch
    from transformers.utils import logging as transformers_logging

    import mmgen
    from mmgen.data.readers import open_source

    transformers_logging.disable_progress_bar()
    torch.set_num_threads(threads)
    loaded = mmgen.load(model_path, device="cpu")
    source = open_source(data)
    bodies = [_request(source[i % len(source)], loaded.processor, max_tokens)
              for i in range(requests)]  # fmt: skip
    alone_times, together_times = [], []
    with _server(loaded, max_batch_size) as (url, app), ThreadPoolExecutor(clients) as pool:
        for body in bodies[:2]:  # warm-up
            _post(url, body)
        for _ in range(rounds):  # the two ways take turns: a burst of load hits both
            start = time.perf_counter()
            alone = [_post(url, body) for body in bodies]
            alone_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            together = list(pool.map(lambda body: _post(url, body), bodies))
            together_times.append(time.perf_counter() - start)
            texts = [r["choices"][0]["message"]["content"] for r in alone]
            if texts != [r["choices"][0]["message"]["content"] for r in together]:
                raise AssertionError("concurrent answers differ from those sent one at a time")
        largest = app.state.batcher.stats.largest
    tokens = sum(r["usage"]["completion_tokens"] for r in alone)
    alone_seconds, together_seconds = (statistics.median(alone_times),
                                       statistics.median(together_times))  # fmt: skip
    ratio = statistics.median(a / t for a, t in zip(alone_times, together_times, strict=True))
    rows = [
        ["1 client, one request at a time", requests / alone_seconds, tokens / alone_seconds, 1.0],
        [f"{clients} concurrent clients", requests / together_seconds, tokens / together_seconds,
         ratio],
    ]  # fmt: skip
    per_round = ", ".join(f"{a / t:.2f}" for a, t in zip(alone_times, together_times, strict=True))
    meta = {"model": str(loaded.path), "data": str(data), "requests": requests, "rounds": rounds,
            "concurrent / sequential per round": per_round,
            "max_tokens": max_tokens, "max batch size": max_batch_size,
            "largest batch formed": largest, "threads": threads,
            "identical answers": f"{requests}/{requests}"}  # fmt: skip
    title = "mmgen bench serve: concurrent clients vs one request at a time"
    columns = ["clients", "requests/s", "tokens/s", "x sequential"]
    return emit(title, columns, rows, as_json=as_json, **meta)


def _request(row: Any, processor: Any, max_tokens: int) -> bytes:
    """The row's first user turn as a chat request, each item as a base64 part in its place."""
    from mmgen.constants import MODALITY_VALUE_KEY
    from mmgen.data.rows import parse_row

    parsed = parse_row(row.row, names=processor.names, origin=row.origin,
                       placeholders=processor.placeholder_tokens)  # fmt: skip
    question = next(turn.content for turn in parsed.turns if turn.role == "user")
    entries = iter(parsed.modalities)
    parts: list[dict[str, Any]] = []
    tokens = {processor.placeholder_tokens[n]: n for n in processor.names}
    text = question
    while True:
        at = min(((text.find(t), t) for t in tokens if t in text), default=None)
        if at is None:
            break
        position, token = at
        if position:
            parts.append({"type": "text", "text": text[:position]})
        entry = next(entries)
        value = entry.data[MODALITY_VALUE_KEY]
        path = value.get("path") if isinstance(value, dict) else value
        media = Path(path) if Path(path).is_absolute() else Path(row.base_dir) / path
        encoded = base64.b64encode(media.read_bytes()).decode()
        parts.append({"type": entry.modality, entry.modality: {"data": encoded}})
        text = text[position + len(token) :]
    if text:
        parts.append({"type": "text", "text": text})
    body = {"model": "bench", "messages": [{"role": "user", "content": parts}],
            "temperature": 0, "max_tokens": max_tokens}  # fmt: skip
    return json.dumps(body).encode()


def _post(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def _server(loaded: Any, max_batch_size: int):
    from mmgen.serve.app import create_app, running

    app = create_app(loaded, model_name="bench", max_batch_size=max_batch_size)
    with running(app) as url:
        yield url, app
