"""`config.model.family` -> a Model: how the trainer builds, initializes and calls a network.

train.py, evaluate.py and group.py see only this interface, so a model family (RNN text
classifier, BERT through transformers, ResNet) plugs in without touching the loop:

* ``init(key, batch) -> variables``: ``{'params': ..., <other collections>}``, e.g.
  ``batch_stats`` for BatchNorm; the trainer keeps the non-params collections as
  ``TrainState.model_state``.
* ``apply(variables, batch, *, train, rngs=None) -> (logits, model_state_updates)``: the
  updates are the new values of the mutable collections in training (``{}`` when the
  model has none, and always ``{}`` in evaluation).

A family with other needs (BERT: pretrained weights, its own call signature) subclasses
Model and overrides ``init`` / ``apply`` (jaxreg/models/bert.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from jaxreg.config import FAMILIES


@dataclasses.dataclass(frozen=True)
class Model:
  """A Linen module and the batch keys it takes, in order, as positional inputs."""
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


def from_config(config, data) -> Model:
  """The model of `config.model.family` sized to `data` (vocabulary, classes)."""
  family = config.model.family
  if family == "rnn":
    from jaxreg.models import rnn
    return Model(rnn.from_config(config.model, len(data.vocab), data.num_classes))
  if family == "bert":
    from jaxreg.models import bert
    return bert.from_config(config.model, data.num_classes)
  if family == "resnet":
    from jaxreg.models import resnet
    return resnet.from_config(config.model, data.num_classes)
  raise ValueError(f"model.family={family!r} is not one of: {', '.join(FAMILIES)}")
