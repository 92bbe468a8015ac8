"""jaxreg.models.resnet: shapes, parameter counts, BatchNorm per stage, dropout layers,
the normalizer-free variant and one real train step. Tiny widths and 32x32 images."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import config as config_lib, metrics, train
from jaxreg.models import resnet
from jaxreg.models.layers import Dropout


def model_config(**resnet_keys):
  """config.model as the trainer passes it: the base config's, ResNet-10 of width 4."""
  model = config_lib.get_base_config().model
  model.dtype = resnet_keys.pop("dtype", "float32")
  model.resnet.update({"depth": 10, "width": 4, **resnet_keys})
  return model


def images(batch=4, size=32, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, size, size, 3))


def init(model, batch, seed=0):
  # jit: eager flax init/apply compiles every op alone, minutes for a deep net here.
  return jax.jit(model.init)(jax.random.key(seed), batch)


def apply(model, variables, batch, *, train, rngs=None):
  return jax.jit(lambda v, b, r: model.apply(v, b, train=train, rngs=r))(
      variables, batch, rngs)


def shapes(model, batch):
  """The variables' shapes without compiling anything (structure checks)."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), batch))


def param_count(module, size=224):
  shapes = jax.eval_shape(
      lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep="/")


@pytest.mark.parametrize("depth", config_lib.RESNET_DEPTHS)
@pytest.mark.parametrize("stem", config_lib.RESNET_STEMS)
@pytest.mark.parametrize("norm", config_lib.RESNET_NORMS)
def test_output_shape_every_depth_stem_and_norm(depth, stem, norm):
  model = resnet.from_config(model_config(depth=depth, stem=stem, norm=norm), 7)
  batch = {"images": images(batch=3)}
  out = jax.eval_shape(
      lambda: model.apply(init(model, batch), batch, train=True,
                          rngs={"dropout": jax.random.key(1)}))
  logits, updates = out
  assert logits.shape == (3, 7) and logits.dtype == jnp.float32
  assert set(updates) == ({"batch_stats"} if norm == "batch" else set())


@pytest.mark.parametrize("depth,count", [(18, 11_689_512), (34, 21_797_672),
                                         (50, 25_557_032)])
def test_imagenet_parameter_counts_equal_torchvision(depth, count):
  module = resnet.ResNet(num_classes=1000, depth=depth, width=64, stem="imagenet")
  assert param_count(module) == count


def test_cifar_stem_parameter_counts():
  # The 3x3x3x64 stem replaces the 7x7 one (9408 -> 1728) and the head has 10 outputs.
  module = resnet.ResNet(num_classes=10, depth=50, width=64, stem="cifar")
  assert param_count(module, 32) == 25_557_032 - 9408 + 1728 - 2049 * 1000 + 2049 * 10
  assert param_count(resnet.ResNet(num_classes=10, depth=18, stem="cifar"), 32) == \
      11_689_512 - 9408 + 1728 - 513 * 990


def test_bn_stages_choose_which_stages_keep_batch_stats():
  model = resnet.from_config(model_config(depth=18, bn_stages="0,2"), 5)
  assert model.mutable == ("batch_stats",)
  variables = shapes(model, {"images": images()})
  stats_blocks = {k.split("/")[0] for k in flat(variables["batch_stats"])}
  assert stats_blocks == {"stem_bn", "stage0_block0", "stage0_block1", "stage2_block0",
                          "stage2_block1"}
  params = flat(variables["params"])
  # A conv without BatchNorm after it carries a bias; one with BatchNorm does not.
  assert "stage1_block0/conv0/bias" in params and "stage3_block1/conv1/bias" in params
  assert "stage0_block0/conv0/bias" not in params and "stem_conv/bias" not in params

  everywhere = resnet.from_config(model_config(depth=18, bn_stages="all"), 5)
  stats = shapes(everywhere, {"images": images()})["batch_stats"]
  assert {k.split("/")[0] for k in flat(stats)} == {
      "stem_bn", *(f"stage{s}_block{b}" for s in range(4) for b in range(2))}
  for norm, stages in (("none", "all"), ("nf", "all"), ("batch", "")):
    model = resnet.from_config(model_config(norm=norm, bn_stages=stages), 5)
    assert model.mutable == ()
    assert set(init(model, {"images": images()})) == {"params"}


def test_train_updates_batch_stats_and_eval_uses_running_averages():
  model = resnet.from_config(model_config(), 5)
  batch = {"images": images(batch=8) * 3.0 + 2.0}
  variables = init(model, batch)
  _, updates = apply(model, variables, batch, train=True)
  old, new = flat(variables["batch_stats"]), flat(updates["batch_stats"])
  assert old.keys() == new.keys()
  for key in old:
    assert not np.allclose(old[key], new[key]), key
  # momentum 0.9: new mean = 0.9 * 0 + 0.1 * batch mean of the stem conv's output.
  stem_out = nn.Conv(4, (3, 3), padding=[(1, 1), (1, 1)], use_bias=False).apply(
      {"params": variables["params"]["stem_conv"]}, batch["images"])
  np.testing.assert_allclose(new["stem_bn/mean"], 0.1 * stem_out.mean((0, 1, 2)),
                             rtol=1e-4, atol=1e-6)

  # Eval reads the running averages: it depends on them, not on the rest of the batch.
  trained = {"params": variables["params"], **updates}
  eval_logits, none = apply(model, trained, batch, train=False)
  assert none == {}
  alone, _ = apply(model, trained, {"images": batch["images"][:1]}, train=False)
  np.testing.assert_allclose(alone[0], eval_logits[0], rtol=1e-5, atol=1e-5)
  before, _ = apply(model, variables, batch, train=False)
  assert not np.allclose(before, eval_logits)
  # Training mode normalizes with the batch's own statistics: the batch matters.
  train_logits, _ = apply(model, trained, batch, train=True)
  train_alone, _ = apply(model, trained, {"images": batch["images"][:2]}, train=True)
  assert not np.allclose(train_alone[0], train_logits[0], atol=1e-4)


def _dropout_calls(model, batch):
  """Dropout layers called in one training forward pass (flax method interception)."""
  calls = []

  def count(next_fun, args, kwargs, context):
    if isinstance(context.module, Dropout) and context.method_name == "__call__":
      calls.append(context.module.name)
    return next_fun(*args, **kwargs)

  variables = init(model, batch)
  with nn.intercept_methods(count):
    apply(model, variables, batch, train=True, rngs={"dropout": jax.random.key(1)})
  return calls


@pytest.mark.parametrize("layers,names", [
    (0, []), (1, ["dropout_head"]), (2, ["dropout_stage2", "dropout_head"]),
    (3, ["dropout_stage1", "dropout_stage2", "dropout_head"])])
def test_dropout_layers_count_and_place(layers, names):
  model = resnet.from_config(model_config(norm="none", dropout_layers=layers,
                                          dropout_rate=0.5), 5)
  assert _dropout_calls(model, {"images": images()}) == names


def test_dropout_rate_zero_is_identity_and_positive_rate_is_not():
  batch = {"images": images()}
  rngs = {"dropout": jax.random.key(3)}
  zero = resnet.from_config(model_config(norm="none", dropout_layers=3), 5)
  variables = init(zero, batch)
  np.testing.assert_array_equal(apply(zero, variables, batch, train=True, rngs=rngs)[0],
                                apply(zero, variables, batch, train=False)[0])
  half = resnet.from_config(model_config(norm="none", dropout_layers=3,
                                         dropout_rate=0.5), 5)
  assert not np.allclose(apply(half, variables, batch, train=True, rngs=rngs)[0],
                         apply(half, variables, batch, train=False)[0])


def test_dropout_rate_may_be_traced():
  model = resnet.from_config(model_config(norm="none", dropout_layers=1), 5)
  batch = {"images": images()}
  variables = init(model, batch)

  @jax.jit
  def logits(rate):
    module = model.module.clone(dropout_rate=rate)
    return module.apply(variables, batch["images"], train=True,
                        rngs={"dropout": jax.random.key(3)})

  np.testing.assert_allclose(logits(0.0), apply(model, variables, batch, train=False)[0],
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(logits(0.5), logits(0.0))


def test_standardized_kernels_have_zero_mean_and_unit_fan_in_scale():
  deep = resnet.from_config(model_config(norm="nf", depth=50), 5)
  deep_params = flat(shapes(deep, {"images": images()})["params"])
  # Every conv is a WSConv: stem, 3 per bottleneck, 4 projections, each with a gain.
  assert sum(k.endswith("kernel") and "head" not in k for k in deep_params) == 1 + 48 + 4
  assert sum(k.endswith("/gain") for k in deep_params) == 1 + 48 + 4
  model = resnet.from_config(model_config(norm="nf", depth=10), 5)
  params = flat(init(model, {"images": images()})["params"])
  kernels = {k: v for k, v in params.items() if k.endswith("kernel") and "head" not in k}
  assert len(kernels) == 1 + 2 * 4 + 3
  for name, kernel in kernels.items():
    # Skewed raw kernels: standardization must remove the offset and the scale.
    raw = kernel * 7.0 + 0.3
    gain = params[name[:-len("kernel")] + "gain"]
    w = resnet.standardize_kernel(raw, gain)
    fan_in = np.prod(w.shape[:-1])
    np.testing.assert_allclose(w.mean(axis=(0, 1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(w.var(axis=(0, 1, 2)) * fan_in, 1.0, rtol=1e-3)


def test_nf_output_is_invariant_to_the_raw_kernel_scale():
  model = resnet.from_config(model_config(norm="nf"), 5)
  x = images()
  variables = init(model, {"images": x})
  params = flat(variables["params"])
  params = {k: jnp.ones_like(v) if k.endswith("skip_gain") else v
            for k, v in params.items()}
  scaled = {k: v * 5.0 if k.endswith("kernel") and "head" not in k else v
            for k, v in params.items()}
  forward = jax.jit(lambda p: model.module.apply(
      {"params": flax.traverse_util.unflatten_dict(p, sep="/")}, x))
  out, out5 = forward(params), forward(scaled)
  np.testing.assert_allclose(out, out5, rtol=1e-4, atol=1e-5)


def _nf_stage_variances(skip_gain, alpha):
  model = resnet.ResNet(num_classes=10, depth=50, width=8, stem="cifar", norm="nf",
                        nf_alpha=alpha)
  x = images(batch=8)
  params = flat(jax.jit(model.init)(jax.random.key(1), x)["params"])
  params = {k: jnp.full_like(v, skip_gain) if k.endswith("skip_gain") else v
            for k, v in params.items()}
  logits, state = jax.jit(lambda p: model.apply(
      {"params": flax.traverse_util.unflatten_dict(p, sep="/")}, x,
      mutable=["intermediates"]))(params)
  assert np.isfinite(logits).all()
  return [float(jnp.var(v)) for (v,) in state["intermediates"].values()], logits


@pytest.mark.parametrize("alpha", [pytest.param(0.2, marks=pytest.mark.slow), 1.0])
def test_deep_nf_residual_stream_follows_its_expected_variance(alpha):
  """ResNet-50 without any normalization layer, every branch switched fully on (skip
  gains 1, what training moves towards): each stage ends near the variance the model
  tracks for beta, 1 + alpha^2 * blocks (the transition block resets it). Without the
  1/beta input scaling it compounds: at alpha=1 stage 4 reached ~3e4 instead of 4."""
  variances, logits = _nf_stage_variances(1.0, alpha)
  expected = [1 + alpha ** 2 * n for n in resnet.STAGE_SIZES[50]]
  for stage, (var, exp) in enumerate(zip(variances, expected)):
    assert 0.4 < var / exp < 1.6, (stage, var, exp)
  assert np.abs(logits).max() < 10.0


@pytest.mark.slow
def test_deep_nf_net_at_init_is_bounded():
  # SkipInit: every residual branch is gated by 0, the stream stays at the stem's scale.
  variances, logits = _nf_stage_variances(0.0, 0.2)
  assert all(0.3 < v < 3.0 for v in variances), variances
  assert np.abs(logits).max() < 10.0


def test_nf_without_normalization_parameters_has_gains_and_no_batch_stats():
  model = resnet.from_config(model_config(norm="nf", depth=18), 5)
  params = flat(shapes(model, {"images": images()})["params"])
  assert not any("bn" in k or "scale" in k for k in params)
  assert sum(k.endswith("skip_gain") for k in params) == 8
  tiny = flat(init(resnet.from_config(model_config(norm="nf"), 5),
                   {"images": images()})["params"])
  gains = [float(v) for k, v in tiny.items() if k.endswith("skip_gain")]
  assert gains == [0.0] * 4   # SkipInit: every block starts as the identity


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_params():
  model = resnet.from_config(model_config(dtype="bfloat16"), 5)
  batch = {"images": images()}
  variables = init(model, batch)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  logits, updates = apply(model, variables, batch, train=True)
  assert logits.dtype == jnp.float32
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(updates))
  f32 = resnet.from_config(model_config(), 5)
  ref, _ = apply(f32, variables, batch, train=True)
  # Same function, bf16 rounding only; and the rounding is really there.
  np.testing.assert_allclose(logits, ref, rtol=0.1, atol=0.1)
  assert not np.array_equal(logits, ref)

  hlo = jax.jit(lambda v: apply(model, v, batch, train=False)[0]).lower(variables).as_text()
  assert "bf16" in hlo and "convolution" in hlo


@pytest.mark.parametrize("norm", ["batch", pytest.param("nf", marks=pytest.mark.slow)])
def test_train_steps_change_every_parameter_and_the_batch_stats(norm):
  model = resnet.from_config(model_config(norm=norm, dropout_layers=2,
                                          dropout_rate=0.2), 3)
  rng = np.random.default_rng(0)
  batch = {"images": rng.normal(size=(8, 32, 32, 3)).astype(np.float32),
           "labels": rng.integers(0, 3, 8).astype(np.int32), "mask": np.ones(8, bool)}
  variables = jax.jit(model.init)(jax.random.key(0), batch)
  params = variables.pop("params")
  config = config_lib.get_base_config()
  config.optim.name, config.optim.learning_rate = "momentum", 0.05
  tx = train.make_optimizer(config, params, steps_per_epoch=10)
  state = train.TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                                  rng=jax.random.key_data(jax.random.key(1)),
                                  model_state=variables)
  step = jax.jit(lambda s, b, c: train.train_step(s, b, c, num_classes=3))
  counts = metrics.zero_counts(3)
  # Two steps: the zero-initialized last BatchNorm scale (or NF skip gain) blocks the
  # gradient of its branch's convs on the first step, by design.
  new, counts, out = step(state, batch, counts)
  new, counts, out = step(new, batch, counts)
  assert np.isfinite(out["loss"])
  assert int(np.asarray(counts["confusion"]).sum()) == 16  # both steps counted
  before, after = flat(state.params), flat(new.params)
  unchanged = [k for k in before if np.array_equal(before[k], after[k])]
  assert unchanged == []
  if norm == "batch":
    old, upd = flat(state.model_state["batch_stats"]), flat(new.model_state["batch_stats"])
    assert old.keys() == upd.keys() and len(old) > 0
    assert all(not np.allclose(old[k], upd[k]) for k in old)
  else:
    assert new.model_state == {}


@pytest.mark.slow
def test_nf_net_with_agc_fits_a_batch_and_its_branches_train():
  """What the NF variant is for: no normalization at all, AGC (reg.agc) on, it fits a
  small batch and its residual branches open (skip gains leave 0). The skip gains are
  excluded from AGC like the head: a zero-initialized scalar's unit-wise clip bound is
  agc * max(|g|, eps) = 2e-5 here, which kept every gain below 6e-4 after 40 steps
  (checked), i.e. the branches stayed shut."""
  model = resnet.from_config(model_config(norm="nf", width=8), 4)
  rng = np.random.default_rng(0)
  batch = {"images": rng.normal(size=(16, 32, 32, 3)).astype(np.float32),
           "labels": rng.integers(0, 4, 16).astype(np.int32), "mask": np.ones(16, bool)}
  params = jax.jit(model.init)(jax.random.key(0), batch)["params"]
  config = config_lib.get_base_config()
  config.optim.name, config.optim.learning_rate = "momentum", 0.1
  config.reg.agc, config.reg.agc_exclude = 0.02, "^head/|skip_gain$"
  state = train.TrainState.create(
      apply_fn=model.apply, params=params, rng=jax.random.key_data(jax.random.key(1)),
      tx=train.make_optimizer(config, params, steps_per_epoch=10))
  step = jax.jit(lambda s, b, c: train.train_step(s, b, c, num_classes=4))
  losses = []
  for _ in range(40):
    state, _, out = step(state, batch, metrics.zero_counts(4))
    losses.append(float(out["loss"]))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.2 * losses[0], losses
  gains = [abs(float(v)) for k, v in flat(state.params).items() if k.endswith("skip_gain")]
  assert max(gains) > 0.05, gains


@pytest.mark.slow
def test_batchnorm_statistics_count_only_the_rows_of_the_mask():
  """The padding rows of a last batch (here: huge values) change neither the
  BatchNorm statistics nor the real rows' outputs: the same as the real rows alone."""
  model = resnet.from_config(model_config(width=4), 5)  # BN in the stem, blocks, proj
  real = images(batch=5, size=16)
  padded = {"images": jnp.concatenate([real, 100.0 + images(batch=3, size=16, seed=1)]),
            "mask": np.arange(8) < 5}
  variables = init(model, {"images": real})
  logits, updates = apply(model, variables, padded, train=True)
  alone_logits, alone = apply(model, variables, {"images": real}, train=True)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               updates, alone)
  np.testing.assert_allclose(logits[:5], alone_logits, rtol=1e-4, atol=1e-5)
