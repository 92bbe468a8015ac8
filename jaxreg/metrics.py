"""Per-class classification metrics.

Counts are computed on device (inside a jitted eval step) and accumulated as
*sums* across batches, so the final numbers are exact dataset-level statistics
rather than means of batch means (which are biased by uneven/padded batches).
`summarize` turns the fetched counts into a JSON-ready dict on the host.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["batch_counts", "add_counts", "zero_counts", "summarize", "format_table"]


def batch_counts(logits, labels, mask, num_classes: int) -> dict:
  """Confusion matrix and per-true-class loss sum for one batch.

  Args:
    logits: float [B, C].
    labels: int [B], true class ids.
    mask: bool or float [B]; rows where it is False/0 (padding) count nothing.
    num_classes: C (must be static under jit).

  Returns:
    {'confusion': int32 [C, C] (rows = true class, cols = argmax prediction),
     'loss_sum': float32 [C] (summed softmax cross-entropy per true class)}.

  Rows whose label is outside [0, C) are also ignored (they cannot be placed
  in a confusion row); `summarize(...)['num_examples']` lets a caller check
  that nothing was dropped.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim != 2 or logits.shape[-1] != num_classes:
    raise ValueError(f"logits must be [B, {num_classes}], got {logits.shape}")
  if labels.shape != logits.shape[:1]:
    raise ValueError(f"labels must be [{logits.shape[0]}], got {labels.shape}")
  mask = jnp.asarray(mask).astype(bool)
  if mask.shape != labels.shape:
    raise ValueError(f"mask must be {labels.shape}, got {mask.shape}")

  labels = labels.astype(jnp.int32)
  valid = mask & (labels >= 0) & (labels < num_classes)
  # Padding may hold garbage (out-of-range labels give NaN loss in optax,
  # logits may be inf/NaN). Sanitize before the loss, then select with `where`:
  # multiplying by a 0 mask would keep NaN (NaN * 0 = NaN).
  safe_labels = jnp.where(valid, labels, 0)
  safe_logits = jnp.where(valid[:, None], logits.astype(jnp.float32), 0.0)
  loss = optax.softmax_cross_entropy_with_integer_labels(safe_logits, safe_labels)
  loss = jnp.where(valid, loss, 0.0)

  preds = jnp.argmax(safe_logits, axis=-1)
  true_1h = jax.nn.one_hot(safe_labels, num_classes, dtype=jnp.float32)
  true_1h = true_1h * valid[:, None].astype(jnp.float32)
  pred_1h = jax.nn.one_hot(preds, num_classes, dtype=jnp.float32)
  # One-hot matmul contracts over the batch axis, so a batch sharded over a
  # mesh becomes local partial sums + an all-reduce. 0/1 inputs are exact in
  # bf16/tf32 and counts are exact in f32 up to 2**24 per batch; HIGHEST just
  # rules out reduced-precision accumulation on TPU/GPU.
  confusion = jnp.einsum(
      "bt,bp->tp", true_1h, pred_1h,
      precision=jax.lax.Precision.HIGHEST,
      preferred_element_type=jnp.float32,
  )
  confusion = jnp.round(confusion).astype(jnp.int32)
  # Elementwise product + reduction instead of a matmul, so loss values are
  # never rounded to bf16/tf32 by a default-precision dot.
  loss_sum = jnp.sum(true_1h * loss[:, None], axis=0)
  return {"confusion": confusion, "loss_sum": loss_sum.astype(jnp.float32)}


def add_counts(a: dict, b: dict) -> dict:
  """Elementwise sum of two count dicts (accumulate across batches/hosts)."""
  return jax.tree.map(lambda x, y: x + y, a, b)


def zero_counts(num_classes: int) -> dict:
  """Identity element for `add_counts`."""
  return {
      "confusion": jnp.zeros((num_classes, num_classes), jnp.int32),
      "loss_sum": jnp.zeros((num_classes,), jnp.float32),
  }


def _mean_or_none(values: list) -> float | None:
  vals = [v for v in values if v is not None]
  return float(sum(vals) / len(vals)) if vals else None


def summarize(counts: dict, class_names: Sequence[str]) -> dict:
  """Host-side summary of accumulated counts as a JSON-serializable dict.

  Per-class entries are None where undefined (no true examples, or for
  precision: never predicted). Balanced accuracy, worst-class accuracy and
  macro-F1 are taken over classes that have examples in this split only.
  """
  confusion = np.asarray(jax.device_get(counts["confusion"])).astype(np.int64)
  # float64 on the host so the division does not add float32 error.
  loss_sum = np.asarray(jax.device_get(counts["loss_sum"])).astype(np.float64)
  class_names = [str(n) for n in class_names]
  c = len(class_names)
  if confusion.shape != (c, c) or loss_sum.shape != (c,):
    raise ValueError(
        f"counts shapes {confusion.shape}, {loss_sum.shape} do not match "
        f"{c} class names")

  support = confusion.sum(axis=1)    # true-class counts
  predicted = confusion.sum(axis=0)  # predicted-class counts
  tp = np.diag(confusion)
  total = int(confusion.sum())
  if total == 0:
    raise ValueError("cannot summarize: no examples were counted")

  acc, prec, f1, loss = [], [], [], []
  for k in range(c):
    n, npred, t = int(support[k]), int(predicted[k]), int(tp[k])
    acc.append(t / n if n else None)
    prec.append(t / npred if npred else None)
    # 2tp / (2tp + fp + fn) == harmonic mean of precision and recall, and is
    # 0.0 (not undefined) when tp == 0 but the class has examples.
    # npred = tp + fp and n = tp + fn, so the denominator is npred + n.
    f1.append(2 * t / (npred + n) if n else None)
    loss.append(float(loss_sum[k] / n) if n else None)

  present = [a for a in acc if a is not None]
  return {
      "num_examples": total,
      "loss": float(loss_sum.sum() / total),
      "accuracy": float(np.trace(confusion) / total),
      "per_class_accuracy": acc,
      "per_class_precision": prec,
      "per_class_f1": f1,
      "per_class_loss": loss,
      "per_class_count": [int(n) for n in support],
      "balanced_accuracy": _mean_or_none(acc),
      "worst_class_accuracy": float(min(present)),
      "macro_f1": _mean_or_none(f1),
      "confusion_matrix": confusion.tolist(),
      "class_names": class_names,
  }


def _fmt(value: Any, spec: str = ".4f") -> str:
  if value is None:
    return "-"
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return format(value, spec)


def format_worst_first(evaluation: dict) -> str:
  """The per-class table printed at the end of a run: class, n (its examples),
  correct and accuracy, worst accuracy first (ties in class order; classes without
  examples last), from `summarize`."""
  names = evaluation["class_names"]
  accs = evaluation["per_class_accuracy"]
  confusion = evaluation["confusion_matrix"]
  order = sorted(range(len(names)),
                 key=lambda k: (accs[k] is None, accs[k] or 0.0, k))
  headers = ["class", "n", "correct", "accuracy"]
  rows = [[names[k], str(evaluation["per_class_count"][k]), str(confusion[k][k]),
           _fmt(accs[k])] for k in order]
  widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

  def line(cells):
    return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(cells, widths)))

  return "\n".join([line(headers), "  ".join("-" * w for w in widths),
                    *(line(r) for r in rows)])


def format_table(evaluation: dict) -> str:
  """Human-readable per-class table plus overall lines, from `summarize`."""
  names = evaluation["class_names"]
  headers = ["class", "count", "accuracy", "precision", "f1", "loss"]
  rows = []
  for k, name in enumerate(names):
    rows.append([
        name,
        str(evaluation["per_class_count"][k]),
        _fmt(evaluation["per_class_accuracy"][k]),
        _fmt(evaluation["per_class_precision"][k]),
        _fmt(evaluation["per_class_f1"][k]),
        _fmt(evaluation["per_class_loss"][k]),
    ])
  widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

  def line(cells):
    # Class name left-aligned, numbers right-aligned.
    return "  ".join(
        cell.ljust(w) if i == 0 else cell.rjust(w)
        for i, (cell, w) in enumerate(zip(cells, widths)))

  out = [line(headers), "  ".join("-" * w for w in widths)]
  out += [line(r) for r in rows]

  accs = evaluation["per_class_accuracy"]
  worst = evaluation["worst_class_accuracy"]
  # First class (in class order) attaining the minimum over present classes.
  worst_name = next(
      (n for n, a in zip(names, accs) if a is not None and a == worst), "-")
  out += [
      "",
      f"examples:             {evaluation['num_examples']}",
      f"loss:                 {_fmt(evaluation['loss'])}",
      f"accuracy:             {_fmt(evaluation['accuracy'])}",
      f"balanced accuracy:    {_fmt(evaluation['balanced_accuracy'])}",
      f"macro-F1:             {_fmt(evaluation['macro_f1'])}",
      f"worst-class accuracy: {_fmt(worst)} ({worst_name})",
  ]
  return "\n".join(out)
