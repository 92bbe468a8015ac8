"""A generated image set whose classes depend on colour or on shape, never both.

Each image is one object on a grey, noisy background:

- colour classes (`red`, `green`, `blue`, `yellow`): a filled ellipse of random size,
  position and aspect whose HUE tells the class (saturated, random brightness). Its shape
  carries no information, so anything that changes hue or removes saturation (colour
  jitter) destroys exactly what these classes need.
- shape classes (`square`, `triangle`, `ring`, `cross`): a GREY object (no hue at all, a
  random grey level) whose outline tells the class. Any fragment of a colour object keeps
  its colour, but a small crop of a shape object shows an edge or a flat patch that
  several shapes share, so aggressive cropping removes what these classes need.

This mirrors the paper's ImageNet observation (colour augmentation hurts classes defined
by colour, random crops hurt classes that need the whole object) with a known cause.

`labels="colour_and_shape"` draws the other set, the *upstream* one of the transfer
experiment (docs/results/transfer.md): every object is a coloured shape, one of the four
outlines filled with one of the four hues, and its class is the pair (16 classes,
`red_square` ... `yellow_cross`). A network must learn both hue and outline to tell
them apart, so both are there for an augmentation to remove; the default set above is
the *downstream* one, whose classes need one or the other.

Everything is drawn from `generator_seed`: the set is the same on every machine.
Training classes are balanced (train_size // k each for k classes, the remainder to
the first ones).
"""

from __future__ import annotations

import json

import numpy as np

from jaxreg.data.raw import RawData, RawSplit

COLOUR_CLASSES = ("red", "green", "blue", "yellow")
SHAPE_CLASSES = ("square", "triangle", "ring", "cross")
CLASS_NAMES = COLOUR_CLASSES + SHAPE_CLASSES
PAIR_CLASSES = tuple(f"{c}_{s}" for c in COLOUR_CLASSES for s in SHAPE_CLASSES)
LABELS = ("colour_or_shape", "colour_and_shape")
# Hue (turns) of each colour class; the drawn hue varies by +-_HUE_NOISE around it.
_HUES = {"red": 0.0, "green": 1 / 3, "blue": 2 / 3, "yellow": 1 / 6}
_HUE_NOISE = 0.03


def _hsv_to_rgb(h, s, v):
  """Vectorized HSV -> RGB (all in [0, 1]); h, s, v broadcast to [..., 3] output."""
  k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
  return v[..., None] - v[..., None] * s[..., None] * np.clip(
      np.minimum(k, 4.0 - k), 0.0, 1.0)


def _masks(kind: str, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """bool [n, size, size]: n objects of `kind`, random centre, size and rotation."""
  yy, xx = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
  r = rng.uniform(0.26, 0.40, (n, 1, 1)) * size            # half-extent
  margin = r * 1.05
  cy = rng.uniform(margin[:, 0, 0], size - margin[:, 0, 0])[:, None, None]
  cx = rng.uniform(margin[:, 0, 0], size - margin[:, 0, 0])[:, None, None]
  y, x = yy[None] - cy, xx[None] - cx
  if kind == "ellipse":
    aspect = rng.uniform(0.6, 1.0, (n, 1, 1))
    return (x / r) ** 2 + (y / (r * aspect)) ** 2 <= 1.0
  # Shapes get a random rotation of up to +-15 degrees: their outline still decides.
  t = rng.uniform(-np.pi / 12, np.pi / 12, (n, 1, 1))
  u, w = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
  if kind == "square":
    return np.maximum(np.abs(u), np.abs(w)) <= r * 0.85
  if kind == "ring":
    d = np.sqrt(u ** 2 + w ** 2)
    return (d <= r) & (d >= r * 0.55)
  if kind == "cross":
    arm = r * 0.32
    return ((np.abs(u) <= arm) & (np.abs(w) <= r)) | ((np.abs(w) <= arm) & (np.abs(u) <= r))
  if kind == "triangle":  # pointing up: inside three half-planes
    s3 = np.sqrt(3.0)
    return (w <= r * 0.5) & (s3 * u - w <= r) & (-s3 * u - w <= r)
  raise ValueError(kind)


def _coloured(colour: str, m: int, rng: np.random.Generator) -> np.ndarray:
  """[m, 3] saturated RGB of one colour class (hue jittered, random brightness)."""
  hue = (_HUES[colour] + rng.uniform(-_HUE_NOISE, _HUE_NOISE, m)) % 1.0
  return _hsv_to_rgb(hue, rng.uniform(0.75, 1.0, m), rng.uniform(0.6, 1.0, m))


def _object(name: str, m: int, size: int, rng: np.random.Generator):
  """(mask [m, size, size], rgb [m, 3]) of m objects of class `name` of either set."""
  if name in COLOUR_CLASSES:
    return _masks("ellipse", m, size, rng), _coloured(name, m, rng)
  if name in SHAPE_CLASSES:
    return _masks(name, m, size, rng), np.repeat(rng.uniform(0.55, 1.0, (m, 1)), 3, 1)
  colour, shape = name.split("_")
  return _masks(shape, m, size, rng), _coloured(colour, m, rng)


def _draw(label_ids: np.ndarray, size: int, rng: np.random.Generator,
          names=CLASS_NAMES) -> np.ndarray:
  """uint8 [n, size, size, 3] images of the given class ids (of `names`)."""
  n = len(label_ids)
  # Background: one grey level per image plus per-pixel noise (no hue).
  background = rng.uniform(0.05, 0.35, (n, 1, 1, 1)) + rng.normal(
      0.0, 0.04, (n, size, size, 1))
  images = np.repeat(background, 3, axis=-1)
  for c, name in enumerate(names):
    idx = np.flatnonzero(label_ids == c)
    if not idx.size:
      continue
    m = len(idx)
    mask, rgb = _object(name, m, size, rng)
    obj = rgb[:, None, None, :] + rng.normal(0.0, 0.03, (m, size, size, 1))
    images[idx] = np.where(mask[..., None], obj, images[idx])
  return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def generate(train_size: int, test_per_class: int, image_size: int, seed: int,
             labels: str = "colour_or_shape") -> RawData:
  """The set for these arguments (the data.shapes.* keys); deterministic in them."""
  if labels not in LABELS:
    raise ValueError(f"data.shapes.labels={labels!r}: one of {', '.join(LABELS)}")
  names = CLASS_NAMES if labels == "colour_or_shape" else PAIR_CLASSES
  rng = np.random.default_rng(seed)
  k = len(names)
  counts = np.full(k, train_size // k)
  counts[:train_size % k] += 1
  train_labels = rng.permutation(np.repeat(np.arange(k), counts)).astype(np.int32)
  test_labels = np.repeat(np.arange(k), test_per_class).astype(np.int32)
  train_images = _draw(train_labels, image_size, rng, names)
  test_images = _draw(test_labels, image_size, rng, names)
  settings = {"train_size": train_size, "test_per_class": test_per_class,
              "image_size": image_size, "generator_seed": seed}
  if labels != "colour_or_shape":   # the default set's description is unchanged
    settings["labels"] = labels
  return RawData(RawSplit(train_labels, images=train_images),
                 RawSplit(test_labels, images=test_images), list(names),
                 f"shapes {json.dumps(settings, sort_keys=True)}")
