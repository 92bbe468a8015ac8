"""Per-example test predictions: written by every run, equal to its confusion matrix."""

import numpy as np

from jaxreg import records, train
from jaxreg.evaluate import evaluate_workdir
from tests.conftest import tiny_config


def _confusion(labels, preds, c):
  m = np.zeros((c, c), np.int64)
  np.add.at(m, (labels, preds), 1)
  return m


def test_run_saves_test_predictions_that_match_its_confusion_matrix(tmp_path):
  summary = train.train_and_evaluate(tiny_config(), tmp_path)
  with np.load(tmp_path / records.PREDICTIONS_FILE) as z:
    labels, preds, step = z["labels"], z["predictions"], int(z["step"])
  s = train.setup(tiny_config(), tmp_path / "other")
  np.testing.assert_array_equal(labels, s.data.test.labels)  # the test split's order
  assert step == summary["evaluated_step"]
  assert preds.min() >= 0 and len(preds) == summary["test"]["num_examples"]
  c = len(summary["test"]["class_names"])
  np.testing.assert_array_equal(_confusion(labels, preds, c),
                                summary["test"]["confusion_matrix"])
  # the model is not perfect on the tiny set after 2 epochs: some predictions differ
  # from the labels, so this compares real predictions, not a copy of the labels
  assert (preds != labels).any()

  # jaxreg.evaluate recomputes the same predictions beside its json (old runs)
  evaluate_workdir(tmp_path, "test", "best" if summary["evaluated_checkpoint"] ==
                   "best" else "latest")
  name = "test-" + summary["evaluated_checkpoint"] + ".npz"
  with np.load(tmp_path / "eval" / name) as z:
    np.testing.assert_array_equal(z["predictions"], preds)
    assert int(z["step"]) == step


def test_group_members_save_their_own_predictions(tmp_path):
  from jaxreg import group
  configs = [tiny_config(**{"train.epochs": 1, "seed": s, "model.dropout.output": r})
             for s, r in ((0, 0.0), (1, 0.3))]
  dirs = [tmp_path / f"m{i}" for i in range(2)]
  results = group.train_group(configs, dirs)
  preds = []
  for d, summary in zip(dirs, results):
    with np.load(d / records.PREDICTIONS_FILE) as z:
      c = len(summary["test"]["class_names"])
      np.testing.assert_array_equal(_confusion(z["labels"], z["predictions"], c),
                                    summary["test"]["confusion_matrix"])
      assert int(z["step"]) == summary["evaluated_step"]
      preds.append(z["predictions"])
  assert not np.array_equal(preds[0], preds[1])  # each member's own model
