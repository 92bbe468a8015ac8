"""Classification sets from tensorflow-datasets, text or images: `data.source='tfds:NAME'`
-> RawData.

NAME is anything `tfds.builder` accepts: a dataset, optionally with a config and a version
(`glue/sst2`, `imdb_reviews/plain_text:1.0.0`). The loader is TFDS's own code path:

  builder = tfds.builder(NAME, data_dir=data.tfds_data_dir)
  builder.download_and_prepare(download_dir=data.download_dir, file_format='array_record')
  builder.as_data_source(split)     # reads the ArrayRecord files without TensorFlow

(a dataset already prepared in another file format is read with `as_dataset` +
`tfds.as_numpy`). Preparation, its offline fast-fail and the seeding command are
tfds_prepare.py's. tensorflow_datasets is imported only when a `tfds:` source is used
(sources.read); preparing most datasets imports TensorFlow (tensorflow-cpu), reading
does not.

Text sets. Built-in datasets and their defaults (any key can be overridden in the config):

  NAME            data.text_feature    data.label_feature  train_split  test_split
  trec            text                 label-coarse (6)    train        test
  imdb_reviews    text                 label (neg, pos)    train        test
  ag_news_subset  title,description    label (4)           train        test
  glue/sst2       sentence             label (neg, pos)    train        validation

- trec: `data.trec_fine=true` selects 'label-fine' instead: TFDS stores the fine label
  without its coarse prefix, so e.g. ENTY:other / LOC:other / NUM:other share one class
  'other': 47 fine classes, not the 50 of the original TREC-50 (47 occur in train).
- imdb_reviews: the 'unsupervised' split (label -1) is never read by default.
- ag_news_subset: the builder has 'title' and 'description' Text features (its
  supervised_keys use 'description' only). Like the original AG News benchmark (Zhang et
  al. 2015) the default joins title and description; `data.text_feature=description`
  gives TFDS's supervised view.
- glue/sst2: TFDS's test labels are all -1 (hidden), so the validation split (872
  sentences) serves as test.

Any other TFDS text classification set works given `data.text_feature` (one Text feature,
or several joined with a space, comma-separated), `data.label_feature` (a ClassLabel) and
`data.train_split` / `data.test_split` (TFDS split strings: 'train', 'validation',
'train[:90%]', 'train+validation', ...); empty keys take the built-in default. Class names
are the ClassLabel's names in the ClassLabel's order. A label outside [0, num_classes) (a
hidden test label, -1) is an error naming the split.

Image sets (catalog.is_image_source: a built-in image set such as tfds:cifar10, or
`data.image_feature` set): `data.image_feature` (an Image feature, default 'image'),
`data.label_feature` (a ClassLabel, default 'label'; tfds:cifar100's 'coarse_label' gives
its 20 superclasses), `data.train_split` / `data.test_split` (default train / test). The
pixels are returned as stored; the image pipeline resizes them (data.image_size).

Streaming (data.stream, stream.py): `load` decides from the splits' sizes and the first
training image (stream.wanted, the rule stream.chosen applies). A set that stays
resident is read in one pass and described by the sha256 of its pixels, as text is. A
set that streams is not read: its splits are SplitImages (raw.StoredImages), records of
the ArrayRecord files read by index when an image is needed (in grain's worker processes
too); only the labels are read, with the images left encoded (once: data.cache_dir
keeps them under the records' identity and modification times). Its description names
the prepared records (records_identity) and the labels instead of hashing the pixels. A
set prepared in a format without random access is read by as_dataset and cannot stream
(data.stream=always on it: a one-line error; auto: resident).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
import threading
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jaxreg.data import cache, catalog, stream, tfds_prepare
from jaxreg.data.raw import RawData, RawSplit, StoredImages
from jaxreg.data.tfds_prepare import one_line


@dataclasses.dataclass(frozen=True)
class Defaults:
  feature: str  # the Text feature(s), comma-separated, or the Image feature
  label_feature: str
  train_split: str = "train"
  test_split: str = "test"


BUILTINS = {
    "trec": Defaults("text", "label-coarse"),
    "imdb_reviews": Defaults("text", "label"),
    "ag_news_subset": Defaults("title,description", "label"),
    "glue/sst2": Defaults("sentence", "label", test_split="validation"),
}
IMAGE_DEFAULTS = Defaults("image", "label")
TREC_FINE_LABEL = "label-fine"


def builtin_defaults(name: str) -> Defaults | None:
  """Defaults for a built-in NAME ('imdb_reviews/plain_text:1.0.0' -> imdb_reviews's)."""
  bare = name.split(":")[0].strip("/")
  if bare in BUILTINS:
    return BUILTINS[bare]
  return BUILTINS.get(bare.split("/")[0])


def _cfg(data_cfg, key, default=None):
  value = data_cfg.get(key, default) if hasattr(data_cfg, "get") else getattr(
      data_cfg, key, default)
  return default if value is None else value


@dataclasses.dataclass(frozen=True)
class Spec:
  """What to read: resolved from the config and the built-in defaults."""
  name: str
  features: tuple[str, ...]  # the Text features (joined by a space), or one Image feature
  label_feature: str
  train_split: str
  test_split: str
  data_dir: str | None
  download_dir: str | None
  files_dir: str | None  # local copies of the registered downloads (data.trec_files)
  images: bool = False

  @property
  def feature_key(self) -> str:
    return "data.image_feature" if self.images else "data.text_feature"


def resolve(data_cfg, images: bool = False) -> Spec:
  """config.data -> Spec; unknown-for-this-dataset options raise a one-line ValueError.
  (data.trec_fine and data.trec_files only with tfds:trec: the config schema.)"""
  name = catalog.tfds_name(data_cfg.source)
  defaults = IMAGE_DEFAULTS if images else builtin_defaults(name)
  trec_fine = bool(_cfg(data_cfg, "trec_fine", False))
  trec_files = str(_cfg(data_cfg, "trec_files", "")) or None

  def pick(key: str, builtin: str | None) -> str:
    value = str(_cfg(data_cfg, key, "")).strip()
    if value:
      return value
    if builtin is None:
      raise ValueError(
          f"data.{key} is required for data.source={data_cfg.source!r} (built-in "
          f"defaults exist only for: {', '.join('tfds:' + n for n in BUILTINS)})")
    return builtin

  label_default = None if defaults is None else (
      TREC_FINE_LABEL if trec_fine else defaults.label_feature)
  feature_key = "image_feature" if images else "text_feature"
  feature = pick(feature_key, None if defaults is None else defaults.feature)
  features = tuple(t.strip() for t in feature.split(",") if t.strip())
  if not features or (images and len(features) > 1):
    raise ValueError(f"data.{feature_key}={feature!r} names no feature" if not features
                     else f"data.image_feature={feature!r} must name one Image feature")
  return Spec(
      name=name,
      features=features,
      label_feature=pick("label_feature", label_default),
      train_split=pick("train_split", None if defaults is None else defaults.train_split),
      test_split=pick("test_split", None if defaults is None else defaults.test_split),
      data_dir=str(_cfg(data_cfg, "tfds_data_dir", "")) or None,
      download_dir=str(_cfg(data_cfg, "download_dir", "")) or None,
      files_dir=trec_files,
      images=images,
  )


# ----------------------------------------------------------------------------- reading


def _is_text(feature) -> bool:
  # np_dtype, not dtype: the latter is a tf.DType and would import TensorFlow.
  return isinstance(feature, tfds.features.Text) or (
      isinstance(feature, tfds.features.Tensor) and feature.np_dtype == np.dtype(object))


def check_features(builder, spec: Spec) -> list[str]:
  """Validates feature names and types; returns the class names (ClassLabel order)."""
  features = builder.info.features
  available = sorted(features.keys()) if hasattr(features, "keys") else []
  shown = ", ".join(available)
  for key, names in ((spec.feature_key, spec.features),
                     ("data.label_feature", (spec.label_feature,))):
    for n in names:
      if n not in available:
        raise ValueError(f"{key}={n!r} is not a feature of tfds:{spec.name}; "
                         f"available: {shown}")
  for n in spec.features:
    f = features[n]
    if spec.images and not isinstance(f, tfds.features.Image):
      images = [k for k in available if isinstance(features[k], tfds.features.Image)]
      raise ValueError(f"data.image_feature={n!r} of tfds:{spec.name} is a "
                       f"{type(f).__name__}, not an Image; Image features: "
                       f"{', '.join(images) or 'none'}")
    if not spec.images and not _is_text(f):
      raise ValueError(f"data.text_feature={n!r} of tfds:{spec.name} is a "
                       f"{type(f).__name__}, not a Text feature; available: {shown}")
  label = features[spec.label_feature]
  if not isinstance(label, tfds.features.ClassLabel):
    class_labels = [k for k in available
                    if isinstance(features[k], tfds.features.ClassLabel)]
    raise ValueError(f"data.label_feature={spec.label_feature!r} of tfds:{spec.name} is "
                     f"a {type(label).__name__}, not a ClassLabel; ClassLabel features: "
                     f"{', '.join(class_labels) or 'none'}")
  return list(label.names)


def check_split(builder, spec: Spec, key: str, split: str) -> None:
  """Split names must exist (checked when TFDS knows the splits)."""
  known = list(builder.info.splits.keys()) if builder.info.splits else []
  if not known:
    return  # not known before preparation (or mocked): TFDS itself checks
  for base in base_splits(split):
    if base not in known:
      raise ValueError(f"data.{key}={split!r}: tfds:{spec.name} has no split {base!r}; "
                       f"available: {', '.join(sorted(known))}")


def base_splits(split: str) -> list[str]:
  """The named splits of a TFDS split string ('train[:90%]+extra' -> train, extra)."""
  return [re.split(r"[\[(]", part.strip(), maxsplit=1)[0].strip()
          for part in split.split("+")]


def _decode(value: Any) -> str:
  if isinstance(value, np.ndarray):
    value = value.item()
  if isinstance(value, bytes):
    return value.decode("utf-8")
  return str(value)


def _data_source(builder, split: str):
  """The split's ArrayRecord data source; None for a set prepared earlier in a format
  without random access (read with as_dataset instead)."""
  try:
    return builder.as_data_source(split=split)
  except NotImplementedError:
    return None


def _examples(builder, split: str, source):
  """The split's examples: from the data source, else as_dataset."""
  if source is None:
    return tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))
  # One record at a time: about as fast as __getitems__ here (decoding dominates),
  # and tfds.testing.mock_data's __getitems__ is broken in 4.9.10.
  return (source[i] for i in range(len(source)))


def read_split(builder, spec: Spec, split: str, source=None) -> tuple[list, np.ndarray]:
  """(texts or images, labels) of one split, every example read (in one pass)."""
  examples, labels = [], []
  for ex in _examples(builder, split, source):
    if spec.images:
      examples.append(np.asarray(ex[spec.features[0]]))
    else:
      examples.append(" ".join(_decode(ex[f]) for f in spec.features))
    labels.append(int(np.asarray(ex[spec.label_feature])))
  return examples, np.asarray(labels, np.int64)


def read_stored(builder, spec: Spec, split: str, source,
                store: cache.Cache | None = None) -> tuple[SplitImages, np.ndarray]:
  """A split's labels and its images as SplitImages. The labels are read with the
  images left encoded (SkipDecoding: 95 against 214 us an example for 32x32 PNGs, the
  rest is reading and parsing the records; a PartialDecoding of the label alone is
  refused by TFDS's numpy reader), once: `store` (data.cache_dir) keeps them under the
  records' identity and their files' modification times, which a new preparation
  changes (a pass over every record at each start is what ImageNet-sized sets can least
  afford)."""
  feature = spec.features[0]
  identity = records_identity(builder, split)
  mtimes = _modification_times(builder, split)
  key = cache.key(f"tfds:{builder.info.full_name} {split}", {
      "pipeline": "tfds_labels", "label_feature": spec.label_feature,
      "records": identity, "mtimes": mtimes})
  hit = store.load(key) if store is not None and identity != UNKNOWN else None
  if hit is not None:
    labels = hit[0]["labels"]
  else:
    encoded = builder.as_data_source(split=split,
                                     decoders={feature: tfds.decode.SkipDecoding()})
    labels = np.asarray([int(np.asarray(encoded[i][spec.label_feature]))
                         for i in range(len(encoded))], np.int64)
    if store is not None and identity != UNKNOWN:
      store.save(key, {"labels": labels}, {"description": f"tfds:{spec.name} {split}",
                                           "label_feature": spec.label_feature})
  images = SplitImages(str(builder.data_dir), split, feature,
                       np.arange(len(labels)), source, stamp=" ".join(map(str, mtimes)))
  return images, labels


class SplitImages(StoredImages):
  """A TFDS split's images, decoded from its ArrayRecord records when read
  (builder.as_data_source: the records of `positions`, in that order).

  Pickled (to grain's worker processes) as the prepared folder, split, feature and
  positions: TFDS's data source pickles with a reference to the builder's class, which a
  spawned worker cannot import when the builder was defined in a script (measured:
  ModuleNotFoundError), so a worker reopens the folder with tfds.builder_from_directory,
  which reads the features from the folder itself."""

  def __init__(self, directory: str, split: str, feature: str, positions: np.ndarray,
               source=None, stamp: str = ""):
    self.directory, self.split, self.feature = directory, split, feature
    self.stamp = stamp  # the files' modification times (cache_key)
    self.positions = np.asarray(positions, np.int64)
    self._source = source
    self._lock = threading.Lock()  # grain's threads read at once

  def _records(self):
    if self._source is None:
      with self._lock:
        if self._source is None:
          with tfds_prepare.QuietTfds():
            self._source = tfds.builder_from_directory(self.directory).as_data_source(
                split=self.split)
    return self._source

  def __getstate__(self) -> dict:
    return {"directory": self.directory, "split": self.split, "feature": self.feature,
            "positions": self.positions, "stamp": self.stamp}

  def __setstate__(self, state: dict) -> None:
    self.__init__(**state)

  def __len__(self) -> int:
    return len(self.positions)

  def __getitem__(self, i: int) -> np.ndarray:
    return np.asarray(self._records()[int(self.positions[i])][self.feature])

  def take(self, index: np.ndarray) -> SplitImages:
    return SplitImages(self.directory, self.split, self.feature, self.positions[index],
                       self._source, self.stamp)

  @property
  def key(self) -> str:
    return f"{self.split} {hashlib.sha256(self.positions.tobytes()).hexdigest()}"

  @property
  def cache_key(self) -> str:
    # A preparation redone in place may keep every recorded size (key and the
    # description stay); its files' times do not.
    return f"{self.key} {self.stamp}"

  def where(self, i: int) -> str:
    return f"{self.directory} {self.split} example {int(self.positions[i])}"


UNKNOWN = "unknown"


def records_identity(builder, split: str) -> str:
  """What identifies a split's prepared records without reading them: the bytes TFDS
  recorded for each named split (dataset_info.json's numBytes: the sum of its
  serialized examples' lengths) and each ArrayRecord file's name, size on disk and the
  records taken from it. TFDS records no checksum of the files it generates (only of
  its downloads), and the files' sizes alone are coarse: ArrayRecord pads them to
  64 KiB blocks (measured: a preparation with other pixels kept every size)."""
  try:
    instructions = builder.info.splits[split].file_instructions
    recorded = [f"{b} {int(builder.info.splits[b].num_bytes)}"
                for b in base_splits(split)]
  except (KeyError, ValueError, TypeError):
    return UNKNOWN  # split infos absent (tfds.testing.mock_data)
  parts = []
  for fi in instructions:
    path = tfds.core.Path(fi.filename)
    size = path.stat().length if path.exists() else -1
    parts.append(f"{path.name} {size} {fi.skip} {fi.take}")
  return "\n".join(recorded + parts)


def _modification_times(builder, split: str) -> list[int]:
  """Each of the split's files' modification time: ns on a local disk, else what the
  file system reports (etils.epath; s on GCS)."""
  try:
    names = [fi.filename for fi in builder.info.splits[split].file_instructions]
  except (KeyError, ValueError, TypeError):
    return []
  return [os.stat(f).st_mtime_ns if os.path.exists(f) else
          int(tfds.core.Path(f).stat().mtime) for f in names]


def not_streamable(builder, spec: Spec) -> str:
  """The data.stream=always error for a set prepared without random access."""
  fmt = builder.info.file_format
  return (f"data.stream=always: tfds:{spec.name} is prepared as "
          f"{getattr(fmt, 'value', fmt)} in {builder.data_dir}, which cannot be read by "
          "index; set data.tfds_data_dir to an empty folder (a run prepares the set "
          "there with file_format=array_record) or data.stream=auto")


def _hash(h, examples: list, labels: np.ndarray) -> None:
  for x in examples:
    if isinstance(x, str):
      h.update(x.encode("utf-8", "surrogatepass"))
      h.update(b"\0")
    else:
      h.update(str(x.shape).encode())
      h.update(x.tobytes())
  h.update(labels.astype("<i8").tobytes())


def load(data_cfg, images: bool = False) -> RawData:
  """config.data (source 'tfds:NAME') -> RawData (train and test, ClassLabel order):
  texts, or images as stored (one array per example)."""
  with tfds_prepare.QuietTfds():
    data_dir = str(_cfg(data_cfg, "tfds_data_dir", "")) or None
    builder = tfds_prepare.make_builder(catalog.tfds_name(data_cfg.source), data_dir)  # names first
    spec = resolve(data_cfg, images)
    class_names = check_features(builder, spec)
    tfds_prepare.ensure_prepared(builder, spec.name, spec.download_dir, spec.files_dir)
    check_split(builder, spec, "train_split", spec.train_split)
    check_split(builder, spec, "test_split", spec.test_split)
    named = {"train_split": spec.train_split, "test_split": spec.test_split}
    sources = {}
    for key, split in named.items():
      try:
        sources[key] = _data_source(builder, split)
      except (ValueError, KeyError) as e:
        raise ValueError(f"data.{key}={split!r} of tfds:{spec.name}: {one_line(e)}") \
            from None
      if sources[key] is not None and not len(sources[key]):
        raise ValueError(f"data.{key}={split!r} of tfds:{spec.name} is empty")
    # Decided here, before reading (stream.chosen decides the same from the RawData):
    # a resident set is read in one pass, a streamed one leaves its images stored.
    lazy = images and stream.wanted(
        data_cfg, None not in sources.values(),
        sum(len(s) for s in sources.values() if s is not None),
        lambda: np.asarray(sources["train_split"][0][spec.features[0]]),
        not_streamable(builder, spec))
    splits, h = {}, hashlib.sha256()
    store = cache.Cache(_cfg(data_cfg, "cache_dir", "")) if lazy else None
    for key, split in named.items():
      try:
        examples, labels = read_stored(builder, spec, split, sources[key], store) if \
            lazy else read_split(builder, spec, split, sources[key])
      except (ValueError, KeyError) as e:
        raise ValueError(f"data.{key}={split!r} of tfds:{spec.name}: {one_line(e)}") \
            from None
      if not examples:
        raise ValueError(f"data.{key}={split!r} of tfds:{spec.name} is empty")
      bad = np.flatnonzero((labels < 0) | (labels >= len(class_names)))
      if bad.size:
        hint = " (hidden labels: use a labelled split, e.g. validation, as test)" if (
            labels[bad[0]] == -1) else ""
        raise ValueError(
            f"data.{key}={split!r} of tfds:{spec.name} has {bad.size} examples with "
            f"label {int(labels[bad[0]])} outside [0, {len(class_names)}) in "
            f"{spec.label_feature!r}{hint}")
      if lazy:  # not the pixels: they stay in the files
        h.update(records_identity(builder, split).encode())
        h.update(labels.astype("<i8").tobytes())
      else:
        _hash(h, examples, labels)
      form = "images" if images else "texts"
      splits[key] = RawSplit(labels, **{form: examples})
  train, test = splits["train_split"], splits["test_split"]
  kind = "image" if images else "text"
  description = (
      f"tfds:{builder.info.full_name} {kind}={'+'.join(spec.features)} "
      f"label={spec.label_feature} train={spec.train_split} ({len(train)}) "
      f"test={spec.test_split} ({len(test)}) "
      f"{'records' if lazy else 'content'}_sha256={h.hexdigest()}")
  return RawData(train, test, class_names, description)


if __name__ == "__main__":  # the old name of python -m jaxreg.data.tfds_prepare
  sys.exit(tfds_prepare.main(prog="python -m jaxreg.data.tfds_source"))
