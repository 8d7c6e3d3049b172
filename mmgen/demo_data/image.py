"""The image demo task: one coloured shape on a noisy background; the answer is colour and shape.

Shapes vary in size and position, so the encoder has to find the shape rather than read a fixed
pixel. Five colours times four shapes make 20 answers: a text-only model is at chance (1 in 20).
"""

from __future__ import annotations

import io

import numpy as np

IMAGE_SIZE = 32
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 220, 50),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "cross")
BACKGROUND_NOISE = 40  # background pixels are uniform in [0, BACKGROUND_NOISE)
PROMPT = "What is shown in <image>?"


def _outline(shape: str, box: tuple[int, int, int, int]) -> list[tuple[int, int]] | None:
    left, top, right, bottom = box
    if shape == "triangle":
        return [((left + right) // 2, top), (right, bottom), (left, bottom)]
    if shape == "cross":
        x, y = (left + right) / 2, (top + bottom) / 2
        a, b = (right - left) / 2, (right - left) / 6
        points = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a)]
        points += [(-b, b), (-a, b), (-a, -b), (-b, -b)]
        return [(round(x + dx), round(y + dy)) for dx, dy in points]
    return None


def sample(rng: np.random.Generator) -> tuple[bytes, str]:
    """One random image as PNG bytes, and its answer (e.g. ``"red circle"``)."""
    from PIL import Image, ImageDraw

    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    pixels = rng.integers(0, BACKGROUND_NOISE, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    size = int(rng.integers(IMAGE_SIZE // 3, IMAGE_SIZE * 3 // 4))
    left, top = (int(v) for v in rng.integers(0, IMAGE_SIZE - size, size=2))
    box = (left, top, left + size, top + size)
    draw = ImageDraw.Draw(image)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon(_outline(shape, box), fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), f"{colour} {shape}"
