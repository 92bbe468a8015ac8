"""`config.model.family` -> a Model: how the trainer builds, initializes and calls a network,
and what a vmapped group of its runs may vary.

The trainer (jaxreg/train/) sees only the `Model` interface (jaxreg/models/base.py), so
a family (RNN text classifier, BERT through transformers, ResNet) plugs in without
touching the loop. A family with other needs (BERT: pretrained weights, its own call
signature) subclasses Model and overrides ``init`` / ``apply``.

Each family also declares (`Family`) what the runs of a vmapped group (jaxreg/group.py)
may vary besides the optimizer's strengths, which every family carries in
``opt_state.hyperparams``:

* ``traced``: config key -> module field that accepts a traced value (one per member):
  RNN: its three dropout rates; ResNet: its dropout rate; BERT: none (transformers'
  dropout layers test their Python rates).
* ``padding_free_masks``: whether dropout masks stay the same when a batch is padded
  wider. Members with different seeds draw different batches, which a group pads to
  the widest; only a family whose masks do not depend on that width (RNN: per-position
  masks; ResNet: images have one shape) can group runs of different seeds on bucketed
  batches. BERT's masks are drawn for the whole [B, T, D] shape, so its group members
  share one seed unless every batch has the same width (data.buckets='').
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

from jaxreg.config import FAMILIES
from jaxreg.models import bert, resnet, rnn
from jaxreg.models.base import Model

__all__ = ["Family", "Model", "family", "from_config"]


@dataclasses.dataclass(frozen=True)
class Family:
  build: Callable[..., Model]       # (config, data) -> Model
  traced: Mapping[str, str]         # config key -> module field a member may vary
  padding_free_masks: bool


_FAMILIES = {
    "rnn": Family(
        lambda config, data: Model(rnn.from_config(config.model, len(data.vocab),
                                                   data.num_classes)),
        rnn.TRACED, padding_free_masks=True),
    "bert": Family(lambda config, data: bert.from_config(config.model, data.num_classes),
                   {}, padding_free_masks=False),
    "resnet": Family(lambda config, data: resnet.from_config(config.model,
                                                             data.num_classes),
                     resnet.TRACED, padding_free_masks=True),
}


def family(name: str) -> Family:
  if name not in _FAMILIES:
    raise ValueError(f"model.family={name!r} is not one of: {', '.join(FAMILIES)}")
  return _FAMILIES[name]


def from_config(config, data) -> Model:
  """The model of `config.model.family` sized to `data` (vocabulary, classes); with
  train.trainable, the parameters it leaves out are frozen and their layers run in
  inference mode in training (jaxreg.models.freezing). model.freeze_embeddings is left
  to the optimizer (zero update) and keeps its embedding dropout, as it always did."""
  model = family(config.model.family).build(config, data)
  trainable = str(config.get("train", {}).get("trainable", "") or "")
  if not trainable:
    return model
  return dataclasses.replace(model, trainable_regex=trainable)
