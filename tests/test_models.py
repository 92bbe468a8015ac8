import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg.models.layers import Dropout
from jaxreg.models.rnn import TextClassifier


def _batch(seed=0, batch=5, length=9, vocab=40):
  rng = np.random.RandomState(seed)
  lengths = np.array([9, 4, 1, 6, 2][:batch], np.int32)
  tokens = rng.randint(1, vocab, (batch, length)).astype(np.int32)
  tokens *= np.arange(length)[None] < lengths[:, None]
  return tokens, lengths


# Two layers: the second reads the first's outputs, so padding leaking anywhere shows.
# The LSTM combinations run in the fast tier; RNN and GRU share the code path.
@pytest.mark.parametrize("cell,bidirectional,pooling", [
    pytest.param(c, b, p, marks=() if c == "lstm" else pytest.mark.slow)
    for c, b, p in itertools.product(
        ["rnn", "gru", "lstm"], [False, True], ["last", "mean", "max", "attention"])])
def test_extra_padding_does_not_change_logits(cell, bidirectional, pooling):
  model = TextClassifier(vocab_size=40, num_classes=3, cell=cell, embed_size=6,
                         hidden_size=5, num_layers=2, bidirectional=bidirectional,
                         pooling=pooling)
  tokens, lengths = _batch()
  params = jax.jit(model.init)(jax.random.key(0), tokens, lengths)
  apply = jax.jit(model.apply)
  logits = apply(params, tokens, lengths)
  # More padding, filled with real token ids: a model that read past the length
  # (or pooled over padded outputs) would change its logits.
  garbage = np.random.RandomState(1).randint(1, 40, (5, 7)).astype(np.int32)
  padded = np.concatenate([tokens, garbage], axis=1)
  np.testing.assert_allclose(apply(params, padded, lengths), logits, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_example_alone_unpadded_matches_the_padded_batch(bidirectional):
  model = TextClassifier(vocab_size=40, num_classes=3, embed_size=6, hidden_size=5,
                         num_layers=2, bidirectional=bidirectional, pooling="mean")
  tokens, lengths = _batch()
  params = jax.jit(model.init)(jax.random.key(0), tokens, lengths)
  apply = jax.jit(model.apply)
  logits = apply(params, tokens, lengths)
  for i in (1, 2):
    alone = apply(params, tokens[i:i + 1, :lengths[i]], lengths[i:i + 1])
    np.testing.assert_allclose(alone[0], logits[i], atol=1e-5)


def test_bidirectional_last_pooling_reads_both_directions():
  model = TextClassifier(vocab_size=40, num_classes=3, bidirectional=True,
                         embed_size=6, hidden_size=5)
  tokens, lengths = _batch()
  params = jax.jit(model.init)(jax.random.key(0), tokens, lengths)
  # Changing the first token changes the backward direction's final state.
  changed = tokens.copy()
  changed[0, 0] = (changed[0, 0] % 39) + 1
  assert not np.allclose(model.apply(params, changed, lengths)[0],
                         model.apply(params, tokens, lengths)[0])


def test_dropout_is_identity_when_deterministic_or_rate_zero():
  x = jnp.ones((64, 32))
  layer = Dropout(0.5)
  assert (layer.apply({}, x, True) == x).all()
  y = Dropout(0.0).apply({}, x, False, rngs={"dropout": jax.random.key(0)})
  assert (y == x).all()


def test_dropout_drops_at_rate_and_keeps_the_mean():
  x = jnp.ones((200, 200))
  y = Dropout(0.3).apply({}, x, False, rngs={"dropout": jax.random.key(0)})
  dropped = float((y == 0).mean())
  assert abs(dropped - 0.3) < 0.01
  assert abs(float(y.mean()) - 1.0) < 0.02


def test_dropout_rate_can_be_traced_under_jit_and_vmap():
  x = jnp.ones((100, 100))

  def apply(rate, key):
    return Dropout(rate).apply({}, x, False, rngs={"dropout": key})

  rates = jnp.array([0.0, 0.25, 0.5])
  keys = jax.random.split(jax.random.key(0), 3)
  ys = jax.jit(jax.vmap(apply))(rates, keys)
  fractions = (ys == 0).mean(axis=(1, 2))
  np.testing.assert_allclose(fractions, rates, atol=0.02)


@pytest.mark.parametrize("rate_key", ["embed_dropout", "between_dropout", "output_dropout"])
def test_each_dropout_is_active_only_in_training(rate_key):
  model = TextClassifier(vocab_size=40, num_classes=3, num_layers=2, embed_size=6,
                         hidden_size=5, **{rate_key: 0.5})
  tokens, lengths = _batch()
  params = jax.jit(model.init)(jax.random.key(0), tokens, lengths)
  eval_a = model.apply(params, tokens, lengths)
  eval_b = model.apply(params, tokens, lengths)
  np.testing.assert_array_equal(eval_a, eval_b)
  train = model.apply(params, tokens, lengths, train=True,
                      rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(train, eval_a)


def test_extra_padding_does_not_change_training_logits_with_every_dropout():
  """Dropout masks must not depend on the padded width (a batch cut to another bucket,
  a vmapped group member padded to the widest member): same key, same logits."""
  model = TextClassifier(vocab_size=40, num_classes=3, embed_size=6, hidden_size=5,
                         num_layers=2, pooling="max",
                         embed_dropout=0.5, between_dropout=0.5, output_dropout=0.5)
  tokens, lengths = _batch()
  params = jax.jit(model.init)(jax.random.key(0), tokens, lengths)
  apply = jax.jit(lambda p, t, k: model.apply(p, t, lengths, train=True,
                                              rngs={"dropout": k}))
  key = jax.random.key(3)
  logits = apply(params, tokens, key)
  padded = np.pad(tokens, ((0, 0), (0, 23)))
  np.testing.assert_allclose(apply(params, padded, key), logits, atol=1e-5)
  assert not np.allclose(apply(params, tokens, jax.random.key(4)), logits)


def test_per_position_dropout_drops_at_rate_independently_per_position():
  layer = Dropout(0.3, position_axis=1)
  apply = jax.jit(lambda x: layer.apply({}, x, False, rngs={"dropout": jax.random.key(0)}))
  y = apply(jnp.ones((50, 40, 30)))
  dropped = np.asarray(y == 0)
  assert abs(dropped.mean() - 0.3) < 0.01
  np.testing.assert_allclose(dropped.mean(axis=(0, 2)), 0.3, atol=0.05)  # every position
  # positions draw different masks (not one mask broadcast along the axis)
  assert (dropped[:, 0] != dropped[:, 1]).mean() > 0.3
  np.testing.assert_array_equal(np.asarray(apply(jnp.ones((50, 64, 30))))[:, :40],
                                np.asarray(y))
