"""`config.data.source` -> TextData (or ImageData for image sources) with train / val /
test splits."""

from __future__ import annotations

from jaxreg.data import files, synthetic, text
from jaxreg.data.dataset import TextData, validation_split


def load(data_cfg) -> TextData:
  from jaxreg import config as config_lib
  if config_lib.is_image_source(data_cfg):
    from jaxreg.data import images  # same val rule: validation_split by split_seed
    return images.load(data_cfg)
  if data_cfg.source == "synthetic":
    s = data_cfg.synthetic
    train, test, class_names, vocab = synthetic.generate(
        train_size=s.train_size, test_per_class=s.test_per_class,
        rare_fraction=s.rare_fraction, seed=s.generator_seed,
        max_length=data_cfg.max_length)
  elif data_cfg.source in files.SOURCES:
    # Raw text: the text pipeline holds out val (same rule as below) before it builds
    # the vocabulary, then tokenizes and caches (jaxreg/data/text.py).
    return text.prepare(files.load(data_cfg), data_cfg)
  elif data_cfg.source.startswith("tfds:"):
    # tensorflow_datasets is imported only here (jaxreg/data/tfds_source.py).
    from jaxreg.data import tfds_source
    return text.prepare(tfds_source.load(data_cfg), data_cfg)
  else:
    raise ValueError(
        f"data.source={data_cfg.source!r} is not one of: synthetic, "
        f"{', '.join(files.SOURCES)}, tfds:NAME")
  # The validation split depends on data.split_seed only, so runs that differ in
  # `seed` are compared on the same held-out examples.
  keep, held = validation_split(train.labels, data_cfg)
  return TextData(train=train.take(keep), val=train.take(held), test=test,
                  class_names=class_names, vocab=vocab)
