"""Experiment trackers (log.trackers, jaxreg/trackers.py) with the real libraries,
offline: W&B's offline run files, an MLflow SQLite store read back through
MlflowClient, TensorBoard's event files read with its EventAccumulator.

One preempted-then-resumed run feeds most checks (the resume must continue the same
tracker runs); a 2-point sweep trained as one vmapped group checks the grouping and
that each member logs to its own run.
"""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxreg import config as config_lib, preemption, records, sweep, train
from jaxreg.sweep import local
from tests.conftest import ROOT, python_env, tiny_config

pytest.importorskip("wandb")
pytest.importorskip("mlflow")

# No tracker may try the network in these tests (the trackers set these too).
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ALL = {"log.trackers": "tensorboard,wandb,mlflow"}
# A learning rate that changes every step, so the logged one is checked step by step.
RUN = {**ALL, "optim.schedule": "cosine", "optim.min_lr_ratio": 0.1}


# ------------------------------------------------------------------ readers


def wandb_records(run_dir: Path) -> list:
  """The records of an offline run's run-<id>.wandb file, parsed with wandb's own
  protobuf (wandb 0.31 ships no Python reader): a LevelDB-style log of 32 KiB blocks,
  after a 7-byte file header, each chunk `crc32 (4) | length (2, LE) | type (1)`
  (1 full, 2 first, 3 middle, 4 last)."""
  from wandb.proto import wandb_internal_pb2

  data = next(run_dir.glob("run-*.wandb")).read_bytes()
  assert data[:4] == b":W&B"
  out, pending, pos, block = [], b"", 7, 32768
  while pos + 7 <= len(data):
    if block - pos % block < 7:  # a block's tail too short for a header: padding
      pos += block - pos % block
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    chunk = data[pos + 7:pos + 7 + length]
    pos += 7 + length
    pending = chunk if kind in (1, 2) else pending + chunk
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      out.append(record)
  return out


def wandb_run(workdir: Path) -> dict:
  """{'ids', 'groups', 'config', 'history' [rows], 'summary', 'files'} over every
  offline run directory of a workdir (one per attempt of a resumed run)."""
  run = {"ids": set(), "groups": set(), "config": {}, "history": [], "summary": {},
         "files": []}
  for run_dir in sorted((workdir / records.WANDB_DIR).glob("offline-run-*")):
    for r in wandb_records(run_dir):
      kind = r.WhichOneof("record_type")
      if kind == "run":
        run["ids"].add(r.run.run_id)
        run["groups"].add(r.run.run_group)
        run["config"].update({i.key: json.loads(i.value_json)
                              for i in r.run.config.update})
      elif kind == "config":
        run["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
      elif kind == "history":
        run["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                               for i in r.history.item})
      elif kind == "summary":
        run["summary"].update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                               for i in r.summary.update})
    run["files"] += [p.name for p in (run_dir / "files").rglob("*.png")]
  return run


def logged(workdir: Path, split: str) -> list[dict]:
  return [r for r in (json.loads(l) for l in
                      (workdir / "metrics.jsonl").read_text().splitlines())
          if r["split"] == split]


def mlflow_client(uri: str):
  from mlflow.tracking import MlflowClient
  return MlflowClient(uri)


def sqlite_uri(directory: Path) -> str:
  return f"sqlite:///{directory / records.MLFLOW_DB}"


# ------------------------------------------------------------------ one run


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
  """A tiny run with every tracker, preempted after its first step, then resumed."""
  workdir = tmp_path_factory.mktemp("tracked")
  config = tiny_config(**RUN)
  preemption.clear()
  preemption.request()
  try:
    with pytest.raises(preemption.Preempted):
      train.train_and_evaluate(config, workdir)
  finally:
    preemption.clear()
  first = records.tracker_ids(workdir)
  killed = mlflow_client(sqlite_uri(workdir)).get_run(first["mlflow"]["id"]).info.status
  summary = train.train_and_evaluate(config, workdir)
  return workdir, summary, first, killed


@pytest.mark.slow
def test_a_resumed_run_continues_its_wandb_and_mlflow_runs(resumed_run):
  workdir, _, first, killed = resumed_run
  assert set(first) == {"wandb", "mlflow"}
  assert records.tracker_ids(workdir) == first
  assert killed == "KILLED"
  client = mlflow_client(sqlite_uri(workdir))
  assert client.get_run(first["mlflow"]["id"]).info.status == "FINISHED"
  assert len(client.search_runs([client.get_experiment_by_name("jaxreg")
                                 .experiment_id])) == 1
  attempts = list((workdir / records.WANDB_DIR).glob("offline-run-*"))
  assert len(attempts) == 2  # one offline directory per attempt, one run id
  assert wandb_run(workdir)["ids"] == {first["wandb"]["id"]}


@pytest.mark.slow
def test_mlflow_holds_config_epochs_per_class_summary_and_plots(resumed_run):
  workdir, summary, ids, _ = resumed_run
  client = mlflow_client(sqlite_uri(workdir))
  run = client.get_run(ids["mlflow"]["id"])
  flat = config_lib.flatten(json.loads((workdir / "config.json").read_text()))
  assert run.data.params["optim.learning_rate"] == json.dumps(flat["optim.learning_rate"])
  assert run.data.params["model.cell"] == flat["model.cell"]
  assert set(run.data.params) == set(flat)
  val = logged(workdir, "val")
  history = client.get_metric_history(ids["mlflow"]["id"], "val/accuracy")
  assert [(m.step, m.value) for m in history] == [(r["step"], r["accuracy"]) for r in val]
  name = val[-1]["class_names"][0]
  per_class = client.get_metric_history(ids["mlflow"]["id"], f"val/class_accuracy/{name}")
  assert [m.value for m in per_class] == [r["per_class_accuracy"][0] for r in val]
  test = summary["test"]
  assert run.data.metrics["test/accuracy"] == pytest.approx(test["accuracy"])
  assert run.data.metrics["test/worst_class_accuracy"] == \
      pytest.approx(test["worst_class_accuracy"])
  for cls, acc in zip(test["class_names"], test["per_class_accuracy"]):
    assert run.data.metrics[f"test/class_accuracy/{cls}"] == pytest.approx(acc)
  steps = logged(workdir, "train_step")
  lr = client.get_metric_history(ids["mlflow"]["id"], "train/learning_rate")
  assert {m.step for m in lr} == {r["step"] for r in steps}
  plots = {Path(a.path).name for a in client.list_artifacts(ids["mlflow"]["id"], "plots")}
  assert plots == {p.name for p in (workdir / "plots").glob("*.png")} and plots
  artifacts = {a.path for a in client.list_artifacts(ids["mlflow"]["id"])}
  assert records.SUMMARY_FILE in artifacts
  # the default store keeps its artifacts beside the database, not in ./mlruns
  assert list((workdir / records.MLFLOW_ARTIFACTS).rglob("*.png"))
  assert not (Path.cwd() / "mlruns").exists()


@pytest.mark.slow
def test_wandb_offline_run_holds_config_epochs_per_class_summary_and_plots(resumed_run):
  workdir, summary, _, _ = resumed_run
  run = wandb_run(workdir)
  flat = config_lib.flatten(json.loads((workdir / "config.json").read_text()))
  assert run["config"]["optim.learning_rate"] == flat["optim.learning_rate"]
  assert run["config"]["log.trackers"] == ALL["log.trackers"]
  val = logged(workdir, "val")
  rows = [r for r in run["history"] if "val/accuracy" in r]
  # The replay after the resume logs again what the cut attempt had logged; every
  # epoch's value is there, at its step.
  assert {(r["_step"], r["val/accuracy"]) for r in rows} == \
      {(r["step"], r["accuracy"]) for r in val}
  name = val[-1]["class_names"][-1]
  assert any(f"val/class_accuracy/{name}" in r for r in rows)
  assert any("train/grad_norm" in r and "train/learning_rate" in r
             for r in run["history"])
  test = summary["test"]
  assert run["summary"]["test/accuracy"] == pytest.approx(test["accuracy"])
  assert run["summary"]["test/balanced_accuracy"] == \
      pytest.approx(test["balanced_accuracy"])
  for cls, acc in zip(test["class_names"], test["per_class_accuracy"]):
    assert run["summary"][f"test/class_accuracy/{cls}"] == pytest.approx(acc)
  assert len(run["files"]) == len(list((workdir / "plots").glob("*.png")))


@pytest.mark.slow
def test_tensorboard_holds_hparams_lr_grad_norm_and_test_scalars(resumed_run):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  from tensorboard.plugins.hparams import plugin_data_pb2

  workdir, summary, _, _ = resumed_run
  events = EventAccumulator(str(workdir / "tensorboard"), size_guidance={"scalars": 0})
  events.Reload()
  content = events.PluginTagToContent("hparams")
  start = plugin_data_pb2.HParamsPluginData.FromString(
      content["_hparams_/session_start_info"]).session_start_info
  assert start.hparams["model.cell"].string_value == "lstm"
  assert start.hparams["optim.learning_rate"].number_value == \
      pytest.approx(json.loads((workdir / "config.json").read_text())
                    ["optim"]["learning_rate"])
  from jaxreg.train.state import learning_rate
  schedule = learning_rate(tiny_config(**RUN), steps_per_epoch=summary["evaluated_step"]
                           // summary["evaluated_epoch"])
  steps = logged(workdir, "train_step")
  lr = events.Scalars("train/learning_rate")
  assert [(e.step, e.value) for e in lr] == \
      [(r["step"], pytest.approx(schedule(r["step"]))) for r in steps]
  norms = events.Scalars("train/grad_norm")
  assert [e.value for e in norms] == [pytest.approx(r["grad_norm"]) for r in steps]
  test = summary["test"]
  (acc,) = events.Scalars("test/accuracy")
  assert (acc.step, acc.value) == (summary["evaluated_step"],
                                   pytest.approx(test["accuracy"]))
  assert events.Scalars("test/worst_class_accuracy")[0].value == \
      pytest.approx(test["worst_class_accuracy"])
  for cls, value in zip(test["class_names"], test["per_class_accuracy"]):
    assert events.Scalars(f"test/class_accuracy/{cls}")[0].value == \
        pytest.approx(value)


def test_learning_rate_follows_the_schedule():
  """The logged learning rate is the schedule's value at the update that made the
  step: warmup from 0, then the decay (optim.schedule_shape)."""
  from jaxreg.train.state import learning_rate
  config = tiny_config(**{"optim.schedule": "warmup_linear", "optim.warmup_steps": 4,
                          "optim.learning_rate": 0.1, "optim.min_lr_ratio": 0.0,
                          "train.epochs": 2})
  lr = learning_rate(config, steps_per_epoch=10)
  assert [lr(s) for s in (1, 3, 5)] == pytest.approx([0.0, 0.05, 0.1])
  assert lr(20) == pytest.approx(0.1 * (1 - 15 / 16))


# ------------------------------------------------------------------ sweeps


@pytest.mark.slow
def test_a_sweep_group_logs_each_member_to_its_own_child_run(tmp_path):
  """A 2-point sweep trained as one vmapped group: one MLflow parent run (named after
  the sweep directory, in the sweep's own store) with 2 nested child runs holding
  their own config and metrics, and a W&B run per member grouped by the sweep."""
  base = tiny_config(**{**ALL, "train.epochs": 1})
  axes = sweep.parse_axes(["reg.l2=0,1e-3"], base)
  outcomes = local.run_sweep(base, tmp_path, axes, executor=local.GroupExecutor(),
                             out=open(os.devnull, "w"))
  assert [o.status for o in outcomes.values()] == ["done", "done"]
  assert {o.summary["executor"]["kind"] for o in outcomes.values()} == {"group"}
  client = mlflow_client(sqlite_uri(tmp_path))
  experiment = client.get_experiment_by_name("jaxreg").experiment_id
  runs = client.search_runs([experiment])
  parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
  children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
  assert [p.info.run_name for p in parents] == [tmp_path.name]
  assert len(children) == 2
  assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
  run_dirs = sorted(p for p in tmp_path.iterdir() if (p / records.SUMMARY_FILE).exists())
  assert len(run_dirs) == 2
  by_id = {c.info.run_id: c for c in children}
  for run_dir in run_dirs:
    child = by_id[records.tracker_ids(run_dir)["mlflow"]["id"]]
    config = json.loads((run_dir / "config.json").read_text())
    assert child.data.params["reg.l2"] == json.dumps(config["reg"]["l2"])
    summary = records.read_summary(run_dir)
    assert child.data.metrics["test/accuracy"] == pytest.approx(summary["test"]["accuracy"])
    (val,) = logged(run_dir, "val")
    history = client.get_metric_history(child.info.run_id, "val/accuracy")
    assert [m.value for m in history] == [val["accuracy"]]
    wb = wandb_run(run_dir)
    assert wb["groups"] == {tmp_path.name}
    assert wb["ids"] == {records.tracker_ids(run_dir)["wandb"]["id"]}
    assert wb["summary"]["test/accuracy"] == pytest.approx(summary["test"]["accuracy"])
  assert len({records.tracker_ids(d)["wandb"]["id"] for d in run_dirs}) == 2
  assert not list(run_dirs[0].glob(records.MLFLOW_DB))  # the sweep's store only


# ------------------------------------------------------------------ bad input


def test_unknown_tracker_is_a_near_miss_error():
  config = tiny_config(**{"log.trackers": "tensorboard,wandbb"})
  with pytest.raises(config_lib.ConfigError, match=r"did you mean wandb\?"):
    config_lib.validate(config)
  config = tiny_config(**{"log.trackers": "mlflow,mlflow"})
  with pytest.raises(config_lib.ConfigError, match="twice"):
    config_lib.validate(config)


def test_resuming_with_other_trackers_is_the_same_experiment(tmp_path):
  from jaxreg.train import workdir as workdir_lib
  config = tiny_config()
  workdir_lib.write_config(config, tmp_path)
  workdir_lib.check_config(tiny_config(**{"log.trackers": "wandb"}), tmp_path)
  with pytest.raises(config_lib.ConfigError, match="other settings"):
    workdir_lib.check_config(tiny_config(**{"seed": 5}), tmp_path)


@pytest.mark.slow
def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path):
  """Without the wandb package (a site-packages copy lacking it, as symlinks), the run
  stops at validation with exit 2 and one line naming the pip extra; nothing is
  written."""
  import sysconfig
  site = Path(sysconfig.get_paths()["purelib"])
  shadow = tmp_path / "site"
  shadow.mkdir()
  for entry in site.iterdir():
    if not entry.name.lower().startswith("wandb"):
      (shadow / entry.name).symlink_to(entry)
  workdir = tmp_path / "run"
  code = ("import runpy, sys; sys.path[:] = [p for p in sys.path if 'site-packages' "
          f"not in p] + [{str(ROOT)!r}, {str(shadow)!r}]; "
          "sys.argv = ['jaxreg.main', '--config=configs/lstm.py:tiny', "
          f"'--workdir={workdir}', '--config.log.trackers=wandb']; "
          "runpy.run_module('jaxreg.main', run_name='__main__')")
  proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, env=python_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("error: log.trackers='wandb': wandb is not installed")
  assert "pip install 'jaxreg[trackers]'" in lines[-1]
  assert not workdir.exists()


def test_a_sweep_resumes_with_other_trackers_and_from_before_the_log_keys(tmp_path):
  from jaxreg.sweep.axes import SweepError
  from jaxreg.sweep.plan import prepare
  base = tiny_config()
  axes = sweep.parse_axes(["reg.l2=0,1e-3"], base)
  prepare(base, tmp_path, axes)
  meta = json.loads((tmp_path / records.SWEEP_FILE).read_text())
  del meta["base_config"]["log"]  # as written before log.* existed
  (tmp_path / records.SWEEP_FILE).write_text(json.dumps(meta))
  runs, _ = prepare(tiny_config(**ALL), tmp_path, axes)
  assert {r.config.log.trackers for r in runs} == {ALL["log.trackers"]}
  with pytest.raises(SweepError, match="another base config"):
    prepare(tiny_config(**{"seed": 4}), tmp_path, axes)


@pytest.mark.slow
def test_resumed_with_another_mlflow_store_a_run_starts_there(tmp_path):
  """log.* may change on resume: the kept MLflow run id belongs to its store, so
  another URI gets a new run, recorded in place of the old id."""
  from jaxreg import trackers
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = tiny_config(**{"log.trackers": "mlflow"})
  trackers.Trackers(config, workdir).close("KILLED")
  first = records.tracker_ids(workdir)["mlflow"]
  trackers.Trackers(config, workdir).close()
  assert records.tracker_ids(workdir)["mlflow"] == first  # same store: the same run
  other = sqlite_uri(tmp_path)
  trackers.Trackers(tiny_config(**{"log.trackers": "mlflow", "log.mlflow_uri": other}),
                    workdir).close()
  moved = records.tracker_ids(workdir)["mlflow"]
  assert moved["where"] == other and moved["id"] != first["id"]
  assert mlflow_client(other).get_run(moved["id"]).info.status == "FINISHED"
