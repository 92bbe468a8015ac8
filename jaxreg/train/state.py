"""What a run trains: its TrainState and the optax chain its config asks for."""

from __future__ import annotations

from typing import Any

import flax
import jax
from flax.training import train_state

from jaxreg import optim
from jaxreg.data import embeddings


class TrainState(train_state.TrainState):
  # Raw uint32 key data (orbax stores plain arrays); each step's dropout key is
  # fold_in(rng, step), so a resumed run draws exactly the keys it would have.
  rng: jax.Array
  # The model's collections other than params (BatchNorm's batch_stats); {} for most.
  model_state: Any = flax.struct.field(default_factory=dict)


def _total_steps(config, steps_per_epoch: int) -> int:
  return steps_per_epoch * config.train.epochs


def learning_rate(config, steps_per_epoch: int):
  """step -> the learning rate of the update that produced it (update t = step - 1,
  optim.schedule_shape), on the host: what the logs show, the chain's own schedule."""
  shape = optim.schedule_shape(config.optim, steps_per_epoch,
                               _total_steps(config, steps_per_epoch))
  peak = float(config.optim.learning_rate)
  return lambda step: peak * float(shape(max(step - 1, 0)))


class TrainingDiverged(RuntimeError):
  """The loss became NaN or inf; the last good checkpoint is kept."""


def make_optimizer(config, params, steps_per_epoch: int):
  """config.optim + config.reg -> the optax chain (optim.build_optimizer)."""
  return optim.build_optimizer(
      config.optim, config.reg, params, steps_per_epoch,
      _total_steps(config, steps_per_epoch),
      frozen=embeddings.FROZEN_REGEX if config.model.get("freeze_embeddings") else None,
      trainable=config.train.get("trainable") or None)
