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

  `position_axis`: the axis whose length is set by padding (the sequence axis of
  [B, T, D] text activations). A mask drawn for x.shape depends on that length (jax's
  bits for an element depend on the whole shape: the same key on widths 16 and 32
  agreed on only 76% of the first 16 positions), so a batch padded wider, to another
  bucket or to the widest member of a vmapped group (jaxreg.group), would drop other
  units. With `position_axis` set, position t's mask is drawn from fold_in(key, t):
  the same at every padded width.
  """
  rate: float | jax.Array = 0.0
  rng_collection: str = "dropout"
  position_axis: int | None = None

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic:
      return x
    keep_prob = 1.0 - jnp.asarray(self.rate, x.dtype)
    key = self.make_rng(self.rng_collection)
    if self.position_axis is None:
      keep = jax.random.bernoulli(key, keep_prob, x.shape)
    else:
      axis = self.position_axis % x.ndim
      rest = x.shape[:axis] + x.shape[axis + 1:]
      keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
          key, jnp.arange(x.shape[axis]))
      keep = jax.vmap(lambda k: jax.random.bernoulli(k, keep_prob, rest),
                      out_axes=axis)(keys)
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))
