"""`python -m jaxreg.report --plan`: how many seeds a sweep needs for the flag to find a
drop of a given size, from class sizes and a seed-to-seed sd given or read from a pilot
sweep."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxreg import stats
from jaxreg.report.analysis import analyse, class_acc
from jaxreg.report.load import ReportError, load_sweep
from jaxreg.report.text import fmt, md_table, pct


@dataclasses.dataclass(frozen=True)
class PlanInput:
  names: list[str]
  n: np.ndarray          # test examples per class
  accuracy: np.ndarray   # baseline accuracy per class (fraction)
  seed_sd: np.ndarray    # sd over seeds of the per-seed change (fraction)
  values: int            # compared values (the family is classes x values)
  source: str            # where the numbers come from, for the printout
  spread: np.ndarray | None = None  # variance of per-example changes (pilot), or None


def pilot_estimates(workdir, axis=None, baseline=None, fix=None) -> PlanInput:
  """Class sizes, baseline accuracies and the between-seed sd of the per-seed change,
  read from a pilot sweep: the root mean square over compared values of each class's
  observed sd; a sweep of seeds only gives sqrt(2) x the sd of accuracy over seeds
  (two independent runs; an upper bound when seeds share effects)."""
  sweep = load_sweep(workdir)
  if sweep.setting_axes:
    a = analyse(sweep, axis, baseline, fix)
    paired = [ch for ch in a.changes.values() if ch.paired >= 2]
    if paired:
      sd = np.sqrt(np.nanmean(np.stack([ch.sd for ch in paired]) ** 2, axis=0))
      spreads = np.stack([ch.spread for ch in paired])
      spread = (None if np.isnan(spreads).all()
                else np.nan_to_num(np.nanmean(spreads, axis=0), nan=0.0))
      where = f"{a.key}={fmt(a.baseline)}"
      return PlanInput(list(a.class_names), a.n, a.level(a.baseline).accuracy.mean, sd,
                       len(a.changes),
                       f"pilot {sweep.workdir} ({where} against {len(a.changes)} "
                       f"value(s), {a.fewest_seeds}+ paired seeds"
                       + (", per-example spread from its predictions)" if spread
                          is not None else "; counts only: examples taken as "
                          "independent, an upper bound on the test set's variance)"),
                       spread)
    runs = [r for r in sweep.finished if all(r.values.get(k) == v for k, v in
                                              a.fixed.items())
            and r.values[a.key] == a.baseline]
  else:
    runs = sweep.finished
  if len(runs) < 2:
    raise ReportError(f"--plan: the pilot {sweep.workdir} needs 2 or more seeds of one "
                      "setting to estimate the seed-to-seed sd (or give --seed_sd)")
  acc = class_acc(np.stack([r.test_confusion for r in runs]))
  return PlanInput(list(sweep.class_names), sweep.n, acc.mean(0),
                   np.sqrt(2) * acc.std(0, ddof=1), 1,
                   f"pilot {sweep.workdir} ({len(runs)} seeds of one setting; sd of "
                   "a change taken as sqrt(2) x the sd of accuracy)")


def given_sizes(class_sizes, seed_sd_points: float | None) -> PlanInput:
  """A PlanInput from --class_sizes (accuracy 90% unless overridden)."""
  try:
    n = np.array([int(x) for x in class_sizes])
  except ValueError:
    raise ReportError(f"--class_sizes={','.join(class_sizes)}: give integers, "
                      "e.g. --class_sizes=9,94,138") from None
  if (n <= 0).any():
    raise ReportError("--class_sizes: every class needs at least one test example")
  if seed_sd_points is None:
    raise ReportError("--plan with --class_sizes needs --seed_sd (points), or a "
                      "pilot sweep as --workdir")
  return PlanInput([f"class {i}" for i in range(len(n))], n, np.full(len(n), 0.9),
                   np.zeros(len(n)), 1, "given sizes")


def plan_lines(p: PlanInput, effect: float, alpha: float = 0.05,
               power: float = 0.8) -> list[str]:
  """How many seeds the flag needs to detect a drop of `effect` (a fraction) in each
  class with `power`, at alpha / (classes x values) (Bonferroni, Holm's first step)."""
  family = int((p.n > 0).sum()) * p.values
  level = alpha / max(family, 1)
  # Without a pilot's per-example spread, the drop is taken as examples that flip in
  # every seed (a share `effect` of the class): m2 = effect. Independent examples
  # (the report's fallback without predictions) would need far more, as if the two
  # settings agreed on no example.
  spread = (p.spread if p.spread is not None
            else np.full(len(p.n), effect * (1 - effect)))
  need = stats.seeds_needed(effect, p.accuracy, p.n, p.seed_sd ** 2, level, power,
                            spread=spread)
  never = stats.power_at(effect, p.accuracy, p.n, 10 ** 6, p.seed_sd ** 2, level,
                         spread) < power   # the test set alone is too small
  rows = []
  for c, name in enumerate(p.names):
    at = [stats.power_at(effect, p.accuracy[c], p.n[c], k, p.seed_sd[c] ** 2, level,
                         spread[c]) for k in (3, 5, 10)]
    rows.append([name, int(p.n[c]), pct(p.accuracy[c]), pct(p.seed_sd[c]),
                 "never (the class's test examples are too few)"
                 if never[c] or effect > p.accuracy[c] + 1e-12
                 else "more than 200" if need[c] == 0 else str(int(need[c])), *[f"{float(x):.2f}" for x in at]])
  return [f"Seeds needed to flag a drop of {100 * effect:g} points with power {power} "
          f"at alpha {alpha} / {family} tests ({int((p.n > 0).sum())} classes x "
          f"{p.values} value(s)); {p.source}.", "",
          md_table(["class", "n", "accuracy (%)", "seed sd (points)", "seeds needed",
                    "power at 3", "at 5", "at 10"], rows), "",
          "All seeds answer the same test examples, so more seeds cannot make up for "
          "a class with too few of them: its test set's sampling variance stays. "
          + ("The test set's variance is the pilot's per-example spread."
             if p.spread is not None else
             "The test set's variance takes the drop as examples that flip in every "
             "seed (no per-example spread from a pilot)."), ""]
