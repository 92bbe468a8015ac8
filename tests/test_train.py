import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxreg import checkpoint, config as config_lib, train
from jaxreg.evaluate import evaluate_workdir
from tests.conftest import ROOT, kill_when_exists, python_env, tiny_config

EVAL_KEYS = {"loss", "accuracy", "balanced_accuracy", "macro_f1",
             "worst_class_accuracy", "per_class_accuracy", "confusion_matrix",
             "class_names", "num_examples"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  summary = train.train_and_evaluate(tiny_config(), workdir)
  return workdir, summary


def _strip(evaluation):
  return {k: v for k, v in evaluation.items() if k not in ("split", "step", "epoch")}


def test_one_train_step_changes_every_parameter(tmp_path):
  s = train.setup(tiny_config(), tmp_path)
  from jaxreg import metrics, parallel
  from jaxreg.data import dataset
  batch = next(dataset.batches(s.data.train, 32))
  before = jax.device_get(s.state.params)
  counts = parallel.put_replicated(metrics.zero_counts(s.data.num_classes), s.mesh)
  state, counts, out = s.train_step(s.state, parallel.put_batch(batch, s.mesh), counts)
  after = jax.device_get(state.params)
  unchanged = [path for path, a, b in zip(
      *[[jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(before)]],
      jax.tree.leaves(before), jax.tree.leaves(after)) if np.array_equal(a, b)]
  assert not unchanged, f"parameters not updated: {unchanged}"
  assert int(state.step) == 1
  assert int(jax.device_get(counts)["confusion"].sum()) == 32
  assert np.isfinite(float(out["loss"]))


def test_outputs_follow_the_contract(finished_run):
  workdir, summary = finished_run
  config = json.loads((workdir / "config.json").read_text())
  assert config["model"]["cell"] == "lstm"
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in records if r["split"] in ("val", "test")]
  assert [r["split"] for r in evals] == ["val", "val", "test"]
  for r in evals:
    assert EVAL_KEYS <= r.keys() and {"step", "epoch"} <= r.keys()
    c = len(r["class_names"])
    assert len(r["per_class_accuracy"]) == c
    assert np.array(r["confusion_matrix"]).shape == (c, c)
  # every test example counted exactly once
  assert evals[-1]["num_examples"] == 10 * 8
  assert sum(map(sum, evals[-1]["confusion_matrix"])) == 80
  assert any(r["split"] == "train" and "per_class_accuracy" in r for r in records)
  assert {"best_step", "val", "test", "train_seconds", "examples_per_second",
          "provenance"} <= summary.keys()
  assert EVAL_KEYS <= summary["test"].keys()
  prov = summary["provenance"]
  assert prov["packages"]["jax"] and prov["devices"] and len(prov["data_fingerprint"]) == 64
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  # both the latest and the best checkpoint are kept
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints")
  assert ckpt.latest_step() == 24
  assert summary["best_step"] in ckpt.all_steps()
  ckpt.close()


def test_evaluate_recomputes_the_summary(finished_run):
  workdir, summary = finished_run
  evaluation = evaluate_workdir(workdir, "test", "best")
  assert _strip(evaluation) == summary["test"]
  saved = json.loads((workdir / "eval" / "test-best.json").read_text())
  assert _strip(saved) == summary["test"]
  val = evaluate_workdir(workdir, "val", "latest")
  assert val["step"] == 24 and val["num_examples"] == summary["val"]["num_examples"]


def test_same_seed_gives_the_same_numbers(finished_run, tmp_path):
  _, summary = finished_run
  again = train.train_and_evaluate(tiny_config(), tmp_path)
  assert again["test"] == summary["test"]
  assert again["val"] == summary["val"]


def test_rerun_of_a_finished_workdir_changes_nothing(finished_run):
  workdir, summary = finished_run
  lines = (workdir / "metrics.jsonl").read_text()
  again = train.train_and_evaluate(tiny_config(), workdir)
  assert again["test"] == summary["test"]
  assert (workdir / "metrics.jsonl").read_text() == lines


def test_workdir_with_other_settings_is_refused(finished_run):
  workdir, _ = finished_run
  with pytest.raises(config_lib.ConfigError, match="reg.l2"):
    train.train_and_evaluate(tiny_config(**{"reg.l2": 0.1}), workdir)


def test_early_stopping_stops_after_patience_evaluations(tmp_path):
  # min_delta 1.0: no accuracy can improve by more than 1, so only the first
  # evaluation counts as an improvement; patience 2 then stops after epoch 3.
  config = tiny_config(**{"train.epochs": 6, "train.early_stopping.patience": 2,
                          "train.early_stopping.min_delta": 1.0})
  summary = train.train_and_evaluate(config, tmp_path)
  assert summary["epochs_completed"] == 3
  assert summary["stopped_early"] is True


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
  # The step schedule multiplies the learning rate by 1e38 after epoch 1: overflow.
  config = tiny_config(**{"optim.name": "sgd", "optim.learning_rate": 0.1,
                          "optim.schedule": "step", "optim.step_epochs": 1,
                          "optim.step_factor": 1e38, "train.epochs": 3})
  with pytest.raises(train.TrainingDiverged, match="last good checkpoint is step 12"):
    train.train_and_evaluate(config, tmp_path)
  ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.all_steps() == [12]
  ckpt.close()
  assert not (tmp_path / "summary.json").exists()


def _main(workdir, *args):
  return [sys.executable, "-m", "jaxreg.main", "--config=configs/lstm.py:tiny",
          f"--workdir={workdir}", *args]


@pytest.mark.slow
def test_sigkill_after_first_checkpoint_then_rerun_matches_uninterrupted(tmp_path):
  args = ["--config.train.epochs=4"]
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_main(killed, *args), cwd=ROOT, env=python_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  kill_when_exists(proc, killed / "checkpoints" / "12", 120, "the first checkpoint")
  assert not (killed / "summary.json").exists()
  rerun = subprocess.run(_main(killed, *args), cwd=ROOT, env=python_env(),
                         capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr
  assert "resumed from step" in rerun.stderr
  whole = tmp_path / "whole"
  subprocess.run(_main(whole, *args), cwd=ROOT, env=python_env(), check=True,
                 capture_output=True, timeout=300)
  a = json.loads((killed / "summary.json").read_text())
  b = json.loads((whole / "summary.json").read_text())
  assert a["test"] == b["test"] and a["val"] == b["val"]
  assert a["best_step"] == b["best_step"]
  # no log line is duplicated by the resume
  records = [json.loads(l) for l in (killed / "metrics.jsonl").read_text().splitlines()]
  keys = [(r["split"], r["step"]) for r in records]
  assert len(keys) == len(set(keys))
  assert [r["step"] for r in records if r["split"] == "val"] == [12, 24, 36, 48]


FOUR_DEVICES = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
from tests.conftest import tiny_config
from jaxreg import config as config_lib, train
assert len(jax.devices()) == 4
overrides = {"model.dropout.embed": 0.1, "model.dropout.output": 0.2}
out = {}
for n in (1, 4):
  workdir = f"{sys.argv[2]}/n{n}"
  summary = train.train_and_evaluate(tiny_config(**overrides), workdir,
                                     devices=jax.devices()[:n])
  s = train.setup(tiny_config(**overrides), workdir, devices=jax.devices()[:n])
  state, _ = train.restore(s, s.checkpointer.latest_step())
  out[n] = {"params": [np.asarray(x).tolist() for x in jax.tree.leaves(state.params)],
            "test": summary["test"], "loss": summary["val"]["loss"]}
  s.checkpointer.close()
try:
  train.setup(tiny_config(**{"train.batch_size": 30}), sys.argv[2] + "/bad")
except config_lib.ConfigError as e:
  out["error"] = str(e)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_four_devices_match_one(tmp_path):
  env = python_env(XLA_FLAGS="--xla_force_host_platform_device_count=4",
                   JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(ROOT), str(tmp_path)],
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for a, b in zip(out["1"]["params"], out["4"]["params"]):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=2e-3, atol=2e-5)
  assert abs(out["1"]["loss"] - out["4"]["loss"]) <= 1e-3 * abs(out["1"]["loss"])
  correct = [np.trace(np.array(out[n]["test"]["confusion_matrix"])) for n in ("1", "4")]
  assert abs(correct[0] - correct[1]) <= 2
  assert "train.batch_size=30" in out["error"] and "4 devices" in out["error"]


@pytest.mark.parametrize("args,expected", [
    (["--config.model.cel=gru"], "unknown config key 'model.cel'"),
    (["--config.model.cell=transformer"], "model.cell='transformer' is not one of: rnn, gru, lstm"),
    (["--config.optim.name=adamx"], "optim.name='adamx' is not one of: sgd"),
    (["--config.model.dropout.embed=-0.1"], "model.dropout.embed=-0.1"),
    (["--config.reg.weight_decay=-1.0"], "reg.weight_decay=-1.0"),
])
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, args, expected):
  proc = subprocess.run(_main(tmp_path / "w", *args), cwd=ROOT, env=python_env(),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert expected in lines[0]


def _main_with_config(config_arg, workdir):
  return subprocess.run([sys.executable, "-m", "jaxreg.main", f"--config={config_arg}",
                         f"--workdir={workdir}"], cwd=ROOT, env=python_env(),
                        capture_output=True, text=True, timeout=120)


def test_missing_config_file_is_one_line_with_exit_code_2(tmp_path):
  proc = _main_with_config("configs/nope.py", tmp_path)
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1 and "configs/nope.py" in proc.stderr


def test_validate_names_the_key_and_the_choices():
  for key, value, expected in [
      ("model.pooling", "sum", "model.pooling='sum' is not one of: last, mean, max, attention"),
      ("reg.weight_decay_mode", "coupled", "reg.weight_decay_mode='coupled' is not one of"),
      ("train.early_stopping.mode", "up", "is not one of: min, max"),
      ("train.batch_size", 0, "train.batch_size=0 must be an integer >= 1"),
      ("optim.learning_rate", -1.0, "optim.learning_rate=-1.0"),
  ]:
    with pytest.raises(config_lib.ConfigError, match=expected.replace("(", r"\(")):
      config_lib.validate(tiny_config(**{key: value}))


def test_early_stopping_mode_must_agree_with_its_metric(tmp_path):
  """metric=loss with the default mode=max would count a rising loss as improvement."""
  proc = subprocess.run(_main(tmp_path / "w", "--config.train.early_stopping.metric=loss",
                              "--config.train.early_stopping.patience=2"),
                        cwd=ROOT, env=python_env(), capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1
  assert proc.stderr.startswith("error: train.early_stopping.mode='max' contradicts "
                                "train.early_stopping.metric='loss' (lower is better): "
                                "set train.early_stopping.mode=min")
  with pytest.raises(config_lib.ConfigError, match="set train.early_stopping.mode=max"):
    config_lib.validate(tiny_config(**{"train.early_stopping.mode": "min"}))
  for metric, mode in (("loss", "min"), ("macro_f1", "max"), ("accuracy", "max")):
    config_lib.validate(tiny_config(**{"train.early_stopping.metric": metric,
                                       "train.early_stopping.mode": mode}))


def test_unknown_config_variant_is_one_line(tmp_path):
  proc = _main_with_config("configs/lstm.py:bogus", tmp_path)
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1
  assert "variant 'bogus' is not one of: synthetic, synthetic_reg, trec" in proc.stderr


def test_final_checkpoint_latest_evaluates_the_last_epoch(tmp_path):
  summary = train.train_and_evaluate(
      tiny_config(**{"train.final_checkpoint": "latest"}), tmp_path)
  assert summary["evaluated_checkpoint"] == "latest"
  assert summary["evaluated_step"] == 24 and summary["evaluated_epoch"] == 2
  latest = evaluate_workdir(tmp_path, "test", "latest")
  assert _strip(latest) == summary["test"]


def test_evaluate_fills_keys_missing_from_an_older_config_json(finished_run, tmp_path):
  import shutil
  workdir, summary = finished_run
  old = tmp_path / "old"
  shutil.copytree(workdir, old)
  saved = json.loads((old / "config.json").read_text())
  del saved["train"]["final_checkpoint"]  # as if written before the key existed
  (old / "config.json").write_text(json.dumps(saved))
  assert _strip(evaluate_workdir(old, "test", "best")) == summary["test"]


@pytest.mark.slow  # three short runs and an evaluation: ~8 s here
def test_each_entry_point_validates_the_config_once(tmp_path, monkeypatch):
  # Validation runs once where a run, an evaluation or a sweep starts; the builders
  # (train.setup) trust it. A sweep checks every point before anything is written and
  # train.run (a library entry point too) checks again: twice per point, never more.
  from jaxreg.sweep import local, parse_axes
  checked = []
  validate = config_lib.validate
  monkeypatch.setattr(config_lib, "validate",
                      lambda c: (checked.append(c.seed), validate(c))[1])
  config = tiny_config(**{"train.epochs": 1, "data.synthetic.train_size": 200})
  train.train_and_evaluate(config, tmp_path / "run")
  assert len(checked) == 1
  checked.clear()
  evaluate_workdir(tmp_path / "run")
  assert len(checked) == 1
  checked.clear()
  local.run_sweep(config, tmp_path / "sweep", parse_axes(["seed=3,4"], config),
                  out=open("/dev/null", "w"))
  assert sorted(checked) == [3, 3, 4, 4]
  # and a bad config still fails at each entry, naming the key
  bad = tiny_config(**{"model.dropout.output": 1.5})
  for call in (lambda: train.train_and_evaluate(bad, tmp_path / "bad"),
               lambda: train.run([bad, bad], [tmp_path / "b1", tmp_path / "b2"])):
    with pytest.raises(config_lib.ConfigError, match="model.dropout.output"):
      call()
  assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_end_of_run_prints_per_class_table_worst_first_then_files(tmp_path):
  # Issue 16 item 7: the last lines of a run are the test classes, worst first with
  # their counts (as summary.json has them), the averages, then the files written.
  workdir = tmp_path / "w"
  proc = subprocess.run(_main(workdir), cwd=ROOT, env=python_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  test = json.loads((workdir / "summary.json").read_text())["test"]
  out = proc.stdout.strip().splitlines()
  start = next(i for i, l in enumerate(out) if l.startswith("test per class"))
  rows = [l.split() for l in out[start + 3:start + 3 + len(test["class_names"])]]
  names = test["class_names"]
  expect = sorted(range(len(names)), key=lambda k: (test["per_class_accuracy"][k], k))
  assert [r[0] for r in rows] == [names[k] for k in expect]
  for row, k in zip(rows, expect):
    assert int(row[1]) == test["per_class_count"][k]
    assert int(row[2]) == test["confusion_matrix"][k][k]
    assert float(row[3]) == pytest.approx(test["per_class_accuracy"][k], abs=5e-5)
  assert out[-2].startswith("test accuracy ")
  assert out[-1].startswith(f"files in {workdir}: ")
  listed = out[-1].split(": ", 1)[1].split()
  for name in ["summary.json", "config.json", "metrics.jsonl", "predictions_test.npz",
               "checkpoints/", "plots/"]:
    assert name in listed, name
  assert all((workdir / n.rstrip("/")).exists() for n in listed)
