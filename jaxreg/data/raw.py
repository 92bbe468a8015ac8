"""The hand-off between a source and its pipeline: one raw-dataset type for every modality.

Every source (TFDS, local files, a folder, the generated image set) returns RawData: a
train and a test RawSplit, the class names in the source's documented order, and a
`description` that identifies the exact source content. A split holds its examples in
one of three forms:

- `texts`: strings (csv/tsv/jsonl files, TFDS text sets);
- `images`: decoded uint8 pixels, one array [N, H, W, C] or N arrays [H, W, C] whose
  sizes may differ (the image pipeline resizes them to data.image_size); or
  StoredImages, images decoded from storage only when read (a TFDS split's ArrayRecord
  files: tfds_source.SplitImages);
- `files`: the file behind each example, not read yet (folder sources).

With `files` or StoredImages a split describes a set larger than memory by its labels
and where its examples lie: such sets can stream (stream.py).

The text pipeline (jaxreg/data/text.py) turns RawData into TextData (token arrays), the
image pipeline (jaxreg/data/images.py) into ImageData (uint8 arrays); both read `files`
only when they need the content.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxreg.data.dataset import stratified_split

# The test hold-out of a source without a test split draws from this stream of
# data.split_seed (the validation hold-out uses the seed itself).
TEST_STREAM = 1


class StoredImages(Sequence):
  """Images left in storage: example i is decoded (uint8 [H, W, C], as stored) when
  read. Picklable, to grain's worker processes."""

  @abc.abstractmethod
  def __len__(self) -> int: ...

  @abc.abstractmethod
  def __getitem__(self, i: int) -> np.ndarray: ...

  @abc.abstractmethod
  def take(self, index: np.ndarray) -> StoredImages:
    """The examples at `index`, still in storage."""

  @property
  @abc.abstractmethod
  def key(self) -> str:
    """Names these examples and their order (with the source's description: what a
    cache key or a fingerprint needs, without reading the pixels)."""

  @property
  def cache_key(self) -> str:
    """`key`, plus whatever tells a rewrite of the same examples apart (what data
    derived from the pixels, stream.histogram, is cached under)."""
    return self.key

  def where(self, i: int) -> str:
    """Example i for an error message."""
    return f"example {i}"

  def __iter__(self):
    return (self[i] for i in range(len(self)))


@dataclasses.dataclass(frozen=True)
class RawSplit:
  labels: np.ndarray                                    # int32 [N], in [0, classes)
  texts: Sequence[str] | None = None
  images: np.ndarray | Sequence[np.ndarray] | None = None
  files: Sequence[Path] | None = None

  def __post_init__(self):
    forms = [f for f in ("texts", "images", "files") if getattr(self, f) is not None]
    if len(forms) != 1:
      raise ValueError(f"a RawSplit holds exactly one of texts, images, files; got "
                       f"{', '.join(forms) or 'none'}")
    object.__setattr__(self, "labels", np.asarray(self.labels, np.int32))
    if len(self.examples) != len(self.labels):
      raise ValueError(f"a RawSplit has {len(self.examples)} {forms[0]} and "
                       f"{len(self.labels)} labels")

  @property
  def examples(self):
    """The texts, images or files, whichever this split holds."""
    return next(v for v in (self.texts, self.images, self.files) if v is not None)

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index: np.ndarray) -> RawSplit:
    def pick(v):
      if isinstance(v, StoredImages):
        return v.take(index)
      if v is None or isinstance(v, np.ndarray):
        return None if v is None else v[index]
      return [v[i] for i in index]
    return RawSplit(self.labels[index], pick(self.texts), pick(self.images),
                    pick(self.files))


@dataclasses.dataclass(frozen=True)
class RawData:
  train: RawSplit
  test: RawSplit
  class_names: list[str]
  # Identifies the exact source content (name, paths, content hashes, split map); part
  # of the prepared-data cache key and of the run's provenance.
  description: str
  # A validation split given by the source (data.val_file), used instead of holding
  # data.val_fraction out of train; None: the pipeline holds it out.
  val: RawSplit | None = None


def names(spec: str) -> list[str]:
  """A comma-separated config value -> its items: 'a, b,c' -> ['a', 'b', 'c']."""
  return [s.strip() for s in str(spec).split(",") if s.strip()]


def hold_out_test(train: RawSplit, class_names: Sequence[str], fraction: float,
                  split_seed: int, where: str) -> tuple[RawSplit, RawSplit]:
  """(train, test): `fraction` of each class of `train` held out as test.

  The draw depends on data.split_seed alone (its TEST_STREAM), the same for every source
  without a test split; `where` names the source in the one-line errors.
  """
  fraction = float(fraction)
  if not 0 < fraction < 1:
    raise ValueError(f"data.test_fraction={fraction!r} must be in (0, 1)")
  keep, held = stratified_split(train.labels, fraction, [int(split_seed), TEST_STREAM])
  left = set(train.labels[keep].tolist())
  for i, n in enumerate(class_names):
    if i not in left:
      raise ValueError(f"{where}: data.test_fraction={fraction} leaves class {n!r} "
                       "with no training example")
  if not len(held):
    raise ValueError(f"{where}: data.test_fraction={fraction} holds out no example "
                     "(empty test split)")
  return train.take(keep), train.take(held)
