"""Built-in modalities (each a config, processor and modality registered with ``AutoModality``):

image.py   CLIP / SigLIP vision tower + projector          (registered as "mmgen_image")
audio.py   Whisper encoder + WhisperFeatureExtractor + projector   ("mmgen_audio")
"""

from mmgen.modalities.audio import AudioConfig, AudioModality, AudioProcessor
from mmgen.modalities.image import ImageConfig, ImageModality, ImageProcessor

__all__ = [
    "AudioConfig",
    "AudioModality",
    "AudioProcessor",
    "ImageConfig",
    "ImageModality",
    "ImageProcessor",
]
