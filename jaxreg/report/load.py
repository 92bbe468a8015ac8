"""A sweep directory read for the report: its plan, every run's status and summary,
and the runs' stored test predictions (jaxreg/records.py knows the files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxreg import records
from jaxreg.sweep.axes import (REPLICATE_KEYS, UPSTREAM_PREFIX, Axis, SweepError,
                               is_replicate, load_axes)


class ReportError(SweepError):
  """Bad report input or an unusable sweep; one line for the user (exit code 2)."""


@dataclasses.dataclass(frozen=True)
class RunData:
  """One run of the sweep: its axis values, status and (when done) summary.json."""
  name: str
  values: dict
  status: str                # done | diverged | error | pending
  summary: dict | None
  error: str | None = None

  @property
  def test_confusion(self) -> np.ndarray:
    return np.asarray(self.summary["test"]["confusion_matrix"], dtype=np.int64)

  @property
  def val_accuracy(self) -> float:
    return float(self.summary["val"]["accuracy"])

  def test_predictions(self, workdir: Path):
    """(labels, predicted ids) of the evaluated checkpoint on test, or None.

    The first stored set (records.stored_test_predictions) of the evaluated step that
    reproduces the run's test confusion matrix exactly; anything else is ignored."""
    step = self.summary.get("evaluated_step")
    cm = self.test_confusion
    c = len(cm)
    for labels, preds, at in records.stored_test_predictions(workdir / self.name):
      if step is not None and at != step:
        continue
      if labels.shape != preds.shape or labels.min(initial=0) < 0 or \
          preds.min(initial=0) < 0 or max(labels.max(initial=0),
                                          preds.max(initial=0)) >= c:
        continue
      mine = np.zeros((c, c), np.int64)
      np.add.at(mine, (labels, preds), 1)
      if np.array_equal(mine, cm):
        return labels, preds
    return None


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A sweep directory as the report reads it."""
  workdir: Path
  meta: dict                 # sweep.json
  axes: tuple[Axis, ...]
  runs: tuple[RunData, ...]
  class_names: tuple[str, ...]
  n: np.ndarray              # test examples per class

  @property
  def finished(self) -> list[RunData]:
    return [r for r in self.runs if r.summary is not None]

  @property
  def replicate_keys(self) -> list[str]:
    """The keys that pair runs and count as replicates: seed (data.split_seed,
    data.fold); in a sweep over upstream runs (--upstream) the upstream run is the
    unit of replication, so the upstream ones only (upstream.seed, ...), none when
    the upstream sweep had no seed axis."""
    if self.meta.get("upstream"):
      return [a.key for a in self.axes if a.key.startswith(UPSTREAM_PREFIX)
              and is_replicate(a.key)]
    return [a.key for a in self.axes if a.key in REPLICATE_KEYS]

  @property
  def nested_keys(self) -> list[str]:
    """Replicate axes nested inside one replicate (the downstream seeds of one
    upstream run): the analysis averages over them first, never pairs by them."""
    return [a.key for a in self.axes
            if is_replicate(a.key) and a.key not in self.replicate_keys]

  @property
  def setting_axes(self) -> list[Axis]:
    return [a for a in self.axes if not is_replicate(a.key)]


def load_sweep(workdir) -> Sweep:
  """Reads a sweep directory (writes nothing); ReportError if it holds no finished
  run or its runs were tested on different classes."""
  workdir = Path(workdir)
  meta = records.read_sweep(workdir)
  if meta is None:
    raise ReportError(f"{workdir / records.SWEEP_FILE} not found: --workdir must be a "
                      "directory written by jaxreg.sweep")
  runs = []
  for r in meta["runs"]:
    entry = dict(r)
    summary = records.roll_up(workdir / r["name"], entry)
    runs.append(RunData(r["name"], r["values"], entry["status"], summary,
                        entry.get("error")))
  done = [r for r in runs if r.summary is not None]
  if not done:
    raise ReportError(f"no finished run in {workdir} (no */summary.json): run the "
                      "sweep first")
  names = done[0].summary["test"]["class_names"]
  for r in done:
    if r.summary["test"]["class_names"] != names:
      raise ReportError(f"runs {done[0].name} and {r.name} have different classes: "
                        "one report needs one test set")
  n = done[0].test_confusion.sum(axis=1)
  return Sweep(workdir, meta, tuple(load_axes(meta)), tuple(runs), tuple(names), n)
