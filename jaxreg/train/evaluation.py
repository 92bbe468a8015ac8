"""Evaluation of a run's parameters, and the end of a run: the final checkpoint on val
and test, predictions, plots and summary.json."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxreg import checkpoint, config as config_lib, distributed, io, metrics, parallel
from jaxreg import plots, provenance, records
from jaxreg.logs import MetricsLog
from jaxreg.train.build import Setup, restore
from jaxreg.train.early_stopping import EarlyStopping
from jaxreg.train.state import TrainState
from jaxreg.train.steps import eval_variables



def evaluate_params(s: Setup, variables, split: str, predictions: bool = False):
  """Every example of `split` exactly once (last batch padded and masked).

  `variables`: a TrainState (its params and model_state) or {'params': ..., ...}.
  Returns the evaluation dict; with `predictions=True`, (evaluation, predicted class
  ids int32 [N] in the split's order), from the same forward pass as the counts.
  """
  if isinstance(variables, TrainState):
    variables = eval_variables(variables)
  counts = parallel.put_replicated(metrics.zero_counts(s.data.num_classes), s.mesh)
  if predictions:
    counts, preds = s.feed.predict(variables, split, counts)
    return metrics.summarize(jax.device_get(counts), s.data.class_names), preds
  counts = s.feed.evaluate(variables, split, counts)
  return metrics.summarize(jax.device_get(counts), s.data.class_names)


@dataclasses.dataclass
class EpochTimes:
  """summary.json's epoch_seconds (training time of each epoch: its steps, not its
  validation; the first includes compilation; a group member's is its share of the
  group's) and time_to_target_seconds (training time, summed over epochs, until
  validation accuracy first reached train.target_accuracy; None if it never did or no
  target is set). Both are kept in the checkpoint meta, so a resumed run continues
  them."""
  target: float
  epoch_seconds: list = dataclasses.field(default_factory=list)
  time_to_target_seconds: float | None = None

  def update(self, seconds: float, train_seconds: float, val_accuracy: float) -> None:
    self.epoch_seconds.append(seconds)
    if self.target and self.time_to_target_seconds is None and \
        val_accuracy >= self.target:
      self.time_to_target_seconds = train_seconds

  def to_dict(self) -> dict:
    return {"epoch_seconds": list(self.epoch_seconds),
            "time_to_target_seconds": self.time_to_target_seconds}

  @classmethod
  def from_dict(cls, target: float, meta: dict) -> EpochTimes:
    return cls(target, list(meta.get("epoch_seconds", [])),
               meta.get("time_to_target_seconds"))


def finish_run(s: Setup, log: MetricsLog, stopper: EarlyStopping, epoch: int,
               train_seconds: float, timing: dict | None = None,
               executor: dict | None = None, report=None) -> dict:
  """After training: evaluates the final checkpoint on val and test, appends the test
  line, writes summary.json and the plots, closes the checkpointer. `timing`:
  epoch_seconds and time_to_target_seconds (EpochTimes); `executor`: how the run was
  trained ({"kind": "group" | "alone", "size": K, "why": ...}), both added to the
  summary when given. `report(summary, plot paths)`: called on process 0 after the
  plots and before summary.json (the trackers' end of the run)."""
  tc, workdir = s.config.train, s.workdir
  best_step = s.checkpointer.best_step()
  # 'best' (default) evaluates the best-by-validation checkpoint, which is a form of
  # early stopping; 'latest' gives an unregularized baseline its last epoch.
  final_step = best_step if tc.final_checkpoint == "best" else \
      s.checkpointer.latest_step()
  try:
    final_state, final_meta = restore(s, final_step)
  except checkpoint.CorruptCheckpoint as e:
    raise config_lib.ConfigError(
        f"{e}; rerun the same command: the trainer sets it aside and replays it from "
        "an earlier checkpoint") from None
  test_eval, test_preds = evaluate_params(s, final_state, "test", predictions=True)
  summary = {
      "best_step": best_step,
      "evaluated_checkpoint": tc.final_checkpoint,
      "evaluated_step": final_step,
      "evaluated_epoch": final_meta["epoch"],
      "epochs_completed": epoch,
      "stopped_early": bool(stopper.should_stop and epoch < tc.epochs),
      "val": evaluate_params(s, final_state, "val"),
      "test": test_eval,
      "train_seconds": train_seconds,
      "examples_per_second": epoch * len(s.data.train) / max(train_seconds, 1e-9),
      **(timing or {}),
      **({"executor": executor} if executor else {}),
      **({"upstream": s.upstream} if s.upstream else {}),
      "provenance": provenance.collect(s.data.fingerprint()),
      # tokens per text before truncation, per split (the run's `data:` lines)
      **({"data_lengths": s.data.length_stats}
         if getattr(s.data, "length_stats", None) else {}),
  }
  log.write({"split": "test", "step": final_step, "epoch": final_meta["epoch"],
             **summary["test"]})
  s.checkpointer.close()
  if distributed.is_main():
    # Per-example predictions let jaxreg.report pair test examples across runs.
    records.write_predictions(workdir / records.PREDICTIONS_FILE, s.data.test.labels,
                              test_preds, final_step)
    figures = plots.plot_run(workdir, summary)
    if report is not None:
      report(summary, figures)
    # Last: an existing summary.json means the run and all its files are complete
    # (the sweep counts a run as done by it).
    records.write_summary(workdir, summary)
  return summary
