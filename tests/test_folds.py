"""k-fold validation: disjoint stratified folds, --folds=K in jaxreg.sweep, and the
report's choice by the mean over folds."""

import csv
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from jaxreg import config as config_lib, report, sweep
from jaxreg.data import dataset, sources, text
from tests.conftest import ROOT, python_env, tiny_config


def test_folds_are_disjoint_cover_train_and_are_stratified():
  labels = np.array([0] * 53 + [1] * 7 + [2] * 240 + [3] * 1)   # imbalanced, rare class
  folds = dataset.stratified_folds(labels, 5, seed=3)
  assert len(folds) == 5
  joined = np.concatenate(folds)
  assert len(joined) == len(labels) and len(np.unique(joined)) == len(labels)
  sizes = [len(f) for f in folds]
  assert max(sizes) - min(sizes) <= 1
  per_class = np.stack([np.bincount(labels[f], minlength=4) for f in folds])  # [5, 4]
  assert (per_class.max(axis=0) - per_class.min(axis=0) <= 1).all()
  np.testing.assert_array_equal(per_class.sum(axis=0), np.bincount(labels))
  again = dataset.stratified_folds(labels, 5, seed=3)
  other = dataset.stratified_folds(labels, 5, seed=4)
  assert all(np.array_equal(a, b) for a, b in zip(folds, again))
  assert not all(np.array_equal(a, b) for a, b in zip(folds, other))


def test_validation_split_takes_the_configured_fold():
  labels = np.repeat(np.arange(3), 30)
  cfg = tiny_config().data
  keep, held = dataset.validation_split(labels, cfg)        # data.folds=0: hold-out
  k2, h2 = dataset.stratified_split(labels, cfg.val_fraction, cfg.split_seed)
  np.testing.assert_array_equal(held, h2)
  np.testing.assert_array_equal(keep, k2)
  folds = dataset.stratified_folds(labels, 3, cfg.split_seed)
  for f in range(3):
    cfg = tiny_config(**{"data.folds": 3, "data.fold": f}).data
    keep, held = dataset.validation_split(labels, cfg)
    np.testing.assert_array_equal(held, folds[f])
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, held])),
                                  np.arange(len(labels)))


def _rows(split):
  return sorted(tuple(t[:n]) + (int(y),) for t, n, y in
                zip(split.tokens, split.lengths, split.labels))


def test_synthetic_source_folds_partition_the_training_set():
  loaded = [sources.load(tiny_config(**{"data.folds": 3, "data.fold": f}).data)
            for f in range(3)]
  every = _rows(loaded[0].train) + _rows(loaded[0].val)
  assert sorted(sum((_rows(d.val) for d in loaded), [])) == sorted(every)
  for d in loaded:
    assert len(d.train) + len(d.val) == len(every)
    np.testing.assert_array_equal(d.test.labels, loaded[0].test.labels)


def _image_rows(split):
  return sorted(hashlib.sha256(x.tobytes()).hexdigest() + f":{y}"
                for x, y in zip(split.images, split.labels))


def test_image_source_folds_partition_the_training_set_and_differ():
  """--folds=K on an image config: K different validation folds, not one split K times."""
  from configs import resnet

  def load(**overrides):
    return sources.load(sweep.config_for(resnet.get_config("tiny"), overrides).data)

  loaded = [load(**{"data.folds": 3, "data.fold": f}) for f in range(3)]
  every = _image_rows(loaded[0].train) + _image_rows(loaded[0].val)
  vals = [_image_rows(d.val) for d in loaded]
  assert sorted(sum(vals, [])) == sorted(every)  # the folds partition train + val
  for d, val in zip(loaded, vals):
    assert sorted(_image_rows(d.train) + val) == sorted(every)
    assert abs(len(val) - len(every) / 3) < 1  # a third of train + val
    np.testing.assert_array_equal(d.test.labels, loaded[0].test.labels)
  assert all(set(a).isdisjoint(b) for a, b in ((vals[0], vals[1]), (vals[1], vals[2]),
                                                (vals[0], vals[2])))
  hold_out = load()  # data.folds=0: data.val_fraction (10%) as before
  assert len(hold_out.val) == round(0.1 * len(every))


def test_text_cache_key_changes_with_the_fold_only_under_k_fold():
  base = tiny_config().data
  assert "folds" not in text.settings(base)  # cache entries from before stay valid
  keys = {text.cache_key("d", tiny_config(**{"data.folds": 3, "data.fold": f}).data)
          for f in range(3)}
  assert len(keys) == 3 and text.cache_key("d", base) not in keys


@pytest.mark.parametrize("overrides,match", [
    ({"data.folds": 1}, r"data.folds=1 must be 0 \(hold out data.val_fraction\) or an "
                        r"integer >= 2"),
    ({"data.folds": 3, "data.fold": 3}, r"data.fold=3 is not one of: 0..2"),
    ({"data.fold": 1}, r"data.fold=1 is not one of: 0 \(data.folds=0: no k-fold\)"),
])
def test_bad_fold_settings_are_one_line_errors(overrides, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(tiny_config(**overrides))


def test_add_folds_appends_a_fold_axis_and_random_search_runs_every_fold():
  config = tiny_config()
  axes = sweep.parse_axes(["--axis=reg.l2=0,1e-3".split("=", 1)[1]], config)
  with_folds = sweep.add_folds(config, axes, 3)
  assert config.data.folds == 3
  assert [a.key for a in with_folds] == ["reg.l2", "data.fold"]
  points = sweep.expand(with_folds)
  assert [(p["reg.l2"], p["data.fold"]) for p in points] == [
      (0.0, 0), (0.0, 1), (0.0, 2), (0.001, 0), (0.001, 1), (0.001, 2)]
  rand = sweep.add_folds(tiny_config(), sweep.parse_axes(
      ["optim.learning_rate=loguniform:1e-4:1e-2"], config), 2)
  points = sweep.expand(rand, budget=3, sampler_seed=1)
  assert len(points) == 6 and [p["data.fold"] for p in points] == [0, 1] * 3
  assert points[0]["optim.learning_rate"] == points[1]["optim.learning_rate"]
  assert len({p["optim.learning_rate"] for p in points}) == 3
  with pytest.raises(sweep.SweepError, match="must be 0 .* or >= 2"):
    sweep.add_folds(tiny_config(), axes, 1)
  with pytest.raises(sweep.SweepError, match="--axis=data.fold and --folds"):
    sweep.add_folds(tiny_config(), sweep.parse_axes(["data.fold=0,1"], config), 2)


# ------------------------------------------------------------------ the report


def _summary(cm, val):
  cm = np.asarray(cm)
  return {"best_step": 1, "evaluated_step": 1,
          "val": {"accuracy": val},
          "test": {"confusion_matrix": cm.tolist(), "class_names": ["a", "b"]}}


def test_report_chooses_by_the_mean_over_folds_not_one_fold(tmp_path):
  # fold 0 strongly prefers 0.1; folds 1 and 2 mildly prefer 0.01. The mean over the
  # three folds (and two seeds) prefers 0.01, which the report must choose.
  val = {(0.0, 0): 0.80, (0.01, 0): 0.82, (0.1, 0): 0.95,
         (0.0, 1): 0.80, (0.01, 1): 0.90, (0.1, 1): 0.82,
         (0.0, 2): 0.80, (0.01, 2): 0.90, (0.1, 2): 0.82}
  cms = {0.0: [[50, 0], [2, 48]], 0.01: [[50, 0], [6, 44]], 0.1: [[50, 0], [20, 30]]}
  root = tmp_path / "kfold"
  root.mkdir()
  runs = []
  for wd in (0.0, 0.01, 0.1):
    for seed in (0, 1):
      for fold in (0, 1, 2):
        values = {"reg.weight_decay": wd, "seed": seed, "data.fold": fold}
        name = sweep.run_name(values)
        (root / name).mkdir()
        (root / name / "summary.json").write_text(json.dumps(
            _summary(cms[wd], val[(wd, fold)] + 0.001 * seed)))
        runs.append({"name": name, "values": values, "status": "done"})
  (root / "sweep.json").write_text(json.dumps({
      "version": 1, "mode": "grid", "budget": None, "sampler_seed": None,
      "axes": [{"key": "reg.weight_decay", "kind": "values", "type": "float",
                "values": [0.0, 0.01, 0.1]},
               {"key": "seed", "kind": "values", "type": "int", "values": [0, 1]},
               {"key": "data.fold", "kind": "values", "type": "int",
                "values": [0, 1, 2]}],
      "base_config": {}, "runs": runs}))
  report.write_report(root, reps=1000)
  text_ = (root / "report.md").read_text()
  assert "Mean validation accuracy over 2 seeds x 3 folds" in text_
  assert "It chooses **reg.weight_decay=0.01**" in text_
  assert "3-fold cross-validation" in text_
  assert "fold 0: 0 80.05%, 0.01 82.05%, 0.1 95.05%" in text_
  choice = {r["class"]: r for r in csv.DictReader(open(root / "report" / "choice.csv"))}
  # the cost of the choice on test: class b 44/50 against 48/50, over 6 paired runs
  assert choice["b"]["chosen"] == "0.01"
  assert float(choice["b"]["delta"]) == pytest.approx(-0.08)
  change = list(csv.DictReader(open(root / "report" / "per_class_change.csv")))
  assert {r["paired_seeds"] for r in change} == {"6"}
  # the flag's t-test pairs the 6 (seed, fold) runs, and says runs, not seeds
  assert {r["interval"] for r in change} == {"t over 6 runs"}


@pytest.mark.slow
def test_sweep_with_two_folds_on_the_tiny_config(tmp_path):
  workdir = tmp_path / "k"
  cmd = [sys.executable, "-m", "jaxreg.sweep", "--config=configs/lstm.py:tiny",
         f"--workdir={workdir}", "--executor=sequential", "--axis=reg.l2=0,1e-2",
         "--folds=2", "--config.train.epochs=1"]
  proc = subprocess.run(cmd, cwd=ROOT, env=python_env(), capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  names = ["reg.l2=0__data.fold=0", "reg.l2=0__data.fold=1",
           "reg.l2=0.01__data.fold=0", "reg.l2=0.01__data.fold=1"]
  rows = list(csv.DictReader(open(workdir / "runs.csv")))
  assert [r["run"] for r in rows] == names
  assert {r["data.fold"] for r in rows} == {"0", "1"}
  configs = [json.loads((workdir / n / "config.json").read_text()) for n in names]
  assert [(c["data"]["folds"], c["data"]["fold"]) for c in configs] == \
      [(2, 0), (2, 1), (2, 0), (2, 1)]
  # the two folds validate on disjoint halves of train: 400 examples in all
  sizes = [json.loads((workdir / n / "summary.json").read_text())["val"]["num_examples"]
           for n in names[:2]]
  assert sum(sizes) == 400 and abs(sizes[0] - sizes[1]) <= 1
  proc = subprocess.run([sys.executable, "-m", "jaxreg.report", f"--workdir={workdir}",
                         "--reps=500"], cwd=ROOT, env=python_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report_text = (workdir / "report.md").read_text()
  assert "Mean validation accuracy over 2 folds" in report_text
  assert "2-fold cross-validation" in report_text
  # rerunning the same command resumes (nothing to train); another K is refused
  again = subprocess.run(cmd, cwd=ROOT, env=python_env(), capture_output=True,
                         text=True, timeout=300)
  assert again.returncode == 0 and again.stdout.count("finished already") == 4
  other = subprocess.run(cmd[:-2] + ["--folds=3", cmd[-1]], cwd=ROOT, env=python_env(),
                         capture_output=True, text=True, timeout=300)
  assert other.returncode == 2 and "use a new --workdir" in other.stderr
