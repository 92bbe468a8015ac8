"""TFDS image classification sets (`data.source='tfds:cifar10'`, 'tfds:cifar100', ...).

Preparation (download_and_prepare as array_record, the offline checks and their one-line
messages), dataset-name and split checks are jaxreg/data/tfds_source.py's; this module
only reads an Image feature and a ClassLabel feature:

  data.image_feature   default 'image' (any Image feature; config.TFDS_IMAGE_BUILTINS
                       are read as images without setting it)
  data.label_feature   default 'label' (tfds:cifar100's 'coarse_label' gives its 20
                       superclasses)
  data.train_split / data.test_split   default train / test

Images with different sizes need data.image_size (resized in images.load). Labels outside
the ClassLabel's range (hidden test labels, -1) are an error naming the split.
"""

from __future__ import annotations

import hashlib

import numpy as np

from jaxreg.data import tfds_source


def _spec(data_cfg) -> tuple[tfds_source.Spec, str]:
  name = tfds_source.dataset_name(data_cfg.source)
  image = str(data_cfg.get("image_feature", "") or "image").strip()
  spec = tfds_source.Spec(
      name=name, text_features=(image,),
      label_feature=str(data_cfg.get("label_feature", "") or "label").strip(),
      train_split=str(data_cfg.get("train_split", "") or "train").strip(),
      test_split=str(data_cfg.get("test_split", "") or "test").strip(),
      data_dir=str(data_cfg.get("tfds_data_dir", "")) or None,
      download_dir=str(data_cfg.get("download_dir", "")) or None,
      files_dir=None)
  return spec, image


def _check_features(builder, spec: tfds_source.Spec, image: str) -> list[str]:
  tfds = tfds_source._tfds()  # noqa: SLF001 (the shared lazy import)
  features = builder.info.features
  available = sorted(features.keys()) if hasattr(features, "keys") else []
  shown = ", ".join(available)
  for key, n in (("data.image_feature", image), ("data.label_feature", spec.label_feature)):
    if n not in available:
      raise ValueError(f"{key}={n!r} is not a feature of tfds:{spec.name}; "
                       f"available: {shown}")
  if not isinstance(features[image], tfds.features.Image):
    images = [k for k in available if isinstance(features[k], tfds.features.Image)]
    raise ValueError(f"data.image_feature={image!r} of tfds:{spec.name} is a "
                     f"{type(features[image]).__name__}, not an Image; Image features: "
                     f"{', '.join(images) or 'none'}")
  label = features[spec.label_feature]
  if not isinstance(label, tfds.features.ClassLabel):
    raise ValueError(f"data.label_feature={spec.label_feature!r} of tfds:{spec.name} is "
                     f"a {type(label).__name__}, not a ClassLabel")
  return list(label.names)


def _read_split(builder, image: str, label: str, split: str):
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError:  # prepared earlier in another file format
    source = None
  images, labels = [], []
  if source is not None:
    for i in range(len(source)):  # see tfds_source._read_split: one record at a time
      ex = source[i]
      images.append(np.asarray(ex[image]))
      labels.append(int(np.asarray(ex[label])))
  else:
    tfds = tfds_source._tfds()  # noqa: SLF001
    for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
      images.append(np.asarray(ex[image]))
      labels.append(int(ex[label]))
  return images, np.asarray(labels, np.int64)


def _stack(images: list[np.ndarray], where: str, size: int) -> np.ndarray:
  images = [a[..., None] if a.ndim == 2 else a for a in images]
  if size:
    from jaxreg.data.images import resize
    images = [resize(a[None], size)[0] if a.shape[:2] != (size, size) else a
              for a in images]
  shapes = {a.shape for a in images}
  if len(shapes) > 1:
    raise ValueError(f"{where}: images have different shapes "
                     f"({', '.join(map(str, sorted(shapes)[:4]))}); set data.image_size")
  return np.stack(images).astype(np.uint8)


def load(data_cfg):
  """-> (train_x, train_y, test_x, test_y, class_names, description)."""
  with tfds_source._quiet_tfds():  # noqa: SLF001
    spec, image = _spec(data_cfg)
    builder = tfds_source.make_builder(spec.name, spec.data_dir)
    class_names = _check_features(builder, spec, image)
    tfds_source.ensure_prepared(builder, spec)
    out, h = [], hashlib.sha256()
    for key, split in (("train_split", spec.train_split), ("test_split", spec.test_split)):
      tfds_source._check_split(builder, spec, key, split)  # noqa: SLF001
      try:
        images, labels = _read_split(builder, image, spec.label_feature, split)
      except (ValueError, KeyError) as e:
        raise ValueError(f"data.{key}={split!r} of tfds:{spec.name}: "
                         f"{tfds_source._one_line(e)}") from None  # noqa: SLF001
      if not images:
        raise ValueError(f"data.{key}={split!r} of tfds:{spec.name} is empty")
      bad = np.flatnonzero((labels < 0) | (labels >= len(class_names)))
      if bad.size:
        raise ValueError(f"data.{key}={split!r} of tfds:{spec.name} has {bad.size} "
                         f"examples with label {int(labels[bad[0]])} outside "
                         f"[0, {len(class_names)}) in {spec.label_feature!r}")
      x = _stack(images, f"data.{key}={split!r} of tfds:{spec.name}",
                 int(data_cfg.get("image_size", 0) or 0))
      h.update(x.tobytes())
      h.update(labels.astype("<i8").tobytes())
      out += [x, labels.astype(np.int32)]
  description = (f"tfds:{builder.info.full_name} image={image} "
                 f"label={spec.label_feature} train={spec.train_split} "
                 f"test={spec.test_split} content_sha256={h.hexdigest()}")
  return (*out, class_names, description)
