"""A population of K members trained by one loop (jaxreg/train/loop.py).

Each member is a run: its config, workdir, checkpoints, log, early stopping, timing.
The members that train together at a step are stepped by one *program*:

* `SoloProgram` (a population of one: `train_and_evaluate`): the run's own jitted step
  on its own TrainState, no vmap.
* `StackedProgram` (a group): the same pure step, vmapped over a leading K axis of
  stacked state. Each member is initialized exactly as its run alone (jaxreg.train.build
  .setup: its seed, its embeddings) and restored from its own checkpoint; then

  - the optimizer is the chain of a config where every swept strength is the maximum
    over the members, so every component some member needs exists; each member's
    strengths are its own values in `opt_state.hyperparams` (optax.inject_hyperparams):
    0 is exactly "off" for L1, L2 and weight decay (u + 0 * w = u), and a clipping
    threshold or AGC lambda of 0 ("off" in the config) becomes +inf (clip(g, inf) = g);
  - the values a family traces (models.Family.traced: dropout rates) and a feed's
    strengths (ImageFeed: data.augment.*) are arrays, one per member (`values`);
  - each member draws its dropout keys from its own rng and step, and its batches in
    its own epoch order (feeds.epoch_order), so a member sees its run alone's data and
    keys. Members with one seed share one batch.

  A member's state is converted back to its run alone's structure for every checkpoint
  (the chain components a member has at strength 0 are stateless in optax, so the array
  leaves of the two structures are the same list; this is checked), so a member's
  workdir resumes alone and a run's workdir resumes as a member.

Which configs may train together: `group_key` (equal apart from `traced_keys`, which
depend on the family) and `check_group`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxreg import config as config_lib, feeds, metrics, models, parallel
from jaxreg.logs import MetricsLog, TensorBoard
from jaxreg.train.build import Setup
from jaxreg.train.early_stopping import EarlyStopping
from jaxreg.train.evaluation import EpochTimes, evaluate_params
from jaxreg.train.state import TrainState, make_optimizer

# config key -> opt_state.hyperparams name (optim.HYPERPARAMS): every family traces them.
OPTIMIZER_KEYS = {"optim.learning_rate": "learning_rate", "reg.l1": "l1", "reg.l2": "l2",
                  "reg.weight_decay": "weight_decay", "reg.clip_norm": "clip_norm",
                  "reg.clip_value": "clip_value", "reg.agc": "agc"}
_OFF_IS_INF = ("clip_norm", "clip_value", "agc")  # thresholds: 0 = off = +inf
# Keys read only on the host (what is logged, when to stop, which checkpoint is best).
HOST_KEYS = ("train.early_stopping.metric", "train.early_stopping.mode",
             "train.early_stopping.patience", "train.early_stopping.min_delta",
             "train.checkpoint_metric", "train.final_checkpoint",
             "train.log_every_steps", "train.target_accuracy")

TRAINING, FINISHED, DIVERGED = "training", "finished", "diverged"


# ----------------------------------------------------------------------------- configs


def _get(config, key: str):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _set(config, key: str, value) -> None:
  *parents, leaf = key.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def traced_keys(config) -> tuple[str, ...]:
  """The keys whose values may differ between the members of a group of `config`:
  the optimizer's strengths, the family's traced fields, the feed's strengths, and the
  seed unless the family's dropout masks depend on the padded width and batches are
  bucketed (models.Family.padding_free_masks)."""
  family = models.family(config.model.family)
  seed = family.padding_free_masks or not str(config.data.buckets).strip()
  return (("seed",) if seed else ()) + tuple(OPTIMIZER_KEYS) + tuple(family.traced) + \
      tuple(feeds.feed_class(config).TRACED)


def group_key(config: ml_collections.ConfigDict) -> str:
  """Configs with equal keys can train as one group: the resolved config as canonical
  JSON without `traced_keys` and HOST_KEYS."""
  skip = set(traced_keys(config)) | set(HOST_KEYS)
  flat = config_lib.flatten(json.loads(config.to_json()))
  return json.dumps({k: v for k, v in flat.items() if k not in skip}, sort_keys=True)


def check_group(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Raises ConfigError naming the keys that keep `configs` from training together."""
  if not configs:
    raise config_lib.ConfigError("a group needs at least one config")
  first = json.loads(group_key(configs[0]))
  for i, c in enumerate(configs[1:], 1):
    other = json.loads(group_key(c))
    if other != first:
      diff = sorted(k for k in first.keys() | other.keys()
                    if first.get(k) != other.get(k))
      why = ""
      if "seed" in diff and "seed" not in traced_keys(configs[0]):
        why = (f" (model.family={configs[0].model.family!r} draws dropout masks for "
               "the padded width: its members share one seed unless data.buckets='')")
      raise config_lib.ConfigError(
          f"config {i} differs from config 0 in {', '.join(diff)}: only "
          f"{', '.join(traced_keys(configs[0]) + HOST_KEYS)} may differ within a "
          f"group{why}")


def group_config(configs: Sequence[ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
  """configs[0] with every optimizer strength the maximum over the members: its chain
  holds every component some member uses (a component exists iff its strength is > 0);
  `member_hyperparams` then sets each member's own values."""
  out = configs[0].copy_and_resolve_references()
  for key in OPTIMIZER_KEYS:
    _set(out, key, max(float(_get(c, key)) for c in configs))
  return out


def member_hyperparams(config) -> dict[str, float]:
  """opt_state.hyperparams of a member in its group's chain (0 thresholds -> +inf)."""
  out = {}
  for key, name in OPTIMIZER_KEYS.items():
    value = float(_get(config, key))
    out[name] = math.inf if name in _OFF_IS_INF and value == 0 else value
  return out


def member_values(config, feed=None) -> dict:
  """The traced values of one member: {'model': {field: float32}, **feed's}."""
  family = models.family(config.model.family)
  return {"model": {field: np.float32(_get(config, key))
                    for key, field in family.traced.items()},
          **(feed.member_values(config) if feed is not None else {})}


# ----------------------------------------------------------------------------- states


def stack(trees: Sequence[Any]) -> Any:
  """K pytrees of the same structure -> one with a leading K axis on every leaf."""
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def unstack(tree: Any, i: int) -> Any:
  return jax.tree.map(lambda x: x[i], tree)


def with_hyperparams(opt_state, values: dict[str, float]):
  """opt_state (optax.inject_hyperparams) with hyperparams set to `values`."""
  old = opt_state.hyperparams
  new = {k: jnp.asarray(values[k], dtype=jnp.asarray(v).dtype) for k, v in old.items()}
  return opt_state._replace(hyperparams=new)


def convert_opt_state(opt_state, target_treedef, target_leaves_like=None):
  """The array leaves of `opt_state` in another chain's structure.

  A member's solo chain and its group's chain differ only in components with strength 0
  for that member (clipping, L1, L2, weight decay), which optax implements without
  state, so both structures hold the same array leaves in the same order. Raises
  ValueError when they do not (a stateful component added to the chain one day).
  """
  leaves = jax.tree.leaves(opt_state)
  if target_treedef.num_leaves != len(leaves):
    raise ValueError(f"optimizer states differ: {len(leaves)} leaves, the target has "
                     f"{target_treedef.num_leaves}; a chain component that some member "
                     "has at strength 0 keeps state, so groups cannot share one chain")
  if target_leaves_like is not None:
    for a, b in zip(leaves, target_leaves_like):
      if np.shape(a) != np.shape(b):
        raise ValueError(f"optimizer state leaf shapes differ: {np.shape(a)} vs "
                         f"{np.shape(b)}")
  return jax.tree.unflatten(target_treedef, leaves)


def group_state(solo: TrainState, group_tx, apply_fn, hyperparams) -> TrainState:
  """A member's TrainState (solo chain) -> the same state in the group's chain."""
  template = jax.eval_shape(group_tx.init, solo.params)
  opt_state = convert_opt_state(solo.opt_state, jax.tree.structure(template),
                                jax.tree.leaves(template))
  return TrainState(
      step=jnp.asarray(solo.step, jnp.int32), apply_fn=apply_fn, params=solo.params,
      tx=group_tx, opt_state=with_hyperparams(opt_state, hyperparams), rng=solo.rng,
      model_state=solo.model_state)


def solo_state(member: TrainState, solo_template: TrainState, solo_hyperparams: dict):
  """A member's group state -> its state as the run alone holds it."""
  opt_state = convert_opt_state(member.opt_state,
                                jax.tree.structure(solo_template.opt_state))
  return solo_template.replace(
      step=member.step, params=member.params, rng=member.rng,
      model_state=member.model_state,
      opt_state=with_hyperparams(opt_state, solo_hyperparams))


def _counts_from(host: dict | None, num_classes: int) -> dict:
  """A member's running train counts (from a checkpoint's meta), or zeros."""
  if host is None:
    return metrics.zero_counts(num_classes)
  return {"confusion": np.asarray(host["confusion"], np.int32),
          "loss_sum": np.asarray(host["loss_sum"], np.float32)}


# ---------------------------------------------------------------------------- members


@dataclasses.dataclass(eq=False)  # a member is itself: compared by identity
class Member:
  """One run of the population and everything the host keeps of it."""
  index: int
  setup: Setup
  log: MetricsLog
  tb: TensorBoard | None
  stopper: EarlyStopping
  timing: EpochTimes
  template: Any                  # abstract solo TrainState (restore and save target)
  state: Any                     # its TrainState while no program holds it
  epoch: int = 0                 # epochs completed
  batches_done: int = 0          # of the current epoch
  train_seconds: float = 0.0
  epoch_seconds: float = 0.0     # its share of the current epoch's training so far
  counts: dict | None = None     # running train counts of a cut epoch (host)
  resumed_from: int | None = None
  status: str = TRAINING
  error: str | None = None
  learning_rate: Any = None      # step -> the learning rate that produced it
  trackers: Any = None           # jaxreg.trackers.Trackers (W&B, MLflow)

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.setup.config

  @property
  def workdir(self) -> Path:
    return self.setup.workdir

  @property
  def step(self) -> int:
    return self.epoch * self.setup.steps_per_epoch + self.batches_done


# --------------------------------------------------------------------------- programs


class SoloProgram:
  """One run alone: the feed's jitted step on the run's own state (no vmap)."""

  def __init__(self, member: Member):
    self.members = [member]
    self.feed = member.setup.feed
    self._step = self.feed.train_step_for(member.config)
    self.state, member.state = member.state, None

  def counts(self):
    m = self.members[0]
    return parallel.put_replicated(_counts_from(m.counts, self.feed.num_classes),
                                   self.feed.mesh)

  def batches(self, epoch: int, start: int, stop: int):
    m = self.members[0]
    order = feeds.epoch_order(m.config, m.setup.data.train, epoch)
    return self.feed.epoch_batches([order], start, stop, epoch)

  def step(self, batch, counts):
    self.state, counts, out = self._step(self.state, batch, counts)
    return counts, out

  def read(self, out) -> tuple[np.ndarray, np.ndarray]:
    """(loss [1], grad_norm [1]) on the host."""
    out = jax.device_get(out)
    return np.reshape(out["loss"], 1), np.reshape(out["grad_norm"], 1)

  def member_counts(self, counts) -> list[dict]:
    return [jax.device_get(counts)]

  def evaluate(self, split: str) -> list[dict]:
    return [evaluate_params(self.members[0].setup, self.state, split)]

  def member_state(self, i: int) -> TrainState:
    return self.state

  def release(self) -> None:
    self.members[0].state, self.state = self.state, None


class StackedProgram:
  """Members stepped together: one vmapped step over their stacked state."""

  def __init__(self, members: Sequence[Member], model):
    self.members = list(members)
    s0 = self.members[0].setup
    self.feed, self.mesh = s0.feed, s0.mesh
    configs = [m.config for m in self.members]
    with config_lib.as_config_error():
      tx = make_optimizer(group_config(configs), self.members[0].state.params,
                          s0.steps_per_epoch)
    self.solo_hyperparams = [
        {k: float(v) for k, v in jax.device_get(m.state.opt_state.hyperparams).items()}
        for m in self.members]
    states = []
    for m in self.members:  # one at a time: only the group-form copy stays alive
      states.append(group_state(m.state, tx, model.apply, member_hyperparams(m.config)))
      m.state = None
    self.state = parallel.put_replicated(stack(states), self.mesh)
    del states
    self.values = parallel.put_replicated(
        stack([member_values(c, self.feed) for c in configs]), self.mesh)
    # Members of one seed draw the same batches: one [B, ...] batch for all of them.
    self.shared = len({c.seed for c in configs}) == 1
    self._configs = configs[:1] if self.shared else configs
    self._step = self.feed.group_train_step(self.shared, configs)

  def counts(self):
    return parallel.put_replicated(stack([
        _counts_from(m.counts, self.feed.num_classes) for m in self.members]), self.mesh)

  def batches(self, epoch: int, start: int, stop: int):
    train = self.members[0].setup.data.train
    orders = [feeds.epoch_order(c, train, epoch) for c in self._configs]
    return self.feed.epoch_batches(orders, start, stop, epoch)

  def step(self, batch, counts):
    self.state, counts, out = self._step(self.state, self.values, batch, counts)
    return counts, out

  def read(self, out) -> tuple[np.ndarray, np.ndarray]:
    out = jax.device_get(out)
    return np.asarray(out["loss"]), np.asarray(out["grad_norm"])

  def member_counts(self, counts) -> list[dict]:
    host = jax.device_get(counts)
    return [unstack(host, i) for i in range(len(self.members))]

  def evaluate(self, split: str) -> list[dict]:
    data = self.members[0].setup.data
    counts = parallel.put_replicated(stack([metrics.zero_counts(data.num_classes)] *
                                           len(self.members)), self.mesh)
    variables = {"params": self.state.params, **self.state.model_state}
    host = jax.device_get(self.feed.evaluate_group(variables, split, counts))
    return [metrics.summarize(unstack(host, i), data.class_names)
            for i in range(len(self.members))]

  def member_state(self, i: int) -> TrainState:
    m = self.members[i]
    return solo_state(unstack(self.state, i), m.template, self.solo_hyperparams[i])

  def release(self) -> None:
    for i, m in enumerate(self.members):
      m.state = self.member_state(i)
    self.state = None
