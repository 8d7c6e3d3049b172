"""Built-in model-agnostic loaders; importing this package registers them with
``AutoModalityLoader``: ``raw-image`` (PIL) and ``raw-audio`` (soundfile + soxr).
"""

from mmgen.loaders.audio import RawAudioLoader
from mmgen.loaders.image import RawImageLoader

__all__ = ["RawAudioLoader", "RawImageLoader"]
