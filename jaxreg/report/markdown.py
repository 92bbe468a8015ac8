"""DIR/report.md and the tables and figures in DIR/report/, from an Analysis:
`write_report` is what `python -m jaxreg.report` runs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from jaxreg import io, records, stats
from jaxreg.report import figures
from jaxreg.report.analysis import (ACCURACY_COLUMNS, CHANGE_COLUMNS, TOO_FEW, Analysis,
                                    analyse, pair_grids, ranking, values_repeat)
from jaxreg.report.load import Sweep, load_sweep
from jaxreg.report.text import (MANY_CLASSES, SMALL_N, TABLE_ROWS, ci, fmt, label,
                                md_table, p_is, pct, prose, prose_names, pval, signed,
                                some, write_csv, write_table)

REPORT_DIR = "report"
REPORT_FILE = "report.md"


def _where(a: Analysis, value) -> str:
  return fmt(value) if a.null_split else f"{a.key}={fmt(value)}"


def movers_note(a: Analysis, shown: list[int], csv_name: str) -> str:
  """The sentence above a table that lists only the movers ('' when it lists all)."""
  total = len(a.class_names)
  if len(shown) == total:
    return ""
  flagged = int(a.flagged.sum())
  among = int(a.flagged[shown].sum())
  which = ("" if not flagged else f", every flagged class among them ({flagged})"
           if among == flagged else f", {among} of the {flagged} flagged classes")
  return (f"The table lists the {len(shown)} of {total} classes whose mean test "
          f"accuracy moves most from the baseline{which}, in class order; every "
          f"class is in report/{csv_name}.")


def section_accuracy(a: Analysis, rd: Path, lines: list[str]) -> None:
  values = a.values
  names = prose_names(a.class_names)
  shown = a.most_changed(TABLE_ROWS)
  rows = []
  for c in shown:
    name = names[c]
    rows.append([name, int(a.n[c]), *[ci(lv.accuracy.mean[c], lv.accuracy.lo[c],
                                         lv.accuracy.hi[c]) for lv in a.levels]])
  for metric in ("accuracy", "balanced_accuracy", "worst_class_accuracy",
                 "val_accuracy"):
    rows.append([f"**{metric.replace('_', ' ')}**", "",
                 *[ci(lv.metrics[metric].mean, lv.metrics[metric].lo,
                      lv.metrics[metric].hi) for lv in a.levels]])
  write_table(rd / "per_class_accuracy.csv", ACCURACY_COLUMNS, a.accuracy_table())
  figures.fig_overview(a, rd / "per_class_accuracy.png")
  figures.fig_small_multiples(a, rd / "per_class_panels.png")
  seeds = sorted({len(lv.reps) for lv in a.levels})
  lines += [f"## 1. Per-class test accuracy against {a.key}", "",
            f"![per-class accuracy]({REPORT_DIR}/per_class_accuracy.png)", "",
            f"![one panel per class]({REPORT_DIR}/per_class_panels.png)", "",
            "Test accuracy in percent, mean over seeds with its 95% interval "
            f"({'; '.join(sorted({lv.method for lv in a.levels}))}). "
            "Rows in bold: accuracy, balanced accuracy, worst-class accuracy and "
            "validation accuracy (of the evaluated checkpoint). "
            + movers_note(a, shown, "per_class_accuracy.csv"), "",
            md_table(["class", "n", *[fmt(v) for v in values]], rows), ""]
  if len(values) >= 2:
    first, last = a.levels[0], a.levels[-1]
    drops = last.accuracy.mean - first.accuracy.mean
    order = np.argsort(np.nan_to_num(drops, nan=0.0))
    worst = [i for i in order[:3] if drops[i] < -0.005]
    steady = [i for i in range(len(names)) if abs(drops[i]) <= 0.01]
    text = (f"From {_where(a, first.value)} to {_where(a, last.value)} mean test "
            f"accuracy goes from {pct(first.metrics['accuracy'].mean)}% to "
            f"{pct(last.metrics['accuracy'].mean)}% and worst-class accuracy from "
            f"{pct(first.metrics['worst_class_accuracy'].mean)}% to "
            f"{pct(last.metrics['worst_class_accuracy'].mean)}%.")
    if worst:
      text += " The classes that fall most: " + "; ".join(
          f"{label(names[i], a.n[i])} from {pct(first.accuracy.mean[i])}% to "
          f"{pct(last.accuracy.mean[i])}% ({signed(drops[i])} points)"
          for i in worst) + "."
    if steady and len(names) > MANY_CLASSES:
      text += (f" {len(steady)} of {len(names)} classes end within one point of where "
               "they started.")
    elif steady:
      text += (" Within one point of where they started: "
               + ", ".join(names[i] for i in steady) + ".")
    lines += [text, ""]
  if seeds == [1]:
    lines += ["With one seed per value, per-class intervals are Wilson score "
              "intervals over the class's test examples (test-set noise only; "
              "seed-to-seed variation is not measured).", ""]


def seeds_banner(a: Analysis) -> list[str]:
  """The K < MIN_SEEDS warning: why nothing is flagged, in bold, or nothing."""
  k = a.fewest_seeds
  if not a.changes or k >= stats.MIN_SEEDS:
    return []
  few = [fmt(v) for v, ch in a.changes.items() if ch.paired < stats.MIN_SEEDS]
  where = _where(a, ", ".join(few)) if len(few) < len(a.changes) else "every value"
  return [f"**Nothing is flagged: {'only ' if k else ''}{k} paired seed(s) at {where}.** "
          "A flag claims that the setting changes a class's expected accuracy over the "
          "randomness of training, and seed-to-seed variation cannot be estimated from "
          f"fewer than {stats.MIN_SEEDS} seeds (two runs that agree by chance would look "
          "like certainty). The intervals below still hold for these runs, and the exact "
          "McNemar column says whether these particular runs differ on this test set. "
          "Run more seeds: `python -m jaxreg.report --plan --workdir=THIS_DIR "
          "--effect=POINTS` says how many.", ""]


def section_change(a: Analysis, rd: Path, lines: list[str]) -> None:
  values = list(a.changes)
  names = prose_names(a.class_names)
  lines += [f"## 2. Per-class change relative to {_where(a, a.baseline)}", ""]
  if not values:
    lines += ["No other value has runs paired (by seed) with the baseline.", ""]
    return
  lines += seeds_banner(a)
  if len(names) > MANY_CLASSES:
    lines += [testable_line(a), ""]
  figures.fig_change_heatmap(a, rd / "change_vs_baseline.png")
  figures.fig_forest(a, a.target, rd / "change_forest.png")
  shown = a.most_changed(TABLE_ROWS)
  rows = []
  for c in shown:
    cells = [label(names[c], a.n[c])]
    for ch in a.changes.values():
      mark = " ▼" if ch.drop[c] else " ▲" if ch.rise[c] else ""
      cells.append(f"{signed(ch.delta[c])} [{signed(ch.lo[c])}, "
                   f"{signed(ch.hi[c])}]{mark}")
    rows.append(cells)
  write_table(rd / "per_class_change.csv", CHANGE_COLUMNS, a.change_table())
  methods = sorted({ch.interval for ch in a.changes.values()})
  lines += [f"![change heatmap]({REPORT_DIR}/change_vs_baseline.png)", "",
            f"![change at {fmt(a.target)}]({REPORT_DIR}/change_forest.png)", "",
            f"Change in test accuracy (points) against {_where(a, a.baseline)}, with "
            f"its 95% interval, unadjusted for multiple comparisons "
            f"({'; '.join(methods)}). ▼ marks a significant drop and ▲ a significant "
            "rise: the seed-paired t-test (the seeds' variance floored, the shared test "
            "set's variance counted once) "
            + (f"with {a.correction_name}-adjusted p < {a.alpha} over the family of "
               f"{a.family} tests ({int((a.n > 0).sum())} classes x {len(values)} "
               "compared value(s))" if a.family else
               f"needs {stats.MIN_SEEDS} or more paired seeds") + ". Paired runs (same "
            f"{', '.join(a.replicate_keys) or 'run'}) per value: "
            + ", ".join(f"{fmt(v)}: {ch.paired}" for v, ch in a.changes.items())
            + ". " + _pairing_sentence(a)
            + " Every p-value is in report/per_class_change.csv. "
            + movers_note(a, shown, "per_class_change.csv"), "",
            md_table(["class", *[fmt(v) for v in values]], rows), ""]
  lines += evidence_tables(a)
  sentences = []
  for v, ch in a.changes.items():
    for c in np.argsort(np.nan_to_num(ch.delta)):
      if ch.drop[c] or ch.rise[c]:
        word = "drops" if ch.delta[c] < 0 else "rises"
        sentences.append(
            f"At {_where(a, v)}, class {label(names[c], a.n[c])} {word} "
            f"{abs(100 * ch.delta[c]):.1f} points (95% CI {signed(ch.lo[c])} "
            f"to {signed(ch.hi[c])}, unadjusted; {a.correction_name}-adjusted p "
            f"{p_is(ch.p_adjusted[c])} over {a.family} tests, {ch.paired} {a.unit}), "
            f"significant after {a.correction_name}.")
  if len(sentences) > TABLE_ROWS:  # value by value, the largest drops first
    more = len(sentences) - TABLE_ROWS
    sentences = sentences[:TABLE_ROWS] + [f"... and {more} more flagged (class, value) "
                                          "pairs: report/per_class_change.csv."]
  if sentences:
    lines += ["\n".join(f"- {s}" for s in sentences), ""]
  else:
    v = values[-1]
    ch = a.changes[v]
    c = int(np.nanargmin(ch.delta))
    why = (f"No class changes significantly after {a.correction_name} at any value."
           if a.family else "Nothing can be flagged (see the banner above).")
    lines += [f"{why} The largest drop at {_where(a, v)} is "
              f"{label(names[c], a.n[c])}: {signed(ch.delta[c])} points (95% CI "
              f"{signed(ch.lo[c])} to {signed(ch.hi[c])}, unadjusted"
              + (f"; adjusted p {p_is(ch.p_adjusted[c])}" if a.family else "")
              + (f"; exact McNemar on these runs p {p_is(ch.p_mcnemar[c])}"
                 if np.isfinite(ch.p_mcnemar[c]) else "") + ").", ""]


def testable_line(a: Analysis) -> str:
  """How many classes the flag could test at this n and K, per compared value."""
  counts = a.testable_counts()
  present = next(iter(counts.values()))[1]
  by = {}
  for v, (k, _) in counts.items():
    by.setdefault((k, a.changes[v].paired), []).append(fmt(v))
  parts = [f"{k} of {present} classes at {_where(a, ', '.join(vs))} ({paired} paired "
           f"{a.unit})" for (k, paired), vs in by.items()]
  ch = a.changes[a.target] if a.target in a.changes else next(iter(a.changes.values()))
  untestable = (a.n > 0) & ~ch.testable
  md = ch.min_detectable[np.isfinite(ch.min_detectable)]
  return ("**Testable at this n and K:** " + "; ".join(parts) + ". A class is testable "
          "when even a fall to 0% in every seed could be flagged; the others have "
          f"\"{TOO_FEW}\""
          + (f" (at {_where(a, ch.value)}: {int(untestable.sum())} classes, the largest "
             f"with n={int(a.n[untestable].max())})" if untestable.any() else "")
          + (f". Median detectable drop (80% power) over the classes that have one: "
             f"{pct(np.median(md))} points" if md.size else "") + ".")


def evidence_tables(a: Analysis) -> list[str]:
  """Per class at each compared value: the flag beside the exact per-run evidence and
  the smallest drop the sweep could have detected."""
  shown = a.most_changed(TABLE_ROWS)
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
         + ("" if len(shown) == len(a.class_names) else
            f". The {len(shown)} classes that move most (all: per_class_change.csv)")
         + ".", ""]
  for value, ch in a.changes.items():
    rows = []
    for c in shown:
      lost, gained = ch.lost[c], ch.gained[c]
      md = ch.min_detectable[c]
      rows.append([label(prose(a.class_names[c]), a.n[c]), signed(ch.delta[c]),
                   pval(ch.p_adjusted[c]), pval(ch.p_mcnemar[c]),
                   "-" if not np.isfinite(lost) else f"{int(lost)} / {int(gained)}",
                   pct(ch.sd[c]), pct(md) if np.isfinite(md) else "-",
                   "" if ch.testable[c] else TOO_FEW])
    out += [f"At {_where(a, value)} ({ch.paired} paired {a.unit}):", "",
            md_table(["class", "change", "adj. p", "McNemar p", "lost / gained",
                      "seed sd", "detectable", ""], rows, "lrrrrrrl"), ""]
  return out


def _pairing_sentence(a: Analysis) -> str:
  by = {v: ch.pairing for v, ch in a.changes.items()}
  if a.nested_keys:
    return ("No McNemar evidence (NaN): each observation is the mean of an upstream "
            "run's downstream runs, and the exact test needs one prediction per "
            "example and run; the flag needs only the averaged counts.")
  if all(p == "examples" for p in by.values()):
    return ("Every paired run stored its per-example test predictions, which give the "
            "exact McNemar evidence below.")
  if all(p == "counts" for p in by.values()):
    return ("Without stored per-example predictions (runs written before "
            "predictions_test.npz) there is no McNemar evidence (NaN); the flag needs "
            "only the per-seed counts.")
  return ("Per-example predictions (McNemar evidence) at " + ", ".join(
      fmt(v) for v, p in by.items() if p == "examples") + "; none at " + ", ".join(
          fmt(v) for v, p in by.items() if p == "counts") + " (some runs stored no "
      "predictions).")


def _folds(a: Analysis) -> list:
  """The k-fold folds the runs hold ([]: a single held-out split)."""
  if "data.fold" not in a.replicate_keys:
    return []
  i = a.replicate_keys.index("data.fold")
  return sorted({r[i] for lv in a.levels for r in lv.reps})


def _per_fold_val(a: Analysis) -> str:
  """'fold 0: 0 85.10%, 0.2 86.02%; fold 1: ...' (mean over seeds within a fold)."""
  i = a.replicate_keys.index("data.fold")
  parts = []
  for f in _folds(a):
    cells = []
    for lv in a.levels:
      v = [x for r, x in zip(lv.reps, lv.val_accuracy) if r[i] == f]
      if v:
        cells.append(f"{fmt(lv.value)} {pct(np.mean(v), 2)}%")
    parts.append(f"fold {fmt(f)}: " + ", ".join(cells))
  return "; ".join(parts)


def _replicates(a: Analysis) -> str:
  keys = a.replicate_keys
  if not keys:
    return "runs"
  names = {"seed": "seeds", "data.split_seed": "validation splits",
           "data.fold": "folds"}
  counts = [len({r[i] for lv in a.levels for r in lv.reps}) for i in range(len(keys))]
  names.update({f"upstream.{k}": f"upstream {v}" for k, v in list(names.items())})
  return " x ".join(f"{n} {names.get(k, k)}" for k, n in zip(keys, counts))


def section_choice(a: Analysis, rd: Path, lines: list[str]) -> None:
  lines += ["## 3. What validation accuracy chooses, and what it costs", ""]
  vals = "; ".join(f"{fmt(lv.value)}: {pct(lv.metrics['val_accuracy'].mean, 2)}%"
                   for lv in a.levels)
  chosen, base = a.chosen, a.baseline
  lines += [f"Mean validation accuracy over {_replicates(a)} (evaluated checkpoint of "
            f"each run): {vals}. It chooses **{_where(a, chosen)}**.", ""]
  folds = len(_folds(a))
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
  if show is None or show not in a.changes:
    return
  ch = a.changes[show]
  b_lv, s_lv = a.level(base), a.level(show)
  rows, csv_rows = [], []
  shown = set(a.most_changed(TABLE_ROWS))
  for c, name in enumerate(a.class_names):
    b, s = b_lv.accuracy.mean[c], s_lv.accuracy.mean[c]
    flag = "significant drop" if ch.drop[c] else \
        "significant rise" if ch.rise[c] else ""
    if c in shown:
      rows.append([name, int(a.n[c]), pct(b), pct(s), signed(ch.delta[c]),
                   f"[{signed(ch.lo[c])}, {signed(ch.hi[c])}]", pval(ch.p_adjusted[c]),
                   flag])
    csv_rows.append([name, int(a.n[c]), fmt(base), fmt(show), b, s, ch.delta[c],
                     ch.lo[c], ch.hi[c], ch.p_adjusted[c], flag])
  for metric in ("accuracy", "balanced_accuracy", "worst_class_accuracy"):
    b, s = b_lv.metrics[metric].mean, s_lv.metrics[metric].mean
    rows.append([f"**{metric.replace('_', ' ')}**", "", pct(b), pct(s), signed(s - b),
                 "", "", ""])
    csv_rows.append([f"[{metric}]", "", fmt(base), fmt(show), b, s, s - b, "", "", "",
                     ""])
  write_csv(rd / "choice.csv", ["class", "n", "baseline", "chosen", "baseline_acc",
                                "chosen_acc", "delta", "lo95", "hi95", "p_adjusted",
                                "flag"], csv_rows)
  note = movers_note(a, sorted(shown), "choice.csv")
  lines += ([note, ""] if note else []) + [
            md_table(["class", "n", f"{fmt(base)} (%)", f"{fmt(show)} (%)",
                      "change (points)", "95% CI (unadjusted)", "adj. p", ""], rows), ""]
  acc_d = s_lv.metrics["accuracy"].mean - b_lv.metrics["accuracy"].mean
  worst_d = (s_lv.metrics["worst_class_accuracy"].mean
             - b_lv.metrics["worst_class_accuracy"].mean)
  which = "choice" if show == chosen else "strongest value"
  text = (f"Against {_where(a, base)}, the {which} {_where(a, show)} changes test "
          f"accuracy by {signed(acc_d)} points and worst-class accuracy by "
          f"{signed(worst_d)} points.")
  drops = [c for c in np.argsort(np.nan_to_num(ch.delta)) if ch.drop[c]]
  names = prose_names(a.class_names)
  if drops:
    text += " It costs " + "; ".join(
        f"{label(names[c], a.n[c])} {abs(100 * ch.delta[c]):.1f} points (95% CI "
        f"{signed(ch.lo[c])} to {signed(ch.hi[c])})" for c in drops[:TABLE_ROWS]) + \
        (f" and {len(drops) - TABLE_ROWS} more classes (choice.csv)"
         if len(drops) > TABLE_ROWS else "") + \
        f", significant after {a.correction_name}."
  else:
    c = int(np.nanargmin(ch.delta))
    if ch.delta[c] < 0:
      text += (f" No class drops significantly; the largest cost is "
               f"{label(names[c], a.n[c])} at {signed(ch.delta[c])} points (95% CI "
               f"{signed(ch.lo[c])} to {signed(ch.hi[c])}, unadjusted).")
    else:
      text += " No class loses accuracy on average over the paired seeds."
  lines += [text, ""]


def section_confusion(a: Analysis, rd: Path, lines: list[str]) -> None:
  lines += ["## 4. Which classes absorb the lost examples", ""]
  d = a.confusion_diff
  if d is None:
    lines += ["Only the baseline has runs: nothing to compare.", ""]
    return
  figures.fig_confusion_diff(a, rd / "confusion_change.png")
  names = a.class_names
  write_csv(rd / "confusion_change.csv", ["true \\ predicted", *names],
            [[names[i], *d[i].tolist()] for i in range(len(names))])
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
    gone = [(int(off[i, j]), prose(names[j])) for j in np.argsort(-off[i]) if off[i, j] > 0][:3]
    where = ", ".join(f"{k} more to {nm}" for k, nm in gone)
    text.append(f"Class {label(prose(names[i]), a.n[i])} loses {int(lost[i])} correct "
                f"predictions" + (f" ({where})." if where else "."))
  absorbed = np.clip(off, 0, None).sum(axis=0)
  top = [j for j in np.argsort(-absorbed)[:3] if absorbed[j] > 0]
  if top:
    text.append("The classes that absorb them, counting new wrong predictions of each "
                "class: " + ", ".join(f"{prose(names[j])} +{int(absorbed[j])}" for j in top)
                + ".")
  ii, jj = np.nonzero(off > 0)   # numpy, not a loop: C x C is 1e6 cells at 1000
  top10 = np.lexsort((jj, ii, -off[ii, jj]))[:10]
  entries = [(int(off[ii[k], jj[k]]), prose(names[ii[k]]), prose(names[jj[k]]))
             for k in top10]
  lines += [" ".join(text), ""]
  if entries:
    lines += ["Largest increases in a confusion (true -> predicted):", "",
              md_table(["true", "predicted", "change"],
                       [[t, p, f"+{k}"] for k, t, p in entries]), ""]


def section_pairs(sweep: Sweep, rd: Path, lines: list[str]) -> None:
  if len(sweep.setting_axes) < 2:
    return
  lines += ["## 5. Pairs of hyperparameters: mean validation accuracy", ""]
  for p in pair_grids(sweep):
    stem = f"val_heatmap__{p.key_a}__{p.key_b}"
    figures.fig_pair(p, rd / f"{stem}.png")
    write_csv(rd / f"{stem}.csv", [f"{p.key_a} \\ {p.key_b}", *map(fmt, p.values_b)],
              [[fmt(x), *p.grid[i]] for i, x in enumerate(p.values_a)])
    i, j = np.unravel_index(np.nanargmax(p.grid), p.grid.shape)
    lines += [f"![{p.key_a} x {p.key_b}]({REPORT_DIR}/{stem}.png)", "",
              f"Best cell: {p.key_a}={fmt(p.values_a[i])}, {p.key_b}="
              f"{fmt(p.values_b[j])} at {pct(p.grid[i, j], 2)}% mean validation "
              "accuracy"
              + (f" (best over {', '.join(p.others)})" if p.others else "") + "; worst "
              f"cell {pct(np.nanmin(p.grid), 2)}%.", ""]


def small_class_note(sweep: Sweep) -> str:
  n, names = sweep.n, prose_names(sweep.class_names)
  present = [i for i in range(len(n)) if n[i] > 0]
  i = min(present, key=lambda i: n[i])
  small = [names[j] for j in present if n[j] < SMALL_N]
  if small:
    return (f"Classes with fewer than {SMALL_N} test examples carry their count, e.g. "
            # in a code span already: the name as it is, not prose()'s backticks
            f"`{label(sweep.class_names[i], n[i])}`: there, one test error moves the "
            f"class's accuracy by 100/n points ({names[i]}: "
            f"{100 / n[i]:.1f} points). Small classes: {some(small, MANY_CLASSES)}.")
  return (f"Every class has at least {SMALL_N} test examples; the smallest, "
          f"{names[i]} (n={int(n[i])}), moves {100 / n[i]:.1f} points per "
          "test error.")


def _class_counts(sweep: Sweep, analysed: bool) -> str:
  """Every class's test count, or past MANY_CLASSES classes their spread."""
  n, names = sweep.n, prose_names(sweep.class_names)
  if len(names) <= MANY_CLASSES:
    return ", ".join(f"{nm} {int(k)}" for nm, k in zip(names, n))
  return (f"per class {int(n.min())} to {int(n.max())}, median {fmt(float(np.median(n)))}"
          f"; {int((n < SMALL_N).sum())} classes with fewer than {SMALL_N}"
          + (f", {int((n == 0).sum())} with none" if (n == 0).any() else "")
          + "; every count: " + ("report/per_class_accuracy.csv" if analysed else
                                 "each run's summary.json"))


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
           f"({_class_counts(sweep, a is not None)}).", ""]
  failed = [r for r in sweep.runs if r.status in records.FAILED]
  if failed:
    lines += ["Left out (no summary): " + "; ".join(
        f"{r.name} ({r.status})" for r in failed) + ".", ""]
  if a is not None and a.null_split:
    lines += [f"**Null comparison (`--null_split`): {a.null_split}.** The two "
              "\"settings\" differ only in the randomness of training, so every class "
              "flagged below is a false positive of the report's test.", ""]
  if a is not None:
    reps = a.replicate_keys
    lines += [f"Analysed axis: `{a.key}`, baseline {fmt(a.baseline)}. "
              + (f"Replicates: {', '.join(reps)} (averaged over, and pairing the runs). "
                 if reps else "No seed axis: one run per value. ")
              + (f"The unit of replication is the upstream run: its downstream runs "
                 f"({', '.join(a.nested_keys)}) are averaged into one observation "
                 "first, never counted as replicates, and McNemar's evidence is left "
                 "empty (it needs one prediction per example and run). "
                 if a.nested_keys else "")
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
      "+/- t(0.975, df) x sqrt(max(s^2, v) / K + w), clipped to [0, 100], where s^2 "
      "is the variance over seeds, v the class's binomial variance p(1-p)/n with p "
      "= (correct + 1/2) / (K n + 1) pooled over the seeds, and w the variance of "
      "the class's n test examples as a sample of the class, q (1 - q) / n with q = "
      "(mean correct + z^2) / (n + 2 z^2) (z^2 pseudo-examples each way keep a "
      "class at 0% or 100% at Wilson's width), not divided by K: every seed answers the same examples, so more seeds that agree never "
      "shrink the interval below the test set's own width; df by "
      "Welch-Satterthwaite from K-1 and n, the seeds' term at its upper 95% "
      "bound. With one seed, the Wilson score interval of the class's "
      "correct count; for a single seed's balanced and worst-class accuracy, a "
      "percentile bootstrap of binomially resampled per-class counts.",
      "- The flag (section 2): for each class and compared value, the per-seed "
      "changes d_k = acc(value, seed k) - acc(baseline, seed k) over the K seeds both "
      f"have (paired by {', '.join(a.replicate_keys) or 'run'}), tested with "
      "t = mean(d) / sqrt(max(s_d^2, floor) / K + v_test) (scipy.stats.t, "
      "df by Welch-Satterthwaite from K-1 and n, the seeds' term at its upper 95% "
      "bound), floor = the binomial variance of "
      "one seed's difference, pa(1-pa)/n + pb(1-pb)/n with each accuracy pooled "
      "over seeds and shrunk as above, so identical seed differences never give "
      "p = 0; v_test = the variance of the class's n test examples as a sample of "
      "the class, counted once because every seed answers the same examples: "
      "(n m2 + f) / (n + 1) / n, m2 the mean squared per-example change averaged "
      "over the seeds (from the stored predictions, less the run-to-run noise the "
      "seeds' term counts; without predictions, its upper bound min(pa + pb, "
      "2 - pa - pb)), f one pseudo-example at the shrunk binomial variance. A flag says "
      "the setting changes the class's expected accuracy, over the randomness of "
      "training and over the class's examples: a class of 1 or 2 test examples can "
      "never be flagged, however many seeds agree. With fewer than "
      f"{stats.MIN_SEEDS} paired seeds nothing is flagged (p is empty). P-values are "
      f"adjusted with {a.correction_name} over {family}; a drop or rise is flagged "
      f"when the adjusted p < {a.alpha}. The interval is the same t interval (it "
      "excludes 0 exactly when the unadjusted p < 0.05: it is unadjusted); with one "
      "seed, Newcombe's square-and-add interval for paired proportions (method 10) "
      "from the per-example predictions, or his interval for independent "
      "proportions from the counts when no predictions were stored. `python -m "
      "jaxreg.report calibrate` checks by simulation that the flag's false-positive "
      "rate stays at or below alpha and its intervals cover (docs/sweeps.md, Calibration).",
      "- Evidence on these runs: the exact McNemar test (binomial, p = 1/2) on the "
      "discordant (seed, example) pairs, pooled over the paired seeds and "
      "unadjusted, from each run's predictions_test.npz (or eval/test-*.npz of the "
      "evaluated step from `jaxreg.evaluate`); empty where a run stored none. "
      "`detectable`: the smallest drop with 80% power for the flag at the observed "
      "seed sd, per-example spread, K and alpha / family size (noncentral t).",
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


def _best_run_classes(t: dict, n) -> str:
  """Each class's accuracy, or past MANY_CLASSES the lowest TABLE_ROWS of them."""
  cells = list(zip(t["class_names"], n, t["per_class_accuracy"]))
  if len(cells) <= MANY_CLASSES:
    return ", ".join(f"{label(prose(nm), k)} {pct(acc)}%" for nm, k, acc in cells)
  low = sorted((c for c in cells if c[1] > 0), key=lambda c: c[2])[:TABLE_ROWS]
  return (f"the lowest {len(low)} of {len(cells)} classes, " + ", ".join(
      f"{label(prose(nm), k)} {pct(acc)}%" for nm, k, acc in low)
      + " (every class: the run's summary.json)")


def random_report(sweep: Sweep, rd: Path, lines: list[str]) -> None:
  """Random search with non-repeating values: a ranking and scatter plots."""
  runs = ranking(sweep)
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
            + _best_run_classes(t, sweep.n) + ".", ""]
  numeric = [a for a in sweep.setting_axes if a.type_name in ("int", "float")]
  if numeric:
    figures.fig_random_scatter(sweep, numeric, rd / "random_val_scatter.png")
    lines += [f"![val accuracy per axis]({REPORT_DIR}/random_val_scatter.png)", ""]
  pairs = list(itertools.combinations(numeric, 2))
  if pairs:
    figures.fig_random_pairs(sweep, pairs, rd / "random_pairs.png")
    lines += [f"![pairs of settings]({REPORT_DIR}/random_pairs.png)", ""]
  write_csv(rd / "ranking.csv", ["run", *keys, "val_accuracy", "test_accuracy",
                                 "test_worst_class_accuracy"],
            [[r.name, *[r.values[k] for k in keys], r.val_accuracy,
              r.summary["test"]["accuracy"], r.summary["test"]["worst_class_accuracy"]]
             for r in runs])


def write_report(workdir, axis: str | None = None, baseline=None,
                 fix: dict | None = None, correction: str = "holm", alpha: float = 0.05,
                 reps: int = 2000, seed: int = 0, null_split: bool = False) -> Path:
  """Writes DIR/report.md and DIR/report/ (arguments as `analyse`); returns the
  report.md path."""
  sweep = load_sweep(workdir)
  rd = sweep.workdir / REPORT_DIR
  rd.mkdir(exist_ok=True)
  lines: list[str]
  if null_split or values_repeat(sweep):
    a = analyse(sweep, axis, baseline, fix, correction, alpha, reps, seed, null_split)
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
            + f". Per-run numbers: `{records.RUNS_FILE}`.", ""]
  out = sweep.workdir / REPORT_FILE
  io.atomic_write(out, "\n".join(lines))
  return out
