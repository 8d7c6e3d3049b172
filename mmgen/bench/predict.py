"""``mmgen bench predict RUN DATA``: ``mmgen predict``'s batched generation against the loop a
user writes first: one row at a time through ``model.generate``.

    mmgen bench predict runs/demo/model data/demo-audio/test.jsonl --rows 200

Both produce greedy answers to the same rows with the same ``max_new_tokens`` (asserted equal,
row by row), taking turns ``rounds`` times (figures: medians). The baseline is as a competent
user writes it: the processor's prompt, one ``generate`` call per row in
``torch.inference_mode`` with the KV cache, decoding after the timed loop. Rows/s and the ratio
are printed side by side.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from mmgen.bench.table import emit


def run(
    model_path: Path, data: Path, *, rows: int, batch_size: int, max_new_tokens: int,
    threads: int, as_json: bool, rounds: int = 3,
) -> str:  # fmt: skip
    import json

    import torch
    from transformers.utils import logging as transformers_logging

    import mmgen
    from mmgen.data.collator import left_padded
    from mmgen.data.readers import open_source
    from mmgen.infer.predict import predict
    from mmgen.model.generation import GenerationOptions

    transformers_logging.disable_progress_bar()
    torch.set_num_threads(threads)
    loaded = mmgen.load(model_path, device="cpu")
    model, processor = loaded
    source = open_source(data)
    count = min(rows, len(source))
    options = GenerationOptions(max_new_tokens=max_new_tokens)
    ends, pad = [processor.tokenizer.eos_token_id], processor.pad_token_id
    # warm-up of both paths (first calls allocate and pick kernels)
    samples = [processor.process(source[i].row, origin=source[i].origin,
                                 base_dir=source[i].base_dir, generation=True)
               for i in range(min(4, count))]  # fmt: skip
    with torch.inference_mode():
        for sample in samples:
            model.generate(**left_padded([sample], processor.pad_token_id),
                           max_new_tokens=max_new_tokens, do_sample=False)  # fmt: skip

    def one_at_a_time() -> tuple[float, list[str]]:
        start = time.perf_counter()
        outputs = []
        with torch.inference_mode():
            for i in range(count):
                row = source[i]
                sample = processor.process(row.row, origin=row.origin, base_dir=row.base_dir,
                                           generation=True)  # fmt: skip
                batch = left_padded([sample], pad)
                new = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=ends, pad_token_id=pad)  # fmt: skip
                outputs.append(new[0].tolist())
        seconds = time.perf_counter() - start
        texts = []
        for tokens in outputs:
            kept = tokens[: tokens.index(ends[0])] if ends[0] in tokens else tokens
            texts.append(processor.tokenizer.decode(kept, skip_special_tokens=True))
        return seconds, texts

    def batched() -> tuple[float, list[str]]:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "predictions.jsonl"
            report = predict(loaded, data, out, options=options, batch_size=batch_size,
                             limit=count, progress=False)  # fmt: skip
            texts = [json.loads(line)["prediction"] for line in out.read_text().splitlines()]
        return report.seconds, texts

    alone_times, batched_times = [], []
    for _ in range(rounds):  # the two take turns: a burst of load hits both
        alone_seconds, alone = one_at_a_time()
        batch_seconds, batched_texts = batched()
        alone_times.append(alone_seconds)
        batched_times.append(batch_seconds)
        if alone != batched_texts:
            first = next(i for i, (a, b) in enumerate(zip(alone, batched_texts, strict=True))
                         if a != b)  # fmt: skip
            raise AssertionError(f"row {first}: predict gave {batched_texts[first]!r},"
                                 f" one-at-a-time generate {alone[first]!r}")  # fmt: skip
    alone_seconds = statistics.median(alone_times)
    batch_seconds = statistics.median(batched_times)
    ratio = statistics.median(a / b for a, b in zip(alone_times, batched_times, strict=True))
    per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(alone_times, batched_times, strict=True))
    same = count
    rows_table = [
        ["model.generate, one row at a time", count / alone_seconds, 1.0],
        [f"mmgen predict (batch {batch_size})", count / batch_seconds, ratio],
    ]  # fmt: skip
    meta = {"model": str(loaded.path), "data": str(data), "rows answered": count,
            "rounds": rounds, "one-at-a-time / predict per round": per_round,
            "max_new_tokens": max_new_tokens, "threads": threads,
            "identical greedy answers": f"{same}/{count}"}  # fmt: skip
    title = "mmgen bench predict: batched prediction vs one row at a time"
    return emit(title, ["path", "rows/s", "x one-at-a-time"], rows_table, as_json=as_json, **meta)
