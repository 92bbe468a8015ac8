"""Keras-style early stopping on one validation metric (host-side, immutable).

Not flax.training.early_stopping.EarlyStopping (read in flax 0.12.8): it only minimizes
(`best_metric - metric > min_delta`), and it tests `patience_count >= patience` BEFORE
incrementing the count, so it stops after patience + 1 non-improving updates (patience=2:
on the 3rd; patience=0: on the 1st, so 0 cannot mean "never"). It also does not record
the step of the best value, which the "best" checkpoint needs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

MODES = ("min", "max")


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """An evaluation improves when value > best + min_delta (mode 'max') or
  value < best - min_delta (mode 'min'); the first (non-NaN) evaluation always improves;
  a NaN never improves. `bad_evals` counts consecutive non-improving evaluations (an
  improvement resets it to 0), and should_stop == (patience > 0 and bad_evals >=
  patience): with patience=2 it turns True right after the 2nd consecutive
  non-improving evaluation. patience=0 means never stop. An evaluation improved iff
  `new.best_step == step`.

  The config is validated at entry (jaxreg.config); the checks here guard the other
  way in, a checkpoint's meta (`from_dict`).
  """
  metric: str
  mode: str = "max"
  patience: int = 0
  min_delta: float = 0.0
  best: Optional[float] = None
  best_step: Optional[int] = None
  bad_evals: int = 0
  should_stop: bool = False

  def __post_init__(self):
    if not isinstance(self.metric, str) or not self.metric:
      raise ValueError(f"early_stopping.metric={self.metric!r} must be a metric name")
    if self.mode not in MODES:
      raise ValueError(f"early_stopping.mode={self.mode!r} is not one of: "
                       f"{', '.join(MODES)}")
    patience, min_delta = self.patience, self.min_delta
    if isinstance(patience, bool) or not float(patience).is_integer() or patience < 0:
      raise ValueError(f"early_stopping.patience={patience!r} must be an integer >= 0")
    if isinstance(min_delta, bool) or not math.isfinite(min_delta) or min_delta < 0:
      raise ValueError(f"early_stopping.min_delta={min_delta!r} must be >= 0")
    # Normalized types (frozen dataclass, hence object.__setattr__).
    object.__setattr__(self, "patience", int(patience))
    object.__setattr__(self, "min_delta", float(min_delta))

  @classmethod
  def from_config(cls, es_cfg) -> EarlyStopping:
    """config.train.early_stopping -> a fresh stopper."""
    return cls(metric=es_cfg.metric, mode=es_cfg.mode, patience=es_cfg.patience,
               min_delta=es_cfg.min_delta)

  def improves(self, value: float) -> bool:
    value = float(value)
    if math.isnan(value):
      return False
    if self.best is None:
      return True
    if self.mode == "max":
      return value > self.best + self.min_delta
    return value < self.best - self.min_delta

  def update(self, value: float, step: int) -> EarlyStopping:
    value = float(value)
    if self.improves(value):
      return dataclasses.replace(self, best=value, best_step=int(step), bad_evals=0,
                                 should_stop=False)
    bad = self.bad_evals + 1
    return dataclasses.replace(self, bad_evals=bad,
                               should_stop=self.patience > 0 and bad >= self.patience)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> EarlyStopping:
    known = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(d) - known)
    if extra:
      raise ValueError(f"EarlyStopping.from_dict: unknown keys {extra}")
    return cls(
        metric=str(d["metric"]),
        mode=str(d.get("mode", "max")),
        patience=int(d.get("patience", 0)),
        min_delta=float(d.get("min_delta", 0.0)),
        best=None if d.get("best") is None else float(d["best"]),
        best_step=None if d.get("best_step") is None else int(d["best_step"]),
        bad_evals=int(d.get("bad_evals", 0)),
        should_stop=bool(d.get("should_stop", False)),
    )
