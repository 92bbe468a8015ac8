"""The ResNet family in the trainer: a tiny run end to end, BatchNorm statistics in
checkpoints, epoch timing and time-to-target across resume, device-resident batches, and
(slow) the augmentation effects the generated set is built to show."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import augment, checkpoint, evaluate, feeds, metrics, parallel, records, train


def _config(**overrides):
  from configs import resnet
  from jaxreg.sweep import config_for
  return config_for(resnet.get_config("tiny"), overrides)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("resnet") / "run"
  config = _config(**{"train.target_accuracy": 0.05})
  summary = train.train_and_evaluate(config, workdir)
  return config, workdir, summary


def test_tiny_run_writes_timing_and_evaluates_every_example_once(tiny_run):
  config, workdir, summary = tiny_run
  assert len(summary["epoch_seconds"]) == config.train.epochs == 2
  assert all(t > 0 for t in summary["epoch_seconds"])
  # Reached (target 5%) after the first epoch: its training time.
  assert summary["time_to_target_seconds"] == pytest.approx(summary["epoch_seconds"][0])
  assert summary["train_seconds"] == pytest.approx(sum(summary["epoch_seconds"]))
  n_test = 8 * config.data.shapes.test_per_class
  assert summary["test"]["num_examples"] == n_test   # 80 at eval batch 500: padded
  assert np.sum(summary["test"]["confusion_matrix"]) == n_test
  on_disk = json.loads((workdir / "summary.json").read_text())
  assert on_disk["epoch_seconds"] == summary["epoch_seconds"]


def test_image_run_predictions_reproduce_the_test_confusion(tiny_run):
  config, workdir, summary = tiny_run
  saved = np.load(workdir / records.PREDICTIONS_FILE)
  labels, preds = saved["labels"], saved["predictions"]
  assert len(preds) == 8 * config.data.shapes.test_per_class and preds.min() >= 0
  confusion = np.zeros((8, 8), int)
  np.add.at(confusion, (labels, preds), 1)
  assert confusion.tolist() == summary["test"]["confusion_matrix"]


def test_evaluate_recomputes_the_image_run(tiny_run):
  _, workdir, summary = tiny_run
  ev = evaluate.evaluate_workdir(workdir, "test", "best")
  assert ev["confusion_matrix"] == summary["test"]["confusion_matrix"]
  assert ev["accuracy"] == summary["test"]["accuracy"]


@pytest.mark.slow
def test_unreached_target_is_null(tmp_path):
  summary = train.train_and_evaluate(
      _config(**{"train.target_accuracy": 1.0, "train.epochs": 1,
                 "data.shapes.train_size": 96}), tmp_path / "w")
  assert summary["time_to_target_seconds"] is None
  assert len(summary["epoch_seconds"]) == 1


@pytest.mark.slow
def test_resume_keeps_epoch_seconds_and_time_to_target(tmp_path, monkeypatch):
  config = _config(**{"train.target_accuracy": 0.01, "data.shapes.train_size": 96})
  original = checkpoint.Checkpointer.save

  def save_then_stop(self, *args, **kwargs):  # a preemption right after epoch 1's save
    original(self, *args, **kwargs)
    raise KeyboardInterrupt
  monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_stop)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path / "w")
  monkeypatch.setattr(checkpoint.Checkpointer, "save", original)
  s = train.setup(config, tmp_path / "w")
  _, meta = train.restore(s, s.checkpointer.latest_step())
  s.checkpointer.close()
  assert len(meta["epoch_seconds"]) == 1
  summary = train.train_and_evaluate(config, tmp_path / "w")
  assert summary["epoch_seconds"][0] == meta["epoch_seconds"][0]
  assert len(summary["epoch_seconds"]) == 2
  assert summary["time_to_target_seconds"] == meta["time_to_target_seconds"]


@pytest.mark.slow
def test_checkpoint_restores_batch_stats_and_identical_logits(tmp_path):
  config = _config(**{"data.shapes.train_size": 96})
  s = train.setup(config, tmp_path / "w")
  assert "batch_stats" in s.state.model_state
  initial = jax.device_get(s.state.model_state)
  state, counts = s.state, parallel.put_replicated(
      metrics.zero_counts(s.data.num_classes), s.mesh)
  for batch in train.epoch_batches(s, 0):
    state, counts, _ = s.train_step(state, batch, counts)
  trained = jax.device_get(state.model_state)
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), initial, trained)
  assert max(jax.tree.leaves(moved)) > 0  # training updated the running statistics
  s.checkpointer.save(int(state.step), state, meta={"epoch": 1}, metrics={"accuracy": 0.5})
  s.checkpointer.wait()

  fresh = train.setup(config, tmp_path / "w")
  restored, _ = train.restore(fresh, int(state.step))
  images = augment.eval_images(jnp.asarray(s.data.val.images), s.feed.mean,
                                        s.feed.std)
  apply = lambda st: s.model.apply(train.eval_variables(st), {"images": images},  # noqa: E731
                                   train=False)[0]
  np.testing.assert_array_equal(np.asarray(apply(state)), np.asarray(apply(restored)))
  jax.tree.map(np.testing.assert_array_equal, trained, jax.device_get(restored.model_state))
  assert train.evaluate_params(s, state, "val") == train.evaluate_params(fresh, restored,
                                                                         "val")
  s.checkpointer.close()
  fresh.checkpointer.close()


@pytest.mark.slow
def test_padding_rows_of_the_last_batch_stay_out_of_batchnorm_statistics(tmp_path):
  """88 training images at batch 32: the last batch holds 24 real rows and 8 copies of
  one image. The statistics after it must be those of the 24 real rows alone."""
  config = _config(**{"data.shapes.train_size": 96, "train.batch_size": 32,
                      "data.augment.crop_padding": 0, "data.augment.flip": 0.0})
  s = train.setup(config, tmp_path / "w")
  assert len(s.data.train) == 88
  state, counts = s.state, parallel.put_replicated(
      metrics.zero_counts(s.data.num_classes), s.mesh)
  handles = list(train.epoch_batches(s, 0))
  for batch in handles[:-1]:
    state, counts, _ = s.train_step(state, batch, counts)
  before = jax.device_get(train.eval_variables(state))  # the step donates its state
  state, counts, _ = s.train_step(state, handles[-1], counts)
  index, mask = (np.asarray(handles[-1][k])[-1] for k in ("index", "mask"))
  assert mask.sum() == 24
  real = augment.eval_images(jnp.asarray(s.data.train.images[index[mask]]),
                                      s.feed.mean, s.feed.std)
  _, alone = jax.jit(lambda v, x: s.model.apply(v, {"images": x}, train=True))(before,
                                                                             real)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               jax.device_get(state.model_state["batch_stats"]), alone["batch_stats"])
  s.checkpointer.close()


def test_epoch_batches_put_the_order_once_and_gather_in_jit(tmp_path):
  config = _config(**{"data.shapes.train_size": 96, "train.batch_size": 32})
  s = train.setup(config, tmp_path / "w")
  handles = list(train.epoch_batches(s, 0))
  n = len(s.data.train)
  assert len(handles) == -(-n // 32) == s.steps_per_epoch
  assert len({id(h) for h in handles}) == 1  # one device put for the whole epoch
  order = np.random.default_rng([config.seed, 0]).permutation(n)
  index, mask = (np.asarray(handles[0][k]) for k in ("index", "mask"))
  np.testing.assert_array_equal(index.reshape(-1)[mask.reshape(-1)], order)
  assert mask.sum() == n
  s.checkpointer.close()


def test_index_rows_pads_and_masks_the_last_row():
  idx, mask = feeds.index_rows(np.array([4, 2, 0, 3, 1]), 2)
  assert idx.tolist() == [[4, 2], [0, 3], [1, 4]]  # filler: the order's first
  assert mask.tolist() == [[True, True], [True, True], [True, False]]


def _per_class(summary):
  names = summary["test"]["class_names"]
  acc = dict(zip(names, summary["test"]["per_class_accuracy"]))
  from jaxreg.data import shapes
  return (np.mean([acc[c] for c in shapes.COLOUR_CLASSES]),
          np.mean([acc[c] for c in shapes.SHAPE_CLASSES]))


@pytest.mark.slow
def test_colour_jitter_hurts_colour_classes_and_crops_hurt_shape_classes(tmp_path):
  """Two tiny models on the generated set: one trained with hue + saturation jitter, one
  with aggressive random resized crops. Colour classes lose under jitter (hue is all that
  tells them apart), shape classes under crops (fragments of outlines are ambiguous)."""
  base = {"data.shapes.train_size": 1200, "data.shapes.test_per_class": 50,
          "data.augment.crop_padding": 0, "data.augment.flip": 0.0, "train.epochs": 4}
  jitter = train.train_and_evaluate(
      _config(**base, **{"data.augment.hue": 0.5, "data.augment.saturation": 0.9}),
      tmp_path / "jitter")
  crop = train.train_and_evaluate(
      _config(**base, **{"data.augment.resized_crop_min_scale": 0.05}), tmp_path / "crop")
  jitter_colour, jitter_shape = _per_class(jitter)
  crop_colour, crop_shape = _per_class(crop)
  assert crop_colour - jitter_colour > 0.1, (jitter_colour, crop_colour)
  assert jitter_shape - crop_shape > 0.05, (jitter_shape, crop_shape)


FOUR_DEVICES = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
from tests.test_resnet_train import _config
from jaxreg import train
assert len(jax.devices()) == 4
overrides = {"data.shapes.train_size": 192, "train.epochs": 1, "train.batch_size": 32,
             "data.augment.hue": 0.1}
out = {}
for n in (1, 4):
  workdir = f"{sys.argv[2]}/n{n}"
  summary = train.train_and_evaluate(_config(**overrides), workdir, devices=jax.devices()[:n])
  s = train.setup(_config(**overrides), workdir, devices=jax.devices()[:n])
  state, _ = train.restore(s, s.checkpointer.latest_step())
  out[n] = {"leaves": [np.asarray(x).tolist() for x in
                       jax.tree.leaves((state.params, state.model_state))],
            "test": summary["test"]["confusion_matrix"]}
  s.checkpointer.close()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_four_devices_match_one_with_global_batch_norm(tmp_path):
  """The batch is split over 4 devices, BatchNorm statistics are over the global batch:
  parameters and running statistics match the 1-device run."""
  import subprocess
  import sys
  from tests.conftest import ROOT, python_env
  env = python_env(XLA_FLAGS="--xla_force_host_platform_device_count=4",
                   JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(ROOT), str(tmp_path)],
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for a, b in zip(out["1"]["leaves"], out["4"]["leaves"]):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=2e-3, atol=2e-4)
  assert abs(np.trace(np.array(out["1"]["test"])) - np.trace(np.array(out["4"]["test"]))) <= 2
