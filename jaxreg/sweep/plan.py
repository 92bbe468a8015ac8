"""A sweep's plan: its points (grid or random search), their run names, configs and
directories, and sweep.json, written before anything trains and checked on a rerun."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from jaxreg import config as config_lib, io, lock, records
from jaxreg.sweep.axes import (FOLD_KEY, UPSTREAM_PREFIX, Axis, SweepError,
                               format_value)

SIGNIFICANT_DIGITS = 4  # random draws are rounded to this many


# ------------------------------------------------------------------ points


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def run_name(values: dict) -> str:
  """A readable, filesystem-safe directory name, e.g. 'reg.weight_decay=0.001__seed=2'."""
  name = "__".join(f"{k}={_UNSAFE.sub('_', format_value(v))}" for k, v in values.items())
  if len(name) > 200:
    digest = hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{name[:180]}__{digest}"
  return name


def _round(value: float, type_name: str):
  if type_name == "int":
    return int(round(value))
  return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _sample(axis: Axis, rng) -> Any:
  if axis.kind in ("values", "choice"):
    return axis.values[int(rng.integers(len(axis.values)))]
  if axis.kind == "uniform":
    return _round(rng.uniform(axis.low, axis.high), axis.type_name)
  return _round(math.exp(rng.uniform(math.log(axis.low), math.log(axis.high))),
                axis.type_name)


def expand(axes: Sequence[Axis], budget: int = 0, sampler_seed: int = 0) -> list[dict]:
  """The sweep's points, each {key: value} in axis order.

  budget == 0: the grid (cartesian product, first axis outermost). budget > 0: that
  many distinct random points (fewer if the space has fewer), deterministic in
  `sampler_seed`.
  """
  if budget < 0:
    raise SweepError(f"--budget={budget} must be >= 0 (0: grid)")
  if budget == 0:
    continuous = [a.key for a in axes if a.kind in ("loguniform", "uniform")]
    if continuous:
      raise SweepError(f"--axis={continuous[0]} is a distribution: random search "
                       "needs --budget=N")
    return [dict(zip([a.key for a in axes], combo))
            for combo in itertools.product(*(a.values for a in axes))]
  # k-fold (--folds) is not sampled: every drawn point runs on every fold
  folds = [a for a in axes if a.key == FOLD_KEY]
  drawn = [a for a in axes if a.key != FOLD_KEY]
  rng = np.random.default_rng(sampler_seed)
  points, names = [], set()
  attempts = 0
  while len(points) < budget and attempts < 100 * budget + 1000:
    attempts += 1
    point = {a.key: _sample(a, rng) for a in drawn}
    name = run_name(point)
    if name not in names:
      names.add(name)
      points.append(point)
  if folds:
    keys = [a.key for a in axes]
    points = [{k: {**p, FOLD_KEY: f}[k] for k in keys}
              for p in points for f in folds[0].values]
  return points


@dataclasses.dataclass
class Run:
  """One point of the sweep: its name, axis values, full config and directory."""
  index: int      # 0-based position in the plan
  name: str
  values: dict
  config: Any     # ml_collections.ConfigDict
  workdir: Path
  init_from: str | None = None  # the upstream run directory (--upstream)

  @property
  def finished(self) -> bool:
    """Its summary.json exists and reads (written last and atomically by a run)."""
    return records.read_summary(self.workdir) is not None


def config_for(base, values: dict, init_from: str | None = None):
  """A copy of `base` with each dotted key of `values` set (the upstream.* labels of a
  sweep over upstream runs are no config keys) and model.init_from = `init_from`."""
  config = base.copy_and_resolve_references()
  if init_from is not None:
    config.model.init_from = init_from
  for key, value in values.items():
    if key.startswith(UPSTREAM_PREFIX):
      continue
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def plan_runs(base, workdir: Path, points: Sequence[dict],
              init_froms: Sequence[str | None] | None = None) -> list[Run]:
  runs, seen = [], {}
  init_froms = init_froms or [None] * len(points)
  for i, (values, init_from) in enumerate(zip(points, init_froms)):
    name = run_name(values)
    if name in seen:  # two values that sanitize alike: keep the directories apart
      name = f"{name}__{i}"
    seen[name] = i
    runs.append(Run(i, name, dict(values), config_for(base, values, init_from),
                    workdir / name, init_from))
  return runs


# ------------------------------------------------------------ upstream runs


@dataclasses.dataclass(frozen=True)
class Upstream:
  """An upstream sweep (--upstream): its axes as upstream.* labels and its finished
  runs, each (directory, {upstream.key: value}), in its plan order."""
  workdir: Path
  axes: tuple[Axis, ...]
  runs: tuple[tuple[str, dict], ...]


def load_upstream(path) -> Upstream:
  """The finished runs of the sweep directory `path`; SweepError (one line) when it
  is no sweep or has no finished run."""
  workdir = Path(path).absolute()
  try:
    meta = records.read_sweep(workdir)
  except (OSError, ValueError) as e:
    raise SweepError(f"--upstream={path}: {records.SWEEP_FILE} does not read "
                     f"({records.one_line(e)})") from None
  if meta is None:
    raise SweepError(f"--upstream={path}: no {records.SWEEP_FILE} there; give a "
                     "directory written by jaxreg.sweep")
  finished = tuple((str(workdir / e["name"]),
                    {UPSTREAM_PREFIX + k: v for k, v in e["values"].items()})
                   for e in meta["runs"]
                   if records.read_summary(workdir / e["name"]) is not None)
  if not finished:
    raise SweepError(f"--upstream={path}: no finished run (no */{records.SUMMARY_FILE}"
                     "); run the upstream sweep first")
  axes = tuple(Axis.from_json({**a, "key": UPSTREAM_PREFIX + a["key"]})
               for a in meta["axes"])
  return Upstream(workdir, axes, finished)


def all_axes(axes: Sequence[Axis], upstream: Upstream | None) -> list[Axis]:
  """The axes sweep.json records: the upstream labels first, then the swept keys."""
  return [*(upstream.axes if upstream else ()), *axes]


def _points(axes, budget, sampler_seed, upstream: Upstream | None):
  """(points, init_froms): the sweep's points, or with `upstream` each of them once
  per finished upstream run (upstream runs outermost)."""
  points = expand(axes, budget, sampler_seed)
  if upstream is None:
    return points, None
  if "model.init_from" in [a.key for a in axes]:
    raise SweepError("--axis=model.init_from and --upstream set the same key; give one")
  return ([{**labels, **p} for _, labels in upstream.runs for p in points],
          [run_dir for run_dir, _ in upstream.runs for _ in points])


def plan(base_config, workdir, axes: Sequence[Axis], *, budget: int = 0,
         sampler_seed: int = 0, upstream: Upstream | None = None) -> list[Run]:
  """The runs of the sweep, every point's config validated (SweepError naming the
  run); writes nothing. `upstream`: one run per finished upstream run and point, each
  starting from that run (model.init_from)."""
  if upstream is not None and base_config.model.get("init_from"):
    raise SweepError(f"--config.model.init_from={base_config.model.init_from} and "
                     "--upstream set the same key; give one")
  runs = plan_runs(base_config, Path(workdir),
                   *_points(axes, budget, sampler_seed, upstream))
  for run in runs:  # every point is checked before anything trains
    try:
      config_lib.validate(run.config)
    except config_lib.ConfigError as e:
      raise SweepError(f"run {run.name}: {e}") from None
  return runs


# --------------------------------------------------------------- sweep.json


def _plan_record(axes, budget, sampler_seed, base_config, upstream=None) -> dict:
  record = {
      "mode": "random" if budget else "grid",
      "budget": budget or None,
      "sampler_seed": sampler_seed if budget else None,
      "axes": [a.to_json() for a in all_axes(axes, upstream)],
      "base_config": json.loads(base_config.to_json()),
  }
  if upstream is not None:
    record["upstream"] = str(upstream.workdir)
  return record


def _differences(old: dict, new: dict) -> str:
  """What makes the plan `new` another sweep than the recorded `old` ('' if none)."""
  if old["mode"] != new["mode"] or old["budget"] != new["budget"] \
      or old["sampler_seed"] != new["sampler_seed"]:
    return (f"mode {old['mode']} budget {old['budget']} sampler_seed "
            f"{old['sampler_seed']}, not {new['mode']} budget {new['budget']} "
            f"sampler_seed {new['sampler_seed']}")
  if old.get("upstream") != new.get("upstream"):
    return f"upstream {old.get('upstream')}, not {new.get('upstream')}"
  if old["axes"] != new["axes"]:
    o, n = (" ".join(f"{a['key']}={Axis.from_json(a).describe()}" for a in m["axes"])
            for m in (old, new))
    return f"axes {o}, not {n}"
  keys = config_lib.experiment_differences(old["base_config"], new["base_config"])
  return f"another base config ({', '.join(keys)})" if keys else ""


def _pending(runs: Sequence[Run]) -> list[dict]:
  return [{"name": r.name, "values": r.values, "status": "pending",
           **({"init_from": r.init_from} if r.init_from is not None else {})}
          for r in runs]


def prepare(base_config, workdir, axes: Sequence[Axis], *, budget: int = 0,
            sampler_seed: int = 0, command: Sequence[str] | None = None,
            runs: Sequence[Run] | None = None,
            upstream: Upstream | None = None) -> tuple[list[Run], dict]:
  """Plans the runs (or takes `runs`, the plan `locked` yields) and writes (or checks)
  DIR/sweep.json. Returns (runs, meta). The caller holds the directory's lock."""
  workdir = Path(workdir)
  if runs is None:
    runs = plan(base_config, workdir, axes, budget=budget, sampler_seed=sampler_seed,
                upstream=upstream)
  runs = list(runs)
  record = _plan_record(axes, budget, sampler_seed, base_config, upstream)
  meta = records.read_sweep(workdir)
  if meta is None:
    workdir.mkdir(parents=True, exist_ok=True)
    meta = {"version": 1, **record,
            "command": list(command) if command is not None else list(sys.argv),
            "runs": _pending(runs)}
    records.write_sweep(workdir, meta)
    return runs, meta
  diff = _differences(meta, record)
  old_names = [r["name"] for r in meta["runs"]]
  if (diff and meta["mode"] == "random" and budget > (meta["budget"] or 0)
      and not _differences(meta, {**record, "budget": meta["budget"]})
      and [r.name for r in runs[:len(old_names)]] == old_names):
    # a larger budget extends a random search: its first draws are the old points
    meta["budget"] = budget
    meta["runs"] += _pending(runs[len(old_names):])
    records.write_sweep(workdir, meta)
    diff = ""
  if diff:
    raise SweepError(f"{workdir} holds a sweep with {diff}; use a new --workdir "
                     "(or rerun the original command to resume it)")
  new = [r for r in runs if r.name not in set(old_names)]
  if upstream is not None and new:
    # upstream runs that finished since: their downstream runs join the plan
    meta["runs"] += _pending(new)
    records.write_sweep(workdir, meta)
  return runs, meta


@contextlib.contextmanager
def locked(base_config, workdir, axes: Sequence[Axis], *, budget: int = 0,
           sampler_seed: int = 0, upstream: Upstream | None = None):
  """Validates the sweep (every point, the directory), then holds the sweep
  directory's lock for the block, which gets the planned runs (for `prepare`): one
  process at a time writes sweep.json and runs.csv (each run also locks its own
  directory while it trains)."""
  runs = plan(base_config, workdir, axes, budget=budget, sampler_seed=sampler_seed,
              upstream=upstream)
  io.check_writable_dir(workdir, "sweep directory")
  with lock.acquire(workdir, "sweep directory"):
    yield runs
