"""Built-in audio modality: a Whisper encoder and a projector, fed log-mel features from
transformers' ``WhisperFeatureExtractor``.

    config = AudioConfig(hidden_size=4096, encoder="openai/whisper-small", pool=4)
    processor = AudioProcessor(config)   # waveform at processor.sampling_rate -> mel features

Whisper encodes a fixed window (30 s for the released models; shorter clips are padded), so
every clip becomes ``max_source_positions // pool`` embeddings. ``pool`` averages neighbouring
frames to shorten that (Qwen2-Audio pools by 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoFeatureExtractor, PreTrainedConfig

from mmgen.constants import MODALITY_VALUE_KEY, NUM_EMBEDDINGS_KEY
from mmgen.errors import ConfigError, DataError
from mmgen.modalities._hf import (
    EncoderConfig,
    EncoderModality,
    encoder_config,
    load_encoder,
    load_preprocessor,
)
from mmgen.modality.base import BaseModalityProcessor
from mmgen.modality.registry import AutoModality


class AudioConfig(EncoderConfig):
    """``encoder``: a Whisper checkpoint (its encoder is used); ``encoder_config``: a Whisper
    config. Besides ``EncoderConfig``'s arguments:

    feature_extractor: name, path or ``to_dict()`` of the feature extractor (default: encoder).
    pool: average this many neighbouring encoder frames into one embedding.
    """

    default_modality_type = "audio"

    def __init__(
        self,
        hidden_size: int = 4096,
        max_batch_size: int = 32,
        encoder: str | None = None,
        encoder_config: dict[str, Any] | None = None,
        feature_extractor: str | dict[str, Any] | None = None,
        pool: int = 1,
        **kwargs: Any,
    ) -> None:
        if not isinstance(pool, int) or pool < 1:
            raise ConfigError(f"audio modality: pool must be an int >= 1, got {pool!r}")
        self.feature_extractor = feature_extractor
        self.pool = pool
        super().__init__(hidden_size, max_batch_size, encoder, encoder_config, **kwargs)

    def whisper_config(self) -> PreTrainedConfig:
        return encoder_config("audio modality", self.encoder, self.encoder_config, None)

    def num_embeddings(self) -> int:
        return self.whisper_config().max_source_positions // self.pool


class AudioProcessor(BaseModalityProcessor):
    """A mono waveform at ``sampling_rate`` (a 1-D array, or ``{"array", "sampling_rate"}``) ->
    log-mel ``input_features`` ``(num_mel_bins, 2 * max_source_positions)``."""

    def __init__(self, config: AudioConfig) -> None:
        super().__init__(config)
        self.feature_extractor = load_preprocessor(
            "audio modality", config.feature_extractor, config.encoder, AutoFeatureExtractor
        )
        whisper = config.whisper_config()
        frames = 2 * whisper.max_source_positions  # Whisper's conv stem halves the frames
        if self.feature_extractor.nb_max_frames != frames:
            raise ConfigError(
                f"the feature extractor makes {self.feature_extractor.nb_max_frames} frames, but "
                f"the Whisper encoder takes {frames}: set its chunk_length to match"
            )
        if self.feature_extractor.feature_size != whisper.num_mel_bins:
            raise ConfigError(
                f"the feature extractor makes {self.feature_extractor.feature_size} mel bins, "
                f"but the Whisper encoder takes {whisper.num_mel_bins}"
            )
        self.sampling_rate = self.feature_extractor.sampling_rate
        self.num_embeddings = config.num_embeddings()

    def process(self, modality: dict[str, Any]) -> dict[str, Any]:
        value = modality[MODALITY_VALUE_KEY]
        rate = self.sampling_rate
        if isinstance(value, dict):
            rate = value.get("sampling_rate", rate)
            value = value["array"]
        if rate != self.sampling_rate:
            raise DataError(
                f"audio at {rate} Hz, but the feature extractor needs {self.sampling_rate} Hz "
                "(the raw-audio loader resamples when given sampling_rate)"
            )
        wave = np.asarray(value.numpy() if torch.is_tensor(value) else value, dtype=np.float32)
        if wave.ndim != 1:
            raise DataError(f"audio must be a mono 1-D waveform, got shape {wave.shape}")
        features = self.feature_extractor(
            wave, sampling_rate=self.sampling_rate, return_tensors="pt"
        ).input_features[0]
        processed = dict(modality)
        processed[MODALITY_VALUE_KEY] = features
        processed[NUM_EMBEDDINGS_KEY] = self.num_embeddings
        return processed


@AutoModality.register("mmgen_audio")
class AudioModality(EncoderModality):
    """Whisper encoder -> average pooling by ``pool`` -> projector: ``(B, N, hidden_size)``."""

    config_class = AudioConfig
    preprocessor_class = AudioProcessor

    def __init__(self, config: AudioConfig) -> None:
        super().__init__(config)
        whisper = load_encoder("audio modality", config.encoder, config.encoder_config, None)
        # a whole Whisper model (encoder-decoder) was loaded: keep the encoder only
        self.encoder = whisper.get_encoder() if hasattr(whisper, "get_encoder") else whisper
        self.projector = self.build_projector(self.encoder.config.d_model)
        self.post_init()

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        features = torch.stack(list(inputs)).to(self.encoder.device, self.encoder.dtype)
        hidden = self.encoder(input_features=features).last_hidden_state  # (B, P, d)
        if self.config.pool > 1:
            hidden = F.avg_pool1d(
                hidden.transpose(1, 2), self.config.pool, self.config.pool
            ).transpose(1, 2)
        return self.projector(hidden)
