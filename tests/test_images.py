"""Image sources: the generated set, image folders (with their decode cache), TFDS image
sets through tfds.testing.mock_data, the shared val rule, and the config checks."""

import subprocess
import sys
import tarfile

import numpy as np
import pytest

from jaxreg import config as config_lib
from jaxreg.data import dataset, images, shapes, sources
from tests.conftest import SHARED_DATA, python_env


def _config(**overrides):
  from configs import resnet
  from jaxreg.sweep import config_for
  return config_for(resnet.get_config("tiny"), overrides)


# ------------------------------------------------------------------------------ shapes

def test_shapes_is_deterministic_balanced_and_colour_vs_grey():
  a = shapes.generate(160, 5, 16, seed=7)
  b = shapes.generate(160, 5, 16, seed=7)
  for x, y in ((a.train.images, b.train.images), (a.train.labels, b.train.labels),
               (a.test.images, b.test.images), (a.test.labels, b.test.labels)):
    np.testing.assert_array_equal(x, y)
  train_x, train_y, test_y = a.train.images, a.train.labels, a.test.labels
  names = a.class_names
  assert train_x.shape == (160, 16, 16, 3) and train_x.dtype == np.uint8
  assert np.bincount(train_y).tolist() == [20] * 8 and np.bincount(test_y).tolist() == [5] * 8
  assert names[:4] == list(shapes.COLOUR_CLASSES)
  spread = train_x.astype(int).max(-1) - train_x.astype(int).min(-1)  # 0 on grey pixels
  per_image = spread.reshape(len(train_x), -1).max(1)
  colour = np.isin(train_y, range(4))
  assert per_image[colour].min() > 80        # a saturated object
  assert per_image[~colour].max() == 0       # shape classes carry no colour at all


def test_shapes_source_holds_out_val_by_the_text_rule():
  c = _config()
  data = sources.load(c.data)
  assert isinstance(data, images.ImageData)
  raw = shapes.generate(c.data.shapes.train_size, c.data.shapes.test_per_class,
                        c.data.shapes.image_size, c.data.shapes.generator_seed)
  train_x, train_y, test_x = raw.train.images, raw.train.labels, raw.test.images
  keep, held = dataset.stratified_split(train_y, c.data.val_fraction, c.data.split_seed)
  np.testing.assert_array_equal(data.val.images, train_x[held])
  np.testing.assert_array_equal(data.train.labels, train_y[keep])
  np.testing.assert_array_equal(data.test.images, test_x)
  assert data.image_shape == (16, 16, 3) and data.num_classes == 8
  c2 = _config(**{"data.split_seed": 1})
  assert sources.load(c2.data).fingerprint() != data.fingerprint()


# ------------------------------------------------------------------------ image folder

def _write_folder(root, splits=("train", "test"), n=6, size=8, fmt="png"):
  from PIL import Image
  rng = np.random.default_rng(0)
  for split in splits:
    for ci, cls in enumerate(("ant", "bee", "cow")):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(n):
        img = np.full((size, size, 3), 40 * ci, np.uint8) + rng.integers(0, 5, (size, size, 3),
                                                                          dtype=np.uint8)
        Image.fromarray(img).save(d / f"{i:03d}.{fmt}")
      (d / "notes.txt").write_text("not an image")


def test_image_folder_reads_classes_in_order_and_caches(tmp_path):
  root = tmp_path / "imgs"
  _write_folder(root)
  cache = tmp_path / "cache"
  c = _config(**{"data.source": "image_folder", "data.root": str(root),
                 "data.cache_dir": str(cache), "data.val_fraction": 0.34})
  data = sources.load(c.data)
  assert data.class_names == ["ant", "bee", "cow"]
  assert len(data.train) + len(data.val) == 18 and len(data.test) == 18
  assert np.bincount(data.val.labels).tolist() == [2, 2, 2]
  # Pixel values survive (png is lossless): class ci is about 40 * ci.
  for split in (data.train, data.test):
    np.testing.assert_array_less(np.abs(split.images.mean((1, 2, 3)) - 40 * split.labels - 2), 3)
  cached = list(cache.glob("*.json"))
  assert len(cached) == 1
  # A second load reads the cache (decoding is not redone) and gives the same arrays.
  again = sources.load(c.data)
  assert again.fingerprint() == data.fingerprint()
  # A changed file changes the key: a second cache entry.
  from PIL import Image
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "ant" / "000.png")
  changed = sources.load(c.data)
  assert len(list(cache.glob("*.json"))) == 2
  assert changed.fingerprint() != data.fingerprint()


def test_image_folder_without_test_uses_test_fraction_and_classes(tmp_path):
  root = tmp_path / "imgs"
  _write_folder(root, splits=("train",), n=10, fmt="jpg")
  c = _config(**{"data.source": "image_folder", "data.root": str(root),
                 "data.cache_dir": "", "data.test_fraction": 0.2,
                 "data.classes": "cow,ant"})
  data = sources.load(c.data)
  assert data.class_names == ["cow", "ant"]
  assert np.bincount(data.test.labels).tolist() == [2, 2]
  assert len(data.train) + len(data.val) == 16
  c = _config(**{"data.source": "image_folder", "data.root": str(root), "data.cache_dir": ""})
  with pytest.raises(FileNotFoundError, match="test_fraction"):
    sources.load(c.data)


def test_train_per_class_and_resize(tmp_path):
  root = tmp_path / "imgs"
  _write_folder(root, n=8)
  c = _config(**{"data.source": "image_folder", "data.root": str(root), "data.cache_dir": "",
                 "data.train_per_class": 5, "data.image_size": 12, "data.val_fraction": 0.2})
  data = sources.load(c.data)
  assert np.bincount(np.concatenate([data.train.labels, data.val.labels])).tolist() == [5] * 3
  assert data.image_shape == (12, 12, 3) and data.test.images.shape[1:] == (12, 12, 3)


def test_image_folder_errors(tmp_path):
  c = _config(**{"data.source": "image_folder", "data.root": str(tmp_path / "nope")})
  with pytest.raises(FileNotFoundError, match="nope: no such directory"):
    sources.load(c.data)
  (tmp_path / "nope").mkdir()
  with pytest.raises(FileNotFoundError, match="train: no such directory"):
    sources.load(c.data)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "cifar10_jpeg" / "cifar10_jpeg.tar.gz").exists(),
                    reason="../shared/data/cifar10_jpeg is absent")
def test_cifar10_jpeg_copy_through_the_folder_source(tmp_path):
  with tarfile.open(SHARED_DATA / "cifar10_jpeg" / "cifar10_jpeg.tar.gz") as tar:
    members = [m for m in tar.getmembers()
               if "/cat/" in m.name or "/ship/" in m.name or m.isdir()]
    tar.extractall(tmp_path, members=members, filter="data")
  c = _config(**{"data.source": "image_folder", "data.root": str(tmp_path / "cifar10"),
                 "data.classes": "cat,ship", "data.cache_dir": str(tmp_path / "cache")})
  data = sources.load(c.data)
  assert data.image_shape == (32, 32, 3)
  assert len(data.train) + len(data.val) == 10000 and len(data.test) == 2000
  assert np.bincount(data.val.labels).tolist() == [500, 500]
  # Ships sit on blue water/sky far more than cats: a sanity check of class order.
  blue = lambda s, k: s.images[s.labels == k][..., 2].mean() - s.images[s.labels == k][..., 0].mean()  # noqa: E731
  assert blue(data.test, 1) > blue(data.test, 0) + 10


# -------------------------------------------------------------------------------- tfds

@pytest.fixture
def mock_tfds(monkeypatch):
  """Under mock_data nothing is downloaded; skip the offline fast-fail probe."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from jaxreg.data import tfds_prepare
  monkeypatch.setattr(tfds_prepare, "hosts_reachable", lambda hosts, timeout_s=5.0: True)
  with tfds.testing.mock_data(num_examples=30):
    yield tfds


def test_tfds_cifar10_and_cifar100_by_feature_names(mock_tfds):
  c = _config(**{"data.source": "tfds:cifar10"})
  data = sources.load(c.data)
  assert data.image_shape == (32, 32, 3) and data.train.images.dtype == np.uint8
  assert data.num_classes == 10 and len(data.train) + len(data.val) == 30
  assert len(data.test) == 30
  c = _config(**{"data.source": "tfds:cifar100", "data.label_feature": "coarse_label",
                 "data.image_size": 16})
  data = sources.load(c.data)
  assert data.num_classes == 20 and data.image_shape == (16, 16, 3)


def test_tfds_any_image_set_with_image_feature(mock_tfds):
  c = _config(**{"data.source": "tfds:mnist"})
  assert sources.load(c.data).image_shape == (28, 28, 1)
  # A dataset outside the built-in list is read as images once image_feature is set.
  c = _config(**{"data.source": "tfds:cats_vs_dogs", "data.image_feature": "image",
                 "data.image_size": 16, "data.test_split": "train[:50%]",
                 "data.train_split": "train[50%:]"})
  assert config_lib.is_image_source(c.data)


@pytest.mark.parametrize("overrides,match", [
    ({"data.image_feature": "pixels"}, "data.image_feature='pixels' is not a feature"),
    ({"data.image_feature": "label"}, "not an Image"),
    ({"data.label_feature": "id"}, "not a feature|not a ClassLabel"),
])
def test_tfds_image_feature_errors(mock_tfds, overrides, match):
  c = _config(**{"data.source": "tfds:cifar10", **overrides})
  with pytest.raises(ValueError, match=match):
    sources.load(c.data)


# ------------------------------------------------------------------------------ config

@pytest.mark.parametrize("key,value,match", [
    ("data.augment.crop_padding", -1, "integer >= 0"),
    ("data.augment.cutout", -2, "integer >= 0"),
    ("data.augment.resized_crop_min_scale", 0.0, r"in \(0, 1\]"),
    ("data.augment.flip", 1.5, r"probability in \[0, 1\]"),
    ("data.augment.brightness", -0.1, ">= 0"),
    ("data.augment.contrast", -0.1, ">= 0"),
    ("data.augment.saturation", -1.0, ">= 0"),
    ("data.augment.hue", 0.7, r"\[0, 0.5\]"),
    ("data.image_size", -3, "integer >= 0"),
    ("data.train_per_class", -1, "integer >= 0"),
    ("data.shapes.train_size", 0, "integer >= 1"),
    ("data.shapes.test_per_class", 0, "integer >= 1"),
    ("data.shapes.image_size", 4, ">= 8"),
    ("data.shapes.generator_seed", -1, "integer >= 0"),
    ("model.dtype", "float16", "float32, bfloat16"),
    ("model.resnet.depth", 20, "10, 18, 34, 50"),
    ("model.resnet.width", 0, "integer >= 1"),
    ("model.resnet.stem", "tiny", "cifar, imagenet"),
    ("model.resnet.norm", "layer", "batch, none, nf"),
    ("model.resnet.bn_stages", "0,5", "stage indices"),
    ("model.resnet.dropout_layers", 4, "0, 1, 2, 3"),
    ("model.resnet.dropout_rate", 1.0, r"\[0, 1\)"),
    ("train.target_accuracy", 1.5, r"\[0, 1\]"),
    ("model.family", "rnn", "holds images"),
])
def test_bad_image_keys_are_one_line_config_errors(key, value, match):
  c = _config(**{key: value})
  with pytest.raises(config_lib.ConfigError, match=match) as e:
    config_lib.validate(c)
  assert "\n" not in str(e.value) and key in str(e.value)


def test_resnet_on_text_and_image_folder_without_root():
  from jaxreg.config import get_base_config
  c = get_base_config()
  c.model.family = "resnet"
  with pytest.raises(config_lib.ConfigError, match="needs an image source"):
    config_lib.validate(c)
  c = _config(**{"data.source": "image_folder"})
  with pytest.raises(config_lib.ConfigError, match="data.root is empty"):
    config_lib.validate(c)


def test_cli_bad_augment_key_exits_2(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "jaxreg.main", "--config=configs/resnet.py:tiny",
       f"--workdir={tmp_path / 'w'}", "--config.data.augment.hue=0.9"],
      capture_output=True, text=True, env=python_env(), timeout=300)
  assert out.returncode == 2 and "data.augment.hue=0.9" in out.stderr
