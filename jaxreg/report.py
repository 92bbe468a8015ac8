"""python -m jaxreg.report --workdir=DIR [--axis=KEY] [--baseline=VALUE] [--correction=holm|bh]

Reads a sweep directory written by jaxreg.sweep (sweep.json and each run's
summary.json: the evaluated checkpoint's val and test evaluations, confusion matrices
included) and writes DIR/report.md with PNG figures and CSV tables in DIR/report/:

  (a) per-class test accuracy against the swept setting (mean over seeds, 95% interval),
      beside accuracy, balanced and worst-class accuracy;
  (b) per-class change relative to the baseline value at each value. The flag is a
      paired t-test over seeds with a binomial variance floor (jaxreg/stats.py),
      corrected with Holm (or Benjamini-Hochberg) over the family classes x compared
      values; with fewer than 3 paired seeds nothing is flagged and a banner says why.
      Beside it, the exact McNemar test of the paired runs on this test set (from the
      stored per-example predictions) and the smallest drop the sweep could detect;
  (c) the value mean validation accuracy chooses and what it costs each class;
  (d) where the lost examples go: confusion-matrix change (chosen, or else the
      strongest value, minus the baseline, summed over paired seeds);
  (e) with two or more non-seed axes, heatmaps of mean validation accuracy per pair;
  (f) classes with few test examples carry their count (one error = 100/n points).

Seeds (`seed`, and `data.split_seed` or `data.fold` when swept) are replicates: the report averages
over them and pairs runs by them. With several non-seed axes, the analysed axis is
--axis (default: the first reg.* or dropout axis, else the first), and the other axes
are held at --fix=KEY=VALUE or else at the values with the best mean validation
accuracy. Random-search sweeps whose values do not repeat get a ranking of the runs
and scatter plots instead of (a)-(d).

Other commands:
  --null_split      compare the first half of the sweep's seeds with the second half
                    (paired in order) as if they were two settings: a null sweep, where
                    every flag is a false positive.
  --plan            how many seeds a sweep needs (see `plan_lines`).
  calibrate         simulated null sweeps and real effects (jaxreg/calibration.py).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jaxreg import stats
from jaxreg.sweep import (REPLICATE_KEYS, RUNS_FILE, SWEEP_FILE, Axis, SweepError,
                          atomic_write, cast_value, display_value, load_axes)

# = train.PREDICTIONS_FILE (train imports jax; the report stays light)
PREDICTIONS_FILE = "predictions_test.npz"
SMALL_N = 50          # classes with fewer test examples get "(n=...)" beside their name
REPORT_DIR = "report"
REG_PREFIXES = ("reg.", "model.dropout.")
# Figures with many classes show those that move most (CSV tables keep them all).
MAX_LINES, MAX_PANELS, MAX_ROWS, MAX_CONFUSION = 10, 24, 40, 30
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


class ReportError(SweepError):
  """Bad report input or an unusable sweep; one line for the user (exit code 2)."""


# ---------------------------------------------------------------------- loading


@dataclasses.dataclass
class RunData:
  name: str
  values: dict
  status: str
  summary: dict | None
  error: str | None = None

  @property
  def test_confusion(self) -> np.ndarray:
    return np.asarray(self.summary["test"]["confusion_matrix"], dtype=np.int64)

  @property
  def val_accuracy(self) -> float:
    return float(self.summary["val"]["accuracy"])

  def test_predictions(self, workdir: Path):
    """(labels, predicted ids) of the evaluated checkpoint on test, or None.

    From the run's predictions_test.npz, else from a `jaxreg.evaluate` output
    (eval/test-*.npz) of the same step (runs written before runs saved predictions).
    Used only when it reproduces the run's test confusion matrix exactly."""
    run = workdir / self.name
    step = self.summary.get("evaluated_step")
    for path in [run / PREDICTIONS_FILE, *sorted((run / "eval").glob("test-*.npz"))]:
      try:
        with np.load(path) as z:
          labels, preds, at = z["labels"], z["predictions"], int(z["step"])
      except (OSError, KeyError, ValueError):
        continue
      if step is not None and at != step:
        continue
      cm = self.test_confusion
      c = len(cm)
      if labels.shape != preds.shape or labels.min(initial=0) < 0 or \
          preds.min(initial=0) < 0 or max(labels.max(initial=0),
                                          preds.max(initial=0)) >= c:
        continue
      mine = np.zeros((c, c), np.int64)
      np.add.at(mine, (labels, preds), 1)
      if np.array_equal(mine, cm):
        return labels, preds
    return None


@dataclasses.dataclass
class Sweep:
  workdir: Path
  meta: dict
  axes: list            # sweep.Axis
  runs: list[RunData]
  class_names: list[str]
  n: np.ndarray         # test examples per class

  @property
  def finished(self) -> list[RunData]:
    return [r for r in self.runs if r.summary is not None]

  @property
  def replicate_keys(self) -> list[str]:
    return [a.key for a in self.axes if a.key in REPLICATE_KEYS]

  @property
  def setting_axes(self) -> list:
    return [a for a in self.axes if a.key not in REPLICATE_KEYS]


def load_sweep(workdir) -> Sweep:
  workdir = Path(workdir)
  path = workdir / SWEEP_FILE
  if not path.exists():
    raise ReportError(f"{path} not found: --workdir must be a directory written by "
                      "jaxreg.sweep")
  meta = json.loads(path.read_text())
  axes = load_axes(meta)
  runs = []
  for r in meta["runs"]:
    summary_path = workdir / r["name"] / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    status = "done" if summary is not None else r.get("status", "pending")
    if status == "done" and summary is None:
      status = "pending"
    runs.append(RunData(r["name"], r["values"], status, summary, r.get("error")))
  done = [r for r in runs if r.summary is not None]
  if not done:
    raise ReportError(f"no finished run in {workdir} (no */summary.json): run the "
                      "sweep first")
  names = done[0].summary["test"]["class_names"]
  for r in done:
    if r.summary["test"]["class_names"] != names:
      raise ReportError(f"runs {done[0].name} and {r.name} have different classes: "
                        "one report needs one test set")
  n = done[0].test_confusion.sum(axis=1)
  return Sweep(workdir, meta, axes, runs, list(names), n)


# ------------------------------------------------------------------- formatting


def label(name: str, n: int) -> str:
  return f"{name} (n={int(n)})" if n < SMALL_N else name


def pct(x, digits: int = 1) -> str:
  return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def p_is(p) -> str:
  """'= 0.012' or '< 0.001', to follow 'p '."""
  text = pval(p)
  return text.replace("<", "< ") if text.startswith("<") else f"= {text}"


def signed(x, digits: int = 1) -> str:
  return "-" if x is None or not np.isfinite(x) else f"{100 * x:+.{digits}f}"


def pval(p) -> str:
  if p is None or not np.isfinite(p):
    return "-"
  return f"{p:.2g}" if p >= 0.001 else "<0.001"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
             align: str | None = None) -> str:
  align = align or "l" + "r" * (len(header) - 1)
  sep = ["---:" if a == "r" else "---" for a in align]
  lines = ["| " + " | ".join(map(str, header)) + " |", "| " + " | ".join(sep) + " |"]
  lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
            for row in rows]
  return "\n".join(lines)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(header)
  for row in rows:
    w.writerow([_csv_cell(c) for c in row])
  atomic_write(path, buf.getvalue())


def _csv_cell(c):
  if isinstance(c, (float, np.floating)):
    return "" if not np.isfinite(c) else repr(float(c))
  if isinstance(c, (np.integer,)):
    return int(c)
  if isinstance(c, bool):
    return "true" if c else "false"
  return c


def fmt(v) -> str:
  return display_value(v)


def _numeric(values) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def ordered_values(axis, present: Sequence) -> list:
  """The axis's values that occur in `present`: ascending if numeric, else as given."""
  vals = [v for v in (axis.values or ()) if v in present]
  vals += [v for v in present if v not in vals]
  return sorted(vals) if _numeric(vals) else vals


# ----------------------------------------------------------------- x positions


@dataclasses.dataclass
class XLayout:
  positions: list[float]
  labels: list[str]
  log: bool
  zero_at: float | None   # position of a 0 placed left of a log axis


def x_layout(values: Sequence) -> XLayout:
  """Where each value goes on the x axis: log10 when positive values span two or more
  decades (0 then sits one step left of the smallest, marked with a break), linear
  for other numbers, evenly spaced for categories."""
  labels = [fmt(v) for v in values]
  if not _numeric(values):
    return XLayout([float(i) for i in range(len(values))], labels, False, None)
  pos = sorted(v for v in values if v > 0)
  if len(pos) >= 2 and min(values) >= 0 and pos[-1] / pos[0] >= 10 and (
      len(pos) == 2 or _evenness(np.log10(pos)) < _evenness(np.array(pos, float))):
    logs = [math.log10(v) for v in pos]
    step = float(np.median(np.diff(logs))) if len(logs) > 1 else 1.0
    zero_at = logs[0] - max(step, 0.5)
    positions = [math.log10(v) if v > 0 else zero_at for v in values]
    return XLayout(positions, labels, True, zero_at if 0 in values else None)
  return XLayout([float(v) for v in values], labels, False, None)


def _evenness(x: np.ndarray) -> float:
  """Spread of the gaps between sorted positions (0: evenly spaced)."""
  gaps = np.diff(x)
  return float(gaps.std() / max(gaps.mean(), 1e-300))


def setup_x(ax, layout: XLayout, key: str) -> None:
  ax.set_xticks(layout.positions, layout.labels,
                rotation=45 if len(layout.labels) > 6 else 0,
                ha="right" if len(layout.labels) > 6 else "center")
  ax.set_xlabel(f"{key} (log scale)" if layout.log else key)
  if layout.zero_at is not None:
    others = sorted(p for p in layout.positions if p != layout.zero_at)
    mid = (layout.zero_at + others[0]) / 2
    # an axis break "//" between 0 and the smallest positive value
    for dx in (-0.04, 0.04):
      ax.text(mid + dx * (others[-1] - layout.zero_at + 1e-9), 0, "/",
              transform=ax.get_xaxis_transform(), ha="center", va="center",
              fontsize=11, clip_on=False)
    ax.axvline(mid, color="0.6", lw=0.8, ls=(0, (2, 3)))
  span = max(layout.positions) - min(layout.positions) or 1.0
  ax.set_xlim(min(layout.positions) - 0.06 * span, max(layout.positions) + 0.06 * span)


# ------------------------------------------------------------------ the analysis


@dataclasses.dataclass
class Level:
  """All finished runs at one value of the analysed axis (others fixed)."""
  value: Any
  reps: list[tuple]          # replicate keys (seed, ...) in order
  confusion: np.ndarray      # [K, C, C] test
  val_accuracy: np.ndarray   # [K]
  # per replicate: (labels [N], predicted ids [N]) on test, or None (not stored)
  predictions: list = dataclasses.field(default_factory=list)

  @property
  def correct(self) -> np.ndarray:
    return np.einsum("kcc->kc", self.confusion)


def class_acc(confusion: np.ndarray) -> np.ndarray:
  n = confusion.sum(axis=-1)
  correct = np.einsum("...cc->...c", confusion)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(n > 0, correct / np.maximum(n, 1), np.nan)


def overall(confusion: np.ndarray) -> dict:
  """accuracy, balanced and worst-class accuracy for [K, C, C] -> [K] each."""
  acc = class_acc(confusion)
  correct = np.einsum("kcc->k", confusion)
  return {"accuracy": correct / confusion.sum(axis=(1, 2)),
          "balanced_accuracy": np.nanmean(acc, axis=1),
          "worst_class_accuracy": np.nanmin(acc, axis=1)}


@dataclasses.dataclass
class Analysis:
  sweep: Sweep
  key: str
  axis: Any
  fixed: dict                # other setting axes held at these values
  fixed_how: str
  levels: list[Level]
  baseline: Any
  correction: str
  alpha: float
  reps: int
  seed: int
  # filled by compute()
  acc: dict = dataclasses.field(default_factory=dict)       # value -> (mean, lo, hi) [C]
  acc_method: dict = dataclasses.field(default_factory=dict)
  agg: dict = dataclasses.field(default_factory=dict)       # value -> metric -> (m, lo, hi)
  change: dict = dataclasses.field(default_factory=dict)    # value -> dict of [C]
  chosen: Any = None
  target: Any = None
  confusion_diff: np.ndarray | None = None
  paired_for_diff: int = 0
  family: int = 0            # tests in the correction's family (classes x values)
  null_split: str = ""       # set for --null_split: which seeds face which

  @property
  def unit(self) -> str:
    """What the replicates are called: seeds, or runs when folds or splits pair too."""
    return "seeds" if self.sweep.replicate_keys in (["seed"], []) else "runs"

  @property
  def fewest_seeds(self) -> int:
    """The fewest paired seeds of any compared value (0: nothing compared)."""
    return min((ch["paired"] for ch in self.change.values()), default=0)

  @property
  def names(self) -> list[str]:
    return self.sweep.class_names

  def most_changed(self, k: int) -> list[int]:
    """Indices of the k classes whose mean test accuracy moves most from the
    baseline at any value (all classes, in class order, when there are <= k)."""
    c = len(self.names)
    if c <= k:
      return list(range(c))
    base = self.acc[self.baseline][0]
    moves = np.nanmax(np.abs(np.stack([self.acc[lv.value][0] - base
                                       for lv in self.levels])), axis=0)
    moves = np.nan_to_num(moves)
    top = [i for i in np.argsort(-moves, kind="stable")[:k] if moves[i] > 0.005]
    return sorted(top or range(k))

  @property
  def evaluated(self) -> str:
    kinds = sorted({r.summary.get("evaluated_checkpoint", "best")
                    for r in self.sweep.finished})
    return ", ".join(kinds)

  @property
  def correction_name(self) -> str:
    return CORRECTION_NAMES[self.correction]

  @property
  def n(self) -> np.ndarray:
    return self.sweep.n

  def level(self, value) -> Level:
    return next(l for l in self.levels if l.value == value)


def choose_axis(sweep: Sweep, key: str | None):
  settings = sweep.setting_axes
  if key:
    match = [a for a in sweep.axes if a.key == key]
    if not match:
      raise ReportError(f"--axis={key} is not an axis of this sweep: "
                        f"{', '.join(a.key for a in sweep.axes)}")
    if key in REPLICATE_KEYS:
      raise ReportError(f"--axis={key} is a replicate axis (averaged over); name one "
                        f"of: {', '.join(a.key for a in settings) or 'none'}")
    return match[0]
  if not settings:
    raise ReportError("the sweep varies only "
                      f"{', '.join(sweep.replicate_keys)}: there is no setting to compare")
  for a in settings:
    if a.key.startswith(REG_PREFIXES):
      return a
  return settings[0]


def _rep(values: dict, rep_keys) -> tuple:
  return tuple(values.get(k) for k in rep_keys)


def _setting(values: dict, keys) -> tuple:
  return tuple(values.get(k) for k in keys)


def fix_other_axes(sweep: Sweep, axis, fix: dict) -> tuple[dict, str]:
  others = [a.key for a in sweep.setting_axes if a.key != axis.key]
  unknown = [k for k in fix if k not in others]
  if unknown:
    raise ReportError(f"--fix={unknown[0]}: not one of the other setting axes "
                      f"({', '.join(others) or 'none'})")
  rest = [k for k in others if k not in fix]
  if not rest:
    return dict(fix), "given with --fix" if fix else ""
  # the combination of the remaining axes with the best mean val accuracy
  scores: dict[tuple, list[float]] = {}
  for r in sweep.finished:
    if all(r.values.get(k) == v for k, v in fix.items()):
      scores.setdefault(_setting(r.values, rest + [axis.key]), []).append(r.val_accuracy)
  if not scores:
    raise ReportError("no finished run matches --fix " +
                      " ".join(f"{k}={fmt(v)}" for k, v in fix.items()))
  best = max(scores, key=lambda s: np.mean(scores[s]))
  return {**fix, **dict(zip(rest, best[:-1]))}, "the best mean validation accuracy"


def build_levels(sweep: Sweep, axis, fixed: dict) -> list[Level]:
  rep_keys = sweep.replicate_keys
  groups: dict[Any, list[RunData]] = {}
  for r in sweep.finished:
    if all(r.values.get(k) == v for k, v in fixed.items()):
      groups.setdefault(r.values[axis.key], []).append(r)
  levels = []
  for value in ordered_values(axis, list(groups)):
    rs = sorted(groups[value], key=lambda r: str(_rep(r.values, rep_keys)))
    levels.append(Level(value, [_rep(r.values, rep_keys) for r in rs],
                        np.stack([r.test_confusion for r in rs]),
                        np.array([r.val_accuracy for r in rs]),
                        [r.test_predictions(sweep.workdir) for r in rs]))
  return levels


def _span(seeds: Sequence) -> str:
  """'0-4' for consecutive integers, else '0, 2, 7'."""
  if len(seeds) > 2 and all(isinstance(x, int) for x in seeds) and \
      list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
    return f"{seeds[0]}-{seeds[-1]}"
  return ", ".join(map(fmt, seeds))


def null_split_levels(sweep: Sweep, fixed: dict) -> tuple[list[Level], str]:
  """The runs at `fixed`, their seeds split in two halves that face each other as if
  they were two settings (the first half's i-th seed paired with the second half's
  i-th, within each fold or split): a null comparison, differing only in training
  randomness. Returns the two levels and a sentence saying which seeds face which."""
  rep_keys = sweep.replicate_keys
  if "seed" not in rep_keys:
    raise ReportError("--null_split needs a sweep with a seed axis (--axis=seed=0,...,9)")
  si = rep_keys.index("seed")
  runs = [r for r in sweep.finished
          if all(r.values.get(k) == v for k, v in fixed.items())]
  seed_axis = next(ax for ax in sweep.axes if ax.key == "seed")
  seeds = ordered_values(seed_axis, sorted({r.values["seed"] for r in runs}))
  half = len(seeds) // 2
  if half < 1:
    raise ReportError(f"--null_split needs at least 2 finished seeds, found {len(seeds)}")
  halves = (seeds[:half], seeds[half:2 * half])
  names = tuple(f"seeds {_span(h)}" for h in halves)
  levels = []
  for name, chosen in zip(names, halves):
    rs = sorted((r for r in runs if r.values["seed"] in chosen),
                key=lambda r: str(_rep(r.values, rep_keys)))
    reps = []
    for r in rs:  # the seed replaced by its rank within the half: rank i meets rank i
      rep = list(_rep(r.values, rep_keys))
      rep[si] = chosen.index(rep[si])
      reps.append(tuple(rep))
    levels.append(Level(name, reps, np.stack([r.test_confusion for r in rs]),
                        np.array([r.val_accuracy for r in rs]),
                        [r.test_predictions(sweep.workdir) for r in rs]))
  pairs = ", ".join(f"{fmt(x)} with {fmt(y)}" for x, y in zip(*halves))
  return levels, (f"{names[0]} against {names[1]} of one setting, seed paired with seed "
                  f"in order ({pairs})")


NULL_KEY = "seeds"   # the analysed "axis" of --null_split


def analyse(sweep: Sweep, key: str | None = None, baseline: str | None = None,
            fix: dict | None = None, correction: str = "holm", alpha: float = 0.05,
            reps: int = 2000, seed: int = 0, null_split: bool = False) -> Analysis:
  if correction not in stats.CORRECTIONS:
    raise ReportError(f"--correction={correction!r} is not one of: "
                      f"{', '.join(stats.CORRECTIONS)}")
  if null_split:
    if key or baseline:
      raise ReportError("--null_split compares halves of the seeds: it takes no --axis "
                        "or --baseline (hold other axes with --fix)")
    axis = Axis(NULL_KEY, "values", (), type_name="str")
    fixed, how = fix_other_axes(sweep, axis, fix or {})
    levels, split = null_split_levels(sweep, fixed)
    a = Analysis(sweep, NULL_KEY, axis, fixed, how, levels, levels[0].value, correction,
                 alpha, reps, seed, null_split=split)
    compute(a)
    return a
  axis = choose_axis(sweep, key)
  fixed, how = fix_other_axes(sweep, axis, fix or {})
  levels = build_levels(sweep, axis, fixed)
  values = [l.value for l in levels]
  if baseline is None:
    base = values[0]
  else:
    base = cast_value(axis.key, baseline, axis.type_name)
    if base not in values:
      raise ReportError(f"--baseline={baseline}: {axis.key} has finished runs at "
                        f"{', '.join(map(fmt, values))} only")
  a = Analysis(sweep, axis.key, axis, fixed, how, levels, base, correction, alpha,
               reps, seed)
  compute(a)
  return a


def _paired_correct(base: Level, ib, lv: Level, il):
  """(correct_base [K, N], correct_lv [K, N], labels [N]) when every paired run has
  stored predictions on the same test examples, else None."""
  runs = [base.predictions[i] if base.predictions else None for i in ib] + \
      [lv.predictions[i] if lv.predictions else None for i in il]
  if not runs or any(r is None for r in runs):
    return None
  labels = runs[0][0]
  if any(not np.array_equal(r[0], labels) for r in runs):
    return None
  k = len(ib)
  right = np.stack([preds == labels for _, preds in runs])
  return right[:k], right[k:], labels


def _per_class_sum(mask: np.ndarray, labels: np.ndarray, c: int) -> np.ndarray:
  """[K, N] booleans -> [K, C] counts per class of the examples' true labels."""
  return np.stack([np.bincount(labels, weights=row, minlength=c) for row in mask])


def _interval(values, floor):
  """Mean and 95% interval over seeds [K, ...]: t with the variance floored (K >= 2),
  clipped to [0, 1]."""
  m, lo, hi = stats.t_interval(values, axis=0, floor=floor)
  return m, np.clip(lo, 0, 1), np.clip(hi, 0, 1)


def compute(a: Analysis) -> None:
  n = a.n
  c = len(n)
  for i, lv in enumerate(a.levels):
    acc = class_acc(lv.confusion)  # [K, C]
    k = len(lv.reps)
    correct = lv.correct
    if k >= 2:
      a.acc[lv.value] = _interval(acc, stats.binomial_variance(correct.sum(0), n, k))
      a.acc_method[lv.value] = f"t over {k} {a.unit}, binomial floor"
    else:
      lo, hi = stats.wilson_interval(correct[0], n)
      a.acc[lv.value] = (acc[0], lo, hi)
      a.acc_method[lv.value] = "Wilson (1 seed)"
    var_c = stats.binomial_variance(correct.sum(0), n, k)        # [C], NaN where n == 0
    present = n > 0
    floors = {"accuracy": stats.binomial_variance(correct.sum(), n.sum(), k),
              "balanced_accuracy": np.nansum(var_c) / max(int(present.sum()), 1) ** 2,
              "worst_class_accuracy": var_c[int(np.nanargmin(np.where(
                  present, acc.mean(0), np.inf)))]}
    agg = {}
    for metric, per_rep in overall(lv.confusion).items():
      if k >= 2:
        m, lo, hi = _interval(per_rep, floors[metric])
        agg[metric] = (m, float(lo), float(hi))
      elif metric == "accuracy":
        lo, hi = stats.wilson_interval(correct[0].sum(), n.sum())
        agg[metric] = (per_rep[0], float(lo), float(hi))
      else:
        fn = ((lambda x: x.mean(axis=1)) if metric == "balanced_accuracy"
              else (lambda x: x.min(axis=1)))
        lo, hi = stats.binomial_bootstrap(correct[0], n, fn, reps=a.reps, seed=a.seed + i)
        agg[metric] = (per_rep[0], min(lo, per_rep[0]), max(hi, per_rep[0]))
    if k >= 2:
      m, lo, hi = _interval(lv.val_accuracy, None)
      agg["val_accuracy"] = (m, float(lo), float(hi))
    else:
      agg["val_accuracy"] = (lv.val_accuracy[0], np.nan, np.nan)
    a.agg[lv.value] = agg

  base = a.level(a.baseline)
  for lv in a.levels:
    if lv.value == a.baseline:
      continue
    common = [r for r in lv.reps if r in base.reps]
    if not common:
      continue
    ib = [base.reps.index(r) for r in common]
    il = [lv.reps.index(r) for r in common]
    k = len(common)
    ca, cb = base.correct[ib], lv.correct[il]
    res = stats.seed_paired_test(ca, cb, n)
    res["paired"] = k
    res["base_acc"] = np.where(n > 0, ca.sum(0) / np.maximum(k * n, 1), np.nan)
    pairs = _paired_correct(base, ib, lv, il)
    nan = np.full(c, np.nan)
    if pairs is not None:  # per-example predictions: exact evidence on these runs
      right_a, right_b, labels = pairs
      lost = _per_class_sum(right_a & ~right_b, labels, c)       # [K, C]
      gained = _per_class_sum(right_b & ~right_a, labels, c)
      res["lost"], res["gained"] = lost.sum(0), gained.sum(0)
      res["p_mcnemar"] = np.where(n > 0, stats.mcnemar_exact(res["lost"], res["gained"]),
                                  np.nan)
      res["pairing"] = "examples"
    else:
      res["lost"] = res["gained"] = res["p_mcnemar"] = nan
      res["pairing"] = "counts"
    if k == 1:  # one seed: the interval of this pair of runs on this test set
      if pairs is not None:
        both = _per_class_sum(right_a & right_b, labels, c)[0]
        res["lo"], res["hi"] = stats.newcombe_paired(
            both, gained[0], lost[0], n - both - gained[0] - lost[0])
        res["interval"] = "Newcombe paired (1 seed)"
      else:
        res["lo"], res["hi"] = stats.newcombe_unpaired(cb[0], ca[0], n)
        res["interval"] = "Newcombe, counts (1 seed)"
    else:
      res["interval"] = f"t over {k} {a.unit}"
    a.change[lv.value] = res

  # The family: every class x every compared value with a p-value (K >= MIN_SEEDS).
  values = list(a.change)
  adjust = stats.CORRECTIONS[a.correction]
  if values:
    p = np.stack([a.change[v]["p"] for v in values])            # [V, C]
    adjusted = adjust(p.ravel()).reshape(p.shape)
    a.family = int(np.isfinite(p).sum())
  for j, v in enumerate(values):
    res = a.change[v]
    res["p_adj"] = adjusted[j]
    sig = res["p_adj"] < a.alpha
    res["drop"] = sig & (res["delta"] < 0)
    res["rise"] = sig & (res["delta"] > 0)
    level = a.alpha / max(a.family, 1)   # Holm's first step: the hardest one
    res["min_detectable"] = stats.detectable_drop(res["base_acc"], n, res["paired"],
                                                  res["sd"] ** 2, level)
    res["testable"] = stats.can_reach(res["base_acc"], n, res["paired"], level)

  means = [float(np.mean(lv.val_accuracy)) for lv in a.levels]
  a.chosen = a.levels[int(np.argmax(means))].value  # ties: the first (weakest)
  others = [lv.value for lv in a.levels if lv.value != a.baseline]
  a.target = a.chosen if a.chosen != a.baseline else (others[-1] if others else None)
  if a.target is not None and a.target in a.change:
    tl = a.level(a.target)
    common = [r for r in tl.reps if r in base.reps]
    a.confusion_diff = sum(tl.confusion[tl.reps.index(r)] - base.confusion[base.reps.index(r)]
                           for r in common)
    a.paired_for_diff = len(common)


# ---------------------------------------------------------------------- figures


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: Path) -> Path:
  """Lays out, writes and closes a figure (every report PNG at the same dpi)."""
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  _plt().close(fig)
  return path


# One colour language in every figure: a drop is red, a rise blue (the heatmaps' RdBu
# runs the same way); class identities use the other colours, with a marker each.
DROP_COLOR, RISE_COLOR = "tab:red", "tab:blue"
CHANGE_CMAP = "RdBu"            # negative (worse) red, positive (better) blue
MARKERS = "osD^vP*Xph<>"
CHOICE_COLOR = "gold"


def _colors(c: int):
  """c class colours without the reds and blues that mean drop and rise."""
  plt = _plt()
  if c <= 8:
    cmap, skip = plt.get_cmap("tab10"), {0, 3}
  else:
    cmap, skip = plt.get_cmap("tab20"), {0, 1, 6, 7}
  palette = [cmap(i) for i in range(cmap.N) if i not in skip]
  return [palette[i % len(palette)] for i in range(c)]


def _choice_band(ax, x, xc, label=None):
  width = 0.015 * ((x.max() - x.min()) or 1.0)
  return ax.axvspan(xc - width, xc + width, color=CHOICE_COLOR, alpha=0.35, lw=0,
                    zorder=0, label=label)


def fig_overview(a: Analysis, out: Path) -> Path:
  """Left: every class's mean test accuracy; right: accuracy, balanced, worst class."""
  plt = _plt()
  values = [lv.value for lv in a.levels]
  lay = x_layout(values)
  x = np.array(lay.positions)
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True,
                                 gridspec_kw={"width_ratios": [1.35, 1]})
  shown = a.most_changed(MAX_LINES)
  colors = _colors(len(shown))
  # classes that sit on top of each other (e.g. all at 100%) stay visible: each has
  # its own marker and a small sideways offset
  dodge = 0.012 * ((x.max() - x.min()) or 1.0)
  for c, name in enumerate(a.names):
    m = np.array([a.acc[v][0][c] for v in values])
    if c not in shown:
      ax1.plot(x, 100 * m, color="0.7", lw=0.8, marker=".", ms=3, zorder=1,
               label="other classes" if c == min(set(range(len(a.names))) - set(shown))
               else None)
      continue
    j = shown.index(c)
    lo = np.array([a.acc[v][1][c] for v in values])
    hi = np.array([a.acc[v][2][c] for v in values])
    off = (j - (len(shown) - 1) / 2) * dodge
    ax1.errorbar(x + off, 100 * m, yerr=[100 * (m - lo), 100 * (hi - m)],
                 color=colors[j], marker=MARKERS[j % len(MARKERS)], ms=5, lw=1.4,
                 capsize=2, elinewidth=0.8, alpha=0.9, label=label(name, a.n[c]),
                 zorder=2)
  ax1.set_ylabel("test accuracy (%)")
  ax1.set_title("Per-class test accuracy (mean over seeds, 95% interval)"
                + ("" if len(shown) == len(a.names) else
                   f"\n{len(shown)} classes that move most in color"), fontsize=11)
  styles = {"accuracy": ("k", "-", "o", "accuracy"),
            "balanced_accuracy": ("tab:purple", "--", "s", "balanced accuracy"),
            "worst_class_accuracy": ("tab:orange", ":", "v", "worst-class accuracy"),
            "val_accuracy": ("0.5", "-.", "D", "validation accuracy")}
  for metric, (color, ls, marker, name) in styles.items():
    m = np.array([a.agg[v][metric][0] for v in values], float)
    lo = np.array([a.agg[v][metric][1] for v in values], float)
    hi = np.array([a.agg[v][metric][2] for v in values], float)
    ax2.plot(x, 100 * m, color=color, ls=ls, marker=marker, ms=4, lw=2, label=name)
    if np.isfinite(lo).any():
      ax2.fill_between(x, 100 * lo, 100 * hi, color=color, alpha=0.12, lw=0)
  ax2.set_title("Average and worst class (95% interval)")
  xc = x[values.index(a.chosen)]
  for ax in (ax1, ax2):
    setup_x(ax, lay, a.key)
    ax.grid(alpha=0.3)
    _choice_band(ax, x, xc, label=f"chosen by validation ({fmt(a.chosen)})")
  ax1.legend(fontsize=8, loc="lower left", ncol=2 if len(a.names) > 8 else 1,
             framealpha=0.85)
  ax2.legend(fontsize=8, loc="lower left", framealpha=0.85)
  lo_all = min(100 * np.nanmin(a.acc[v][1]) if np.isfinite(a.acc[v][1]).any()
               else 100 * np.nanmin(a.acc[v][0]) for v in values)
  ax1.set_ylim(max(-2, min(lo_all, 100) - 5), 102)
  return _save(fig, out)


def fig_small_multiples(a: Analysis, out: Path) -> Path:
  """One panel per class: mean and 95% interval, with the baseline level dashed."""
  plt = _plt()
  values = [lv.value for lv in a.levels]
  lay = x_layout(values)
  x = np.array(lay.positions)
  shown = a.most_changed(MAX_PANELS)
  c = len(shown)
  cols = min(4, c)
  rows = math.ceil(c / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), sharey=True,
                           squeeze=False)
  for j, i in enumerate(shown):
    name = a.names[i]
    ax = axes[j // cols][j % cols]
    m = np.array([a.acc[v][0][i] for v in values])
    lo = np.array([a.acc[v][1][i] for v in values])
    hi = np.array([a.acc[v][2][i] for v in values])
    ax.fill_between(x, 100 * lo, 100 * hi, color="0.5", alpha=0.2, lw=0)
    ax.plot(x, 100 * m, "o-", color="0.15", ms=3.5, lw=1.4)
    ax.axhline(100 * a.acc[a.baseline][0][i], color="0.4", lw=0.8, ls="--")
    for v in values:
      ch = a.change.get(v)
      if ch is not None and (ch["drop"][i] or ch["rise"][i]):
        ax.plot(x[values.index(v)], 100 * a.acc[v][0][i], "v" if ch["drop"][i] else "^",
                color=DROP_COLOR if ch["drop"][i] else RISE_COLOR, ms=8, zorder=3)
    _choice_band(ax, x, x[values.index(a.chosen)])
    ax.set_title(label(name, a.n[i]), fontsize=10)
    setup_x(ax, lay, a.key)
    ax.xaxis.label.set_fontsize(8)
    ax.tick_params(labelsize=7)
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
  for j in range(c, rows * cols):
    axes[j // cols][j % cols].axis("off")
  for r in range(rows):
    axes[r][0].set_ylabel("test accuracy (%)", fontsize=8)
  fig.suptitle(f"Per-class test accuracy vs {a.key} (mean, 95% interval)\n"
               f"dashed: baseline {fmt(a.baseline)}; red \u25bc / blue \u25b2: "
               f"significant drop / rise ({_flag_words(a)}); gold band: chosen by "
               "validation"
               + ("" if c == len(a.names) else f"\nthe {c} of {len(a.names)} classes "
                  "that move most (all: per_class_accuracy.csv)"), fontsize=9)
  return _save(fig, out)


def _flag_words(a: Analysis) -> str:
  """'Holm over 24 tests' or, with too few seeds, why nothing is flagged."""
  if a.family == 0:
    return f"none possible with {a.fewest_seeds} seed(s)"
  return f"{a.correction_name} over {a.family} tests"


def fig_change_heatmap(a: Analysis, out: Path) -> Path:
  plt = _plt()
  values = [v for v in (lv.value for lv in a.levels) if v in a.change]
  shown = a.most_changed(MAX_ROWS)
  names = [a.names[i] for i in shown]
  d = np.array([a.change[v]["delta"][shown] for v in values]).T * 100  # [C, L]
  sig = np.array([a.change[v]["p_adj"][shown] < a.alpha for v in values]).T
  lim = max(1.0, float(np.nanmax(np.abs(d))))
  fig, ax = plt.subplots(figsize=(max(6.0, 3.2 + 1.2 * len(values)),
                                  1.6 + 0.42 * len(names)))
  im = ax.imshow(d, cmap=CHANGE_CMAP, vmin=-lim, vmax=lim, aspect="auto")
  for (i, j), v in np.ndenumerate(d):
    if np.isfinite(v):
      ax.text(j, i, f"{v:+.1f}{'*' if sig[i, j] else ''}", ha="center", va="center",
              fontsize=8, color="white" if abs(v) > 0.6 * lim else "black")
  ax.set_xticks(range(len(values)), [fmt(v) for v in values])
  ax.set_yticks(range(len(names)), [label(a.names[i], a.n[i]) for i in shown],
                fontsize=8)
  ax.set_xlabel(a.key)
  ax.set_title(f"Change in test accuracy (points; red: drop, blue: rise)\nvs "
               f"{a.key}={fmt(a.baseline)}; * significant ({_flag_words(a)}, alpha "
               f"{a.alpha})"
               + ("" if len(names) == len(a.names) else
                  f"\nthe {len(names)} of {len(a.names)} classes that move most"),
               fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.05, label="points")
  return _save(fig, out)


def fig_forest(a: Analysis, value, out: Path) -> Path:
  plt = _plt()
  ch = a.change[value]
  shown = a.most_changed(MAX_ROWS)
  c = len(shown)
  fig, ax = plt.subplots(figsize=(7, 1.4 + 0.38 * c))
  y = np.arange(c)[::-1]
  d, lo, hi = (100 * ch[k][shown] for k in ("delta", "lo", "hi"))
  colors = [DROP_COLOR if ch["drop"][i] else RISE_COLOR if ch["rise"][i] else "0.35"
            for i in shown]
  for i in range(c):
    ax.errorbar(d[i], y[i], xerr=[[d[i] - lo[i]], [hi[i] - d[i]]], fmt="o",
                color=colors[i], capsize=3)
  ax.axvline(0, color="k", lw=0.8)
  ax.set_yticks(y, [label(a.names[i], a.n[i]) for i in shown], fontsize=8)
  ax.set_xlabel(f"change in test accuracy (points), {a.key}={fmt(value)} minus "
                f"{fmt(a.baseline)}")
  ax.set_title(f"Per-class change at {a.key}={fmt(value)}: 95% interval, unadjusted "
               f"({ch['interval']})\nred: significant drop, blue: significant rise "
               f"({_flag_words(a)})", fontsize=10)
  ax.grid(alpha=0.3, axis="x")
  return _save(fig, out)


def fig_confusion_diff(a: Analysis, out: Path) -> Path:
  plt = _plt()
  d = a.confusion_diff
  keep = list(range(len(a.names)))
  if len(keep) > MAX_CONFUSION:  # the classes with the most changed counts
    moved = np.abs(d).sum(axis=0) + np.abs(d).sum(axis=1)
    keep = sorted(np.argsort(-moved)[:MAX_CONFUSION].tolist())
  d = d[np.ix_(keep, keep)]
  names = [label(a.names[i], a.n[i]) for i in keep]
  c = len(names)
  # coloured by what the change does to accuracy: fewer correct (diagonal down) and
  # more confusions (off-diagonal up) are both red, as drops are everywhere else
  harm = np.where(np.eye(c, dtype=bool), d, -d)
  size = max(4.5, 0.55 * c + 2.5)
  fig, ax = plt.subplots(figsize=(size + 1.2, size))
  lim = max(1, int(np.abs(d).max()))
  im = ax.imshow(harm, cmap=CHANGE_CMAP, vmin=-lim, vmax=lim)
  if c <= 25:
    for (i, j), v in np.ndenumerate(d):
      if v:
        ax.text(j, i, f"{v:+d}", ha="center", va="center", fontsize=7,
                color="white" if abs(v) > 0.6 * lim else "black")
  ax.set_xticks(range(c), names, rotation=60, ha="right", fontsize=8)
  ax.set_yticks(range(c), names, fontsize=8)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(f"Confusion change, {a.key}={fmt(a.target)} minus {fmt(a.baseline)}\n"
               f"test counts summed over {a.paired_for_diff} paired seed(s)\n"
               "red: worse (fewer correct on the diagonal,\nnew errors off it); "
               "blue: better", fontsize=9)
  from matplotlib.ticker import MaxNLocator
  bar = fig.colorbar(im, ax=ax, fraction=0.046,
                     label="effect on correct predictions (red: worse)")
  bar.locator = MaxNLocator(integer=True)
  bar.update_ticks()
  return _save(fig, out)


def pair_grids(sweep: Sweep) -> list[tuple]:
  """For each pair of setting axes: (key_a, vals_a, key_b, vals_b, mean val acc [A, B])
  over seeds, taking the best over the remaining setting axes."""
  settings = sweep.setting_axes
  out = []
  for ax_a, ax_b in itertools.combinations(settings, 2):
    cells: dict[tuple, dict[tuple, list[float]]] = {}
    others = [s.key for s in settings if s.key not in (ax_a.key, ax_b.key)]
    for r in sweep.finished:
      cell = (r.values[ax_a.key], r.values[ax_b.key])
      cells.setdefault(cell, {}).setdefault(_setting(r.values, others), []).append(
          r.val_accuracy)
    va = ordered_values(ax_a, [c[0] for c in cells])
    vb = ordered_values(ax_b, [c[1] for c in cells])
    grid = np.full((len(va), len(vb)), np.nan)
    for (x, y), by_other in cells.items():
      grid[va.index(x), vb.index(y)] = max(np.mean(v) for v in by_other.values())
    out.append((ax_a.key, va, ax_b.key, vb, grid, others))
  return out


def fig_pair(key_a, va, key_b, vb, grid, others, out: Path) -> Path:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(2.5 + 0.9 * len(vb), 1.8 + 0.55 * len(va)))
  finite = grid[np.isfinite(grid)]
  vmin = float(finite.min()) if finite.size else 0
  im = ax.imshow(100 * grid, cmap="viridis", vmin=100 * vmin,
                 vmax=100 * float(finite.max()) if finite.size else 1, aspect="auto")
  best = np.unravel_index(np.nanargmax(grid), grid.shape) if finite.size else None
  for (i, j), v in np.ndenumerate(grid):
    if np.isfinite(v):
      bright = (v - vmin) / max(float(finite.max()) - vmin, 1e-9) > 0.6
      ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", fontsize=8,
              color="black" if bright else "white",
              fontweight="bold" if (i, j) == best else "normal")
  if best is not None:
    ax.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False,
                               ec="red", lw=2))
  ax.set_xticks(range(len(vb)), [fmt(v) for v in vb], rotation=45 if len(vb) > 6 else 0)
  ax.set_yticks(range(len(va)), [fmt(v) for v in va])
  ax.set_xlabel(key_b)
  ax.set_ylabel(key_a)
  extra = f"; best over {', '.join(others)}" if others else ""
  ax.set_title(f"Mean validation accuracy (%) over seeds{extra}", fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.05, label="val accuracy (%)")
  return _save(fig, out)


# ---------------------------------------------------------------------- writing


def _ci(m, lo, hi) -> str:
  if not np.isfinite(lo):
    return pct(m)
  return f"{pct(m)} [{pct(lo)}, {pct(hi)}]"


def _where(a: Analysis, value) -> str:
  return fmt(value) if a.null_split else f"{a.key}={fmt(value)}"


def section_accuracy(a: Analysis, rd: Path, lines: list[str]) -> None:
  values = [lv.value for lv in a.levels]
  rows, csv_rows = [], []
  for c, name in enumerate(a.names):
    cells = [name, int(a.n[c])]
    for v in values:
      m, lo, hi = (a.acc[v][0][c], a.acc[v][1][c], a.acc[v][2][c])
      cells.append(_ci(m, lo, hi))
      csv_rows.append([a.key, fmt(v), name, int(a.n[c]), len(a.level(v).reps), m, lo, hi,
                       a.acc_method[v]])
    rows.append(cells)
  for metric in ("accuracy", "balanced_accuracy", "worst_class_accuracy",
                 "val_accuracy"):
    cells = [f"**{metric.replace('_', ' ')}**", ""]
    for v in values:
      m, lo, hi = a.agg[v][metric]
      cells.append(_ci(m, lo, hi))
      csv_rows.append([a.key, fmt(v), f"[{metric}]", "", len(a.level(v).reps), m, lo,
                       hi, a.acc_method[v]])
    rows.append(cells)
  write_csv(rd / "per_class_accuracy.csv",
            ["axis", "value", "class", "n", "seeds", "mean", "lo95", "hi95", "interval"],
            csv_rows)
  fig_overview(a, rd / "per_class_accuracy.png")
  fig_small_multiples(a, rd / "per_class_panels.png")
  seeds = sorted({len(lv.reps) for lv in a.levels})
  lines += [f"## 1. Per-class test accuracy against {a.key}", "",
            f"![per-class accuracy]({REPORT_DIR}/per_class_accuracy.png)", "",
            f"![one panel per class]({REPORT_DIR}/per_class_panels.png)", "",
            "Test accuracy in percent, mean over seeds with its 95% interval "
            f"({'; '.join(sorted(set(a.acc_method.values())))}). "
            "Rows in bold: accuracy, balanced accuracy, worst-class accuracy and "
            "validation accuracy (of the evaluated checkpoint).", "",
            md_table(["class", "n", *[fmt(v) for v in values]], rows), ""]
  if len(values) >= 2:
    first, last = values[0], values[-1]
    mean_first, mean_last = a.agg[first]["accuracy"][0], a.agg[last]["accuracy"][0]
    drops = (a.acc[last][0] - a.acc[first][0])
    order = np.argsort(np.nan_to_num(drops, nan=0.0))
    worst = [i for i in order[:3] if drops[i] < -0.005]
    steady = [i for i in range(len(a.names)) if abs(drops[i]) <= 0.01]
    text = (f"From {_where(a, first)} to {_where(a, last)} mean test accuracy goes from "
            f"{pct(mean_first)}% to {pct(mean_last)}% and worst-class accuracy from "
            f"{pct(a.agg[first]['worst_class_accuracy'][0])}% to "
            f"{pct(a.agg[last]['worst_class_accuracy'][0])}%.")
    if worst:
      text += " The classes that fall most: " + "; ".join(
          f"{label(a.names[i], a.n[i])} from {pct(a.acc[first][0][i])}% to "
          f"{pct(a.acc[last][0][i])}% ({signed(drops[i])} points)" for i in worst) + "."
    if steady:
      text += (" Within one point of where they started: "
               + ", ".join(a.names[i] for i in steady) + ".")
    lines += [text, ""]
  if seeds == [1]:
    lines += ["With one seed per value, per-class intervals are Wilson score "
              "intervals over the class's test examples (test-set noise only; "
              "seed-to-seed variation is not measured).", ""]


TOO_FEW = "too few examples or seeds to test"


def seeds_banner(a: Analysis) -> list[str]:
  """The K < MIN_SEEDS warning: why nothing is flagged, in bold, or nothing."""
  k = a.fewest_seeds
  if not a.change or k >= stats.MIN_SEEDS:
    return []
  few = [fmt(v) for v, ch in a.change.items() if ch["paired"] < stats.MIN_SEEDS]
  where = _where(a, ", ".join(few)) if len(few) < len(a.change) else "every value"
  return [f"**Nothing is flagged: {'only ' if k else ''}{k} paired seed(s) at {where}.** "
          "A flag claims that the setting changes a class's expected accuracy over the "
          "randomness of training, and seed-to-seed variation cannot be estimated from "
          f"fewer than {stats.MIN_SEEDS} seeds (two runs that agree by chance would look "
          "like certainty). The intervals below still hold for these runs, and the exact "
          "McNemar column says whether these particular runs differ on this test set. "
          "Run more seeds: `python -m jaxreg.report --plan --workdir=THIS_DIR "
          "--effect=POINTS` says how many.", ""]


def section_change(a: Analysis, rd: Path, lines: list[str]) -> None:
  values = [lv.value for lv in a.levels if lv.value in a.change]
  lines += [f"## 2. Per-class change relative to {_where(a, a.baseline)}", ""]
  if not values:
    lines += ["No other value has runs paired (by seed) with the baseline.", ""]
    return
  lines += seeds_banner(a)
  fig_change_heatmap(a, rd / "change_vs_baseline.png")
  fig_forest(a, a.target, rd / "change_forest.png")
  csv_rows, rows = [], []
  for c, name in enumerate(a.names):
    cells = [label(name, a.n[c])]
    for v in values:
      ch = a.change[v]
      mark = " ▼" if ch["drop"][c] else " ▲" if ch["rise"][c] else ""
      cells.append(f"{signed(ch['delta'][c])} [{signed(ch['lo'][c])}, "
                   f"{signed(ch['hi'][c])}]{mark}")
      csv_rows.append([a.key, fmt(v), fmt(a.baseline), name, int(a.n[c]), ch["paired"],
                       ch["delta"][c], ch["lo"][c], ch["hi"][c], ch["interval"],
                       ch["p"][c], ch["p_adj"][c], a.correction, a.family,
                       bool(ch["drop"][c]), bool(ch["rise"][c]), ch["p_mcnemar"][c],
                       ch["lost"][c], ch["gained"][c], ch["pairing"], ch["sd"][c],
                       ch["min_detectable"][c],
                       "yes" if ch["testable"][c] else TOO_FEW])
    rows.append(cells)
  write_csv(rd / "per_class_change.csv",
            ["axis", "value", "baseline", "class", "n", "paired_seeds", "delta",
             "lo95", "hi95", "interval", "p", "p_adjusted", "correction", "family_size",
             "significant_drop", "significant_rise", "p_mcnemar", "lost", "gained",
             "pairing", "seed_sd", "min_detectable", "testable"], csv_rows)
  methods = sorted({a.change[v]["interval"] for v in values})
  lines += [f"![change heatmap]({REPORT_DIR}/change_vs_baseline.png)", "",
            f"![change at {fmt(a.target)}]({REPORT_DIR}/change_forest.png)", "",
            f"Change in test accuracy (points) against {_where(a, a.baseline)}, with "
            f"its 95% interval, unadjusted for multiple comparisons "
            f"({'; '.join(methods)}). ▼ marks a significant drop and ▲ a significant "
            "rise: the seed-paired t-test (variance floored at the binomial variance) "
            + (f"with {a.correction_name}-adjusted p < {a.alpha} over the family of "
               f"{a.family} tests ({int((a.n > 0).sum())} classes x {len(values)} "
               "compared value(s))" if a.family else
               f"needs {stats.MIN_SEEDS} or more paired seeds") + ". Paired runs (same "
            f"{', '.join(a.sweep.replicate_keys) or 'run'}) per value: "
            + ", ".join(f"{fmt(v)}: {a.change[v]['paired']}" for v in values)
            + ". " + _pairing_sentence(a, values)
            + " Every p-value is in report/per_class_change.csv.", "",
            md_table(["class", *[fmt(v) for v in values]], rows), ""]
  lines += evidence_tables(a, values)
  sentences = []
  for v in values:
    ch = a.change[v]
    for c in np.argsort(np.nan_to_num(ch["delta"]))[::1]:
      if ch["drop"][c] or ch["rise"][c]:
        word = "drops" if ch["delta"][c] < 0 else "rises"
        sentences.append(
            f"At {_where(a, v)}, class {label(a.names[c], a.n[c])} {word} "
            f"{abs(100 * ch['delta'][c]):.1f} points (95% CI {signed(ch['lo'][c])} "
            f"to {signed(ch['hi'][c])}, unadjusted; {a.correction_name}-adjusted p "
            f"{p_is(ch['p_adj'][c])} over {a.family} tests, {ch['paired']} {a.unit}), "
            f"significant after {a.correction_name}.")
  if sentences:
    lines += ["\n".join(f"- {s}" for s in sentences), ""]
  else:
    v = values[-1]
    ch = a.change[v]
    c = int(np.nanargmin(ch["delta"]))
    why = (f"No class changes significantly after {a.correction_name} at any value."
           if a.family else "Nothing can be flagged (see the banner above).")
    lines += [f"{why} The largest drop at {_where(a, v)} is "
              f"{label(a.names[c], a.n[c])}: {signed(ch['delta'][c])} points (95% CI "
              f"{signed(ch['lo'][c])} to {signed(ch['hi'][c])}, unadjusted"
              + (f"; adjusted p {p_is(ch['p_adj'][c])}" if a.family else "")
              + (f"; exact McNemar on these runs p {p_is(ch['p_mcnemar'][c])}"
                 if np.isfinite(ch["p_mcnemar"][c]) else "") + ").", ""]


def evidence_tables(a: Analysis, values) -> list[str]:
  """Per class at each compared value: the flag beside the exact per-run evidence and
  the smallest drop the sweep could have detected."""
  shown = a.most_changed(MAX_ROWS)
  out = ["The flag's adjusted p beside the evidence on these runs. `McNemar p` is the "
         "exact two-sided McNemar test on the (seed, example) pairs of the paired runs, "
         "pooled over seeds and unadjusted: it says that these runs differ on this test "
         "set, not that the setting changes the class (it treats the runs as fixed, so "
         "run-to-run variation alone makes it small; never read it as the flag). "
         "`lost / gained`: test examples the baseline got right and this value wrong / "
         "the reverse, summed over seeds. `seed sd`: the standard deviation over seeds of "
         "the per-seed change (points). `detectable`: the smallest drop (points) the "
         "flag would detect with 80% power at this seed sd and number of seeds, "
         + (f"at alpha {a.alpha}/{a.family} = {a.alpha / a.family:.2g} (Bonferroni, "
            f"{a.correction_name}'s first step)" if a.family else
            f"which needs {stats.MIN_SEEDS} or more seeds")
         + " (`-`: no drop, down to 0%, reaches that power)"
         + f"; \"{TOO_FEW}\": even a fall to 0% in every seed could not be flagged"
         + ("" if len(shown) == len(a.names) else
            f". The {len(shown)} classes that move most (all: per_class_change.csv)")
         + ".", ""]
  for value in values:
    ch = a.change[value]
    rows = []
    for c in shown:
      lost, gained = ch["lost"][c], ch["gained"][c]
      md = ch["min_detectable"][c]
      rows.append([label(a.names[c], a.n[c]), signed(ch["delta"][c]), pval(ch["p_adj"][c]),
                   pval(ch["p_mcnemar"][c]),
                   "-" if not np.isfinite(lost) else f"{int(lost)} / {int(gained)}",
                   pct(ch["sd"][c]), pct(md) if np.isfinite(md) else "-",
                   "" if ch["testable"][c] else TOO_FEW])
    out += [f"At {_where(a, value)} ({ch['paired']} paired {a.unit}):", "",
            md_table(["class", "change", "adj. p", "McNemar p", "lost / gained",
                      "seed sd", "detectable", ""], rows, "lrrrrrrl"), ""]
  return out


def _pairing_sentence(a: Analysis, values) -> str:
  by = {v: a.change[v]["pairing"] for v in values}
  if all(p == "examples" for p in by.values()):
    return ("Every paired run stored its per-example test predictions, which give the "
            "exact McNemar evidence below.")
  if all(p == "counts" for p in by.values()):
    return ("Without stored per-example predictions (runs written before "
            "predictions_test.npz) there is no McNemar evidence (NaN); the flag needs "
            "only the per-seed counts.")
  return ("Per-example predictions (McNemar evidence) at " + ", ".join(
      fmt(v) for v in values if by[v] == "examples") + "; none at " + ", ".join(
          fmt(v) for v in values if by[v] == "counts") + " (some runs stored no "
      "predictions).")


def _fold_index(a: Analysis) -> int:
  return a.sweep.replicate_keys.index("data.fold")


def _folds(a: Analysis) -> int:
  """The number of k-fold folds the runs hold (0: a single held-out split)."""
  if "data.fold" not in a.sweep.replicate_keys:
    return 0
  i = _fold_index(a)
  return len({r[i] for lv in a.levels for r in lv.reps})


def _per_fold_val(a: Analysis) -> str:
  """'fold 0: 0 85.10%, 0.2 86.02%; fold 1: ...' (mean over seeds within a fold)."""
  i = _fold_index(a)
  folds = sorted({r[i] for lv in a.levels for r in lv.reps})
  parts = []
  for f in folds:
    cells = []
    for lv in a.levels:
      v = [x for r, x in zip(lv.reps, lv.val_accuracy) if r[i] == f]
      if v:
        cells.append(f"{fmt(lv.value)} {pct(np.mean(v), 2)}%")
    parts.append(f"fold {fmt(f)}: " + ", ".join(cells))
  return "; ".join(parts)


def _replicates(a: Analysis) -> str:
  keys = a.sweep.replicate_keys
  if not keys:
    return "runs"
  names = {"seed": "seeds", "data.split_seed": "validation splits",
           "data.fold": "folds"}
  counts = [len({r[i] for lv in a.levels for r in lv.reps}) for i in range(len(keys))]
  return " x ".join(f"{n} {names[k]}" for k, n in zip(keys, counts))


def section_choice(a: Analysis, rd: Path, lines: list[str]) -> None:
  lines += ["## 3. What validation accuracy chooses, and what it costs", ""]
  vals = "; ".join(f"{fmt(lv.value)}: {pct(a.agg[lv.value]['val_accuracy'][0], 2)}%"
                   for lv in a.levels)
  chosen, base = a.chosen, a.baseline
  lines += [f"Mean validation accuracy over {_replicates(a)} (evaluated checkpoint of "
            f"each run): {vals}. It chooses **{_where(a, chosen)}**.", ""]
  folds = _folds(a)
  if folds:
    lines += [f"Validation is {folds}-fold cross-validation (`data.fold`): each fold "
              "holds out a different stratified fold of train, so the choice is "
              f"the mean over all {folds} folds; each fold's model is also tested on "
              "the whole test set, and the costs below average over folds (and "
              f"seeds), paired by fold and seed. Per fold: {_per_fold_val(a)}.", ""]
  if chosen == base:
    lines += [f"That is the baseline itself: the choice costs no class anything. The "
              f"table below shows the strongest value, {_where(a, a.target)}, instead.",
              ""] if a.target is not None else ["", ""]
  show = a.target
  if show is None or show not in a.change:
    return
  ch = a.change[show]
  rows, csv_rows = [], []
  for c, name in enumerate(a.names):
    b, s = a.acc[base][0][c], a.acc[show][0][c]
    flag = "significant drop" if ch["drop"][c] else \
        "significant rise" if ch["rise"][c] else ""
    rows.append([name, int(a.n[c]), pct(b), pct(s),
                 signed(ch["delta"][c]), f"[{signed(ch['lo'][c])}, {signed(ch['hi'][c])}]",
                 pval(ch["p_adj"][c]), flag])
    csv_rows.append([name, int(a.n[c]), fmt(base), fmt(show), b, s, ch["delta"][c],
                     ch["lo"][c], ch["hi"][c], ch["p_adj"][c], flag])
  for metric in ("accuracy", "balanced_accuracy", "worst_class_accuracy"):
    b, s = a.agg[base][metric][0], a.agg[show][metric][0]
    rows.append([f"**{metric.replace('_', ' ')}**", "", pct(b), pct(s), signed(s - b),
                 "", "", ""])
    csv_rows.append([f"[{metric}]", "", fmt(base), fmt(show), b, s, s - b, "", "", "",
                     ""])
  write_csv(rd / "choice.csv", ["class", "n", "baseline", "chosen", "baseline_acc",
                                "chosen_acc", "delta", "lo95", "hi95", "p_adjusted",
                                "flag"], csv_rows)
  lines += [md_table(["class", "n", f"{fmt(base)} (%)", f"{fmt(show)} (%)",
                      "change (points)", "95% CI (unadjusted)", "adj. p", ""], rows), ""]
  acc_d = a.agg[show]["accuracy"][0] - a.agg[base]["accuracy"][0]
  worst_d = (a.agg[show]["worst_class_accuracy"][0]
             - a.agg[base]["worst_class_accuracy"][0])
  which = "choice" if show == chosen else "strongest value"
  text = (f"Against {_where(a, base)}, the {which} {_where(a, show)} changes test "
          f"accuracy by {signed(acc_d)} points and worst-class accuracy by "
          f"{signed(worst_d)} points.")
  drops = [c for c in np.argsort(np.nan_to_num(ch["delta"])) if ch["drop"][c]]
  if drops:
    text += " It costs " + "; ".join(
        f"{label(a.names[c], a.n[c])} {abs(100 * ch['delta'][c]):.1f} points (95% CI "
        f"{signed(ch['lo'][c])} to {signed(ch['hi'][c])})" for c in drops) + \
        f", significant after {a.correction_name}."
  else:
    c = int(np.nanargmin(ch["delta"]))
    if ch["delta"][c] < 0:
      text += (f" No class drops significantly; the largest cost is "
               f"{label(a.names[c], a.n[c])} at {signed(ch['delta'][c])} points (95% CI "
               f"{signed(ch['lo'][c])} to {signed(ch['hi'][c])}, unadjusted).")
    else:
      text += " No class loses accuracy on average over the paired seeds."
  lines += [text, ""]


def section_confusion(a: Analysis, rd: Path, lines: list[str]) -> None:
  lines += ["## 4. Which classes absorb the lost examples", ""]
  d = a.confusion_diff
  if d is None:
    lines += ["Only the baseline has runs: nothing to compare.", ""]
    return
  fig_confusion_diff(a, rd / "confusion_change.png")
  names = a.names
  write_csv(rd / "confusion_change.csv", ["true \\ predicted", *names],
            [[names[i], *map(int, d[i])] for i in range(len(names))])
  which = "chosen" if a.target == a.chosen else "strongest"
  lines += [f"![confusion change]({REPORT_DIR}/confusion_change.png)", "",
            f"Test confusion matrix at the {which} value {_where(a, a.target)} minus "
            f"the baseline {_where(a, a.baseline)}, counts summed over "
            f"{a.paired_for_diff} paired seed(s) (rows: true class; the diagonal is the "
            "change in correct predictions, off-diagonal cells the change in each "
            "confusion). Table: report/confusion_change.csv.", ""]
  lost = -np.diag(d)
  total = int(np.trace(d))
  text = [f"In total {abs(total)} {'fewer' if total < 0 else 'more'} test "
          f"predictions are right at {_where(a, a.target)} (over "
          f"{a.paired_for_diff} seed(s))."]
  off = d.copy()
  np.fill_diagonal(off, 0)
  for i in np.argsort(-lost)[:3]:
    if lost[i] <= 0:
      break
    gone = [(int(off[i, j]), names[j]) for j in np.argsort(-off[i]) if off[i, j] > 0][:3]
    where = ", ".join(f"{k} more to {nm}" for k, nm in gone)
    text.append(f"Class {label(names[i], a.n[i])} loses {int(lost[i])} correct "
                f"predictions" + (f" ({where})." if where else "."))
  absorbed = np.clip(off, 0, None).sum(axis=0)
  top = [j for j in np.argsort(-absorbed)[:3] if absorbed[j] > 0]
  if top:
    text.append("The classes that absorb them, counting new wrong predictions of each "
                "class: " + ", ".join(f"{names[j]} +{int(absorbed[j])}" for j in top)
                + ".")
  entries = sorted(((int(off[i, j]), names[i], names[j]) for i in range(len(names))
                    for j in range(len(names)) if off[i, j] > 0), reverse=True)[:10]
  lines += [" ".join(text), ""]
  if entries:
    lines += ["Largest increases in a confusion (true -> predicted):", "",
              md_table(["true", "predicted", "change"],
                       [[t, p, f"+{k}"] for k, t, p in entries]), ""]


def section_pairs(sweep: Sweep, rd: Path, lines: list[str]) -> None:
  if len(sweep.setting_axes) < 2:
    return
  lines += ["## 5. Pairs of hyperparameters: mean validation accuracy", ""]
  for key_a, va, key_b, vb, grid, others in pair_grids(sweep):
    stem = f"val_heatmap__{key_a}__{key_b}"
    fig_pair(key_a, va, key_b, vb, grid, others, rd / f"{stem}.png")
    write_csv(rd / f"{stem}.csv", [f"{key_a} \\ {key_b}", *map(fmt, vb)],
              [[fmt(x), *grid[i]] for i, x in enumerate(va)])
    i, j = np.unravel_index(np.nanargmax(grid), grid.shape)
    lines += [f"![{key_a} x {key_b}]({REPORT_DIR}/{stem}.png)", "",
              f"Best cell: {key_a}={fmt(va[i])}, {key_b}={fmt(vb[j])} at "
              f"{pct(grid[i, j], 2)}% mean validation accuracy"
              + (f" (best over {', '.join(others)})" if others else "") + "; worst "
              f"cell {pct(np.nanmin(grid), 2)}%.", ""]


def small_class_note(sweep: Sweep) -> str:
  n = sweep.n
  present = [i for i in range(len(n)) if n[i] > 0]
  i = min(present, key=lambda i: n[i])
  small = [sweep.class_names[j] for j in present if n[j] < SMALL_N]
  if small:
    return (f"Classes with fewer than {SMALL_N} test examples carry their count, e.g. "
            f"`{label(sweep.class_names[i], n[i])}`: there, one test error moves the "
            f"class's accuracy by 100/n points ({sweep.class_names[i]}: "
            f"{100 / n[i]:.1f} points). Small classes: {', '.join(small)}.")
  return (f"Every class has at least {SMALL_N} test examples; the smallest, "
          f"{sweep.class_names[i]} (n={int(n[i])}), moves {100 / n[i]:.1f} points per "
          "test error.")


def header_lines(sweep: Sweep, a: Analysis | None) -> list[str]:
  meta = sweep.meta
  counts: dict[str, int] = {}
  for r in sweep.runs:
    counts[r.status] = counts.get(r.status, 0) + 1
  axes = "; ".join(f"`{ax.key}` = {ax.describe()}" for ax in sweep.axes)
  lines = [f"# Class-dependent effects: {sweep.workdir.name}", "",
           f"Sweep `{sweep.workdir}` ({meta['mode']}"
           + (f", budget {meta['budget']}, sampler seed {meta['sampler_seed']}"
              if meta["mode"] == "random" else "") + f"): {axes}. "
           f"{len(sweep.runs)} runs: "
           + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ". "
           f"Test set: {len(sweep.class_names)} classes, {int(sweep.n.sum())} examples "
           f"({', '.join(f'{nm} {int(k)}' for nm, k in zip(sweep.class_names, sweep.n))}).",
           ""]
  failed = [r for r in sweep.runs if r.status in ("diverged", "error")]
  if failed:
    lines += ["Left out (no summary): " + "; ".join(
        f"{r.name} ({r.status})" for r in failed) + ".", ""]
  if a is not None and a.null_split:
    lines += [f"**Null comparison (`--null_split`): {a.null_split}.** The two "
              "\"settings\" differ only in the randomness of training, so every class "
              "flagged below is a false positive of the report's test.", ""]
  if a is not None:
    reps = sweep.replicate_keys
    lines += [f"Analysed axis: `{a.key}`, baseline {fmt(a.baseline)}. "
              + (f"Replicates: {', '.join(reps)} (averaged over, and pairing the runs). "
                 if reps else "No seed axis: one run per value. ")
              + (f"Other axes held at {', '.join(f'{k}={fmt(v)}' for k, v in a.fixed.items())}"
                 f" ({a.fixed_how})." if a.fixed else ""), ""]
    lines += seeds_banner(a)
  lines += [small_class_note(sweep), ""]
  return lines


def methods_lines(a: Analysis) -> list[str]:
  family = (f"the family of {a.family} tests: every class with test examples x every "
            "compared value" if a.family else "no family: no value has "
            f"{stats.MIN_SEEDS} paired seeds")
  return [
      "## Methods", "",
      "- Numbers are each run's final test evaluation from its summary.json: the "
      "checkpoint `train.final_checkpoint` names (`best` by validation "
      "`train.checkpoint_metric`, or `latest`); evaluated here: "
      f"{a.evaluated}.",
      "- Intervals in section 1: with two or more seeds, the mean over seeds "
      "+/- t(0.975, K-1) x sqrt(max(s^2, v) / K), clipped to [0, 100], where s^2 is "
      "the variance over seeds and v the class's binomial variance p(1-p)/n with p "
      "= (correct + 1/2) / (K n + 1) pooled over the seeds: the test examples are a "
      "sample of the class too, so seeds that agree exactly still get an interval "
      "of positive width. With one seed, the Wilson score interval of the class's "
      "correct count; for a single seed's balanced and worst-class accuracy, a "
      "percentile bootstrap of binomially resampled per-class counts.",
      "- The flag (section 2): for each class and compared value, the per-seed "
      "changes d_k = acc(value, seed k) - acc(baseline, seed k) over the K seeds both "
      f"have (paired by {', '.join(a.sweep.replicate_keys) or 'run'}), tested with "
      "t = mean(d) / sqrt(max(s_d^2, floor) / K) on K-1 degrees of freedom "
      "(scipy.stats.t), floor = the binomial variance of one seed's difference, "
      "pa(1-pa)/n + pb(1-pb)/n with each accuracy pooled over seeds and shrunk as "
      "above, so identical seed differences never give p = 0. The unit of "
      "replication is the seed: a flag says the setting changes the class's "
      "expected accuracy over the randomness of training. With fewer than "
      f"{stats.MIN_SEEDS} paired seeds nothing is flagged (p is empty). P-values are "
      f"adjusted with {a.correction_name} over {family}; a drop or rise is flagged "
      f"when the adjusted p < {a.alpha}. The interval is the same t interval (it "
      "excludes 0 exactly when the unadjusted p < 0.05: it is unadjusted); with one "
      "seed, Newcombe's square-and-add interval for paired proportions (method 10) "
      "from the per-example predictions, or his interval for independent "
      "proportions from the counts when no predictions were stored. `python -m "
      "jaxreg.report calibrate` checks by simulation that the flag's false-positive "
      "rate stays at or below alpha and its intervals cover (README, Statistics).",
      "- Evidence on these runs: the exact McNemar test (binomial, p = 1/2) on the "
      "discordant (seed, example) pairs, pooled over the paired seeds and "
      "unadjusted, from each run's predictions_test.npz (or eval/test-*.npz of the "
      "evaluated step from `jaxreg.evaluate`); empty where a run stored none. "
      "`detectable`: the smallest drop with 80% power for the flag at the observed "
      f"seed sd, K and alpha / family size (noncentral t).",
      "- Section 3: the value with the highest mean validation accuracy over all "
      "its runs (ties: the weaker value); the validation split is the held-out "
      "`data.val_fraction` of train fixed by `data.split_seed`, or with "
      "`jaxreg.sweep --folds=K` each of K stratified folds in turn (`data.fold`), "
      "which makes it a K-fold cross-validated choice (the mean over folds and "
      "seeds). Sweeping `data.split_seed` gives repeated hold-out instead. The test "
      "costs are those of the runs themselves (each fold's model trained on the "
      "other K-1 folds), not of a model retrained on all of train.",
      "",
  ]


def random_report(sweep: Sweep, rd: Path, lines: list[str]) -> None:
  """Random search with non-repeating values: a ranking and scatter plots."""
  plt = _plt()
  runs = sorted(sweep.finished, key=lambda r: -r.val_accuracy)
  keys = [a.key for a in sweep.axes]
  rows = []
  for r in runs[:20]:
    t = r.summary["test"]
    rows.append([r.name, *[fmt(r.values[k]) for k in keys], pct(r.val_accuracy, 2),
                 pct(t["accuracy"], 2), pct(t["worst_class_accuracy"], 2)])
  lines += ["## Runs ranked by validation accuracy", "",
            md_table(["run", *keys, "val acc (%)", "test acc (%)", "worst class (%)"],
                     rows, "l" * (1 + len(keys)) + "rrr"), ""]
  best = runs[0]
  t = best.summary["test"]
  lines += [f"The best run by validation accuracy, {best.name}, reaches "
            f"{pct(t['accuracy'], 2)}% test accuracy; its per-class test accuracy: "
            + ", ".join(f"{label(nm, k)} {pct(acc)}%" for nm, k, acc in
                        zip(t["class_names"], sweep.n, t["per_class_accuracy"])) + ".",
            ""]
  numeric = [a for a in sweep.setting_axes if a.type_name in ("int", "float")]
  val = np.array([100 * r.val_accuracy for r in sweep.finished])

  def scale(ax, axis, which):
    xs = [r.values[axis.key] for r in sweep.finished]
    if axis.kind == "loguniform" and min(xs) > 0:
      getattr(ax, f"set_{which}scale")("log")

  if numeric:
    fig, axes = plt.subplots(1, len(numeric), figsize=(4.2 * len(numeric), 3.8),
                             squeeze=False, sharey=True)
    for ax, axis in zip(axes[0], numeric):
      ax.scatter([r.values[axis.key] for r in sweep.finished], val, s=22)
      scale(ax, axis, "x")
      ax.set_xlabel(axis.key)
      ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy (%)")
    fig.suptitle("Validation accuracy of each run against each swept setting",
                 fontsize=10)
    _save(fig, rd / "random_val_scatter.png")
    lines += [f"![val accuracy per axis]({REPORT_DIR}/random_val_scatter.png)", ""]
  pairs = list(itertools.combinations(numeric, 2))
  if pairs:
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.8 * len(pairs), 4),
                             squeeze=False)
    for ax, (p, q) in zip(axes[0], pairs):
      sc = ax.scatter([r.values[p.key] for r in sweep.finished],
                      [r.values[q.key] for r in sweep.finished], c=val, cmap="viridis",
                      s=40, edgecolors="k", linewidths=0.4)
      scale(ax, p, "x")
      scale(ax, q, "y")
      ax.set_xlabel(p.key)
      ax.set_ylabel(q.key)
      ax.grid(alpha=0.3)
      fig.colorbar(sc, ax=ax, label="val accuracy (%)")
    fig.suptitle("Pairs of settings, colored by validation accuracy", fontsize=10)
    _save(fig, rd / "random_pairs.png")
    lines += [f"![pairs of settings]({REPORT_DIR}/random_pairs.png)", ""]
  write_csv(rd / "ranking.csv", ["run", *keys, "val_accuracy", "test_accuracy",
                                 "test_worst_class_accuracy"],
            [[r.name, *[r.values[k] for k in keys], r.val_accuracy,
              r.summary["test"]["accuracy"], r.summary["test"]["worst_class_accuracy"]]
             for r in runs])


def _values_repeat(sweep: Sweep) -> bool:
  if sweep.meta["mode"] == "grid":
    return True
  return all(a.kind in ("values", "choice") for a in sweep.setting_axes)


def write_report(workdir, key: str | None = None, baseline: str | None = None,
                 fix: dict | None = None, correction: str = "holm", alpha: float = 0.05,
                 reps: int = 2000, seed: int = 0, null_split: bool = False) -> Path:
  """Writes DIR/report.md and DIR/report/; returns the report.md path."""
  sweep = load_sweep(workdir)
  rd = sweep.workdir / REPORT_DIR
  rd.mkdir(exist_ok=True)
  lines: list[str]
  if null_split or _values_repeat(sweep):
    a = analyse(sweep, key, baseline, fix, correction, alpha, reps, seed, null_split)
    lines = header_lines(sweep, a)
    section_accuracy(a, rd, lines)
    section_change(a, rd, lines)
    section_choice(a, rd, lines)
    section_confusion(a, rd, lines)
    section_pairs(sweep, rd, lines)
    lines += methods_lines(a)
  else:
    lines = header_lines(sweep, None)
    random_report(sweep, rd, lines)
  files = sorted(p.name for p in rd.iterdir() if p.suffix in (".png", ".csv"))
  lines += ["## Files", "", f"In `{REPORT_DIR}/`: " + ", ".join(f"`{f}`" for f in files)
            + f". Per-run numbers: `{RUNS_FILE}`.", ""]
  out = sweep.workdir / "report.md"
  atomic_write(out, "\n".join(lines))
  return out


# ------------------------------------------------------------------------ plan


@dataclasses.dataclass
class PlanInput:
  names: list[str]
  n: np.ndarray          # test examples per class
  accuracy: np.ndarray   # baseline accuracy per class (fraction)
  seed_sd: np.ndarray    # sd over seeds of the per-seed change (fraction)
  values: int            # compared values (the family is classes x values)
  source: str            # where the numbers come from, for the printout


def pilot_estimates(workdir, key=None, baseline=None, fix=None) -> PlanInput:
  """Class sizes, baseline accuracies and the between-seed sd of the per-seed change,
  read from a pilot sweep: the root mean square over compared values of each class's
  observed sd; a sweep of seeds only gives sqrt(2) x the sd of accuracy over seeds
  (two independent runs; an upper bound when seeds share effects)."""
  sweep = load_sweep(workdir)
  if sweep.setting_axes:
    a = analyse(sweep, key, baseline, fix)
    sds = [ch["sd"] for ch in a.change.values() if ch["paired"] >= 2]
    if sds:
      sd = np.sqrt(np.nanmean(np.stack(sds) ** 2, axis=0))
      return PlanInput(a.names, a.n, a.acc[a.baseline][0], sd, len(a.change),
                       f"pilot {sweep.workdir} ({_where(a, a.baseline)} against "
                       f"{len(a.change)} value(s), {a.fewest_seeds}+ paired seeds)")
    runs = [r for r in sweep.finished if all(r.values.get(k) == v for k, v in
                                              a.fixed.items())
            and r.values[a.key] == a.baseline]
  else:
    runs = sweep.finished
  if len(runs) < 2:
    raise ReportError(f"--plan: the pilot {sweep.workdir} needs 2 or more seeds of one "
                      "setting to estimate the seed-to-seed sd (or give --seed_sd)")
  acc = class_acc(np.stack([r.test_confusion for r in runs]))
  return PlanInput(sweep.class_names, sweep.n, acc.mean(0),
                   np.sqrt(2) * acc.std(0, ddof=1), 1,
                   f"pilot {sweep.workdir} ({len(runs)} seeds of one setting; sd of "
                   "a change taken as sqrt(2) x the sd of accuracy)")


def plan_lines(p: PlanInput, effect: float, alpha: float = 0.05,
               power: float = 0.8) -> list[str]:
  """How many seeds the flag needs to detect a drop of `effect` (a fraction) in each
  class with `power`, at alpha / (classes x values) (Bonferroni, Holm's first step)."""
  family = int((p.n > 0).sum()) * p.values
  level = alpha / max(family, 1)
  need = stats.seeds_needed(effect, p.accuracy, p.n, p.seed_sd ** 2, level, power)
  rows = []
  for c, name in enumerate(p.names):
    at = [stats.t_test_power(effect, max(p.seed_sd[c] ** 2, float(stats.floor_at(
        p.accuracy[c], effect, p.n[c], k))), k, level) for k in (3, 5, 10)]
    rows.append([name, int(p.n[c]), pct(p.accuracy[c]), pct(p.seed_sd[c]),
                 "more than 200" if need[c] == 0 or effect > p.accuracy[c] + 1e-12
                 else str(int(need[c])), *[f"{float(x):.2f}" for x in at]])
  return [f"Seeds needed to flag a drop of {100 * effect:g} points with power {power} "
          f"at alpha {alpha} / {family} tests ({int((p.n > 0).sum())} classes x "
          f"{p.values} value(s)); {p.source}.", "",
          md_table(["class", "n", "accuracy (%)", "seed sd (points)", "seeds needed",
                    "power at 3", "at 5", "at 10"], rows), ""]


# ------------------------------------------------------------------------- CLI


def _define_flags():
  from absl import flags
  flags.DEFINE_string("workdir", None, "A sweep directory written by jaxreg.sweep.")
  flags.DEFINE_string("axis", None, "The setting to analyse (default: the first reg.* "
                      "or dropout axis, else the first non-seed axis).")
  flags.DEFINE_string("baseline", None, "Baseline value of --axis (default: smallest).")
  flags.DEFINE_enum("correction", "holm", ["holm", "bh"],
                    "Multiple-comparison correction over classes x compared values.")
  flags.DEFINE_float("alpha", 0.05, "Significance level after correction.")
  flags.DEFINE_integer("reps", 2000, "Bootstrap replicates (one seed's balanced and "
                       "worst-class accuracy intervals).")
  flags.DEFINE_integer("bootstrap_seed", 0, "Seed of that bootstrap.")
  flags.DEFINE_multi_string("fix", [], "KEY=VALUE: hold another setting axis here.")
  flags.DEFINE_bool("null_split", False, "Compare the first half of the seeds with the "
                    "second half (paired in order) as if they were two settings.")
  flags.DEFINE_bool("plan", False, "Print how many seeds the flag needs (with --effect; "
                    "from a pilot --workdir or --class_sizes and --seed_sd).")
  flags.DEFINE_float("effect", None, "--plan: the drop to detect, in points.")
  flags.DEFINE_list("class_sizes", [], "--plan: test examples per class.")
  flags.DEFINE_float("seed_sd", None, "--plan: sd over seeds of a class's per-seed "
                     "change, in points (default: from the pilot --workdir).")
  flags.DEFINE_float("accuracy", None, "--plan: baseline class accuracy in percent "
                     "(default: from the pilot, else 90).")
  flags.DEFINE_integer("compared_values", None, "--plan: values compared with the "
                       "baseline (the family is classes x values; default: the "
                       "pilot's, else 1).")
  flags.DEFINE_float("power", 0.8, "--plan: the power to reach.")
  flags.DEFINE_integer("sweeps", 1000, "calibrate: simulated sweeps per cell.")
  flags.DEFINE_bool("quick", False, "calibrate: a small grid (seconds).")


def _plan_input(FLAGS, fix) -> PlanInput:
  if FLAGS.workdir:
    p = pilot_estimates(FLAGS.workdir, FLAGS.axis, FLAGS.baseline, fix)
  elif FLAGS.class_sizes:
    try:
      n = np.array([int(x) for x in FLAGS.class_sizes])
    except ValueError:
      raise ReportError(f"--class_sizes={','.join(FLAGS.class_sizes)}: give integers, "
                        "e.g. --class_sizes=9,94,138") from None
    if (n <= 0).any():
      raise ReportError("--class_sizes: every class needs at least one test example")
    if FLAGS.seed_sd is None:
      raise ReportError("--plan with --class_sizes needs --seed_sd (points), or a "
                        "pilot sweep as --workdir")
    p = PlanInput([f"class {i}" for i in range(len(n))], n, np.full(len(n), 0.9),
                  np.zeros(len(n)), 1, "given sizes")
  else:
    raise ReportError("--plan needs a pilot sweep (--workdir) or --class_sizes")
  if FLAGS.accuracy is not None:
    if not 0 < FLAGS.accuracy <= 100:
      raise ReportError(f"--accuracy={FLAGS.accuracy}: a percentage in (0, 100]")
    p.accuracy = np.full(len(p.n), FLAGS.accuracy / 100)
  if FLAGS.seed_sd is not None:
    if FLAGS.seed_sd < 0:
      raise ReportError(f"--seed_sd={FLAGS.seed_sd}: must be >= 0 (points)")
    p.seed_sd = np.full(len(p.n), FLAGS.seed_sd / 100)
  if FLAGS.compared_values is not None:
    if FLAGS.compared_values < 1:
      raise ReportError(f"--compared_values={FLAGS.compared_values}: must be >= 1")
    p.values = FLAGS.compared_values
  return p


def _fix_values(FLAGS) -> dict:
  fix = {}
  if FLAGS.fix:
    sweep_axes = {a.key: a for a in load_sweep(FLAGS.workdir).axes}
    for spec in FLAGS.fix:
      k, sep, v = spec.partition("=")
      if not sep or k not in sweep_axes:
        raise ReportError(f"--fix={spec!r} must be KEY=VALUE with KEY one of: "
                          f"{', '.join(sweep_axes)}")
      fix[k] = cast_value(k, v, sweep_axes[k].type_name)
  return fix


def main(argv):
  from absl import flags
  from jaxreg import cli
  FLAGS = flags.FLAGS
  if argv[1:] == ["calibrate"]:
    from jaxreg import calibration
    if FLAGS.sweeps < 10:
      cli.fail(f"--sweeps={FLAGS.sweeps}: use at least 10 simulated sweeps per cell")
    ok = calibration.main(FLAGS.sweeps, FLAGS.bootstrap_seed, FLAGS.quick)
    sys.exit(0 if ok else 1)
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (the only command is "
             "`calibrate`)")
  try:
    if FLAGS.plan:
      if FLAGS.effect is None or not 0 < FLAGS.effect <= 100:
        raise ReportError("--plan needs --effect=POINTS, the drop to detect (0, 100]")
      fix = _fix_values(FLAGS) if FLAGS.workdir else {}
      print("\n".join(plan_lines(_plan_input(FLAGS, fix), FLAGS.effect / 100,
                                 FLAGS.alpha, FLAGS.power)))
      return
    if not FLAGS.workdir:
      cli.fail("--workdir is required")
    out = write_report(FLAGS.workdir, FLAGS.axis, FLAGS.baseline, _fix_values(FLAGS),
                       FLAGS.correction, FLAGS.alpha, FLAGS.reps, FLAGS.bootstrap_seed,
                       FLAGS.null_split)
  except SweepError as e:
    cli.fail(str(e))
  print(f"wrote {out} and {out.parent / REPORT_DIR}/")


def run():
  from absl import app
  from jaxreg import cli
  _define_flags()
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
