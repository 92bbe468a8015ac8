"""config.optim + config.reg -> one optax chain, in an order that is part of the science.

Every regularizer is an optax transformation, and where it sits in the chain decides what
it means. `build_optimizer` builds, in this order (components whose strength is 0 are left
out of the chain entirely):

  1. Clipping, on the raw loss gradient g:
       a. reg.clip_value  optax.clip: every entry into [-clip_value, clip_value];
       b. reg.clip_norm   optax.clip_by_global_norm: rescale the whole tree so that its
                          global L2 norm is <= clip_norm;
       c. reg.agc         optax.adaptive_grad_clip(agc, eps=reg.agc_eps), unit-wise:
                          ||g_u|| <= agc * max(||w_u||, agc_eps) for every unit u (see
                          "AGC units" below). Parameters whose path matches the regex
                          reg.agc_exclude (default '^head/', the classifier head, as in
                          NFNets) pass through untouched (optax.masked).
     The regularization terms of step 2 are added after clipping: they are never clipped.
  2. Coupled penalty gradients, added to the (clipped) gradient, only on parameters
     selected by reg.decay_mask:
       a. reg.l1  g += l1 * sign(w)   (a subgradient of l1 * ||w||_1; sign(0) = 0, so
                  the L1 term adds nothing at a weight that is exactly zero, but its
                  loss gradient still moves it: L1 neither makes weights exactly zero nor
                  keeps them there. Plain subgradient, not proximal (no soft
                  thresholding), so a small weight overshoots zero and oscillates around
                  it by about lr * l1 per step instead of settling at 0);
       b. reg.l2  g += l2 * w         (the gradient of (l2 / 2) * ||w||^2; optax
                  add_decayed_weights). This is "coupled L2": it goes through the
                  preconditioner of step 3, so under Adam it is rescaled per coordinate.
  3. The optimizer's preconditioner, with learning rate 1:
       sgd -> identity; momentum -> optax.trace(momentum); nesterov -> optax.trace(momentum,
       nesterov=True); adam -> scale_by_adam(b1, b2, eps); rmsprop -> scale_by_rms(decay,
       eps) (no momentum, eps inside the sqrt, like optax.rmsprop); adadelta ->
       scale_by_adadelta(rho=decay, eps); adagrad -> scale_by_rss(initial accumulator 0.1
       as optax.adagrad, eps).
  4. Decoupled weight decay, only on parameters selected by reg.decay_mask, per
     reg.weight_decay_mode:
       - 'lr_scaled' (AdamW / SGDW convention): u += weight_decay * w here, before the
         learning rate, so the applied change is -lr * schedule(t) * weight_decay * w;
       - 'independent' (fully decoupled): applied after step 5 as u -= weight_decay * w,
         so each step multiplies the weight by (1 - weight_decay) whatever the learning
         rate or schedule (also during warmup, when the lr is 0): use small values.
  5. Learning rate: optax.scale_by_schedule(shape) with the schedule shape normalized to
     peak 1 (left out for 'constant'), then optax.scale(-learning_rate).
     ('independent' weight decay of step 4 comes after this.)

  The three weight-decay conventions stay distinct and named: coupled L2 (reg.l2),
  decoupled scaled by the lr (reg.weight_decay, mode lr_scaled; = AdamW with Adam) and
  fully decoupled (mode independent). With plain sgd, coupled L2 and lr_scaled decay give
  identical updates; with any preconditioner they differ. optax.adamw is never used: it
  decays by default (weight_decay=1e-4), so a sweep's zero point would not mean zero.

Frozen parameters (`build_optimizer(..., frozen=REGEX)`; model.freeze_embeddings freezes
'^embed/embedding$'): their gradient is zeroed before step 1 (so clip_norm's global norm
and AGC see only the trained parameters), and steps 1-5 run under optax.masked on the
other parameters only, so a frozen parameter has no optimizer state, no L1/L2, no weight
decay of either mode: its update is exactly zero.

Sweepable strengths. The chain is built by `regularized_chain` wrapped in
`optax.inject_hyperparams`, so `opt_state.hyperparams` is a dict holding exactly
HYPERPARAMS = (learning_rate, l1, l2, weight_decay, clip_norm, clip_value, agc) as float
arrays (dtype of the params), and the transforms read their strengths from there. Changing
`opt_state.hyperparams['weight_decay']` (for instance per model under jax.vmap) changes the
decay without recompiling. But which components exist is Python-static, decided by the
config: a component is in the chain iff its config value is > 0. A hyperparameter whose
component is absent is carried and ignored. So a sweep must set every swept strength > 0
in the config; then a hyperparameter of 0 means exactly "off" for l1, l2 and weight_decay,
while for the clipping thresholds "off" is +inf (a threshold of 0 clips everything to 0).

Parameter paths and masks. Paths are the keys of the params tree passed in, joined with
'/': pass the `params` collection itself (e.g. `state.params`, not `{'params': ...}`),
so paths look like 'Dense_0/kernel', 'head/bias'. reg.decay_mask (see `decay_mask`):
  'ndim>1' (default)  decay parameters with ndim > 1: kernels and embedding tables, not
                      biases nor LayerNorm/BatchNorm scales (ARCHITECTURE.md: on FlaxBert
                      this equals HF's name-based bias/LayerNorm rule);
  'all' | 'none';
  'REGEX=true|false,REGEX=true|false,...'  rules tried in order with re.search against
                      each path; the first match wins; every parameter must be matched by
                      some rule (ValueError naming it otherwise). Regexes cannot contain
                      ','; end with '.*=false' (or '=false') for a catch-all.
Masks are callables evaluated on the tree the transform sees, so under jax.vmap over K
stacked models 'ndim>1' still looks at each model's own shapes (a mask precomputed from a
stacked tree would decay biases of shape (K, n)). `build_optimizer` still checks the mask
and the AGC exclusion eagerly on the params it is given.

AGC units follow optax.unitwise_norm: a 1-D (or scalar, or squeezable-to-1-D) parameter is
one unit; for a 2-D or 3-D parameter the norm is taken over axis 0, one unit per index of
the other axes (for a Dense kernel (in, out): one unit per output unit; for an embedding
table (vocab, dim): one unit per feature column, not per token row as in timm); 4-D HWIO
conv kernels: norm over (0, 1, 2); 5-D: over (0, 1, 2, 3); more dims raise. Tune lambda
with the batch size (NFNets used 0.01 at batch 4096; the best lambda grows as batches shrink).
Hyperparameters take the params' highest float dtype (optax.inject_hyperparams default).

Schedules (`schedule_shape`, normalized to peak 1; optax's own schedules; t = number of
updates applied so far, T = total_steps, W = warmup_steps (or round(warmup_fraction * T),
at least 1), m = min_lr_ratio,
p = clip((t - W) / (T - W), 0, 1)):
  constant       1                                        optax.constant_schedule
  cosine         m + (1 - m) * (1 + cos(pi * t / T)) / 2, then m (no warmup allowed)
                                                          optax.cosine_decay_schedule
  warmup_linear  t / W for t < W, then 1 - (1 - m) * p    optax.join_schedules of two
                                                          optax.linear_schedule
  warmup_cosine  t / W for t < W, then m + (1 - m) * (1 + cos(pi * p)) / 2
                                                          optax.warmup_cosine_decay_schedule
  step           step_factor ** floor(t / (step_epochs * steps_per_epoch))
                                                          optax.exponential_decay, staircase
Warmup starts from 0, so the first update of a warmup schedule is zero (optax convention).
(Until issue 15 these shapes were written out here; optax's arithmetic differs from
them by ~1e-7 for cosine and warmup_linear, so a run resumed across that change does not
match an uninterrupted one bit for bit.)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg.config import parse_decay_mask
from jaxreg.models.freezing import frozen_predicate

# The strengths carried in opt_state.hyperparams (always all of them; see the docstring).
HYPERPARAMS = ("learning_rate", "l1", "l2", "weight_decay", "clip_norm", "clip_value",
               "agc")
# Where each hyperparameter comes from in the config.
_HP_SECTION = dict(learning_rate="optim", l1="reg", l2="reg", weight_decay="reg",
                   clip_norm="reg", clip_value="reg", agc="reg")


# ----------------------------------------------------------------------------- paths


def _key_str(key: Any) -> str:
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return str(key.name)
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def _path_str(path: tuple[Any, ...]) -> str:
  return "/".join(_key_str(k) for k in path)


def param_paths(params: Any) -> list[str]:
  """The '/'-joined key path of every leaf of `params`, in tree-flatten order."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  return [_path_str(path) for path, _ in leaves]


def _ndim(leaf: Any) -> int:
  shape = getattr(leaf, "shape", None)
  return len(shape) if shape is not None else int(np.ndim(leaf))


# ----------------------------------------------------------------------------- masks


def decay_mask(params: Any, spec: str = "ndim>1") -> Any:
  """Pytree of bools like `params`: True where L1/L2/weight decay apply.

  spec: 'ndim>1' (decay leaves with ndim > 1), 'all', 'none', or comma-separated rules
  'REGEX=true|false' matched with re.search against each leaf's '/'-joined path (keys of
  the tree passed in); the first matching rule wins, and a leaf matched by no rule raises
  ValueError naming it. An invalid spec raises ValueError naming it and the allowed forms.
  """
  parsed = parse_decay_mask(spec)
  if parsed == "ndim>1":
    return jax.tree.map(lambda x: _ndim(x) > 1, params)
  if parsed in ("all", "none"):
    return jax.tree.map(lambda _: parsed == "all", params)

  uncovered = []

  def rule(path, _):
    p = _path_str(path)
    for regex, value in parsed:
      if regex.search(p):
        return value
    uncovered.append(p)
    return False

  mask = jax.tree_util.tree_map_with_path(rule, params)
  if uncovered:
    shown = ", ".join(uncovered[:5]) + (f" (+{len(uncovered) - 5} more)"
                                        if len(uncovered) > 5 else "")
    raise ValueError(f"reg.decay_mask={spec!r} matches no rule for parameter(s) {shown}; "
                     "every parameter must be covered (add e.g. ',.*=false')")
  return mask


def _agc_mask(params: Any, exclude: str) -> Any:
  """True where AGC clips: parameters whose path does NOT match `exclude`."""
  regex = re.compile(exclude)
  return jax.tree_util.tree_map_with_path(
      lambda path, _: regex.search(_path_str(path)) is None, params)


# ----------------------------------------------------------------------------- L1


def add_l1_subgradient(l1: Any) -> optax.GradientTransformation:
  """Adds l1 * sign(w) to the updates: a subgradient of l1 * ||w||_1 (sign(0) = 0: no
  L1 term at an exact zero; the loss gradient still moves such a weight).

  optax has no L1 transform. Needs params; keeps each update's dtype.
  """

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("add_l1_subgradient needs params: call update(g, state, params)")
    updates = jax.tree.map(
        lambda g, w: (g + l1 * jnp.sign(w)).astype(g.dtype), updates, params)
    return updates, state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


# ----------------------------------------------------------------------------- schedules


def warmup_steps(optim_cfg: Any, total_steps: int) -> int:
  """The warmup length in updates: `optim.warmup_steps`, or `optim.warmup_fraction` of
  the run's `total_steps` (rounded, at least 1; the schema forbids setting both)."""
  fraction = float(optim_cfg.get("warmup_fraction", 0.0) or 0.0)
  if fraction:
    return max(1, int(round(fraction * total_steps)))
  return int(optim_cfg.warmup_steps)


def schedule_shape(optim_cfg: Any, steps_per_epoch: int,
                   total_steps: int) -> Callable[[Any], jax.Array]:
  """The learning-rate schedule normalized to peak 1 (formulas in the module docstring).

  The learning rate applied at update t (t = 0 for the first update) is
  optim.learning_rate * schedule_shape(...)(t). The keys are validated by the config
  schema; what needs the run's length (a warmup shorter than the run) is checked here.
  """
  name = optim_cfg.schedule
  warmup, m = warmup_steps(optim_cfg, total_steps), float(optim_cfg.min_lr_ratio)
  if name.startswith("warmup_") and warmup >= total_steps:
    raise ValueError(f"optim.warmup_steps={warmup} must be < total_steps={total_steps} "
                     f"for optim.schedule={name!r}")

  every = int(optim_cfg.step_epochs) * steps_per_epoch
  shapes = {  # optim.schedule -> its optax schedule (names: jaxreg.config.SCHEDULES)
      "constant": lambda: optax.constant_schedule(1.0),
      "cosine": lambda: optax.cosine_decay_schedule(1.0, total_steps, alpha=m),
      "warmup_linear": lambda: optax.join_schedules(  # warmup 0: starts at the decay
          [optax.linear_schedule(0.0, 1.0, warmup),
           optax.linear_schedule(1.0, m, total_steps - warmup)], [warmup]),
      "warmup_cosine": lambda: optax.warmup_cosine_decay_schedule(
          0.0, 1.0, warmup, total_steps, end_value=m),
      "step": lambda: optax.exponential_decay(
          1.0, every, float(optim_cfg.step_factor), staircase=True),
  }
  return shapes[name]()


# ----------------------------------------------------------------------------- the chain


@dataclasses.dataclass(frozen=True, eq=False)
class ChainStructure:
  """The Python-static part of the chain: what is in it, and the static settings."""
  optimizer: str
  preconditioner_kwargs: tuple[tuple[str, float], ...]
  components: frozenset[str]        # subset of HYPERPARAMS minus learning_rate
  weight_decay_mode: str
  decay_mask: Callable[[Any], Any]
  agc_mask: Optional[Callable[[Any], Any]]  # None: AGC on every parameter
  agc_eps: float
  schedule: Optional[Callable[[Any], jax.Array]]  # None: constant
  # True where a parameter is frozen (exactly zero update); None: nothing is frozen.
  frozen_mask: Optional[Callable[[Any], Any]] = None


# optim.name -> (the optim.* keys it reads, its transformation at learning rate 1); the
# names are jaxreg.config.OPTIMIZERS.
_PRECONDITIONERS = {
    "sgd": ((), lambda kw: optax.identity()),
    "momentum": (("momentum",), lambda kw: optax.trace(decay=kw["momentum"])),
    "nesterov": (("momentum",),
                 lambda kw: optax.trace(decay=kw["momentum"], nesterov=True)),
    "adam": (("b1", "b2", "eps"), lambda kw: optax.scale_by_adam(**kw)),
    "rmsprop": (("decay", "eps"), lambda kw: optax.scale_by_rms(**kw)),
    "adadelta": (("decay", "eps"),
                 lambda kw: optax.scale_by_adadelta(rho=kw["decay"], eps=kw["eps"])),
    "adagrad": (("eps",), lambda kw: optax.scale_by_rss(initial_accumulator_value=0.1,
                                                          eps=kw["eps"])),
}


def regularized_chain(learning_rate, l1, l2, weight_decay, clip_norm, clip_value, agc, *,
                      structure: ChainStructure) -> optax.GradientTransformation:
  """The chain of the module docstring; strengths are (injectable) arguments.

  Called by optax.inject_hyperparams with the values in opt_state.hyperparams; the
  `structure` decides which components exist.
  """
  s = structure
  on = s.components
  parts = []
  # 1. Clipping of the raw gradient.
  if "clip_value" in on:
    parts.append(optax.clip(clip_value))
  if "clip_norm" in on:
    parts.append(optax.clip_by_global_norm(clip_norm))
  if "agc" in on:
    agc_tx = optax.adaptive_grad_clip(agc, eps=s.agc_eps)
    parts.append(agc_tx if s.agc_mask is None else optax.masked(agc_tx, s.agc_mask))
  # 2. Coupled penalty gradients.
  if "l1" in on:
    parts.append(optax.masked(add_l1_subgradient(l1), s.decay_mask))
  if "l2" in on:
    parts.append(optax.masked(optax.add_decayed_weights(l2), s.decay_mask))
  # 3. Preconditioner at learning rate 1.
  parts.append(_PRECONDITIONERS[s.optimizer][1](dict(s.preconditioner_kwargs)))
  # 4. Decoupled weight decay scaled by the learning rate (AdamW convention).
  if "weight_decay" in on and s.weight_decay_mode == "lr_scaled":
    parts.append(optax.masked(optax.add_decayed_weights(weight_decay), s.decay_mask))
  # 5. Learning rate: schedule shape (peak 1), then -learning_rate.
  if s.schedule is not None:
    parts.append(optax.scale_by_schedule(s.schedule))
  parts.append(optax.scale(-learning_rate))
  # 4'. Fully decoupled weight decay, independent of the learning rate and schedule.
  if "weight_decay" in on and s.weight_decay_mode == "independent":
    parts.append(optax.masked(optax.add_decayed_weights(-weight_decay), s.decay_mask))
  if s.frozen_mask is None:
    return optax.chain(*parts)
  # Frozen parameters: their gradient is zeroed first (so it counts in no clipping norm),
  # and the whole chain above runs on the other parameters only (no optimizer state,
  # no L1/L2, no weight decay for the frozen ones): their update is exactly zero.
  trainable = functools.partial(_negate_mask, s.frozen_mask)
  return optax.chain(optax.masked(optax.set_to_zero(), s.frozen_mask),
                     optax.masked(optax.chain(*parts), trainable))


def _negate_mask(mask_fn: Callable[[Any], Any], tree: Any) -> Any:
  return jax.tree.map(lambda m: not m, mask_fn(tree))


def _frozen_mask(params: Any, pattern: str, trainable: Optional[str] = None) -> Any:
  """True where the parameter is frozen (jaxreg.models.freezing.frozen_predicate)."""
  is_frozen = frozen_predicate(pattern, trainable)
  return jax.tree_util.tree_map_with_path(
      lambda path, _: is_frozen(_path_str(path)), params)


def build_optimizer(optim_cfg: Any, reg_cfg: Any, params: Any, steps_per_epoch: int,
                    total_steps: int, frozen: Optional[str] = None,
                    trainable: Optional[str] = None) -> optax.GradientTransformation:
  """config.optim + config.reg -> optax transformation (chain order: module docstring).

  `params` is the params collection (paths like 'Dense_0/kernel'); it is only used to
  check reg.decay_mask and reg.agc_exclude eagerly. The result is an
  optax.inject_hyperparams transformation: opt_state.hyperparams holds HYPERPARAMS.
  `frozen`: a regex (re.search on the paths) of parameters that get exactly zero update
  (model.freeze_embeddings: '^embed/embedding$'); their gradient is zeroed before the
  chain and the chain runs on the other parameters only (see `regularized_chain`).
  `trainable` (train.trainable): a regex of the parameters that train; the others are
  frozen the same way (both given: frozen unless trainable and not frozen).
  The config is validated first (jaxreg.config.validate); what needs the parameters or
  the run's length is checked here, raising a one-line ValueError.
  """
  o, r = optim_cfg, reg_cfg
  values = {hp: float((o if _HP_SECTION[hp] == "optim" else r)[hp]) for hp in HYPERPARAMS}
  name = o.name
  kw = {k: float(o[k]) for k in _PRECONDITIONERS[name][0]}
  schedule = schedule_shape(o, steps_per_epoch, total_steps)
  decay_mask(params, r.decay_mask)  # every parameter must be covered
  mask_fn = functools.partial(decay_mask, spec=r.decay_mask)
  agc_on = values["agc"] > 0
  agc_mask_fn = _check_agc_exclude(params, r.agc_exclude) if agc_on else None

  structure = ChainStructure(
      optimizer=name,
      preconditioner_kwargs=tuple(sorted(kw.items())),
      components=frozenset(hp for hp in HYPERPARAMS
                           if hp != "learning_rate" and values[hp] > 0),
      weight_decay_mode=r.weight_decay_mode,
      decay_mask=mask_fn,
      agc_mask=agc_mask_fn,
      agc_eps=float(r.agc_eps) if agc_on else 0.0,
      schedule=None if o.schedule == "constant" else schedule,
      frozen_mask=_check_frozen(params, frozen, trainable),
  )
  factory = optax.inject_hyperparams(regularized_chain, static_args=("structure",))
  return factory(structure=structure, **values)


def _check_agc_exclude(params: Any, exclude: str) -> Optional[Callable[[Any], Any]]:
  """The mask of the parameters AGC clips (None: all); `exclude` must select some but
  not all of them ('' excludes nothing)."""
  if not exclude:
    return None
  clipped = jax.tree.leaves(_agc_mask(params, exclude))
  if all(clipped):
    raise ValueError(
        f"reg.agc_exclude={exclude!r} matches no parameter (paths look like "
        f"{param_paths(params)[:3]}); name the classifier head's path, or set '' to "
        "clip every parameter")
  if not any(clipped):
    raise ValueError(f"reg.agc_exclude={exclude!r} matches every parameter, so AGC "
                     "would clip nothing")
  return functools.partial(_agc_mask, exclude=exclude)


def _check_frozen(params: Any, frozen: Optional[str], trainable: Optional[str] = None
                  ) -> Optional[Callable[[Any], Any]]:
  if not frozen and not trainable:
    return None
  for key, pattern in (("frozen", frozen), ("train.trainable", trainable)):
    try:
      re.compile(pattern or "")
    except re.error as e:
      raise ValueError(f"{key}={pattern!r} is not a valid regex ({e})") from None
  paths = param_paths(params)
  if trainable and not any(re.search(trainable, p) for p in paths):
    raise ValueError(f"train.trainable={trainable!r} matches no parameter; paths look "
                     f"like: {', '.join(_path_sample(paths))}")
  if frozen and not any(re.search(frozen, p) for p in paths):
    raise ValueError(f"frozen={frozen!r} matches no parameter (paths look like "
                     f"{paths[:3]})")
  if all(jax.tree.leaves(_frozen_mask(params, frozen, trainable))):
    raise ValueError(f"frozen={frozen!r} with train.trainable={trainable!r} freezes "
                     "every parameter: nothing would train")
  return functools.partial(_frozen_mask, pattern=frozen, trainable=trainable)


def _path_sample(paths: list[str], n: int = 6) -> list[str]:
  """A few paths to show in an error: the first ones and the last (the head)."""
  if len(paths) <= n:
    return paths
  return paths[:n - 2] + ["...", paths[-1]]


# ------------------------------------------------------- checks of EarlyStopping's fields


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(f"{key}={value!r} is not one of: {', '.join(allowed)}")
  return value


def _check_number(key: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise ValueError(f"{key}={value!r} must be a number")
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f"{key}={value!r} must be a finite number")
  return value


def _check_nonneg(key: str, value: Any) -> float:
  v = _check_number(key, value)
  if v < 0:
    raise ValueError(f"{key}={value!r} must be >= 0 (0 turns it off)")
  return v


def _check_int(key: str, value: Any, minimum: int) -> int:
  """An int (or an integral float such as 500.0, as command-line overrides give) >= min."""
  ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.number))
        and math.isfinite(value) and float(value).is_integer() and value >= minimum)
  if not ok:
    raise ValueError(f"{key}={value!r} must be an integer >= {minimum}")
  return int(value)
