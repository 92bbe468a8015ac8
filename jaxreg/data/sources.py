"""`config.data` -> a prepared dataset with train / val / test splits.

`read` runs the source's reader, which returns RawData (raw.py); `load` sends it through
the pipeline of its modality (catalog.is_image_source): text.prepare -> TextData, or
images.prepare -> ImageData (or, for image folders and tfds: image sets larger than
data.resident_limit_mb, stream.prepare -> StreamedImageData: the same splits left in
storage). Both hold out val by
`dataset.validation_split`. The built-in synthetic set is generated as token ids (TextData directly).
"""

from __future__ import annotations

from jaxreg import extras
from jaxreg.data import catalog, files, folders, images, shapes, stream, synthetic, text
from jaxreg.data.dataset import TextData, validation_split
from jaxreg.data.raw import RawData


def load(data_cfg, vocab=None) -> TextData | images.ImageData | stream.StreamedImageData:
  """`vocab`: a word-level vocabulary to encode text with (text.prepare); the built-in
  synthetic set and image sources ignore it."""
  if data_cfg.source == "synthetic":
    return load_synthetic(data_cfg)
  raw = read(data_cfg)
  if is_image(data_cfg):
    if stream.chosen(raw, data_cfg):  # larger than data.resident_limit_mb, or asked
      return stream.prepare(raw, data_cfg)
    return images.prepare(raw, data_cfg)
  return text.prepare(raw, data_cfg, vocab)


def is_image(data_cfg) -> bool:
  return catalog.is_image_source(data_cfg.source, data_cfg.get("image_feature", ""))


def read(data_cfg) -> RawData:
  """The source's RawData (texts, images or files; train and test)."""
  source = data_cfg.source
  if source == "shapes":
    s = data_cfg.shapes
    return shapes.generate(s.train_size, s.test_per_class, s.image_size,
                           s.generator_seed, s.labels)
  if source in catalog.FILE_SOURCES:
    return files.load(data_cfg)
  if source in catalog.FOLDER_SOURCES:
    return folders.read(data_cfg)
  if source.startswith(catalog.TFDS_PREFIX):
    # The `tfds` extra (TensorFlow): a lean install says so in one line, before any
    # file is written.
    extras.require("tfds", f"data.source={source!r}")
    # Imported here: tensorflow_datasets takes seconds to import, and only tfds: runs
    # need it (tests/test_tfds_source.py checks that other runs never import it).
    from jaxreg.data import tfds_source  # noqa: PLC0415
    return tfds_source.load(data_cfg, images=is_image(data_cfg))
  raise ValueError(f"data.source={source!r} is not one of: "
                   f"{', '.join(catalog.SOURCES)}, tfds:NAME")


def load_synthetic(data_cfg) -> TextData:
  s = data_cfg.synthetic
  train, test, class_names, vocab = synthetic.generate(
      train_size=s.train_size, test_per_class=s.test_per_class,
      rare_fraction=s.rare_fraction, seed=s.generator_seed,
      max_length=data_cfg.max_length)
  # The validation split depends on data.split_seed only, so runs that differ in
  # `seed` are compared on the same held-out examples.
  keep, held = validation_split(train.labels, data_cfg)
  return TextData(train=train.take(keep), val=train.take(held), test=test,
                  class_names=class_names, vocab=vocab)
