"""An LSTM layer whose input projection runs before the recurrence (model.hoist_input).

`nn.RNN(nn.OptimizedLSTMCell)` multiplies x_t by the four input kernels inside every
step of its scan: T small [B, E] x [E, 4H] matmuls in sequence. `HoistedLSTM` does what
cuDNN does: x @ W_i for all positions at once ([B*T, E] x [E, 4H], one large matmul a
GPU runs well), so that the sequential scan holds only h @ W_h. The function is the
same up to float rounding (the matmuls are summed in another order).

It is a drop-in for one direction of the layer: called as `nn.Bidirectional` calls an
`nn.RNN` (seq_lengths, return_carry, reverse, keep_order) and with the same results:
outputs past a sequence's length are not zeroed, the carry returned is the one at each
sequence's last valid step, and `reverse` flips only the valid part (flax's
`flip_sequences`). Its parameters are the cell's: it subclasses
`nn.OptimizedLSTMCell` (same fields, defaults, gate functions and initializers), makes
the same `DenseParams` children (`ii`, `if`, `ig`, `io` without bias; `hi`, `hf`,
`hg`, `ho` with bias) and, named as the cell it replaces, has the same parameter paths
and the same initial values (flax derives a parameter's init key from its path), so a
checkpoint of either path loads in the other.

The gate arithmetic is flax's (OptimizedLSTMCell.__call__: gates i, f, g, o, in that
order, computed in `dtype` on float32 parameters; carry c, h float32). It is written
out here because flax's cell takes the input projection inside itself and cannot be
handed a precomputed one.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from flax.linen.recurrent import DenseParams, flip_sequences

GATES = ("i", "f", "g", "o")  # OptimizedLSTMCell's order


class HoistedLSTM(nn.OptimizedLSTMCell):
  """One LSTM direction over [B, T, E] inputs -> (carry (c, h), outputs [B, T, H])."""

  @nn.compact
  def __call__(self, inputs, *, seq_lengths=None, initial_carry=None, init_key=None,
               return_carry: bool | None = True, time_major: bool | None = False,
               reverse: bool | None = False, keep_order: bool | None = False):
    if time_major or initial_carry is not None:
      raise NotImplementedError("HoistedLSTM takes batch-major inputs and starts from "
                                "the cell's initial carry")
    if init_key is None:  # as nn.RNN (the default carry_init ignores it)
      init_key = jax.random.key(0)
    carry = self.initialize_carry(init_key, inputs.shape[:-2] + inputs.shape[-1:])
    h0 = carry[1]
    input_params = [DenseParams(features=self.features, use_bias=False,
                                param_dtype=self.param_dtype,
                                kernel_init=self.kernel_init, bias_init=self.bias_init,
                                name=f"i{gate}")(inputs) for gate in GATES]
    hidden_params = [DenseParams(features=self.features, use_bias=True,
                                 param_dtype=self.param_dtype,
                                 kernel_init=self.recurrent_kernel_init,
                                 bias_init=self.bias_init, name=f"h{gate}")(h0)
                     for gate in GATES]
    w_i = jnp.concatenate([k for k, _ in input_params], axis=-1)           # [E, 4H]
    w_h = jnp.concatenate([k for k, _ in hidden_params], axis=-1)          # [H, 4H]
    b_h = jnp.concatenate([b for _, b in hidden_params], axis=-1)          # [4H]
    if reverse:  # x, not its projection: E values a position, not 4H
      inputs = flip_sequences(inputs, seq_lengths, num_batch_dims=1, time_major=False)
    # Time-major before the matmul, for the same reason: the scan runs over axis 0.
    x, w_i = promote_dtype(jnp.swapaxes(inputs, 0, 1), w_i, dtype=self.dtype)
    projected = jnp.dot(x, w_i)                        # [T, B, 4H]: every step at once
    w_h, b_h = promote_dtype(w_h, b_h, dtype=self.dtype)

    def step(carry, projected_t):
      c, h = carry
      (h_in,) = promote_dtype(h, dtype=w_h.dtype)
      i, f, g, o = jnp.split(jnp.dot(h_in, w_h) + b_h + projected_t, 4, axis=-1)
      new_c = self.gate_fn(f) * c + self.gate_fn(i) * self.activation_fn(g)
      new_h = self.gate_fn(o) * self.activation_fn(new_c)
      return (new_c, new_h), ((new_c, new_h), new_h)

    last, (carries, outputs) = jax.lax.scan(step, carry, projected)
    outputs = jnp.swapaxes(outputs, 0, 1)              # [B, T, H]
    if seq_lengths is not None:  # each sequence's carry at its last valid step
      rows = jnp.arange(inputs.shape[0])
      last = jax.tree_util.tree_map(lambda a: a[seq_lengths - 1, rows], carries)
    if reverse and keep_order:
      outputs = flip_sequences(outputs, seq_lengths, num_batch_dims=1, time_major=False)
    return (last, outputs) if return_carry else outputs
