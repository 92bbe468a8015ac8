"""Image classification data: uint8 arrays [N, H, W, C] with train / val / test splits.

`data.source` picks the reader:

- `shapes`: the built-in generated set (jaxreg/data/shapes.py): colour and shape classes.
- `image_folder`: `data.root/<split>/<class>/*.{png,jpg,jpeg}` (torchvision's ImageFolder
  layout per split; ../shared/data/cifar10_jpeg's tar unpacks to it). Classes are
  `data.classes` or the sorted subdirectories of ROOT/train; without ROOT/test,
  `data.test_fraction` of each class is held out as test. Decoded arrays are cached as
  .npy under `data.cache_dir`, keyed by the sha256 of every file's path and bytes (and
  data.image_size): a changed file decodes again, an unchanged folder loads in seconds.
- `tfds:NAME`: a TFDS image classification set: `data.image_feature` (an Image feature,
  default 'image' for the built-in image sets, see config.TFDS_IMAGE_BUILTINS) and
  `data.label_feature` (a ClassLabel, default 'label'); splits as for text
  (`data.train_split`/`data.test_split`, default train/test). Preparation, offline
  seeding and split checks are jaxreg/data/tfds_source.py's.

Then, for every source: `data.image_size` > 0 resizes (bilinear, PIL) to a square,
`data.train_per_class` > 0 keeps that many training images per class (drawn from
data.split_seed), and val is held out of train by `dataset.validation_split`, the text
sources' rule: `data.val_fraction` of each class, or with `data.folds` >= 2 the
`data.fold`-th of that many stratified folds (by data.split_seed alone).
Images must all have one shape and 1 or 3 channels (greyscale stays 1 channel).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from jaxreg.data import shapes
from jaxreg.data.dataset import (fingerprint, split_of, stratified_split,
                                 validation_split)

EXTENSIONS = (".png", ".jpg", ".jpeg")
# Streams of data.split_seed other than the validation hold-out's (seed itself).
_TEST_STREAM, _SUBSET_STREAM = 1, 2


@dataclasses.dataclass(frozen=True)
class ImageSplit:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index: np.ndarray) -> ImageSplit:
    return ImageSplit(self.images[index], self.labels[index])


@dataclasses.dataclass(frozen=True)
class ImageData:
  train: ImageSplit
  val: ImageSplit
  test: ImageSplit
  class_names: list[str]
  description: str = ""
  ARRAYS = ("images", "labels")  # what fingerprint() hashes of each split

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])

  def split(self, name: str) -> ImageSplit:
    return split_of(self, name)

  def fingerprint(self) -> str:
    """sha256 over every array and class name: two runs saw the same data iff equal."""
    return fingerprint(self, self.class_names)


def load(data_cfg) -> ImageData:
  """config.data -> ImageData (val held out of train by data.split_seed: a fraction
  or a fold, `dataset.validation_split`)."""
  source = data_cfg.source
  if source == "shapes":
    s = data_cfg.shapes
    train_x, train_y, test_x, test_y, names = shapes.generate(
        s.train_size, s.test_per_class, s.image_size, s.generator_seed)
    description = f"shapes {json.dumps(s.to_dict(), sort_keys=True)}"
  elif source == "image_folder":
    train_x, train_y, test_x, test_y, names, description = load_folder(data_cfg)
  elif source.startswith("tfds:"):
    from jaxreg.data import tfds_images  # tensorflow_datasets only when asked for
    train_x, train_y, test_x, test_y, names, description = tfds_images.load(data_cfg)
  else:
    raise ValueError(f"data.source={source!r} is not an image source (shapes, "
                     "image_folder, tfds:NAME)")
  size = int(data_cfg.get("image_size", 0) or 0)
  if size and train_x.shape[1:3] != (size, size):
    train_x, test_x = resize(train_x, size), resize(test_x, size)
  train = ImageSplit(train_x, np.asarray(train_y, np.int32))
  per_class = int(data_cfg.get("train_per_class", 0) or 0)
  if per_class:
    train = train.take(subset_per_class(train.labels, per_class, data_cfg.split_seed))
  keep, held = validation_split(train.labels, data_cfg)  # the text sources' rule
  return ImageData(train=train.take(keep), val=train.take(held),
                   test=ImageSplit(test_x, np.asarray(test_y, np.int32)),
                   class_names=list(names), description=description)


def subset_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Sorted indices of at most `per_class` examples of each class (seeded draw)."""
  rng = np.random.default_rng([seed, _SUBSET_STREAM])
  keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
          for c in np.unique(labels)]
  return np.sort(np.concatenate(keep))


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """uint8 [N, H, W, C] -> [N, size, size, C], bilinear with antialiasing (PIL)."""
  from PIL import Image
  out = np.empty((len(images), size, size, images.shape[-1]), np.uint8)
  for i, im in enumerate(images):
    pil = Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im)
    out[i] = np.asarray(pil.resize((size, size), Image.BILINEAR)).reshape(
        size, size, -1)
  return out


# ------------------------------------------------------------------------ image folder


def _class_files(split_dir: Path, class_names: list[str]) -> list[tuple[Path, int]]:
  files = []
  for i, name in enumerate(class_names):
    d = split_dir / name
    if not d.is_dir():
      continue
    files += [(p, i) for p in sorted(d.iterdir(), key=lambda p: p.name)
              if p.is_file() and p.suffix.lower() in EXTENSIONS]
  return files


def _decode(paths: list[Path], where: Path) -> np.ndarray:
  from PIL import Image
  arrays = []
  for p in paths:
    with Image.open(p) as im:
      if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
      a = np.asarray(im)
    arrays.append(a[..., None] if a.ndim == 2 else a)
  shapes_seen = {a.shape for a in arrays}
  if len(shapes_seen) > 1:
    raise ValueError(f"{where}: images have different shapes "
                     f"({', '.join(map(str, sorted(shapes_seen)[:4]))}); set "
                     "data.image_size to resize them to one square size")
  return np.stack(arrays)


def load_folder(c):
  """data.root/<split>/<class>/*.{png,jpg} -> (train_x, train_y, test_x, test_y, names,
  description); decoded arrays cached under data.cache_dir by content hash."""
  root = Path(os.path.expanduser(c.root)).resolve()
  train_dir, test_dir = root / "train", root / "test"
  if not train_dir.is_dir():
    raise FileNotFoundError(f"{train_dir}: no such directory (data.source=image_folder "
                            "reads ROOT/train/<class>/*.png|jpg)")
  listed = [n.strip() for n in str(c.classes).split(",") if n.strip()]
  class_names = listed or sorted(
      d.name for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
  if not class_names:
    raise ValueError(f"{train_dir}: no class subdirectories")
  train_files = _class_files(train_dir, class_names)
  test_files = _class_files(test_dir, class_names) if test_dir.is_dir() else []
  for i, name in enumerate(class_names):
    if not any(label == i for _, label in train_files):
      raise ValueError(f"{train_dir / name}: no .png/.jpg files (class {name!r} has no "
                       "training image)")
  if test_dir.is_dir() and not test_files:
    raise ValueError(f"{test_dir}: no .png/.jpg files in the class directories")
  if not test_dir.is_dir() and not c.test_fraction:
    raise FileNotFoundError(f"{test_dir}: no such directory; add it or set "
                            "data.test_fraction")

  # The cache key covers every file's path and bytes: reading 60k small files is cheap,
  # decoding them is not (CIFAR-10 JPEG: ~20 s here).
  digest = hashlib.sha256()
  for p, label in train_files + test_files:
    rel = p.relative_to(root).as_posix().encode()
    digest.update(len(rel).to_bytes(8, "little") + rel + label.to_bytes(4, "little"))
    digest.update(hashlib.sha256(p.read_bytes()).digest())
  key = digest.hexdigest()
  description = json.dumps({"source": "image_folder", "root": str(root),
                            "classes": class_names, "content_sha256": key}, sort_keys=True)
  cache = Path(os.path.expanduser(c.cache_dir)) / f"images-{key[:32]}" if c.cache_dir \
      else None
  if cache is not None and (cache / "done").exists():
    arrays = {n: np.load(cache / f"{n}.npy") for n in ("train_x", "train_y", "test_x",
                                                        "test_y")}
  else:
    arrays = {
        "train_x": _decode([p for p, _ in train_files], train_dir),
        "train_y": np.array([y for _, y in train_files], np.int32),
        "test_x": _decode([p for p, _ in test_files], test_dir) if test_files else None,
        "test_y": np.array([y for _, y in test_files], np.int32),
    }
    if test_files and arrays["test_x"].shape[1:] != arrays["train_x"].shape[1:]:
      raise ValueError(f"{root}: test images are {arrays['test_x'].shape[1:]}, train "
                       f"images {arrays['train_x'].shape[1:]}; set data.image_size")
    if cache is not None and test_files:
      cache.mkdir(parents=True, exist_ok=True)
      for n, a in arrays.items():
        np.save(cache / f"{n}.npy", a)
      (cache / "done").write_text(description + "\n")  # written last: complete cache
  train_x, train_y = arrays["train_x"], arrays["train_y"]
  if arrays["test_x"] is not None:
    test_x, test_y = arrays["test_x"], arrays["test_y"]
  else:  # no test/ folder: hold out test_fraction of each class (its own seed stream)
    rng_seed = int(np.random.default_rng([c.split_seed, _TEST_STREAM]).integers(2**31))
    keep, held = stratified_split(train_y, c.test_fraction, rng_seed)
    train_x, train_y, test_x, test_y = (train_x[keep], train_y[keep], train_x[held],
                                        train_y[held])
  return train_x, train_y, test_x, test_y, class_names, description
