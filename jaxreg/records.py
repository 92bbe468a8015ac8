"""The files that runs, sweeps and reports share: their names, formats, readers, writers.

A run directory (`jaxreg.main --workdir=DIR`, or one point of a sweep) holds

  config.json           the run's resolved config, written at the start (`CONFIG_FILE`)
  model.json            what using the model needs besides config.json, written at the
                        start (`MODEL_FILE`): family, class names, the vocabulary file
                        (vocab.json) or the Hugging Face files (pretrained/: tokenizer and
                        model config, no weights), image normalization
  summary.json          written last by a finished run, so its presence means the run
                        and all its files are complete (`write_summary`, `read_summary`)
  predictions_test.npz  the evaluated checkpoint's per-example test predictions:
                        `labels`, `predictions` (int32, test order) and `step`
  eval/<split>-<checkpoint>.json and .npz   `jaxreg.evaluate`'s outputs (`eval_path`)
  trackers.json         the run's W&B and MLflow run ids (log.trackers), so a resumed
                        run continues the same tracker runs (`tracker_ids`)
  wandb/                the offline W&B run (`WANDB_DIR`); mlflow.db and mlartifacts/
                        the default MLflow store (`MLFLOW_DB`, `MLFLOW_ARTIFACTS`), in
                        the workdir of a run alone or in the sweep directory
  outcome.json          a run that ended without a summary: {"status": "diverged" |
                        "error", "error": one line}; a diverged loss also gives "step"
                        and "epoch" (its last good checkpoint is kept). Removed when
                        the run is retried.

and a sweep directory

  sweep.json     the plan (mode, axes, base config, command) and each run's status
                 (and `executor`: how it was trained, {kind, size, why}, once known)
  runs.csv       one row per finished or failed run (the columns below), ending with
                 the run's whole resolved config as `config.<dotted key>` columns
  per_class.csv  long format: one row per finished run and test class (`PER_CLASS_*`)

Every file is written whole or not at all (jaxreg.io). This module imports no jax: the
trainer, the sweep launchers, the report and a notebook all read and write through it.
"""

from __future__ import annotations

import csv
import io as stdio
import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from jaxreg import io

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.json"
VOCAB_FILE = "vocab.json"
PRETRAINED_DIR = "pretrained"
PREDICTIONS_FILE = "predictions_test.npz"
OUTCOME_FILE = "outcome.json"
EVAL_DIR = "eval"
TRACKERS_FILE = "trackers.json"
WANDB_DIR = "wandb"          # wandb.init(dir=workdir) writes here
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
PLOTS_DIR = "plots"          # jaxreg/plots.py
SWEEP_FILE = "sweep.json"
RUNS_FILE = "runs.csv"
PER_CLASS_FILE = "per_class.csv"

STATUSES = ("done", "diverged", "error", "pending")
FAILED = ("diverged", "error")
# runs.csv: after `run`, `status` and the axis values, these per split (val_, test_) ...
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "worst_class_accuracy", "loss")
# ... then these summary.json keys (empty where a summary lacks one), then
# EXECUTOR_COLUMNS (how the run was trained: 'group' or 'alone', and K), then `error`,
# then test_acc/<class> and test_count/<class> for every class of any run, then
# CONFIG_PREFIX + every dotted key of the run's resolved config (base config + its
# axis values: a sweep's fixed settings survive concatenating two sweeps' tables).
SUMMARY_KEYS = ("best_step", "evaluated_step", "evaluated_epoch", "epochs_completed",
                "stopped_early", "train_seconds")
EXECUTOR_COLUMNS = ("executor", "executor_size")

CONFIG_PREFIX = "config."
# A sweep over an upstream sweep (jaxreg.sweep --upstream): the upstream run's axis
# values are axis columns named UPSTREAM_PREFIX + key (upstream.seed, ...); they are no
# config keys. Its sweep.json entries give the upstream run directory as `init_from`.
UPSTREAM_PREFIX = "upstream."
# per_class.csv: `run`, the axis values, then `seed` (when not an axis), then these.
# One column holds the class name, so any name (with '/', ',' or quotes) stays one
# value; runs.csv's wide test_acc/<class> columns are kept for older readers.
PER_CLASS_COLUMNS = ("split", "class_index", "class", "n", "correct", "accuracy")

PathLike = str | os.PathLike


# ------------------------------------------------------------------ one run


def read_config(run_dir: PathLike) -> dict | None:
  """The run's config.json as written (nested dicts), or None when it is missing or
  unreadable. (The trainer's checks of a damaged one are jaxreg.train.workdir's.)"""
  try:
    config = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
  except (OSError, ValueError):
    return None
  return config if isinstance(config, dict) else None


def read_summary(run_dir: PathLike) -> dict | None:
  """The run's summary.json, or None when it is missing or unreadable (a summary
  half-written by an older jaxreg counts as not done)."""
  try:
    summary = json.loads((Path(run_dir) / SUMMARY_FILE).read_text())
  except (OSError, ValueError):
    return None
  return summary if isinstance(summary, dict) and "test" in summary else None


def write_summary(run_dir: PathLike, summary: dict) -> Path:
  return io.atomic_write_json(Path(run_dir) / SUMMARY_FILE, summary)


def write_predictions(path: PathLike, labels, predictions, step: int) -> Path:
  """Labels and predicted class ids (int32 [N], in split order) of checkpoint `step`."""
  buf = stdio.BytesIO()
  np.savez(buf, labels=np.asarray(labels, np.int32),
           predictions=np.asarray(predictions, np.int32), step=np.int64(step))
  return io.atomic_write(path, buf.getvalue())


def read_predictions(path: PathLike) -> tuple[np.ndarray, np.ndarray, int] | None:
  """(labels, predictions, step) of a predictions file, or None if it does not read."""
  try:
    with np.load(path) as z:
      return z["labels"], z["predictions"], int(z["step"])
  except (OSError, KeyError, ValueError):
    return None


def eval_path(run_dir: PathLike, split: str, checkpoint: str) -> Path:
  """Where `jaxreg.evaluate` writes an evaluation (.json; predictions beside it, .npz)."""
  return Path(run_dir) / EVAL_DIR / f"{split}-{checkpoint}.json"


def stored_test_predictions(run_dir: PathLike) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                 int]]:
  """Every readable set of test predictions of a run, the run's own file first, then
  `jaxreg.evaluate`'s (runs written before runs saved predictions have only those)."""
  run_dir = Path(run_dir)
  for path in [run_dir / PREDICTIONS_FILE,
               *sorted((run_dir / EVAL_DIR).glob("test-*.npz"))]:
    found = read_predictions(path)
    if found is not None:
      yield found


def run_files(run_dir: PathLike) -> list[str]:
  """What a run directory holds, for the console: its files and folders (folders
  with a trailing '/'), sorted; hidden ones (the lock file) left out."""
  return sorted(p.name + ("/" if p.is_dir() else "")
                for p in Path(run_dir).iterdir() if not p.name.startswith("."))


def write_outcome(run_dir: PathLike, status: str, error: str, **details) -> Path:
  """A run that ended without a summary: the trainer's diverged run (with `step` and
  `epoch`), or a SLURM task's failure."""
  assert status in FAILED, status
  return io.atomic_write_json(Path(run_dir) / OUTCOME_FILE,
                              {"status": status, "error": error, **details}, indent=None)


def read_outcome(run_dir: PathLike) -> dict | None:
  try:
    outcome = json.loads((Path(run_dir) / OUTCOME_FILE).read_text())
  except (OSError, ValueError):
    return None
  return outcome if isinstance(outcome, dict) and outcome.get("status") in FAILED \
      else None


def tracker_ids(directory: PathLike) -> dict:
  """trackers.json of a run or sweep directory ({} when absent or unreadable: the
  trackers then start new runs)."""
  try:
    ids = json.loads((Path(directory) / TRACKERS_FILE).read_text())
  except (OSError, ValueError):
    return {}
  return ids if isinstance(ids, dict) else {}


def write_tracker_ids(directory: PathLike, ids: dict) -> Path:
  return io.atomic_write_json(Path(directory) / TRACKERS_FILE, ids)


def one_line(e: BaseException) -> str:
  """An exception as the one line recorded for a failed run."""
  return " ".join(f"{type(e).__name__}: {e}".split())


# -------------------------------------------------------------- run status


def roll_up(run_dir: PathLike, entry: dict) -> dict | None:
  """Brings one run's sweep.json entry up to date with its directory; returns its
  summary (None unless done). done: summary.json reads; diverged or error: its
  outcome.json says so, or the entry already did (the local launcher records failures
  in sweep.json only); pending otherwise."""
  summary = read_summary(run_dir)
  outcome = None if summary is not None else read_outcome(run_dir)
  if summary is not None:
    entry["status"] = "done"
    entry.pop("error", None)
    if summary.get("executor"):
      entry["executor"] = summary["executor"]
  elif outcome is not None:
    entry["status"], entry["error"] = outcome["status"], outcome.get("error", "")
  elif entry.get("status") not in FAILED:
    entry["status"] = "pending"
  return summary


def needs_training(entry: dict, retry_diverged: bool) -> bool:
  """After `roll_up`: whether a launcher trains the run (not done; not diverged,
  which would diverge again, unless asked to retry it)."""
  return entry["status"] != "done" and (entry["status"] != "diverged" or retry_diverged)


def retry(run_dir: PathLike, entry: dict) -> None:
  """Marks a run that is about to train (again) pending: it forgets an old failure."""
  (Path(run_dir) / OUTCOME_FILE).unlink(missing_ok=True)
  entry["status"] = "pending"
  entry.pop("error", None)


def status_line(workdir: PathLike, entries: Sequence[dict]) -> str:
  """'sweep DIR: 3/4 finished, 1 error (DIR/runs.csv)'."""
  counts = {s: sum(1 for e in entries if e["status"] == s) for s in STATUSES}
  return (f"sweep {workdir}: {counts['done']}/{len(entries)} finished"
          + "".join(f", {counts[s]} {s}" for s in STATUSES[1:] if counts[s])
          + f" ({Path(workdir) / RUNS_FILE})")


# ------------------------------------------------------------------ a sweep


def read_sweep(workdir: PathLike) -> dict | None:
  """sweep.json, or None when the directory holds none."""
  path = Path(workdir) / SWEEP_FILE
  if not path.exists():
    return None
  return json.loads(path.read_text())


def write_sweep(workdir: PathLike, meta: dict) -> Path:
  return io.atomic_write_json(Path(workdir) / SWEEP_FILE, meta)


def write_status(workdir: PathLike, meta: dict, summaries: dict[str, dict]) -> None:
  """sweep.json (with every run's status), then runs.csv and per_class.csv from it.
  `summaries`: run name -> summary of the finished runs."""
  write_sweep(workdir, meta)
  keys = [a["key"] for a in meta["axes"]]
  configs = {e["name"]: run_config(meta.get("base_config") or {}, e["values"],
                                   e.get("init_from"))
             for e in meta["runs"]}
  header, rows = runs_table(meta["runs"], keys, summaries, configs)
  io.atomic_write(Path(workdir) / RUNS_FILE, csv_text(header, rows))
  header, rows = per_class_table(meta["runs"], keys, summaries, configs)
  io.atomic_write(Path(workdir) / PER_CLASS_FILE, csv_text(header, rows))


def csv_text(header: Sequence[str], rows: Sequence[dict]) -> str:
  """The rows of `runs_table` or `per_class_table` as the CSV file's text."""
  buf = stdio.StringIO()
  writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def run_config(base_config: dict, values: dict, init_from: str | None = None) -> dict:
  """One run's resolved config as {dotted key: value}: the sweep's base config
  (sweep.json, nested) with the run's axis values set (not the upstream.* labels) and,
  in a sweep over upstream runs, model.init_from = its upstream run directory."""
  flat = _flatten(base_config)
  flat.update({k: v for k, v in values.items() if not k.startswith(UPSTREAM_PREFIX)})
  if init_from is not None:
    flat["model.init_from"] = init_from
  return flat


def _flatten(tree: dict, prefix: str = "") -> dict:
  # jaxreg.config.flatten does the same; this module stays free of ml_collections.
  flat = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      flat.update(_flatten(v, f"{prefix}{k}."))
    else:
      flat[f"{prefix}{k}"] = v
  return flat


def per_class_table(entries: Sequence[dict], keys: Sequence[str],
                    summaries: dict[str, dict], configs: dict[str, dict] | None = None
                    ) -> tuple[list[str], list[dict]]:
  """per_class.csv's header and rows: every finished run's test classes, in plan
  order then class order. `configs`: run name -> flat config (for `seed`)."""
  configs = configs or {}
  seed = [] if "seed" in keys else ["seed"]
  header = ["run", *keys, *seed, *PER_CLASS_COLUMNS]
  rows = []
  for e in entries:
    s = summaries.get(e["name"])
    if s is None:
      continue
    fixed = {"run": e["name"], **{k: _csv_value(v) for k, v in e["values"].items()}}
    if seed:
      fixed["seed"] = _csv_value(configs.get(e["name"], {}).get("seed"))
    test = s["test"]
    confusion = test.get("confusion_matrix")
    for k, (name, acc, n) in enumerate(zip(test["class_names"],
                                           test["per_class_accuracy"],
                                           test["per_class_count"])):
      correct = confusion[k][k] if confusion else round((acc or 0.0) * n)
      rows.append({**fixed, "split": "test", "class_index": k, "class": name, "n": n,
                   "correct": correct, "accuracy": _csv_value(acc)})
  return header, rows


def runs_table(entries: Sequence[dict], keys: Sequence[str],
               summaries: dict[str, dict], configs: dict[str, dict] | None = None
               ) -> tuple[list[str], list[dict]]:
  """runs.csv's header and rows: finished runs and failed ones, in plan order.
  `entries`: sweep.json's runs (name, values, status, error); `keys`: the axes;
  `configs`: run name -> flat resolved config (`run_config`), the last columns."""
  configs = configs or {}
  class_names: list[str] = []
  for e in entries:
    s = summaries.get(e["name"])
    for c in (s["test"]["class_names"] if s else ()):
      if c not in class_names:
        class_names.append(c)
  header = ["run", "status", *keys]
  for split in ("val", "test"):
    header += [f"{split}_{m}" for m in METRICS]
  header += [*SUMMARY_KEYS, *EXECUTOR_COLUMNS, "error"]
  header += [f"test_acc/{c}" for c in class_names]
  header += [f"test_count/{c}" for c in class_names]
  config_keys: list[str] = []
  for e in entries:
    for k in configs.get(e["name"], {}):
      if k not in config_keys:
        config_keys.append(k)
  header += [CONFIG_PREFIX + k for k in config_keys]
  rows = []
  for e in entries:
    s = summaries.get(e["name"])
    if s is None and e.get("status") not in FAILED:
      continue
    row = {"run": e["name"], **{k: _csv_value(v) for k, v in e["values"].items()}}
    executor = (s or {}).get("executor") or e.get("executor") or {}
    row["executor"], row["executor_size"] = (executor.get("kind", ""),
                                             executor.get("size", ""))
    row.update({CONFIG_PREFIX + k: _config_value(v)
                for k, v in configs.get(e["name"], {}).items()})
    if s is None:
      row.update(status=e["status"], error=e.get("error", ""))
    else:
      row["status"] = "done"
      for split in ("val", "test"):
        for m in METRICS:
          row[f"{split}_{m}"] = _csv_value(s[split].get(m))
      for k in SUMMARY_KEYS:
        row[k] = _csv_value(s.get(k))
      test = s["test"]
      for name, acc, count in zip(test["class_names"], test["per_class_accuracy"],
                                  test["per_class_count"]):
        row[f"test_acc/{name}"] = _csv_value(acc)
        row[f"test_count/{name}"] = count
    rows.append(row)
  return header, rows


def _csv_value(v):
  if v is None:
    return ""
  if isinstance(v, float):
    return repr(v)
  if isinstance(v, bool):
    return "true" if v else "false"
  return v


def _config_value(v):
  """A config value as one CSV cell: lists and tuples as JSON ('[64, 64]')."""
  if isinstance(v, (list, tuple, dict)):
    return json.dumps(v)
  return _csv_value(v)


def read_runs_csv(path: PathLike) -> list[dict]:
  """runs.csv as one dict of strings per row (`pandas.read_csv` reads it too)."""
  with open(path, newline="") as f:
    return list(csv.DictReader(f))
