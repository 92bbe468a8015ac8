"""jaxreg.stats against hand-computed values, and jaxreg.report on real and made-up sweeps."""

import csv
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from jaxreg import report, stats
from tests.conftest import ROOT, python_env
from tests.test_sweep import tiny_sweep  # noqa: F401 (the shared session fixture)

# ------------------------------------------------------------------ statistics


def test_wilson_interval_hand_values():
  # z = 1.959964: z^2/n = 0.384146 for n = 10; center (k + z^2/2) / (n + z^2)
  lo, hi = stats.wilson_interval([0, 5, 9, 10], 10)
  np.testing.assert_allclose(lo, [0.0, 0.236593, 0.595846, 0.722467], atol=1e-5)
  np.testing.assert_allclose(hi, [0.277533, 0.763407, 0.982124, 1.0], atol=1e-5)
  lo, hi = stats.wilson_interval(0, 0)
  assert np.isnan(lo) and np.isnan(hi)


def test_t_quantiles_and_interval():
  assert stats.t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
  assert stats.t_quantile_975(4) == pytest.approx(2.7764, abs=1e-4)
  # beyond the table (Cornish-Fisher): t(0.975, 60) = 2.000298, t(0.975, 120) = 1.979930
  assert stats.t_quantile_975(60) == pytest.approx(2.000298, abs=2e-4)
  assert stats.t_quantile_975(120) == pytest.approx(1.979930, abs=1e-4)
  assert stats.t_quantile_975(31) < stats.t_quantile_975(30)
  # [1, 2, 3]: mean 2, sd 1, half-width 4.302653 / sqrt(3) = 2.484138
  m, lo, hi = stats.t_interval([1.0, 2.0, 3.0])
  assert (m, lo, hi) == pytest.approx((2.0, -0.484138, 4.484138), abs=1e-6)
  m, lo, hi = stats.t_interval(np.array([[0.5, 0.2], [0.7, 0.2]]), axis=0)
  np.testing.assert_allclose(m, [0.6, 0.2])
  np.testing.assert_allclose(hi - m, [12.706204736 * 0.1, 0.0], atol=1e-9)
  m, lo, hi = stats.t_interval([0.3])
  assert m == 0.3 and np.isnan(lo) and np.isnan(hi)


def test_holm_and_benjamini_hochberg_hand_values():
  p = [0.01, 0.04, 0.03, 0.005]
  # Holm: sorted 0.005 0.01 0.03 0.04 -> x4 x3 x2 x1 = .02 .03 .06 .04 -> cummax
  np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
  # BH: x4/1 x4/2 x4/3 x4/4 = .02 .02 .04 .04 -> reverse cummin
  np.testing.assert_allclose(stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
  p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205]
  np.testing.assert_allclose(stats.holm(p), [0.008, 0.056] + [0.234] * 6)
  np.testing.assert_allclose(
      stats.benjamini_hochberg(p),
      [0.008, 0.032, 0.0672, 0.0672, 0.0672, 0.08, 0.074 * 8 / 7, 0.205])
  # NaN (a class absent from the test set) is not part of the family
  np.testing.assert_allclose(stats.holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04])
  np.testing.assert_allclose(stats.holm([0.6, 0.9]), [1.0, 1.0])


def test_paired_bootstrap_is_reproducible_and_finds_a_clear_drop():
  n = np.array([100, 100, 9])
  a = np.array([[90, 80, 9], [92, 81, 9], [91, 79, 8]])
  b = np.array([[91, 80, 1], [90, 82, 2], [92, 80, 1]])
  r1 = stats.paired_bootstrap(a, b, n, reps=2000, seed=7)
  r2 = stats.paired_bootstrap(a, b, n, reps=2000, seed=7)
  r3 = stats.paired_bootstrap(a, b, n, reps=2000, seed=8)
  for k in ("delta", "lo", "hi", "p"):
    np.testing.assert_array_equal(r1[k], r2[k])
  assert not np.array_equal(r1["lo"], r3["lo"])
  np.testing.assert_allclose(r1["delta"], [0.0, 2 / 300, (4 - 26) / 27])
  # every replicate is a drop: the p-value is the normal tail, far below 2 / reps
  assert 0 < r1["p"][2] < 1e-6
  assert r1["p"][0] > 0.5 and r1["lo"][0] < 0 < r1["hi"][0]
  # no change at all, no spread: p = 1; a change with no spread: p = 0
  r = stats.paired_bootstrap([[10, 0]], [[10, 10]], [10, 10], reps=100)
  np.testing.assert_array_equal(r["p"], [1.0, 0.0])
  assert r1["hi"][2] < -0.5


@pytest.mark.parametrize("k", [1, 5])
def test_paired_bootstrap_interval_covers_the_truth(k):
  # Seeds shift each class's accuracy (sd 0.03, shared by A and B: the pairing);
  # B is 10 points worse on class 0 and equal on class 1; counts are binomial.
  rng = np.random.default_rng(0)
  n = np.array([120, 80])
  truth = np.array([-0.10, 0.0])
  covered = np.zeros(2)
  sims = 150
  for s in range(sims):
    seed_effect = rng.normal(0, 0.03, size=(k, 1))
    pa = np.clip(np.array([0.8, 0.7]) + seed_effect, 0, 1)
    pb = np.clip(pa + truth, 0, 1)
    a, b = rng.binomial(n, pa), rng.binomial(n, pb)
    r = stats.paired_bootstrap(a, b, n, reps=1000, seed=s)
    covered += (r["lo"] <= truth) & (truth <= r["hi"])
  assert (covered / sims >= 0.88).all(), covered / sims


def test_example_pairing_sees_a_small_consistent_drop_that_counts_cannot():
  # 200 examples of class 0 (A right on half) and 50 of class 1. B is A except that it
  # gets 10 of A's right class-0 examples wrong, in every seed: a 5-point drop with no
  # noise between the paired models. From counts alone the two runs look like two
  # independent Binomial(200, ~0.5) draws (sd of the change ~5 points): no evidence.
  labels = np.array([0] * 200 + [1] * 50)
  a = np.zeros((3, 250), bool)
  a[:, :100] = True
  a[:, 200:240] = True
  b = a.copy()
  b[:, :10] = False
  ex = stats.paired_example_bootstrap(a, b, labels, 3, reps=4000, seed=1)
  n = np.bincount(labels, minlength=3)
  counts = np.stack([np.bincount(labels[r], minlength=3) for r in a])
  counts_b = np.stack([np.bincount(labels[r], minlength=3) for r in b])
  co = stats.paired_bootstrap(counts, counts_b, n, reps=4000, seed=1)
  np.testing.assert_allclose(ex["delta"][:2], [-0.05, 0.0])
  np.testing.assert_allclose(ex["delta"][:2], co["delta"][:2])  # same observed change
  assert ex["p"][0] < 0.01 and ex["hi"][0] < 0   # paired examples: a clear drop
  assert co["p"][0] > 0.05 and co["lo"][0] < 0 < co["hi"][0]  # counts: not significant
  assert (ex["hi"][0] - ex["lo"][0]) < 0.7 * (co["hi"][0] - co["lo"][0])
  assert ex["p"][1] == 1.0 and ex["lo"][1] == ex["hi"][1] == 0.0  # identical class
  assert np.isnan(ex["delta"][2]) and np.isnan(ex["p"][2])        # absent class
  again = stats.paired_example_bootstrap(a, b, labels, 3, reps=4000, seed=1)
  np.testing.assert_array_equal(again["lo"], ex["lo"])
  with pytest.raises(ValueError, match="labels"):
    stats.paired_example_bootstrap(a, b, labels[:10], 3)


def test_paired_example_bootstrap_interval_covers_the_truth():
  # Examples differ in difficulty (shared by A and B), seeds shift accuracy; B is
  # worse on class 0 by 8 points in expectation. The interval should cover that.
  rng = np.random.default_rng(0)
  labels = np.array([0] * 120 + [1] * 80)
  covered = np.zeros(2)
  sims = 120
  for s in range(sims):
    easy = rng.uniform(0.4, 1.0, size=200)            # the test examples, redrawn
    seed_effect = rng.normal(0, 0.03, size=(3, 1))
    pa = np.clip(easy + seed_effect, 0, 1)
    pb = np.clip(pa - np.where(labels == 0, 0.08, 0.0), 0, 1)
    u = rng.uniform(size=(3, 200))                    # shared draws: paired errors
    a, b = u < pa, u < pb
    r = stats.paired_example_bootstrap(a, b, labels, 2, reps=600, seed=s)
    covered += (r["lo"] <= [-0.08, 0.0]) & ([-0.08, 0.0] <= r["hi"])
  assert (covered / sims >= 0.88).all(), covered / sims


def test_binomial_bootstrap_interval():
  lo, hi = stats.binomial_bootstrap([50, 90], [100, 100], lambda x: x.mean(axis=1))
  assert lo < 0.70 < hi and hi - lo < 0.15


# ------------------------------------------------------------------- layout


def test_an_empty_string_value_is_printed_quoted_not_blank():
  assert report.fmt("") == "''"
  assert report.fmt("0,1") == "0,1" and report.fmt(0.001) == "0.001" and report.fmt(0) == "0"


def test_x_layout_log_with_a_marked_zero_linear_and_categories():
  lay = report.x_layout([0, 1e-4, 1e-3, 1e-2])
  assert lay.log and lay.zero_at == pytest.approx(-5.0)
  assert lay.positions == pytest.approx([-5, -4, -3, -2])
  assert lay.labels == ["0", "0.0001", "0.001", "0.01"]
  lay = report.x_layout([0.0, 0.1, 0.2, 0.3])
  assert not lay.log and lay.positions == [0.0, 0.1, 0.2, 0.3]
  lay = report.x_layout(["adam", "sgd"])
  assert lay.positions == [0.0, 1.0] and lay.labels == ["adam", "sgd"]


# ------------------------------------------------------------ made-up sweeps

NAMES = ["big_a", "big_b", "ABBR"]
N = np.array([200, 150, 9])


def _summary(confusion, val_accuracy):
  cm = np.asarray(confusion)
  names = NAMES if len(cm) == 3 else [f"class_{i:02d}" for i in range(len(cm))]
  n = cm.sum(1)
  acc = np.diag(cm) / n
  return {"best_step": 10, "evaluated_step": 10, "train_seconds": 1.0,
          "val": {"accuracy": val_accuracy},
          "test": {"confusion_matrix": cm.tolist(), "class_names": names,
                   "accuracy": float(np.trace(cm) / cm.sum()),
                   "per_class_accuracy": acc.tolist(), "per_class_count": n.tolist(),
                   "worst_class_accuracy": float(acc.min())}}


def _predictions_from(cm):
  """Per-example (labels, predictions) with this confusion matrix: examples sorted by
  class, each class's right answers first, so equal counts mean equal examples."""
  cm = np.asarray(cm)
  labels, preds = [], []
  for c, row in enumerate(cm):
    order = [c] + [j for j in range(len(row)) if j != c]
    for j in order:
      labels += [c] * int(row[j])
      preds += [j] * int(row[j])
  return np.array(labels, np.int32), np.array(preds, np.int32)


def make_sweep(root, axes, confusion, val, mode="grid", kinds=None, predictions=False):
  """A sweep directory as jaxreg.sweep writes it, without training anything
  (with `predictions`, also each run's predictions_test.npz)."""
  from jaxreg import sweep
  root.mkdir(parents=True, exist_ok=True)
  keys = list(axes)
  points = [dict(zip(keys, combo)) for combo in itertools.product(*axes.values())]
  runs = []
  for p in points:
    name = sweep.run_name(p)
    (root / name).mkdir()
    (root / name / "summary.json").write_text(
        json.dumps(_summary(confusion(p), val(p))))
    if predictions:
      labels, preds = _predictions_from(confusion(p))
      np.savez(root / name / report.PREDICTIONS_FILE, labels=labels, predictions=preds,
               step=np.int64(10))
    runs.append({"name": name, "values": p, "status": "done"})
  meta = {"version": 1, "mode": mode, "budget": len(points) if mode == "random" else None,
          "sampler_seed": 0 if mode == "random" else None,
          "axes": [{"key": k, "kind": (kinds or {}).get(k, "values"),
                    "type": "int" if k == "seed" else "float", "values": list(v)}
                   for k, v in axes.items()],
          "base_config": {}, "runs": runs}
  (root / "sweep.json").write_text(json.dumps(meta))
  return root


ABBR_RIGHT = {0.0: [9, 9, 9], 1e-4: [9, 8, 9], 1e-3: [8, 9, 8], 1e-2: [1, 2, 1]}


def _confusion(p):
  """big classes steady; ABBR collapses into big_a at weight decay 1e-2."""
  right = ABBR_RIGHT[p["reg.weight_decay"]][p.get("seed", 0)]
  return [[196, 4, 0], [3, 147, 0], [9 - right, 0, right]]


def _val(p):
  return {0.0: 0.90, 1e-4: 0.91, 1e-3: 0.93, 1e-2: 0.85}[p["reg.weight_decay"]] \
      + 0.001 * p.get("seed", 0) + p.get("optim.learning_rate", 0.0)


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
  root = tmp_path_factory.mktemp("made_up") / "wd"
  make_sweep(root, {"reg.weight_decay": [0.0, 1e-4, 1e-3, 1e-2], "seed": [0, 1, 2]},
             _confusion, _val)
  report.write_report(root, reps=4000)
  return root


def test_report_files_and_every_class(made_up):
  text = (made_up / "report.md").read_text()
  for f in ["per_class_accuracy.png", "per_class_panels.png", "change_vs_baseline.png",
            "change_forest.png", "confusion_change.png", "per_class_accuracy.csv",
            "per_class_change.csv", "choice.csv", "confusion_change.csv"]:
    assert (made_up / "report" / f).stat().st_size > 50, f
    if f.endswith(".png"):
      assert f"](report/{f})" in text, f
  for name in NAMES:
    assert name in text
  assert "ABBR (n=9)" in text
  assert "one test error moves the class's accuracy by 100/n points (ABBR: 11.1" in text
  assert "## 5." not in text  # one setting axis: no pair heatmaps


def test_report_states_the_significant_drop_in_a_sentence(made_up):
  text = (made_up / "report.md").read_text()
  # ABBR: 9/9 on every seed at 0, 4/27 at 1e-2: -85.2 points
  assert ("At reg.weight_decay=0.01, class ABBR (n=9) drops 85.2 points (95% CI"
          in text)
  assert "significant after Holm" in text
  rows = list(csv.DictReader(open(made_up / "report" / "per_class_change.csv")))
  flagged = {(r["value"], r["class"]) for r in rows if r["significant_drop"] == "true"}
  assert flagged == {("0.01", "ABBR")}
  big = [r for r in rows if r["class"] == "big_a"]
  assert all(float(r["delta"]) == 0.0 and float(r["p_adjusted"]) == 1.0 for r in big)


def test_report_choice_and_confusion_change(made_up):
  text = (made_up / "report.md").read_text()
  assert "It chooses **reg.weight_decay=0.001**" in text
  choice = {r["class"]: r for r in csv.DictReader(open(made_up / "report" / "choice.csv"))}
  assert float(choice["ABBR"]["delta"]) == pytest.approx((25 - 27) / 27)
  assert choice["ABBR"]["flag"] == ""
  # section 4 compares the chosen value (1e-3) with the baseline: 2 ABBR lost to big_a
  assert "Class ABBR (n=9) loses 2 correct predictions (2 more to big_a)" in text
  cm = list(csv.reader(open(made_up / "report" / "confusion_change.csv")))
  assert cm[0] == ["true \\ predicted", *NAMES]
  assert cm[3] == ["ABBR", "2", "0", "-2"]


def test_report_per_class_table_with_t_intervals(made_up):
  rows = list(csv.DictReader(open(made_up / "report" / "per_class_accuracy.csv")))
  abbr = next(r for r in rows if r["class"] == "ABBR" and r["value"] == "0.01")
  assert float(abbr["mean"]) == pytest.approx(4 / 27)
  sd = np.std([1 / 9, 2 / 9, 1 / 9], ddof=1)
  assert float(abbr["hi95"]) == pytest.approx(4 / 27 + 4.302653 * sd / np.sqrt(3),
                                              abs=1e-6)
  assert float(abbr["lo95"]) == 0.0  # clipped at 0
  assert abbr["interval"] == "t over 3 seeds" and abbr["n"] == "9"


def test_benjamini_hochberg_and_baseline_options(made_up, tmp_path):
  import shutil
  root = tmp_path / "wd"
  shutil.copytree(made_up, root)
  report.write_report(root, baseline="1e-4", correction="bh", reps=2000)
  text = (root / "report.md").read_text()
  assert "Benjamini-Hochberg" in text and "relative to reg.weight_decay=0.0001" in text
  with pytest.raises(report.ReportError, match="--baseline=0.5: reg.weight_decay has "
                     "finished runs at 0, 0.0001, 0.001, 0.01 only"):
    report.write_report(root, baseline="0.5")
  with pytest.raises(report.ReportError, match="--axis=seed is a replicate axis"):
    report.write_report(root, key="seed")


def test_old_runs_without_predictions_pair_by_seed_only(made_up):
  rows = list(csv.DictReader(open(made_up / "report" / "per_class_change.csv")))
  assert {r["pairing"] for r in rows} == {"counts"}
  assert "Runs are paired by seed only" in (made_up / "report.md").read_text()


def test_stored_predictions_pair_test_examples(tmp_path):
  from jaxreg import train
  assert report.PREDICTIONS_FILE == train.PREDICTIONS_FILE
  axes = {"reg.weight_decay": [0.0, 1e-4, 1e-3, 1e-2], "seed": [0, 1, 2]}
  root = make_sweep(tmp_path / "p", axes, _confusion, _val, predictions=True)
  # one run's file is stale (another step) and one contradicts its confusion matrix:
  # both must be ignored, and their values fall back to counts
  stale = root / "reg.weight_decay=0.0001__seed=1" / report.PREDICTIONS_FILE
  with np.load(stale) as z:
    np.savez(stale, labels=z["labels"], predictions=z["predictions"], step=np.int64(3))
  wrong = root / "reg.weight_decay=0.001__seed=2" / report.PREDICTIONS_FILE
  with np.load(wrong) as z:
    np.savez(wrong, labels=z["labels"], predictions=np.zeros_like(z["predictions"]),
             step=z["step"])
  report.write_report(root, reps=2000)
  rows = list(csv.DictReader(open(root / "report" / "per_class_change.csv")))
  pairing = {r["value"]: r["pairing"] for r in rows}
  assert pairing == {"0.0001": "counts", "0.001": "counts", "0.01": "examples"}
  text = (root / "report.md").read_text()
  assert "Paired by seed and test example at 0.01; by seed only" in text
  # same observed change either way; the example-paired ABBR interval at 1e-2 is
  # narrower than the count-based one of the same runs without predictions
  counts_root = make_sweep(tmp_path / "c", axes, _confusion, _val)
  report.write_report(counts_root, reps=2000)
  crows = list(csv.DictReader(open(counts_root / "report" / "per_class_change.csv")))
  pick = lambda rs: next(r for r in rs if r["value"] == "0.01" and r["class"] == "big_b")
  ex, co = pick(rows), pick(crows)
  assert float(ex["delta"]) == float(co["delta"]) == 0.0
  # big_b is identical in every run: with paired examples there is no spread at all
  assert float(ex["lo95"]) == float(ex["hi95"]) == 0.0
  assert float(co["hi95"]) - float(co["lo95"]) > 0.02


def test_single_seed_uses_wilson_intervals(tmp_path):
  root = make_sweep(tmp_path / "one", {"reg.weight_decay": [0.0, 1e-4, 1e-3, 1e-2]},
                    _confusion, _val)
  report.write_report(root, reps=2000)
  rows = list(csv.DictReader(open(root / "report" / "per_class_accuracy.csv")))
  abbr = next(r for r in rows if r["class"] == "ABBR" and r["value"] == "0.01")
  lo, hi = stats.wilson_interval(1, 9)
  assert float(abbr["lo95"]) == pytest.approx(float(lo))
  assert float(abbr["hi95"]) == pytest.approx(float(hi))
  assert abbr["interval"] == "Wilson (1 seed)"
  text = (root / "report.md").read_text()
  assert "Wilson score intervals" in text and "No seed axis" in text


def test_two_setting_axes_give_pair_heatmaps_and_fix_the_other_axis(tmp_path):
  root = make_sweep(tmp_path / "two", {"optim.learning_rate": [0.01, 0.02],
                                       "reg.weight_decay": [0.0, 1e-4, 1e-3, 1e-2],
                                       "seed": [0, 1]}, _confusion, _val)
  report.write_report(root, reps=1000)
  text = (root / "report.md").read_text()
  assert "Analysed axis: `reg.weight_decay`" in text
  assert "Other axes held at optim.learning_rate=0.02 (the best mean validation" in text
  png = root / "report" / "val_heatmap__optim.learning_rate__reg.weight_decay.png"
  assert png.stat().st_size > 1000
  assert "## 5. Pairs of hyperparameters" in text
  grid = list(csv.reader(open(png.with_suffix(".csv"))))
  assert grid[0] == ["optim.learning_rate \\ reg.weight_decay", "0", "0.0001", "0.001",
                     "0.01"]
  assert float(grid[2][3]) == pytest.approx(0.93 + 0.0005 + 0.02)
  report.write_report(root, fix={"optim.learning_rate": 0.01}, reps=1000)
  assert "held at optim.learning_rate=0.01 (given with --fix)" in \
      (root / "report.md").read_text()


def test_many_classes_figures_show_those_that_move_most(tmp_path):
  c = 60

  def confusion(p):
    cm = np.diag(np.full(c, 20))
    hurt = {0.0: 0, 1e-2: 12}[p["reg.weight_decay"]] + p["seed"]
    for k in (7, 33):  # two classes lose examples to class 0
      cm[k, k] -= hurt
      cm[k, 0] += hurt
    return cm

  root = make_sweep(tmp_path / "many", {"reg.weight_decay": [0.0, 1e-2],
                                        "seed": [0, 1]}, confusion,
                    lambda p: 0.9 - p["reg.weight_decay"])
  report.write_report(root, reps=1000)
  text = (root / "report.md").read_text()
  assert all(f"class_{i:02d}" in text for i in range(c))
  assert "class class_07 (n=20) drops" in text and "class class_33 (n=20) drops" in text
  for f in ("per_class_accuracy.png", "per_class_panels.png", "change_vs_baseline.png",
            "change_forest.png", "confusion_change.png"):
    assert (root / "report" / f).stat().st_size > 1000
  rows = list(csv.DictReader(open(root / "report" / "per_class_change.csv")))
  assert len(rows) == c


def test_random_search_gets_a_ranking(tmp_path):
  lr = [0.0123, 0.0456, 0.0789]
  root = make_sweep(tmp_path / "rand", {"optim.learning_rate": lr,
                                        "reg.weight_decay": [1e-3]},
                    _confusion, lambda p: p["optim.learning_rate"], mode="random",
                    kinds={"optim.learning_rate": "loguniform",
                           "reg.weight_decay": "choice"})
  meta = json.loads((root / "sweep.json").read_text())
  meta["axes"][0].update(low=0.01, high=0.1)
  (root / "sweep.json").write_text(json.dumps(meta))
  report.write_report(root)
  text = (root / "report.md").read_text()
  assert "## Runs ranked by validation accuracy" in text
  ranking = list(csv.DictReader(open(root / "report" / "ranking.csv")))
  assert [float(r["optim.learning_rate"]) for r in ranking] == lr[::-1]
  assert (root / "report" / "random_val_scatter.png").exists()


def test_missing_sweep_is_one_line_with_exit_code_2(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "jaxreg.report",
                         f"--workdir={tmp_path}"], cwd=ROOT, env=python_env(),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1 and "sweep.json not found" in proc.stderr


def test_report_cli_on_the_tiny_sweep(tiny_sweep):  # noqa: F811
  proc = subprocess.run([sys.executable, "-m", "jaxreg.report", f"--workdir={tiny_sweep}",
                         "--reps=2000"], cwd=ROOT, env=python_env(), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = (tiny_sweep / "report.md").read_text()
  summary = json.loads((tiny_sweep / "reg.l2=0__seed=0" / "summary.json").read_text())
  for name in summary["test"]["class_names"]:
    assert name in text
  for f in ["per_class_accuracy.png", "change_vs_baseline.png", "confusion_change.png",
            "per_class_change.csv"]:
    assert (tiny_sweep / "report" / f).exists(), f
  assert "Analysed axis: `reg.l2`, baseline 0." in text
  assert "(n=10)" in text  # the tiny test set has 10 examples per class
  # runs store their per-example predictions: the bootstrap pairs test examples
  rows = list(csv.DictReader(open(tiny_sweep / "report" / "per_class_change.csv")))
  assert rows and {r["pairing"] for r in rows} == {"examples"}
