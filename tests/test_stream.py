"""Streamed image folders (jaxreg/data/stream.py, feeds.StreamFeed) and the ImageNet
layout (jaxreg/data/folders.py): a run on a generated 200-class folder larger than
data.resident_limit_mb streams, equals the resident run of the same config, and resumes
mid-epoch to the same end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxreg import config as config_lib, feeds, preemption, train
from jaxreg.data import folders, sources, stream
from tests import imagenet_folder


def _config(root, tmp, **overrides):
  from configs import resnet
  from jaxreg.sweep import config_for
  return config_for(resnet.get_config("tiny"), {
      "data.source": "image_folder", "data.root": str(root), "data.image_size": 16,
      "data.cache_dir": str(tmp / "cache"), "data.eval_batch_size": 128,
      "train.batch_size": 64, "data.augment.crop_padding": 2, "data.augment.flip": 0.5,
      **overrides})


# ------------------------------------------------------------------- the layout


def test_imagenet_flat_val_is_the_test_split_labelled_by_loc_val_solution(tmp_path):
  root = imagenet_folder.make(tmp_path / "inet", classes=5, train_per_class=3,
                              val_per_class=2)
  raw = folders.read(_config(root, tmp_path).data)
  assert raw.class_names == [imagenet_folder.wnid(c) for c in range(5)]
  assert len(raw.train) == 15 and len(raw.test) == 10
  # val files are numbered class by class: 2 per class, in order
  assert raw.test.labels.tolist() == [c for c in range(5) for _ in range(2)]
  assert [p.parent.name for p in raw.test.files] == ["val"] * 10


def test_imagenet_val_in_class_folders_reads_like_train(tmp_path):
  root = imagenet_folder.make(tmp_path / "inet", classes=4, train_per_class=2,
                              flat_val=False)
  raw = folders.read(_config(root, tmp_path).data)
  assert raw.test.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_a_val_file_missing_from_the_labels_file_is_one_line(tmp_path):
  root = imagenet_folder.make(tmp_path / "inet", classes=3, train_per_class=2)
  csv = root / "LOC_val_solution.csv"
  csv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")
  with pytest.raises(ValueError, match=r"no row for 'ILSVRC2012_val_00000006' in .*"
                                       r"LOC_val_solution.csv"):
    folders.read(_config(root, tmp_path).data)


# ------------------------------------------------------------------- the choice


def test_the_choice_follows_data_stream_and_the_resident_limit(tmp_path):
  root = imagenet_folder.make(tmp_path / "inet", classes=10, train_per_class=10)
  # 120 files x 16 x 16 x 3 bytes = 90 KiB decoded
  default = sources.load(_config(root, tmp_path).data)  # limit: half the host's RAM
  assert not isinstance(default, stream.StreamedImageData)
  small = _config(root, tmp_path, **{"data.resident_limit_mb": 1})
  assert not isinstance(sources.load(small.data), stream.StreamedImageData)
  tight = _config(root, tmp_path, **{"data.image_size": 300,  # 120 x 270 KB > 1 MiB
                                     "data.resident_limit_mb": 1})
  assert stream.chosen(folders.read(tight.data), tight.data)
  tight.data.stream = "never"
  assert not stream.chosen(folders.read(tight.data), tight.data)
  streamed = sources.load(_config(root, tmp_path, **{"data.stream": "always"}).data)
  resident = sources.load(_config(root, tmp_path, **{"data.stream": "never"}).data)
  assert isinstance(streamed, stream.StreamedImageData)
  # the same examples under the same indices, pixels and all
  for name in ("train", "val", "test"):
    s, r = streamed.split(name), resident.split(name)
    np.testing.assert_array_equal(s.labels, r.labels)
    np.testing.assert_array_equal(np.stack([s.load(i) for i in range(len(s))]),
                                  r.images)


def test_always_on_a_source_read_into_memory_is_one_line(tmp_path):
  from configs import resnet
  c = resnet.get_config("tiny")
  c.data.stream = "always"
  with pytest.raises(ValueError, match="data.stream=always: data.source='shapes'"):
    sources.load(c.data)


def test_the_modes_are_the_schemas():
  assert stream.MODES == config_lib.STREAM_MODES
  c = config_lib.get_base_config()
  c.data.stream = "sometimes"
  with pytest.raises(config_lib.ConfigError, match="data.stream"):
    config_lib.validate(c)


def test_the_default_limit_is_half_of_host_ram_on_cpu():
  import os
  c = config_lib.get_base_config().data
  ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  assert stream.resident_limit_bytes(c) == ram // 2  # CPU: memory_stats() is None
  c.resident_limit_mb = 3
  assert stream.resident_limit_bytes(c) == 3 << 20


# ------------------------------------------------------------------- the loader


def _mixed_mode_folder(root, grey_first=False):
  """train/test class folders of RGB JPEGs with greyscale (mode L) JPEGs among them;
  `grey_first`: the first training file is greyscale (a greyscale set with colour
  images in it)."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for split, n in (("train", 5), ("test", 3)):
    for c in range(3):
      d = root / split / f"c{c}"
      d.mkdir(parents=True)
      for i in range(n):
        grey = (i == 2) if not grey_first else (i != 1)
        a = rng.integers(0, 256, (12, 12) if grey else (12, 12, 3)).astype(np.uint8)
        Image.fromarray(a).save(d / f"{i}.jpg")
  return root


def test_greyscale_images_in_a_colour_folder_become_rgb_in_both_paths(tmp_path):
  """ImageNet's training set holds greyscale JPEGs: the resident path refused such a
  folder ("images have different shapes"), the streamed one failed mid-epoch when a
  batch reached one. Both now give them three equal channels, the same pixels."""
  root = _mixed_mode_folder(tmp_path / "mixed")
  resident, streamed = (sources.load(_config(root, tmp_path, **{
      "data.image_size": 8, "data.stream": mode}).data) for mode in ("never", "always"))
  assert isinstance(streamed, stream.StreamedImageData)
  greys = 0
  for name in ("train", "val", "test"):
    r, s = resident.split(name), streamed.split(name)
    np.testing.assert_array_equal(r.labels, s.labels)
    np.testing.assert_array_equal(r.images, s.images[:])
    assert r.images.shape[1:] == (8, 8, 3)
    for a, f in zip(r.images, s.examples.files):
      if f.endswith("/2.jpg"):  # a greyscale file: three equal channels
        greys += 1
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
  assert greys == 6  # one per class in train (+ val) and in test


def test_a_colour_image_in_a_greyscale_folder_is_one_line_in_both_paths(tmp_path):
  root = _mixed_mode_folder(tmp_path / "mixed", grey_first=True)
  for mode in ("never", "always"):
    with pytest.raises(ValueError, match=r"an image with 3 channels in a set of "
                                         r"1-channel images"):
      data = sources.load(_config(root, tmp_path, **{"data.image_size": 8,
                                                     "data.stream": mode}).data)
      data.train.images[:]  # a streamed split decodes when read


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("small")
  root = imagenet_folder.make(tmp / "inet", classes=20, train_per_class=6)
  return sources.load(_config(root, tmp, **{"data.stream": "always"}).data)


def test_batches_follow_the_rows_from_any_start_and_split_over_processes(small_set):
  split = small_set.train
  order = np.random.default_rng(3).permutation(len(split))
  index, mask = feeds.index_rows(order, 16)  # last row padded with order[0], masked
  full = list(stream.loader(split, index, mask, threads=2))
  assert len(full) == len(index)
  for row, batch in enumerate(full):
    np.testing.assert_array_equal(batch["labels"], split.labels[index[row]])
    np.testing.assert_array_equal(batch["mask"], mask[row])
    np.testing.assert_array_equal(
        batch["images"], np.stack([split.load(i) for i in index[row]]))
  later = list(stream.loader(split, index, mask, start=2, threads=2))
  assert len(later) == len(index) - 2
  for a, b in zip(later, full[2:]):
    np.testing.assert_array_equal(a["images"], b["images"])
  halves = [list(stream.loader(split, index, mask, 1, 3, threads=1, process_index=p,
                               process_count=2)) for p in (0, 1)]
  for a, b, whole in zip(*halves, full[1:3]):
    assert len(a["labels"]) == len(b["labels"]) == 8
    np.testing.assert_array_equal(np.concatenate([a["images"], b["images"]]),
                                  whole["images"])


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(small_set):
  split = small_set.train
  index, mask = feeds.index_rows(np.random.default_rng(4).permutation(len(split)), 16)
  alone = list(stream.loader(split, index, mask, 1, threads=2))
  workers = list(stream.loader(split, index, mask, 1, workers=2, threads=1))
  assert len(alone) == len(workers) == len(index) - 1
  for a, b in zip(alone, workers):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_crop_boxes_lie_in_the_image_at_the_asked_area_and_ratio():
  rng = np.random.default_rng(0)
  for height, width, min_scale in ((100, 100, 0.08), (60, 200, 0.3), (20, 12, 0.5),
                                   (7, 7, 0.9)):
    fractions = []
    for _ in range(300):
      top, left, h, w = stream.crop_box(height, width, min_scale, rng)
      assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
      assert h > 0 and w > 0
      fractions.append(h * w / (height * width))
    if (height, width) == (100, 100):  # rounding aside, area in [min_scale, 1]
      assert min(fractions) >= min_scale - 0.01 and max(fractions) <= 1.0
      assert np.mean(fractions) == pytest.approx((1 + min_scale) / 2, abs=0.06)
  # a 1:10 strip: every draw misses, the centre crop at ratio 3/4
  assert stream.crop_box(200, 20, 0.9, rng) == (86, 0, 27, 20)


def test_host_crops_are_drawn_from_the_order_and_the_place_only(small_set):
  """data.stream_crop_min_scale: the same crops from any start, in any split over
  processes, and in worker processes (so a resumed run draws what it would have);
  another order (seed or epoch) draws others."""
  split = small_set.train
  order = np.random.default_rng(6).permutation(len(split))
  index, mask = feeds.index_rows(order, 16)
  crop = (0.2, stream.order_seed(order), 0)
  full = list(stream.loader(split, index, mask, threads=2, crop=crop))
  plain = list(stream.loader(split, index, mask, threads=2))
  assert full[0]["images"].shape == plain[0]["images"].shape
  assert not np.array_equal(full[0]["images"], plain[0]["images"])
  for a, b in zip(list(stream.loader(split, index, mask, start=2, threads=1,
                                     crop=crop)), full[2:]):
    np.testing.assert_array_equal(a["images"], b["images"])
  halves = [list(stream.loader(split, index, mask, 1, 3, threads=1, process_index=p,
                               process_count=2, crop=crop)) for p in (0, 1)]
  for a, b, whole in zip(*halves, full[1:3]):
    np.testing.assert_array_equal(np.concatenate([a["images"], b["images"]]),
                                  whole["images"])
  other = list(stream.loader(split, index, mask, threads=1,
                             crop=(0.2, stream.order_seed(order[::-1]), 0)))
  assert not np.array_equal(other[0]["images"], full[0]["images"])
  # two epochs that drew the same order (a tiny set) still crop differently
  later = list(stream.loader(split, index, mask, stop=1, threads=1,
                             crop=(0.2, stream.order_seed(order), 1)))
  assert not np.array_equal(later[0]["images"], full[0]["images"])
  workers = list(stream.loader(split, index, mask, workers=1, threads=1, crop=crop))
  for a, b in zip(workers, full):
    np.testing.assert_array_equal(a["images"], b["images"])


def test_host_crops_keep_a_non_square_sets_shape_and_auto_streams_for_them(tmp_path):
  """data.image_size=0 on 24x32 files: a crop is resized to 24x32, not to a square
  (which failed mid-run); data.stream=auto streams a set asking for host crops, so
  the run is never refused later on a machine with more memory."""
  from PIL import Image
  root = tmp_path / "rect"
  rng = np.random.default_rng(0)
  for split, n in (("train", 4), ("test", 1)):
    for c in range(2):
      (root / split / f"c{c}").mkdir(parents=True)
      for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3)).astype(np.uint8)).save(
            root / split / f"c{c}" / f"{i}.png")
  data = sources.load(_config(root, tmp_path, **{
      "data.image_size": 0, "data.stream": "auto", "data.resident_limit_mb": 1000,
      "data.stream_crop_min_scale": 0.3}).data)
  assert isinstance(data, stream.StreamedImageData) and data.image_shape == (24, 32, 3)
  index, mask = feeds.index_rows(np.arange(len(data.train)), 4)
  for batch in stream.loader(data.train, index, mask, threads=1, crop=(0.3, 5, 0)):
    assert batch["images"].shape == (4, 24, 32, 3)


def test_16_bit_and_alpha_greyscale_files_decode_as_greyscale(tmp_path):
  """PIL's convert('RGB') clipped 16-bit PNGs to white; an LA file became RGB."""
  from PIL import Image
  from jaxreg.data import images
  Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 4096).save(
      tmp_path / "i16.png")
  a = images.decode(tmp_path / "i16.png")
  assert a.shape == (4, 4, 1) and a[0, :, 0].tolist() == [0, 16, 32, 48]
  Image.fromarray(np.stack([np.full((4, 4), 77, np.uint8),
                            np.full((4, 4), 9, np.uint8)], -1), "LA").save(
      tmp_path / "la.png")
  a = images.decode(tmp_path / "la.png")
  assert a.shape == (4, 4, 1) and (a == 77).all()


def test_host_crops_on_a_resident_run_are_one_line(tmp_path):
  root = imagenet_folder.make(tmp_path / "inet", classes=3, train_per_class=2)
  with pytest.raises(ValueError, match=r"data.stream_crop_min_scale=0.5 crops each file "
                                       r"on the host: it needs a streamed run"):
    sources.load(_config(root, tmp_path, **{"data.stream": "never",
                                            "data.stream_crop_min_scale": 0.5}).data)


def _segments() -> set:
  """Names of the POSIX shared-memory segments grain's workers create (psm_*)."""
  import os
  return {f for f in os.listdir("/dev/shm") if f.startswith("psm_")}


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.isdir("/dev/shm"), reason="no /dev/shm")
def test_worker_batches_leave_no_shared_memory_behind(small_set):
  """Batches from worker processes, kept on a CPU device after the epoch (as a step
  keeps its inputs alive), and a loader stopped early: no segment outlives them. The
  previous loader handed over shared-memory arrays that device_put aliased, and grain's
  iterators kept their last batches in reference cycles: Python warned of dozens of
  leaked segments at exit."""
  import jax
  split = small_set.train
  index, mask = feeds.index_rows(np.random.default_rng(5).permutation(len(split)), 16)
  before = _segments()
  kept = [jax.device_put(b) for b in stream.loader(split, index, mask, workers=1,
                                                      threads=1)]
  assert len(kept) == len(index)
  for batch in stream.loader(split, index, mask, workers=1, threads=1):
    break
  del batch
  assert _segments() - before == set()
  np.testing.assert_array_equal(np.asarray(kept[0]["labels"]), split.labels[index[0]])


# --------------------------------------------------------------- 200-class runs

EPOCHS = 2
RUN = {"data.resident_limit_mb": 1, "data.train_per_class": 6, "train.epochs": EPOCHS}
# 200 classes x (12 train + 2 val) JPEGs; 2,800 x 16 x 16 x 3 = 2.1 MiB decoded > 1 MiB.


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("many")
  return imagenet_folder.make(tmp / "inet", classes=200, train_per_class=12), tmp


def _records(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text()
          .splitlines()]


def _results(workdir):
  s = json.loads((workdir / "summary.json").read_text())
  return {k: s[k] for k in ("best_step", "evaluated_step", "epochs_completed", "val",
                            "test")}


class _CountSteps:
  """Counts StreamFeed.train_step calls; asks for preemption after step `stop_at`."""

  def __init__(self, monkeypatch, stop_at=None):
    self.calls, self.stop_at = 0, stop_at
    original = feeds.StreamFeed.train_step

    def counted(feed, state, batch, counts):
      self.calls += 1
      if self.calls == self.stop_at:
        preemption.request()
      return original(feed, state, batch, counts)
    monkeypatch.setattr(feeds.StreamFeed, "train_step", counted)


@pytest.fixture(scope="module")
def streamed_run(many_classes):
  root, tmp = many_classes
  config = _config(root, tmp, **RUN)
  workdir = tmp / "streamed"
  with pytest.MonkeyPatch.context() as mp:
    steps = _CountSteps(mp)
    train.train_and_evaluate(config, workdir)
  return config, workdir, steps.calls


@pytest.mark.slow
def test_a_folder_over_the_limit_streams_and_equals_the_resident_run(many_classes,
                                                                      streamed_run):
  root, tmp = many_classes
  config, workdir, calls = streamed_run
  data = sources.load(config.data)
  assert isinstance(data, stream.StreamedImageData)  # auto: 2.1 MiB > 1 MiB
  spe = -(-len(data.train) // config.train.batch_size)
  assert calls == EPOCHS * spe  # every step of the run was a streamed one
  resident = tmp / "resident"
  train.train_and_evaluate(_config(root, tmp, **RUN, **{"data.stream": "never"}),
                           resident)
  assert _records(workdir) == _records(resident)  # every loss, every epoch's counts
  assert _results(workdir) == _results(resident)
  assert len(json.loads((workdir / "summary.json").read_text())["test"][
      "per_class_accuracy"]) == 200


@pytest.mark.slow
def test_a_streamed_run_stopped_mid_epoch_resumes_to_the_same_end(many_classes,
                                                                  streamed_run,
                                                                  monkeypatch):
  from jaxreg import checkpoint
  root, tmp = many_classes
  config, uninterrupted, calls = streamed_run
  spe = calls // EPOCHS
  stop = spe + spe // 2  # in the second epoch
  workdir = tmp / "stopped"
  preemption.clear()
  steps = _CountSteps(monkeypatch, stop_at=stop)
  try:
    with pytest.raises(preemption.Preempted) as info:
      train.train_and_evaluate(config, workdir)
  finally:
    preemption.clear()
  assert info.value.step == stop
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints")
  assert ckpt.latest_step() == stop and stop % spe  # mid-epoch
  ckpt.close()
  steps.calls, steps.stop_at = 0, None
  train.train_and_evaluate(config, workdir)
  assert steps.calls == EPOCHS * spe - stop  # resumed at the step, not the epoch start
  assert _records(workdir) == _records(uninterrupted)
  assert _results(workdir) == _results(uninterrupted)


@pytest.mark.slow
def test_predicting_a_streamed_runs_split_reproduces_its_test_confusion(streamed_run):
  from jaxreg import inference, records
  _, workdir, _ = streamed_run
  p = inference.load(workdir)
  labels, _, classes = inference.predict_split(p, "test")  # decoded slice by slice
  confusion = np.zeros((200, 200), int)
  np.add.at(confusion, (labels, classes), 1)
  assert confusion.tolist() == records.read_summary(workdir)["test"]["confusion_matrix"]


@pytest.mark.slow
def test_a_streamed_group_equals_the_resident_group(tmp_path):
  """Two members (seeds 0 and 1: each its own order, a [K, B, ...] batch) trained as
  one vmapped group, streamed and resident."""
  root = imagenet_folder.make(tmp_path / "inet", classes=12, train_per_class=8)
  out = {}
  for mode in ("always", "never"):
    configs = [_config(root, tmp_path, **{"data.stream": mode, "seed": seed,
                                          "train.batch_size": 32, "train.epochs": 1})
               for seed in (0, 1)]
    workdirs = [tmp_path / mode / str(seed) for seed in (0, 1)]
    train.run(configs, workdirs)
    out[mode] = [(_records(w), _results(w)) for w in workdirs]
  assert out["always"] == out["never"]


@pytest.mark.slow
def test_host_crops_resume_mid_epoch_and_a_group_draws_its_runs_crops(tmp_path,
                                                                      monkeypatch):
  """data.stream_crop_min_scale in runs: stopped mid-epoch and resumed, a run ends as
  it would have; two seeds as one vmapped group end as their runs alone (each
  member's crops are drawn from its own order)."""
  root = imagenet_folder.make(tmp_path / "inet", classes=12, train_per_class=8, side=28)
  configs = [_config(root, tmp_path, **{"data.stream": "always", "seed": seed,
                                        "data.stream_crop_min_scale": 0.3,
                                        "train.batch_size": 32, "train.epochs": 2})
             for seed in (0, 1)]
  alone = [tmp_path / "alone" / str(seed) for seed in (0, 1)]
  for config, workdir in zip(configs, alone):
    train.train_and_evaluate(config, workdir)
  group = [tmp_path / "group" / str(seed) for seed in (0, 1)]
  train.run(configs, group)
  for a, g in zip(alone, group):  # vmapped: equal to float rounding
    ra, rg = _records(a), _records(g)
    assert [(r["split"], r["step"]) for r in rg] == [(r["split"], r["step"]) for r in ra]
    np.testing.assert_allclose([r["loss"] for r in rg], [r["loss"] for r in ra],
                               rtol=1e-4)
    assert _results(g)["test"]["confusion_matrix"] == \
        _results(a)["test"]["confusion_matrix"]
  # a resident-sized crop-free run differs: the crops are really drawn
  plain = tmp_path / "plain"
  train.train_and_evaluate(_config(root, tmp_path, **{
      "data.stream": "always", "train.batch_size": 32, "train.epochs": 2}), plain)
  assert _records(plain) != _records(alone[0])
  # stopped in the second epoch, resumed
  spe = -(-len(sources.load(configs[0].data).train) // 32)
  stopped = tmp_path / "stopped"
  preemption.clear()
  steps = _CountSteps(monkeypatch, stop_at=spe + 1)
  try:
    with pytest.raises(preemption.Preempted):
      train.train_and_evaluate(configs[0], stopped)
  finally:
    preemption.clear()
  steps.stop_at = None
  train.train_and_evaluate(configs[0], stopped)
  assert _records(stopped) == _records(alone[0])
  assert _results(stopped) == _results(alone[0])
