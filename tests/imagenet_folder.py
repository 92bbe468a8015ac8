"""A generated ImageNet-layout folder for tests: train/<wnid>/*.JPEG and a flat val/
labelled by LOC_val_solution.csv (jaxreg/data/folders.py), many classes of small files.

Each class is a colour (hue and brightness from its index) with a random texture, so a
tiny ResNet learns something in a few steps; sizes differ from the run's
data.image_size, so every file is resized on load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def wnid(c: int) -> str:
  return f"n{1440000 + c:08d}"


def make(root: Path, classes: int = 200, train_per_class: int = 12,
         val_per_class: int = 2, side: int = 20, seed: int = 0,
         flat_val: bool = True) -> Path:
  """Writes the folder under `root` and returns it."""
  rng = np.random.default_rng(seed)
  root = Path(root)
  colours = rng.integers(30, 226, (classes, 3))
  rows = ["ImageId,PredictionString"]

  def image(c: int) -> Image.Image:
    noise = rng.integers(-30, 31, (side, side, 3))
    return Image.fromarray(np.clip(colours[c] + noise, 0, 255).astype(np.uint8))

  n = 0
  for c in range(classes):
    d = root / "train" / wnid(c)
    d.mkdir(parents=True)
    for i in range(train_per_class):
      image(c).save(d / f"{wnid(c)}_{i}.JPEG", quality=95)
    for i in range(val_per_class):
      n += 1
      name = f"ILSVRC2012_val_{n:08d}"
      if flat_val:
        (root / "val").mkdir(exist_ok=True)
        image(c).save(root / "val" / f"{name}.JPEG", quality=95)
        rows.append(f"{name},{wnid(c)} 1 2 3 4")
      else:
        (root / "val" / wnid(c)).mkdir(parents=True, exist_ok=True)
        image(c).save(root / "val" / wnid(c) / f"{name}.JPEG", quality=95)
  if flat_val:
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
  return root
