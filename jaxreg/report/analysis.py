"""The report's analysis of a sweep: per-class accuracy at each value of one axis, the
per-class change against a baseline value with its flag and evidence, and the value
validation accuracy chooses. No figures and no files: a notebook can use it alone,

  from jaxreg.report import analyse, load_sweep
  result = analyse(load_sweep("runs/sweep_l2"), axis="reg.l2")
  result.changes[0.001].delta        # per-class change, one array per compared value
  result.to_frame("change")          # per_class_change.csv as a DataFrame (pandas)

Replicates (`seed`, and `data.split_seed` or `data.fold` when swept) are averaged over
and pair the runs. In a sweep over upstream runs (`jaxreg.sweep --upstream`) the
upstream run is the unit of replication: the replicates are its upstream.seed (...),
and the downstream runs of one upstream run (its downstream seeds, `nested_keys`) are
first averaged into one observation (`_replicates`), so downstream seeds are never
counted as replicates. Such a pooled observation has no per-example predictions: the
exact McNemar evidence needs one prediction per example and run, and pooling the
nested seeds' predictions would count each example several times, so it is left empty
(pairing 'counts'). The statistics are jaxreg/stats.py's.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Sequence

import numpy as np

from jaxreg import stats
from jaxreg.report.load import ReportError, RunData, Sweep
from jaxreg.sweep.axes import Axis, cast_value, display_value, is_replicate

REG_PREFIXES = ("reg.", "model.dropout.")   # the default analysed axis starts so
NULL_KEY = "seeds"                           # the analysed "axis" of --null_split
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
TOO_FEW = "too few examples or seeds to test"
METRICS = ("accuracy", "balanced_accuracy", "worst_class_accuracy", "val_accuracy")
ACCURACY_COLUMNS = ("axis", "value", "class", "n", "seeds", "mean", "lo95", "hi95",
                    "interval")
CHANGE_COLUMNS = ("axis", "value", "baseline", "class", "n", "paired_seeds", "delta",
                  "lo95", "hi95", "interval", "p", "p_adjusted", "correction",
                  "family_size", "significant_drop", "significant_rise", "p_mcnemar",
                  "lost", "gained", "pairing", "seed_sd", "example_spread", "min_detectable",
                  "testable")


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A mean over replicates with its 95% interval (arrays [C] or floats)."""
  mean: Any
  lo: Any
  hi: Any


@dataclasses.dataclass(frozen=True)
class Level:
  """The finished runs at one value of the analysed axis (other axes fixed)."""
  value: Any
  reps: tuple                # each run's replicate key values (seed, ...), in order
  confusion: np.ndarray      # [K, C, C] test
  val_accuracy: np.ndarray   # [K]
  predictions: tuple         # per run: (labels [N], predicted ids [N]) on test, or None
  accuracy: Estimate         # per-class test accuracy [C]
  method: str                # how accuracy's interval was made
  metrics: dict              # METRICS name -> Estimate of floats

  @property
  def correct(self) -> np.ndarray:
    return np.einsum("kcc->kc", self.confusion)


@dataclasses.dataclass(frozen=True)
class Change:
  """Per-class change in test accuracy from the baseline to `value` (arrays [C]),
  over the `paired` replicates both have."""
  value: Any
  paired: int
  delta: np.ndarray          # mean per-replicate change (a fraction)
  lo: np.ndarray             # its 95% interval, unadjusted
  hi: np.ndarray
  interval: str              # how the interval was made
  p: np.ndarray              # the flag's test (NaN with < stats.MIN_SEEDS replicates)
  p_adjusted: np.ndarray     # over the family: every class x every compared value
  drop: np.ndarray           # flagged: p_adjusted < alpha and delta < 0
  rise: np.ndarray
  sd: np.ndarray             # sd over replicates of the per-replicate change
  base_accuracy: np.ndarray
  p_mcnemar: np.ndarray      # exact McNemar on these runs (NaN: no predictions)
  lost: np.ndarray           # examples right at the baseline, wrong here (summed)
  gained: np.ndarray
  pairing: str               # 'examples' (stored predictions) or 'counts'
  min_detectable: np.ndarray # the smallest drop the flag finds with 80% power
  testable: np.ndarray       # False: even a fall to 0% could not be flagged
  spread: np.ndarray         # variance of the per-example changes (NaN: counts only)


@dataclasses.dataclass(frozen=True)
class Analysis:
  """The result of `analyse`: plain values and numpy arrays, nothing rendered."""
  key: str                   # the analysed axis ('seeds' for a null split)
  axis: Axis
  fixed: dict                # other setting axes held at these values
  fixed_how: str
  baseline: Any
  correction: str            # 'holm' | 'bh'
  alpha: float
  class_names: tuple
  n: np.ndarray              # test examples per class
  replicate_keys: tuple
  evaluated: str             # which checkpoints the runs evaluated ('best', ...)
  levels: tuple              # Level per value, in axis order
  changes: dict              # compared value -> Change
  family: int                # tests in the correction's family (classes x values)
  chosen: Any                # the value with the best mean validation accuracy
  target: Any                # chosen, or the strongest value if that is the baseline
  confusion_diff: np.ndarray | None   # target minus baseline, summed over pairs
  paired_for_diff: int
  null_split: str = ""       # for --null_split: which seeds face which
  nested_keys: tuple = ()    # replicate axes averaged within a replicate (downstream
                             # seeds of one upstream run)

  @property
  def values(self) -> list:
    return [lv.value for lv in self.levels]

  @property
  def unit(self) -> str:
    """What the replicates are called: seeds, or runs when folds or splits pair too."""
    return unit_name(self.replicate_keys)

  @property
  def fewest_seeds(self) -> int:
    """The fewest paired seeds of any compared value (0: nothing compared)."""
    return min((ch.paired for ch in self.changes.values()), default=0)

  @property
  def correction_name(self) -> str:
    return CORRECTION_NAMES[self.correction]

  def level(self, value) -> Level:
    return next(lv for lv in self.levels if lv.value == value)

  def most_changed(self, k: int) -> list[int]:
    """Indices of at most k classes, in class order: every flagged class first (the
    largest move first when more than k are flagged), then those whose mean test
    accuracy moves most from the baseline at any value. All classes when there are
    <= k."""
    c = len(self.class_names)
    if c <= k:
      return list(range(c))
    base = self.level(self.baseline).accuracy.mean
    moves = np.nan_to_num(np.abs(np.stack([lv.accuracy.mean - base  # NaN: n = 0
                                           for lv in self.levels]))).max(axis=0)
    flagged = self.flagged
    order = np.lexsort((-moves, ~flagged))[:k]   # flagged first, then by move
    top = [i for i in order if flagged[i] or moves[i] > 0.005]
    return sorted(top or range(k))

  @property
  def flagged(self) -> np.ndarray:
    """[C] bools: a significant drop or rise at some compared value."""
    out = np.zeros(len(self.class_names), bool)
    for ch in self.changes.values():
      out |= ch.drop | ch.rise
    return out

  def testable_counts(self) -> dict:
    """Compared value -> (classes the flag could test at its paired seeds, classes
    with test examples): a class is testable when a fall to 0% in every seed could
    be flagged (Change.testable)."""
    present = int((self.n > 0).sum())
    return {v: (int(ch.testable.sum()), present) for v, ch in self.changes.items()}

  def accuracy_table(self) -> list[dict]:
    """per_class_accuracy.csv: every class at every value, then the overall metrics
    (class `[accuracy]`, ...), each with its mean and 95% interval."""
    rows = []
    for c, name in enumerate(self.class_names):
      for lv in self.levels:
        rows.append(dict(zip(ACCURACY_COLUMNS, (
            self.key, display_value(lv.value), name, int(self.n[c]), len(lv.reps),
            lv.accuracy.mean[c], lv.accuracy.lo[c], lv.accuracy.hi[c], lv.method))))
    for metric in METRICS:
      for lv in self.levels:
        m = lv.metrics[metric]
        # validation: each seed its own split of train, so no shared test set term
        method = (f"t over {len(lv.reps)} {self.unit}" if metric == "val_accuracy"
                  and len(lv.reps) >= 2 else lv.method)
        rows.append(dict(zip(ACCURACY_COLUMNS, (
            self.key, display_value(lv.value), f"[{metric}]", "", len(lv.reps),
            m.mean, m.lo, m.hi, method))))
    return rows

  def change_table(self) -> list[dict]:
    """per_class_change.csv: every class at every compared value."""
    rows = []
    for c, name in enumerate(self.class_names):
      for v, ch in self.changes.items():
        rows.append(dict(zip(CHANGE_COLUMNS, (
            self.key, display_value(v), display_value(self.baseline), name,
            int(self.n[c]), ch.paired, ch.delta[c], ch.lo[c], ch.hi[c], ch.interval,
            ch.p[c], ch.p_adjusted[c], self.correction, self.family, bool(ch.drop[c]),
            bool(ch.rise[c]), ch.p_mcnemar[c], ch.lost[c], ch.gained[c], ch.pairing,
            ch.sd[c], ch.spread[c], ch.min_detectable[c],
            "yes" if ch.testable[c] else TOO_FEW))))
    return rows

  def to_frame(self, table: str = "change"):
    """`table` ('change' or 'accuracy') as a pandas DataFrame; needs pandas, which
    jaxreg does not depend on."""
    tables = {"change": (self.change_table, CHANGE_COLUMNS),
              "accuracy": (self.accuracy_table, ACCURACY_COLUMNS)}
    if table not in tables:
      raise ValueError(f"table={table!r} is not one of: {', '.join(tables)}")
    try:
      import pandas as pd  # optional: only this method needs it
    except ImportError:
      raise ImportError("Analysis.to_frame needs pandas (pip install pandas); the "
                        f"same rows are Analysis.{table}_table()") from None
    rows, columns = tables[table]
    return pd.DataFrame(rows(), columns=list(columns))


# ------------------------------------------------------------------ the levels


def class_acc(confusion: np.ndarray) -> np.ndarray:
  """Per-class accuracy (recall) of [..., C, C] confusion matrices; NaN where n = 0."""
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


def _interval(values, floor, test=None):
  """Mean and 95% interval over seeds [K, ...]: t with the seeds' variance floored
  (K >= 2) plus the shared test set's sampling variance `test` = (variance, df),
  clipped to [0, 1]."""
  var, df = test if test is not None else (None, None)
  m, lo, hi = stats.t_interval(values, axis=0, floor=floor, test_var=var, test_df=df)
  return m, np.clip(lo, 0, 1), np.clip(hi, 0, 1)


def _level(value, runs: Sequence[RunData], reps: list[tuple], workdir, n: np.ndarray,
           unit: str, boot_reps: int, boot_seed: int) -> Level:
  """The runs at one value with their per-class and overall intervals."""
  confusion = np.stack([r.test_confusion for r in runs])
  val_accuracy = np.array([r.val_accuracy for r in runs])
  acc = class_acc(confusion)  # [K, C]
  k = len(runs)
  correct = np.einsum("kcc->kc", confusion)
  # every seed answers the same test examples: their sampling variance is added once
  var_c, df_c = stats.accuracy_test_variance(n, correct.mean(0) / np.maximum(n, 1))
  if k >= 2:
    accuracy = Estimate(*_interval(acc, stats.binomial_variance(correct.sum(0), n, k),
                                   (var_c, df_c)))
    method = f"t over {k} {unit}, binomial floor, test set counted"
  else:
    lo, hi = stats.wilson_interval(correct[0], n)
    accuracy, method = Estimate(acc[0], lo, hi), "Wilson (1 seed)"
  seed_c = stats.binomial_variance(correct.sum(0), n, k)       # [C], NaN where n == 0
  present = n > 0
  total = int(n.sum())
  worst = int(np.nanargmin(np.where(present, acc.mean(0), np.inf)))
  floors = {"accuracy": stats.binomial_variance(correct.sum(), n.sum(), k),
            "balanced_accuracy": np.nansum(seed_c) / max(int(present.sum()), 1) ** 2,
            "worst_class_accuracy": seed_c[worst]}
  tests = {"accuracy": stats.accuracy_test_variance(total,
                                                    correct.sum() / max(k * total, 1)),
           "balanced_accuracy": (np.nansum(var_c) / max(int(present.sum()), 1) ** 2,
                                 total),
           "worst_class_accuracy": (var_c[worst], df_c[worst])}
  metrics = {}
  for metric, per_rep in overall(confusion).items():
    if k >= 2:
      m, lo, hi = _interval(per_rep, floors[metric], tests[metric])
      metrics[metric] = Estimate(m, float(lo), float(hi))
    elif metric == "accuracy":
      lo, hi = stats.wilson_interval(correct[0].sum(), n.sum())
      metrics[metric] = Estimate(per_rep[0], float(lo), float(hi))
    else:
      fn = ((lambda x: x.mean(axis=1)) if metric == "balanced_accuracy"
            else (lambda x: x.min(axis=1)))
      lo, hi = stats.binomial_bootstrap(correct[0], n, fn, reps=boot_reps,
                                        seed=boot_seed)
      metrics[metric] = Estimate(per_rep[0], min(lo, per_rep[0]), max(hi, per_rep[0]))
  if k >= 2:
    m, lo, hi = _interval(val_accuracy, None)
    metrics["val_accuracy"] = Estimate(m, float(lo), float(hi))
  else:
    metrics["val_accuracy"] = Estimate(val_accuracy[0], np.nan, np.nan)
  return Level(value, tuple(reps), confusion, val_accuracy,
               tuple(r.test_predictions(workdir) for r in runs), accuracy, method,
               metrics)


def _rep(values: dict, rep_keys) -> tuple:
  return tuple(values.get(k) for k in rep_keys)


def unit_name(rep_keys) -> str:
  """What the replicates are called: seeds, upstream seeds, or runs when folds or
  splits pair too."""
  keys = list(rep_keys)
  if keys in (["seed"], []):
    return "seeds"
  return "upstream seeds" if keys == ["upstream.seed"] else "runs"


@dataclasses.dataclass(frozen=True)
class Pooled:
  """The runs sharing one replicate key (the downstream seeds of one upstream run)
  as one observation, read like a RunData by `_level`: mean confusion counts (so
  per-class accuracy is the mean over these runs), mean validation accuracy, and no
  per-example predictions (module doc)."""
  runs: tuple

  @property
  def test_confusion(self) -> np.ndarray:
    return np.mean([r.test_confusion for r in self.runs], axis=0)

  @property
  def val_accuracy(self) -> float:
    return float(np.mean([r.val_accuracy for r in self.runs]))

  def test_predictions(self, workdir):
    return None


def _replicates(runs: Sequence[RunData], rep_keys) -> tuple[list, list[tuple]]:
  """(observations, their replicate keys): one per distinct replicate key, in order
  of first appearance; runs that share a key (nested replicates: only in a sweep over
  upstream runs) averaged into one `Pooled`, a run alone kept as itself."""
  by: dict[tuple, list[RunData]] = {}
  for r in runs:
    by.setdefault(_rep(r.values, rep_keys), []).append(r)
  return ([rs[0] if len(rs) == 1 else Pooled(tuple(rs)) for rs in by.values()],
          list(by))


def _setting(values: dict, keys) -> tuple:
  return tuple(values.get(k) for k in keys)


def ordered_values(axis: Axis, present: Sequence) -> list:
  """The axis's values that occur in `present`: ascending if numeric, else as given."""
  vals = [v for v in (axis.values or ()) if v in present]
  vals += [v for v in present if v not in vals]
  numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
  return sorted(vals) if numeric else vals


def choose_axis(sweep: Sweep, key: str | None) -> Axis:
  """The axis named `key`, else the first reg.* or dropout axis, else the first."""
  settings = sweep.setting_axes
  if key:
    match = [a for a in sweep.axes if a.key == key]
    if not match:
      raise ReportError(f"--axis={key} is not an axis of this sweep: "
                        f"{', '.join(a.key for a in sweep.axes)}")
    if is_replicate(key):
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


def fix_other_axes(sweep: Sweep, axis: Axis, fix: dict) -> tuple[dict, str]:
  """The values the other setting axes are held at: `fix`, and for the others the
  combination with the best mean validation accuracy; and how they were chosen."""
  others = [a.key for a in sweep.setting_axes if a.key != axis.key]
  unknown = [k for k in fix if k not in others]
  if unknown:
    raise ReportError(f"--fix={unknown[0]}: not one of the other setting axes "
                      f"({', '.join(others) or 'none'})")
  rest = [k for k in others if k not in fix]
  if not rest:
    return dict(fix), "given with --fix" if fix else ""
  scores: dict[tuple, list[float]] = {}
  for r in sweep.finished:
    if all(r.values.get(k) == v for k, v in fix.items()):
      scores.setdefault(_setting(r.values, rest + [axis.key]), []).append(r.val_accuracy)
  if not scores:
    raise ReportError("no finished run matches --fix " +
                      " ".join(f"{k}={display_value(v)}" for k, v in fix.items()))
  best = max(scores, key=lambda s: np.mean(scores[s]))
  return {**fix, **dict(zip(rest, best[:-1]))}, "the best mean validation accuracy"


def _groups(sweep: Sweep, axis: Axis, fixed: dict) -> list[tuple[Any, list[RunData]]]:
  """(value, its runs sorted by replicate) for each value of `axis`, others fixed."""
  rep_keys = sweep.replicate_keys
  groups: dict[Any, list[RunData]] = {}
  for r in sweep.finished:
    if all(r.values.get(k) == v for k, v in fixed.items()):
      groups.setdefault(r.values[axis.key], []).append(r)
  return [(value, sorted(groups[value], key=lambda r: str(_rep(r.values, rep_keys))))
          for value in ordered_values(axis, list(groups))]


def _span(seeds: Sequence) -> str:
  """'0-4' for consecutive integers, else '0, 2, 7'."""
  if len(seeds) > 2 and all(isinstance(x, int) for x in seeds) and \
      list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
    return f"{seeds[0]}-{seeds[-1]}"
  return ", ".join(map(display_value, seeds))


def _null_split_groups(sweep: Sweep, fixed: dict):
  """The runs at `fixed`, their seeds split in two halves that face each other as if
  they were two settings (the first half's i-th seed paired with the second half's
  i-th, within each fold or split): a null comparison, differing only in training
  randomness. Returns [(name, runs, reps)] for the two halves and a sentence saying
  which seeds face which."""
  rep_keys = sweep.replicate_keys
  if sweep.nested_keys:
    raise ReportError("--null_split splits a sweep's seeds; in a sweep over upstream "
                      "runs report the upstream sweep with it")
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
  groups = []
  for name, chosen in zip(names, halves):
    rs = sorted((r for r in runs if r.values["seed"] in chosen),
                key=lambda r: str(_rep(r.values, rep_keys)))
    reps = []
    for r in rs:  # the seed replaced by its rank within the half: rank i meets rank i
      rep = list(_rep(r.values, rep_keys))
      rep[si] = chosen.index(rep[si])
      reps.append(tuple(rep))
    groups.append((name, rs, reps))
  pairs = ", ".join(f"{display_value(x)} with {display_value(y)}"
                    for x, y in zip(*halves))
  return groups, (f"{names[0]} against {names[1]} of one setting, seed paired with "
                  f"seed in order ({pairs})")


# ------------------------------------------------------------------ the change


def _paired_correct(base: Level, ib, lv: Level, il):
  """(correct_base [K, N], correct_lv [K, N], labels [N]) when every paired run has
  stored predictions on the same test examples, else None."""
  runs = [base.predictions[i] for i in ib] + [lv.predictions[i] for i in il]
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


def _change(base: Level, lv: Level, n: np.ndarray, unit: str) -> dict | None:
  """The unadjusted change from `base` to `lv` over their common replicates."""
  common = [r for r in lv.reps if r in base.reps]
  if not common:
    return None
  ib = [base.reps.index(r) for r in common]
  il = [lv.reps.index(r) for r in common]
  k, c = len(common), len(n)
  ca, cb = base.correct[ib], lv.correct[il]
  pairs = _paired_correct(base, ib, lv, il)
  m2 = None if pairs is None else stats.example_m2(*pairs, c)
  test = stats.seed_paired_test(ca, cb, n, m2)
  res = {key: test[key] for key in ("delta", "lo", "hi", "p", "sd")}
  res["paired"] = k
  res["base_accuracy"] = np.where(n > 0, ca.sum(0) / np.maximum(k * n, 1), np.nan)
  # the spread of the per-example changes, for what the data could have shown
  res["spread"] = (np.full(c, np.nan) if m2 is None
                   else np.maximum(m2 - np.nan_to_num(res["delta"]) ** 2, 0))
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
    res["interval"] = f"t over {k} {unit}"
  return res


def _or_none(spread):
  """None (the test's upper bound) where no spread was measured."""
  return None if np.isnan(spread).all() else np.nan_to_num(spread, nan=0.0)


def _changes(levels: Sequence[Level], baseline, n, unit: str, correction: str,
             alpha: float) -> tuple[dict, int]:
  """Change per compared value, flagged after the correction over the family: every
  class x every compared value with a p-value. Returns (changes, family size)."""
  base = next(lv for lv in levels if lv.value == baseline)
  raw = {}
  for lv in levels:
    if lv.value != baseline:
      res = _change(base, lv, n, unit)
      if res is not None:
        raw[lv.value] = res
  family = 0
  if raw:
    p = np.stack([res["p"] for res in raw.values()])             # [V, C]
    adjusted = stats.CORRECTIONS[correction](p.ravel()).reshape(p.shape)
    family = int(np.isfinite(p).sum())
  level = alpha / max(family, 1)   # Holm's first step: the hardest one
  changes = {}
  for j, (value, res) in enumerate(raw.items()):
    sig = adjusted[j] < alpha
    changes[value] = Change(
        value=value, p_adjusted=adjusted[j], drop=sig & (res["delta"] < 0),
        rise=sig & (res["delta"] > 0),
        min_detectable=stats.detectable_drop(res["base_accuracy"], n, res["paired"],
                                             res["sd"] ** 2, level,
                                             spread=_or_none(res["spread"])),
        testable=stats.can_reach(res["base_accuracy"], n, res["paired"], level), **res)
  return changes, family


# ------------------------------------------------------------------ analyse


def _strongest(others: list, base):
  """The compared value farthest from the baseline (numbers), else the last listed: the
  strongest crop scale below a baseline of 1.0 is the smallest, not the largest."""
  if not others:
    return None
  if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*others, base]):
    return max(reversed(others), key=lambda v: abs(v - base))  # ties: the last listed
  return others[-1]


def analyse(sweep: Sweep, axis: str | None = None, baseline=None,
            fix: dict | None = None, correction: str = "holm", alpha: float = 0.05,
            reps: int = 2000, seed: int = 0, null_split: bool = False) -> Analysis:
  """The per-class analysis of `sweep` along `axis` (default: the first reg.* or
  dropout axis, else the first setting axis) against `baseline` (a value, or its
  text as --baseline takes it; default: the first value), with the other setting
  axes held at `fix` or else at the best mean validation accuracy. `reps` and `seed`:
  the bootstrap of one seed's balanced and worst-class intervals. `null_split`: the
  first half of the seeds against the second half, as if two settings."""
  if correction not in stats.CORRECTIONS:
    raise ReportError(f"--correction={correction!r} is not one of: "
                      f"{', '.join(stats.CORRECTIONS)}")
  rep_keys = sweep.replicate_keys
  unit = unit_name(rep_keys)
  if null_split:
    if axis or baseline is not None:
      raise ReportError("--null_split compares halves of the seeds: it takes no --axis "
                        "or --baseline (hold other axes with --fix)")
    ax = Axis(NULL_KEY, "values", (), type_name="str")
    fixed, how = fix_other_axes(sweep, ax, fix or {})
    groups, split = _null_split_groups(sweep, fixed)
  else:
    ax = choose_axis(sweep, axis)
    fixed, how = fix_other_axes(sweep, ax, fix or {})
    groups = [(v, *_replicates(rs, rep_keys)) for v, rs in _groups(sweep, ax, fixed)]
    split = ""
  levels = tuple(_level(v, rs, rs_reps, sweep.workdir, sweep.n, unit, reps, seed + i)
                 for i, (v, rs, rs_reps) in enumerate(groups))
  values = [lv.value for lv in levels]
  if null_split or baseline is None:
    base = values[0]
  else:
    base = (cast_value(ax.key, baseline, ax.type_name) if isinstance(baseline, str)
            else baseline)
    if base not in values:
      raise ReportError(f"--baseline={baseline}: {ax.key} has finished runs at "
                        f"{', '.join(map(display_value, values))} only")
  changes, family = _changes(levels, base, sweep.n, unit, correction, alpha)
  means = [float(np.mean(lv.val_accuracy)) for lv in levels]
  chosen = levels[int(np.argmax(means))].value  # ties: the first (weakest)
  others = [v for v in values if v != base]
  target = chosen if chosen != base else _strongest(others, base)
  confusion_diff, paired_for_diff = None, 0
  if target is not None and target in changes:
    tl, bl = (next(lv for lv in levels if lv.value == v) for v in (target, base))
    common = [r for r in tl.reps if r in bl.reps]
    confusion_diff = sum(tl.confusion[tl.reps.index(r)] - bl.confusion[bl.reps.index(r)]
                         for r in common)
    paired_for_diff = len(common)
    if confusion_diff.dtype.kind == "f":  # pooled runs' mean counts: whole examples
      confusion_diff = np.rint(confusion_diff).astype(np.int64)
  evaluated = ", ".join(sorted({r.summary.get("evaluated_checkpoint", "best")
                                for r in sweep.finished}))
  return Analysis(ax.key, ax, fixed, how, base, correction, alpha, sweep.class_names,
                  sweep.n, tuple(rep_keys), evaluated, levels, changes, family, chosen,
                  target, confusion_diff, paired_for_diff, split,
                  tuple(sweep.nested_keys))


# ------------------------------------------------------------- other views


@dataclasses.dataclass(frozen=True)
class PairGrid:
  """Mean validation accuracy over replicates for each (a, b) cell of two setting
  axes, the best over the remaining setting axes `others`."""
  key_a: str
  values_a: list
  key_b: str
  values_b: list
  grid: np.ndarray           # [A, B], NaN where no run
  others: list


def pair_grids(sweep: Sweep) -> list[PairGrid]:
  """A PairGrid for each pair of setting axes."""
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
    out.append(PairGrid(ax_a.key, va, ax_b.key, vb, grid, others))
  return out


def values_repeat(sweep: Sweep) -> bool:
  """Whether the setting axes' values repeat across runs (a grid, or a random search
  over lists), so that runs can be grouped by value; else a ranking is all there is."""
  if sweep.meta["mode"] == "grid":
    return True
  return all(a.kind in ("values", "choice") for a in sweep.setting_axes)


def ranking(sweep: Sweep) -> list[RunData]:
  """The finished runs, best validation accuracy first."""
  return sorted(sweep.finished, key=lambda r: -r.val_accuracy)
