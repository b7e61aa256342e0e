"""Writes examples/shapes/: a small image folder (one subfolder per class) for the tutorial.

4 classes (circle, cross, square, stripes) of 60 PNG images each, 16x16 RGB, each shape
at a random place, size and colour over a noisy background. Run again to rewrite it:

    .venv/bin/python examples/make_shapes.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

SIZE, PER_CLASS = 16, 60
CLASSES = ("circle", "cross", "square", "stripes")


def shape_mask(kind: str, rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE]
    r, c, half = rng.integers(5, 11), rng.integers(5, 11), rng.integers(3, 5)
    if kind == "circle":
        return (rows - r) ** 2 + (cols - c) ** 2 <= half ** 2
    if kind == "cross":
        return ((abs(rows - r) <= 1) & (abs(cols - c) <= half)) | ((abs(cols - c) <= 1) & (abs(rows - r) <= half))
    if kind == "square":
        return (abs(rows - r) <= half) & (abs(cols - c) <= half)
    return (rows + rng.integers(0, 4)) % 4 < 2


def main(folder: Path = Path(__file__).resolve().parent / "shapes") -> None:
    rng = np.random.default_rng(0)
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            image = rng.normal(90, 15, (SIZE, SIZE, 3))
            image[shape_mask(kind, rng)] = rng.uniform(150, 255, 3)
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / kind / f"{i:02d}.png")


if __name__ == "__main__":
    main()
