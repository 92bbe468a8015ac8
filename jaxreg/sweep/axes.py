"""A sweep's axes: `--axis=KEY=VALUES` parsed and checked against the config, and the
short exact text of a value (run names, sweep.json, the report)."""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

from jaxreg import config as config_lib, records

DISTRIBUTIONS = ("loguniform", "uniform", "choice")
# Keys that are replicates rather than settings: the report averages over them and
# pairs runs by them (data.split_seed: repeated hold-out; data.fold: k-fold).
REPLICATE_KEYS = ("seed", "data.split_seed", "data.fold")
FOLD_KEY = "data.fold"
# A sweep over an upstream sweep's runs (--upstream) records each upstream run's axis
# values under this prefix (upstream.seed, upstream.reg.l2): labels, not config keys.
UPSTREAM_PREFIX = records.UPSTREAM_PREFIX


def is_replicate(key: str) -> bool:
  """Whether `key` is a replicate axis, of this sweep or of an upstream one
  ('seed', 'upstream.seed', 'upstream.data.fold')."""
  while key.startswith(UPSTREAM_PREFIX):
    key = key[len(UPSTREAM_PREFIX):]
  return key in REPLICATE_KEYS


class SweepError(ValueError):
  """Bad sweep input; the message is one line for the user (exit code 2)."""


@dataclasses.dataclass(frozen=True)
class Axis:
  """One swept key: explicit `values`, or a distribution for random search."""
  key: str
  kind: str                  # 'values' | 'choice' | 'loguniform' | 'uniform'
  values: tuple = ()         # for 'values' and 'choice'
  low: float | None = None   # for the continuous distributions
  high: float | None = None
  type_name: str = "float"   # the config key's type: bool, int, float, str

  def to_json(self) -> dict:
    """The axis as sweep.json records it."""
    d = {"key": self.key, "kind": self.kind, "type": self.type_name}
    if self.kind in ("values", "choice"):
      d["values"] = list(self.values)
    else:
      d["low"], d["high"] = self.low, self.high
    return d

  @classmethod
  def from_json(cls, d: dict) -> "Axis":
    return cls(d["key"], d["kind"], tuple(d.get("values", ())), d.get("low"),
               d.get("high"), d["type"])

  def describe(self) -> str:
    """The axis as --axis takes it: '0,0.001', 'choice:adam,sgd', 'uniform:0:1'."""
    if self.kind in ("values", "choice"):
      body = ",".join(format_value(v) for v in self.values)
      return body if self.kind == "values" else f"choice:{body}"
    return f"{self.kind}:{format_value(self.low)}:{format_value(self.high)}"


def load_axes(meta: dict) -> list[Axis]:
  """The Axis objects recorded in a sweep.json."""
  return [Axis.from_json(a) for a in meta["axes"]]


def format_value(value) -> str:
  """Short, exact text of an axis value ('0', '0.0001', '1e-05', 'true', 'adam')."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    short = f"{value:g}"
    return short if float(short) == value else repr(value)
  return str(value)


def display_value(value) -> str:
  """format_value for people: an empty string (model.resnet.bn_stages='' is no
  BatchNorm) prints as '' rather than nothing. Not for run names or the plan record."""
  return "''" if value == "" else format_value(value)


def display_values(values: dict) -> str:
  """'reg.l2=0.001 seed=2': a point of the sweep in progress lines."""
  return " ".join(f"{k}={display_value(v)}" for k, v in values.items())


def config_leaf(config, key: str):
  """The value of a dotted config key; SweepError naming the key if it is not one."""
  message = config_lib.unknown_key(config, key)
  if message:
    raise SweepError(f"--axis: {message}")
  node = config
  for part in key.split("."):
    node = node[part]
  if hasattr(node, "keys"):
    raise SweepError(f"--axis: {key!r} is a group of keys "
                     f"({', '.join(sorted(map(str, node.keys())))}), not a value")
  return node


def _type_name(value) -> str:
  for t in (bool, int, float, str):  # bool before int: True is an int
    if isinstance(value, t):
      return t.__name__
  raise SweepError(f"cannot sweep a key of type {type(value).__name__}")


def cast_value(key: str, text: str, type_name: str):
  """`text` as the config key's type; SweepError naming the key and value if not."""
  text = text.strip()
  if type_name == "bool":
    low = text.lower()
    if low in ("true", "1", "yes"):
      return True
    if low in ("false", "0", "no"):
      return False
    raise SweepError(f"--axis={key}: {text!r} is not a bool (true or false)")
  if type_name == "int":
    try:
      return int(text)
    except ValueError:
      pass
    try:
      f = float(text)
    except ValueError:
      f = math.nan
    if math.isfinite(f) and f.is_integer():
      return int(f)
    raise SweepError(f"--axis={key}: {text!r} is not an integer ({key} is an int)")
  if type_name == "float":
    try:
      return float(text)
    except ValueError:
      raise SweepError(f"--axis={key}: {text!r} is not a number") from None
  if not text and type_name != "str":
    raise SweepError(f"--axis={key}: empty value")
  return text


def parse_axis(spec: str, config) -> Axis:
  """'KEY=VALUES' -> Axis, checked against `config` (the key exists; values cast)."""
  key, sep, body = spec.partition("=")
  key = key.strip()
  if not sep or not key:
    raise SweepError(f"--axis={spec!r} must be KEY=VALUES, e.g. "
                     "--axis=reg.weight_decay=0,1e-4,1e-3")
  type_name = _type_name(config_leaf(config, key))
  head, colon, rest = body.partition(":")
  kind = head.strip() if colon and head.strip() in DISTRIBUTIONS else "values"
  if kind in ("loguniform", "uniform"):
    bounds = rest.split(":")
    if type_name not in ("int", "float"):
      raise SweepError(f"--axis={key}: {kind} needs a numeric key ({key} is a "
                       f"{type_name})")
    if len(bounds) != 2:
      raise SweepError(f"--axis={key}={body}: write {kind}:LOW:HIGH")
    low, high = (cast_value(key, b, "float") for b in bounds)
    if not low < high or (kind == "loguniform" and low <= 0):
      need = "0 < LOW < HIGH" if kind == "loguniform" else "LOW < HIGH"
      raise SweepError(f"--axis={key}={body}: {kind} needs {need}")
    return Axis(key, kind, low=low, high=high, type_name=type_name)
  text = rest if kind == "choice" else body
  raw = text.split(";") if ";" in text else text.split(",")
  if not text.strip() or any(not r.strip() for r in raw) and type_name != "str":
    raise SweepError(f"--axis={key}: no values (write {key}=V1,V2,...)")
  values = []
  for r in raw:
    v = cast_value(key, r, type_name)
    if v not in values:
      values.append(v)
  return Axis(key, kind, values=tuple(values), type_name=type_name)


def parse_axes(specs: Iterable[str], config) -> list[Axis]:
  axes = [parse_axis(s, config) for s in specs]
  if not axes:
    raise SweepError("give at least one --axis=KEY=VALUES, e.g. "
                     "--axis=reg.weight_decay=0,1e-4,1e-3")
  keys = [a.key for a in axes]
  dup = sorted({k for k in keys if keys.count(k) > 1})
  if dup:
    raise SweepError(f"--axis: {', '.join(dup)} given more than once")
  return axes


def add_folds(config, axes: list[Axis], folds: int) -> list[Axis]:
  """--folds=K: sets data.folds=K in `config` and returns the axes with a last axis
  data.fold=0..K-1, so each point runs once per fold (a replicate for the report)."""
  if folds == 0:
    return list(axes)
  if folds < 2:
    raise SweepError(f"--folds={folds} must be 0 (the held-out data.val_fraction) or "
                     ">= 2")
  taken = [a.key for a in axes if a.key in ("data.folds", FOLD_KEY)]
  if taken:
    raise SweepError(f"--axis={taken[0]} and --folds set the same thing; give one")
  config.data.folds = folds
  return [*axes, Axis(FOLD_KEY, "values", values=tuple(range(folds)),
                      type_name="int")]
