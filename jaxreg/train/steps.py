"""Pure step functions: (state, batch, counts) -> (state, counts, metrics) and evaluation.

Nothing here knows about devices or batches: a feed (jaxreg/feeds.py) jits a model's
`Steps` for one run, and vmaps them for a group, over the mesh."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxreg import metrics
from jaxreg.train.state import TrainState


def loss_and_logits(params, apply_fn, batch, *, train: bool, dropout_key=None,
                    model_state=None):
  """-> (mean loss over real examples, (logits, model_state updates)).

  `apply_fn` is a `models.Model.apply`; `model_state` its non-params collections."""
  rngs = {"dropout": dropout_key} if train else None
  logits, updates = apply_fn({"params": params, **(model_state or {})}, batch,
                             train=train, rngs=rngs)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
  mask = batch["mask"].astype(ce.dtype)
  # Mean over real examples only: padding rows of the last batch carry no weight.
  return jnp.sum(ce * mask) / jnp.maximum(mask.sum(), 1.0), (logits, updates)


def train_step(state: TrainState, batch, counts, *, num_classes: int):
  """One optimizer step; also accumulates the training confusion matrix."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  grad_fn = jax.value_and_grad(
      functools.partial(loss_and_logits, apply_fn=state.apply_fn, batch=batch,
                        train=True, dropout_key=key, model_state=state.model_state),
      has_aux=True)
  (loss, (logits, updates)), grads = grad_fn(state.params)
  state = state.apply_gradients(grads=grads)
  if updates:
    state = state.replace(model_state={**state.model_state, **updates})
  counts = metrics.add_counts(
      counts, metrics.batch_counts(logits, batch["labels"], batch["mask"], num_classes))
  return state, counts, {"loss": loss, "grad_norm": optax.global_norm(grads)}


def member_train_step(state: TrainState, values: dict, batch, counts, *, model,
                      num_classes: int):
  """`train_step` of one member of a vmapped group: its model rebuilt with its own
  traced field values (`values`: module field -> value, models.Family.traced, e.g.
  dropout rates), the rest of the state as it is."""
  member = model.with_values(**values)
  state, counts, out = train_step(state.replace(apply_fn=member.apply), batch, counts,
                                  num_classes=num_classes)
  return state.replace(apply_fn=model.apply), counts, out


def eval_step(variables, batch, counts, *, apply_fn, num_classes: int):
  """`variables`: {'params': ..., **model_state} (see `eval_variables`)."""
  _, (logits, _) = loss_and_logits(variables["params"], apply_fn, batch, train=False,
                                   model_state={k: v for k, v in variables.items()
                                                if k != "params"})
  return metrics.add_counts(
      counts, metrics.batch_counts(logits, batch["labels"], batch["mask"], num_classes))


def predict_step(variables, batch, counts, *, apply_fn, num_classes: int):
  """`eval_step` that also returns each example's argmax class (per-example test
  predictions for the report's paired tests)."""
  _, (logits, _) = loss_and_logits(
      variables["params"], apply_fn, batch, train=False,
      model_state={k: v for k, v in variables.items() if k != "params"})
  counts = metrics.add_counts(counts, metrics.batch_counts(
      logits, batch["labels"], batch["mask"], num_classes))
  return counts, jnp.argmax(logits, axis=-1).astype(jnp.int32)


def eval_variables(state: TrainState) -> dict:
  """What evaluation reads of a train state: params and the model's collections."""
  return {"params": state.params, **state.model_state}


@dataclasses.dataclass(frozen=True)
class Steps:
  """One model's pure steps, bound to it and its number of classes (what a feed jits).

  train(state, batch, counts), member_train(state, values, batch, counts) (values: the
  member's traced module fields), eval(variables, batch, counts) -> counts,
  predict(variables, batch, counts) -> (counts, class ids)."""
  train: Callable
  member_train: Callable
  eval: Callable
  predict: Callable


def bind(model, num_classes: int) -> Steps:
  return Steps(
      train=functools.partial(train_step, num_classes=num_classes),
      member_train=functools.partial(member_train_step, model=model,
                                     num_classes=num_classes),
      eval=functools.partial(eval_step, apply_fn=model.apply, num_classes=num_classes),
      predict=functools.partial(predict_step, apply_fn=model.apply,
                                num_classes=num_classes))
