"""``mmgen bench step``: one training step (forward + backward) of a tiny ``MultimodalModel``,
packed to a token budget vs padded to the longest sample in the batch, on the same samples.

    mmgen bench step            # 256 samples, 4096-token packs vs batches of ~the same budget
    mmgen bench step --small    # a few seconds (the CLI test runs this)
    mmgen bench step --hidden 512 --layers 4    # a wider, deeper LLM

Everything goes through the real pipeline: ``model.build_processor`` (``MultimodalProcessor``)
-> ``MultimodalDataset`` -> ``packed_dataloader`` (``TokenBudgetSampler`` + ``PackedCollator``)
or ``padded_dataloader`` (``PaddedCollator``) -> ``MultimodalModel.forward`` -> backward. The
samples are a long-tail mix: text lengths lognormal (words, one token each), 0-3 images each.

Four rows: the packs with ``mmgen_varlen_sdpa`` (sdpa per sample), the same packs with sdpa and
the ``(T, T)`` block-diagonal mask, and two padded layouts with sdpa and the same batch size:
random batches (shuffled samples), and length-grouped batches, the baseline users run
(transformers' ``group_by_length``: shuffle, sort mega-batches of 50 batches by length, batch;
at these sizes one mega-batch holds every sample). Only the steps are timed
(batches are collated beforehand). The layouts take turns in rounds and each figure is a median
over rounds, so a burst of load from other users hits every layout. One torch thread by default:
beside other jobs on this 2-core machine, 2 OpenMP threads made the same steps up to 50x slower.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.bench.table import emit
from mmgen.bench.words import vocab_size, word_tokenizer

COLUMNS = (
    "layout",
    "attention",
    "steps",
    "tokens/step",
    "slots/step",
    "pad %",
    "step ms",
    "useful tok/s",
    "x padded",
    "x grouped",
)
PADDED, GROUPED = "padded", "padded, length-grouped"
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
    mega_batch: int = 50  # length grouping: batches per sorted mega-batch (transformers' cap)


SMALL = Sizes(
    samples=48, capacity=1024, median_words=48, max_words=400, hidden=64, layers=2, rounds=1
)


# -- inputs --------------------------------------------------------------------------------------


def make_rows(sizes: Sizes) -> list[dict[str, Any]]:
    """Conversations: a user turn (images first, then ~1/3 of the words), an assistant answer."""
    rng = np.random.default_rng(sizes.seed)
    words = sizes.vocab - vocab_size(0)
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


def make_model(sizes: Sizes, folder: Path, attn_implementation: str = "sdpa"):
    """A random-init Llama and mmgen's built-in image modality over a tiny random-init CLIP
    vision tower (and its image processor) saved in ``folder``."""
    from transformers import CLIPImageProcessorPil, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from mmgen.modalities.image import ImageConfig, ImageModality
    from mmgen.model import MultimodalModel
    from mmgen.testing import save_tiny_model, save_tiny_processor

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
    save_tiny_model(
        CLIPVisionModel, folder, seed=sizes.seed, image_size=IMAGE_SIZE, patch_size=PATCH, **tower
    )
    save_tiny_processor(
        CLIPImageProcessorPil,
        folder,
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    image = ImageConfig(
        hidden_size=sizes.hidden,
        encoder_name_or_path=str(folder),
        processor_name_or_path=str(folder),
    )
    modalities = {"image": ImageModality(image)}
    return MultimodalModel(language_model=LlamaForCausalLM(config), modalities=modalities)


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Layout:
    name: str
    attn: str  # the LLM's attn_implementation for this layout
    batches: list[dict[str, Any]]
    useful: list[int]  # non-pad tokens per step
    slots: list[int]  # positions computed per step (T packed, B x S padded)
    times: list[float] = field(default_factory=list)  # seconds per step, every round
    rates: list[float] = field(default_factory=list)  # useful tokens / s, per round


def _packed(attn: str, batches: list[dict[str, Any]]) -> Layout:
    useful = [int(b["input_ids"].numel()) for b in batches]
    return Layout("packed", attn, batches, useful, useful)


def _padded(name: str, batches: list[dict[str, Any]]) -> Layout:
    useful = [int(b["attention_mask"].sum()) for b in batches]
    return Layout(name, "sdpa", batches, useful, [int(b["input_ids"].numel()) for b in batches])


def _grouped_batches(dataset, sizes: Sizes) -> list[dict[str, Any]]:
    """Length-grouped padded batches: transformers' ``group_by_length`` order, then batches."""
    from torch.utils.data import DataLoader

    from mmgen.data import PaddedCollator
    from mmgen.data.grouping import length_grouped_indices

    generator = torch.Generator().manual_seed(sizes.seed)
    order = length_grouped_indices(
        dataset.lengths, sizes.batch_size, generator=generator, mega_batch_mult=sizes.mega_batch
    )
    batches = [order[i : i + sizes.batch_size] for i in range(0, len(order), sizes.batch_size)]
    collate = PaddedCollator(dataset.processor.pad_token_id)
    return list(DataLoader(dataset, batch_sampler=batches, collate_fn=collate))


def _step(model, batch: dict[str, Any]) -> None:
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()


def _round(model, layout: Layout) -> None:
    model.language_model.set_attn_implementation(layout.attn)
    start_round = time.perf_counter()
    for batch in layout.batches:
        start = time.perf_counter()
        _step(model, batch)
        layout.times.append(time.perf_counter() - start)
    layout.rates.append(sum(layout.useful) / (time.perf_counter() - start_round))


def run(sizes: Sizes, *, threads: int = 1, as_json: bool = False) -> str:
    """Build the model and both layouts' batches, time the steps, return the table (or JSON)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sizes, model, dataset, packing, layouts = _build(sizes)
        for layout in layouts:  # warm-up: allocator, kernels, lazy init
            model.language_model.set_attn_implementation(layout.attn)
            _step(model, layout.batches[0])
        for index in range(sizes.rounds):  # rotate who goes first
            for k in range(len(layouts)):
                _round(model, layouts[(index + k) % len(layouts)])
    finally:
        torch.set_num_threads(previous)
    return _report(sizes, dataset, packing, layouts, threads, as_json)


def _build(sizes: Sizes):
    from mmgen.data import MultimodalDataset, packed_dataloader, padded_dataloader
    from mmgen.model.attention import VARLEN_SDPA

    with tempfile.TemporaryDirectory(prefix="mmgen-bench-") as folder:
        model = make_model(sizes, Path(folder)).train()
        processor = model.build_processor(
            word_tokenizer(sizes.vocab - vocab_size(0), "<image>")
        )  # reads the folder
    dataset = MultimodalDataset(make_rows(sizes), processor, cache=True)
    if not sizes.batch_size:  # about the packed step's budget of useful tokens
        mean_length = float(dataset.lengths.float().mean())
        sizes = replace(sizes, batch_size=max(1, round(sizes.capacity / mean_length)))
    packed_loader = packed_dataloader(dataset, sizes.capacity, seed=sizes.seed)
    packs = list(packed_loader)
    layouts = [
        _packed(VARLEN_SDPA, packs),
        _packed("sdpa", packs),  # the same packs, kept apart by the (T, T) block mask
        _padded(PADDED, list(padded_dataloader(dataset, sizes.batch_size, seed=sizes.seed))),
        _padded(GROUPED, _grouped_batches(dataset, sizes)),
    ]
    totals = {layout.name: sum(layout.useful) for layout in layouts}
    if len(set(totals.values())) > 1:  # the same samples in every layout
        raise RuntimeError(f"layouts differ in useful tokens: {totals}")
    return sizes, model, dataset, packed_loader.batch_sampler.stats(), layouts


def _report(sizes: Sizes, dataset, packing: dict, layouts: list[Layout], threads, as_json) -> str:
    by_name = {layout.name: layout for layout in layouts}
    padded, grouped = by_name[PADDED], by_name[GROUPED]
    rows = []
    for layout in layouts:
        steps = len(layout.batches)
        ratios = [
            statistics.median(p / q for p, q in zip(layout.rates, base.rates, strict=True))
            for base in (padded, grouped)
        ]
        attention = (
            "sdpa+mask" if layout.name == "packed" and layout.attn == "sdpa" else layout.attn
        )
        rows.append(
            [
                layout.name,
                attention,
                steps,
                round(sum(layout.useful) / steps),
                round(sum(layout.slots) / steps),
                100.0 * (1 - sum(layout.useful) / sum(layout.slots)),
                1e3 * statistics.median(layout.times),
                statistics.median(layout.rates),
                *ratios,
            ]
        )
    lengths = dataset.lengths

    def per_round(base: Layout) -> str:
        return ", ".join(f"{p / q:.2f}" for p, q in zip(layouts[0].rates, base.rates, strict=True))

    meta = {
        "model": (
            f"Llama hidden {sizes.hidden}, {sizes.layers} layers, {sizes.heads} heads, vocab "
            f"{sizes.vocab}; CLIP vision tower {IMAGE_SIZE} px / patch {PATCH} (16 embeddings "
            f"per image) + MLP projector; fp32, {threads} thread{'s' if threads > 1 else ''}"
        ),
        "samples": (
            f"{len(dataset)} (tokens: median {int(lengths.median())}, mean "
            f"{float(lengths.float().mean()):.0f}, max {int(lengths.max())}; "
            f"{int(dataset.items.sum())} images, 0-{sizes.max_images} per sample; words ~ "
            f"lognormal(median {sizes.median_words}, sigma {sizes.sigma}))"
        ),
        "packed": (
            f"capacity {sizes.capacity} tokens per step, {packing['packs']} packs, packing "
            f"efficiency {100 * packing['efficiency']:.1f}%"
        ),
        "padded": (
            f"batch size {sizes.batch_size} (about the same token budget), padded to the longest;"
            f" random batches, or length-grouped (transformers' group_by_length: mega-batches of "
            f"{sizes.mega_batch} batches sorted by length)"
        ),
        "timing": (
            f"forward + backward, {sizes.rounds} rounds over all batches, layouts rotating; "
            "useful tok/s = non-pad tokens / s, x padded and x grouped: medians over rounds"
        ),
        "packed (varlen) / padded per round": per_round(padded),
        "packed (varlen) / grouped per round": per_round(grouped),
    }
    if as_json:
        meta["sizes"] = asdict(sizes)
        meta["packing_efficiency"] = packing["efficiency"]
    title = "mmgen bench step: packed vs padded (random, length-grouped) training step"
    return emit(title, COLUMNS, rows, as_json=as_json, **meta)
