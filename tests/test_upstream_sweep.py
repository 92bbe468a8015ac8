"""A sweep over an upstream sweep's runs (jaxreg.sweep --upstream, docs/transfer.md):
one downstream run per finished upstream run and downstream point, the upstream axis
values as upstream.* columns, and a report whose unit of replication is the upstream
run (downstream seeds averaged within it, never counted as replicates)."""

import json
import subprocess
from pathlib import Path
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from jaxreg import records
from jaxreg.report import analyse, load_sweep
from jaxreg.sweep import parse_axes, prepare
from jaxreg.sweep.plan import load_upstream, plan
from jaxreg.sweep.axes import SweepError
from tests.conftest import ROOT, python_env, tiny_config

CLASSES = ["a", "b", "c"]
N = np.array([1000, 1000, 1000])   # large: the binomial floor stays below the seed sd
UP_WD = [0.0, 0.1]


def _summary(correct, val_accuracy):
  """A summary.json of a run with these correct counts per class (errors into the
  next class)."""
  c = len(N)
  cm = np.zeros((c, c), np.int64)
  for k in range(c):
    cm[k, k] = correct[k]
    cm[k, (k + 1) % c] = N[k] - correct[k]
  acc = np.diag(cm) / N
  return {"best_step": 1, "evaluated_step": 1, "train_seconds": 1.0,
          "val": {"accuracy": val_accuracy},
          "test": {"confusion_matrix": cm.tolist(), "class_names": CLASSES,
                   "accuracy": float(np.trace(cm) / cm.sum()),
                   "per_class_accuracy": acc.tolist(), "per_class_count": N.tolist(),
                   "worst_class_accuracy": float(acc.min())}}


def _make_upstream(root, seeds=(0, 1, 2), unfinished=()):
  """An upstream sweep directory (reg.weight_decay x seed) as jaxreg.sweep writes it,
  without training; the runs named in `unfinished` have no summary."""
  base = tiny_config()
  axes = parse_axes(["reg.weight_decay=0,0.1", f"seed={','.join(map(str, seeds))}"],
                    base)
  runs, meta = prepare(base, root, axes, command=[])
  for run in runs:
    run.workdir.mkdir(parents=True)
    if run.name not in unfinished:
      records.write_summary(run.workdir, _summary([900, 900, 900], 0.9))
  return root


def _down_axes(base):
  return parse_axes(["seed=0,1"], base)


def _downstream_accuracy(values):
  """A known world: upstream weight decay 0.1 costs class `a` 10 points; each upstream
  run has its own offset, shared by its downstream seeds (the pseudo-replication
  trap), and each downstream run a small one of its own."""
  wd, up_seed, seed = (values["upstream.reg.weight_decay"], values["upstream.seed"],
                       values["seed"])
  run_offset = {0.0: [0.02, -0.03, 0.01], 0.1: [-0.01, 0.01, 0.0]}[wd][up_seed]
  seed_offset = 0.003 * (2 * seed - 1) * (1 + up_seed) * (1 if wd == 0 else -1)
  acc = np.array([0.8 - wd + run_offset + seed_offset, 0.7 + seed_offset,
                  0.6 + run_offset / 2])
  return np.round(acc * N).astype(int)


def _make_downstream(tmp_path, seeds=(0, 1, 2)):
  up = _make_upstream(tmp_path / "up", seeds)
  base = tiny_config()
  down = tmp_path / "down"
  runs, meta = prepare(base, down, _down_axes(base), command=[],
                       upstream=load_upstream(up))
  summaries = {}
  for run in runs:
    summaries[run.name] = _summary(_downstream_accuracy(run.values), 0.8)
    run.workdir.mkdir(parents=True)
    records.write_summary(run.workdir, summaries[run.name])
  records.write_status(down, meta, summaries)
  return up, down


def test_plan_has_one_run_per_finished_upstream_run_and_downstream_seed(tmp_path):
  unfinished = "reg.weight_decay=0.1__seed=1"
  up = _make_upstream(tmp_path / "up", unfinished=[unfinished])
  base = tiny_config()
  runs = plan(base, tmp_path / "down", _down_axes(base), upstream=load_upstream(up))
  finished = [d for d in sorted(up.iterdir()) if (d / records.SUMMARY_FILE).exists()]
  assert len(finished) == 5 and len(runs) == 5 * 2
  pairs = {(r.init_from, r.values["seed"]) for r in runs}
  assert pairs == {(str(d.absolute()), s) for d in finished for s in (0, 1)}
  for r in runs:
    assert r.config.model.init_from == r.init_from
    up_name = r.init_from.rsplit("/", 1)[1]
    wd, seed = r.values["upstream.reg.weight_decay"], r.values["upstream.seed"]
    assert up_name == f"reg.weight_decay={wd:g}__seed={seed}"
    # downstream seed set, the upstream labels are no config keys
    assert r.config.seed == r.values["seed"] and "upstream" not in r.config
    assert r.name == (f"upstream.reg.weight_decay={wd:g}__upstream.seed={seed}"
                      f"__seed={r.values['seed']}")
  assert not any(unfinished in r.init_from for r in runs)


def test_an_upstream_run_finished_later_joins_the_plan_on_a_rerun(tmp_path):
  late = "reg.weight_decay=0.1__seed=1"
  up = _make_upstream(tmp_path / "up", unfinished=[late])
  base, down = tiny_config(), tmp_path / "down"
  runs, meta = prepare(base, down, _down_axes(base), command=[],
                       upstream=load_upstream(up))
  assert len(meta["runs"]) == 10
  records.write_summary(up / late, _summary([900, 900, 900], 0.9))
  runs, meta = prepare(base, down, _down_axes(base), command=[],
                       upstream=load_upstream(up))
  assert len(runs) == len(meta["runs"]) == 12
  assert json.loads((down / records.SWEEP_FILE).read_text())["runs"] == meta["runs"]
  assert sum(e["init_from"] == str((up / late).absolute()) for e in meta["runs"]) == 2
  # another upstream directory is another sweep
  other = _make_upstream(tmp_path / "other")
  with pytest.raises(SweepError, match="upstream"):
    prepare(base, down, _down_axes(base), command=[], upstream=load_upstream(other))


def test_columns_name_the_upstream_settings_in_every_table(tmp_path):
  up, down = _make_downstream(tmp_path)
  meta = json.loads((down / records.SWEEP_FILE).read_text())
  assert meta["upstream"] == str(up.absolute())
  assert [a["key"] for a in meta["axes"]] == ["upstream.reg.weight_decay",
                                              "upstream.seed", "seed"]
  assert all(e["init_from"].startswith(str(up.absolute())) for e in meta["runs"])
  runs = pd.read_csv(down / records.RUNS_FILE)
  assert len(runs) == 12
  for column in ("upstream.reg.weight_decay", "upstream.seed", "seed"):
    assert column in runs.columns
  assert (runs["config.model.init_from"] == [e["init_from"] for e in meta["runs"]]).all()
  assert not any(c.startswith("config.upstream") for c in runs.columns)
  per_class = pd.read_csv(down / records.PER_CLASS_FILE)
  assert {"upstream.reg.weight_decay", "upstream.seed", "seed"} <= set(per_class.columns)
  assert len(per_class) == 12 * len(CLASSES)


def _nested_expectation(runs: pd.DataFrame, column: str, n: int):
  """From runs.csv alone: average the downstream seeds within each upstream run, then
  the change per upstream seed and the flag's paired t over upstream seeds (docs: the
  report's Methods): the seeds' variance floored at the binomial variance of one
  difference, plus the shared test set's variance once (counts only: m2 at its upper
  bound), Welch-Satterthwaite df with the seeds' term at its upper 95% bound. Returns (per-upstream-seed changes,
  p, whether the seeds' variance is above the floor)."""
  per_up = runs.groupby(["upstream.reg.weight_decay", "upstream.seed"])[column].mean()
  base, other = per_up.loc[0.0], per_up.loc[0.1]
  d = (other - base.reindex(other.index)).to_numpy()
  k = len(d)
  pa, pb = ((x.sum() * n + 0.5) / (k * n + 1) for x in (base, other))
  floor = pa * (1 - pa) / n + pb * (1 - pb) / n
  seed = max(d.var(ddof=1), floor) / k
  a, b = base.mean(), other.mean()
  qa, qb = ((x * n + 0.5) / (n + 1) for x in (a, b))
  m2 = min(a + b, 2 - a - b)   # counts only: the largest share that can differ
  test = (n * m2 + qa * (1 - qa) + qb * (1 - qb)) / (n + 1) / n
  up = seed * (k - 1) / scipy_stats.chi2.ppf(0.05, k - 1)   # the seeds' upper bound
  df = (up + test) ** 2 / (up ** 2 / (k - 1) + test ** 2 / n)
  t = d.mean() / np.sqrt(seed + test)
  return d, 2 * scipy_stats.t.sf(abs(t), df), d.var(ddof=1) > floor


def test_report_change_is_the_paired_test_over_upstream_seeds(tmp_path):
  _, down = _make_downstream(tmp_path)
  sweep = load_sweep(down)
  assert sweep.replicate_keys == ["upstream.seed"] and sweep.nested_keys == ["seed"]
  a = analyse(sweep, axis="upstream.reg.weight_decay")
  assert a.unit == "upstream seeds" and [len(lv.reps) for lv in a.levels] == [3, 3]
  ch = a.changes[0.1]
  assert ch.paired == 3 and ch.pairing == "counts" and np.isnan(ch.p_mcnemar).all()
  runs = pd.read_csv(down / records.RUNS_FILE)
  for c, name in enumerate(CLASSES):
    d, p, above_floor = _nested_expectation(runs, f"test_acc/{name}", N[c])
    assert ch.delta[c] == pytest.approx(d.mean(), abs=1e-12)
    assert ch.p[c] == pytest.approx(p, rel=1e-9)
    if name == "a":  # the upstream runs' spread, not the floor, is the seeds' term
      assert above_floor
  # the per-class accuracy of a value is the mean over upstream runs of their means
  acc = runs.groupby("upstream.reg.weight_decay")["test_acc/a"].mean()
  assert a.level(0.1).accuracy.mean[0] == pytest.approx(acc.loc[0.1])


def test_counting_downstream_seeds_as_replicates_would_understate_p(tmp_path):
  _, down = _make_downstream(tmp_path)
  a = analyse(load_sweep(down), axis="upstream.reg.weight_decay")
  runs = pd.read_csv(down / records.RUNS_FILE).sort_values(
      ["upstream.seed", "seed"])
  base = runs[runs["upstream.reg.weight_decay"] == 0.0]["test_acc/a"].to_numpy()
  other = runs[runs["upstream.reg.weight_decay"] == 0.1]["test_acc/a"].to_numpy()
  pseudo = scipy_stats.ttest_rel(other, base).pvalue   # 6 "replicates", 5 df
  _, nested, _ = _nested_expectation(runs, "test_acc/a", N[0])
  assert a.changes[0.1].p[0] == pytest.approx(nested, rel=1e-9)
  assert pseudo < nested / 5


def test_report_cli_writes_the_nested_analysis(tmp_path):
  _, down = _make_downstream(tmp_path)
  proc = subprocess.run(
      [sys.executable, "-m", "jaxreg.report", f"--workdir={down}",
       "--axis=upstream.reg.weight_decay", "--reps=50"],
      cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  text = (down / "report.md").read_text()
  assert "unit of replication is the upstream run" in text
  assert "3 upstream seeds" in text
  change = pd.read_csv(down / "report" / "per_class_change.csv")
  runs = pd.read_csv(down / records.RUNS_FILE)
  _, p, _ = _nested_expectation(runs, "test_acc/a", N[0])
  row = change[change["class"] == "a"].iloc[0]
  assert row["paired_seeds"] == 3 and row["p"] == pytest.approx(p, rel=1e-6)


def test_fewer_than_three_upstream_seeds_flag_nothing(tmp_path):
  _, down = _make_downstream(tmp_path, seeds=(0, 1))
  a = analyse(load_sweep(down), axis="upstream.reg.weight_decay")
  ch = a.changes[0.1]
  # 4 downstream runs per value, but 2 upstream runs: no test
  assert ch.paired == 2 and np.isnan(ch.p).all() and not a.flagged.any()


def test_report_refuses_the_downstream_seed_as_axis(tmp_path):
  _, down = _make_downstream(tmp_path)
  from jaxreg.report.load import ReportError
  for key in ("seed", "upstream.seed"):
    with pytest.raises(ReportError, match="replicate axis"):
      analyse(load_sweep(down), axis=key)


def test_bad_upstream_is_a_sweep_error_naming_it(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(SweepError, match=r"--upstream=.*empty: no sweep.json"):
    load_upstream(tmp_path / "empty")
  up = _make_upstream(tmp_path / "up", seeds=(0,),
                      unfinished=["reg.weight_decay=0__seed=0",
                                  "reg.weight_decay=0.1__seed=0"])
  with pytest.raises(SweepError, match="no finished run"):
    load_upstream(up)


@pytest.mark.parametrize("what", ["not_a_sweep", "no_finished_run"])
def test_bad_upstream_cli_is_one_line_and_writes_nothing(tmp_path, what):
  if what == "not_a_sweep":
    up = tmp_path / "plain"
    up.mkdir()
  else:
    up = _make_upstream(tmp_path / "up", seeds=(0,),
                        unfinished=["reg.weight_decay=0__seed=0",
                                    "reg.weight_decay=0.1__seed=0"])
  down = tmp_path / "down"
  proc = subprocess.run(
      [sys.executable, "-m", "jaxreg.sweep", "--config=configs/lstm.py:tiny",
       f"--workdir={down}", f"--upstream={up}", "--axis=seed=0,1"],
      cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: --upstream="), proc.stderr
  assert not down.exists()


@pytest.mark.slow  # 6 upstream + 12 downstream tiny LSTM runs, in vmapped groups
def test_end_to_end_tiny_lstm_upstream_sweep_downstream_sweep_and_report(tmp_path):
  from jaxreg.report.markdown import write_report
  from jaxreg.sweep import local
  from tests.test_transfer import DOWN_CLASSES, UP_CLASSES, _text_data
  up_base = tiny_config(**_text_data(tmp_path, "up", UP_CLASSES))
  local.run_sweep(up_base, tmp_path / "up",
                  parse_axes(["reg.weight_decay=0,0.1", "seed=0,1,2"], up_base),
                  executor=local.GroupExecutor(), command=[])
  down_base = tiny_config(**_text_data(tmp_path, "down", DOWN_CLASSES),
                          **{"train.trainable": "head"})
  outcomes = local.run_sweep(down_base, tmp_path / "down", _down_axes(down_base),
                             executor=local.GroupExecutor(), command=[],
                             upstream=load_upstream(tmp_path / "up"))
  assert len(outcomes) == 12 and {o.status for o in outcomes.values()} == {"done"}
  runs = pd.read_csv(tmp_path / "down" / records.RUNS_FILE)
  assert sorted(zip(runs["upstream.reg.weight_decay"], runs["upstream.seed"],
                    runs["seed"])) == sorted((wd, u, s) for wd in UP_WD
                                             for u in (0, 1, 2) for s in (0, 1))
  for _, row in runs.iterrows():   # each started from its own upstream run
    config = records.read_config(tmp_path / "down" / row["run"])
    assert config["model"]["init_from"] == str(
        (tmp_path / "up" / f"reg.weight_decay={row['upstream.reg.weight_decay']:g}"
         f"__seed={row['upstream.seed']}").absolute())
  out = write_report(tmp_path / "down", "upstream.reg.weight_decay", None, {}, "holm",
                     0.05, 200, 0, False)
  change = pd.read_csv(out.parent / "report" / "per_class_change.csv")
  assert (change["paired_seeds"] == 3).all()
  for c, name in enumerate(DOWN_CLASSES):
    n = int(change.loc[change["class"] == name, "n"].iloc[0])
    d, p, _ = _nested_expectation(runs, f"test_acc/{name}", n)
    row = change[change["class"] == name].iloc[0]
    assert row["delta"] == pytest.approx(d.mean(), abs=1e-9)
    assert row["p"] == pytest.approx(p, rel=1e-6, nan_ok=True)
  assert "unit of replication is the upstream run" in out.read_text()
  # a rerun resumes: nothing left to train
  again = local.run_sweep(down_base, tmp_path / "down", _down_axes(down_base),
                          command=[], upstream=load_upstream(tmp_path / "up"))
  assert again == {}


def test_null_simulation_nested_test_holds_its_level_pseudo_replication_does_not():
  """No upstream effect, but each upstream run has its own offset (shared by its
  downstream seeds): the report's nested test rejects about 5% of the time; taking
  the 2 x 3 downstream runs as replicates rejects far more often."""
  from jaxreg.report.load import RunData, Sweep
  from jaxreg.sweep.axes import Axis
  rng = np.random.default_rng(0)
  axes = (Axis("upstream.reg.weight_decay", "values", (0.0, 0.1)),
          Axis("upstream.seed", "values", (0, 1, 2, 3), type_name="int"),
          Axis("seed", "values", (0, 1), type_name="int"))
  meta = {"mode": "grid", "upstream": "/up", "axes": [a.to_json() for a in axes],
          "runs": []}
  nested_p, pseudo_p = [], []
  for _ in range(300):
    runs, table = [], {}
    for wd in (0.0, 0.1):
      for u in range(4):
        run_offset = rng.normal(0, 0.05)
        for s in (0, 1):
          acc = np.clip(0.7 + run_offset + rng.normal(0, 0.01, 3), 0, 1)
          correct = np.round(acc * N).astype(int)
          values = {"upstream.reg.weight_decay": wd, "upstream.seed": u, "seed": s}
          runs.append(RunData(f"{wd}_{u}_{s}", values, "done", _summary(correct, 0.8)))
          table[(wd, u, s)] = correct[0] / N[0]
    sweep = Sweep(Path("/nonexistent"), meta, axes, tuple(runs), tuple(CLASSES), N)
    nested_p.append(analyse(sweep, axis="upstream.reg.weight_decay").changes[0.1].p[0])
    keys = [(u, s) for u in range(4) for s in (0, 1)]
    pseudo_p.append(scipy_stats.ttest_rel([table[(0.1, *k)] for k in keys],
                                          [table[(0.0, *k)] for k in keys]).pvalue)
  nested_rate = np.mean(np.array(nested_p) < 0.05)
  pseudo_rate = np.mean(np.array(pseudo_p) < 0.05)
  assert nested_rate < 0.09, nested_rate    # binomial sd at 300 sweeps: 1.3 points
  assert pseudo_rate > 2 * nested_rate + 0.05, (pseudo_rate, nested_rate)
