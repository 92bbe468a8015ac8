"""The report's figures (PNG), drawn from an Analysis. Figures are built with
matplotlib's object API, not pyplot: importing this module selects no backend and
leaves a notebook's plotting as it was."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from jaxreg.report.analysis import Analysis, PairGrid, class_acc
from jaxreg.report.load import Sweep
from jaxreg.report.text import MANY_CLASSES, fmt, label

# Figures with many classes show those that move most and every flagged class
# (Analysis.most_changed; the CSV tables keep them all). Above BAND_ABOVE classes the
# others are one grey band (10th-90th percentile and median) instead of a line each.
MAX_LINES, MAX_PANELS, MAX_ROWS, MAX_CONFUSION = 10, 24, 40, 30
BAND_ABOVE = MANY_CLASSES
# One colour language in every figure: a drop is red, a rise blue (the heatmaps' RdBu
# runs the same way); class identities use the other colours, with a marker each.
DROP_COLOR, RISE_COLOR = "tab:red", "tab:blue"
CHANGE_CMAP = "RdBu"            # negative (worse) red, positive (better) blue
MARKERS = "osD^vP*Xph<>"
CHOICE_COLOR = "gold"


# ----------------------------------------------------------------- x positions


@dataclasses.dataclass(frozen=True)
class XLayout:
  positions: list[float]
  labels: list[str]
  log: bool
  zero_at: float | None   # position of a 0 placed left of a log axis


def _numeric(values) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


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


# ---------------------------------------------------------------------- common


def _save(fig: Figure, path: Path) -> Path:
  """Lays out and writes a figure (every report PNG at the same dpi)."""
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def _colors(c: int):
  """c class colours without the reds and blues that mean drop and rise."""
  if c <= 8:
    cmap, skip = matplotlib.colormaps["tab10"], {0, 3}
  else:
    cmap, skip = matplotlib.colormaps["tab20"], {0, 1, 6, 7}
  palette = [cmap(i) for i in range(cmap.N) if i not in skip]
  return [palette[i % len(palette)] for i in range(c)]


def _choice_band(ax, x, xc, label=None):
  width = 0.015 * ((x.max() - x.min()) or 1.0)
  return ax.axvspan(xc - width, xc + width, color=CHOICE_COLOR, alpha=0.35, lw=0,
                    zorder=0, label=label)


def _flag_words(a: Analysis) -> str:
  """'Holm over 24 tests' or, with too few seeds, why nothing is flagged."""
  if a.family == 0:
    return f"none possible with {a.fewest_seeds} seed(s)"
  return f"{a.correction_name} over {a.family} tests"


def _shown_words(a: Analysis, shown: Sequence[int]) -> str:
  """'the 24 of 1000 classes that move most (all 3 flagged among them)'."""
  flagged = int(a.flagged.sum())
  among = int(a.flagged[list(shown)].sum())
  return (f"the {len(shown)} of {len(a.class_names)} classes that move most"
          + ("" if not flagged else f" (all {flagged} flagged among them)"
             if among == flagged else f" ({among} of the {flagged} flagged)"))


def _series(a: Analysis, i: int):
  """Class i's mean, lo and hi test accuracy at every value, as arrays."""
  return (np.array([lv.accuracy.mean[i] for lv in a.levels]),
          np.array([lv.accuracy.lo[i] for lv in a.levels]),
          np.array([lv.accuracy.hi[i] for lv in a.levels]))


# ------------------------------------------------------------------- figures


def fig_overview(a: Analysis, out: Path) -> Path:
  """Left: every class's mean test accuracy; right: accuracy, balanced, worst class."""
  values = a.values
  lay = x_layout(values)
  x = np.array(lay.positions)
  fig = Figure(figsize=(13, 5.2))
  ax1, ax2 = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.35, 1]})
  names = a.class_names
  shown = a.most_changed(MAX_LINES)
  colors = _colors(len(shown))
  # classes that sit on top of each other (e.g. all at 100%) stay visible: each has
  # its own marker and a small sideways offset
  dodge = 0.012 * ((x.max() - x.min()) or 1.0)
  rest = [c for c in range(len(names)) if c not in shown]
  if len(names) > BAND_ABOVE and rest:  # a band, not a wall of grey lines
    means = 100 * np.array([lv.accuracy.mean[rest] for lv in a.levels])  # [L, rest]
    with np.errstate(invalid="ignore"):
      p10, p50, p90 = np.nanpercentile(means, [10, 50, 90], axis=1)
    ax1.fill_between(x, p10, p90, color="0.8", lw=0, zorder=0,
                     label=f"other {len(rest)} classes: 10th-90th percentile")
    ax1.plot(x, p50, color="0.55", lw=1.2, ls="--", marker=".", ms=3, zorder=1,
             label=f"other {len(rest)} classes: median")
  for c, name in enumerate(names):
    m, lo, hi = _series(a, c)
    if c not in shown and len(names) > BAND_ABOVE:
      continue
    if c not in shown:
      ax1.plot(x, 100 * m, color="0.7", lw=0.8, marker=".", ms=3, zorder=1,
               label="other classes" if c == min(set(range(len(names))) - set(shown))
               else None)
      continue
    j = shown.index(c)
    off = (j - (len(shown) - 1) / 2) * dodge
    ax1.errorbar(x + off, 100 * m, yerr=[100 * (m - lo), 100 * (hi - m)],
                 color=colors[j], marker=MARKERS[j % len(MARKERS)], ms=5, lw=1.4,
                 capsize=2, elinewidth=0.8, alpha=0.9, label=label(name, a.n[c]),
                 zorder=2)
  ax1.set_ylabel("test accuracy (%)")
  ax1.set_title("Per-class test accuracy (mean over seeds, 95% interval)"
                + ("" if len(shown) == len(names) else
                   f"\n{_shown_words(a, shown)} in color"), fontsize=11)
  styles = {"accuracy": ("k", "-", "o", "accuracy"),
            "balanced_accuracy": ("tab:purple", "--", "s", "balanced accuracy"),
            "worst_class_accuracy": ("tab:orange", ":", "v", "worst-class accuracy"),
            "val_accuracy": ("0.5", "-.", "D", "validation accuracy")}
  for metric, (color, ls, marker, name) in styles.items():
    m = np.array([lv.metrics[metric].mean for lv in a.levels], float)
    lo = np.array([lv.metrics[metric].lo for lv in a.levels], float)
    hi = np.array([lv.metrics[metric].hi for lv in a.levels], float)
    ax2.plot(x, 100 * m, color=color, ls=ls, marker=marker, ms=4, lw=2, label=name)
    if np.isfinite(lo).any():
      ax2.fill_between(x, 100 * lo, 100 * hi, color=color, alpha=0.12, lw=0)
  ax2.set_title("Average and worst class (95% interval)")
  xc = x[values.index(a.chosen)]
  for ax in (ax1, ax2):
    setup_x(ax, lay, a.key)
    ax.grid(alpha=0.3)
    _choice_band(ax, x, xc, label=f"chosen by validation ({fmt(a.chosen)})")
  ax1.legend(fontsize=8, loc="lower left", ncol=2 if len(names) > 8 else 1,
             framealpha=0.85)
  ax2.legend(fontsize=8, loc="lower left", framealpha=0.85)
  lo_all = min(100 * np.nanmin(lv.accuracy.lo) if np.isfinite(lv.accuracy.lo).any()
               else 100 * np.nanmin(lv.accuracy.mean) for lv in a.levels)
  ax1.set_ylim(max(-2, min(lo_all, 100) - 5), 102)
  return _save(fig, out)


def fig_small_multiples(a: Analysis, out: Path) -> Path:
  """One panel per class: mean and 95% interval, every seed's accuracy as a dot, the
  baseline level dashed."""
  values = a.values
  lay = x_layout(values)
  x = np.array(lay.positions)
  shown = a.most_changed(MAX_PANELS)
  c = len(shown)
  cols = min(4, c)
  rows = math.ceil(c / cols)
  fig = Figure(figsize=(3.4 * cols, 2.7 * rows))
  axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
  base = a.level(a.baseline).accuracy.mean
  for j, i in enumerate(shown):
    ax = axes[j // cols][j % cols]
    m, lo, hi = _series(a, i)
    ax.fill_between(x, 100 * lo, 100 * hi, color="0.5", alpha=0.2, lw=0)
    # every seed's accuracy too: a bimodal spread (some seeds lose the class) is where
    # the seed-level t-test is weakest (docs/sweeps.md, Known limits)
    for k, lv in enumerate(a.levels):
      per_seed = class_acc(lv.confusion)[:, i]
      ax.plot(np.full(len(per_seed), x[k]), 100 * per_seed, ".", color="0.55", ms=3,
              alpha=0.8, zorder=2)
    ax.plot(x, 100 * m, "o-", color="0.15", ms=3.5, lw=1.4)
    ax.axhline(100 * base[i], color="0.4", lw=0.8, ls="--")
    for k, v in enumerate(values):
      ch = a.changes.get(v)
      if ch is not None and (ch.drop[i] or ch.rise[i]):
        ax.plot(x[k], 100 * m[k], "v" if ch.drop[i] else "^",
                color=DROP_COLOR if ch.drop[i] else RISE_COLOR, ms=8, zorder=3)
    _choice_band(ax, x, x[values.index(a.chosen)])
    ax.set_title(label(a.class_names[i], a.n[i]), fontsize=10)
    setup_x(ax, lay, a.key)
    ax.xaxis.label.set_fontsize(8)
    ax.tick_params(labelsize=7)
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
  for j in range(c, rows * cols):
    axes[j // cols][j % cols].axis("off")
  for r in range(rows):
    axes[r][0].set_ylabel("test accuracy (%)", fontsize=8)
  total = len(a.class_names)
  fig.suptitle(f"Per-class test accuracy vs {a.key} (mean, 95% interval; dots: each seed)\n"
               f"dashed: baseline {fmt(a.baseline)}; red \u25bc / blue \u25b2: "
               f"significant drop / rise ({_flag_words(a)}); gold band: chosen by "
               "validation"
               + ("" if c == total else f"\n{_shown_words(a, shown)} (all: "
                  "per_class_accuracy.csv)"), fontsize=9)
  return _save(fig, out)


def fig_change_heatmap(a: Analysis, out: Path) -> Path:
  values = list(a.changes)
  shown = a.most_changed(MAX_ROWS)
  d = np.array([a.changes[v].delta[shown] for v in values]).T * 100  # [C, L]
  sig = np.array([a.changes[v].p_adjusted[shown] < a.alpha for v in values]).T
  lim = max(1.0, float(np.nanmax(np.abs(d))))
  fig = Figure(figsize=(max(6.0, 3.2 + 1.2 * len(values)), 1.6 + 0.42 * len(shown)))
  ax = fig.subplots()
  im = ax.imshow(d, cmap=CHANGE_CMAP, vmin=-lim, vmax=lim, aspect="auto")
  for (i, j), v in np.ndenumerate(d):
    if np.isfinite(v):
      ax.text(j, i, f"{v:+.1f}{'*' if sig[i, j] else ''}", ha="center", va="center",
              fontsize=8, color="white" if abs(v) > 0.6 * lim else "black")
  ax.set_xticks(range(len(values)), [fmt(v) for v in values])
  ax.set_yticks(range(len(shown)), [label(a.class_names[i], a.n[i]) for i in shown],
                fontsize=8)
  ax.set_xlabel(a.key)
  ax.set_title(f"Change in test accuracy (points; red: drop, blue: rise)\nvs "
               f"{a.key}={fmt(a.baseline)}; * significant ({_flag_words(a)}, alpha "
               f"{a.alpha})"
               + ("" if len(shown) == len(a.class_names) else
                  f"\n{_shown_words(a, shown)} (all: per_class_change.csv)"),
               fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.05, label="points")
  return _save(fig, out)


def fig_forest(a: Analysis, value, out: Path) -> Path:
  ch = a.changes[value]
  shown = a.most_changed(MAX_ROWS)
  c = len(shown)
  fig = Figure(figsize=(7, 1.4 + 0.38 * c))
  ax = fig.subplots()
  y = np.arange(c)[::-1]
  d, lo, hi = (100 * getattr(ch, k)[shown] for k in ("delta", "lo", "hi"))
  colors = [DROP_COLOR if ch.drop[i] else RISE_COLOR if ch.rise[i] else "0.35"
            for i in shown]
  for i in range(c):
    ax.errorbar(d[i], y[i], xerr=[[d[i] - lo[i]], [hi[i] - d[i]]], fmt="o",
                color=colors[i], capsize=3)
  ax.axvline(0, color="k", lw=0.8)
  ax.set_yticks(y, [label(a.class_names[i], a.n[i]) for i in shown], fontsize=8)
  ax.set_xlabel(f"change in test accuracy (points)\n{a.key}={fmt(value)} minus "
                f"{fmt(a.baseline)}")
  # two lines for the where and the how: a long axis name (upstream.data.augment.hue)
  # and the interval's method on one line ran past the figure's edge
  ax.set_title(f"Per-class change at {a.key}={fmt(value)}\n95% interval, unadjusted "
               f"({ch.interval})\nred: significant drop, blue: significant rise "
               f"({_flag_words(a)})"
               + ("" if c == len(a.class_names) else f"\n{_shown_words(a, shown)}"),
               fontsize=10)
  ax.grid(alpha=0.3, axis="x")
  return _save(fig, out)


def fig_confusion_diff(a: Analysis, out: Path) -> Path:
  d = a.confusion_diff
  keep = list(range(len(a.class_names)))
  if len(keep) > MAX_CONFUSION:  # the classes with the most changed counts
    moved = np.abs(d).sum(axis=0) + np.abs(d).sum(axis=1)
    keep = sorted(np.argsort(-moved)[:MAX_CONFUSION].tolist())
  d = d[np.ix_(keep, keep)]
  names = [label(a.class_names[i], a.n[i]) for i in keep]
  c = len(names)
  # coloured by what the change does to accuracy: fewer correct (diagonal down) and
  # more confusions (off-diagonal up) are both red, as drops are everywhere else
  harm = np.where(np.eye(c, dtype=bool), d, -d)
  size = max(4.5, 0.55 * c + 2.5)
  fig = Figure(figsize=(size + 1.2, size))
  ax = fig.subplots()
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
               "blue: better"
               + ("" if c == len(a.class_names) else f"\nthe {c} of "
                  f"{len(a.class_names)} classes whose counts change most"),
               fontsize=9)
  bar = fig.colorbar(im, ax=ax, fraction=0.046,
                     label="effect on correct predictions (red: worse)")
  bar.locator = MaxNLocator(integer=True)
  bar.update_ticks()
  return _save(fig, out)


def fig_pair(p: PairGrid, out: Path) -> Path:
  grid, va, vb = p.grid, p.values_a, p.values_b
  fig = Figure(figsize=(2.5 + 0.9 * len(vb), 1.8 + 0.55 * len(va)))
  ax = fig.subplots()
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
    ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False,
                           ec="red", lw=2))
  ax.set_xticks(range(len(vb)), [fmt(v) for v in vb], rotation=45 if len(vb) > 6 else 0)
  ax.set_yticks(range(len(va)), [fmt(v) for v in va])
  ax.set_xlabel(p.key_b)
  ax.set_ylabel(p.key_a)
  extra = f"; best over {', '.join(p.others)}" if p.others else ""
  ax.set_title(f"Mean validation accuracy (%) over seeds{extra}", fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.05, label="val accuracy (%)")
  return _save(fig, out)


# ----------------------------------------------------------- random search


def _log_if_loguniform(ax, sweep: Sweep, axis, which: str) -> None:
  xs = [r.values[axis.key] for r in sweep.finished]
  if axis.kind == "loguniform" and min(xs) > 0:
    getattr(ax, f"set_{which}scale")("log")


def fig_random_scatter(sweep: Sweep, numeric: Sequence, out: Path) -> Path:
  """Validation accuracy of each run against each numeric setting axis."""
  val = np.array([100 * r.val_accuracy for r in sweep.finished])
  fig = Figure(figsize=(4.2 * len(numeric), 3.8))
  axes = fig.subplots(1, len(numeric), squeeze=False, sharey=True)
  for ax, axis in zip(axes[0], numeric):
    ax.scatter([r.values[axis.key] for r in sweep.finished], val, s=22)
    _log_if_loguniform(ax, sweep, axis, "x")
    ax.set_xlabel(axis.key)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("validation accuracy (%)")
  fig.suptitle("Validation accuracy of each run against each swept setting",
               fontsize=10)
  return _save(fig, out)


def fig_random_pairs(sweep: Sweep, pairs: Sequence, out: Path) -> Path:
  """Each pair of numeric setting axes, runs coloured by validation accuracy."""
  val = np.array([100 * r.val_accuracy for r in sweep.finished])
  fig = Figure(figsize=(4.8 * len(pairs), 4))
  axes = fig.subplots(1, len(pairs), squeeze=False)
  for ax, (p, q) in zip(axes[0], pairs):
    sc = ax.scatter([r.values[p.key] for r in sweep.finished],
                    [r.values[q.key] for r in sweep.finished], c=val, cmap="viridis",
                    s=40, edgecolors="k", linewidths=0.4)
    _log_if_loguniform(ax, sweep, p, "x")
    _log_if_loguniform(ax, sweep, q, "y")
    ax.set_xlabel(p.key)
    ax.set_ylabel(q.key)
    ax.grid(alpha=0.3)
    fig.colorbar(sc, ax=ax, label="val accuracy (%)")
  fig.suptitle("Pairs of settings, colored by validation accuracy", fontsize=10)
  return _save(fig, out)
