"""One folder rule for text and images (data.source folder / image_folder), through
sources.load: the same tree gives the same classes, the same test hold-out and the same
one-line errors whatever the files hold."""

import numpy as np
import pytest
from PIL import Image

from jaxreg.data import sources
from tests.conftest import tiny_config


def _config(source, root, **overrides):
  if source == "image_folder":
    from configs import resnet
    from jaxreg.sweep import config_for
    return config_for(resnet.get_config("tiny"), {
        "data.source": source, "data.root": str(root), "data.cache_dir": "",
        **overrides})
  return tiny_config(**{"data.source": source, "data.root": str(root),
                        "data.cache_dir": "", **overrides})


def _write(path, source, value, size=4):
  """One example whose content is the number `value` (its length in words, or every
  pixel's value)."""
  if source == "folder":
    path.with_suffix(".txt").write_text(" ".join(["w"] * value))
  else:
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path.with_suffix(".png"))


def make_tree(root, source, layout):
  """layout: {split: {class: [values]}}."""
  for split, classes in layout.items():
    for name, values in classes.items():
      d = root / split / name
      d.mkdir(parents=True)
      for i, v in enumerate(values):
        _write(d / f"{i:03d}", source, v)
  return root


def values(data, split, source):
  """The example numbers of a split, whatever the modality."""
  part = data.split(split)
  if source == "folder":
    return sorted(int(n) for n in part.lengths)
  return sorted(int(x) for x in part.images[:, 0, 0, 0])


SOURCES = ("folder", "image_folder")
TRAIN = {"a": list(range(1, 11)), "b": list(range(21, 31))}


@pytest.mark.parametrize("source", SOURCES)
def test_test_folder_and_test_fraction_together_is_an_error(tmp_path, source):
  root = make_tree(tmp_path, source, {"train": TRAIN, "test": {"a": [15], "b": [35]}})
  data = sources.load(_config(source, root).data)
  assert values(data, "test", source) == [15, 35]
  with pytest.raises(ValueError, match=r"test exists and data.test_fraction=0.2: remove "
                     "one of them"):
    sources.load(_config(source, root, **{"data.test_fraction": 0.2}).data)


@pytest.mark.parametrize("source", SOURCES)
def test_a_test_class_unknown_to_training_is_an_error(tmp_path, source):
  root = make_tree(tmp_path, source, {"train": TRAIN, "test": {"a": [15], "c": [45]}})
  with pytest.raises(ValueError, match="test class 'c' does not occur in training"):
    sources.load(_config(source, root).data)
  # Listed classes: other directories are ignored, a class may be absent from test.
  data = sources.load(_config(source, root, **{"data.classes": "b,a"}).data)
  assert data.class_names == ["b", "a"] and values(data, "test", source) == [15]


@pytest.mark.parametrize("source", SOURCES)
def test_missing_directories_are_named(tmp_path, source):
  root = make_tree(tmp_path / "t", source, {"train": TRAIN})
  with pytest.raises(FileNotFoundError, match=r"/t/train/zz: no such directory \(class "
                     "'zz' of data.classes\\)"):
    sources.load(_config(source, root, **{"data.classes": "a,zz",
                                          "data.test_fraction": 0.2}).data)
  with pytest.raises(FileNotFoundError, match=r"/t/test: no such directory; add it or set "
                     "data.test_fraction"):
    sources.load(_config(source, root).data)


def test_the_test_hold_out_is_the_same_for_text_and_images(tmp_path):
  held = {}
  for source in SOURCES:
    root = make_tree(tmp_path / source, source, {"train": TRAIN})
    data = sources.load(_config(source, root, **{"data.test_fraction": 0.3,
                                                 "data.split_seed": 4}).data)
    held[source] = values(data, "test", source)
  assert held["folder"] == held["image_folder"]
  assert len(held["folder"]) == 6


def test_image_folder_of_different_sizes_is_resized_per_image(tmp_path):
  root = tmp_path / "imgs"
  for split, n in (("train", 6), ("test", 2)):
    for c, name in enumerate(("a", "b")):
      d = root / split / name
      d.mkdir(parents=True)
      for i in range(n):
        side = 6 + 2 * i  # 6, 8, 10, ... pixels
        Image.fromarray(np.full((side, side), 80 * c, np.uint8)).save(d / f"{i}.png")
  c = _config("image_folder", root, **{"data.image_size": 8, "data.val_fraction": 0.34,
                                       "data.cache_dir": str(tmp_path / "cache")})
  data = sources.load(c.data)
  assert data.image_shape == (8, 8, 1)  # greyscale stays one channel
  assert sorted(set(data.test.images.reshape(len(data.test), -1).max(1))) == [0, 80]
  assert sources.load(c.data).fingerprint() == data.fingerprint()  # from the cache
  c.data.image_size = 0
  with pytest.raises(ValueError, match="images have different shapes"):
    sources.load(c.data)


def test_a_folder_is_read_whole_once_then_known_by_its_files_sizes_and_times(
    tmp_path, monkeypatch):
  """folders.content_sha256 is kept in data.cache_dir under the files' sizes and
  modification times: a run's second start reads no file's bytes (a streamed ImageNet
  read all 140 GB at every start); a changed file, or files changed too recently to be
  told apart by their times, are read again."""
  import os
  import time
  from pathlib import Path
  from jaxreg.data import folders
  root = tmp_path / "f"
  for split in ("train", "test"):
    for c in ("a", "b"):
      (root / split / c).mkdir(parents=True)
      for i in range(3):
        (root / split / c / f"{i}.txt").write_text(f"{split} {c} {i}")
  files = sorted(root.rglob("*.txt"))
  store = folders.cache.Cache(tmp_path / "cache")
  reads = []
  real = Path.read_bytes
  monkeypatch.setattr(Path, "read_bytes", lambda p: reads.append(p) or real(p))

  def sha():
    reads.clear()
    return folders.content_sha256(files, root, store)

  fresh = sha()
  assert len(reads) == 12 and sha() == fresh and len(reads) == 12  # too recent: read
  old = time.time() - 60
  for f in files:
    os.utime(f, (old, old))
  assert sha() == fresh and len(reads) == 12  # settled: read once more, then kept
  assert sha() == fresh and reads == []
  files[4].write_text("changed")
  os.utime(files[4], (old + 1, old + 1))
  changed = sha()
  assert changed != fresh and len(reads) == 12
  assert changed == folders.content_sha256(files, root)  # no store: the same hash
  # another file of the same size copied in keeping the time (cp -p), and two files of
  # one size and one time swapped: their change times and inodes give them away
  import shutil
  (tmp_path / "other").write_text("chanGed")
  os.utime(tmp_path / "other", (old + 1, old + 1))
  shutil.copy2(tmp_path / "other", files[4])
  time.sleep(0.01)
  assert sha() != changed and len(reads) == 12
  files[0].write_text("sameA")
  files[1].write_text("sameB")
  for f in files[:2]:
    os.utime(f, (old, old))
  before = sha()
  files[0].rename(tmp_path / "t")
  files[1].rename(files[0])
  (tmp_path / "t").rename(files[1])
  assert sha() != before
  # a run's folder goes through it: its second read opens no file
  c = _config("folder", root, **{"data.cache_dir": str(tmp_path / "cache")}).data
  os.utime(files[4], (old, old))
  first = folders.read(c).description
  reads.clear()
  assert folders.read(c).description == first and reads == []
