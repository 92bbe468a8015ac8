"""Experiment trackers of one run besides TensorBoard (`log.trackers`): Weights & Biases,
written offline, and MLflow.

Each tracker run gets the resolved config (flattened dotted keys), the logged steps'
loss, learning rate and grad_norm, each epoch's train and val metrics with per-class
accuracy (the TensorBoard tags: `val/accuracy`, `val/class_accuracy/<class>`), the test
summary and the run's plots. A sweep's runs are grouped: a W&B `group` named after the
sweep directory, and nested MLflow runs under one parent run per sweep directory.

* W&B runs offline (`mode="offline"`, `dir=` the workdir): nothing touches the network;
  `wandb sync <workdir>/wandb/offline-run-*` uploads later. One process may hold
  several runs at once (a vmapped group's members): `reinit="create_new"`.
* MLflow goes through `MlflowClient` with explicit run ids (no process-global active
  run, so a group's members log side by side). The default store is an SQLite file in
  the sweep directory or the workdir: MLflow's plain file store now needs
  MLFLOW_ALLOW_FILE_STORE, SQLite does not.

The tracker run ids are kept in the workdir (records.TRACKERS_FILE: {"wandb": {"id",
"where": project}, "mlflow": {"id", "where": tracking URI}}), so a run resumed after
preemption continues the same W&B run and MLflow run (steps replayed after the restored
checkpoint are logged again); resumed with another project or URI (log.* may change on
resume), or with its MLflow run gone, it starts a new one there. Only process 0 opens
trackers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from pathlib import Path

from jaxreg import config as config_lib, distributed, records
from jaxreg.logs import evaluation_scalars

# What a tracker must not do on its own: upload, phone home, sample the machine.
_QUIET_ENV = {
    "WANDB_SILENT": "true",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


def listed(config) -> list[str]:
  """The names in log.trackers, in order."""
  return [t.strip() for t in str(config.log.trackers).split(",") if t.strip()]


def flat_config(config) -> dict:
  """The resolved config as {dotted key: value}."""
  return config_lib.flatten(json.loads(config.to_json()))


def sweep_dir(workdir: Path) -> Path | None:
  """The sweep directory a run belongs to (its parent holds sweep.json), or None."""
  parent = Path(workdir).resolve().parent
  return parent if (parent / records.SWEEP_FILE).is_file() else None


class Trackers:
  """The W&B and MLflow runs of one jaxreg run (none on processes other than 0)."""

  def __init__(self, config, workdir: str | Path):
    self.workdir = Path(workdir)
    self._runs = []
    names = [n for n in listed(config) if n != "tensorboard"]
    if not names or not distributed.is_main():
      return
    for key, value in _QUIET_ENV.items():
      os.environ.setdefault(key, value)
    ids = records.tracker_ids(self.workdir)
    sweep = sweep_dir(self.workdir)
    flat = flat_config(config)
    try:
      for name in names:
        opener = _WandbRun if name == "wandb" else _MlflowRun
        previous = ids.get(name) if isinstance(ids.get(name), dict) else {}
        run = opener(config, flat, self.workdir, sweep, previous)
        self._runs.append(run)
        entry = {"id": run.run_id, "where": run.where}
        if previous != entry:
          ids[name] = entry
          records.write_tracker_ids(self.workdir, ids)
    except BaseException:
      self.close("FAILED")
      raise

  def __bool__(self) -> bool:
    return bool(self._runs)

  def log(self, scalars: dict[str, float], step: int) -> None:
    scalars = {k: v for k, v in scalars.items() if v is not None and math.isfinite(v)}
    for run in self._runs:
      run.log(scalars, step)

  def finish(self, summary: dict, plots: list[Path]) -> None:
    """The end of the run: the test metrics and summary, the figures."""
    scalars = evaluation_scalars("test", summary["test"])
    for run in self._runs:
      run.finish(summary, scalars, [Path(p) for p in plots])

  def close(self, status: str = "FINISHED") -> None:
    """`status`: FINISHED, KILLED (preempted: the resumed run continues it) or FAILED."""
    runs, self._runs = self._runs, []
    for run in runs:
      run.close(status)


# --------------------------------------------------------------------- W&B


class _WandbRun:

  def __init__(self, config, flat: dict, workdir: Path, sweep: Path | None,
               previous: dict):
    import wandb  # the `trackers` extra; log.trackers validation checked it is there

    self._wandb = wandb
    self.where = config.log.project
    run_id = previous.get("id") if previous.get("where") == self.where else None
    self.run = wandb.init(
        project=config.log.project, dir=str(workdir), mode="offline",
        id=run_id, resume="allow" if run_id else None, name=workdir.name,
        group=sweep.name if sweep else None, config=flat, reinit="create_new",
        settings=wandb.Settings(console="off", silent=True, save_code=False,
                                x_disable_stats=True, x_disable_machine_info=True))
    self.run_id = self.run.id
    self._step = 0

  def log(self, scalars: dict, step: int) -> None:
    self._step = max(self._step, step)  # W&B drops steps below its current one
    self.run.log(scalars, step=self._step)

  def finish(self, summary: dict, scalars: dict, plots: list[Path]) -> None:
    self.run.summary.update({**scalars, **_summary_scalars(summary)})
    images = {f"plots/{p.stem}": self._wandb.Image(str(p)) for p in plots
              if p.suffix == ".png"}
    if images:
      self.run.log(images, step=self._step)

  def close(self, status: str) -> None:
    self.run.finish(exit_code=0 if status == "FINISHED" else 1)


# ------------------------------------------------------------------ MLflow

# MLflow metric and param names: alphanumerics, `_ - . / :` and spaces.
_MLFLOW_UNSAFE = re.compile(r"[^\w\-./: ]")
_MLFLOW_PARAMS_PER_BATCH = 100
_MLFLOW_METRICS_PER_BATCH = 1000
_MLFLOW_PARAM_CHARS = 6000


def mlflow_uri(config, workdir: Path, sweep: Path | None = None) -> str:
  """log.mlflow_uri, or the SQLite file of the sweep directory or the workdir."""
  if config.log.mlflow_uri:
    return config.log.mlflow_uri
  return f"sqlite:///{(sweep or Path(workdir).resolve()) / records.MLFLOW_DB}"


def mlflow_name(key: str) -> str:
  return _MLFLOW_UNSAFE.sub("_", key)


class _MlflowRun:

  def __init__(self, config, flat: dict, workdir: Path, sweep: Path | None,
               previous: dict):
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient  # the `trackers` extra

    # A new SQLite store announces its schema migration on stderr: not the run's news.
    for name in ("mlflow.store.db.utils", "alembic"):
      logging.getLogger(name).setLevel(logging.WARNING)
    uri = self.where = mlflow_uri(config, workdir, sweep)
    self.client = MlflowClient(uri)
    home = None if config.log.mlflow_uri else (sweep or workdir.resolve())
    experiment = self._experiment(config.log.project, home)
    if previous.get("where") == uri:
      try:
        self.client.update_run(previous["id"], status="RUNNING")
        self.run_id = previous["id"]
        return
      except MlflowException:  # not in this store any more: a new run
        pass
    tags = {"jaxreg.workdir": str(workdir.resolve())}
    if sweep is not None:
      tags["mlflow.parentRunId"] = self._parent(uri, experiment, sweep)
    run = self.client.create_run(experiment, run_name=workdir.name, tags=tags)
    self.run_id = run.info.run_id
    params = [Param(mlflow_name(k), json.dumps(v)[:_MLFLOW_PARAM_CHARS]
                    if not isinstance(v, str) else v[:_MLFLOW_PARAM_CHARS])
              for k, v in flat.items()]
    for i in range(0, len(params), _MLFLOW_PARAMS_PER_BATCH):
      self.client.log_batch(self.run_id,
                            params=params[i:i + _MLFLOW_PARAMS_PER_BATCH])

  def _experiment(self, name: str, home: Path | None) -> str:
    """The experiment's id, created on first use (with the default store: artifacts
    beside the database, not in the current directory's ./mlruns)."""
    from mlflow.exceptions import MlflowException

    found = self.client.get_experiment_by_name(name)
    if found is not None:
      return found.experiment_id
    location = (home / records.MLFLOW_ARTIFACTS).as_uri() if home else None
    try:
      return self.client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another run of the sweep
      return self.client.get_experiment_by_name(name).experiment_id

  def _parent(self, uri: str, experiment: str, sweep: Path) -> str:
    """The sweep's parent run in this store: its id is kept in the sweep directory's
    trackers.json (created by the first run of the sweep to get here)."""
    ids = records.tracker_ids(sweep)
    parents = ids.get("mlflow_parents", {})
    if uri in parents:
      return parents[uri]
    run = self.client.create_run(experiment, run_name=sweep.name,
                                 tags={"jaxreg.sweep": str(sweep)})
    self.client.set_terminated(run.info.run_id)
    ids = records.tracker_ids(sweep)  # re-read just before writing
    ids.setdefault("mlflow_parents", {})[uri] = run.info.run_id
    records.write_tracker_ids(sweep, ids)
    return run.info.run_id

  def log(self, scalars: dict, step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(mlflow_name(k), v, now, step) for k, v in scalars.items()]
    for i in range(0, len(metrics), _MLFLOW_METRICS_PER_BATCH):
      self.client.log_batch(self.run_id,
                            metrics=metrics[i:i + _MLFLOW_METRICS_PER_BATCH])

  def finish(self, summary: dict, scalars: dict, plots: list[Path]) -> None:
    step = int(summary.get("evaluated_step") or 0)
    self.log({**scalars, **_summary_scalars(summary)}, step)
    self.client.log_dict(self.run_id, _jsonable(summary), records.SUMMARY_FILE)
    for path in plots:
      self.client.log_artifact(self.run_id, str(path), records.PLOTS_DIR)

  def close(self, status: str) -> None:
    self.client.set_terminated(self.run_id, status)


def _summary_scalars(summary: dict) -> dict[str, float]:
  """summary.json's scalar entries besides the evaluations (steps, seconds)."""
  out = {}
  for key in ("best_step", "evaluated_step", "epochs_completed", "train_seconds",
              "examples_per_second", "time_to_target_seconds"):
    value = summary.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      out[f"summary/{key}"] = float(value)
  return out


def _jsonable(obj):
  return json.loads(json.dumps(obj, default=str))
