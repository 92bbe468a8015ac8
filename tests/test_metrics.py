"""Tests for jaxreg.metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import metrics

# One shared jitted function so compiled shapes are reused across tests.
_jit_counts = jax.jit(metrics.batch_counts, static_argnums=3)


def _random_batch(rng, b, c):
  logits = rng.normal(size=(b, c)).astype(np.float32)
  labels = rng.integers(0, c, size=b).astype(np.int32)
  return logits, labels


def _np_reference(logits, labels, c):
  """Confusion matrix and per-class loss sum computed independently in numpy."""
  conf = np.zeros((c, c), np.int64)
  np.add.at(conf, (labels, logits.argmax(-1)), 1)
  x = logits.astype(np.float64)
  logz = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
  loss = logz - x[np.arange(len(labels)), labels]
  loss_sum = np.zeros(c, np.float64)
  np.add.at(loss_sum, labels, loss)
  return conf, loss_sum


def _assert_counts_equal(got, conf, loss_sum):
  assert got["confusion"].dtype == jnp.int32
  assert got["loss_sum"].dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(got["confusion"]), conf)
  np.testing.assert_allclose(np.asarray(got["loss_sum"]), loss_sum, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_jit", [False, True])
def test_batch_counts_matches_numpy(use_jit):
  rng = np.random.default_rng(0)
  c = 7
  logits, labels = _random_batch(rng, 301, c)
  fn = _jit_counts if use_jit else metrics.batch_counts
  got = fn(logits, labels, np.ones(len(labels), bool), c)
  _assert_counts_equal(got, *_np_reference(logits, labels, c))
  assert int(got["confusion"].sum()) == 301


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("mask_dtype", [bool, np.float32])
def test_padding_is_ignored(mask_dtype, use_jit):
  rng = np.random.default_rng(1)
  c = 5
  logits, labels = _random_batch(rng, 50, c)
  n_pad = 14
  # Garbage in padding: out-of-range and negative labels, inf/nan/huge logits.
  pad_labels = np.array([-1, c, 10**6, -(10**6), 0, 1, 2, 3, 4, c + 1, -7, 99, 0, 3], np.int32)
  pad_logits = rng.normal(size=(n_pad, c)).astype(np.float32) * 1e30
  pad_logits[0] = np.nan
  pad_logits[1] = np.inf
  pad_logits[2, 0] = -np.inf
  # Interleave padding rows with real rows so masking is not just "take a prefix".
  order = rng.permutation(50 + n_pad)
  all_logits = np.concatenate([logits, pad_logits])[order]
  all_labels = np.concatenate([labels, pad_labels])[order]
  mask = np.concatenate([np.ones(50), np.zeros(n_pad)]).astype(mask_dtype)[order]

  # Eager too: under jit XLA may turn `x * mask` into a select and hide NaN * 0.
  fn = _jit_counts if use_jit else metrics.batch_counts
  padded = fn(all_logits, all_labels, mask, c)
  unpadded = fn(logits, labels, np.ones(50, bool), c)
  np.testing.assert_array_equal(np.asarray(padded["confusion"]), np.asarray(unpadded["confusion"]))
  # Same examples, possibly summed in a different order.
  np.testing.assert_allclose(np.asarray(padded["loss_sum"]), np.asarray(unpadded["loss_sum"]),
                             rtol=1e-6)
  assert np.all(np.isfinite(np.asarray(padded["loss_sum"])))


def test_all_masked_batch_is_zero():
  c = 3
  got = metrics.batch_counts(np.full((4, c), np.nan, np.float32), np.array([9, -1, 0, 2]),
                             np.zeros(4, bool), c)
  np.testing.assert_array_equal(np.asarray(got["confusion"]), 0)
  np.testing.assert_array_equal(np.asarray(got["loss_sum"]), 0.0)


def test_accumulating_uneven_batches_equals_one_batch():
  rng = np.random.default_rng(2)
  c = 6
  logits, labels = _random_batch(rng, 200, c)
  fn = _jit_counts
  acc = metrics.zero_counts(c)
  assert acc["confusion"].dtype == jnp.int32 and acc["confusion"].shape == (c, c)
  assert acc["loss_sum"].dtype == jnp.float32 and acc["loss_sum"].shape == (c,)
  bounds = [0, 1, 87, 88, 200]  # sizes 1, 86, 1, 112
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    acc = jax.jit(metrics.add_counts)(acc, fn(logits[lo:hi], labels[lo:hi], np.ones(hi - lo), c))
  whole = fn(logits, labels, np.ones(200), c)
  np.testing.assert_array_equal(np.asarray(acc["confusion"]), np.asarray(whole["confusion"]))
  np.testing.assert_allclose(np.asarray(acc["loss_sum"]), np.asarray(whole["loss_sum"]), rtol=1e-5)
  assert acc["confusion"].dtype == jnp.int32


def test_unmasked_out_of_range_labels_are_dropped():
  # Documented behaviour: such rows cannot be placed in the confusion matrix,
  # so they count nowhere (num_examples then reveals the drop).
  c = 3
  logits = np.eye(c, dtype=np.float32)[[0, 1, 2, 0]]
  got = metrics.batch_counts(logits, np.array([0, 1, c, -1]), np.ones(4, bool), c)
  np.testing.assert_array_equal(np.asarray(got["confusion"]), np.diag([1, 1, 0]))
  assert np.all(np.isfinite(np.asarray(got["loss_sum"])))
  assert float(got["loss_sum"][2]) == 0.0


def test_batch_counts_rejects_wrong_num_classes():
  with pytest.raises(ValueError):
    metrics.batch_counts(np.zeros((4, 3)), np.zeros(4, int), np.ones(4), 5)


def _counts(confusion, loss_sum):
  return {"confusion": np.asarray(confusion, np.int32), "loss_sum": np.asarray(loss_sum, np.float32)}


def test_summarize_hand_computed():
  # rows = true, cols = predicted
  conf = [[5, 1, 0],   # class a: 6 examples, 5 right
          [2, 3, 1],   # class b: 6 examples, 3 right
          [0, 0, 4]]   # class c: 4 examples, 4 right
  ev = metrics.summarize(_counts(conf, [3.0, 6.0, 2.0]), ["a", "b", "c"])
  assert ev["num_examples"] == 16
  assert ev["loss"] == pytest.approx(11.0 / 16)
  assert ev["accuracy"] == pytest.approx(12 / 16)
  assert ev["per_class_count"] == [6, 6, 4]
  assert ev["per_class_accuracy"] == pytest.approx([5 / 6, 3 / 6, 1.0])
  # predicted counts: a=7, b=4, c=5
  assert ev["per_class_precision"] == pytest.approx([5 / 7, 3 / 4, 4 / 5])
  # F1 = 2PR/(P+R)
  f1_a = 2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6)   # = 10/13
  f1_b = 2 * (3 / 4) * (1 / 2) / (3 / 4 + 1 / 2)   # = 0.6
  f1_c = 2 * (4 / 5) * 1.0 / (4 / 5 + 1.0)         # = 8/9
  assert ev["per_class_f1"] == pytest.approx([f1_a, f1_b, f1_c])
  assert ev["per_class_f1"] == pytest.approx([10 / 13, 0.6, 8 / 9])
  assert ev["per_class_loss"] == pytest.approx([0.5, 1.0, 0.5])
  assert ev["balanced_accuracy"] == pytest.approx((5 / 6 + 0.5 + 1.0) / 3)
  assert ev["worst_class_accuracy"] == pytest.approx(0.5)
  assert ev["macro_f1"] == pytest.approx((10 / 13 + 0.6 + 8 / 9) / 3)
  assert ev["confusion_matrix"] == conf
  assert ev["class_names"] == ["a", "b", "c"]


def test_summarize_matches_sklearn_style_formulas():
  # sklearn is not installed; recompute its definitions from label vectors.
  rng = np.random.default_rng(3)
  c = 8
  logits, labels = _random_batch(rng, 500, c)
  logits[:, 2] += 1.0  # skew predictions so precision != recall
  preds = logits.argmax(-1)
  ev = metrics.summarize(
      jax.device_get(metrics.batch_counts(logits, labels, np.ones(500, bool), c)),
      [f"c{k}" for k in range(c)])
  recall, precision, f1 = [], [], []
  for k in range(c):
    tp = np.sum((labels == k) & (preds == k))
    fp = np.sum((labels != k) & (preds == k))
    fn = np.sum((labels == k) & (preds != k))
    recall.append(tp / (tp + fn))
    precision.append(tp / (tp + fp))
    f1.append(2 * tp / (2 * tp + fp + fn))
  assert ev["accuracy"] == pytest.approx(np.mean(labels == preds))
  assert ev["per_class_accuracy"] == pytest.approx(recall)
  assert ev["per_class_precision"] == pytest.approx(precision)
  assert ev["per_class_f1"] == pytest.approx(f1)
  assert ev["balanced_accuracy"] == pytest.approx(np.mean(recall))
  assert ev["macro_f1"] == pytest.approx(np.mean(f1))
  assert ev["worst_class_accuracy"] == pytest.approx(np.min(recall))
  _, loss_sum = _np_reference(logits, labels, c)
  assert ev["loss"] == pytest.approx(loss_sum.sum() / 500, rel=1e-5)
  assert ev["per_class_loss"] == pytest.approx(loss_sum / np.bincount(labels, minlength=c), rel=1e-5)


def test_class_without_examples_is_excluded():
  conf = [[3, 0, 0, 1],   # a: acc 0.75
          [0, 0, 0, 0],   # b: no examples, never predicted
          [1, 0, 1, 2],   # c: acc 0.25
          [0, 0, 0, 0]]   # d: no examples but predicted 3 times (false positives)
  ev = metrics.summarize(_counts(conf, [1.0, 0.0, 2.0, 0.0]), ["a", "b", "c", "d"])
  assert ev["per_class_count"] == [4, 0, 4, 0]
  assert ev["per_class_accuracy"] == [pytest.approx(0.75), None, pytest.approx(0.25), None]
  assert ev["per_class_f1"][1] is None and ev["per_class_f1"][3] is None
  assert ev["per_class_loss"][1] is None and ev["per_class_loss"][3] is None
  assert ev["per_class_precision"][1] is None          # never predicted
  assert ev["per_class_precision"][3] == 0.0           # predicted, never right
  # a: P=3/4, R=3/4 -> 0.75; c: P=1/1, R=1/4 -> 0.4
  assert ev["per_class_f1"][0] == pytest.approx(0.75)
  assert ev["per_class_f1"][2] == pytest.approx(0.4)
  assert ev["balanced_accuracy"] == pytest.approx(0.5)
  assert ev["worst_class_accuracy"] == pytest.approx(0.25)
  assert ev["macro_f1"] == pytest.approx((0.75 + 0.4) / 2)
  assert ev["accuracy"] == pytest.approx(4 / 8)
  table = metrics.format_table(ev)
  assert "(c)" in table


def test_f1_is_zero_when_class_has_examples_but_no_hits():
  conf = [[2, 0], [3, 0]]  # class b has examples, never predicted
  ev = metrics.summarize(_counts(conf, [0.0, 0.0]), ["a", "b"])
  assert ev["per_class_f1"][1] == 0.0
  assert ev["per_class_accuracy"][1] == 0.0
  assert ev["per_class_precision"][1] is None
  assert ev["worst_class_accuracy"] == 0.0
  assert ev["macro_f1"] == pytest.approx((2 * 2 / (2 * 2 + 3 + 0) + 0.0) / 2)


def test_summarize_errors():
  with pytest.raises(ValueError):
    metrics.summarize(jax.device_get(metrics.zero_counts(3)), ["a", "b", "c"])
  with pytest.raises(ValueError):
    metrics.summarize(_counts(np.eye(3), np.ones(3)), ["a", "b"])


def _only_builtin_types(x):
  if isinstance(x, dict):
    return all(type(k) is str and _only_builtin_types(v) for k, v in x.items())
  if isinstance(x, list):
    return all(_only_builtin_types(v) for v in x)
  return x is None or type(x) in (int, float, str)


def test_json_round_trip():
  rng = np.random.default_rng(4)
  c = 4
  logits, labels = _random_batch(rng, 40, c)
  labels[labels == 3] = 0  # class 3 absent -> None entries
  counts = _jit_counts(logits, labels, np.ones(40), c)
  ev = metrics.summarize(counts, ["w", "x", "y", "z"])  # device arrays in, builtins out
  assert _only_builtin_types(ev)
  assert json.loads(json.dumps(ev, allow_nan=False)) == ev
  assert set(ev) == {
      "num_examples", "loss", "accuracy", "per_class_accuracy", "per_class_precision",
      "per_class_f1", "per_class_loss", "per_class_count", "balanced_accuracy",
      "worst_class_accuracy", "macro_f1", "confusion_matrix", "class_names"}


def test_format_table():
  conf = [[5, 1, 0], [2, 3, 1], [0, 0, 0]]
  ev = metrics.summarize(_counts(conf, [3.0, 6.0, 0.0]), ["cat", "dog", "zebra_long_name"])
  table = metrics.format_table(ev)
  lines = table.splitlines()
  assert lines[0].split() == ["class", "count", "accuracy", "precision", "f1", "loss"]
  row = {ln.split()[0]: ln.split() for ln in lines[2:5]}
  assert row["cat"][1:] == ["6", "0.8333", "0.7143", "0.7692", "0.5000"]
  assert row["dog"][1:] == ["6", "0.5000", "0.7500", "0.6000", "1.0000"]
  # zebra: no examples -> '-', predicted once but never right -> precision 0.
  assert row["zebra_long_name"][1:] == ["0", "-", "0.0000", "-", "-"]
  assert "accuracy:             0.6667" in table
  assert "balanced accuracy:    0.6667" in table
  assert "macro-F1:             0.6846" in table
  assert "worst-class accuracy: 0.5000 (dog)" in table


_MESH_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxreg import metrics

    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(5)
    c, b = 5, 64
    logits = rng.normal(size=(b, c)).astype(np.float32)
    labels = rng.integers(0, c, size=b).astype(np.int32)
    mask = np.ones(b, bool)
    # Padding with garbage in the last shard (and one row in the first).
    mask[-11:] = False; mask[3] = False
    labels[-11:] = 1000; labels[3] = -2
    logits[-5:] = np.nan
    data = NamedSharding(mesh, P('data'))
    args = [jax.device_put(x, data) for x in (logits, labels, mask)]
    assert len(args[0].sharding.device_set) == 4
    fn = jax.jit(metrics.batch_counts, static_argnums=3)
    got = jax.device_get(fn(*args, c))
    acc = jax.device_get(metrics.add_counts(fn(*args, c), metrics.zero_counts(c)))

    keep = mask
    conf = np.zeros((c, c), np.int64)
    np.add.at(conf, (labels[keep], logits[keep].argmax(-1)), 1)
    np.testing.assert_array_equal(got['confusion'], conf)
    np.testing.assert_array_equal(acc['confusion'], conf)
    ref = jax.device_get(metrics.batch_counts(logits[keep], labels[keep], np.ones(keep.sum()), c))
    np.testing.assert_allclose(got['loss_sum'], ref['loss_sum'], rtol=1e-5)
    assert np.isfinite(got['loss_sum']).all()
    print('MESH_OK', int(got['confusion'].sum()))
""")


def test_batch_counts_on_4_device_mesh():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
  env["JAX_PLATFORMS"] = "cpu"
  repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = repo_root + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run([sys.executable, "-c", _MESH_SCRIPT], env=env, cwd=repo_root,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "MESH_OK 52" in proc.stdout


def test_end_of_run_table_lists_worst_classes_first_with_counts():
  # Issue 16 item 7: the end of a run showed only averages. Ties keep class order;
  # a class without examples in the split comes last.
  confusion = np.array([[8, 2, 0, 0], [0, 0, 0, 0], [1, 0, 3, 0], [0, 1, 0, 3]])
  evaluation = metrics.summarize(
      {"confusion": confusion, "loss_sum": np.ones(4, np.float32)},
      ["big", "absent", "A/B", "d"])
  lines = metrics.format_worst_first(evaluation).splitlines()
  assert lines[0].split() == ["class", "n", "correct", "accuracy"]
  assert [l.split() for l in lines[2:]] == [
      ["A/B", "4", "3", "0.7500"], ["d", "4", "3", "0.7500"],
      ["big", "10", "8", "0.8000"], ["absent", "0", "0", "-"]]
