"""Many models in one compiled program: K runs trained together with jax.vmap.

Runs whose configs differ only in continuous hyperparameters and seeds (`SWEPT_KEYS`:
learning rate, L1, L2, weight decay, clipping thresholds, AGC lambda, dropout rates,
seed) and in host-side settings (`HOST_KEYS`: early stopping, checkpoint metric, ...)
have the same compiled train step up to values, so they train as one program over a
leading K axis:

- parameters, optimizer state, step and dropout key of the K members are stacked
  (`stack`); each member is initialized exactly as it would be alone, by
  `train.setup` (its seed, its embeddings file), one member after another;
- the optimizer is the chain of a config where every swept strength is the maximum over
  the members, so every component any member needs exists; each member's strengths are
  its own values in `opt_state.hyperparams` (optax.inject_hyperparams): 0 is exactly
  "off" for L1, L2 and weight decay (u + 0 * w = u), and a clipping threshold or AGC
  lambda of 0 ("off" in the config) becomes +inf (clip(g, inf) = g exactly);
- dropout rates are traced values: the model is rebuilt inside the vmapped step with the
  member's rates (`models.layers.Dropout` takes a traced rate; rate 0 is the identity and
  draws the same keys, so the dropout masks of the other layers do not move);
- the step is `train.train_step` itself, vmapped; each member draws its dropout keys
  from its own rng and step, and its batches from `train.text_epoch_batches`, the
  function its run alone uses (order by (seed, epoch), data.sort_window, buckets), so a
  member sees exactly the data and keys of its run alone. Members with different seeds
  get a [K, B, T] batch (each padded to the widest member's length: padding changes
  neither the logits nor the dropout masks, which the RNN draws per position,
  models/layers.Dropout's position_axis); when all seeds are equal one [B, T] batch is
  shared.
- a member that stops (early stopping, NaN) is frozen where it matters: no more log
  lines, checkpoints or NaN checks, and its results come from its own checkpoints. Its
  slot of the stacked state goes on being stepped (the program is the same for all K)
  and is never read again. This replaces a jnp.where(active, new, old) over the state
  inside the step, which does not fuse into the optimizer update and made a K=1
  group step ~60% slower than a solo step on CPU. A member ahead of the group after a resume waits the same way, and its
  own state (kept on the host) is put back into its slot when the group catches up.

Each member writes its own run directory exactly like `train.train_and_evaluate`
(config.json, metrics.jsonl, tensorboard/, checkpoints/, summary.json, plots/), so
`jaxreg.evaluate --workdir=<member>` works and a member's directory can be resumed by a
run alone (and the other way round): checkpoints hold the member's state in the
structure of its solo optimizer (the chain components a member has at strength 0 are
stateless in optax, so the array leaves of the two structures are the same list; this
is checked). Per-epoch validation (logged, early stopping, the best checkpoint) is
computed by the vmapped eval step; the summary's val/test evaluation of the final
checkpoint by the solo `train.evaluate_params`, so `jaxreg.evaluate` reproduces it
exactly.

A member whose loss becomes NaN or inf stops alone: its directory gets `error.json`
(the message of `train.TrainingDiverged`; no summary; its last good checkpoint kept)
and the others go on. A partly finished group resumes every member from its own latest
checkpoint; members that are ahead (at a later epoch) wait until the group reaches
their epoch.

Equality with runs alone: the same values enter the same operations, but XLA compiles a
batched program, so sums can associate differently: parameters and losses agree to
float rounding (tests/test_group.py: rtol 1e-4), accuracies to a few examples.

`probe(configs)` times a few steps of the group program against the same number of solo
steps and says whether the group is faster. On a small CPU it may not be (the LSTM step
is compute- and memory-bound there already: bench/vmap_sweep.py measured 0.5-0.85x on
2 busy cores); on a GPU it is the point.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxreg import checkpoint, config as config_lib, io, metrics, optim, parallel, train
from jaxreg.data import dataset as dataset_lib, sources
from jaxreg.logs import MetricsLog, Progress, TensorBoard

# Keys whose values may differ between the members of a group: values in the program.
SWEPT_KEYS = ("seed", "optim.learning_rate", "reg.l1", "reg.l2", "reg.weight_decay",
              "reg.clip_norm", "reg.clip_value", "reg.agc", "model.dropout.embed",
              "model.dropout.between", "model.dropout.output")
# Keys read only on the host (what is logged, when to stop, which checkpoint is best).
HOST_KEYS = ("train.early_stopping.metric", "train.early_stopping.mode",
             "train.early_stopping.patience", "train.early_stopping.min_delta",
             "train.checkpoint_metric", "train.final_checkpoint",
             "train.log_every_steps")
GROUPABLE_KEYS = SWEPT_KEYS + HOST_KEYS
# config key -> opt_state.hyperparams name (optim.HYPERPARAMS).
_HP_KEYS = {"learning_rate": "optim.learning_rate", "l1": "reg.l1", "l2": "reg.l2",
            "weight_decay": "reg.weight_decay", "clip_norm": "reg.clip_norm",
            "clip_value": "reg.clip_value", "agc": "reg.agc"}
_OFF_IS_INF = ("clip_norm", "clip_value", "agc")  # thresholds: 0 = off = +inf
_DROPOUTS = ("embed", "between", "output")
ERROR_FILE = "error.json"


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


def group_key(config: ml_collections.ConfigDict) -> str:
  """Configs with equal keys can train as one group (`train_group`).

  The resolved config as canonical JSON without GROUPABLE_KEYS (the continuous
  hyperparameters, the seed and host-side settings).
  """
  flat = config_lib.flatten(json.loads(config.to_json()))
  return json.dumps({k: v for k, v in flat.items() if k not in GROUPABLE_KEYS},
                    sort_keys=True)


def group_config(configs: Sequence[ml_collections.ConfigDict]
                 ) -> ml_collections.ConfigDict:
  """configs[0] with every optimizer strength the maximum over the members.

  Its chain holds every component some member uses (a component exists iff its
  strength is > 0); `member_hyperparams` then sets each member's own values.
  """
  out = configs[0].copy_and_resolve_references()
  for key in _HP_KEYS.values():
    _set(out, key, max(float(_get(c, key)) for c in configs))
  return out


def member_hyperparams(config) -> dict[str, float]:
  """opt_state.hyperparams of a member in its group's chain (0 thresholds -> +inf)."""
  out = {}
  for name, key in _HP_KEYS.items():
    value = float(_get(config, key))
    out[name] = math.inf if name in _OFF_IS_INF and value == 0 else value
  return out


def dropout_rates(config) -> np.ndarray:
  """float32 [3]: model.dropout.embed, between, output."""
  return np.array([config.model.dropout[k] for k in _DROPOUTS], np.float32)


def vmappable(config) -> bool:
  """Whether runs of this config can train as K vmapped members (the RNN family only:
  its traced-rate dropout and member rebuild are the RNN's)."""
  return config.model.family == "rnn"


def check_group(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Raises ConfigError naming the keys that keep `configs` from training together."""
  if not configs:
    raise config_lib.ConfigError("a group needs at least one config")
  if not vmappable(configs[0]):
    raise config_lib.ConfigError(
        f"model.family={configs[0].model.family!r} cannot train as a vmapped group; "
        "only 'rnn' can (use --executor=sequential)")
  first = json.loads(group_key(configs[0]))
  for i, c in enumerate(configs[1:], 1):
    other = json.loads(group_key(c))
    if other != first:
      diff = sorted(k for k in first.keys() | other.keys()
                    if first.get(k) != other.get(k))
      raise config_lib.ConfigError(
          f"config {i} differs from config 0 in {', '.join(diff)}: only "
          f"{', '.join(GROUPABLE_KEYS)} may differ within a group")


# ----------------------------------------------------------------------------- states


def stack(trees: Sequence[Any]) -> Any:
  """K pytrees of the same structure -> one with a leading K axis on every leaf."""
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def unstack(tree: Any, i: int) -> Any:
  return jax.tree.map(lambda x: x[i], tree)


def _with_hyperparams(opt_state, values: dict[str, float]):
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


def group_state(solo_state: train.TrainState, group_tx, apply_fn, hyperparams):
  """A member's TrainState (solo chain) -> the same state in the group's chain."""
  template = group_tx.init(solo_state.params)
  opt_state = convert_opt_state(solo_state.opt_state, jax.tree.structure(template),
                                jax.tree.leaves(template))
  return train.TrainState(
      step=jnp.asarray(solo_state.step, jnp.int32), apply_fn=apply_fn,
      params=solo_state.params, tx=group_tx,
      opt_state=_with_hyperparams(opt_state, hyperparams), rng=solo_state.rng)


def solo_state(member: train.TrainState, solo_template: train.TrainState,
               solo_hyperparams: dict):
  """A member's group state -> its state as the run alone would hold it."""
  opt_state = convert_opt_state(member.opt_state,
                                jax.tree.structure(solo_template.opt_state))
  return solo_template.replace(
      step=member.step, params=member.params, rng=member.rng,
      opt_state=_with_hyperparams(opt_state, solo_hyperparams))


# ----------------------------------------------------------------------------- steps


def group_train_step(state, rates, batch, counts, *, model, num_classes: int):
  """One member's `train.train_step` with its dropout rates (float [3]: embed, between,
  output); vmapped over K.

  No per-member "active" mask in the program: a jnp.where over the whole state made
  a K=1 step ~60% slower on CPU (it does not fuse into the optimizer update). A member that
  stops keeps training in the stacked state, and that state is never read again (its
  results come from its checkpoints); see `train_group`.
  """
  member_model = dataclasses.replace(model, module=model.module.clone(
      embed_dropout=rates[0], between_dropout=rates[1], output_dropout=rates[2]))
  new_state, counts, out = train.train_step(
      state.replace(apply_fn=member_model.apply), batch, counts,
      num_classes=num_classes)
  return new_state.replace(apply_fn=state.apply_fn), counts, out


def compile_group_steps(model, mesh, num_classes: int, shared_batch: bool):
  """jit(vmap(train step)) and jit(vmap(eval step)) over the mesh.

  train(state[K], rates[K, 3], batch, counts[K]) -> (state, counts,
  {'loss': [K], 'grad_norm': [K]}); batch [K, B, ...] per member, or [B, ...] shared
  when `shared_batch`. eval(params[K], batch [B, ...], counts[K]) -> counts.
  States replicated, batches split along B over the devices, as in train.compile_steps.
  """
  rep = parallel.replicated(mesh)
  batch_sharding = parallel.data_sharded(mesh) if shared_batch else \
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
  step = functools.partial(group_train_step, model=model, num_classes=num_classes)
  jit_train = jax.jit(
      jax.vmap(step, in_axes=(0, 0, None if shared_batch else 0, 0)),
      in_shardings=(rep, rep, batch_sharding, rep),
      out_shardings=(rep, rep, rep), donate_argnums=(0, 3))
  evaluate = functools.partial(train.eval_step, apply_fn=model.apply,
                               num_classes=num_classes)
  jit_eval = jax.jit(jax.vmap(evaluate, in_axes=(0, None, 0)),
                     in_shardings=(rep, parallel.data_sharded(mesh), rep),
                     out_shardings=rep, donate_argnums=(2,))
  return jit_train, jit_eval


def stack_batches(batches: Sequence[dict]) -> dict:
  """K batches -> one [K, B, T] batch, tokens padded to the widest with PAD_ID."""
  width = max(b["tokens"].shape[1] for b in batches)
  out = {k: np.stack([b[k] for b in batches]) for k in batches[0] if k != "tokens"}
  out["tokens"] = np.stack([
      np.pad(b["tokens"], ((0, 0), (0, width - b["tokens"].shape[1])),
             constant_values=dataset_lib.PAD_ID) for b in batches])
  return out


def _zero_counts(k: int, num_classes: int):
  zero = metrics.zero_counts(num_classes)
  return jax.tree.map(lambda x: np.stack([np.asarray(x)] * k), zero)


def _put_batch(batch: dict, mesh, shared: bool):
  if shared:
    return parallel.put_batch(batch, mesh)
  return jax.device_put(batch, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(None, "data")))


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass
class _Member:
  index: int
  config: ml_collections.ConfigDict
  setup: train.Setup
  log: MetricsLog
  tb: TensorBoard | None
  stopper: optim.EarlyStopping
  epoch: int                        # epochs completed
  train_seconds: float
  solo_template: Any                # abstract solo TrainState (restore/save target)
  solo_hyperparams: dict
  status: str = "training"          # training | finished | diverged
  error: str | None = None

  @property
  def workdir(self) -> Path:
    return self.setup.workdir


def _stopper(tc) -> optim.EarlyStopping:
  return optim.EarlyStopping(metric=tc.early_stopping.metric, mode=tc.early_stopping.mode,
                             patience=tc.early_stopping.patience,
                             min_delta=tc.early_stopping.min_delta)


def _diverge(m: _Member, error: Exception, step: int, epoch: int, progress) -> None:
  m.status, m.error = "diverged", str(error)
  io.atomic_write_json(m.workdir / ERROR_FILE, {"status": "diverged", "error": m.error,
                                               "step": step, "epoch": epoch + 1})
  progress.write(f"member {m.index} ({m.workdir}) diverged: {m.error}")


def train_group(configs: Sequence[ml_collections.ConfigDict],
                workdirs: Sequence[str | Path], devices=None) -> list[dict]:
  """Trains configs[i] into workdirs[i], all K as one compiled program.

  Resumes every member from its own latest checkpoint. Returns one dict per member, in
  order: its summary.json dict (as `train.train_and_evaluate` returns it) or, for a
  member whose loss became NaN/inf, {"status": "diverged", "error": message} (also in
  workdir/error.json). Raises ConfigError when the configs cannot share a program
  (`check_group`) or a workdir holds another run.
  """
  configs = list(configs)
  workdirs = [Path(w) for w in workdirs]
  if len(configs) != len(workdirs):
    raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
  if len({w.resolve() for w in workdirs}) != len(workdirs):
    raise config_lib.ConfigError("two members of a group share a workdir")
  if not configs:
    return []
  for c in configs:
    config_lib.validate(c)
  check_group(configs)
  for c, w in zip(configs, workdirs):
    train.check_workdir(c, w)  # the same rules as a run alone; reads only
  with config_lib.as_config_error():
    data = sources.load(configs[0].data)

  # Each member is set up exactly as its run alone (init from its seed, embeddings);
  # one at a time, so that only its group-form copy stays alive.
  s0 = train.setup(configs[0], workdirs[0], devices, data=data, checkpoints="later")
  with train.open_workdirs(configs, workdirs):  # every member's locked, as a run's
    train.open_checkpoints(s0)
    return _train_group(configs, workdirs, devices, data, s0)


def _train_group(configs, workdirs, devices, data, s0) -> list[dict]:
  mesh, model, num_classes = s0.mesh, s0.model, data.num_classes
  with config_lib.as_config_error():
    group_tx = train.make_optimizer(group_config(configs), s0.state.params,
                                    s0.steps_per_epoch)

  members, states = [], []
  for i, (c, w) in enumerate(zip(configs, workdirs)):
    s = s0 if i == 0 else train.setup(c, w, devices, data=data)
    # Evaluation has no dropout, so every member's eval program is member 0's: one
    # compilation, and the same numbers as jaxreg.evaluate's own.
    s.eval_step = s0.eval_step
    (s.workdir / ERROR_FILE).unlink(missing_ok=True)  # retried now
    state, epoch, train_seconds, stopper = s.state, 0, 0.0, _stopper(c.train)
    log = MetricsLog(s.workdir / "metrics.jsonl")
    latest = train.resume_step(s)
    if latest is not None:
      state, meta = train.restore(s, latest)
      epoch, train_seconds = meta["epoch"], meta["train_seconds"]
      stopper = optim.EarlyStopping.from_dict(meta["early_stopping"])
    log.truncate_after(latest or 0)
    solo_hp = {k: float(v) for k, v in
               jax.device_get(s.state.opt_state.hyperparams).items()}
    states.append(group_state(state, group_tx, model.apply, member_hyperparams(c)))
    m = _Member(i, c, s, log, None, stopper, epoch, train_seconds,
                checkpoint.abstract_like(s.state), solo_hp)
    s.state = m.solo_template  # the member's arrays live in the stacked state only
    if epoch >= c.train.epochs or stopper.should_stop:
      m.status = "finished"
    m.tb = TensorBoard(s.workdir / "tensorboard",
                       purge_step=int(state.step) + 1)
    members.append(m)
  state = parallel.put_replicated(stack(states), mesh)
  del states

  k = len(members)
  tc = configs[0].train
  spe, epochs = s0.steps_per_epoch, tc.epochs
  shared = len({c.seed for c in configs}) == 1
  jit_train, jit_eval = compile_group_steps(model, mesh, num_classes, shared)
  rates = parallel.put_replicated(np.stack([dropout_rates(c) for c in configs]), mesh)

  training = [m for m in members if m.status == "training"]
  epoch = min((m.epoch for m in training), default=epochs)
  # Members ahead of the group (resumed from a later epoch) train along on a copy in
  # the stacked state until the group reaches their epoch, then their own state
  # (kept here, on the host) takes its place again.
  waiting = {m.index: jax.device_get(unstack(state, m.index))
             for m in training if m.epoch > epoch}
  progress = Progress(spe * epochs, initial=spe * epoch, desc=f"group of {k}")
  resumed = [m for m in members if m.epoch > 0]
  if resumed:
    progress.write(f"group of {k}: resumed {len(resumed)} members (epochs "
                   f"{sorted({m.epoch for m in resumed})}); the group starts at epoch "
                   f"{epoch}")
  completed = False
  try:
    while epoch < epochs:
      running = [m for m in members if m.status == "training" and m.epoch == epoch]
      if not any(m.status == "training" for m in members):
        break
      if not running:  # only members ahead of this epoch remain: catch up
        epoch += 1
        progress.update(spe)
        continue
      for m in running:  # members that were ahead rejoin with their own state
        if m.index in waiting:
          state = _set_member(state, m.index, waiting.pop(m.index))
      t0 = time.perf_counter()
      # Each member's batches exactly as its run alone draws them (one function).
      streams = [train.text_epoch_batches(c, data.train, epoch)
                 for c in (configs[:1] if shared else configs)]
      counts = parallel.put_replicated(_zero_counts(k, num_classes), mesh)
      step = epoch * spe
      for parts in zip(*streams):
        batch = parts[0] if shared else stack_batches(parts)
        state, counts, out = jit_train(state, rates, _put_batch(batch, mesh, shared),
                                       counts)
        step += 1
        to_log = [m for m in running if m.status == "training"
                  and step % m.config.train.log_every_steps == 0]
        if not to_log:
          progress.update()
          continue
        losses, norms = jax.device_get((out["loss"], out["grad_norm"]))
        for m in to_log:
          loss = float(losses[m.index])
          try:
            train._check_finite(loss, step, epoch, m.setup)  # noqa: SLF001
          except train.TrainingDiverged as e:
            _diverge(m, e, step, epoch, progress)
            continue
          m.log.write({"split": "train_step", "step": step, "epoch": epoch + 1,
                       "loss": loss, "grad_norm": float(norms[m.index])})
          m.tb.scalar("train/step_loss", loss, step)
        progress.update(loss=float(np.mean([losses[m.index] for m in to_log])))
      host_counts = jax.device_get(counts)
      seconds = time.perf_counter() - t0
      train_evals = {}
      for m in running:
        if m.status != "training":
          continue
        ev = metrics.summarize(unstack(host_counts, m.index), data.class_names)
        try:
          train._check_finite(ev["loss"], step, epoch, m.setup)  # noqa: SLF001
        except train.TrainingDiverged as e:
          _diverge(m, e, step, epoch, progress)
          continue
        train_evals[m.index] = ev
      epoch += 1
      val_evals = _evaluate(jit_eval, {"params": state.params}, data, "val", configs[0], mesh, k)
      done = [m for m in running if m.index in train_evals]
      for m in done:
        mtc = m.config.train
        train_eval, val_eval = train_evals[m.index], val_evals[m.index]
        m.train_seconds += seconds
        m.epoch = epoch
        for split, ev in (("train", train_eval), ("val", val_eval)):
          m.log.write({"split": split, "step": step, "epoch": epoch, **ev})
          m.tb.evaluation(split, ev, step)
        m.stopper = m.stopper.update(val_eval[mtc.early_stopping.metric], step)
        member = solo_state(unstack(state, m.index), m.solo_template,
                            m.solo_hyperparams)
        m.setup.checkpointer.save(
            step, member,
            meta={"epoch": epoch, "train_seconds": m.train_seconds,
                  "early_stopping": m.stopper.to_dict(), **train.config_meta(m.config)},
            metrics={mtc.checkpoint_metric: val_eval[mtc.checkpoint_metric]})
        if m.stopper.should_stop and epoch < epochs:
          m.status = "finished"
          progress.write(f"member {m.index}: early stopping after epoch {epoch}: val "
                         f"{mtc.early_stopping.metric} did not improve for "
                         f"{mtc.early_stopping.patience} evaluations")
        elif epoch >= epochs:
          m.status = "finished"
      if done:
        acc = [val_evals[m.index]["accuracy"] for m in done]
        worst = [val_evals[m.index]["worst_class_accuracy"] for m in done]
        progress.write(
            f"epoch {epoch}/{epochs} step {step}: {len(done)} of {k} members trained | "
            f"val acc min {min(acc):.4f} mean {np.mean(acc):.4f} max {max(acc):.4f} | "
            f"worst class mean {np.mean(worst):.4f}")
    completed = True
  finally:
    progress.close()
    for m in members:
      m.setup.checkpointer.wait()
      m.tb.close()
      if not completed:  # interrupted: what was saved stays, for a resume
        m.setup.checkpointer.close()
  del state

  results = []
  for m in members:
    if m.status == "diverged":
      m.setup.checkpointer.close()
      results.append({"status": "diverged", "error": m.error})
    else:
      results.append(train.finish_run(m.setup, m.log, m.stopper, m.epoch,
                                      m.train_seconds))
  return results


def _set_member(state, i: int, member):
  """The stacked state with member i's slot replaced by `member`."""
  return jax.tree.map(lambda s, x: s.at[i].set(x), state, member)


def _evaluate(jit_eval, params, data, split: str, config, mesh, k: int) -> list[dict]:
  """Every member's evaluation of `split` (each example exactly once, as train does)."""
  counts = parallel.put_replicated(_zero_counts(k, data.num_classes), mesh)
  buckets = dataset_lib.parse_buckets(config.data.buckets, config.data.max_length)
  for batch in dataset_lib.batches(data.split(split), config.data.eval_batch_size,
                                   buckets=buckets):
    counts = jit_eval(params, parallel.put_batch(batch, mesh), counts)
  host = jax.device_get(counts)
  return [metrics.summarize(unstack(host, i), data.class_names) for i in range(k)]


# ----------------------------------------------------------------------------- probe


def probe_timings(configs: Sequence[ml_collections.ConfigDict], steps: int = 3,
                  devices=None, data=None, rounds: int = 3) -> dict:
  """Seconds per group step against K solo steps (both compiled and warmed up first).

  `rounds` alternating rounds of `steps` group steps and K * `steps` solo steps (one
  state stepped again and again, as runs one after another do); medians. Members are
  initialized from configs[0] (timing does not depend on the values); batches are
  real: the first batch of each member's epoch-0 order.
  """
  configs = list(configs)
  check_group(configs)
  k = len(configs)
  # Removed only at the end: orbax cleans a new manager's directory in a background
  # thread that close() does not wait for.
  tmp = tempfile.mkdtemp(prefix="jaxreg-probe-")
  with config_lib.as_config_error():
    data = sources.load(configs[0].data) if data is None else data
  s = train.setup(configs[0], tmp, devices, data=data)
  s.checkpointer.close()
  group_tx = train.make_optimizer(group_config(configs), s.state.params,
                                  s.steps_per_epoch)
  shared = len({c.seed for c in configs}) == 1
  first = [next(iter(train.text_epoch_batches(c, data.train, 0)))
           for c in (configs[:1] if shared else configs)]
  group_batch = _put_batch(first[0] if shared else stack_batches(first), s.mesh, shared)
  solo_batch = parallel.put_batch(first[0], s.mesh)
  state = parallel.put_replicated(stack([
      group_state(s.state, group_tx, s.model.apply, member_hyperparams(c))
      for c in configs]), s.mesh)
  rates = parallel.put_replicated(np.stack([dropout_rates(c) for c in configs]), s.mesh)
  jit_train, _ = compile_group_steps(s.model, s.mesh, data.num_classes, shared)
  counts = parallel.put_replicated(_zero_counts(k, data.num_classes), s.mesh)
  solo, solo_counts = s.state, parallel.put_replicated(
      metrics.zero_counts(data.num_classes), s.mesh)

  def run_group(n):
    nonlocal state, counts
    for _ in range(n):
      state, counts, out = jit_train(state, rates, group_batch, counts)
    jax.block_until_ready(out)

  def run_solo(n):
    nonlocal solo, solo_counts
    for _ in range(n):
      solo, solo_counts, out = s.train_step(solo, solo_batch, solo_counts)
    jax.block_until_ready(out)

  run_group(1), run_solo(1)  # compile
  run_group(1), run_solo(k)  # warm up
  group_t, solo_t = [], []
  for _ in range(rounds):  # alternating: drift on a busy machine hits both alike
    t0 = time.perf_counter()
    run_group(steps)
    group_t.append((time.perf_counter() - t0) / steps)
    t0 = time.perf_counter()
    run_solo(k * steps)
    solo_t.append((time.perf_counter() - t0) / steps)
  group_s, sequential_s = float(np.median(group_t)), float(np.median(solo_t))
  shutil.rmtree(tmp, ignore_errors=True)
  return {"k": k, "steps": steps, "rounds": rounds, "group_seconds_per_step": group_s,
          "sequential_seconds_per_k_steps": sequential_s,
          "ratio": sequential_s / group_s}


def probe(configs: Sequence[ml_collections.ConfigDict], steps: int = 3, devices=None,
          data=None, rounds: int = 3) -> bool:
  """True when one group step of K members is faster than K solo steps (the sweep
  falls back to training the runs one after another otherwise)."""
  return probe_timings(configs, steps, devices, data, rounds)["ratio"] > 1.0
