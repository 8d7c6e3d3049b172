"""Converters from other multimodal checkpoints to ``MultimodalModel``."""

from mmgen.convert.llava import from_llava

__all__ = ["from_llava"]
