"""Image pipeline: RawData (pixels or image files) -> ImageData, uint8 arrays
[N, H, W, C] with train / val / test splits.

Sources (jaxreg/data/sources.py picks one): `shapes`, the generated set (shapes.py);
`image_folder`, data.root/<split>/<class>/*.{png,jpg,jpeg} (folders.py: the folder rule
shared with text); `tfds:NAME`, a TFDS Image feature and ClassLabel (tfds_source.py).

Then, for every source, in order:

1. Image files (folder sources) are decoded (PIL; greyscale stays 1 channel, other modes
   become RGB) and, with the resize below, stored in the prepared-data cache
   (cache.py): keyed by the sha256 of every file's path and bytes and data.image_size, so
   a changed file decodes again and an unchanged folder loads in seconds.
2. `data.image_size` > 0 resizes each image that is not that size already to a square
   (bilinear with antialiasing, PIL). Otherwise all images must have one shape.
3. `data.train_per_class` > 0 keeps that many training images per class (drawn from
   data.split_seed).
4. Val is held out of train by `dataset.validation_split`, the text sources' rule:
   `data.val_fraction` of each class, or with `data.folds` >= 2 the `data.fold`-th of
   that many stratified folds (by data.split_seed alone).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from jaxreg.data import cache, dataset
from jaxreg.data.raw import RawData

# The per-class training subset draws from this stream of data.split_seed.
_SUBSET_STREAM = 2
# Bump when decoding or resizing changes: cached pixels from before are then not used.
DECODE_VERSION = 2  # 2: 16-bit greyscale scaled to 8 bits (was clipped), LA kept greyscale


@dataclasses.dataclass(frozen=True)
class ImageSplit:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index: np.ndarray) -> ImageSplit:
    return ImageSplit(self.images[index], self.labels[index])


@dataclasses.dataclass(frozen=True)
class ImageData(dataset.Splits):
  train: ImageSplit
  val: ImageSplit
  test: ImageSplit
  class_names: list[str]
  description: str = ""

  ARRAYS = ("images", "labels")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])


def prepare(raw: RawData, data_cfg) -> ImageData:
  """RawData -> ImageData: pixels resized to data.image_size, the per-class subset, and
  val held out of train by data.split_seed (`dataset.validation_split`, the text rule)."""
  size = int(data_cfg.get("image_size", 0) or 0)
  where = f"data.source={data_cfg.source!r}"
  crop = float(data_cfg.get("stream_crop_min_scale", 1.0))
  if crop < 1:
    raise ValueError(f"data.stream_crop_min_scale={crop:g} crops each file on the host: "
                     "it needs a streamed run (data.stream=always, for image_folder or "
                     "tfds: image sets); resident images are kept at data.image_size "
                     "(data.augment.resized_crop_min_scale crops those on the device)")
  if raw.train.files is not None:
    train_x, test_x = decode_cached(raw, size, cache.Cache(data_cfg.cache_dir), where)
  else:
    train_x = stack(raw.train.images, size, f"{where} (train split)")
    test_x = stack(raw.test.images, size, f"{where} (test split)", train_x.shape[-1])
  if test_x.shape[1:] != train_x.shape[1:]:
    raise ValueError(f"{where}: test images are {test_x.shape[1:]}, training images "
                     f"{train_x.shape[1:]}; set data.image_size")
  train = ImageSplit(train_x, raw.train.labels)
  keep, held = split_indices(train.labels, data_cfg)
  return ImageData(train=train.take(keep), val=train.take(held),
                   test=ImageSplit(test_x, raw.test.labels),
                   class_names=list(raw.class_names), description=raw.description)


def split_indices(labels: np.ndarray, data_cfg) -> tuple[np.ndarray, np.ndarray]:
  """(train, val) indices into a source's training examples: the per-class subset
  (data.train_per_class), then the validation hold-out of it. Labels only: the resident
  and the streamed path (stream.py) hold the same examples under the same indices."""
  index = np.arange(len(labels))
  per_class = int(data_cfg.get("train_per_class", 0) or 0)
  if per_class:
    index = subset_per_class(labels, per_class, data_cfg.split_seed)
  keep, held = dataset.validation_split(labels[index], data_cfg)
  return index[keep], index[held]


def subset_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Sorted indices of at most `per_class` examples of each class (seeded draw)."""
  rng = np.random.default_rng([seed, _SUBSET_STREAM])
  keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
          for c in np.unique(labels)]
  return np.sort(np.concatenate(keep))


def resize(image: np.ndarray, size: int, width: int = 0) -> np.ndarray:
  """uint8 [H, W, C] -> [size, width or size, C], bilinear with antialiasing (PIL)."""
  width = width or size
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  return np.asarray(pil.resize((width, size), Image.BILINEAR)).reshape(size, width, -1)


def to_channels(image: np.ndarray, channels: int, where: str) -> np.ndarray:
  """uint8 [H, W, C] -> [H, W, channels]: a greyscale image in a colour set becomes RGB,
  its value in every channel (PIL's convert('RGB'); ImageNet's training set holds
  greyscale JPEGs among its colour ones). A colour image in a greyscale set is an error.
  The set's channels are its first training image's (both paths: stack, stream.fit)."""
  if image.shape[-1] == channels:
    return image
  if image.shape[-1] == 1 and channels == 3:
    return np.repeat(image, 3, axis=-1)
  raise ValueError(f"{where}: an image with {image.shape[-1]} channels in a set of "
                   f"{channels}-channel images (the first training image's); convert the "
                   "images to one mode (greyscale or RGB)")


def stack(images: np.ndarray | Sequence[np.ndarray], size: int, where: str,
          channels: int = 0) -> np.ndarray:
  """Images (an array [N, H, W, C] or arrays [H, W] / [H, W, C]) -> uint8 [N, H, W, C],
  each resized to size x size when size > 0 and it is not that size already, with
  `channels` channels (0: the first image's; to_channels)."""
  if isinstance(images, np.ndarray) and images.ndim == 4 and (
      not size or images.shape[1:3] == (size, size)) and (
          not channels or images.shape[-1] == channels):
    return images.astype(np.uint8, copy=False)
  images = [a[..., None] if a.ndim == 2 else a for a in images]
  if images:
    channels = channels or images[0].shape[-1]
    images = [to_channels(a, channels, where) for a in images]
  if size:
    images = [resize(a, size) if a.shape[:2] != (size, size) else a for a in images]
  shapes = {a.shape for a in images}
  if len(shapes) > 1:
    raise ValueError(f"{where}: images have different shapes "
                     f"({', '.join(map(str, sorted(shapes)[:4]))}); set data.image_size "
                     "to resize them to one square size")
  return np.stack(images).astype(np.uint8, copy=False)


def decode(path: Path) -> np.ndarray:
  """An image file -> uint8 [H, W, C]: greyscale stays 1 channel (8-bit; with alpha,
  the alpha dropped; 16-bit, scaled to 8 bits), others become RGB (alpha dropped, as
  torchvision's loader does). PIL's own convert clips 16-bit values to 255."""
  with Image.open(path) as im:
    if im.mode.startswith("I"):  # I;16, I;16B, I: 16-bit greyscale (PNG, TIFF)
      wide = np.asarray(im).astype(np.int64)
      a = ((np.clip(wide, 0, 65535) + 128) // 257).astype(np.uint8)
    else:
      if im.mode == "LA":
        im = im.convert("L")
      elif im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
      a = np.asarray(im)
  return a[..., None] if a.ndim == 2 else a


def decode_cached(raw: RawData, size: int, store: cache.Cache,
                  where: str) -> tuple[np.ndarray, np.ndarray]:
  """(train, test) pixels of a RawData of image files: decoded, resized, cached."""
  key = cache.key(raw.description, {"pipeline": "images", "version": DECODE_VERSION,
                                    "image_size": size})
  hit = store.load(key)
  if hit is not None:
    arrays, _ = hit
  else:  # reading 60k small files to hash them is cheap, decoding them is not
    arrays = {"train": stack([decode(p) for p in raw.train.files], size,
                             f"{where} (train split)")}
    arrays["test"] = stack([decode(p) for p in raw.test.files], size,
                           f"{where} (test split)", arrays["train"].shape[-1])
    store.save(key, arrays, {"description": raw.description, "image_size": size,
                             "sizes": {n: len(a) for n, a in arrays.items()}})
  return arrays["train"], arrays["test"]

