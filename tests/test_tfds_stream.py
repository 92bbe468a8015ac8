"""Streamed tfds: image sets (tfds_source.SplitImages, jaxreg/data/stream.py): a real
TFDS image dataset, built and prepared here as ArrayRecord (no network, no TensorFlow),
streams under data.stream=always or auto over data.resident_limit_mb, holds the examples
the resident path holds under the same indices, trains to the resident run's metrics,
and reads the same batches in grain's worker processes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jaxreg import records, train  # noqa: E402
from jaxreg.data import cache, images, sources, stream, tfds_source  # noqa: E402

CLASSES = 12
TRAIN_PER_CLASS, TEST_PER_CLASS = 20, 5


class JaxregToyImages(tfds.core.GeneratorBasedBuilder):
  """12 classes of generated RGB images, 20x20 and some 24x18 (so that every one is
  resized, not all from one shape); each class a colour and a bar position."""
  VERSION = tfds.core.Version("1.0.0")
  SHIFT = 0  # added to every pixel: another preparation with the same labels

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "picture": tfds.features.Image(shape=(None, None, 3)),
        "kind": tfds.features.ClassLabel(names=[f"k{c:02d}" for c in range(CLASSES)]),
        "serial": tfds.features.Scalar(dtype=np.int32)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(TRAIN_PER_CLASS, 0),
            "test": self._generate_examples(TEST_PER_CLASS, 1)}

  def _generate_examples(self, per_class, seed):
    from PIL import Image  # PIL images are encoded by PIL, not TensorFlow
    rng = np.random.default_rng(seed)
    for i in range(per_class * CLASSES):
      c = int(rng.integers(CLASSES))  # classes in no order, counts uneven
      h, w = (24, 18) if i % 7 == 0 else (20, 20)
      a = rng.integers(0, 80, (h, w, 3), dtype=np.uint8) + np.uint8(self.SHIFT)
      a[:, :, c % 3] += np.uint8(100 + 10 * c)
      a[(c * 3) % h: (c * 3) % h + 3] = 255
      yield i, {"picture": Image.fromarray(a), "kind": c, "serial": i}


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds_images")
  JaxregToyImages(data_dir=str(data_dir)).download_and_prepare(
      file_format="array_record")
  return data_dir


def _config(toy_dir, **overrides):
  from configs import resnet
  from jaxreg.sweep import config_for
  return config_for(resnet.get_config("tiny"), {
      "data.source": "tfds:jaxreg_toy_images", "data.tfds_data_dir": str(toy_dir),
      "data.image_feature": "picture", "data.label_feature": "kind",
      "data.image_size": 16, "data.cache_dir": str(toy_dir / "cache"),
      "data.eval_batch_size": 64, "data.train_per_class": 15, "train.batch_size": 32,
      "data.augment.crop_padding": 2, "data.augment.flip": 0.5, **overrides})


class _CountDecodes:
  """Counts images decoded from the records (by TFDS's numpy reader)."""

  def __init__(self, monkeypatch):
    self.calls = 0
    original = tfds.features.Image.decode_example_np

    def counted(feature, example, *args, **kwargs):
      self.calls += 1
      return original(feature, example, *args, **kwargs)
    monkeypatch.setattr(tfds.features.Image, "decode_example_np", counted)


# ------------------------------------------------------------------- the choice


def test_the_choice_follows_data_stream_and_needs_one_image(toy_dir, monkeypatch):
  decodes = _CountDecodes(monkeypatch)
  # 300 examples x 64 x 64 x 3 = 3.5 MiB decoded
  tight = _config(toy_dir, **{"data.image_size": 64, "data.resident_limit_mb": 1})
  raw = sources.read(tight.data)
  assert isinstance(raw.train.images, tfds_source.SplitImages)
  # The first training image gives the decoded shape; the labels are read with the
  # images left encoded.
  assert decodes.calls == 1
  assert stream.chosen(raw, tight.data)
  assert decodes.calls == 2
  tight.data.resident_limit_mb = 4
  assert not stream.chosen(raw, tight.data)
  assert decodes.calls == 3
  resident = sources.read(tight.data)  # read whole, in one pass, as before
  assert decodes.calls == 4 + 300 and isinstance(resident.train.images, list)
  assert isinstance(sources.load(_config(toy_dir, **{"data.stream": "always"}).data),
                    stream.StreamedImageData)
  for mode in ("auto", "never"):  # 300 x 16 x 16 x 3 bytes: far below half the RAM
    data = sources.load(_config(toy_dir, **{"data.stream": mode}).data)
    assert not isinstance(data, stream.StreamedImageData)
  streamed = sources.load(_config(toy_dir, **{"data.image_size": 64,
                                              "data.resident_limit_mb": 1}).data)
  assert isinstance(streamed, stream.StreamedImageData)
  assert streamed.image_shape == (64, 64, 3)


def test_streamed_splits_hold_the_resident_examples_index_by_index(toy_dir):
  """The per-class subset, the val hold-out, the labels and the resized pixels."""
  streamed = sources.load(_config(toy_dir, **{"data.stream": "always"}).data)
  resident = sources.load(_config(toy_dir, **{"data.stream": "never"}).data)
  assert isinstance(streamed, stream.StreamedImageData)
  assert len(streamed.train) + len(streamed.val) == 15 * CLASSES < TRAIN_PER_CLASS * \
      CLASSES
  for name in ("train", "val", "test"):
    s, r = streamed.split(name), resident.split(name)
    np.testing.assert_array_equal(s.labels, r.labels)
    np.testing.assert_array_equal(s.images[:], r.images)
  assert streamed.class_names == resident.class_names == [f"k{c:02d}"
                                                          for c in range(CLASSES)]
  assert "records_sha256=" in streamed.description  # the resident one hashes pixels
  assert "content_sha256=" in resident.description
  # Both equal the examples read from TFDS's own data source, resized and subset as
  # images.prepare does.
  cfg = _config(toy_dir).data
  for split, names in (("train", ("train", "val")), ("test", ("test",))):
    records = tfds.builder_from_directory(
        str(toy_dir / "jaxreg_toy_images" / "1.0.0")).as_data_source(split=split)
    want_x = images.stack([r["picture"] for r in records], 16, split)
    want_y = np.array([r["kind"] for r in records])
    parts = images.split_indices(want_y, cfg) if split == "train" else (
        np.arange(len(want_y)),)
    for name, index in zip(names, parts):
      np.testing.assert_array_equal(streamed.split(name).labels, want_y[index])
      np.testing.assert_array_equal(streamed.split(name).images[:], want_x[index])


def test_the_provenance_follows_the_records_not_the_pixels(toy_dir, tmp_path,
                                                          monkeypatch):
  """The description names the prepared files (name, size) and the labels: equal for
  the same preparation, different for another split map or for files prepared with
  other pixels and the same labels."""
  cfg = _config(toy_dir, **{"data.stream": "always"}).data
  first = sources.load(cfg)
  again = sources.load(cfg)
  assert again.description == first.description
  assert again.fingerprint() == first.fingerprint()
  cfg.train_split = "train[:50%]"
  half = sources.load(cfg)
  assert half.description != first.description
  assert half.fingerprint() != first.fingerprint()
  monkeypatch.setattr(JaxregToyImages, "SHIFT", 7)
  JaxregToyImages(data_dir=str(tmp_path)).download_and_prepare(
      file_format="array_record")
  repainted = sources.load(_config(tmp_path, **{"data.stream": "always"}).data)
  np.testing.assert_array_equal(repainted.train.labels, first.train.labels)
  assert repainted.train.load(0).tolist() != first.train.load(0).tolist()
  assert repainted.description != first.description


def test_the_labels_are_read_once_per_preparation(tmp_path, monkeypatch):
  """A pass over the records for the labels, then data.cache_dir; a new preparation of
  the same set (same files, same sizes, new modification times) is read again."""
  reads = []
  original = tfds.core.DatasetBuilder.as_data_source

  def as_data_source(builder, *args, **kwargs):
    if kwargs.get("decoders"):  # the labels' pass, images left encoded
      reads.append(kwargs["split"])
    return original(builder, *args, **kwargs)
  monkeypatch.setattr(tfds.core.DatasetBuilder, "as_data_source", as_data_source)

  def prepare_and_load():
    JaxregToyImages(data_dir=str(tmp_path / "set")).download_and_prepare(
        file_format="array_record")
    return sources.load(_config(tmp_path / "set", **{
        "data.stream": "always", "data.cache_dir": str(tmp_path / "cache")}).data)
  first = prepare_and_load()
  assert reads == ["train", "test"]
  again = prepare_and_load()
  assert reads == ["train", "test"]  # from the cache
  assert again.fingerprint() == first.fingerprint()
  import shutil
  shutil.rmtree(tmp_path / "set")
  prepared_again = prepare_and_load()
  assert reads == ["train", "test"] * 2
  assert prepared_again.fingerprint() == first.fingerprint()


class JaxregFlatImages(tfds.core.GeneratorBasedBuilder):
  """Flat colours: two VALUEs give records of the same lengths (TFDS's numBytes and the
  files' sizes equal), so only the files' times tell the preparations apart."""
  VERSION = tfds.core.Version("1.0.0")
  VALUE = 10

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "picture": tfds.features.Image(shape=(None, None, 3)),
        "kind": tfds.features.ClassLabel(names=["a", "b", "c"])}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(30), "test": self._generate_examples(9)}

  def _generate_examples(self, n):
    from PIL import Image
    for i in range(n):
      yield i, {"picture": Image.fromarray(np.full((20, 20, 3), self.VALUE + i % 3,
                                                   np.uint8)), "kind": i % 3}


def test_statistics_of_a_set_prepared_again_in_place_are_counted_again(tmp_path,
                                                                       monkeypatch):
  """The normalization's histogram is cached under the records' files and their times:
  a set prepared again in place with other pixels and the same lengths kept its
  description (documented) but got the old set's statistics (found by review)."""
  import shutil
  means = []
  for value in (10, 200):
    monkeypatch.setattr(JaxregFlatImages, "VALUE", value)
    shutil.rmtree(tmp_path / "set", ignore_errors=True)
    JaxregFlatImages(data_dir=str(tmp_path / "set")).download_and_prepare(
        file_format="array_record")
    cfg = _config(tmp_path / "set", **{
        "data.source": "tfds:jaxreg_flat_images", "data.train_per_class": 0,
        "data.stream": "always", "data.cache_dir": str(tmp_path / "cache")}).data
    data = sources.load(cfg)
    hist = stream.histogram(data.train, 8, threads=1, store=cache.Cache(cfg.cache_dir),
                            description=data.description)
    means.append((hist * np.arange(256)).sum(1) / hist.sum(1))
  assert abs(means[0][0] - 11) < 1 and abs(means[1][0] - 201) < 1, means


def test_streamed_splits_pickle_without_their_open_records(toy_dir):
  data = sources.load(_config(toy_dir, **{"data.stream": "always"}).data)
  split = data.val
  split.load(0)  # the records are open
  blob = pickle.dumps(split)
  assert b"ArrayRecord" not in blob and len(blob) < 4000
  copy = pickle.loads(blob)
  for i in range(len(split)):
    np.testing.assert_array_equal(copy.load(i), split.load(i))


def test_always_on_a_set_prepared_without_random_access_is_one_line(toy_dir,
                                                                   monkeypatch):
  """As TFDS answers for a set prepared as tfrecord: `always` names the fix, `auto`
  reads it into memory."""
  def no_random_access(builder, **kwargs):
    raise NotImplementedError("Random access data source for file format tfrecord")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "as_data_source", no_random_access)
  with pytest.raises(ValueError) as e:
    sources.load(_config(toy_dir, **{"data.stream": "always"}).data)
  msg = str(e.value)
  assert msg.startswith("data.stream=always: tfds:jaxreg_toy_images is prepared as ")
  assert "file_format=array_record" in msg and "\n" not in msg
  def as_dataset(builder, split, **kwargs):
    raise RuntimeError(f"as_dataset({split!r})")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "as_dataset", as_dataset)
  with pytest.raises(RuntimeError, match=r"as_dataset\('train'\)"):  # read, resident
    sources.load(_config(toy_dir, **{"data.stream": "auto",
                                     "data.resident_limit_mb": 1}).data)


@pytest.mark.slow
def test_a_set_really_prepared_as_tfrecord_streams_never(tmp_path):
  """The same, prepared for real in TFDS's tfrecord format (imports TensorFlow)."""
  JaxregToyImages(data_dir=str(tmp_path)).download_and_prepare(file_format="tfrecord")
  with pytest.raises(ValueError, match=r"data.stream=always: tfds:jaxreg_toy_images is "
                     r"prepared as tfrecord in .* file_format=array_record"):
    sources.load(_config(tmp_path, **{"data.stream": "always"}).data)
  auto = _config(tmp_path, **{"data.image_size": 64, "data.resident_limit_mb": 1})
  data = sources.load(auto.data)  # over the limit, yet resident
  assert data.image_shape == (64, 64, 3)
  assert not isinstance(data, stream.StreamedImageData)


# ------------------------------------------------------------------- the loader


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(toy_dir):
  from jaxreg import feeds
  split = sources.load(_config(toy_dir, **{"data.stream": "always"}).data).train
  index, mask = feeds.index_rows(np.random.default_rng(4).permutation(len(split)), 16)
  alone = list(stream.loader(split, index, mask, threads=2))
  workers = list(stream.loader(split, index, mask, workers=1, threads=1))
  assert len(alone) == len(workers) == len(index)
  for a, b in zip(alone, workers):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  np.testing.assert_array_equal(alone[0]["images"],
                                np.stack([split.load(i) for i in index[0]]))


# ------------------------------------------------------------------- a run


def _outputs(workdir):
  """Every metrics line (each loss, each epoch's counts) and the summary's results."""
  summary = records.read_summary(workdir)
  return ((workdir / "metrics.jsonl").read_text().splitlines(),
          {k: summary[k] for k in ("best_step", "evaluated_step", "epochs_completed",
                                   "val", "test")})


@pytest.mark.slow
def test_a_streamed_run_equals_the_resident_run(toy_dir, tmp_path):
  out = {}
  for mode in ("always", "never"):
    workdir = tmp_path / mode
    train.train_and_evaluate(_config(toy_dir, **{"data.stream": mode,
                                                 "train.epochs": 2}), workdir)
    out[mode] = _outputs(workdir)
  assert out["always"] == out["never"]
  assert len(out["always"][1]["test"]["per_class_accuracy"]) == CLASSES
