"""The interface every model family gives the trainer (see jaxreg/models/__init__.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from jaxreg.models import freezing


@dataclasses.dataclass(frozen=True)
class Model:
  """A Linen module and the batch keys it takes, in order, as positional inputs.

  * ``init(key, batch) -> variables``: ``{'params': ..., <other collections>}``, e.g.
    ``batch_stats`` for BatchNorm; the trainer keeps the non-params collections as
    ``TrainState.model_state``.
  * ``apply(variables, batch, *, train, rngs=None) -> (logits, model_state_updates)``:
    the updates are the new values of the mutable collections in training (``{}`` when
    the model has none, and always ``{}`` in evaluation).
  * ``head``, ``frozen_regex``, ``trainable_regex``: see the fields below.
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
  # The classifier head's parameter paths (a regex): what model.init_from leaves fresh.
  head: str = "^head/"
  # Frozen parameters (jaxreg.models.freezing): those matching `frozen_regex` or not
  # matching `trainable_regex` (train.trainable); '' for none. In training, the layers
  # they make up run in inference mode and their gradient is stopped.
  frozen_regex: str = ""
  trainable_regex: str = ""

  def _kwargs(self, batch) -> dict:
    return {k: batch[k] for k in self.keyword_inputs if k in batch}

  def init(self, key, batch) -> dict:
    return dict(self.module.init(key, *(batch[k] for k in self.inputs), train=False,
                                 **self._kwargs(batch)))

  def apply(self, variables, batch, *, train: bool, rngs=None) -> tuple[Any, dict]:
    is_frozen = freezing.frozen_predicate(self.frozen_regex, self.trainable_regex) \
        if train else None
    if is_frozen is None:
      return self.forward(variables, batch, train=train, rngs=rngs)
    params = freezing.stop_frozen_gradients(variables["params"], is_frozen)
    with freezing.inference_where_frozen(params, is_frozen):
      return self.forward({**variables, "params": params}, batch, train=train, rngs=rngs)

  def forward(self, variables, batch, *, train: bool, rngs=None) -> tuple[Any, dict]:
    """`apply` without the frozen parts (what a family overrides)."""
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
