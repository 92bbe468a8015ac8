"""Which `data.source` values exist and which modality each one reads.

Plain constants and string rules, no imports: the config checks, the CLI and the loaders
share them without loading numpy or tensorflow_datasets.
"""

from __future__ import annotations

TFDS_PREFIX = "tfds:"
FILE_SOURCES = ("csv", "tsv", "jsonl")              # jaxreg/data/files.py
TEXT_SOURCES = ("synthetic", *FILE_SOURCES, "folder")
IMAGE_SOURCES = ("shapes", "image_folder")
SOURCES = TEXT_SOURCES + IMAGE_SOURCES              # and tfds:NAME (any TFDS set)
FOLDER_SOURCES = ("folder", "image_folder")         # jaxreg/data/folders.py
# tfds: datasets read as images without data.image_feature (their feature is 'image').
TFDS_IMAGE_BUILTINS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped",
                       "emnist", "kmnist", "cifar10_corrupted", "imagenette")


def tfds_name(source: str) -> str:
  """'tfds:glue/sst2' -> 'glue/sst2'; a one-line ValueError when no name is given."""
  if not source.startswith(TFDS_PREFIX) or not source[len(TFDS_PREFIX):].strip():
    raise ValueError(f"data.source={source!r} must look like 'tfds:NAME' "
                     "(e.g. tfds:trec, tfds:glue/sst2)")
  return source[len(TFDS_PREFIX):].strip()


def is_image_source(source: str, image_feature: str = "") -> bool:
  """True when `data.source` (with `data.image_feature`) names an image dataset."""
  if source in IMAGE_SOURCES:
    return True
  if isinstance(source, str) and source.startswith(TFDS_PREFIX):
    bare = source[len(TFDS_PREFIX):].strip().split(":")[0].strip("/").split("/")[0]
    return bool(image_feature) or bare in TFDS_IMAGE_BUILTINS
  return False
