"""python -m jaxreg.sweep --config=configs/lstm.py[:VARIANT] --workdir=DIR --axis=KEY=VALUES ...

A sweep over any config keys: one run directory per point (the standard outputs of
jaxreg.main, so `jaxreg.evaluate --workdir=DIR/<run>` works), DIR/sweep.json (the plan,
written first, and each run's status) and DIR/runs.csv (one row per finished or failed
run, rewritten atomically after every run).

  --axis=reg.weight_decay=0,1e-4,1e-3     values, cast to the key's type (grid)
  --axis=optim.learning_rate=loguniform:1e-5:1e-2   with --budget=N (random search)
  --axis=optim.learning_rate=uniform:1e-3:1e-2
  --axis=optim.name=choice:adam,sgd       (a plain list is `choice` in random mode)
  --axis=reg.decay_mask=all;ndim>1        ';' separates values that contain commas

Grid by default (the cartesian product, first axis outermost); `--budget=N` draws N
distinct points with numpy's generator seeded by `--sampler_seed` (continuous draws
are rounded to 4 significant digits, so a run's name gives its exact value).
`--config.KEY=VALUE` overrides apply to every run. `--folds=K` (k-fold validation) sets
data.folds=K and adds a last axis data.fold=0..K-1: every point runs on each fold.

Rerunning the same command resumes: runs with a summary.json are skipped, unfinished
ones resume from their checkpoints, runs that failed with an error are retried, and
runs that diverged (deterministic: they would diverge again) are skipped unless
`--retry_diverged`. A sweep directory holds one sweep: other axes or another base
config is an error; a random search may be rerun with a larger --budget (the first
draws are the same points, so it extends the sweep). Exit code 0 when no run failed
with an error (diverged runs are results, recorded with status `diverged`), 1
otherwise, 2 on bad input.

Execution goes through an executor (`EXECUTORS`, `--executor`): `sequential` trains
one run after another in this process; `group` trains runs that differ only in
continuous hyperparameters and seed as one vmapped program (jaxreg/group.py); `auto`
(the default) does that only where a timing of both ways says it is faster, and then for
every run: a sweep never mixes grouped and alone runs (group.plan). The contract, for executors to come (K runs as
one vmapped program): `execute(runs, on_done)` gets every pending `Run` (full config,
its own workdir; some may hold checkpoints of an interrupted attempt) and must call
`on_done(run, Outcome)` exactly once per run, in the calling thread, after that run's
summary.json is written (or on its failure). All bookkeeping (sweep.json, runs.csv,
progress lines) happens in `on_done`, so an executor only trains. `group_runs` splits
runs into groups whose configs differ only in keys a grouped program can carry as
traced values.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from jaxreg import config as config_lib  # light: ml_collections only

SWEEP_FILE = "sweep.json"
RUNS_FILE = "runs.csv"
DISTRIBUTIONS = ("loguniform", "uniform", "choice")
SIGNIFICANT_DIGITS = 4  # random draws are rounded to this many
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "worst_class_accuracy", "loss")
# summary.json keys copied to runs.csv (empty where a summary lacks one).
SUMMARY_KEYS = ("best_step", "evaluated_step", "evaluated_epoch", "epochs_completed",
                "stopped_early", "train_seconds")
# Keys that are replicates rather than settings: the report averages over them and
# pairs runs by them (data.split_seed: repeated hold-out; data.fold: k-fold, once the
# data pipeline has such a key).
REPLICATE_KEYS = ("seed", "data.split_seed", "data.fold")
FOLD_KEY = "data.fold"


class SweepError(ValueError):
  """Bad sweep input; the message is one line for the user (exit code 2)."""


# --------------------------------------------------------------------------- axes


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
    d = {"key": self.key, "kind": self.kind, "type": self.type_name}
    if self.kind in ("values", "choice"):
      d["values"] = list(self.values)
    else:
      d["low"], d["high"] = self.low, self.high
    return d

  def describe(self) -> str:
    if self.kind in ("values", "choice"):
      body = ",".join(format_value(v) for v in self.values)
      return body if self.kind == "values" else f"choice:{body}"
    return f"{self.kind}:{format_value(self.low)}:{format_value(self.high)}"


def config_leaf(config, key: str):
  """The value of a dotted config key; SweepError naming the key if it is not one."""
  node, walked = config, []
  for part in key.split("."):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      where = ".".join(walked) or "the config"
      raise SweepError(f"--axis: unknown config key {key!r}: {where} has "
                       f"{', '.join(sorted(map(str, keys))) or 'no keys'}")
    node, walked = node[part], walked + [part]
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


def _split_values(text: str) -> list[str]:
  parts = text.split(";") if ";" in text else text.split(",")
  return [p for p in parts]


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
  raw = _split_values(text)
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


# ------------------------------------------------------------------ expansion


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
  import numpy as np
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


def add_folds(config, axes: Sequence[Axis], folds: int) -> list[Axis]:
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


@dataclasses.dataclass
class Run:
  """One point of the sweep: its name, axis values, full config and directory."""
  index: int      # 0-based position in the plan
  name: str
  values: dict
  config: Any     # ml_collections.ConfigDict
  workdir: Path

  @property
  def finished(self) -> bool:
    """Its summary.json exists and reads (written last and atomically by a run)."""
    return read_summary(self.workdir / "summary.json") is not None


def config_for(base, values: dict):
  config = base.copy_and_resolve_references()
  for key, value in values.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def plan_runs(base, workdir: Path, points: Sequence[dict]) -> list[Run]:
  runs, seen = [], {}
  for i, values in enumerate(points):
    name = run_name(values)
    if name in seen:  # two values that sanitize alike: keep the directories apart
      name = f"{name}__{i}"
    seen[name] = i
    runs.append(Run(i, name, dict(values), config_for(base, values), workdir / name))
  return runs


def group_runs(runs: Sequence[Run], batchable: Iterable[str]) -> list[list[Run]]:
  """Runs whose configs are equal except for the `batchable` keys, in plan order.

  For an executor that trains a group as K models in one compiled program (keys such
  as seed, reg.weight_decay, model.dropout.* carried as traced values).
  """
  batchable = set(batchable)
  groups: dict[str, list[Run]] = {}
  for run in runs:
    flat = config_lib.flatten(json.loads(run.config.to_json()))
    static = {k: v for k, v in flat.items() if k not in batchable}
    groups.setdefault(json.dumps(static, sort_keys=True), []).append(run)
  return list(groups.values())


# ------------------------------------------------------------------ executors


@dataclasses.dataclass
class Outcome:
  status: str                 # 'done' | 'diverged' | 'error'
  summary: dict | None = None
  error: str | None = None
  seconds: float = 0.0


class Executor(Protocol):
  def execute(self, runs: Sequence[Run],
              on_done: Callable[[Run, Outcome], None]) -> None:
    """Trains `runs` (all unfinished), calling on_done(run, outcome) once for each."""


def _one_line(e: BaseException) -> str:
  return " ".join(f"{type(e).__name__}: {e}".split())


class SequentialExecutor:
  """One run after another, in this process (the compile cache makes repeats cheap).
  `executor`: what each summary.json records of how the run was trained."""

  def __init__(self, devices=None, executor: dict | None = None):
    self.devices = devices
    self.executor = executor or {"kind": "alone", "size": 1,
                                 "why": "asked for one run after another "
                                        "(--executor=sequential)"}

  def execute(self, runs, on_done):
    from jaxreg import preemption, train
    for run in runs:
      t0 = time.perf_counter()
      try:
        summary = train.train_and_evaluate(run.config, run.workdir, self.devices,
                                           executor=self.executor)
        outcome = Outcome("done", summary=summary)
      except train.TrainingDiverged as e:
        outcome = Outcome("diverged", error=_one_line(e))
      except preemption.Preempted:
        raise  # the whole sweep stops (its checkpoint is saved); rerun to resume
      except Exception as e:  # noqa: BLE001 - recorded; the sweep goes on
        outcome = Outcome("error", error=_one_line(e))
      outcome.seconds = time.perf_counter() - t0
      on_done(run, outcome)


class GroupExecutor:
  """Runs that differ only in values one vmapped program can carry (jaxreg.group)
  train together; each member still writes its own run dir. `group.plan` decides once
  for all runs: groups, or every run alone (never a mix across the compared settings);
  with `probe` (the `auto` executor) it times both ways on the real batches first and
  groups only where that is faster.
  """

  def __init__(self, devices=None, probe: bool = False, out=None):
    self.devices, self.probe, self.out = devices, probe, out or sys.stderr

  def execute(self, runs, on_done):
    from jaxreg import group, preemption
    plan = group.plan([r.config for r in runs], probe=self.probe, devices=self.devices)
    print(f"{len(runs)} runs: {'in groups' if plan.kind == 'group' else 'alone'}: "
          f"{plan.why}", file=self.out)
    for indices in plan.groups:
      members = [runs[i] for i in indices]
      if plan.kind == "alone":
        SequentialExecutor(self.devices, plan.executor(indices)).execute(members, on_done)
        continue
      t0 = time.perf_counter()
      try:
        results = group.train_group([m.config for m in members],
                                    [m.workdir for m in members], self.devices, plan.why)
      except preemption.Preempted:
        raise  # the whole sweep stops (every member's checkpoint is saved)
      except Exception as e:  # noqa: BLE001 - recorded for every member
        results = [{"status": "error", "error": _one_line(e)}] * len(members)
      seconds = (time.perf_counter() - t0) / len(members)
      for member, result in zip(members, results):
        status = result.get("status")
        outcome = (Outcome(status, error=result.get("error"))
                   if status in ("diverged", "error") else Outcome("done", summary=result))
        outcome.seconds = seconds
        on_done(member, outcome)


EXECUTORS: dict[str, Callable[[], Executor]] = {
    "sequential": SequentialExecutor,
    "group": GroupExecutor,
    "auto": lambda: GroupExecutor(probe=True),
}


# --------------------------------------------------------------------- files


def atomic_write(path: Path, text: str) -> None:
  from jaxreg import io  # the one atomic writer
  io.atomic_write(path, text)


def _plan_record(axes, budget, sampler_seed, base_config) -> dict:
  return {
      "mode": "random" if budget else "grid",
      "budget": budget or None,
      "sampler_seed": sampler_seed if budget else None,
      "axes": [a.to_json() for a in axes],
      "base_config": json.loads(base_config.to_json()),
  }


def _differences(old: dict, new: dict) -> str:
  if old["mode"] != new["mode"] or old["budget"] != new["budget"] \
      or old["sampler_seed"] != new["sampler_seed"]:
    return (f"mode {old['mode']} budget {old['budget']} sampler_seed "
            f"{old['sampler_seed']}, not {new['mode']} budget {new['budget']} "
            f"sampler_seed {new['sampler_seed']}")
  if old["axes"] != new["axes"]:
    o = " ".join(f"{a['key']}={Axis(**_axis_args(a)).describe()}" for a in old["axes"])
    n = " ".join(f"{a['key']}={Axis(**_axis_args(a)).describe()}" for a in new["axes"])
    return f"axes {o}, not {n}"
  flat_old, flat_new = config_lib.flatten(old["base_config"]), config_lib.flatten(new["base_config"])
  keys = sorted(k for k in flat_old.keys() | flat_new.keys()
                if flat_old.get(k) != flat_new.get(k))
  return f"another base config ({', '.join(keys)})" if keys else ""


def _axis_args(d: dict) -> dict:
  return {"key": d["key"], "kind": d["kind"], "values": tuple(d.get("values", ())),
          "low": d.get("low"), "high": d.get("high"), "type_name": d["type"]}


def load_axes(meta: dict) -> list[Axis]:
  """The Axis objects recorded in a sweep.json."""
  return [Axis(**_axis_args(a)) for a in meta["axes"]]


def read_summary(path: Path) -> dict | None:
  """A run's summary.json, or None when it is missing or unreadable (a summary
  half-written by an older jaxreg counts as not done)."""
  try:
    summary = json.loads(Path(path).read_text())
  except (OSError, ValueError):
    return None
  return summary if isinstance(summary, dict) and "test" in summary else None



def rows_for(runs: Sequence[Run], axes: Sequence[Axis], status: dict,
             summaries: dict) -> tuple[list[str], list[dict]]:
  """runs.csv's header and rows: finished runs and failed ones, in plan order."""
  class_names: list[str] = []
  for run in runs:
    s = summaries.get(run.name)
    if s:
      for c in s["test"]["class_names"]:
        if c not in class_names:
          class_names.append(c)
  header = ["run", "status", *[a.key for a in axes]]
  for split in ("val", "test"):
    header += [f"{split}_{m}" for m in METRICS]
  header += [*SUMMARY_KEYS, "error"]
  header += [f"test_acc/{c}" for c in class_names]
  header += [f"test_count/{c}" for c in class_names]
  rows = []
  for run in runs:
    s = summaries.get(run.name)
    st = status.get(run.name, {})
    if s is None and st.get("status") not in ("diverged", "error"):
      continue
    row = {"run": run.name, **{k: _csv_value(v) for k, v in run.values.items()}}
    if s is None:
      row.update(status=st["status"], error=st.get("error", ""))
    else:
      row["status"] = "done"
      for split in ("val", "test"):
        for m in METRICS:
          row[f"{split}_{m}"] = _csv_value(s[split].get(m))
      for k in SUMMARY_KEYS:
        row[k] = _csv_value(s.get(k))
      test = s["test"]
      for name, acc, count in zip(test["class_names"], test["per_class_accuracy"],
                                  test["per_class_count"]):
        row[f"test_acc/{name}"] = _csv_value(acc)
        row[f"test_count/{name}"] = count
    rows.append(row)
  return header, rows


def _csv_value(v):
  if v is None:
    return ""
  if isinstance(v, float):
    return repr(v)
  if isinstance(v, bool):
    return "true" if v else "false"
  return v


def write_runs_csv(path: Path, header, rows) -> None:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  atomic_write(path, buf.getvalue())


def read_runs_csv(path: Path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


# ---------------------------------------------------------------------- sweep


def _pretty(values: dict) -> str:
  return " ".join(f"{k}={display_value(v)}" for k, v in values.items())


def prepare(base_config, workdir, axes: Sequence[Axis], *, budget: int = 0,
            sampler_seed: int = 0, command: Sequence[str] | None = None
            ) -> tuple[list[Run], dict]:
  """Plans the runs and writes (or checks) DIR/sweep.json. Returns (runs, meta).
  The caller holds the directory's lock (`locked`)."""
  workdir = Path(workdir)
  runs = plan(base_config, workdir, axes, budget=budget, sampler_seed=sampler_seed)
  record = _plan_record(axes, budget, sampler_seed, base_config)
  path = workdir / SWEEP_FILE
  if path.exists():
    meta = json.loads(path.read_text())
    diff = _differences(meta, record)
    old_names = [r["name"] for r in meta["runs"]]
    if (diff and meta["mode"] == "random" and budget > (meta["budget"] or 0)
        and not _differences(meta, {**record, "budget": meta["budget"]})
        and [r.name for r in runs[:len(old_names)]] == old_names):
      # a larger budget extends a random search: its first draws are the old points
      meta["budget"] = budget
      meta["runs"] += [{"name": r.name, "values": r.values, "status": "pending"}
                       for r in runs[len(old_names):]]
      atomic_write(path, json.dumps(meta, indent=2) + "\n")
      diff = ""
    if diff:
      raise SweepError(f"{workdir} holds a sweep with {diff}; use a new --workdir "
                       "(or rerun the original command to resume it)")
  else:
    workdir.mkdir(parents=True, exist_ok=True)
    meta = {"version": 1, **record,
            "command": list(command) if command is not None else list(sys.argv),
            "runs": [{"name": r.name, "values": r.values, "status": "pending"}
                     for r in runs]}
    atomic_write(path, json.dumps(meta, indent=2) + "\n")
  return runs, meta


def plan(base_config, workdir, axes: Sequence[Axis], *, budget: int = 0,
         sampler_seed: int = 0) -> list[Run]:
  """The runs of the sweep, every point's config validated (SweepError naming the
  run); writes nothing."""
  runs = plan_runs(base_config, Path(workdir), expand(axes, budget, sampler_seed))
  for run in runs:  # every point is checked before anything trains
    try:
      config_lib.validate(run.config)
    except config_lib.ConfigError as e:
      raise SweepError(f"run {run.name}: {e}") from None
  return runs


@contextlib.contextmanager
def locked(base_config, workdir, axes: Sequence[Axis], *, budget: int = 0,
           sampler_seed: int = 0):
  """Validates the sweep (every point, the directory), then holds the sweep
  directory's lock for the block: one process at a time writes sweep.json and
  runs.csv (each run also locks its own directory while it trains)."""
  from jaxreg import io, lock
  plan(base_config, workdir, axes, budget=budget, sampler_seed=sampler_seed)
  io.check_writable_dir(workdir, "sweep directory")
  with lock.acquire(workdir, "sweep directory"):
    yield


def run_sweep(base_config, workdir, axes: Sequence[Axis], *, budget: int = 0,
              sampler_seed: int = 0, executor: Executor | None = None,
              retry_diverged: bool = False, out=None,
              command: Sequence[str] | None = None) -> dict[str, Outcome]:
  """Plans, resumes and trains a sweep; returns {run name: Outcome} of this call.
  Nothing is written unless every point's config is valid; the sweep directory is
  locked while it runs."""
  with locked(base_config, workdir, axes, budget=budget, sampler_seed=sampler_seed):
    return _run_sweep(base_config, workdir, axes, budget=budget,
                      sampler_seed=sampler_seed, executor=executor,
                      retry_diverged=retry_diverged, out=out, command=command)


def _run_sweep(base_config, workdir, axes, *, budget, sampler_seed, executor,
               retry_diverged, out, command) -> dict[str, Outcome]:
  out = out or sys.stdout
  workdir = Path(workdir)
  runs, meta = prepare(base_config, workdir, axes, budget=budget,
                       sampler_seed=sampler_seed, command=command)
  status = {r["name"]: r for r in meta["runs"]}
  summaries = {}
  for run in runs:
    entry = status[run.name]
    summary = read_summary(run.workdir / "summary.json")
    if summary is not None:
      summaries[run.name] = summary
      entry["status"] = "done"
      entry.pop("error", None)
    elif entry["status"] == "done":  # its summary.json was removed: train it again
      entry["status"] = "pending"
  total = len(runs)

  def save():
    meta["runs"] = [status[r.name] for r in runs]
    atomic_write(workdir / SWEEP_FILE, json.dumps(meta, indent=2) + "\n")
    write_runs_csv(workdir / RUNS_FILE, *rows_for(runs, axes, status, summaries))

  pending = []
  for run in runs:
    st = status[run.name]["status"]
    if st == "done":
      s = summaries[run.name]
      print(f"[{run.index + 1}/{total}] {_pretty(run.values)}: finished already, "
            f"test acc {s['test']['accuracy']:.4f}", file=out, flush=True)
    elif st == "diverged" and not retry_diverged:
      print(f"[{run.index + 1}/{total}] {_pretty(run.values)}: diverged before, "
            "skipped (--retry_diverged to train it again)", file=out, flush=True)
    else:
      pending.append(run)
  save()

  outcomes: dict[str, Outcome] = {}

  def on_done(run: Run, outcome: Outcome) -> None:
    outcomes[run.name] = outcome
    entry = status[run.name]
    entry["status"] = outcome.status
    entry["seconds"] = round(outcome.seconds, 3)
    if outcome.status == "done":
      entry.pop("error", None)
      summaries[run.name] = outcome.summary
      test = outcome.summary["test"]
      what = (f"test acc {test['accuracy']:.4f}, worst class "
              f"{test['worst_class_accuracy']:.4f}")
    else:
      entry["error"] = outcome.error
      what = f"{outcome.status}: {outcome.error}"
    save()
    print(f"[{run.index + 1}/{total}] {_pretty(run.values)}: {what} "
          f"({outcome.seconds:.0f} s)", file=out, flush=True)

  (executor or SequentialExecutor()).execute(pending, on_done)
  counts = {s: sum(1 for r in runs if status[r.name]["status"] == s)
            for s in ("done", "diverged", "error", "pending")}
  print(f"sweep {workdir}: {counts['done']}/{total} finished"
        + "".join(f", {counts[s]} {s}" for s in ("diverged", "error", "pending")
                  if counts[s])
        + f" ({workdir / RUNS_FILE})", file=out, flush=True)
  return outcomes


# ------------------------------------------------------------------------ CLI


def _define_flags():
  # Flags are defined when the CLI starts, not on import: the library functions
  # above can be imported beside jaxreg.main/evaluate (which define --workdir too).
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file(
      "config", None, "Config file, optionally :VARIANT (see configs/).",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "Sweep directory (one subdirectory per run).")
  flags.DEFINE_multi_string(
      "axis", [], "KEY=V1,V2,... or KEY=loguniform:LO:HI | uniform:LO:HI | "
      "choice:A,B (repeat for more axes).")
  flags.DEFINE_integer("budget", 0, "Random search: this many points (0: grid).")
  flags.DEFINE_integer("sampler_seed", 0, "Seed of the random-search sampler.")
  flags.DEFINE_enum("executor", "auto", sorted(EXECUTORS),
                    "sequential: one run after another; group: runs differing only in "
                    "continuous hyperparameters and seed as one vmapped program; auto: "
                    "group where a short timing probe says it is faster.")
  flags.DEFINE_bool("retry_diverged", False, "Train runs that diverged before again.")
  flags.DEFINE_integer("folds", 0, "k-fold validation: run every point on each of K "
                       "stratified folds of train (data.folds=K, axis data.fold); 0: "
                       "the held-out data.val_fraction.")
  _define_launcher_flags()


LAUNCHERS = ("local", "slurm")


def _define_launcher_flags():
  """--launcher: where the runs train (local: this process; slurm: a job array)."""
  from absl import flags
  from jaxreg import slurm
  flags.DEFINE_enum("launcher", "local", list(LAUNCHERS),
                    "local: train here with --executor; slurm: submit a SLURM job "
                    "array, one task per unfinished run (see --slurm_* and "
                    "jaxreg/slurm.py).")
  slurm.define_flags()


def _launch_elsewhere(config, axes, FLAGS) -> bool:
  """Submits the sweep when --launcher is not local; returns whether it did."""
  if FLAGS.launcher != "slurm":
    return False
  from jaxreg import slurm, sweep as library
  try:
    slurm.submit(config, FLAGS.workdir, axes, budget=FLAGS.budget,
                 sampler_seed=FLAGS.sampler_seed, retry_diverged=FLAGS.retry_diverged,
                 opts=slurm.options_from_flags(FLAGS))
  except library.SweepError as e:  # under `python -m`, this module is __main__
    raise SweepError(str(e)) from None
  return True


def main(argv):
  from absl import flags
  from jaxreg import cli, preemption
  FLAGS = flags.FLAGS
  config, _ = cli.config_and_workdir(argv, FLAGS)
  preemption.install()  # SIGTERM/SIGINT: the current run checkpoints, the sweep stops
  with cli.user_errors(FLAGS.workdir):
    try:
      axes = parse_axes(FLAGS.axis, config)
      if FLAGS.folds:
        config = config.copy_and_resolve_references()  # FLAGS.config stays as parsed
        axes = add_folds(config, axes, FLAGS.folds)
      if _launch_elsewhere(config, axes, FLAGS):
        return
      outcomes = run_sweep(config, FLAGS.workdir, axes, budget=FLAGS.budget,
                           sampler_seed=FLAGS.sampler_seed,
                           executor=EXECUTORS[FLAGS.executor](),
                           retry_diverged=FLAGS.retry_diverged)
    except SweepError as e:
      cli.fail(str(e))
  if any(o.status == "error" for o in outcomes.values()):
    sys.exit(1)


def run():
  from absl import app
  from jaxreg import cli
  _define_flags()
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
