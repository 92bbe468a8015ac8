"""BERT-family sequence classifiers through transformers' Flax port (model.family='bert').

Any `FlaxAutoModelForSequenceClassification` architecture of transformers 4.57 (BERT,
ELECTRA, RoBERTa, DistilBERT, ALBERT, ...) from `model.pretrained`: a local Hugging Face
directory or a hub name (offline: a name already in the HF cache).

* Weights: the checkpoint's base model (`flax_model.msgpack`, else the PyTorch-layout
  `model.safetensors` / `pytorch_model.bin` converted with `from_pt=True`); the task
  head (every parameter outside the base model: classifier, DistilBERT's
  pre_classifier) is freshly initialized from the run's init key, sized to the classes. A local
  directory holding only `config.json` gives a randomly initialized model (tests).
* Call: the transformers wrapper's own `__call__` with explicit `params`, `dropout_rng`
  and `train`, which fills each architecture's defaults (RoBERTa's position ids from the
  padding id, token types, head mask); it is a pure function and jits.
* Padding: batches carry `tokens` padded with dataset.PAD_ID (0) and `lengths`; the
  attention mask comes from the lengths and the positions past a length are set to the
  tokenizer's pad id (RoBERTa's is 1, and its position ids depend on it).
* Dropout: model.dropout.{hidden,attention,classifier} override the checkpoint's
  rates under each architecture's own config names (-1 keeps the checkpoint's value).
* model.dtype='bfloat16' runs the matmuls in bf16 (transformers' `dtype`); the params
  and the optimizer stay float32 and the logits are cast back to float32.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxreg import pretrained as pretrained_lib
from jaxreg.models.base import Model

log = logging.getLogger(__name__)

# model.dropout.{hidden,attention,classifier} -> each architecture's config attribute.
_DROPOUT_NAMES = {
    "distilbert": ("dropout", "attention_dropout", "seq_classif_dropout"),
    "albert": ("hidden_dropout_prob", "attention_probs_dropout_prob",
               "classifier_dropout_prob"),
}
_DEFAULT_DROPOUT_NAMES = ("hidden_dropout_prob", "attention_probs_dropout_prob",
                          "classifier_dropout")
_WEIGHT_FILES = ("flax_model.msgpack", "model.safetensors", "pytorch_model.bin")


def dropout_names(model_type: str) -> tuple[str, str, str]:
  """(hidden, attention, classifier) dropout attribute names of an HF config."""
  return _DROPOUT_NAMES.get(model_type, _DEFAULT_DROPOUT_NAMES)


def hf_config(model_cfg, num_classes: int):
  """The transformers config of model.pretrained with our classes and dropout rates."""
  # transformers is imported where a BERT is built: jaxreg.models imports this module
  # for every family, and the import takes seconds.
  from transformers import AutoConfig
  cfg = AutoConfig.from_pretrained(pretrained_lib.resolve(model_cfg.pretrained))
  cfg.num_labels = num_classes
  rates = (model_cfg.dropout.hidden, model_cfg.dropout.attention,
           model_cfg.dropout.classifier)
  for name, rate in zip(dropout_names(cfg.model_type), rates):
    if rate >= 0:
      setattr(cfg, name, float(rate))
  return cfg


def _is_random_init(path: str) -> bool:
  p = Path(os.path.expanduser(path))
  return p.is_dir() and not any((p / f).exists() for f in _WEIGHT_FILES)


@functools.lru_cache(maxsize=2)
def _pretrained_state(path: str, dtype: str) -> tuple[str, dict]:
  """(base_model_prefix, flat {path tuple: np.ndarray} of the base model's parameters).

  Only the base model ('bert', 'electra', 'roberta', 'distilbert', 'albert') is kept:
  everything outside it is the task head, which init draws fresh from the run's key,
  even when the checkpoint holds one (another task's head). transformers' from_pt
  conversion needs `_do_init=True` (it reads the random params' layout), so a base-model
  weight the checkpoint lacks comes from transformers' own seed-0 init, as in HF.
  Cached: a sequential sweep loads (and converts) a checkpoint once per process."""
  from transformers import FlaxAutoModelForSequenceClassification  # (see hf_config)
  local = Path(os.path.expanduser(path))
  kwargs = dict(dtype=getattr(jnp, dtype))
  if local.is_dir():
    model = FlaxAutoModelForSequenceClassification.from_pretrained(
        str(local), from_pt=not (local / "flax_model.msgpack").exists(), **kwargs)
  else:
    try:
      model = FlaxAutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except OSError:  # the hub copy has PyTorch weights only
      model = FlaxAutoModelForSequenceClassification.from_pretrained(
          path, from_pt=True, **kwargs)
  prefix = model.base_model_prefix
  base = dict(model.params)[prefix]
  return prefix, {(prefix, *k): np.asarray(v) for k, v in flatten_dict(dict(base)).items()}


@dataclasses.dataclass(frozen=True, eq=False)
class TransformerClassifier(Model):
  """`hf_model`: the transformers Flax wrapper (holds no params: `_do_init=False`)."""
  hf_model: Any = None
  pad_id: int = 0
  # Flat {path tuple: np.ndarray} of the checkpoint's base model, loaded eagerly in
  # from_config (init runs under jit); None = random init (config-only directory).
  pretrained: Any = None

  # Identity: the wrapper and its config are not hashable values, and jit keys
  # TrainState.apply_fn (a bound method of this object) by hash.
  __hash__ = object.__hash__
  __eq__ = object.__eq__

  def init(self, key, batch) -> dict:
    shape = tuple(batch["tokens"].shape)
    params = flatten_dict(dict(self.hf_model.init_weights(key, shape)))
    if self.pretrained is not None:
      fresh = []
      for k, v in params.items():
        if k in self.pretrained and self.pretrained[k].shape == v.shape:
          params[k] = jnp.asarray(self.pretrained[k], v.dtype)
        else:
          fresh.append("/".join(k))
      log.info("fresh (not in the checkpoint): %s", ", ".join(sorted(fresh)))
    return {"params": unflatten_dict(params)}

  def forward(self, variables, batch, *, train: bool, rngs=None):
    tokens, lengths = batch["tokens"], batch["lengths"]
    mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    input_ids = jnp.where(mask, tokens, self.pad_id)
    out = self.hf_model(
        input_ids, attention_mask=mask.astype(jnp.int32), params=variables["params"],
        dropout_rng=(rngs or {}).get("dropout") if train else None, train=train)
    return out.logits.astype(jnp.float32), {}


def from_config(model_cfg, num_classes: int) -> TransformerClassifier:
  # (see hf_config)
  from transformers import AutoTokenizer, FlaxAutoModelForSequenceClassification
  cfg = hf_config(model_cfg, num_classes)
  dtype = str(model_cfg.dtype)
  hf_model = FlaxAutoModelForSequenceClassification.from_config(
      cfg, dtype=getattr(jnp, dtype), _do_init=False)
  path = pretrained_lib.resolve(model_cfg.pretrained)  # `package:` names, `~`
  pad_id = cfg.pad_token_id
  if pad_id is None:
    pad_id = AutoTokenizer.from_pretrained(path).pad_token_id or 0
  pretrained = None if _is_random_init(path) else _pretrained_state(path, dtype)[1]
  # The task head is everything outside the base model (classifier; DistilBERT's
  # pre_classifier too), as in _pretrained_state.
  return TransformerClassifier(module=hf_model.module, hf_model=hf_model,
                               pad_id=int(pad_id), pretrained=pretrained,
                               head=f"^(?!{hf_model.base_model_prefix}/)")
