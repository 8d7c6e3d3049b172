"""``raw-image``: the model-agnostic image loader (PIL), for every image model."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmgen.errors import DataError
from mmgen.loaders._source import classify
from mmgen.modality.base import BaseModalityLoader
from mmgen.modality.registry import AutoModalityLoader

# the most pixels an image may have (8192 x 8192): a tiny file can claim a huge canvas, and
# decoding it would take that much memory (PIL's own bomb check only warns below 2 x 89 MP)
MAX_PIXELS = 1 << 26
_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


@AutoModalityLoader.register("raw-image")
class RawImageLoader(BaseModalityLoader):
    """Loads an image from bytes, a path, an array (H, W) or (H, W, C), or a PIL image.

    Args:
        mode: PIL mode every image is converted to (``None`` keeps the file's own mode).
        max_pixels: an image with more pixels is refused (from its header, before decoding).
    """

    def __init__(
        self, mode: str | None = "RGB", max_pixels: int = MAX_PIXELS, **options: Any
    ) -> None:
        super().__init__(mode=mode, max_pixels=max_pixels, **options)
        self.mode = mode
        self.max_pixels = max_pixels

    def load(self, sample: dict[str, Any]) -> Image.Image:
        source = classify(sample)
        if source.kind in ("bytes", "path"):
            image = source.decode("image", lambda handle: _open(handle, self.max_pixels), _ERRORS)
        elif source.kind == "array":
            image = _from_array(source.payload, self.max_pixels)
        elif isinstance(source.payload, Image.Image):
            image = source.payload
        else:
            raise DataError(f"cannot load an image from a {type(source.payload).__name__}")
        return image.convert(self.mode) if self.mode and image.mode != self.mode else image

    def measure(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        """``width``, ``height`` and the file's ``mode``, from the header (no pixel is decoded)."""
        source = classify(sample)
        if source.kind in ("bytes", "path"):
            width, height, mode = source.decode("image", _header, _ERRORS)
            _check_size(width, height, self.max_pixels)
        elif source.kind == "array":
            height, width = source.payload.shape[:2]
            mode = None
        elif isinstance(source.payload, Image.Image):
            (width, height), mode = source.payload.size, source.payload.mode
        else:
            return None
        return {"width": int(width), "height": int(height), "mode": mode}


def _header(handle) -> tuple[int, int, str]:
    with _opened(handle) as opened:  # reads the header only: pixels decode on load()
        return opened.size[0], opened.size[1], opened.mode


def _opened(handle) -> Image.Image:
    """``Image.open``, whose own refusal of a far too large image is a size error too."""
    try:
        return Image.open(handle)
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"the image is larger than any loader takes: {str(exc).rstrip('.')}",
            reason="media too large",
        ) from None


def _check_size(width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise DataError(
            f"the image is {width} x {height} = {width * height:,} pixels, more than the"
            f" loader's max_pixels={limit:,}",
            reason="media too large",
        )


def _open(handle, limit: int) -> Image.Image:
    with _opened(handle) as opened:
        _check_size(*opened.size, limit)  # from the header: no pixel decoded yet
        # PIL decodes lazily: load() here so a truncated file fails now, not later
        opened.load()
        return opened.copy()


def _from_array(array: np.ndarray, limit: int = MAX_PIXELS) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise DataError(f"an image array must be (H, W) or (H, W, 1|3|4), got {array.shape}")
    _check_size(array.shape[1], array.shape[0], limit)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            # floats are taken as [0, 1] intensities, the convention of most array image code
            array = np.clip(array * 255.0 + 0.5, 0, 255)
        array = array.astype(np.uint8)
    return Image.fromarray(array)
