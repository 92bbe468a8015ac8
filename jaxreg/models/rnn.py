"""RNN, GRU and LSTM text classifiers over `nn.RNN` scans.

Padded batches with per-example lengths, no packing: `nn.RNN(..., seq_lengths=...)`
returns each sequence's carry at its last valid step (the backward direction of
`nn.Bidirectional` reverses only the valid part), so padding never reaches the
sentence representation. Outputs past a sequence's length are not zeroed by flax,
so every pooling masks them.

`dtype` is the compute dtype (`model.dtype`): embeddings, the cells' matmuls and the
pooling run in it (bfloat16 on GPUs), while parameters, the recurrent carry and the
logits stay float32 (flax's cells keep a float32 carry; the Elman cell is cast back
to it, `SimpleCell`) and the head computes in float32.

`hoist_input` (`model.hoist_input`, for GPUs): each LSTM or GRU direction computes its
input projection for all positions before the scan (`rnn_hoisted.py`), with the same
parameters as the flax cell it replaces.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxreg.models.layers import Dropout
from jaxreg.models.rnn_hoisted import HOISTED

# Config keys a vmapped group member may vary -> TextClassifier fields (models.Family).
TRACED = {"model.dropout.embed": "embed_dropout", "model.dropout.between": "between_dropout",
          "model.dropout.output": "output_dropout"}

class SimpleCell(nn.SimpleCell):
  """nn.SimpleCell whose new carry keeps the carry's dtype: in bfloat16 its output
  would change the scan carry's dtype (which jax.lax.scan refuses). Named as flax's
  cell, so its parameters keep their paths (`SimpleCell_0/...`) and old checkpoints
  load."""

  def __call__(self, carry, inputs):
    new_carry, _ = super().__call__(carry, inputs)
    new_carry = new_carry.astype(carry.dtype)
    return new_carry, new_carry


_CELLS = {
    "rnn": SimpleCell,
    "gru": nn.GRUCell,
    "lstm": nn.OptimizedLSTMCell,  # fuses the four gate matmuls
}


def _hidden(carry):
  """The hidden state h of a cell's carry (an LSTM carries (c, h))."""
  return carry[1] if isinstance(carry, tuple) else carry


class TextClassifier(nn.Module):
  vocab_size: int
  num_classes: int
  cell: str = "lstm"
  embed_size: int = 64
  hidden_size: int = 64
  num_layers: int = 1
  bidirectional: bool = False
  pooling: str = "last"            # last | mean | max | attention
  embed_dropout: float = 0.0
  between_dropout: float = 0.0     # between stacked RNN layers
  output_dropout: float = 0.0      # on the sentence vector, before the head
  dtype: Any = jnp.float32         # compute dtype (module doc)
  hoist_input: bool = False        # lstm, gru: x @ W_i for all steps before the scan

  @nn.compact
  def __call__(self, tokens, lengths, *, train: bool = False):
    """tokens int [B, T] (0 = padding), lengths int [B] -> logits [B, num_classes]."""
    deterministic = not train
    mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]  # [B, T]
    x = nn.Embed(self.vocab_size, self.embed_size, dtype=self.dtype,
                 name="embed")(tokens)
    # Masks per position (position_axis=1): the same at any padded width, so bucketing
    # and a vmapped group's padding to its widest member never change them.
    x = Dropout(self.embed_dropout, position_axis=1)(x, deterministic)
    carry = None
    for layer in range(self.num_layers):
      if layer > 0:
        x = Dropout(self.between_dropout, position_axis=1)(x, deterministic)
      carry, x = self._layer(layer)(x, seq_lengths=lengths)
    sentence = self._pool(x, carry, mask)
    sentence = Dropout(self.output_dropout)(sentence, deterministic)
    return nn.Dense(self.num_classes, name="head")(sentence.astype(jnp.float32))

  def _layer(self, layer: int):
    if self.hoist_input:
      return self._hoisted_layer(layer)
    cell_type = _CELLS[self.cell]
    forward = nn.RNN(cell_type(self.hidden_size, dtype=self.dtype), return_carry=True,
                     name=f"rnn{layer}")
    if not self.bidirectional:
      return forward
    backward = nn.RNN(cell_type(self.hidden_size, dtype=self.dtype), return_carry=True,
                      name=f"rnn{layer}_bwd")
    # flax runs the backward direction with keep_order=True: outputs stay aligned.
    return nn.Bidirectional(forward, backward, return_carry=True,
                            name=f"birnn{layer}")

  def _hoisted_layer(self, layer: int):
    """The layer of `_layer` with the input projection before the scan (rnn_hoisted.py).
    Each direction is named as the cell it replaces: the cells above are created in
    this module's scope, flax names them <Cell>_<n> in creation order (layer by layer,
    forward before backward), and a parameter's path decides both where a checkpoint
    keeps it and its initial value."""
    if self.cell not in HOISTED:
      raise ValueError(f"model.hoist_input=True needs model.cell in: "
                       f"{', '.join(HOISTED)} (got {self.cell!r})")
    layer_type, cell_name = HOISTED[self.cell]
    directions = 2 if self.bidirectional else 1
    forward, *backward = [
        layer_type(self.hidden_size, dtype=self.dtype,
                   name=f"{cell_name}_{directions * layer + d}")
        for d in range(directions)]
    if not self.bidirectional:
      return forward
    return nn.Bidirectional(forward, backward[0], return_carry=True,
                            name=f"birnn{layer}")

  def _pool(self, outputs, carry, mask):
    if self.pooling == "last":
      if self.bidirectional:  # forward's last valid step, backward's first
        fwd, bwd = carry
        return jnp.concatenate([_hidden(fwd), _hidden(bwd)], axis=-1)
      return _hidden(carry)
    m = mask[..., None].astype(outputs.dtype)
    if self.pooling == "mean":
      return (outputs * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    if self.pooling == "max":
      return jnp.where(mask[..., None], outputs, -jnp.inf).max(1)
    if self.pooling == "attention":
      scores = nn.Dense(1, name="attention")(jnp.tanh(
          nn.Dense(outputs.shape[-1], name="attention_proj")(outputs)))[..., 0]
      scores = jnp.where(mask, scores, -jnp.inf)
      weights = jax.nn.softmax(scores, axis=-1)
      return jnp.einsum("bt,btd->bd", weights, outputs)
    raise ValueError(f"model.pooling={self.pooling!r} is not one of: "
                     "last, mean, max, attention")


def from_config(model_cfg, vocab_size: int, num_classes: int) -> TextClassifier:
  return TextClassifier(
      vocab_size=vocab_size, num_classes=num_classes, cell=model_cfg.cell,
      embed_size=model_cfg.embed_size, hidden_size=model_cfg.hidden_size,
      num_layers=model_cfg.num_layers, bidirectional=model_cfg.bidirectional,
      pooling=model_cfg.pooling, embed_dropout=model_cfg.dropout.embed,
      between_dropout=model_cfg.dropout.between,
      output_dropout=model_cfg.dropout.output, dtype=jnp.dtype(model_cfg.dtype),
      hoist_input=model_cfg.hoist_input)
