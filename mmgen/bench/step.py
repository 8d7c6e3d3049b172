"""``mmgen bench step``: one training step (forward + backward) of a tiny ``MultimodalModel``,
packed to a token budget vs padded to the longest sample in the batch, on the same samples.

    mmgen bench step            # 256 samples, 4096-token packs vs batches of ~the same budget
    mmgen bench step --small    # a few seconds (the CLI test runs this)

Everything goes through the real pipeline: ``model.build_processor`` (``MultimodalProcessor``)
-> ``MultimodalDataset`` -> ``packed_dataloader`` (``TokenBudgetSampler`` + ``PackedCollator``)
or ``padded_dataloader`` (``PaddedCollator``) -> ``MultimodalModel.forward`` -> backward. The
samples are a long-tail mix: text lengths lognormal (words, one token each), 0-3 images each.

Only the steps are timed (batches are collated beforehand). The layouts alternate in rounds, and
each figure is a median over rounds, so a burst of load from other users hits both layouts.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from mmgen.bench.table import emit

COLUMNS = (
    "layout",
    "steps",
    "tokens/step",
    "slots/step",
    "pad %",
    "step ms",
    "useful tok/s",
    "x padded",
)
IMAGE_SIZE, PATCH = 32, 8  # the tiny CLIP tower: 16 patches -> 16 embeddings per image


@dataclass(frozen=True)
class Sizes:
    """What one run builds. ``batch_size`` 0: padded batches get ``capacity // mean length``
    samples, i.e. about the packed step's useful-token budget."""

    samples: int = 256
    capacity: int = 4096
    batch_size: int = 0
    median_words: int = 96  # lognormal text length: median and sigma of log(words)
    sigma: float = 1.0
    max_words: int = 2000  # cap of the tail (a sample must fit one pack)
    max_images: int = 3
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    vocab: int = 2048
    rounds: int = 3
    seed: int = 0


SMALL = Sizes(
    samples=48, capacity=1024, median_words=48, max_words=400, hidden=64, layers=2, rounds=1
)


# -- inputs --------------------------------------------------------------------------------------


def _tokenizer(vocab: int):
    """A word-level tokenizer: ``w0``... ``w{n}`` are one token each (lengths are exact)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "User:", "Assistant:"]
    words = [f"w{i}" for i in range(vocab - len(specials))]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials + words)}, "<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=["<image>"],
    )


def make_rows(sizes: Sizes, words: int) -> list[dict[str, Any]]:
    """Conversations: a user turn (images first, then ~1/3 of the words), an assistant answer."""
    rng = np.random.default_rng(sizes.seed)
    rows = []
    for index in range(sizes.samples):
        count = int(np.clip(rng.lognormal(np.log(sizes.median_words), sizes.sigma), 4, None))
        text = [f"w{k}" for k in rng.integers(0, words, min(count, sizes.max_words))]
        split = max(1, len(text) // 3)
        images = int(rng.integers(0, sizes.max_images + 1))
        prompt = "<image> " * images + " ".join(text[:split])
        entries = [
            {"type": "image", "value": rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)}
            for h, w in rng.integers(24, 80, (images, 2))
        ]
        rows.append(
            {
                "id": f"s{index}",
                "conversations": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": " ".join(text[split:])},
                ],
                "modalities": entries,
            }
        )
    return rows


def make_model(sizes: Sizes, attn_implementation: str):
    """A random-init Llama and a tiny CLIP vision tower with an MLP projector (no files)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mmgen.modalities import ImageConfig, ImageModality
    from mmgen.model import MultimodalModel

    torch.manual_seed(sizes.seed)
    config = LlamaConfig(
        vocab_size=sizes.vocab,
        hidden_size=sizes.hidden,
        intermediate_size=4 * sizes.hidden,
        num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads,
        num_key_value_heads=sizes.heads,
        max_position_embeddings=sizes.capacity,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    config._attn_implementation = attn_implementation
    tower = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
    image = ImageConfig(
        hidden_size=sizes.hidden,
        encoder_config={
            "model_type": "clip_vision_model",
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH,
            **tower,
        },
        image_processor={
            "image_processor_type": "CLIPImageProcessorPil",
            "size": {"shortest_edge": IMAGE_SIZE},
            "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        },
    )
    modalities = {"image": ImageModality(image)}
    return MultimodalModel(language_model=LlamaForCausalLM(config), modalities=modalities)


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Layout:
    name: str
    batches: list[dict[str, Any]]
    useful: list[int]  # non-pad tokens per step
    slots: list[int]  # positions computed per step (T packed, B x S padded)
    times: list[float]  # seconds per step, every round
    rates: list[float]  # useful tokens / s per round


def _layout(name: str, loader) -> Layout:
    batches = list(loader)
    if name == "packed":
        useful = [int(b["input_ids"].numel()) for b in batches]
        slots = useful
    else:
        useful = [int(b["attention_mask"].sum()) for b in batches]
        slots = [int(b["input_ids"].numel()) for b in batches]
    return Layout(name, batches, useful, slots, [], [])


def _step(model, batch: dict[str, Any]) -> None:
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()


def _round(model, layout: Layout) -> None:
    start_round = time.perf_counter()
    for batch in layout.batches:
        start = time.perf_counter()
        _step(model, batch)
        layout.times.append(time.perf_counter() - start)
    layout.rates.append(sum(layout.useful) / (time.perf_counter() - start_round))


def run(
    sizes: Sizes, *, attn_implementation: str = "sdpa", threads: int = 2, as_json: bool = False
) -> str:
    """Build, measure and return the table (or JSON)."""
    from mmgen.data import MultimodalDataset, packed_dataloader, padded_dataloader

    torch.set_num_threads(threads)
    model = make_model(sizes, attn_implementation).train()
    processor = model.build_processor(_tokenizer(sizes.vocab))
    words = sizes.vocab - 7  # the tokenizer's word ids
    dataset = MultimodalDataset(make_rows(sizes, words), processor, cache=True)
    mean_length = float(dataset.lengths.float().mean())
    batch_size = sizes.batch_size or max(1, round(sizes.capacity / mean_length))
    sizes = replace(sizes, batch_size=batch_size)
    packed_loader = packed_dataloader(dataset, sizes.capacity, seed=sizes.seed)
    packing = packed_loader.batch_sampler.stats()
    packed = _layout("packed", packed_loader)
    padded = _layout("padded", padded_dataloader(dataset, batch_size, seed=sizes.seed))
    if sum(packed.useful) != sum(padded.useful):  # both must see exactly the same samples
        raise RuntimeError(f"layouts differ: {sum(packed.useful)} vs {sum(padded.useful)} tokens")

    for layout in (packed, padded):  # warm-up: allocator, kernels, lazy init
        _step(model, layout.batches[0])
    for index in range(sizes.rounds):  # alternate who goes first
        for layout in (packed, padded) if index % 2 == 0 else (padded, packed):
            _round(model, layout)

    ratios = [p / q for p, q in zip(packed.rates, padded.rates, strict=True)]
    rows = []
    for layout in (packed, padded):
        steps = len(layout.batches)
        rate = statistics.median(layout.rates)
        rows.append(
            [
                layout.name,
                steps,
                round(sum(layout.useful) / steps),
                round(sum(layout.slots) / steps),
                100.0 * (1 - sum(layout.useful) / sum(layout.slots)),
                1e3 * statistics.median(layout.times),
                rate,
                rate / statistics.median(padded.rates),
            ]
        )
    lengths = dataset.lengths
    meta = {
        "model": (
            f"Llama hidden {sizes.hidden}, {sizes.layers} layers, {sizes.heads} heads, vocab "
            f"{sizes.vocab}, attn {attn_implementation}; CLIP vision tower 32 px / patch 8 "
            f"(16 embeddings per image), MLP projector; fp32, {threads} threads"
        ),
        "samples": (
            f"{len(dataset)} (tokens: median {int(lengths.median())}, mean {mean_length:.0f}, "
            f"max {int(lengths.max())}; {int(dataset.items.sum())} images, 0-{sizes.max_images}"
            f" per sample; words ~ lognormal(median {sizes.median_words}, sigma {sizes.sigma}))"
        ),
        "packed": (
            f"capacity {sizes.capacity} tokens per step, {packing['packs']} packs, packing "
            f"efficiency {100 * packing['efficiency']:.1f}%"
        ),
        "padded": f"batch size {batch_size} (about the same token budget), padded to the longest",
        "timing": (
            f"forward + backward, {sizes.rounds} rounds over all batches, layouts alternating;"
            " useful tok/s = non-pad tokens / s, median of rounds"
        ),
        "packed/padded per round": ", ".join(f"{r:.2f}" for r in ratios),
    }
    if as_json:
        meta["sizes"] = asdict(sizes)
        meta["ratio_median"] = statistics.median(ratios)
        meta["packing_efficiency"] = packing["efficiency"]
    return emit("mmgen bench step: packed vs padded training step", COLUMNS, rows,
                as_json=as_json, **meta)  # fmt: skip
