"""Small layers shared by jaxreg's models."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Dropout(nn.Module):
  """Inverted dropout whose rate may be a traced value.

  flax's nn.Dropout tests `rate == 0.0` in Python, so a rate carried as an array (one
  per model in a vmapped sweep) fails under jit. This one only does array math; rate 0
  keeps every unit and scales by 1, so it is exactly the identity.
  """
  rate: float | jax.Array = 0.0
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic:
      return x
    keep_prob = 1.0 - jnp.asarray(self.rate, x.dtype)
    keep = jax.random.bernoulli(self.make_rng(self.rng_collection), keep_prob, x.shape)
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))
