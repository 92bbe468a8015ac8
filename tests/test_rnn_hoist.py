"""model.hoist_input (jaxreg/models/rnn_hoisted.py), the GPU path of the LSTM and GRU,
checked on the CPU: a hoisted layer is the per-step `nn.RNN(nn.OptimizedLSTMCell)` (or
`nn.GRUCell`) layer with the input projection moved out of the scan, so with the same parameters it must give
the same logits and gradients, it must have the same parameters (paths, shapes, dtypes
and initial values: checkpoints load either way), train alike, and really hoist (one
matmul left in the scan).

Tolerances. float32: the two paths differ only in how the matmuls are blocked (x @ W_i
for [B*T, E] at once, not [B, E] per step; its gradient summed over B*T at once, not
accumulated step by step), so they agree to a few float32 ulps per operation; rtol
1e-5 (about 100 ulps, after a few dozen chained operations) with atol 1e-6 for values
near 0. bfloat16: a one-ulp difference in a matmul's rounding is 2**-8 relative and is
carried through the recurrence, so the hoisted bf16 model is compared with the per-step
bf16 model at rtol 2e-2, atol 2e-3 (still far below a wrong gate, or a lost mask, which
change the logits by O(0.1-1)).
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from jaxreg import config as config_lib
from jaxreg.models import Model, rnn, rnn_hoisted
from jaxreg.models.rnn import TextClassifier
from tests.conftest import train_on_one_batch

VOCAB, CLASSES, B, T = 50, 4, 7, 9
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "bfloat16": dict(rtol=2e-2, atol=2e-3)}


def batch(seed: int = 0):
  """Lengths 1 (one step), T (no padding) and in between; padding holds token 0."""
  rng = np.random.default_rng(seed)
  lengths = np.array([1, T, 3, T - 1, 2, 5, T], np.int32)
  tokens = rng.integers(1, VOCAB, (B, T)).astype(np.int32)
  tokens[np.arange(T)[None, :] >= lengths[:, None]] = 0
  return jnp.asarray(tokens), jnp.asarray(lengths)


def pair(**kw):
  kw = {"vocab_size": VOCAB, "num_classes": CLASSES, "embed_size": 12,
        "hidden_size": 10, **kw}
  return TextClassifier(**kw), TextClassifier(**kw, hoist_input=True)


def flat(tree):
  return {"/".join(k): v for k, v in flatten_dict(tree).items()}


@pytest.mark.parametrize("cell, bidirectional, num_layers, dtype", [
    ("lstm", False, 1, "float32"), ("lstm", False, 2, "float32"),
    ("lstm", True, 1, "float32"), ("lstm", True, 2, "float32"),
    ("lstm", True, 2, "bfloat16"), ("gru", False, 1, "float32"),
    ("gru", True, 2, "float32")])
def test_same_parameters_paths_shapes_dtypes_and_initial_values(
    cell, bidirectional, num_layers, dtype):
  per_step, hoisted = pair(cell=cell, bidirectional=bidirectional,
                           num_layers=num_layers, dtype=jnp.dtype(dtype))
  tokens, lengths = batch()
  a = per_step.init(jax.random.key(3), tokens, lengths)["params"]
  b = hoisted.init(jax.random.key(3), tokens, lengths)["params"]
  assert jax.tree.structure(a) == jax.tree.structure(b)  # dict keys compare sorted
  a, b = flat(a), flat(b)
  assert sorted(a) == sorted(b)
  for path in a:
    assert a[path].dtype == b[path].dtype == jnp.float32, path
    assert a[path].shape == b[path].shape, path
    assert np.array_equal(a[path], b[path]), path


def logits_and_grads(model, params, tokens, lengths):
  def loss(p):  # a fixed random read-out of the logits: every logit gets a gradient
    logits = model.apply({"params": p}, tokens, lengths)
    weights = jax.random.normal(jax.random.key(9), logits.shape)
    return jnp.sum(logits * weights), logits
  (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return logits, grads


# Every value of each factor, both poolings in each direction and layer count, in
# 6 compilations of the LSTM's 16 combinations (each costs two jitted gradients), 3 of
# the GRU's.
@pytest.mark.parametrize("cell, bidirectional, num_layers, pooling, dtype", [
    ("lstm", False, 1, "last", "float32"), ("lstm", True, 1, "mean", "float32"),
    ("lstm", False, 2, "mean", "float32"), ("lstm", True, 2, "last", "float32"),
    ("lstm", True, 2, "last", "bfloat16"), ("lstm", False, 1, "mean", "bfloat16"),
    ("gru", False, 2, "mean", "float32"), ("gru", True, 1, "last", "float32"),
    ("gru", True, 2, "mean", "bfloat16")])
def test_hoisted_logits_and_gradients_equal_the_per_step_layer(
    cell, bidirectional, num_layers, pooling, dtype):
  per_step, hoisted = pair(cell=cell, bidirectional=bidirectional,
                           num_layers=num_layers, pooling=pooling,
                           dtype=jnp.dtype(dtype))
  tokens, lengths = batch()
  params = per_step.init(jax.random.key(0), tokens, lengths)["params"]
  # Non-zero biases, so that a bias applied twice or lost is seen.
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(5), p.shape)
                        if p.ndim == 1 else p, params)
  want_logits, want_grads = logits_and_grads(per_step, params, tokens, lengths)
  logits, grads = logits_and_grads(hoisted, params, tokens, lengths)
  assert logits.dtype == want_logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, want_logits, **TOL[dtype])
  want, got = flat(want_grads), flat(grads)
  assert sorted(got) == sorted(want)
  for path in want:
    scale = float(np.abs(want[path]).max())  # relative to the leaf's largest entry
    np.testing.assert_allclose(got[path], want[path], rtol=TOL[dtype]["rtol"],
                               atol=TOL[dtype]["rtol"] * scale + TOL[dtype]["atol"],
                               err_msg=path)


def sub_jaxprs(eqn):
  for value in eqn.params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v


def count_dots(jaxpr) -> int:
  return sum((e.primitive.name == "dot_general") +
             sum(count_dots(j) for j in sub_jaxprs(e)) for e in jaxpr.eqns)


def scan_dot_counts(model, tokens, lengths) -> list[int]:
  """The number of matmuls inside each scan (time loop) of the forward pass."""
  variables = model.init(jax.random.key(0), tokens, lengths)
  counts = []

  def walk(jaxpr):
    for e in jaxpr.eqns:
      if e.primitive.name == "scan":
        counts.append(count_dots(e.params["jaxpr"].jaxpr))
      else:
        for j in sub_jaxprs(e):
          walk(j)
  walk(jax.make_jaxpr(lambda v: model.apply(v, tokens, lengths))(variables).jaxpr)
  return counts


@pytest.mark.parametrize("cell, per_step_dots", [("lstm", 2), ("gru", 6)])
def test_config_key_moves_the_input_matmul_out_of_the_scan(cell, per_step_dots):
  """flax's LSTM cell: x @ W_i and h @ W_h (gates concatenated); its GRU cell: one
  matmul per gate and side. Hoisted: h @ W_h alone."""
  config = config_lib.get_base_config()
  config.model.bidirectional, config.model.cell = True, cell
  tokens, lengths = batch()
  per_step = rnn.from_config(config.model, VOCAB, CLASSES)
  config.model.hoist_input = True
  hoisted = rnn.from_config(config.model, VOCAB, CLASSES)
  assert scan_dot_counts(per_step, tokens, lengths) == [per_step_dots] * 2
  assert scan_dot_counts(hoisted, tokens, lengths) == [1, 1]


def dot_operand_dtypes(jaxpr) -> list[tuple[str, ...]]:
  out = []
  for e in jaxpr.eqns:
    if e.primitive.name == "dot_general":
      out.append(tuple(str(v.aval.dtype) for v in e.invars))
    for j in sub_jaxprs(e):
      out += dot_operand_dtypes(j)
  return out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bfloat16_hoisted_matmuls_take_bfloat16_operands(cell):
  """Both the hoisted projection and the recurrent matmul in bf16 (a float32 h in
  the scan would pass the logits test: it only adds precision); the head alone in
  float32, as in the per-step model (tests/test_bf16.py)."""
  _, hoisted = pair(cell=cell, bidirectional=True, dtype=jnp.bfloat16)
  tokens, lengths = batch()
  variables = hoisted.init(jax.random.key(0), tokens, lengths)
  jaxpr = jax.make_jaxpr(lambda v: hoisted.apply(v, tokens, lengths))(variables).jaxpr
  dtypes = dot_operand_dtypes(jaxpr)
  assert sorted(dtypes) == [("bfloat16", "bfloat16")] * 4 + [("float32", "float32")], \
      dtypes


def losses_over_steps(cell: str, hoist: bool, steps: int = 10) -> tuple[list, dict]:
  """jaxreg's jitted train step (Adam, dropout on) `steps` times on one batch."""
  config = config_lib.get_base_config()
  config.model.cell, config.model.hoist_input = cell, hoist
  config.model.embed_size, config.model.hidden_size = 16, 12
  config.model.dropout.embed = 0.2
  config.optim.name, config.optim.learning_rate = "adam", 1e-2
  config_lib.validate(config)
  model = Model(rnn.from_config(config.model, VOCAB, CLASSES))
  tokens, lengths = batch(1)
  data = {"tokens": np.asarray(tokens), "lengths": np.asarray(lengths),
          "labels": (np.asarray(tokens)[:, 0] % CLASSES).astype(np.int32),
          "mask": np.ones(B, bool)}
  return train_on_one_batch(config, model, model.init(jax.random.key(0), data), data,
                            steps, CLASSES)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_with_the_hoisted_layer_follows_the_per_step_run(cell):
  want, want_params = losses_over_steps(cell, hoist=False)
  got, params = losses_over_steps(cell, hoist=True)
  assert want[-1] < 0.85 * want[0], want  # it trains, so the comparison means something
  # Adam divides by sqrt(v): rounding differences grow a little over the steps.
  np.testing.assert_allclose(got, want, rtol=1e-4)
  for path, value in flat(want_params).items():
    np.testing.assert_allclose(flat(params)[path], value, rtol=1e-3, atol=1e-5,
                               err_msg=path)


def test_the_elman_cell_is_a_one_line_error_naming_the_key_and_the_cells():
  config = config_lib.get_base_config()
  config.model.cell, config.model.hoist_input = "rnn", True
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(config)
  assert str(e.value) == ("model.hoist_input=True needs model.cell in: lstm, gru (got "
                          "'rnn'; or set model.hoist_input=False)")
  _, hoisted = pair(cell="rnn")
  with pytest.raises(ValueError, match=r"model.hoist_input=True needs model.cell in: "
                                       r"lstm, gru \(got 'rnn'\)"):
    hoisted.init(jax.random.key(0), *batch())


def test_every_cell_the_schema_allows_to_hoist_has_a_hoisted_layer():
  assert set(config_lib.HOISTED_CELLS) == set(rnn_hoisted.HOISTED)
