"""The hand-off between a text source and the text pipeline.

Every text source (TFDS, local files, a text folder) returns RawTextData: strings,
integer labels and class names in the source's documented order. The text pipeline
(jaxreg/data/text.py) turns it into padded token arrays (TextData).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RawTextData:
  train_texts: list[str]
  train_labels: np.ndarray   # int, in [0, len(class_names))
  test_texts: list[str]
  test_labels: np.ndarray
  class_names: list[str]
  # Identifies the exact source content (name, paths, file sizes/mtimes or hashes,
  # split map); part of the tokenized-dataset cache key and of provenance.
  description: str
