"""The one training loop, over a population of K members (jaxreg/train/population.py).

`run(configs, workdirs)` trains configs[i] into workdirs[i]; `train_and_evaluate(config,
workdir)` is `run([config], [workdir])[0]`. It reads top to bottom like a script:

  check every config and workdir (nothing written) -> load the data once -> set up each
  member as its run alone -> lock the workdirs -> restore each member from its newest
  intact checkpoint -> segments of steps: the members at the lowest step train together
  (one run's jitted step for a population of one, a vmapped step over stacked state
  otherwise) -> per epoch: each member's validation, early stopping, log lines and
  checkpoint -> each member's best checkpoint evaluated on val and test -> summary.json.

Every member gets every feature of a run alone, from the same lines: preemption at any
step boundary (each member saves a mid-epoch checkpoint), mid-epoch resume, epoch timing
and time-to-target, early stopping, divergence (a member whose loss turns NaN stops
alone, with outcome.json), evaluation and predictions. A member that stops (early
stopping, divergence, its last epoch) leaves the group at the end of the epoch: the next
program is built without it, so it stops costing compute. A member ahead of the others
(resumed from a later step) waits until the group reaches its step and joins there. A
member's train_seconds and epoch_seconds are its share of the group's time.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import ml_collections
import numpy as np

from jaxreg import checkpoint, config as config_lib, distributed, io, metrics, preemption
from jaxreg import records, trackers
from jaxreg.data import sources, text as text_lib
from jaxreg.logs import METRICS_FILE, MetricsLog, Progress, TensorBoard, evaluation_scalars
from jaxreg.train import build, model_files, population, transfer
from jaxreg.train import workdir as workdir_lib
from jaxreg.train.early_stopping import EarlyStopping
from jaxreg.train.evaluation import EpochTimes, finish_run
from jaxreg.train.population import DIVERGED, FINISHED, TRAINING, Member
from jaxreg.train.state import TrainingDiverged, learning_rate


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path,
                       devices=None, executor: dict | None = None) -> dict:
  """Trains (resuming from workdir's latest checkpoint), returns summary.json's dict.

  Everything is checked before anything is written (the config, the workdir, its
  saved config, the data, the devices): a run refused with ConfigError leaves the
  workdir as it found it. Then the workdir is locked (LockHeld if another process
  trains in it) for the rest of the run. Raises TrainingDiverged when the loss turns
  NaN or inf (its workdir then holds outcome.json and the last good checkpoint).
  `executor`: recorded in summary.json (how the run was trained; see `run`)."""
  result = run([config], [workdir], devices, executor=executor)[0]
  if result.get("status") == DIVERGED:
    raise TrainingDiverged(result["error"])
  return result


def run(configs, workdirs, devices=None, executor: dict | None = None) -> list[dict]:
  """Trains configs[i] into workdirs[i]: one run alone for one config, else one vmapped
  group (configs that differ only in `population.traced_keys`; ConfigError otherwise).

  Each member writes its own workdir exactly as a run alone (config.json,
  metrics.jsonl, tensorboard/, checkpoints/, summary.json, predictions, plots/), so
  `jaxreg.evaluate --workdir=<member>` works and a member's workdir resumes alone (and
  the other way round). Returns one dict per member, in order: its summary.json dict,
  or {"status": "diverged", "error": message} for a member whose loss became NaN/inf.
  `executor`: {"why": ...} (and "kind", "size") of how the caller chose to train these
  runs, written into each summary.json with "kind" ('group' or 'alone') and "size" (K)
  filled in (a group writes them even without it)."""
  configs = list(configs)
  workdirs = [Path(w) for w in workdirs]
  if len(configs) != len(workdirs):
    raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
  # model.init_from: the upstream preprocessing taken over (before any check).
  with config_lib.as_config_error():
    configs = [transfer.adopt(c, w) for c, w in zip(configs, workdirs)]
  if not configs:
    return []
  if len({w.resolve() for w in workdirs}) != len(workdirs):
    raise config_lib.ConfigError("two members of a group share a workdir")
  for c in configs:
    config_lib.validate(c)
  if len(configs) > 1:
    population.check_group(configs)
  if len(configs) > 1 or executor:
    executor = {**(executor or {}), "kind": "group" if len(configs) > 1 else "alone",
                "size": len(configs)}
  for c, w in zip(configs, workdirs):
    workdir_lib.check(c, w)  # the same rules for every member; reads only
  with config_lib.as_config_error():
    pre = transfer.preprocessing(configs[0], workdirs[0] if workdirs else None)
    data = sources.load(configs[0].data, vocab=pre.vocab if pre else None)
  # Each member is set up as its run alone (init from its seed, embeddings); they share
  # the data and its feed (images are put on the device once).
  setups = [build.setup(configs[0], workdirs[0], devices, data=data, checkpoints="later")]
  for c, w in zip(configs[1:], workdirs[1:]):
    setups.append(build.setup(c, w, devices, data=data, checkpoints="later",
                              feed=setups[0].feed))
  with workdir_lib.opened(configs, workdirs):
    for s in setups:
      # What predicting needs without the data (vocabulary, tokenizer, classes,
      # normalization), beside config.json.
      model_files.write(s.config, s.workdir, s.data, s.feed, s.upstream)
      build.open_checkpoints(s)
    try:
      return _Loop(setups, executor).train()
    finally:
      for s in setups:
        s.checkpointer.close()


class _Loop:
  """The loop's state: the members, the program stepping some of them, the progress."""

  def __init__(self, setups: list[build.Setup], executor: dict | None):
    self.feed = setups[0].feed
    self.spe = setups[0].steps_per_epoch
    self.epochs = setups[0].config.train.epochs  # equal within a group (not traced)
    self.class_names = setups[0].data.class_names
    # vocabulary size, truncation at data.max_length (the members share their data)
    self.data_lines = text_lib.data_lines(setups[0].data,
                                          int(setups[0].config.data.max_length))
    self.model = setups[0].model
    self.solo = len(setups) == 1
    self.executor = executor
    self.members = []
    try:
      for i, s in enumerate(setups):
        self.members.append(self._member(i, s))
    except BaseException:
      self._close("FAILED")
      raise

  def _member(self, index: int, s: build.Setup) -> Member:
    tc = s.config.train
    if distributed.is_main():
      # a run that diverged (or failed as a SLURM task) is retried now
      (s.workdir / records.OUTCOME_FILE).unlink(missing_ok=True)
    m = Member(index, s, MetricsLog(s.workdir / METRICS_FILE), None,
               EarlyStopping.from_config(tc.early_stopping),
               EpochTimes(tc.target_accuracy), checkpoint.abstract_like(s.state), s.state)
    latest = workdir_lib.resume_step(s.checkpointer)
    if latest is not None:
      m.state, meta = build.restore(s, latest)
      m.epoch, m.train_seconds = meta["epoch"], meta["train_seconds"]
      m.stopper = EarlyStopping.from_dict(meta["early_stopping"])
      m.batches_done = meta.get("batches_done", 0)  # a preemption checkpoint: mid-epoch
      m.counts = meta.get("train_counts")  # the running train counts of the cut epoch
      m.timing = EpochTimes.from_dict(tc.target_accuracy, meta)
      m.resumed_from = latest
    s.state = m.template  # the member's arrays live in m.state (or its program) only
    # Lines after the restored step (all of them without a checkpoint) were written by
    # an attempt that did not finish: the replay writes them again.
    m.log.truncate_after(latest or 0)
    m.tb = TensorBoard(s.workdir / "tensorboard", purge_step=m.step + 1,
                       enabled="tensorboard" in trackers.listed(s.config))
    if latest is None:
      m.tb.hparams(trackers.flat_config(s.config))
    m.learning_rate = learning_rate(s.config, s.steps_per_epoch)
    # W&B / MLflow (log.trackers): the runs recorded in the workdir, or new ones.
    m.trackers = trackers.Trackers(s.config, s.workdir)
    if m.epoch >= tc.epochs or m.stopper.should_stop:
      m.status = FINISHED
    return m

  # ------------------------------------------------------------------------- the loop

  def train(self) -> list[dict]:
    """Trains every member, evaluates each on val and test; closes the TensorBoard
    writers and trackers (a preempted run's tracker runs are marked KILLED: the rerun
    continues them)."""
    try:
      results = self._train()
    except BaseException as e:
      self._close("KILLED" if isinstance(e, preemption.Preempted) else "FAILED")
      raise
    self._close()
    return results

  def _close(self, status: str | None = None) -> None:
    for m in self.members:
      m.tb.close()
      m.trackers.close(status or ("FAILED" if m.status == DIVERGED else "FINISHED"))

  def _train(self) -> list[dict]:
    members, spe = self.members, self.spe
    training = [m for m in members if m.status == TRAINING]
    start = min((m.step for m in training), default=max(m.step for m in members))
    self.progress = Progress(spe * self.epochs, initial=start,
                             desc="train" if self.solo else f"group of {len(members)}")
    for line in self.data_lines:
      self.progress.write(line)
    for m in members:
      if m.resumed_from is not None:
        self.progress.write(f"resumed from step {m.resumed_from} (epoch {m.epoch}) in "
                            f"{m.workdir}")
    program = None
    try:
      while training := [m for m in members if m.status == TRAINING]:
        step = min(m.step for m in training)
        running = [m for m in training if m.step == step]
        if program is None or program.members != running:
          if program is not None:
            program.release()
          program = (population.SoloProgram(running[0]) if self.solo else
                     population.StackedProgram(running, self.model))
        epoch, done = divmod(step, spe)
        # To the epoch's end, or to the step where a member ahead joins the group.
        stop = min([spe] + [m.step - epoch * spe for m in training
                            if step < m.step < (epoch + 1) * spe])
        self._segment(program, epoch, done, stop)
    finally:
      self.progress.close()
      for m in members:
        m.setup.checkpointer.wait()
    if any(m.status != DIVERGED for m in members) and preemption.stop_now():
      # asked to stop before the final evaluation: the rerun does it
      raise preemption.Preempted(max(m.step for m in members), preemption.signal_name())
    return [{"status": DIVERGED, "error": m.error} if m.status == DIVERGED else
            finish_run(m.setup, m.log, m.stopper, m.epoch, m.train_seconds,
                       m.timing.to_dict(), self.executor,
                       report=lambda summary, plots, m=m: self._report(m, summary, plots))
            for m in members]

  @staticmethod
  def _report(m: Member, summary: dict, plots: list) -> None:
    """The end of a run for TensorBoard (test scalars at the evaluated step) and the
    trackers (test metrics, summary, figures)."""
    m.tb.scalars(evaluation_scalars("test", summary["test"]), summary["evaluated_step"])
    m.trackers.finish(summary, plots)

  def _segment(self, program, epoch: int, done: int, stop: int) -> None:
    """Steps `done` to `stop` of `epoch` for the program's members."""
    t0 = time.perf_counter()
    counts = program.counts()
    for m in program.members:
      m.counts = None
    step = epoch * self.spe + done
    for batch in program.batches(epoch, done, stop):
      counts, out = program.step(batch, counts)
      step += 1  # counted on the host: reading state.step would sync every step
      done += 1
      self._log_step(program, out, step, epoch)
      if not any(m.status == TRAINING for m in program.members):
        break  # every member diverged
      if done < self.spe and preemption.stop_now():  # a step boundary
        self._save_preempted(program, counts, step, epoch, done,
                             (time.perf_counter() - t0) / len(program.members))
    host = program.member_counts(counts)
    share = (time.perf_counter() - t0) / len(program.members)
    for m in program.members:
      m.batches_done, m.epoch_seconds = done, m.epoch_seconds + share
    if done < self.spe:  # a member ahead joins here: keep the epoch's counts
      for m, c in zip(program.members, host):
        m.counts = c
      return
    self._end_epoch(program, host, epoch, step)

  def _log_step(self, program, out, step: int, epoch: int) -> None:
    logged = [i for i, m in enumerate(program.members) if m.status == TRAINING
              and step % m.config.train.log_every_steps == 0]
    if not logged:
      self.progress.update()
      return
    losses, norms = program.read(out)
    shown = []
    for i in logged:
      m, loss = program.members[i], float(losses[i])
      if not math.isfinite(loss):
        self._diverge(m, loss, step, epoch)
        continue
      # grad_norm: the global norm of the gradient before any clipping (steps.py).
      norm, lr = float(norms[i]), m.learning_rate(step)
      m.log.write({"split": "train_step", "step": step, "epoch": epoch + 1,
                   "loss": loss, "grad_norm": norm})
      scalars = {"train/step_loss": loss, "train/grad_norm": norm,
                 "train/learning_rate": lr}
      m.tb.scalars(scalars, step)
      m.trackers.log(scalars, step)
      shown.append(loss)
    if shown:
      self.progress.update(loss=float(np.mean(shown)))
    else:
      self.progress.update()

  def _end_epoch(self, program, host: list[dict], epoch: int, step: int) -> None:
    train_evals = {}
    for i, m in enumerate(program.members):
      if m.status != TRAINING:
        continue
      ev = metrics.summarize(host[i], self.class_names)
      if not math.isfinite(ev["loss"]):
        self._diverge(m, ev["loss"], step, epoch)
        continue
      train_evals[i] = ev
    if not train_evals:
      return
    val_evals = program.evaluate("val")
    for i, train_eval in train_evals.items():
      m, val_eval, tc = program.members[i], val_evals[i], program.members[i].config.train
      seconds, m.epoch_seconds = m.epoch_seconds, 0.0
      m.train_seconds += seconds
      m.epoch, m.batches_done = m.epoch + 1, 0
      m.timing.update(seconds, m.train_seconds, val_eval["accuracy"])
      for split, ev in (("train", train_eval), ("val", val_eval)):
        m.log.write({"split": split, "step": step, "epoch": m.epoch, **ev})
        m.tb.evaluation(split, ev, step)
      m.trackers.log({"epoch": m.epoch, **evaluation_scalars("train", train_eval),
                      **evaluation_scalars("val", val_eval)}, step)
      m.stopper = m.stopper.update(val_eval[tc.early_stopping.metric], step)
      if self.solo:
        self.progress.write(
            f"epoch {m.epoch}/{tc.epochs} step {step}: train loss "
            f"{train_eval['loss']:.4f} acc {train_eval['accuracy']:.4f} | val loss "
            f"{val_eval['loss']:.4f} acc {val_eval['accuracy']:.4f} worst class "
            f"{val_eval['worst_class_accuracy']:.4f}")
      m.setup.checkpointer.save(
          step, program.member_state(i),
          meta={"epoch": m.epoch, "train_seconds": m.train_seconds,
                "early_stopping": m.stopper.to_dict(), **m.timing.to_dict(),
                **workdir_lib.config_meta(m.config)},
          metrics={tc.checkpoint_metric: val_eval[tc.checkpoint_metric]})
      if m.stopper.should_stop and m.epoch < tc.epochs:
        m.status = FINISHED
        who = "" if self.solo else f"member {m.index}: "
        self.progress.write(f"{who}early stopping after epoch {m.epoch}: val "
                            f"{tc.early_stopping.metric} did not improve for "
                            f"{tc.early_stopping.patience} evaluations")
      elif m.epoch >= tc.epochs:
        m.status = FINISHED
    if not self.solo:
      acc = [val_evals[i]["accuracy"] for i in train_evals]
      worst = [val_evals[i]["worst_class_accuracy"] for i in train_evals]
      self.progress.write(
          f"epoch {epoch + 1}/{self.epochs} step {step}: {len(train_evals)} of "
          f"{len(self.members)} members trained | val acc min {min(acc):.4f} mean "
          f"{np.mean(acc):.4f} max {max(acc):.4f} | worst class mean "
          f"{np.mean(worst):.4f}")
    if any(m.status == TRAINING for m in program.members) and preemption.stop_now():
      for m in program.members:
        m.setup.checkpointer.wait()  # the epoch's checkpoint is the preemption checkpoint
      raise preemption.Preempted(step, preemption.signal_name())

  def _diverge(self, m: Member, loss: float, step: int, epoch: int) -> None:
    last = m.setup.checkpointer.latest_step()
    kept = f"the last good checkpoint is step {last}" if last is not None else \
        "no checkpoint was written yet"
    m.status = DIVERGED
    m.error = (f"loss is {loss} at step {step} (epoch {epoch + 1}); training stopped and "
               f"{kept}. Try a lower optim.learning_rate or set reg.clip_norm.")
    if distributed.is_main():
      records.write_outcome(m.workdir, DIVERGED, m.error, step=step, epoch=epoch + 1)
    if not self.solo:
      self.progress.write(f"member {m.index} ({m.workdir}) diverged: {m.error}")

  def _save_preempted(self, program, counts, step: int, epoch: int, done: int,
                      share: float) -> None:
    """Mid-epoch checkpoints (no metrics: kept only while they are the newest) with what
    resuming needs to continue the epoch exactly; then Preempted."""
    for i, (m, c) in enumerate(zip(program.members, program.member_counts(counts))):
      if m.status != TRAINING:
        continue
      m.setup.checkpointer.save(
          step, program.member_state(i),
          meta={"epoch": epoch, "train_seconds": m.train_seconds + m.epoch_seconds + share,
                "early_stopping": m.stopper.to_dict(), "batches_done": done,
                **m.timing.to_dict(),
                "train_counts": {k: np.asarray(v).tolist() for k, v in c.items()},
                **workdir_lib.config_meta(m.config)})
    for m in program.members:
      m.setup.checkpointer.wait()  # on disk before the process may be killed
    raise preemption.Preempted(step, preemption.signal_name())
