"""LSTM and GRU layers whose input projection runs before the recurrence
(model.hoist_input).

`nn.RNN(nn.OptimizedLSTMCell)` multiplies x_t by the four input kernels inside every
step of its scan: T small [B, E] x [E, 4H] matmuls in sequence (a GRU: three). The
layers here do what cuDNN does: x @ W_i for all positions at once ([T*B, E] x [E, 4H],
one large matmul a GPU runs well), so that the sequential scan holds only h @ W_h. The
function is the same up to float rounding (the matmuls are summed in another order).

Each is a drop-in for one direction of the layer: called as `nn.Bidirectional` calls an
`nn.RNN` (seq_lengths, return_carry, reverse, keep_order) and with the same results:
outputs past a sequence's length are not zeroed, the carry returned is the one at each
sequence's last valid step, and `reverse` flips only the valid part (flax's
`flip_sequences`). Its parameters are the cell's: it subclasses the flax cell (same
fields, defaults, gate functions and initializers), makes the same children with the
same names (`DenseParams`, which creates a `Dense`'s kernel and bias without applying
them) and, named as the cell it replaces, has the same parameter paths and the same
initial values (flax derives a parameter's init key from its path), so a checkpoint of
either path loads in the other.

The gate arithmetic is flax's (OptimizedLSTMCell.__call__: gates i, f, g, o in that
order; GRUCell.__call__: r, z, n with biases on the input side and on W_hn), computed in
`dtype` on float32 parameters with a float32 carry. It is written out here because
flax's cells compute the input projection inside themselves and cannot be handed a
precomputed one.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from flax.linen.recurrent import DenseParams, flip_sequences


def time_major_inputs(inputs, seq_lengths, reverse: bool):
  """[B, T, E] -> [T, B, E], the valid part flipped for the backward direction: the
  input, not its projection, is moved (E values a position, not 3H or 4H)."""
  if reverse:
    inputs = flip_sequences(inputs, seq_lengths, num_batch_dims=1, time_major=False)
  return jnp.swapaxes(inputs, 0, 1)


def scan(step, carry, projected, seq_lengths, *, flip_back: bool, return_carry: bool):
  """`step(carry, projected_t) -> (carry, h)` over time-major `projected`, as nn.RNN
  scans a cell: the carry returned is each sequence's at its last valid step."""
  def body(carry, projected_t):
    carry, h = step(carry, projected_t)
    return carry, (carry, h)

  last, (carries, outputs) = jax.lax.scan(body, carry, projected)
  outputs = jnp.swapaxes(outputs, 0, 1)              # [B, T, H]
  if seq_lengths is not None:
    rows = jnp.arange(outputs.shape[0])
    last = jax.tree_util.tree_map(lambda a: a[seq_lengths - 1, rows], carries)
  if flip_back:
    outputs = flip_sequences(outputs, seq_lengths, num_batch_dims=1, time_major=False)
  return (last, outputs) if return_carry else outputs


def start(cell, inputs, init_key, time_major, initial_carry):
  """The cell's initial carry for [B, T, E] inputs, made as nn.RNN makes it (key(0) when
  none is given: the default carry_init ignores it)."""
  if time_major or initial_carry is not None:
    raise NotImplementedError("a hoisted layer takes batch-major inputs and starts from "
                              "the cell's initial carry")
  return cell.initialize_carry(init_key if init_key is not None else jax.random.key(0),
                               inputs.shape[:1] + inputs.shape[2:])


def dense_params(module, names, inputs, use_bias, kernel_init):
  """[(kernel, bias or None)] of DenseParams children `names`, as the cell makes them."""
  return [DenseParams(features=module.features, use_bias=use_bias,
                      param_dtype=module.param_dtype, kernel_init=kernel_init,
                      bias_init=module.bias_init, name=name)(inputs) for name in names]


def concat(arrays):
  return jnp.concatenate(arrays, axis=-1)


class HoistedLSTM(nn.OptimizedLSTMCell):
  """One LSTM direction over [B, T, E] inputs -> (carry (c, h), outputs [B, T, H])."""

  @nn.compact
  def __call__(self, inputs, *, seq_lengths=None, initial_carry=None, init_key=None,
               return_carry: bool | None = True, time_major: bool | None = False,
               reverse: bool | None = False, keep_order: bool | None = False):
    carry = start(self, inputs, init_key, time_major, initial_carry)
    gates = ("i", "f", "g", "o")  # OptimizedLSTMCell's order
    input_params = dense_params(self, [f"i{g}" for g in gates], inputs, False,
                                self.kernel_init)
    hidden_params = dense_params(self, [f"h{g}" for g in gates], carry[1], True,
                                 self.recurrent_kernel_init)
    x, w_i = promote_dtype(time_major_inputs(inputs, seq_lengths, reverse),
                           concat([k for k, _ in input_params]), dtype=self.dtype)
    projected = jnp.dot(x, w_i)                        # [T, B, 4H]: every step at once
    w_h, b_h = promote_dtype(concat([k for k, _ in hidden_params]),
                             concat([b for _, b in hidden_params]), dtype=self.dtype)

    def step(carry, projected_t):
      c, h = carry
      (h_in,) = promote_dtype(h, dtype=w_h.dtype)
      i, f, g, o = jnp.split(jnp.dot(h_in, w_h) + b_h + projected_t, 4, axis=-1)
      new_c = self.gate_fn(f) * c + self.gate_fn(i) * self.activation_fn(g)
      new_h = self.gate_fn(o) * self.activation_fn(new_c)
      return (new_c, new_h), new_h

    return scan(step, carry, projected, seq_lengths, flip_back=reverse and keep_order,
                return_carry=return_carry)


class HoistedGRU(nn.GRUCell):
  """One GRU direction over [B, T, E] inputs -> (carry h, outputs [B, T, H])."""

  @nn.compact
  def __call__(self, inputs, *, seq_lengths=None, initial_carry=None, init_key=None,
               return_carry: bool | None = True, time_major: bool | None = False,
               reverse: bool | None = False, keep_order: bool | None = False):
    carry = start(self, inputs, init_key, time_major, initial_carry)
    # GRUCell: input Dense layers ir, iz, in with biases; hidden hr, hz without, hn with.
    input_params = dense_params(self, ["ir", "iz", "in"], inputs, True, self.kernel_init)
    hidden_params = dense_params(self, ["hr", "hz"], carry, False,
                                 self.recurrent_kernel_init)
    hidden_params += dense_params(self, ["hn"], carry, True, self.recurrent_kernel_init)
    x, w_i, b_i = promote_dtype(time_major_inputs(inputs, seq_lengths, reverse),
                                concat([k for k, _ in input_params]),
                                concat([b for _, b in input_params]), dtype=self.dtype)
    projected = jnp.dot(x, w_i) + b_i                  # [T, B, 3H]: every step at once
    w_h, b_hn = promote_dtype(concat([k for k, _ in hidden_params]), hidden_params[2][1],
                              dtype=self.dtype)

    def step(h, projected_t):
      (h_in,) = promote_dtype(h, dtype=w_h.dtype)
      x_r, x_z, x_n = jnp.split(projected_t, 3, axis=-1)
      h_r, h_z, h_n = jnp.split(jnp.dot(h_in, w_h), 3, axis=-1)
      r = self.gate_fn(x_r + h_r)
      z = self.gate_fn(x_z + h_z)
      n = self.activation_fn(x_n + r * (h_n + b_hn))
      new_h = (1.0 - z) * n + z * h
      return new_h, new_h

    return scan(step, carry, projected, seq_lengths, flip_back=reverse and keep_order,
                return_carry=return_carry)


# model.cell -> (the hoisted layer, the name flax gives the cell it replaces)
HOISTED = {"lstm": (HoistedLSTM, "OptimizedLSTMCell"), "gru": (HoistedGRU, "GRUCell")}
