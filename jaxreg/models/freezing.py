"""Frozen parameters (train.trainable, model.freeze_embeddings) and the layers that run
in inference mode in training because of them.

`frozen_predicate` is the one reading of which parameters are frozen (jaxreg/optim.py
gives them exactly zero update). `Model.apply` (jaxreg/models/base.py) uses `frozen_apply`
in training so that the frozen part of the network computes what it computes at
inference, whatever the family:

* a layer that holds parameters, all of them frozen, is called in inference mode: a
  BatchNorm layer whose scale and bias are frozen normalizes with its running statistics
  and leaves them as they are (`use_running_average=True`); a layer taking a
  `deterministic` argument (the transformers Flax modules: attention, dropout inside
  them) gets `deterministic=True`;
* a layer without parameters (a dropout layer) follows the layer called just before it
  in the same parent module, i.e. the one whose output it drops: off after a frozen
  embedding, RNN, ResNet stage or BERT encoder, on after a trained layer. So with
  train.trainable='^head/' (a linear probe) the head sees exactly the upstream model's
  inference features, and no dropout runs.

flax has no per-layer train flag, so this intercepts the module calls
(`flax.linen.intercept_methods`) and sets the layer's own inference arguments. Frozen
parameters also pass through `jax.lax.stop_gradient`: their gradient is exactly zero
(so it weighs nothing in the logged grad_norm) and XLA skips the backward pass through a
frozen backbone.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from typing import Any, Callable, Optional

import flax.linen as nn
import jax

# The call arguments that put a layer in inference mode.
_INFERENCE_ARGS = {"use_running_average": True, "deterministic": True}


def frozen_predicate(frozen: Optional[str] = None, trainable: Optional[str] = None
                     ) -> Optional[Callable[[str], bool]]:
  """path -> True when the parameter at that '/'-joined path is frozen: it matches
  `frozen` (model.freeze_embeddings' regex), or `trainable` (train.trainable) is given
  and it does not match it (re.search); None when nothing is frozen."""
  if not frozen and not trainable:
    return None
  f = re.compile(frozen) if frozen else None
  t = re.compile(trainable) if trainable else None
  return lambda path: bool((f is not None and f.search(path)) or
                           (t is not None and not t.search(path)))


def _key(k: Any) -> str:
  return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))


def _paths(params) -> list[tuple[str, ...]]:
  return [tuple(_key(k) for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def stop_frozen_gradients(params, is_frozen: Callable[[str], bool]):
  """`params` with jax.lax.stop_gradient on every frozen leaf."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: jax.lax.stop_gradient(x)
      if is_frozen("/".join(_key(k) for k in path)) else x, params)


@contextlib.contextmanager
def inference_where_frozen(params, is_frozen: Callable[[str], bool]):
  """Within the block, module calls run in inference mode where frozen (module doc).
  `params`: the params collection being applied (only its paths are read)."""
  frozen = {p: is_frozen("/".join(p)) for p in _paths(params)}

  def all_frozen(prefix: tuple[str, ...]) -> bool | None:
    """True/False: whether every parameter under `prefix` is frozen; None: none."""
    under = [f for p, f in frozen.items() if p[:len(prefix)] == prefix]
    return all(under) if under else None

  last: dict[tuple[str, ...], tuple[str, ...]] = {}  # parent -> last child with params

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    path = tuple(str(p) for p in context.module.path)
    state = all_frozen(path)
    if state is None:  # no parameters: it follows the layer before it
      before = last.get(path[:-1])
      state = all_frozen(before) if before is not None else None
    else:
      last[path[:-1]] = path
    if state:
      args, kwargs = _inference_arguments(context.module, args, kwargs)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    yield


def _inference_arguments(module, args, kwargs):
  """(args, kwargs) of a module call with its inference-mode arguments set."""
  try:
    sig = inspect.signature(type(module).__call__)
    bound = sig.bind(module, *args, **kwargs)
  except (TypeError, ValueError):
    return args, kwargs
  changed = False
  for name, value in _INFERENCE_ARGS.items():
    if name in sig.parameters:
      bound.arguments[name] = value
      changed = True
  if not changed:
    return args, kwargs
  return bound.args[1:], bound.kwargs
