"""Tiny random-init models, processors and a tokenizer, saved to temp dirs like real checkpoints
(nothing is downloaded). Sizes: LLM hidden 64 / 2 layers; image 32 px, patch 8 -> 16 patches;
Whisper 16 mel bins, 16 kHz, 1 s windows at hop 400 -> 40 mel frames -> 20 encoder frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

LLM_HIDDEN = 64
LLM_VOCAB = 96
IMAGE_SIZE = 32
PATCH = 8
IMAGE_PATCHES = (IMAGE_SIZE // PATCH) ** 2
AUDIO_RATE = 16000
AUDIO_FRAMES = 40  # mel frames per window: 1 s at hop 400
WORDS = [
    "the",
    "a",
    "is",
    "what",
    "in",
    "image",
    "audio",
    "picture",
    "sound",
    "cat",
    "dog",
    "red",
    "blue",
    "say",
    "yes",
    "no",
    "one",
    "two",
    "three",
]
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "<audio>", "<xray>"]


def tiny_llm_config(**overrides) -> LlamaConfig:
    options = dict(
        vocab_size=LLM_VOCAB,
        hidden_size=LLM_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    options.update(overrides)
    return LlamaConfig(**options)


def tiny_llm(seed: int = 0, attn_implementation: str = "sdpa", **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = tiny_llm_config(**overrides)
    config._attn_implementation = attn_implementation
    return LlamaForCausalLM(config).eval()


def _vision(kind: str) -> dict:
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )


def tiny_clip_vision_config() -> dict:
    return {"model_type": "clip_vision_model", **_vision("clip")}


def save_tiny_clip(directory: Path, seed: int = 0) -> Path:
    """A full CLIP checkpoint (text + vision towers) and its image processor."""
    torch.manual_seed(seed)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config={**text, "vocab_size": 64, "bos_token_id": 0, "eos_token_id": 1},
        vision_config=_vision("clip"),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(directory)
    tiny_clip_processor().save_pretrained(directory)
    return Path(directory)


def tiny_clip_processor() -> CLIPImageProcessorPil:
    return CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )


def save_tiny_siglip(directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = SiglipConfig(text_config={**text, "vocab_size": 64}, vision_config=_vision("siglip"))
    SiglipModel(config).save_pretrained(directory)
    SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(
        directory
    )
    return Path(directory)


def save_tiny_whisper(directory: Path, seed: int = 0) -> Path:
    """A Whisper encoder-decoder checkpoint and its feature extractor (16 mel bins, 16 kHz)."""
    torch.manual_seed(seed)
    config = WhisperConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=16,
        max_source_positions=AUDIO_FRAMES // 2,
        max_target_positions=16,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    WhisperModel(config).save_pretrained(directory)
    WhisperFeatureExtractor(
        feature_size=16, sampling_rate=AUDIO_RATE, hop_length=400, chunk_length=1, n_fft=400
    ).save_pretrained(directory)
    return Path(directory)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a few words; placeholders are special tokens."""
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS + list("?.,:"))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=SPECIAL[4:],
    )
    assert len(tokenizer) <= LLM_VOCAB
    return tokenizer


def random_image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE + 8, IMAGE_SIZE, 3), dtype=np.uint8))


def random_wave(seed: int, seconds: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * AUDIO_RATE))).astype(np.float32)


def tiny_multimodal(
    clip_dir: Path,
    whisper_dir: Path | None = None,
    *,
    seed: int = 0,
    image_batch: int = 32,
    attn_implementation: str = "sdpa",
):
    """Tiny Llama + "image" (CLIP, MLP projector) [+ "audio" (Whisper, 2x concat)]: mmgen's
    built-in modalities, generated from specs/image.yaml and specs/audio.yaml."""
    from mmgen.model import MultimodalModel

    torch.manual_seed(seed)
    modalities = {"image": image_modality(clip_dir, max_batch_size=image_batch)}
    if whisper_dir is not None:
        modalities["audio"] = audio_modality(whisper_dir)
    llm = tiny_llm(seed, attn_implementation)
    return MultimodalModel(language_model=llm, modalities=modalities).eval()


def image_modality(clip_dir: Path, **fields):
    """The built-in image modality over a tiny CLIP folder (encoder and processor)."""
    from mmgen.modalities.image import ImageModality

    return ImageModality(image_config(clip_dir, **fields))


def image_config(clip_dir: Path, **fields):
    from mmgen.modalities.image import ImageConfig

    folder = str(clip_dir)
    fields = {"hidden_size": LLM_HIDDEN, **fields}
    return ImageConfig(encoder_name_or_path=folder, processor_name_or_path=folder, **fields)


def audio_modality(whisper_dir: Path, **fields):
    """The built-in audio modality over a tiny Whisper folder (encoder and feature extractor)."""
    from mmgen.modalities.audio import AudioModality

    return AudioModality(audio_config(whisper_dir, **fields))


def audio_config(whisper_dir: Path, **fields):
    from mmgen.modalities.audio import AudioConfig

    folder = str(whisper_dir)
    fields = {"hidden_size": LLM_HIDDEN, **fields}
    return AudioConfig(encoder_name_or_path=folder, processor_name_or_path=folder, **fields)
