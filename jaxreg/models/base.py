"""The interface every model family gives the trainer (see jaxreg/models/__init__.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn


@dataclasses.dataclass(frozen=True)
class Model:
  """A Linen module and the batch keys it takes, in order, as positional inputs.

  * ``init(key, batch) -> variables``: ``{'params': ..., <other collections>}``, e.g.
    ``batch_stats`` for BatchNorm; the trainer keeps the non-params collections as
    ``TrainState.model_state``.
  * ``apply(variables, batch, *, train, rngs=None) -> (logits, model_state_updates)``:
    the updates are the new values of the mutable collections in training (``{}`` when
    the model has none, and always ``{}`` in evaluation).
  * ``with_values(**fields)``: the same model whose module has other values in the
    fields its family traces (``Family.traced``), e.g. a group member's dropout rates
    as traced arrays.
  """
  module: nn.Module
  inputs: tuple[str, ...] = ("tokens", "lengths")
  # Collections updated in training (BatchNorm: ('batch_stats',)).
  mutable: tuple[str, ...] = ()
  # Batch keys passed as keyword arguments when the batch has them (ResNet: 'mask',
  # so BatchNorm's statistics leave out the padding rows of a last batch).
  keyword_inputs: tuple[str, ...] = ()

  def _kwargs(self, batch) -> dict:
    return {k: batch[k] for k in self.keyword_inputs if k in batch}

  def init(self, key, batch) -> dict:
    return dict(self.module.init(key, *(batch[k] for k in self.inputs), train=False,
                                 **self._kwargs(batch)))

  def apply(self, variables, batch, *, train: bool, rngs=None) -> tuple[Any, dict]:
    args = [batch[k] for k in self.inputs]
    kwargs = self._kwargs(batch)
    if train and self.mutable:
      logits, updates = self.module.apply(variables, *args, train=True, rngs=rngs,
                                          mutable=list(self.mutable), **kwargs)
      return logits, dict(updates)
    return self.module.apply(variables, *args, train=train, rngs=rngs, **kwargs), {}

  def with_values(self, **fields) -> Model:
    if not fields:
      return self
    return dataclasses.replace(self, module=self.module.clone(**fields))
