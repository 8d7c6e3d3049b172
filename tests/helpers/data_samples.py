"""What the data-side tests share: a tiny real tokenizer (trained here, offline) and chat
templates, small modality processors, and media bytes (random PNGs, sine-wave WAVs).

Imported as ``from helpers.data_samples import ...``; ``tests/data/conftest.py`` wraps some of
them in fixtures.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import soundfile
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mmgen import MODALITY_VALUE_KEY, NUM_EMBEDDINGS_KEY, BaseModalityConfig, BaseModalityProcessor

SPECIALS = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]

# Qwen2-style ChatML: special tokens at every turn boundary
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# the same format with HF's assistant markers
CHATML_GENERATION = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n"
    # (HF renders with trim_blocks: a newline right after a block tag would be dropped)
    "{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# rewrites earlier assistant turns (like templates that drop reasoning): not prefix-stable
REWRITING = (
    "{% for m in messages %}{% if m['role'] == 'assistant' and loop.last %}[final] {% endif %}"
    "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
)

CORPUS = [
    "What is said in this clip? The answer is seven.",
    "Describe the picture: a red square on a blue background.",
    "user assistant system hello world, numbers one two three four five six seven eight nine",
]


@functools.cache
def build_backend() -> Tokenizer:
    """A byte-level BPE trained on a few strings, with ChatML and bos/eos/pad special tokens."""
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tokenizer


def make_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_backend(), bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = chat_template
    return tokenizer


class ImageProcessor(BaseModalityProcessor):
    """One embedding per 8x8 patch, so the count depends on the image size."""

    def process(self, modality):
        image = np.asarray(modality[MODALITY_VALUE_KEY], dtype=np.float32) / 255.0
        value = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        count = (value.shape[1] // 8) * (value.shape[2] // 8)
        return {**modality, MODALITY_VALUE_KEY: value, NUM_EMBEDDINGS_KEY: count}


class AudioConfig(BaseModalityConfig):
    model_type = "test_audio"

    def __init__(self, sampling_rate: int = 8000, **kwargs):
        self.sampling_rate = sampling_rate
        super().__init__(**kwargs)


class AudioProcessor(BaseModalityProcessor):
    """One embedding per 100 ms at the config's rate."""

    def process(self, modality):
        wave = torch.as_tensor(modality[MODALITY_VALUE_KEY])
        count = math.ceil(wave.shape[0] / (self.config.sampling_rate // 10))
        return {**modality, MODALITY_VALUE_KEY: wave, NUM_EMBEDDINGS_KEY: count}


def make_processors():
    image = ImageProcessor(BaseModalityConfig(hidden_size=8, modality_type="image"))
    audio = AudioProcessor(AudioConfig(hidden_size=8, modality_type="audio"))
    return {"image": image, "audio": audio}


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def sine(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> bytes:
    wave = sine(seconds, rate, freq)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, rate, format="WAV")
    return buffer.getvalue()
