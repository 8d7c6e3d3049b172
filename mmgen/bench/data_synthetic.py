"""The synthetic dataset of ``mmgen bench data``: real media files on disk, JSONL rows that
reference them, and the processor a user of the built-in audio and image modalities has.

- Audio: 16-bit mono WAV clips at 16 kHz, 1-10 s (uniform), a tone plus noise.
- Images: RGB, longer side 320-1280 px (uniform), aspect 1:1, 4:3, 3:4 or 16:9; 3 in 4 JPEG
  (quality 90), 1 in 4 PNG; a colour gradient plus noise (so files are photo-sized, not blank).
- Rows: ChatML conversations, 40% with one ``<audio>``, 40% with one ``<image>``, 20% with both;
  one question and answer, a fifth of them with a second text-only exchange. Words follow a
  Zipf law over a made-up vocabulary; answers are ~30 words (median), up to 300.
- Media are a pool of ``count`` distinct files per modality: rows take them in turn, so a
  dataset of more rows than the pool references each file several times.
- Processor: the built-in modalities with the feature extraction a user has (Whisper's 80 mel
  bins over a 30-s window: 3000 frames, 750 embeddings; CLIP ViT-L/14-336's 336-px crop: 576
  embeddings) and tiny random-init encoders from the specs' test blocks with that geometry
  (lengths depend on encoder configs, not weights). The tokenizer is a byte-level BPE trained
  here on the synthetic texts (nothing can be downloaded), with a ChatML template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLING_RATE = 16000
AUDIO_SECONDS = (1.0, 10.0)
IMAGE_LONG_SIDE = (320, 1280)
ASPECTS = (1.0, 4 / 3, 3 / 4, 16 / 9)
PNG_SHARE = 0.25
KINDS = (("audio", 0.4), ("image", 0.4), ("both", 0.2))
SECOND_TURN = 0.2
VOCABULARY = 4000  # made-up words
BPE_VOCAB = 8000
SEED = 0

# spec test-block overrides that give the real models' feature geometry
AUDIO_ENCODER = {"num_mel_bins": 80, "max_source_positions": 1500}  # whisper-base
AUDIO_PROCESSOR = {"feature_size": 80, "sampling_rate": SAMPLING_RATE, "hop_length": 160,
                   "chunk_length": 30, "n_fft": 400}  # fmt: skip
IMAGE_ENCODER = {"image_size": 336, "patch_size": 14}  # clip-vit-large-patch14-336
IMAGE_PROCESSOR = {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}
DESCRIPTION = (
    "built-in audio and image modalities, real feature extraction (WhisperFeatureExtractor: 80"
    " mel bins, 30-s window, hop 160 -> 3000 frames, 750 embeddings; CLIPImageProcessor: resize"
    " + 336x336 crop -> 576 embeddings), tiny random-init encoders (lengths need their configs"
    " only); byte-level BPE tokenizer trained on the synthetic texts, ChatML template"
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QUESTIONS = {
    "audio": ["What is said in <audio>?", "Transcribe <audio>.", "<audio>\nWho is speaking?",
              "Describe the sounds in <audio>."],
    "image": ["<image>\nDescribe the picture.", "What is shown in <image>?",
              "<image>\nHow many objects are there?", "Read the text in <image>."],
    "both": ["<image>\nDoes <audio> describe this picture?",
             "Compare <audio> with what <image> shows."],
}  # fmt: skip


@dataclass
class Media:
    """Paths of the media pool, relative to the dataset's folder."""

    audio: list[str]
    images: list[str]


def write_media(folder: Path, count: int, seed: int = SEED) -> Media:
    """``count`` WAV clips and ``count`` images under ``folder/media``; files already there (a
    kept ``--dir``) are reused: they are the same for the same seed and count."""
    import numpy as np

    rng = np.random.default_rng(seed)
    audio_dir, image_dir = folder / "media" / "audio", folder / "media" / "image"
    audio_dir.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    audio, images = [], []
    for i in range(count):
        # draw every file's parameters even when it exists, so the next ones stay the same
        seconds, tone = rng.uniform(*AUDIO_SECONDS), rng.uniform(100.0, 1000.0)
        side, aspect = rng.integers(*IMAGE_LONG_SIDE, endpoint=True), rng.choice(ASPECTS)
        png = rng.random() < PNG_SHARE
        audio_path = audio_dir / f"{i:06d}.wav"
        if not audio_path.exists():
            _write_wave(audio_path, seconds, tone, np.random.default_rng([seed, i]))
        image_path = image_dir / f"{i:06d}.{'png' if png else 'jpg'}"
        if not image_path.exists():
            width, height = (side, round(side / aspect)) if aspect >= 1 else (
                round(side * aspect), side)  # fmt: skip
            _write_image(image_path, width, height, np.random.default_rng([seed, i, 1]))
        audio.append(audio_path.relative_to(folder).as_posix())
        images.append(image_path.relative_to(folder).as_posix())
    return Media(audio, images)


def _write_wave(path: Path, seconds: float, tone: float, rng) -> None:
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * SAMPLING_RATE), dtype=np.float32) / SAMPLING_RATE
    wave = 0.3 * np.sin(2 * np.pi * tone * t) + 0.02 * rng.standard_normal(t.shape[0])
    soundfile.write(path, wave.astype(np.float32), SAMPLING_RATE, subtype="PCM_16")


def _write_image(path: Path, width: int, height: int, rng) -> None:
    import numpy as np
    from PIL import Image

    # a gradient between two colours (at most 243) plus a tiled noise texture (at most 12):
    # uint8 arithmetic that cannot overflow, a few ms even for the largest images
    start, end = rng.uniform(0, 243, 3), rng.uniform(0, 243, 3)
    ramp = np.linspace(0.0, 1.0, width)[:, None]
    row = (start + (end - start) * ramp).astype(np.uint8)[None]  # (1, width, 3)
    tile = rng.integers(0, 13, (128, 128, 3), dtype=np.uint8)
    noise = np.tile(tile, (height // 128 + 1, width // 128 + 1, 1))[:height, :width]
    image = Image.fromarray(row + noise)
    if path.suffix == ".png":
        image.save(path)
    else:
        image.save(path, quality=90)


def write_rows(path: Path, n: int, media: Media, seed: int = SEED) -> Path:
    """``n`` JSONL rows at ``path`` (its folder holds ``media``), taking the pool's files in
    turn."""
    import numpy as np

    rng = np.random.default_rng([seed, n])
    words = _Words(rng)
    kinds = rng.choice([k for k, _ in KINDS], size=n, p=[p for _, p in KINDS])
    next_audio = next_image = 0
    with path.open("w", encoding="utf-8") as out:
        for i, kind in enumerate(kinds.tolist()):
            entries = []
            if kind in ("image", "both"):  # the question names the image first
                entries.append(
                    {"type": "image", "value": media.images[next_image % len(media.images)]}
                )
                next_image += 1
            if kind in ("audio", "both"):
                entries.append(
                    {"type": "audio", "value": media.audio[next_audio % len(media.audio)]}
                )
                next_audio += 1
            question = QUESTIONS[kind][int(rng.integers(len(QUESTIONS[kind])))]
            turns = [{"role": "user", "content": f"{question} {words.sentence(4, 30)}"},
                     {"role": "assistant", "content": words.answer()}]  # fmt: skip
            if rng.random() < SECOND_TURN:
                turns += [{"role": "user", "content": words.sentence(4, 20) + "?"},
                          {"role": "assistant", "content": words.answer()}]  # fmt: skip
            row = {"id": f"r{i:07d}", "conversations": turns, "modalities": entries}
            out.write(json.dumps(row) + "\n")
    return path


class _Words:
    """Sentences of made-up words, Zipf-distributed (a few words common, most rare)."""

    def __init__(self, rng) -> None:
        import numpy as np

        self.rng = rng
        letters = np.random.default_rng(SEED)  # the same vocabulary in every file
        syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
        self.vocabulary = [
            "".join(letters.choice(syllables, size=int(letters.integers(1, 4))))
            for _ in range(VOCABULARY)
        ]
        weights = np.cumsum(1.0 / np.arange(1, VOCABULARY + 1))
        self.cdf = weights / weights[-1]  # drawn by bisection: choice(p=) sums p every call

    def sentence(self, low: int, high: int) -> str:
        import numpy as np

        count = int(self.rng.integers(low, high + 1))
        chosen = np.searchsorted(self.cdf, self.rng.random(count), side="right")
        return " ".join(self.vocabulary[k] for k in np.minimum(chosen, VOCABULARY - 1).tolist())

    def answer(self) -> str:
        count = int(min(300, max(3, self.rng.lognormal(3.4, 0.8))))  # median ~30 words
        text = self.sentence(count, count)
        words = text.split(" ")
        for at in range(11, len(words), 12):  # a sentence every 12 words
            words[at] += "."
        return " ".join(words).capitalize() + "."


# -- the processor ---------------------------------------------------------------------------


def build_processor(folder: Path) -> Any:
    """The ``MultimodalProcessor`` over the files in ``folder`` (saved there first when absent:
    the tokenizer, and the audio and image encoders' and feature extractors' files)."""
    from transformers import AutoTokenizer

    from mmgen.data.processor import MultimodalProcessor
    from mmgen.modalities.audio.config import AudioConfig
    from mmgen.modalities.audio.processor import AudioProcessor
    from mmgen.modalities.image.config import ImageConfig
    from mmgen.modalities.image.processor import ImageProcessor

    if not (folder / "tokenizer").is_dir():
        _save_modality(folder / "audio", "audio", AUDIO_ENCODER, AUDIO_PROCESSOR)
        _save_modality(folder / "image", "image", IMAGE_ENCODER, IMAGE_PROCESSOR)
        _save_tokenizer(folder / "tokenizer")  # last: its folder marks a complete set
    paths = {name: {"encoder_name_or_path": str(folder / name / "encoder"),
                    "processor_name_or_path": str(folder / name / "processor")}
             for name in ("audio", "image")}  # fmt: skip
    processors = {
        "audio": AudioProcessor(AudioConfig(hidden_size=32, **paths["audio"])),
        "image": ImageProcessor(ImageConfig(hidden_size=32, **paths["image"])),
    }
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    return MultimodalProcessor(tokenizer, processors)


def _save_modality(folder: Path, spec_name: str, encoder: dict, processor: dict) -> None:
    import importlib

    from mmgen.spec.catalog import resolve
    from mmgen.testing import save_tiny_model, save_tiny_processor

    spec = resolve(spec_name, None)[0]

    def named(dotted: str) -> type:
        module, _, attribute = dotted.rpartition(".")
        return getattr(importlib.import_module(module), attribute)

    options = {**(spec.test.encoder or {}), **encoder}
    save_tiny_model(named(spec.encoder.class_), folder / "encoder", **options)
    options = {**(spec.test.processor or {}), **processor}
    save_tiny_processor(named(spec.processor.class_), folder / "processor", **options)


def _save_tokenizer(folder: Path) -> None:
    import numpy as np
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = _Words(np.random.default_rng([SEED, 1]))
    corpus = [words.answer() for _ in range(4000)] + [words.sentence(4, 30) for _ in range(2000)]
    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )  # fmt: skip
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
