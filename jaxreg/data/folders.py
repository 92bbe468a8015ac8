"""Folder sources, text and images alike: `data.root/<split>/<class>/<file>` -> RawData.

  data.source=folder         *.txt, one example per file (keras' text_dataset_from_
                             directory layout per split; IMDB's aclImdb tree)
  data.source=image_folder   *.png, *.jpg, *.jpeg (torchvision's ImageFolder layout per
                             split; the CIFAR-10 JPEG copy in ../shared/data)

One rule for both:

- Classes are `data.classes` (comma-separated, fixes the order; other directories, e.g.
  aclImdb/train/unsup, are ignored), otherwise every subdirectory of ROOT/train sorted by
  name. Every class needs at least one training file; a class may be absent from test.
  Without `data.classes`, a test class directory that is not a training class is an
  error.
- Test examples come from ROOT/test/<class>/ when ROOT/test exists, otherwise
  `data.test_fraction` of each class of ROOT/train is held out, drawn from
  data.split_seed (raw.hold_out_test). ROOT/test together with data.test_fraction is an
  error (one line): which one is the test set would be a silent guess.
- ImageNet layout (image_folder only): without ROOT/test (or with a ROOT/test holding no
  class directory: ImageNet's unlabelled test images), a labelled ROOT/val is the test
  split (a run's own validation split is held out of train). ROOT/val is either class
  directories like train, or flat files labelled by `LOC_val_solution.csv` (the Kaggle
  ImageNet release: `ImageId,PredictionString`, the first word of PredictionString the
  class, e.g. `ILSVRC2012_val_00000001,n01751748 ...`), looked for in ROOT/val, ROOT and
  ROOT/../../.. (the release's ILSVRC/Data/CLS-LOC tree). Extensions are matched in any
  case (`.JPEG`).
- In a class directory, files with the source's extensions (any case) are read in name
  order; other files are ignored.

The RawData lists the files (RawSplit.files) without reading their content: the text
pipeline reads them as UTF-8 (undecodable bytes replaced), the image pipeline decodes
them. Its description holds the sha256 of every file's path and bytes, so a cache entry
misses when any file changes (that sha256 is itself kept in data.cache_dir under the
files' sizes and modification times: content_sha256).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from jaxreg.data import cache
from jaxreg.data.raw import RawData, RawSplit, hold_out_test, names

EXTENSIONS = {"folder": (".txt",), "image_folder": (".png", ".jpg", ".jpeg")}


def _pattern(source: str) -> str:
  return "|".join("*" + e for e in EXTENSIONS[source])  # '*.txt', '*.png|*.jpg|*.jpeg'


def class_files(directory: Path, extensions: tuple[str, ...]) -> list[Path]:
  """The files of one class directory with the given extensions, in name order."""
  return [p for p in sorted(directory.iterdir(), key=lambda p: p.name)
          if p.is_file() and p.suffix.lower() in extensions]


# A file changed less than this long before it is hashed may change again within its
# timestamp's resolution (a few ms on Linux) without its modification time moving.
SETTLED_S = 2.0


def content_sha256(files: list[Path], root: Path, store: cache.Cache | None = None) -> str:
  """sha256 over every file's path (relative to root) and bytes, in order; kept in
  `store` (data.cache_dir) under every file's path, size, modification and change times
  and inode, so a folder is read whole once, not at every start of a run over it (a
  streamed ImageNet is 140 GB). An entry is written only when no file changed in the
  last SETTLED_S seconds (as git does with racily clean files)."""
  if store is None or store.directory is None:
    return _hash_files(files, root)
  stats = [p.stat() for p in files]
  listing = hashlib.sha256()
  for path, st in zip(files, stats):
    # git's stat data: a copy that keeps the time (cp -p) or a swap of two files still
    # changes the inode or the change time, which no tool sets back
    listing.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0"
                   f"{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
  key = cache.key(str(root), {"pipeline": "folder_content_sha256", "version": 1,
                              "listing": listing.hexdigest()})
  hit = store.load(key)
  if hit is not None:
    return bytes(hit[0]["sha256"]).hex()
  sha = _hash_files(files, root)
  newest = max((st.st_mtime_ns for st in stats), default=0)
  if time.time_ns() - newest > SETTLED_S * 1e9:
    store.save(key, {"sha256": np.frombuffer(bytes.fromhex(sha), np.uint8)},
               {"description": str(root), "files": len(files)})
  return sha


def _hash_files(files: list[Path], root: Path) -> str:
  digest = hashlib.sha256()
  for path in files:
    data = path.read_bytes()
    rel = path.relative_to(root).as_posix().encode()
    digest.update(len(rel).to_bytes(8, "little") + rel)
    digest.update(len(data).to_bytes(8, "little") + data)
  return digest.hexdigest()


def _split(split_dir: Path, class_names: list[str], extensions, train: bool) -> RawSplit:
  files, labels = [], []
  for i, name in enumerate(class_names):
    d = split_dir / name
    if not d.is_dir():
      if train:
        raise FileNotFoundError(f"{d}: no such directory (class {name!r} of "
                                "data.classes)")
      continue  # a class may be absent from test
    found = class_files(d, extensions)
    if train and not found:
      raise ValueError(f"{d}: no {'/'.join(extensions)} files (class {name!r} has no "
                       "training example)")
    files += found
    labels += [i] * len(found)
  return RawSplit(np.array(labels, np.int32), files=files)


VAL_LABELS_FILE = "LOC_val_solution.csv"


def _has_class_dirs(directory: Path) -> bool:
  return directory.is_dir() and any(d.is_dir() and not d.name.startswith(".")
                                    for d in directory.iterdir())


def _flat_labels(split_dir: Path) -> Path | None:
  """The labels file of a flat split directory (ImageNet's val), or None."""
  for where in (split_dir, split_dir.parent, split_dir.parents[3] if
                len(split_dir.parents) > 3 else split_dir.parent):
    if (where / VAL_LABELS_FILE).is_file():
      return where / VAL_LABELS_FILE
  return None


def _flat_split(split_dir: Path, labels_file: Path, class_names: list[str],
                extensions) -> RawSplit:
  """Flat files of `split_dir` labelled by LOC_val_solution.csv (ImageId ->
  first word of PredictionString), in file-name order."""
  with open(labels_file, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  if not rows or [h.strip() for h in rows[0][:2]] != ["ImageId", "PredictionString"]:
    raise ValueError(f"{labels_file}: the header must be ImageId,PredictionString (the "
                     "Kaggle ImageNet release's LOC_val_solution.csv)")
  label_of = {r[0].strip(): r[1].split()[0] for r in rows[1:] if len(r) >= 2 and
              r[1].split()}
  index = {n: i for i, n in enumerate(class_names)}
  files, labels = [], []
  for path in class_files(split_dir, extensions):
    wnid = label_of.get(path.stem)
    if wnid is None:
      raise ValueError(f"{path}: no row for {path.stem!r} in {labels_file}")
    if wnid not in index:
      raise ValueError(f"{path}: class {wnid!r} ({labels_file}) is not a training "
                       "class")
    files.append(path)
    labels.append(index[wnid])
  if not files:
    raise ValueError(f"{split_dir}: no {'/'.join(extensions)} files (empty split)")
  return RawSplit(np.array(labels, np.int32), files=files)


def read(c) -> RawData:
  """config.data (source folder or image_folder) -> RawData of files."""
  source, pattern = c.source, _pattern(c.source)
  extensions = EXTENSIONS[source]
  if not c.root:
    raise ValueError(f"data.root is empty: set it to a directory holding "
                     f"train/<class>/{pattern} and test/<class>/{pattern}")
  root = Path(os.path.expanduser(c.root)).resolve()
  train_dir, test_dir = root / "train", root / "test"
  if source == "image_folder" and not _has_class_dirs(test_dir) and \
      (root / "val").is_dir() and not c.test_fraction:
    test_dir = root / "val"  # the ImageNet layout: its labelled val is the test split
  if not root.is_dir():
    raise FileNotFoundError(f"{root}: no such directory (data.root)")
  if not train_dir.is_dir():
    raise FileNotFoundError(f"{train_dir}: no such directory (data.source={source} "
                            f"reads ROOT/train/<class>/{pattern})")
  listed = names(c.classes)
  if len(set(listed)) != len(listed):
    raise ValueError(f"data.classes={c.classes!r} lists a class twice")
  class_names = listed or sorted(
      d.name for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
  if not class_names:
    raise ValueError(f"{train_dir}: no class subdirectories (empty split)")
  train = _split(train_dir, class_names, extensions, train=True)
  if test_dir.is_dir():
    if c.test_fraction:
      raise ValueError(f"{test_dir} exists and data.test_fraction="
                       f"{c.test_fraction}: remove one of them")
    if not listed and _has_class_dirs(test_dir):
      for d in sorted(test_dir.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and d.name not in class_names:
          raise ValueError(f"{d}: test class {d.name!r} does not occur in training "
                           f"({train_dir})")
    flat = _flat_labels(test_dir) if not _has_class_dirs(test_dir) else None
    test = (_split(test_dir, class_names, extensions, train=False) if flat is None else
            _flat_split(test_dir, flat, class_names, extensions))
    if not len(test):
      raise ValueError(f"{test_dir}: no {'/'.join(extensions)} files in the class "
                       f"directories {', '.join(class_names)} (empty split)")
  elif c.test_fraction:
    test = None
  else:
    raise FileNotFoundError(f"{test_dir}: no such directory; add it or set "
                            "data.test_fraction")
  # Hashed before the hold-out: the same files in the same order as with a test/ folder.
  sha = content_sha256(list(train.files) + ([] if test is None else list(test.files)),
                       root, cache.Cache(c.get("cache_dir", "")))
  if test is None:
    train, test = hold_out_test(train, class_names, c.test_fraction, c.split_seed,
                                str(train_dir))
  description = json.dumps({
      "source": source, "root": str(root), "classes": class_names,
      "content_sha256": sha, "test_fraction": float(c.test_fraction),
      "split_seed": int(c.split_seed) if c.test_fraction else None,
  }, sort_keys=True)
  return RawData(train, test, class_names, description)
