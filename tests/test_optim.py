"""Tests for jaxreg.optim: the regularizers must be exactly right."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import FrozenDict

from jaxreg import config as config_lib, optim

BASE = config_lib.get_base_config()


def cfgs(optim_over=None, reg_over=None):
  """The base config's optim and reg sections, with plain SGD at 1e-3 unless told."""
  o, r = BASE.optim.copy_and_resolve_references(), BASE.reg.copy_and_resolve_references()
  o.update({"name": "sgd", "learning_rate": 1e-3, **(optim_over or {})})
  r.update(reg_over or {})
  return o, r


def make_params(seed=0):
  """Body: a 2-D kernel, a 4-D conv kernel, biases, a LayerNorm scale; a 'head'."""
  rng = np.random.default_rng(seed)

  def w(*shape):  # magnitudes in [0.5, 1.5], random signs
    mag = rng.uniform(0.5, 1.5, size=shape)
    return jnp.asarray(mag * rng.choice([-1.0, 1.0], size=shape), jnp.float32)

  return {
      "conv": {"kernel": w(3, 3, 2, 4), "bias": w(4)},
      "dense": {"kernel": w(4, 5), "bias": w(5)},
      "norm": {"scale": w(5)},
      "head": {"kernel": w(5, 3), "bias": w(3)},
  }


def build(params, steps_per_epoch=10, total_steps=100, **over):
  o_over = {k: v for k, v in over.items() if k in BASE.optim}
  r_over = {k: v for k, v in over.items() if k in BASE.reg}
  assert set(over) == set(o_over) | set(r_over), over
  o, r = cfgs(o_over, r_over)
  return optim.build_optimizer(o, r, params, steps_per_epoch, total_steps)


def run(tx, params, grads, steps, state=None, jit=False):
  """Applies `steps` updates with fixed grads; returns (list of params after each, state).

  Eager by default: op-by-op dispatch reuses compiled ops across tests and is faster here
  than compiling every chain; test_every_component_under_jit covers jit.
  """
  state = tx.init(params) if state is None else state
  update = jax.jit(tx.update) if jit else tx.update
  history = []
  for _ in range(steps):
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(params)
  return history, state


def zeros_like(tree):
  return jax.tree.map(jnp.zeros_like, tree)


def flat(tree):
  return dict(zip(optim.param_paths(tree), jax.tree.leaves(tree)))


MASKED = ("conv/kernel", "dense/kernel", "head/kernel")
UNMASKED = ("conv/bias", "dense/bias", "norm/scale", "head/bias")

# Per-optimizer settings for the zero-gradient decay tests. Adadelta is used as designed
# (lr 1, eps 1e-6): its first steps are tiny (~sqrt(eps)), so only strict shrinkage is
# asserted, never a magnitude.
OPT_SETTINGS = {
    "sgd": dict(learning_rate=0.05),
    "momentum": dict(learning_rate=0.05, momentum=0.9),
    "nesterov": dict(learning_rate=0.05, momentum=0.9),
    "adam": dict(learning_rate=0.01),
    "rmsprop": dict(learning_rate=0.01),
    "adadelta": dict(learning_rate=1.0, eps=1e-6),
    "adagrad": dict(learning_rate=0.05),
}
CONVENTIONS = {
    "coupled_l2": dict(l2=0.1),
    "wd_lr_scaled": dict(weight_decay=0.1, weight_decay_mode="lr_scaled"),
    "wd_independent": dict(weight_decay=0.01, weight_decay_mode="independent"),
}


# ----------------------------------------------------------------------------- paths/masks


def test_param_paths_dict_and_frozendict():
  params = make_params()
  expected = ["conv/bias", "conv/kernel", "dense/bias", "dense/kernel", "head/bias",
              "head/kernel", "norm/scale"]
  assert optim.param_paths(params) == expected
  assert optim.param_paths(FrozenDict(params)) == expected
  assert optim.param_paths({"layers": [{"w": 1.0}, {"w": 2.0}]}) == ["layers/0/w",
                                                                    "layers/1/w"]


def test_decay_mask_default_all_none():
  params = make_params()
  m = flat(optim.decay_mask(params, "ndim>1"))
  assert {k for k, v in m.items() if v} == set(MASKED)
  assert flat(optim.decay_mask(params)) == m
  assert all(flat(optim.decay_mask(params, "all")).values())
  assert not any(flat(optim.decay_mask(params, "none")).values())
  # Same structure as params.
  assert (jax.tree.structure(optim.decay_mask(params))
          == jax.tree.structure(params))


def test_decay_mask_rules_first_match_wins():
  params = make_params()
  m = flat(optim.decay_mask(params, r"^head/=false, kernel$=true, .*=false"))
  assert {k for k, v in m.items() if v} == {"conv/kernel", "dense/kernel"}
  # Order matters: the catch-all first turns everything off.
  m = flat(optim.decay_mask(params, r".*=false,kernel$=true"))
  assert not any(m.values())
  m = flat(optim.decay_mask(params, r"bias$=TRUE,=false"))
  assert {k for k, v in m.items() if v} == {"conv/bias", "dense/bias", "head/bias"}


def test_decay_mask_every_parameter_covered():
  with pytest.raises(ValueError, match="norm/scale"):
    optim.decay_mask(make_params(), "kernel$=true,bias$=false")


@pytest.mark.parametrize("spec", ["ndim>2", "some", "", "kernel=maybe", "kernel", "(=true",
                                  None])
def test_decay_mask_invalid_spec(spec):
  with pytest.raises(ValueError, match=r"reg\.decay_mask=.*ndim>1"):
    optim.decay_mask(make_params(), spec)


def test_build_optimizer_checks_decay_mask_eagerly():
  with pytest.raises(ValueError, match="norm/scale"):
    build(make_params(), decay_mask="kernel$=true,bias$=false")


# ----------------------------------------------------------------------------- decay conventions


@pytest.mark.parametrize("convention", list(CONVENTIONS))
@pytest.mark.parametrize("name", config_lib.OPTIMIZERS)
def test_decay_shrinks_masked_weights_only(name, convention):
  params = make_params()
  tx = build(params, name=name, **OPT_SETTINGS[name], **CONVENTIONS[convention])
  history, _ = run(tx, params, zeros_like(params), steps=4)
  before = flat(params)
  for after in map(flat, history):
    for k in MASKED:
      b, a = np.asarray(before[k]), np.asarray(after[k])
      assert np.all(np.abs(a) < np.abs(b)), (k, b, a)
      assert np.all(np.sign(a) == np.sign(b)), k  # toward zero, not through it
    for k in UNMASKED:
      np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    before = after


@pytest.mark.parametrize("name", config_lib.OPTIMIZERS)
def test_zero_strength_means_no_change(name):
  params = make_params()
  grads = zeros_like(params)
  # Every strength 0 in the config: nothing is added, there is no hidden decay.
  tx = build(params, name=name, **OPT_SETTINGS[name])
  history, _ = run(tx, params, grads, steps=3)
  for k, v in flat(history[-1]).items():
    np.testing.assert_array_equal(v, flat(params)[k], err_msg=k)
  # Components present (config > 0) but their injected strengths set to 0 (a sweep's
  # zero point): also no change, in both decoupled modes.
  for mode in config_lib.DECAY_MODES:
    tx = build(params, name=name, **OPT_SETTINGS[name], l1=0.1, l2=0.1,
               weight_decay=0.01, weight_decay_mode=mode)
    state = tx.init(params)
    for hp in ("l1", "l2", "weight_decay"):
      state.hyperparams[hp] = jnp.zeros_like(state.hyperparams[hp])
    history, _ = run(tx, params, grads, steps=3, state=state)
    for k, v in flat(history[-1]).items():
      np.testing.assert_array_equal(v, flat(params)[k], err_msg=(mode, k))


@pytest.mark.parametrize("name", config_lib.OPTIMIZERS)
def test_every_component_under_jit(name):
  """All components at once, jitted, agree with eager execution and stay finite."""
  params = make_params()
  grads = jax.tree.map(lambda x: 2.0 * jnp.sin(3 * x), params)
  tx = build(params, name=name, **OPT_SETTINGS[name], schedule="warmup_cosine",
             warmup_steps=2, l1=1e-3, l2=1e-2, weight_decay=1e-2, clip_value=1.0,
             clip_norm=2.0, agc=0.05)
  assert len(tx.init(params).inner_state) == 9  # every component is in the chain
  eager, _ = run(tx, params, grads, steps=3)
  jitted, _ = run(tx, params, grads, steps=3, jit=True)
  for k, v in flat(jitted[-1]).items():
    assert np.all(np.isfinite(v)), k
    np.testing.assert_allclose(v, flat(eager[-1])[k], rtol=1e-5, atol=1e-6, err_msg=k)
  assert any(not np.allclose(v, flat(params)[k]) for k, v in flat(jitted[-1]).items())


def _reference(name, s):
  """The stock optax optimizer each name stands for (no regularization)."""
  lr = s["learning_rate"]
  return {
      "sgd": lambda: optax.sgd(lr),
      "momentum": lambda: optax.sgd(lr, momentum=s.get("momentum", 0.9)),
      "nesterov": lambda: optax.sgd(lr, momentum=s.get("momentum", 0.9), nesterov=True),
      "adam": lambda: optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8),
      "rmsprop": lambda: optax.rmsprop(lr, decay=0.9, eps=1e-8),
      "adadelta": lambda: optax.adadelta(lr, rho=0.9, eps=s["eps"]),
      "adagrad": lambda: optax.adagrad(lr, initial_accumulator_value=0.1, eps=1e-8),
  }[name]()


@pytest.mark.parametrize("name", config_lib.OPTIMIZERS)
def test_unregularized_equals_stock_optax(name):
  params = make_params()
  grads = jax.tree.map(lambda x: jnp.sin(3 * x), params)
  ours, _ = run(build(params, name=name, **OPT_SETTINGS[name]), params, grads, steps=3)
  ref, _ = run(_reference(name, OPT_SETTINGS[name]), params, grads, steps=3)
  for k, v in flat(ours[-1]).items():
    np.testing.assert_allclose(v, flat(ref[-1])[k], rtol=1e-6, atol=1e-7, err_msg=k)


def _one_weight_step(**over):
  params = {"w": jnp.ones((1, 1), jnp.float32)}
  tx = build(params, name="sgd", learning_rate=0.1, **over)
  history, _ = run(tx, params, zeros_like(params), steps=1)
  return float(history[0]["w"][0, 0])


def test_weight_decay_sign():
  # lr_scaled: w - lr * wd * w = 1 - 0.1 * 0.1 = 0.99 (flax sst2's order gives 1.1).
  np.testing.assert_allclose(_one_weight_step(weight_decay=0.1), 0.99, rtol=1e-6)
  # independent: w - wd * w = 0.9 whatever the lr.
  np.testing.assert_allclose(
      _one_weight_step(weight_decay=0.1, weight_decay_mode="independent"), 0.9, rtol=1e-6)
  np.testing.assert_allclose(_one_weight_step(l2=0.1), 0.99, rtol=1e-6)


def test_independent_decay_ignores_learning_rate_and_schedule():
  params = {"w": jnp.ones((2, 2), jnp.float32)}
  for lr in (1e-4, 1.0):
    tx = build(params, name="sgd", learning_rate=lr, schedule="warmup_cosine",
               warmup_steps=5, weight_decay=0.1, weight_decay_mode="independent")
    history, _ = run(tx, params, zeros_like(params), steps=3)
    np.testing.assert_allclose(history[-1]["w"], 0.9 ** 3, rtol=1e-6)
  # lr_scaled follows the schedule: the warmup's first update has lr 0, so no decay.
  tx = build(params, name="sgd", learning_rate=0.1, schedule="warmup_cosine",
             warmup_steps=5, weight_decay=0.1)
  history, _ = run(tx, params, zeros_like(params), steps=2)
  np.testing.assert_array_equal(history[0]["w"], params["w"])
  np.testing.assert_allclose(history[1]["w"], 1 - 0.1 * 0.2 * 0.1, rtol=1e-6)


@pytest.mark.parametrize("l2", [1e-4, 1.0, 100.0])
def test_coupled_l2_goes_through_adam_and_decoupled_does_not(l2):
  params = {"w": jnp.asarray([[0.5, -2.0], [1.0, -0.25]], jnp.float32)}
  lr = 1e-3
  grads = zeros_like(params)
  tx = build(params, name="adam", learning_rate=lr, l2=l2)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam normalizes the l2 * w gradient: step-1 update ~ -lr * sign(w) for any l2.
  np.testing.assert_allclose(updates["w"], -lr * np.sign(params["w"]), rtol=1e-3)
  tx = build(params, name="adam", learning_rate=lr, weight_decay=l2)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -lr * l2 * params["w"], rtol=1e-6)


def test_coupled_l2_equals_lr_scaled_decay_for_sgd_only():
  params = make_params()
  grads = jax.tree.map(lambda x: 0.3 * jnp.cos(3 * x), params)
  end = {}
  for name in ("sgd", "momentum"):
    for conv in ("l2", "weight_decay"):
      tx = build(params, name=name, learning_rate=0.05, **{conv: 0.2})
      history, _ = run(tx, params, grads, steps=5)
      end[name, conv] = flat(history[-1])
  for k in end["sgd", "l2"]:
    np.testing.assert_allclose(end["sgd", "l2"][k], end["sgd", "weight_decay"][k],
                               rtol=1e-6, atol=1e-7)
  # With momentum the coupled term is accumulated in the trace, the decoupled one is not.
  diff = max(float(jnp.max(jnp.abs(end["momentum", "l2"][k] -
                                   end["momentum", "weight_decay"][k]))) for k in MASKED)
  assert diff > 1e-3


def test_l1_moves_toward_zero_by_lr_times_l1():
  w = jnp.asarray([[0.5, -0.3], [0.0, 2.0]], jnp.float32)
  params = {"layer": {"kernel": w, "bias": jnp.asarray([0.7, -0.7], jnp.float32)}}
  lr, l1 = 0.1, 0.01
  tx = build(params, name="sgd", learning_rate=lr, l1=l1)
  history, _ = run(tx, params, zeros_like(params), steps=3)
  for t, p in enumerate(history, start=1):
    expected = np.asarray(w) - t * lr * l1 * np.sign(np.asarray(w))
    np.testing.assert_allclose(p["layer"]["kernel"], expected, rtol=1e-6, atol=1e-7)
    # sign(0) = 0: with no loss gradient (only here) a zero weight stays zero
    assert float(p["layer"]["kernel"][1, 0]) == 0.0
    np.testing.assert_array_equal(p["layer"]["bias"], params["layer"]["bias"])


def test_l1_adds_nothing_at_an_exact_zero_but_the_loss_gradient_still_moves_it():
  """The documented behaviour: L1 does not pin a zero weight at zero."""
  w = jnp.asarray([[0.0, 0.5]], jnp.float32)
  params = {"layer": {"kernel": w}}
  grads = {"layer": {"kernel": jnp.asarray([[0.2, 0.2]], jnp.float32)}}
  lr, l1 = 0.1, 0.01
  (with_l1,), _ = run(build(params, name="sgd", learning_rate=lr, l1=l1), params, grads, 1)
  (plain,), _ = run(build(params, name="sgd", learning_rate=lr), params, grads, 1)
  moved = float(with_l1["layer"]["kernel"][0, 0])
  assert moved == pytest.approx(-lr * 0.2) and moved != 0.0
  assert moved == float(plain["layer"]["kernel"][0, 0])  # no L1 term at exactly 0
  assert float(with_l1["layer"]["kernel"][0, 1]) == pytest.approx(0.5 - lr * (0.2 + l1))


def test_default_mask_leaves_biases_alone_with_real_gradients():
  params = make_params()
  grads = jax.tree.map(lambda x: 0.1 * jnp.sin(x), params)
  plain = build(params, name="adam", learning_rate=0.01)
  decayed = build(params, name="adam", learning_rate=0.01, l1=0.05, l2=0.1,
                  weight_decay=0.1)
  a = flat(run(plain, params, grads, steps=3)[0][-1])
  b = flat(run(decayed, params, grads, steps=3)[0][-1])
  for k in UNMASKED:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  for k in MASKED:
    assert not np.allclose(a[k], b[k]), k


# ----------------------------------------------------------------------------- clipping


def _unitwise_norm(x):
  """Independent re-statement of optax.unitwise_norm's convention (the test's oracle)."""
  x = np.asarray(x, np.float64)
  if x.ndim <= 1:
    axes = None
  elif x.ndim in (2, 3):
    axes = (0,)
  elif x.ndim == 4:
    axes = (0, 1, 2)
  else:
    raise AssertionError(x.shape)
  return np.sqrt(np.sum(x * x, axis=axes, keepdims=True))


def _sgd_lr1_transform(params, **over):
  """Returns g -> transformed g (sgd, lr 1: the update is minus the clipped gradient)."""
  tx = build(params, name="sgd", learning_rate=1.0, **over)
  state = tx.init(params)
  update = jax.jit(tx.update)
  return lambda g: jax.tree.map(jnp.negative, update(g, state, params)[0])


def test_agc_bounds_every_unit_and_skips_the_head():
  params = make_params()
  params["dense"]["bias"] = jnp.zeros_like(params["dense"]["bias"])  # eps engages
  lam, eps = 0.05, 1e-3
  rng = np.random.default_rng(1)
  grads = jax.tree.map(lambda x: jnp.asarray(1e3 * rng.standard_normal(x.shape),
                                             jnp.float32), params)
  out = _sgd_lr1_transform(params, agc=lam, agc_eps=eps)(grads)
  fp, fg, fo = flat(params), flat(grads), flat(out)
  for k in fp:
    if k.startswith("head/"):
      np.testing.assert_array_equal(fo[k], fg[k], err_msg=k)  # huge, untouched
      continue
    ratio = _unitwise_norm(fo[k]) / np.maximum(_unitwise_norm(fp[k]), eps)
    assert np.all(ratio <= lam * (1 + 1e-5)), (k, ratio.max())
    assert np.all(ratio >= lam * (1 - 1e-5)), k  # huge grads are clipped to the bound
    # Clipping rescales each unit as a whole, keeping its direction.
    np.testing.assert_allclose(
        fo[k], np.asarray(fg[k]) * _unitwise_norm(fo[k]) / _unitwise_norm(fg[k]),
        rtol=1e-4, err_msg=k)
  # Small gradients pass unchanged.
  small = jax.tree.map(lambda x: 1e-4 * x, params)
  out = _sgd_lr1_transform(params, agc=lam, agc_eps=eps)(small)
  for k, v in flat(out).items():
    np.testing.assert_allclose(v, flat(small)[k], rtol=1e-6, err_msg=k)


def test_agc_exclude_must_match_something():
  params = make_params()
  with pytest.raises(ValueError, match="agc_exclude"):
    build(params, agc=0.01, agc_exclude="^classifier/")
  with pytest.raises(ValueError, match="agc_exclude"):
    build(params, agc=0.01, agc_exclude=".")
  # '' clips every parameter, the head included.
  out = _sgd_lr1_transform(params, agc=0.01, agc_exclude="")(
      jax.tree.map(lambda x: 1e3 * x, params))
  assert np.all(np.abs(out["head"]["kernel"]) < 1e3 * np.abs(params["head"]["kernel"]))
  # AGC off: no check (the default regex need not match).
  build({"w": jnp.ones((2, 2))}, agc=0.0)


def test_clip_norm_and_clip_value():
  params = make_params()
  grads = jax.tree.map(lambda x: 10.0 * x, params)
  out = _sgd_lr1_transform(params, clip_norm=1.0)(grads)
  np.testing.assert_allclose(optax.tree.norm(out), 1.0, rtol=1e-5)
  ratio = np.concatenate([np.ravel(o / g) for o, g in zip(jax.tree.leaves(out),
                                                           jax.tree.leaves(grads))])
  np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)  # direction kept
  small = jax.tree.map(lambda x: 1e-3 * x, params)
  out = _sgd_lr1_transform(params, clip_norm=1.0)(small)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(small)):
    np.testing.assert_allclose(a, b, rtol=1e-6)

  out = _sgd_lr1_transform(params, clip_value=0.7)(grads)
  for a, g in zip(jax.tree.leaves(out), jax.tree.leaves(grads)):
    a, g = np.asarray(a), np.asarray(g)
    assert np.all(np.abs(a) <= 0.7)
    np.testing.assert_array_equal(a, np.clip(g, -0.7, 0.7))


def test_clipping_acts_on_raw_gradient_not_on_penalties():
  # clip_value 1e-3 on a zero gradient, then l2 adds 0.5 * w: the penalty is not clipped.
  params = {"w": jnp.full((2, 2), 2.0, jnp.float32)}
  out = _sgd_lr1_transform(params, clip_value=1e-3, l2=0.5)(zeros_like(params))
  np.testing.assert_allclose(out["w"], 1.0, rtol=1e-6)


# ----------------------------------------------------------------------------- schedules


def _shape(**over):
  o, _ = cfgs(over)
  return optim.schedule_shape(o, steps_per_epoch=10, total_steps=110)


def _check_shape(f, pairs, atol=1e-6):
  ts = jnp.asarray([t for t, _ in pairs], jnp.int32)
  np.testing.assert_allclose(f(ts), [v for _, v in pairs], atol=atol)


def test_schedule_values():
  f = _shape(schedule="warmup_cosine", warmup_steps=10, min_lr_ratio=0.1)
  _check_shape(f, [(0, 0.0), (5, 0.5), (10, 1.0), (60, 0.55), (110, 0.1), (500, 0.1)])
  ref = optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, end_value=0.1)
  ts = jnp.arange(0, 130, 3)
  np.testing.assert_allclose(f(ts), ref(ts), atol=1e-6)

  f = _shape(schedule="warmup_linear", warmup_steps=10, min_lr_ratio=0.1)
  _check_shape(f, [(0, 0.0), (5, 0.5), (10, 1.0), (60, 0.55), (110, 0.1), (200, 0.1)])

  f = _shape(schedule="cosine", min_lr_ratio=0.2)
  _check_shape(f, [(0, 1.0), (55, 0.6), (110, 0.2), (300, 0.2)])

  f = _shape(schedule="step", step_epochs=2, step_factor=0.5)  # 20 steps a period
  _check_shape(f, [(0, 1.0), (19, 1.0), (20, 0.5), (39, 0.5), (40, 0.25)], atol=1e-7)

  f = _shape(schedule="constant")
  assert float(f(0)) == float(f(1000)) == 1.0


def test_schedules_are_optaxs_closed_forms_over_a_long_run():
  """optax's arithmetic: within 2 float32 ulps of the formulas (module docstring) at
  every step of a 300k-step run; the step schedule exactly; a warmup of 0 steps is the
  plain decay."""
  T, spe = 300_000, 1000
  t = np.arange(T + 5)
  p = np.clip(t / T, 0, 1)
  _check_shape(_schedule(T, spe, schedule="cosine", min_lr_ratio=0.1),
               list(zip(t[::997], (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * p)))[::997])),
               atol=2.4e-7)
  step = np.asarray(_schedule(T, spe, schedule="step", step_epochs=10, step_factor=0.1)(
      jnp.asarray(t, jnp.int32)))   # down to 1e-30: XLA flushes subnormals, numpy not
  np.testing.assert_array_equal(step, np.float32(0.1) ** (t // 10_000).astype(np.float32))
  ts = jnp.asarray(t, jnp.int32)
  for warm, plain in (("warmup_cosine", "cosine"), ("warmup_linear", None)):
    got = np.asarray(_schedule(T, spe, schedule=warm, warmup_steps=0)(ts))
    want = (np.asarray(_schedule(T, spe, schedule=plain)(ts)) if plain
            else np.float32(1) - p.astype(np.float32))
    np.testing.assert_allclose(got, want, atol=2.4e-7)
    assert got[0] == 1.0 and np.all(np.isfinite(got))


def _schedule(total, steps_per_epoch, **over):
  o, _ = cfgs(over)
  return optim.schedule_shape(o, steps_per_epoch=steps_per_epoch, total_steps=total)


def test_schedule_is_applied_by_the_optimizer():
  params = {"w": jnp.zeros((2,), jnp.float32)}
  tx = build(params, steps_per_epoch=3, total_steps=100, name="sgd", learning_rate=0.2,
             schedule="step", step_epochs=1, step_factor=0.5)
  history, _ = run(tx, params, {"w": jnp.ones((2,), jnp.float32)}, steps=7)
  steps = -np.diff([0.0] + [float(p["w"][0]) for p in history])
  np.testing.assert_allclose(steps, [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05], rtol=1e-5)


# ----------------------------------------------------------------------------- hyperparams


def test_hyperparams_are_injected_float_arrays():
  params = make_params()
  tx = build(params, name="adam", learning_rate=0.01, l2=0.1, weight_decay=0.2)
  state = tx.init(params)
  assert set(state.hyperparams) == set(optim.HYPERPARAMS)
  for k, v in state.hyperparams.items():
    assert v.dtype == jnp.float32 and v.shape == (), k
  assert float(state.hyperparams["weight_decay"]) == pytest.approx(0.2)
  assert float(state.hyperparams["clip_norm"]) == 0.0


def test_changing_injected_weight_decay_changes_behaviour():
  params = {"w": jnp.ones((2, 2), jnp.float32)}
  tx = build(params, name="adam", learning_rate=0.1, weight_decay=0.1)
  state = tx.init(params)
  grads = zeros_like(params)
  u1, _ = tx.update(grads, state, params)
  state.hyperparams["weight_decay"] = jnp.asarray(0.3, jnp.float32)
  u3, _ = jax.jit(tx.update)(grads, state, params)
  np.testing.assert_allclose(u1["w"], -0.01, rtol=1e-6)
  np.testing.assert_allclose(u3["w"], -0.03, rtol=1e-6)
  state.hyperparams["learning_rate"] = jnp.asarray(1.0, jnp.float32)
  u, _ = tx.update(grads, state, params)
  np.testing.assert_allclose(u["w"], -0.3, rtol=1e-6)


def test_vmapped_sweep_over_weight_decay():
  """K models in one program: per-model decay, and the ndim>1 mask is per model."""
  k = 3
  params = {"dense": {"kernel": jnp.ones((2, 3), jnp.float32),
                      "bias": jnp.ones((3,), jnp.float32)}}
  tx = build(params, name="sgd", learning_rate=0.1, weight_decay=0.1)
  stacked = jax.tree.map(lambda x: jnp.stack([x] * k), params)
  state = jax.vmap(tx.init)(stacked)
  state.hyperparams["weight_decay"] = jnp.asarray([0.0, 0.1, 0.2], jnp.float32)
  updates, _ = jax.jit(jax.vmap(tx.update))(zeros_like(stacked), state, stacked)
  new = optax.apply_updates(stacked, updates)
  np.testing.assert_allclose(new["dense"]["kernel"][:, 0, 0], [1.0, 0.99, 0.98], rtol=1e-6)
  np.testing.assert_array_equal(new["dense"]["bias"], stacked["dense"]["bias"])


# ----------------------------------------------------------------------------- validation
# The config's own rules are tests/test_config.py's; here what needs the run's length.


def test_warmup_must_be_shorter_than_the_run():
  o, r = cfgs(dict(schedule="warmup_cosine", warmup_steps=100))
  with pytest.raises(ValueError, match=r"optim\.warmup_steps=100 must be < "
                     r"total_steps=100") as info:
    optim.build_optimizer(o, r, make_params(), 10, 100)
  assert "\n" not in str(info.value)
