"""``raw-image``: the model-agnostic image loader (PIL), for every image model."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmgen.errors import DataError
from mmgen.loaders._source import classify
from mmgen.modality.base import BaseModalityLoader
from mmgen.modality.registry import AutoModalityLoader


@AutoModalityLoader.register("raw-image")
class RawImageLoader(BaseModalityLoader):
    """Loads an image from bytes, a path, an array (H, W) or (H, W, C), or a PIL image.

    Args:
        mode: PIL mode every image is converted to (``None`` keeps the file's own mode).
    """

    def __init__(self, mode: str | None = "RGB", **options: Any) -> None:
        super().__init__(mode=mode, **options)
        self.mode = mode

    def load(self, sample: dict[str, Any]) -> Image.Image:
        source = classify(sample)
        if source.kind in ("bytes", "path"):
            errors = (UnidentifiedImageError, OSError, SyntaxError, ValueError)
            image = source.decode("image", _open, errors)
        elif source.kind == "array":
            image = _from_array(source.payload)
        elif isinstance(source.payload, Image.Image):
            image = source.payload
        else:
            raise DataError(f"cannot load an image from a {type(source.payload).__name__}")
        return image.convert(self.mode) if self.mode and image.mode != self.mode else image

    def measure(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        """``width``, ``height`` and the file's ``mode``, from the header (no pixel is decoded)."""
        source = classify(sample)
        if source.kind in ("bytes", "path"):
            errors = (UnidentifiedImageError, OSError, SyntaxError, ValueError)
            width, height, mode = source.decode("image", _header, errors)
        elif source.kind == "array":
            height, width = source.payload.shape[:2]
            mode = None
        elif isinstance(source.payload, Image.Image):
            (width, height), mode = source.payload.size, source.payload.mode
        else:
            return None
        return {"width": int(width), "height": int(height), "mode": mode}


def _header(handle) -> tuple[int, int, str]:
    with Image.open(handle) as opened:  # reads the header only: pixels decode on load()
        return opened.size[0], opened.size[1], opened.mode


def _open(handle) -> Image.Image:
    with Image.open(handle) as opened:
        # PIL decodes lazily: load() here so a truncated file fails now, not later
        opened.load()
        return opened.copy()


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise DataError(f"an image array must be (H, W) or (H, W, 1|3|4), got {array.shape}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            # floats are taken as [0, 1] intensities, the convention of most array image code
            array = np.clip(array * 255.0 + 0.5, 0, 255)
        array = array.astype(np.uint8)
    return Image.fromarray(array)
