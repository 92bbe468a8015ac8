"""Everything one run needs before its first step: data, mesh, model, state, feed.

`setup` is shared by training (every member of a population), jaxreg.evaluate (which
then recomputes exactly what was logged) and the group probe."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import ml_collections
from absl import logging

from jaxreg import checkpoint, config as config_lib, distributed, feeds, models, parallel
from jaxreg.data import embeddings, sources
from jaxreg.train import steps, transfer
from jaxreg.train.state import TrainState, make_optimizer


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
  feed: Any  # feeds.TextFeed or feeds.ImageFeed: batches, jitted steps, evaluation
  # Pretrained word vectors: what was found (written by open_checkpoints).
  embeddings_report: Any = None
  # model.init_from: the upstream run loaded (transfer.load_weights' record), else None.
  upstream: dict | None = None

  @property
  def train_step(self):
    """One run's jitted step: (state, batch from feed.epoch_batches, counts)."""
    return self.feed.train_step


CHECKPOINTS = ("write", "read", "later")


def setup(config, workdir, devices=None, data=None, checkpoints: str = "write",
          feed=None) -> Setup:
  """`config`: a valid config (the entry points, `run`, jaxreg.evaluate and
  group.probe_timings, run jaxreg.config.validate once; setup trusts it). `data`: the
  loaded dataset of config.data, to share one load between runs; `feed`:
  a feed of that data to share (a group's members share one: images are put on the
  device once).

  Writes nothing in `workdir` except with `checkpoints='write'` (the default), which
  opens its checkpoint directory for writing (`open_checkpoints`); 'read' opens it
  read-only (jaxreg.evaluate); 'later' leaves `checkpointer` None, for a caller that
  validates everything first and opens the workdir once it holds its lock.
  """
  if checkpoints not in CHECKPOINTS:
    raise ValueError(f"checkpoints={checkpoints!r} is not one of {CHECKPOINTS}")
  workdir = Path(workdir)
  mesh = parallel.make_mesh(devices) if feed is None else feed.mesh
  with config_lib.as_config_error():  # optimizer, data and mesh checks name the key
    parallel.check_batch_size("train.batch_size", config.train.batch_size, mesh)
    parallel.check_batch_size("data.eval_batch_size", config.data.eval_batch_size, mesh)
    # model.init_from: the upstream vocabulary and normalization (transfer.py).
    pre = transfer.preprocessing(config, workdir)
    if data is None:
      data = sources.load(config.data, vocab=pre.vocab if pre else None)
    if pre is not None:
      transfer.check_data(config, data, pre)
    if len(data.val) == 0 or len(data.train) == 0:
      raise ValueError(f"data.val_fraction={config.data.val_fraction} leaves an "
                       "empty train or val split")
    if config.train.batch_size > len(data.train):
      # A deliberate choice (docs/workdir.md, "Exit codes"): every step would be the same one
      # padded batch of the whole split, which is almost never what was meant.
      raise ValueError(f"train.batch_size={config.train.batch_size} is larger than "
                       f"the training split ({len(data.train)} examples); use at most "
                       f"{len(data.train)}")
    model = models.from_config(config, data)
    if feed is None:
      feed = feeds.for_config(config, data, mesh, steps.bind(model, data.num_classes),
                              normalization=pre.normalization if pre else None)
    init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
    sample = feed.init_batch()
    # One compiled program; eager init compiles every initializer op separately.
    variables = jax.jit(model.init)(init_key, {k: v for k, v in sample.items()
                                               if k in model.inputs})
    params = variables.pop("params")
    # Pretrained word vectors (model.embeddings_file) replace the rows of the words they
    # cover; skipped when workdir holds a checkpoint (its params are restored instead).
    report = None
    if hasattr(data, "vocab"):
      params, report = embeddings.load_into_params(params, data.vocab, config.model,
                                                   workdir, write_report=False)
    upstream = None
    if pre is not None and checkpoints != "read":  # evaluation restores its own
      # A started run restores its own checkpoint: the upstream is not read again.
      upstream = transfer.started_from(workdir)
      if upstream is None:
        params, variables, upstream = transfer.load_weights(config, params, variables,
                                                            model.head)
    tx = make_optimizer(config, params, feed.steps_per_epoch)
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                            rng=jax.random.key_data(dropout_key), model_state=variables)
  state = parallel.put_replicated(state, mesh)
  s = Setup(config, workdir, data, mesh, model, state, None, feed.steps_per_epoch, feed,
            report, upstream)
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
    logging.warning("words left random: %s",
                    embeddings.write_missing(s.embeddings_report, s.workdir))


def epoch_batches(s: Setup, epoch: int):
  """The device batches of one training epoch of `s`, for `s.train_step`."""
  return s.feed.epoch_batches([feeds.epoch_order(s.config, s.data.train, epoch)],
                              epoch=epoch)


def compile_steps(model, mesh, num_classes: int):
  """(train, eval) of `model` jitted over the mesh for host batches, as a TextFeed runs
  them (the benchmarks call this directly)."""
  return feeds.jit_host_steps(steps.bind(model, num_classes), mesh)


def restore(s: Setup, step: int) -> tuple[TrainState, dict]:
  return s.checkpointer.restore(step, checkpoint.abstract_like(s.state))
