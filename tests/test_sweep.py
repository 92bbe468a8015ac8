"""jaxreg.sweep: axes, grid and random expansion, the CLI, runs.csv, resume."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxreg import config as config_lib, records, sweep
from jaxreg.sweep import local
from tests.conftest import ROOT, kill_when_exists, python_env, tiny_config

AXES = ["--axis=reg.l2=0,1e-2", "--axis=seed=0,1"]
RUNS = ["reg.l2=0__seed=0", "reg.l2=0__seed=1", "reg.l2=0.01__seed=0",
        "reg.l2=0.01__seed=1"]


def _sweep_cmd(workdir, *args):
  # Sequential: these tests compare runs.csv byte for byte and kill between runs; a
  # vmapped group (--executor=auto may choose one) matches only within tolerance and
  # writes its rows when the whole group ends (tests/test_group.py covers that).
  return [sys.executable, "-m", "jaxreg.sweep", "--config=configs/lstm.py:tiny",
          f"--workdir={workdir}", "--executor=sequential", *args]


_CACHE = {}


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
  """2 strengths of reg.l2 x 2 seeds on the tiny config, run once through the CLI
  (shared with tests/test_report.py; tests that change it work on a copy)."""
  if "dir" not in _CACHE:
    workdir = tmp_path_factory.mktemp("sweep") / "s"
    proc = subprocess.run(_sweep_cmd(workdir, *AXES), cwd=ROOT, env=python_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _CACHE["dir"], _CACHE["stdout"] = workdir, proc.stdout
  return _CACHE["dir"]


# ------------------------------------------------------------------ parsing


def test_cast_value_follows_the_keys_type():
  assert sweep.cast_value("k", "1e-3", "float") == 0.001
  assert sweep.cast_value("k", "0", "float") == 0.0
  assert isinstance(sweep.cast_value("k", "0", "float"), float)
  assert sweep.cast_value("k", "3", "int") == 3
  assert sweep.cast_value("k", "1e2", "int") == 100
  assert sweep.cast_value("k", "True", "bool") is True
  assert sweep.cast_value("k", "0", "bool") is False
  assert sweep.cast_value("k", " adam ", "str") == "adam"
  for text, type_name, match in [("1.5", "int", "not an integer"),
                                 ("abc", "float", "not a number"),
                                 ("maybe", "bool", "not a bool")]:
    with pytest.raises(sweep.SweepError, match=match):
      sweep.cast_value("k", text, type_name)


def test_parse_axis_values_and_distributions():
  config = tiny_config()
  a = sweep.parse_axis("reg.weight_decay=0,1e-4,1e-3", config)
  assert (a.kind, a.values, a.type_name) == ("values", (0.0, 1e-4, 1e-3), "float")
  a = sweep.parse_axis("seed=0,1,2", config)
  assert a.values == (0, 1, 2) and all(type(v) is int for v in a.values)
  a = sweep.parse_axis("model.bidirectional=true,false", config)
  assert a.values == (True, False)
  a = sweep.parse_axis("optim.name=choice:adam,sgd", config)
  assert (a.kind, a.values) == ("choice", ("adam", "sgd"))
  a = sweep.parse_axis("optim.learning_rate=loguniform:1e-5:1e-2", config)
  assert (a.kind, a.low, a.high) == ("loguniform", 1e-5, 1e-2)
  a = sweep.parse_axis("model.hidden_size=uniform:16:128", config)
  assert (a.kind, a.type_name) == ("uniform", "int")
  a = sweep.parse_axis("reg.decay_mask=all;ndim>1", config)  # values with commas: ';'
  assert a.values == ("all", "ndim>1")
  a = sweep.parse_axis("seed=1,1,2", config)  # repeats dropped
  assert a.values == (1, 2)


@pytest.mark.parametrize("spec,match", [
    ("reg.wd=0,1",
     r"unknown config key 'reg.wd'( \(did you mean .*\))?: reg has agc, agc_eps"),
    ("nope=1", "unknown config key 'nope': the config has"),
    ("model.dropout=0.1", "'model.dropout' is a group of keys"),
    ("seed=0,1.5", "'1.5' is not an integer"),
    ("reg.l2", "must be KEY=VALUES"),
    ("reg.l2=", "no values"),
    ("optim.learning_rate=loguniform:0:1", "loguniform needs 0 < LOW < HIGH"),
    ("optim.learning_rate=uniform:1", "write uniform:LOW:HIGH"),
    ("optim.name=loguniform:1:2", "needs a numeric key"),
])
def test_parse_axis_errors_name_the_key(spec, match):
  with pytest.raises(sweep.SweepError, match=match):
    sweep.parse_axis(spec, tiny_config())


def test_the_same_key_twice_is_an_error():
  with pytest.raises(sweep.SweepError, match="seed given more than once"):
    sweep.parse_axes(["seed=0", "seed=1"], tiny_config())
  with pytest.raises(sweep.SweepError, match="at least one --axis"):
    sweep.parse_axes([], tiny_config())


# ---------------------------------------------------------------- expansion


def test_grid_is_the_cartesian_product_first_axis_outermost():
  config = tiny_config()
  axes = sweep.parse_axes(["reg.weight_decay=0,1e-3", "seed=0,1,2"], config)
  points = sweep.expand(axes)
  assert len(points) == 6
  assert points[0] == {"reg.weight_decay": 0.0, "seed": 0}
  assert points[1] == {"reg.weight_decay": 0.0, "seed": 1}
  assert points[5] == {"reg.weight_decay": 1e-3, "seed": 2}
  # choice: is a plain list in a grid; a distribution needs --budget
  assert len(sweep.expand(sweep.parse_axes(["optim.name=choice:adam,sgd"], config))) == 2
  with pytest.raises(sweep.SweepError, match="needs --budget"):
    sweep.expand(sweep.parse_axes(["optim.learning_rate=uniform:0.1:1"], config))


def test_random_search_is_deterministic_in_the_sampler_seed():
  config = tiny_config()
  axes = sweep.parse_axes(["optim.learning_rate=loguniform:1e-5:1e-2",
                           "model.dropout.output=uniform:0:0.5",
                           "model.hidden_size=uniform:16:128",
                           "optim.name=adam,sgd", "seed=0,1"], config)
  a = sweep.expand(axes, budget=20, sampler_seed=3)
  assert a == sweep.expand(axes, budget=20, sampler_seed=3)
  assert a != sweep.expand(axes, budget=20, sampler_seed=4)
  assert len(a) == 20 and len({sweep.run_name(p) for p in a}) == 20
  lrs = np.array([p["optim.learning_rate"] for p in a])
  assert lrs.min() >= 1e-5 and lrs.max() <= 1e-2
  # log-uniform: about as many draws below the geometric middle as above
  assert 5 <= (lrs < 10 ** -3.5).sum() <= 15
  for p in a:
    assert float(f"{p['optim.learning_rate']:.4g}") == p["optim.learning_rate"]
    assert 0 <= p["model.dropout.output"] <= 0.5
    assert isinstance(p["model.hidden_size"], int) and 16 <= p["model.hidden_size"] <= 128
    assert p["optim.name"] in ("adam", "sgd") and p["seed"] in (0, 1)
  # a finite space smaller than the budget gives each point once
  small = sweep.parse_axes(["optim.name=adam,sgd", "seed=0,1"], config)
  assert len(sweep.expand(small, budget=10, sampler_seed=0)) == 4


def test_a_larger_budget_extends_a_random_search(tmp_path):
  config = tiny_config()
  axes = sweep.parse_axes(["optim.learning_rate=loguniform:1e-4:1e-1", "seed=0,1"],
                          config)
  assert sweep.expand(axes, 10, 5)[:4] == sweep.expand(axes, 4, 5)
  runs, meta = sweep.prepare(config, tmp_path, axes, budget=4, sampler_seed=5)
  runs, meta = sweep.prepare(config, tmp_path, axes, budget=7, sampler_seed=5)
  saved = json.loads((tmp_path / "sweep.json").read_text())
  assert saved["budget"] == 7 and [r["name"] for r in saved["runs"]] == \
      [r.name for r in runs]
  with pytest.raises(sweep.SweepError, match="sampler_seed 5, not random budget 7 "
                     "sampler_seed 6"):
    sweep.prepare(config, tmp_path, axes, budget=7, sampler_seed=6)
  with pytest.raises(sweep.SweepError, match="budget 7 sampler_seed 5, not random "
                     "budget 3"):
    sweep.prepare(config, tmp_path, axes, budget=3, sampler_seed=5)


def test_run_names_are_readable_and_filesystem_safe():
  assert sweep.run_name({"reg.weight_decay": 0.001, "seed": 2}) == \
      "reg.weight_decay=0.001__seed=2"
  assert sweep.run_name({"reg.l2": 0.0, "x": 1e-5}) == "reg.l2=0__x=1e-05"
  assert sweep.run_name({"reg.decay_mask": "^head/=false", "b": True}) == \
      "reg.decay_mask=_head__false__b=true"
  long = sweep.run_name({f"key{i}": "v" * 30 for i in range(10)})
  assert len(long) <= 200
  assert sweep.format_value(0.1 + 0.2) == repr(0.1 + 0.2)  # exact when %g is not
  # an empty value keeps its (empty) name, and prints as '' in the progress lines
  assert sweep.run_name({"model.resnet.bn_stages": ""}) == "model.resnet.bn_stages="
  assert sweep.display_values({"model.resnet.bn_stages": "", "seed": 0}) == \
      "model.resnet.bn_stages='' seed=0"


def test_groups_separate_static_settings(tmp_path):
  from jaxreg import group
  config = tiny_config()
  axes = sweep.parse_axes(["optim.name=adam,sgd", "reg.l2=0,1e-3", "seed=0,1"], config)
  runs = sweep.plan_runs(config, tmp_path, sweep.expand(axes))
  groups = [[runs[i] for i in g] for g in group.partition([r.config for r in runs])]
  assert [len(g) for g in groups] == [4, 4]
  assert {r.values["optim.name"] for r in groups[0]} == {"adam"}
  assert runs[5].config.reg.l2 == 0.0 and runs[5].config.optim.name == "sgd"
  assert runs[5].config.seed == 1 and config.seed == 0  # the base is untouched


# ---------------------------------------------------------------------- CLI


def test_unknown_axis_key_is_one_line_with_exit_code_2(tmp_path):
  proc = subprocess.run(_sweep_cmd(tmp_path / "w", "--axis=reg.wd=0,1"), cwd=ROOT,
                        env=python_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert "unknown config key 'reg.wd'" in lines[0]
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("key,hint", [("reg.wieght_decay", "reg.weight_decay"),
                                      ("optim.learnig_rate", "optim.learning_rate"),
                                      ("modle.dropout.output", "model.dropout.output")])
def test_a_misspelt_axis_key_gets_the_hint_a_misspelt_config_key_gets(key, hint):
  # The same near-miss hint as `--config.KEY=` (jaxreg.cli), at every depth of the key.
  config = tiny_config()
  with pytest.raises(sweep.SweepError) as e:
    sweep.parse_axes([f"{key}=0,1"], config)
  assert f"unknown config key {key!r} (did you mean {hint}?)" in str(e.value)


def test_a_bad_value_for_any_run_fails_before_training(tmp_path):
  config = tiny_config()
  axes = sweep.parse_axes(["model.dropout.output=0.1,1.5"], config)
  with pytest.raises(sweep.SweepError, match=r"run model.dropout.output=1.5: "
                     r"model.dropout.output=1.5 must be a rate"):
    local.run_sweep(config, tmp_path, axes)
  assert not (tmp_path / "sweep.json").exists()


def _cell_value(cell: str, like):
  """A runs.csv cell read back as the type of `like` (a config.json value)."""
  if isinstance(like, (list, dict)):
    return json.loads(cell)
  if like is None:
    return None if cell == "" else cell
  if isinstance(like, bool):
    return {"true": True, "false": False}[cell]
  return type(like)(cell)


def test_tiny_sweep_writes_runs_csv_and_standard_run_dirs(tiny_sweep):
  meta = json.loads((tiny_sweep / "sweep.json").read_text())
  assert meta["mode"] == "grid"
  assert [a["key"] for a in meta["axes"]] == ["reg.l2", "seed"]
  assert [r["name"] for r in meta["runs"]] == RUNS
  assert all(r["status"] == "done" for r in meta["runs"])
  rows = records.read_runs_csv(tiny_sweep / "runs.csv")
  assert [r["run"] for r in rows] == RUNS
  classes = ["freq_a", "freq_b", "freq_c", "freq_d", "rare", "order_xy", "order_yx",
             "conj_pq"]
  header = list(rows[0])
  for col in ["run", "status", "reg.l2", "seed", "val_accuracy", "test_accuracy",
              "test_balanced_accuracy", "test_macro_f1", "test_worst_class_accuracy",
              "val_balanced_accuracy", "val_macro_f1", "val_worst_class_accuracy",
              "best_step", "train_seconds",
              *[f"test_acc/{c}" for c in classes], *[f"test_count/{c}" for c in classes]]:
    assert col in header, col
  for row, name in zip(rows, RUNS):
    summary = json.loads((tiny_sweep / name / "summary.json").read_text())
    assert row["status"] == "done"
    assert float(row["test_accuracy"]) == summary["test"]["accuracy"]
    assert float(row["test_acc/rare"]) == summary["test"]["per_class_accuracy"][4]
    assert int(row["test_count/rare"]) == 10
    config = json.loads((tiny_sweep / name / "config.json").read_text())
    assert config["reg"]["l2"] == float(row["reg.l2"])
    assert config["seed"] == int(row["seed"])
    # runs.csv's config.* columns: the config the run trained with, every key
    flat = config_lib.flatten(config)
    assert {k[len("config."):] for k in row if k.startswith("config.")} == set(flat)
    for key, value in flat.items():
      assert _cell_value(row["config." + key], value) == value, key
    assert (tiny_sweep / name / "metrics.jsonl").exists()
  per_class = records.read_runs_csv(tiny_sweep / records.PER_CLASS_FILE)
  assert len(per_class) == len(RUNS) * len(classes)
  rare = [r for r in per_class if r["class"] == "rare"]
  assert [r["run"] for r in rare] == RUNS
  assert all(r["n"] == "10" for r in rare)
  out = _CACHE["stdout"].splitlines()
  assert out[0].startswith("[1/4] reg.l2=0 seed=0: test acc ")
  assert out[3].startswith("[4/4] reg.l2=0.01 seed=1: test acc ")
  assert out[-1].startswith(f"sweep {tiny_sweep}: 4/4 finished")


def test_evaluate_works_on_a_run_dir(tiny_sweep):
  from jaxreg.evaluate import evaluate_workdir
  run = tiny_sweep / RUNS[2]
  evaluation = evaluate_workdir(run, "test", "best")
  summary = json.loads((run / "summary.json").read_text())
  assert {k: v for k, v in evaluation.items()
          if k not in ("split", "step", "epoch")} == summary["test"]


def test_other_axes_on_the_same_dir_is_an_error(tiny_sweep):
  config = tiny_config()
  axes = sweep.parse_axes(["reg.l2=0,1e-3", "seed=0,1"], config)
  with pytest.raises(sweep.SweepError,
                     match=r"holds a sweep with axes reg.l2=0,0.01 seed=0,1, not "
                     r"reg.l2=0,0.001 seed=0,1; use a new --workdir"):
    sweep.prepare(config, tiny_sweep, axes)
  axes = sweep.parse_axes(["reg.l2=0,1e-2", "seed=0,1"], config)
  with pytest.raises(sweep.SweepError, match=r"another base config \(train.epochs\)"):
    sweep.prepare(tiny_config(**{"train.epochs": 3}), tiny_sweep, axes)


def test_rerun_trains_only_the_unfinished_run(tiny_sweep, tmp_path, capsys):
  workdir = tmp_path / "copy"
  shutil.copytree(tiny_sweep, workdir)
  before = (workdir / "runs.csv").read_text().splitlines()
  victim = workdir / RUNS[1]
  (victim / "summary.json").unlink()
  steps = sorted(int(p.name) for p in (victim / "checkpoints").iterdir()
                 if p.name.isdigit())
  shutil.rmtree(victim / "checkpoints" / str(steps[-1]))
  config = tiny_config()
  axes = sweep.parse_axes([a.removeprefix("--axis=") for a in AXES], config)
  outcomes = local.run_sweep(config, workdir, axes)
  assert list(outcomes) == [RUNS[1]] and outcomes[RUNS[1]].status == "done"
  captured = capsys.readouterr()
  assert captured.out.count("finished already") == 3
  if len(steps) > 1:  # an earlier checkpoint survived: the run resumes from it
    assert f"resumed from step {steps[-2]}" in captured.err
  after = (workdir / "runs.csv").read_text().splitlines()
  assert after[0] == before[0]
  for i in (0, 2, 3):  # finished rows are untouched
    assert after[1 + i] == before[1 + i]
  # the retrained run reproduces its numbers (data order and dropout keys are
  # functions of the seed and step); only the timing differs
  old, new = (dict(zip(before[0].split(","), r.split(","))) for r in
              (before[2], after[2]))
  assert {k: v for k, v in old.items() if k != "train_seconds"} == \
      {k: v for k, v in new.items() if k != "train_seconds"}


def test_a_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
  # The step schedule multiplies the learning rate by 1e38 after epoch 1 when
  # step_factor is large; with 1e-30 it just stops learning. Two runs, one diverges.
  config = tiny_config(**{"optim.name": "sgd", "optim.learning_rate": 0.1,
                          "optim.schedule": "step", "optim.step_epochs": 1,
                          "train.epochs": 2, "data.synthetic.train_size": 200})
  axes = sweep.parse_axes(["optim.step_factor=1e38,1e-30"], config)
  outcomes = local.run_sweep(config, tmp_path, axes)
  assert [o.status for o in outcomes.values()] == ["diverged", "done"]
  rows = records.read_runs_csv(tmp_path / "runs.csv")
  assert [r["status"] for r in rows] == ["diverged", "done"]
  assert "loss is" in rows[0]["error"] and rows[0]["test_accuracy"] == ""
  # how each was trained, the failed run too (the default executor: one after another)
  assert [(r["executor"], r["executor_size"]) for r in rows] == [("alone", "1")] * 2
  out = capsys.readouterr().out
  assert "[1/2] optim.step_factor=1e+38: diverged: TrainingDiverged: loss is" in out
  # rerun: the diverged run is skipped (it would diverge again), nothing trains
  again = local.run_sweep(config, tmp_path, axes)
  assert again == {}
  assert "diverged before, skipped" in capsys.readouterr().out
  assert [r["status"] for r in records.read_runs_csv(tmp_path / "runs.csv")] == \
      ["diverged", "done"]


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_matches_the_uninterrupted_sweep(tiny_sweep,
                                                                      tmp_path):
  workdir = tmp_path / "killed"
  proc = subprocess.Popen(_sweep_cmd(workdir, *AXES), cwd=ROOT, env=python_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  kill_when_exists(proc, workdir / RUNS[2] / "checkpoints" / "12", 300,
                   "the third run's first checkpoint")
  assert not (workdir / RUNS[2] / "summary.json").exists()
  rows = records.read_runs_csv(workdir / "runs.csv")  # still a valid CSV
  assert [r["run"] for r in rows] == RUNS[:2]
  rerun = subprocess.run(_sweep_cmd(workdir, *AXES), cwd=ROOT, env=python_env(),
                         capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert rerun.stdout.count("finished already") == 2
  assert "resumed from step 12" in rerun.stderr
  whole = records.read_runs_csv(tiny_sweep / "runs.csv")
  resumed = records.read_runs_csv(workdir / "runs.csv")
  for a, b in zip(whole, resumed):
    a.pop("train_seconds"), b.pop("train_seconds")
    assert a == b
