"""Give the demo's samples long-tailed lengths, for ``mmgen bench train`` (README, "Throughput").

    python scripts/long_tail_prompts.py data/demo-audio/train.jsonl data/demo-audio/long-tail.jsonl

Every user turn gets a lognormal number of extra prompt words in front (median 31, sigma 1,
at most 600; words of the demo tokenizer, one token each), so padding has something to waste.
The output stays beside the input: media paths are relative to the dataset file.
"""

from __future__ import annotations

import json
import sys

import numpy as np

WORDS = ["What", "notes", "are", "played", "in"]  # in the demo tokenizer: one token each


def main(source: str, target: str, median: float = 31, sigma: float = 1.0, cap: int = 600) -> None:
    rng = np.random.default_rng(0)
    with open(source, encoding="utf-8") as rows, open(target, "w", encoding="utf-8") as out:
        for line in rows:
            row = json.loads(line)
            count = min(cap, int(rng.lognormal(np.log(median), sigma)))
            extra = " ".join(rng.choice(WORDS, count))
            turn = row["conversations"][0]
            turn["content"] = f"{extra} {turn['content']}" if count else turn["content"]
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
