"""Training and evaluation: one loop that reads top to bottom like a script.

setup (data, mesh, model, optimizer, checkpoints) -> resume -> epochs of jitted train
steps -> validation, early stopping and a checkpoint per epoch -> the best checkpoint
evaluated on val and test -> summary.json. `jaxreg.evaluate` reuses `setup` and
`evaluate_params`, so it recomputes exactly what was logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import sys
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import flax
import optax
from flax.training import train_state

from jaxreg import (checkpoint, config as config_lib, distributed, io, lock, metrics,
                    optim, parallel, plots, preemption, provenance, records)
from jaxreg.data import dataset as dataset_lib, sources
from jaxreg.logs import MetricsLog, Progress, TensorBoard
from jaxreg import models


class TrainState(train_state.TrainState):
  # Raw uint32 key data (orbax stores plain arrays); each step's dropout key is
  # fold_in(rng, step), so a resumed run draws exactly the keys it would have.
  rng: jax.Array
  # The model's collections other than params (BatchNorm's batch_stats); {} for most.
  model_state: Any = flax.struct.field(default_factory=dict)


class TrainingDiverged(RuntimeError):
  """The loss became NaN or inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class Setup:
  config: ml_collections.ConfigDict
  workdir: Path
  data: Any  # dataset.TextData, or data.images.ImageData for image sources
  mesh: jax.sharding.Mesh
  model: Any
  state: TrainState
  checkpointer: checkpoint.Checkpointer | None  # None until open_checkpoints
  steps_per_epoch: int
  train_step: Any
  eval_step: Any
  # Image data: the device-resident splits and their jitted steps (jaxreg/feed.py).
  feed: Any = None
  # Pretrained word vectors: what was found (written by open_checkpoints).
  embeddings_report: Any = None


def loss_and_logits(params, apply_fn, batch, *, train: bool, dropout_key=None,
                    model_state=None):
  """-> (mean loss over real examples, (logits, model_state updates)).

  `apply_fn` is a `models.Model.apply`; `model_state` its non-params collections."""
  rngs = {"dropout": dropout_key} if train else None
  logits, updates = apply_fn({"params": params, **(model_state or {})}, batch,
                             train=train, rngs=rngs)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
  mask = batch["mask"].astype(ce.dtype)
  # Mean over real examples only: padding rows of the last batch carry no weight.
  return jnp.sum(ce * mask) / jnp.maximum(mask.sum(), 1.0), (logits, updates)


def train_step(state: TrainState, batch, counts, *, num_classes: int):
  """One optimizer step; also accumulates the training confusion matrix."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  grad_fn = jax.value_and_grad(
      functools.partial(loss_and_logits, apply_fn=state.apply_fn, batch=batch,
                        train=True, dropout_key=key, model_state=state.model_state),
      has_aux=True)
  (loss, (logits, updates)), grads = grad_fn(state.params)
  state = state.apply_gradients(grads=grads)
  if updates:
    state = state.replace(model_state={**state.model_state, **updates})
  counts = metrics.add_counts(
      counts, metrics.batch_counts(logits, batch["labels"], batch["mask"], num_classes))
  return state, counts, {"loss": loss, "grad_norm": optax.global_norm(grads)}


def eval_step(variables, batch, counts, *, apply_fn, num_classes: int):
  """`variables`: {'params': ..., **model_state} (see `eval_variables`)."""
  _, (logits, _) = loss_and_logits(variables["params"], apply_fn, batch, train=False,
                                   model_state={k: v for k, v in variables.items()
                                                if k != "params"})
  return metrics.add_counts(
      counts, metrics.batch_counts(logits, batch["labels"], batch["mask"], num_classes))


def eval_variables(state: TrainState) -> dict:
  """What evaluation reads of a train state: params and the model's collections."""
  return {"params": state.params, **state.model_state}


def compile_steps(model, mesh, num_classes: int):
  """jit train_step and eval_step over the mesh: state replicated, batch split."""
  rep, shard = parallel.replicated(mesh), parallel.data_sharded(mesh)
  jit_train = jax.jit(
      functools.partial(train_step, num_classes=num_classes),
      in_shardings=(rep, shard, rep), out_shardings=(rep, rep, rep),
      donate_argnums=(0, 2))
  jit_eval = jax.jit(
      functools.partial(eval_step, apply_fn=model.apply, num_classes=num_classes),
      in_shardings=(rep, shard, rep), out_shardings=rep, donate_argnums=(2,))
  return jit_train, jit_eval


def make_optimizer(config, params, steps_per_epoch: int):
  """config.optim + config.reg -> the optax chain (shared with jaxreg.group)."""
  from jaxreg.data import embeddings
  return optim.build_optimizer(
      config.optim, config.reg, params, steps_per_epoch,
      steps_per_epoch * config.train.epochs,
      frozen=embeddings.FROZEN_REGEX if config.model.get("freeze_embeddings") else None)


CHECKPOINTS = ("write", "read", "later")


def setup(config, workdir, devices=None, data=None, checkpoints: str = "write") -> Setup:
  """`data`: the loaded dataset of config.data, to share one load between runs.

  Writes nothing in `workdir` except with `checkpoints='write'` (the default), which
  opens its checkpoint directory for writing (`open_checkpoints`); 'read' opens it
  read-only (jaxreg.evaluate); 'later' leaves `checkpointer` None, for a caller that
  validates everything first and opens the workdir once it holds its lock.
  """
  if checkpoints not in CHECKPOINTS:
    raise ValueError(f"checkpoints={checkpoints!r} is not one of {CHECKPOINTS}")
  config_lib.validate(config)
  workdir = Path(workdir)
  mesh = parallel.make_mesh(devices)
  with config_lib.as_config_error():  # optimizer, data and mesh checks name the key
    parallel.check_batch_size("train.batch_size", config.train.batch_size, mesh)
    parallel.check_batch_size("data.eval_batch_size", config.data.eval_batch_size, mesh)
    data = sources.load(config.data) if data is None else data
    if len(data.val) == 0 or len(data.train) == 0:
      raise ValueError(f"data.val_fraction={config.data.val_fraction} leaves an "
                       "empty train or val split")
    if config.train.batch_size > len(data.train):
      # A deliberate choice (README "Exit codes"): every step would be the same one
      # padded batch of the whole split, which is almost never what was meant.
      raise ValueError(f"train.batch_size={config.train.batch_size} is larger than "
                       f"the training split ({len(data.train)} examples); use at most "
                       f"{len(data.train)}")
    model = models.from_config(config, data)
    steps_per_epoch = dataset_lib.num_batches(len(data.train), config.train.batch_size)
    init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
    is_image = config_lib.is_image_source(config.data)
    if is_image:
      sample = {"images": np.zeros((config.train.batch_size, *data.image_shape),
                                   np.float32)}
    else:
      sample = next(dataset_lib.batches(
          data.train, config.train.batch_size,
          buckets=dataset_lib.parse_buckets(config.data.buckets, config.data.max_length)))
    # One compiled program; eager init compiles every initializer op separately.
    variables = jax.jit(model.init)(init_key, sample)
    params = variables.pop("params")
    # Pretrained word vectors (model.embeddings_file) replace the rows of the words they
    # cover; skipped when workdir holds a checkpoint (its params are restored instead).
    report = None
    if not is_image:
      from jaxreg.data import embeddings
      params, report = embeddings.load_into_params(params, data.vocab, config.model,
                                                   workdir, write_report=False)
    tx = make_optimizer(config, params, steps_per_epoch)
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                            rng=jax.random.key_data(dropout_key), model_state=variables)
  state = parallel.put_replicated(state, mesh)

  jit_train, jit_eval = compile_steps(model, mesh, data.num_classes)
  feed = None
  if is_image:  # batches gathered from device-resident arrays inside jit
    from jaxreg import feed as feed_lib
    feed = feed_lib.ImageFeed(
        config, data, mesh, model,
        functools.partial(train_step, num_classes=data.num_classes),
        functools.partial(eval_step, apply_fn=model.apply, num_classes=data.num_classes))
    jit_train = feed.train_step
  s = Setup(config, workdir, data, mesh, model, state, None, steps_per_epoch,
            jit_train, jit_eval, feed, report)
  if checkpoints == "write":
    open_checkpoints(s)
  elif checkpoints == "read":
    s.checkpointer = make_checkpointer(config, workdir, read_only=True)
  return s


def make_checkpointer(config, workdir: Path, read_only: bool = False):
  metric = config.train.checkpoint_metric
  return checkpoint.Checkpointer(
      Path(workdir) / "checkpoints", best_metric=metric,
      best_mode="min" if metric == "loss" else "max", read_only=read_only)


def open_checkpoints(s: Setup) -> None:
  """The first writes of a run: its checkpoint directory (created) and the list of
  words its pretrained vectors lacked."""
  s.checkpointer = make_checkpointer(s.config, s.workdir)
  if s.embeddings_report is not None and distributed.is_main():
    from jaxreg.data import embeddings
    from absl import logging
    logging.warning("words left random: %s",
                    embeddings.write_missing(s.embeddings_report, s.workdir))


def epoch_order(config, train_split, epoch: int) -> np.ndarray:
  """The order of the training examples in one epoch. It depends on (seed, epoch) and
  the data only, so a resumed run, and a member of a vmapped group (jaxreg.group), see
  exactly this run's order. Text: regrouped by length when data.sort_window > 0."""
  rng = np.random.default_rng([config.seed, epoch])
  order = rng.permutation(len(train_split))
  lengths = getattr(train_split, "lengths", None)  # images have none
  if config.data.sort_window and lengths is not None:
    order = dataset_lib.length_sorted(order, lengths, config.train.batch_size,
                                      config.data.sort_window, rng)
  return order


def text_epoch_batches(config, train_split, epoch: int):
  """The host (numpy) batches of one text training epoch, in `epoch_order`."""
  return dataset_lib.batches(
      train_split, config.train.batch_size, epoch_order(config, train_split, epoch),
      buckets=dataset_lib.parse_buckets(config.data.buckets, config.data.max_length))


def epoch_batches(s: Setup, epoch: int):
  """The device batches of one training epoch, for `s.train_step(state, batch, counts)`."""
  if s.feed is not None:
    yield from s.feed.epoch_batches(epoch_order(s.config, s.data.train, epoch))
    return
  for batch in text_epoch_batches(s.config, s.data.train, epoch):
    yield parallel.put_batch(batch, s.mesh)


def evaluate_params(s: Setup, variables, split: str, predictions: bool = False):
  """Every example of `split` exactly once (last batch padded and masked).

  `variables`: a TrainState (its params and model_state) or {'params': ..., ...}.
  Returns the evaluation dict; with `predictions=True`, (evaluation, predicted class
  ids int32 [N] in the split's order), from the same forward pass as the counts.
  """
  if isinstance(variables, TrainState):
    variables = eval_variables(variables)
  counts = parallel.put_replicated(metrics.zero_counts(s.data.num_classes), s.mesh)
  if s.feed is not None:
    if predictions:
      counts, preds = s.feed.predict(variables, split, counts, _predicting_step_fn(
          s.model, s.data.num_classes))
      return metrics.summarize(jax.device_get(counts), s.data.class_names), preds
    counts = s.feed.evaluate(variables, split, counts)
    return metrics.summarize(jax.device_get(counts), s.data.class_names)
  part = s.data.split(split)
  buckets = dataset_lib.parse_buckets(s.config.data.buckets, s.config.data.max_length)
  # Shortest first: buckets then run short batches at short widths, and the summed
  # confusion matrix does not depend on the order.
  order = np.argsort(part.lengths, kind="stable")
  size = s.config.data.eval_batch_size
  step = _predicting_eval_step(s.model, s.data.num_classes, s.mesh) if predictions \
      else None
  preds = np.full(len(part), -1, np.int32)
  for start, batch in zip(range(0, len(order), size),
                          dataset_lib.batches(part, size, order, buckets=buckets)):
    if step is None:
      counts = s.eval_step(variables, parallel.put_batch(batch, s.mesh), counts)
    else:
      counts, p = step(variables, parallel.put_batch(batch, s.mesh), counts)
      index = order[start:start + size]
      preds[index] = np.asarray(jax.device_get(p))[:len(index)]
  evaluation = metrics.summarize(jax.device_get(counts), s.data.class_names)
  return (evaluation, preds) if predictions else evaluation


def _predicting_step_fn(model, num_classes: int):
  """eval_step that also returns each example's argmax class (per-example test
  predictions for the report's paired bootstrap)."""
  def step(variables, batch, counts):
    _, (logits, _) = loss_and_logits(
        variables["params"], model.apply, batch, train=False,
        model_state={k: v for k, v in variables.items() if k != "params"})
    counts = metrics.add_counts(counts, metrics.batch_counts(
        logits, batch["labels"], batch["mask"], num_classes))
    return counts, jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return step


@functools.lru_cache(maxsize=8)
def _predicting_eval_step(model, num_classes: int, mesh):
  """_predicting_step_fn jitted; one compile per model. Outputs are replicated, so
  every process of a multi-process run can read them."""
  rep = parallel.replicated(mesh)
  return jax.jit(_predicting_step_fn(model, num_classes), out_shardings=(rep, rep),
                 donate_argnums=(2,))


def restore(s: Setup, step: int) -> tuple[TrainState, dict]:
  return s.checkpointer.restore(step, checkpoint.abstract_like(s.state))


def _check_finite(loss: float, step: int, epoch: int, s: Setup) -> None:
  if not math.isfinite(loss):
    last = s.checkpointer.latest_step()
    kept = f"the last good checkpoint is step {last}" if last is not None else \
        "no checkpoint was written yet"
    raise TrainingDiverged(
        f"loss is {loss} at step {step} (epoch {epoch + 1}); training stopped and "
        f"{kept}. Try a lower optim.learning_rate or set reg.clip_norm.")


def _differing_keys(old: dict, new: dict) -> list[str]:
  flat_old, flat_new = config_lib.flatten(old), config_lib.flatten(new)
  return sorted(k for k in flat_old.keys() | flat_new.keys()
                if flat_old.get(k) != flat_new.get(k))


def saved_config(workdir: Path) -> tuple[dict | None, str]:
  """The config a workdir's run was written with, and where it came from: its
  config.json, else the copy in its newest readable checkpoint (the config travels
  in every checkpoint's meta); (None, '') for a new workdir. Reads only."""
  workdir = Path(workdir)
  path = workdir / "config.json"
  if path.exists():
    try:
      return json.loads(path.read_text()), str(path)
    except (ValueError, OSError) as e:
      raise config_lib.ConfigError(
          f"{path} is damaged ({type(e).__name__}: {' '.join(str(e).split())[:80]}): "
          "remove it to have the run checked against its checkpoint's copy, or use "
          "a new --workdir") from None
  if not (workdir / "checkpoints").is_dir():
    return None, ""
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
  try:
    for step in reversed(ckpt.all_steps()):
      try:
        saved = ckpt.meta(step).get("config")
      except Exception:  # noqa: BLE001 - an unreadable step: try an older one
        continue
      if saved is not None:
        return saved, f"checkpoint step {step} ({ckpt.step_dir(step)})"
  finally:
    ckpt.close()
  return None, ""


def _check_workdir_config(config, workdir: Path) -> None:
  """A workdir holds one experiment: resuming with other settings is an error.
  Reads only (config.json or, without it, the checkpoint's copy)."""
  previous, where = saved_config(workdir)
  if previous is None:
    return
  diff = _differing_keys(previous, json.loads(config.to_json()))
  if diff:
    raise config_lib.ConfigError(
        f"workdir {workdir} holds a run with other settings ({', '.join(diff)}; "
        f"from {where}); use a new --workdir")


def _write_config(config, workdir: Path) -> None:
  """config.json, when missing (a new run, or one whose file was deleted and whose
  checkpoint's copy matched)."""
  path = workdir / "config.json"
  if distributed.is_main() and not path.exists():
    io.atomic_write_json(path, json.loads(config.to_json()))


def resume_step(s: Setup) -> int | None:
  """The checkpoint step to resume from, after checking every kept step.

  A corrupt step, and every kept step after it, is set aside (one warning line
  each) and training resumes from the newest intact step before it: the replay
  recreates the later steps exactly (data order and dropout keys depend on seed,
  epoch and step only), so the run ends as if nothing had happened. With no intact
  step before the first corrupt one, ConfigError names it and what to do.
  """
  step, bad, later = _resume_plan(s.checkpointer)
  for aside in later:
    moved = s.checkpointer.set_aside(aside, "corrupt" if aside in bad else "superseded")
    if distributed.is_main():
      why = (f"{bad[aside]}" if aside in bad else
             f"checkpoint step {aside} comes after corrupt step {min(bad)}")
      print(f"warning: {why}; moved to {moved}, resuming from step {step}",
            file=sys.stderr, flush=True)
  return step


def _resume_plan(ckpt: checkpoint.Checkpointer, warn: bool = True
                 ) -> tuple[int | None, dict, list[int]]:
  """(step to resume from, {corrupt step: error}, steps to set aside); reads only."""
  steps = ckpt.all_steps()
  bad = {}
  for step in steps:
    try:
      ckpt.verify(step, warn=warn)
    except checkpoint.CorruptCheckpoint as e:
      bad[step] = e
  if not bad:
    return (steps[-1] if steps else None), bad, []
  first = min(bad)
  earlier = [step for step in steps if step < first]
  if not earlier:
    raise config_lib.ConfigError(
        f"{bad[first]}; no intact checkpoint is kept before it: move "
        f"{ckpt.directory} aside and rerun to train from the start, or use a new "
        "--workdir")
  return earlier[-1], bad, [step for step in steps if step >= first]


def _check_resumable(config, workdir: Path) -> None:
  """What resuming will read, checked without writing: metrics.jsonl parses and an
  intact checkpoint exists to resume from (when there are any)."""
  MetricsLog(workdir / "metrics.jsonl").check()
  if (workdir / "checkpoints").is_dir():
    ckpt = make_checkpointer(config, workdir, read_only=True)
    try:
      _resume_plan(ckpt, warn=False)
    except checkpoint.CheckpointVanished:
      pass  # deleted by a run that just ended: checked again under the lock
    finally:
      ckpt.close()


def finish_run(s: Setup, log: MetricsLog, stopper: optim.EarlyStopping, epoch: int,
               train_seconds: float, timing: dict | None = None) -> dict:
  """After training: evaluates the final checkpoint on val and test, appends the test
  line, writes summary.json and the plots, closes the checkpointer (shared with
  jaxreg.group, whose members end exactly like a run alone). `timing`: epoch_seconds
  and time_to_target_seconds (see EpochTimes), added to the summary when given."""
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
      "provenance": provenance.collect(s.data.fingerprint()),
  }
  log.write({"split": "test", "step": final_step, "epoch": final_meta["epoch"],
             **summary["test"]})
  s.checkpointer.close()
  if distributed.is_main():
    # Per-example predictions let jaxreg.report pair test examples across runs.
    records.write_predictions(workdir / records.PREDICTIONS_FILE, s.data.test.labels,
                              test_preds, final_step)
    plots.plot_run(workdir, summary)
    # Last: an existing summary.json means the run and all its files are complete
    # (the sweep counts a run as done by it).
    records.write_summary(workdir, summary)
  return summary


def _save_preempted(s: Setup, state, step: int, epoch: int, batches_done: int, counts,
                    stopper, train_seconds: float, timing: dict):
  """A mid-epoch checkpoint (no metrics: it is kept only while it is the newest),
  with what resuming needs to continue the epoch exactly; then Preempted."""
  counts = jax.device_get(counts)
  s.checkpointer.save(
      step, state,
      meta={"epoch": epoch, "train_seconds": train_seconds,
            "early_stopping": stopper.to_dict(), "batches_done": batches_done, **timing,
            "train_counts": {k: np.asarray(v).tolist() for k, v in counts.items()},
            **config_meta(s.config)})
  s.checkpointer.wait()  # on disk before the process may be killed
  raise preemption.Preempted(step, preemption.signal_name())


def config_meta(config) -> dict:
  """What every checkpoint's meta carries of the config: all of it, so that a
  workdir whose config.json was lost is still checked (saved_config)."""
  return {"config": json.loads(config.to_json())}


@dataclasses.dataclass
class EpochTimes:
  """summary.json's epoch_seconds (training time of each epoch: its steps, not its
  validation; the first includes compilation) and time_to_target_seconds (training
  time, summed over epochs, until validation accuracy first reached
  train.target_accuracy; None if it never did or no target is set). Both are kept in
  the checkpoint meta, so a resumed run continues them."""
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path,
                       devices=None) -> dict:
  """Trains (resuming from workdir's latest checkpoint), returns summary.json's dict.

  Everything is checked before anything is written (the config, the workdir, its
  saved config, the data, the devices): a run refused with ConfigError leaves the
  workdir as it found it. Then the workdir is locked (LockHeld if another process
  trains in it) for the rest of the run."""
  config_lib.validate(config)
  workdir = Path(workdir)
  check_workdir(config, workdir)
  s = setup(config, workdir, devices, checkpoints="later")
  with open_workdir(config, workdir):
    open_checkpoints(s)
    try:
      return _train(s)
    finally:
      s.checkpointer.close()


def check_workdir(config, workdir: Path) -> None:
  """ConfigError unless `workdir` can hold this run: a writable directory (or one
  that can be created) that is new or holds a run of the same config. Reads only."""
  io.check_writable_dir(workdir)
  if jax.process_count() == 1:  # several: process 0 decides, in open_workdir
    lock.check(workdir)  # another run trains in it: say so first, read nothing live
  _check_workdir_config(config, workdir)
  _check_resumable(config, workdir)


@contextlib.contextmanager
def open_workdir(config, workdir: Path):
  """Locks `workdir` (created if needed) for the block and writes its config.json;
  LockHeld if another process trains in it. Call after everything is validated."""
  with open_workdirs([config], [workdir]):
    yield


@contextlib.contextmanager
def open_workdirs(configs, workdirs):
  """`open_workdir` for several runs (a vmapped group): all locked first, then their
  config.json written; if one is held by another process, the directories this call
  created for the others are removed again, so a refusal writes nothing."""
  workdirs = [Path(w) for w in workdirs]
  with contextlib.ExitStack() as held:
    created = [w for w in workdirs if not w.exists()]
    try:
      for w in workdirs:
        held.enter_context(lock.acquire_main(w) or contextlib.nullcontext())
      for c, w in zip(configs, workdirs):
        _check_workdir_config(c, w)  # again: a run may have ended meanwhile
    except config_lib.ConfigError:
      held.close()
      for w in created:  # nothing but the lock file in them yet
        if w.is_dir() and [p.name for p in w.iterdir()] == [lock.LOCK_FILE]:
          (w / lock.LOCK_FILE).unlink()
          w.rmdir()
      raise
    for c, w in zip(configs, workdirs):
      _write_config(c, w)
    yield


def _train(s: Setup) -> dict:
  config, workdir, tc = s.config, s.workdir, s.config.train
  log = MetricsLog(workdir / "metrics.jsonl")

  state, epoch, train_seconds = s.state, 0, 0.0
  timing = EpochTimes(tc.target_accuracy)
  stopper = optim.EarlyStopping(metric=tc.early_stopping.metric,
                                mode=tc.early_stopping.mode,
                                patience=tc.early_stopping.patience,
                                min_delta=tc.early_stopping.min_delta)
  latest = resume_step(s)
  resume_batches, resume_counts = 0, None  # a preemption checkpoint is mid-epoch
  if latest is not None:
    state, meta = restore(s, latest)
    epoch, train_seconds = meta["epoch"], meta["train_seconds"]
    stopper = optim.EarlyStopping.from_dict(meta["early_stopping"])
    resume_batches = meta.get("batches_done", 0)
    resume_counts = meta.get("train_counts")
    timing = EpochTimes.from_dict(tc.target_accuracy, meta)
  # Lines after the restored step (all of them without a checkpoint) were written by
  # an attempt that did not finish: the replay writes them again.
  log.truncate_after(latest or 0)
  start_step = step = int(state.step)
  tb = TensorBoard(workdir / "tensorboard", purge_step=start_step + 1)

  total_steps = s.steps_per_epoch * tc.epochs
  progress = Progress(total_steps, initial=start_step)
  if latest is not None:
    progress.write(f"resumed from step {latest} (epoch {epoch}) in {workdir}")
  num_classes = s.data.num_classes
  try:
    while epoch < tc.epochs and not stopper.should_stop:
      t0 = time.perf_counter()
      counts = metrics.zero_counts(num_classes)
      if resume_counts is not None:  # the running train counts of the cut epoch
        counts = {"confusion": np.asarray(resume_counts["confusion"], np.int32),
                  "loss_sum": np.asarray(resume_counts["loss_sum"], np.float32)}
      counts = parallel.put_replicated(counts, s.mesh)
      # Resuming mid-epoch: the epoch's order is the same, so skip what was trained.
      done, resume_batches, resume_counts = resume_batches, 0, None
      for batch in itertools.islice(epoch_batches(s, epoch), done, None):
        state, counts, step_metrics = s.train_step(state, batch, counts)
        step += 1  # counted on the host: reading state.step would sync every step
        done += 1
        if step % tc.log_every_steps == 0:
          loss = float(step_metrics["loss"])
          _check_finite(loss, step, epoch, s)
          record = {"split": "train_step", "step": step, "epoch": epoch + 1,
                    "loss": loss, "grad_norm": float(step_metrics["grad_norm"])}
          log.write(record)
          tb.scalar("train/step_loss", loss, step)
          progress.update(loss=loss)
        else:
          progress.update()
        if done < s.steps_per_epoch and preemption.stop_now():  # a step boundary
          _save_preempted(s, state, step, epoch, done, counts, stopper,
                          train_seconds + time.perf_counter() - t0, timing.to_dict())
      train_eval = metrics.summarize(jax.device_get(counts), s.data.class_names)
      _check_finite(train_eval["loss"], step, epoch, s)
      epoch_time = time.perf_counter() - t0
      train_seconds += epoch_time
      epoch += 1
      val_eval = evaluate_params(s, state, "val")
      timing.update(epoch_time, train_seconds, val_eval["accuracy"])
      for split, ev in (("train", train_eval), ("val", val_eval)):
        log.write({"split": split, "step": step, "epoch": epoch, **ev})
        tb.evaluation(split, ev, step)
      stopper = stopper.update(val_eval[tc.early_stopping.metric], step)
      progress.write(
          f"epoch {epoch}/{tc.epochs} step {step}: train loss {train_eval['loss']:.4f} "
          f"acc {train_eval['accuracy']:.4f} | val loss {val_eval['loss']:.4f} "
          f"acc {val_eval['accuracy']:.4f} worst class "
          f"{val_eval['worst_class_accuracy']:.4f}")
      s.checkpointer.save(
          step, state,
          meta={"epoch": epoch, "train_seconds": train_seconds,
                "early_stopping": stopper.to_dict(), **timing.to_dict(),
                **config_meta(config)},
          metrics={tc.checkpoint_metric: val_eval[tc.checkpoint_metric]})
      if epoch < tc.epochs and not stopper.should_stop and preemption.stop_now():
        s.checkpointer.wait()  # the epoch's checkpoint is the preemption checkpoint
        raise preemption.Preempted(step, preemption.signal_name())
    if stopper.should_stop and epoch < tc.epochs:
      progress.write(f"early stopping after epoch {epoch}: val "
                     f"{tc.early_stopping.metric} did not improve for "
                     f"{tc.early_stopping.patience} evaluations")
  finally:
    progress.close()
    s.checkpointer.wait()
    tb.close()
  if preemption.stop_now():  # asked to stop before the final evaluation: the rerun does it
    raise preemption.Preempted(step, preemption.signal_name())
  return finish_run(s, log, stopper, epoch, train_seconds, timing.to_dict())
