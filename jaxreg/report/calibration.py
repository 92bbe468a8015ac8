"""Simulated sweeps that check the report's flag: `python -m jaxreg.report calibrate`.

One simulated sweep is a family of M classes, each with n test examples, compared
between a baseline A and a setting B over K paired seeds, exactly as the report
compares them (`stats.seed_paired_test`, then `stats.holm` over the M classes). Every
(setting, seed) run answers every test example of a class right with probability

    expit(logit(acc) + z_i + u_k + e_{s,k} + delta_s)

z_i ~ N(0, EXAMPLE_SD): example difficulty, fixed with the test set (shared by all
runs); u_k ~ N(0, SEED_SD): a seed effect shared by the two settings (the pairing);
e_{s,k} ~ N(0, RUN_SD): an independent (setting x seed) run effect; delta_s: the
setting's true effect (0 under the null; for B, the logit shift that takes acc to
acc - drop). Scenario `one_seed` adds, per class, a shock of +/-SHOCK on the logit
scale to one run (a random seed, a random setting, a random sign): flips concentrated
in one seed, as when one seed of a sweep collapses on one class. Scenario `example`
is a setting x example effect: B shifts each example's logit by w_i ~ N(0,
EXAMPLE_X_SD), fixed with the test set, recentred so that the class's expected
accuracy over its whole population is unchanged: B changes *which* examples are
right, not how many on average, so the n examples drawn can show a change in every
seed that the class does not have. Correctness is drawn
per example and run, so the exact McNemar test pooled over (seed, example) pairs can be
run on the same data: it shows why that test cannot be the flag.

Reported per cell: the per-class false-positive rate of the flag (unadjusted p < alpha;
it should be <= alpha plus Monte Carlo error, 0.064 for 1000 sweeps at 0.05), the
family-wise rate after Holm over the M classes, the coverage of the flag's 95% t
interval, the McNemar false-positive rate, and, for real effects, the power of the
flag after Holm (one class of the family affected) with its interval's coverage of
the expected change of the class (over its population of examples, not given the
drawn test set: the flag's claim is about the class).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Sequence

import numpy as np
from scipy import optimize, special

from jaxreg import stats

EXAMPLE_SD, SEED_SD, RUN_SD, SHOCK, EXAMPLE_X_SD = 1.0, 0.5, 0.2, 3.0, 2.0
CLASSES = 8             # the family: classes of one sweep (one compared value)
ALPHA = 0.05
SCENARIOS = ("noise", "one_seed", "example")
FULL = {"seeds": (3, 5, 10), "n": (2, 9, 50, 200), "acc": (0.5, 0.9, 0.99)}
# (seeds, n, acc, drop): real effects for the power table
EFFECTS = tuple((k, n, 0.9, d) for k in (3, 5, 10) for n in (50, 200)
                for d in (0.05, 0.1, 0.3)) + ((5, 200, 0.99, 0.3), (5, 9, 0.9, 0.3))
_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(40)
CHUNK = 4_000_000       # simulated (run, example) outcomes held at once


@dataclasses.dataclass
class Cell:
  seeds: int
  n: int
  acc: float
  scenario: str = "noise"
  drop: float = 0.0
  sweeps: int = 0
  fpr: float = math.nan        # per-class share of p < alpha (null classes)
  fwer: float = math.nan       # share of sweeps with a class flagged after Holm
  coverage: float = math.nan   # share of 95% intervals covering the truth
  mcnemar_fpr: float = math.nan
  power: float = math.nan      # share of sweeps flagging the affected class (Holm)
  min_p: float = math.nan
  truth: float = math.nan      # mean true change of the affected class


def _expected(x, sd):
  """E[expit(x + N(0, sd^2))] by Gauss-Hermite quadrature."""
  x = np.asarray(x, dtype=float)[..., None]
  return (special.expit(x + math.sqrt(2) * sd * _NODES) * _WEIGHTS).sum(-1) / math.sqrt(
      math.pi)


def _recentre(base: float) -> float:
  """The offset c that keeps a class's expected accuracy when B adds w_i ~ N(0,
  EXAMPLE_X_SD) to every example's logit: E expit(base + c + all effects + w) =
  E expit(base + all effects)."""
  sd = math.sqrt(EXAMPLE_SD ** 2 + SEED_SD ** 2 + RUN_SD ** 2)
  wide = math.hypot(sd, EXAMPLE_X_SD)
  target = float(_expected(base, sd))
  return optimize.brentq(lambda c: float(_expected(base + c, wide)) - target, -20, 20)


def simulate(cell: Cell, sweeps: int, rng, classes: int = CLASSES) -> dict:
  """Draws `sweeps` sweeps of `classes` classes; class 0 carries cell.drop (the others
  are null). Returns the flag's result [S, M], McNemar p [S, M] and the truth [S]."""
  k, n = cell.seeds, cell.n
  base = special.logit(cell.acc)
  shift = 0.0 if cell.drop == 0 else special.logit(cell.acc - cell.drop) - base
  effect = np.zeros(classes)
  effect[0] = shift
  # the setting x example scenario's offset: one root-finding per cell, not per chunk
  recentre = _recentre(base) if cell.scenario == "example" else 0.0
  per_sweep = 2 * classes * k * n
  chunk = max(1, CHUNK // per_sweep)
  out: dict[str, list] = {"p": [], "lo": [], "hi": [], "mcnemar": [], "truth": []}
  for start in range(0, sweeps, chunk):
    s = min(chunk, sweeps - start)
    z = rng.normal(0, EXAMPLE_SD, (s, classes, 1, n))
    u = rng.normal(0, SEED_SD, (s, classes, k, 1))
    e = rng.normal(0, RUN_SD, (2, s, classes, k, 1))
    if cell.scenario == "one_seed":
      which = rng.integers(0, k, (s, classes))
      setting = rng.integers(0, 2, (s, classes))
      sign = rng.choice([-1.0, 1.0], (s, classes))
      ss, cc = np.meshgrid(np.arange(s), np.arange(classes), indexing="ij")
      e[setting, ss, cc, which, 0] += SHOCK * sign
    logit_a = base + z + u + e[0]                                  # [s, M, K, n]
    logit_b = base + z + u + e[1] + effect[:, None, None]
    if cell.scenario == "example":
      logit_b = logit_b + rng.normal(0, EXAMPLE_X_SD, z.shape) + recentre
    right_a = rng.random(logit_a.shape, dtype=np.float32) < special.expit(logit_a)
    right_b = rng.random(logit_b.shape, dtype=np.float32) < special.expit(logit_b)
    a = right_a.sum(-1).transpose(0, 2, 1)                          # [s, K, M]
    b = right_b.sum(-1).transpose(0, 2, 1)
    # the report's m2: the per-example change averaged over seeds, squared, averaged
    m2 = stats.test_m2(right_b.astype(np.float32) - right_a)          # [s, M]
    res = stats.seed_paired_test(a, b, n, m2)
    out["p"].append(res["p"])
    out["lo"].append(res["lo"])
    out["hi"].append(res["hi"])
    lost = (right_a & ~right_b).sum((-1, -2))
    gained = (right_b & ~right_a).sum((-1, -2))
    out["mcnemar"].append(stats.mcnemar_exact(lost, gained))
    if cell.drop:
      # the expected change of class 0 over training randomness and its population
      sd = math.sqrt(EXAMPLE_SD ** 2 + SEED_SD ** 2 + RUN_SD ** 2)
      out["truth"].append(np.full(s, float(_expected(base + shift, sd)
                                           - _expected(base, sd))))
    else:
      out["truth"].append(np.zeros(s))
  return {key: np.concatenate(v) for key, v in out.items()}


def run_cell(cell: Cell, sweeps: int, seed: int = 0, alpha: float = ALPHA) -> Cell:
  """Fills the cell's rates from `sweeps` simulated sweeps (reproducible per cell)."""
  key = [seed, cell.seeds, cell.n, round(cell.acc * 1000), round(cell.drop * 1000),
         SCENARIOS.index(cell.scenario)]
  r = simulate(cell, sweeps, np.random.default_rng(key))
  p, lo, hi = r["p"], r["lo"], r["hi"]
  flagged = stats.holm(p) < alpha
  null = slice(1, None) if cell.drop else slice(None)
  truth = np.zeros(p.shape)
  truth[:, 0] = r["truth"]
  covered = (lo <= truth) & (truth <= hi)
  cell.sweeps = sweeps
  cell.fpr = float((p[:, null] < alpha).mean())
  cell.fwer = float(flagged[:, null].any(-1).mean())
  cell.mcnemar_fpr = float((r["mcnemar"][:, null] < alpha).mean())
  cell.min_p = float(np.nanmin(p))
  if cell.drop:
    cell.power = float(flagged[:, 0].mean())
    cell.coverage = float(covered[:, 0].mean())
    cell.truth = float(r["truth"].mean())
  else:
    cell.coverage = float(covered.mean())
  return cell


def null_grid(seeds=FULL["seeds"], n=FULL["n"], acc=FULL["acc"],
              scenarios=SCENARIOS) -> list[Cell]:
  return [Cell(k, nn, a, sc) for k, nn, a, sc in itertools.product(seeds, n, acc,
                                                                     scenarios)]


def effect_grid(effects=EFFECTS) -> list[Cell]:
  return [Cell(k, n, acc, "noise", drop) for k, n, acc, drop in effects]


def calibrate(cells: Sequence[Cell], sweeps: int = 1000, seed: int = 0,
              progress=None) -> list[Cell]:
  done = []
  for i, cell in enumerate(cells):
    done.append(run_cell(cell, sweeps, seed))
    if progress:
      progress(i + 1, len(cells))
  return done


def _f(x, digits=3):
  return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def null_table(cells: Sequence[Cell]) -> str:
  """Markdown: one row per (K, n), the worst over accuracies and scenarios beside
  each scenario's per-accuracy false-positive rates."""
  lines = ["| seeds K | n | flag FPR, noise (acc 0.5 / 0.9 / 0.99) | flag FPR, one seed "
           "shocked | flag FPR, setting x example | family-wise after Holm (max) | "
           "95% interval coverage (min) | pooled McNemar FPR (max; not the flag) |",
           "| ---: | ---: | --- | --- | --- | ---: | ---: | ---: |"]
  keys = sorted({(c.seeds, c.n) for c in cells})
  for k, n in keys:
    group = [c for c in cells if (c.seeds, c.n) == (k, n)]
    def rates(sc):
      return " / ".join(_f(c.fpr) for c in sorted(group, key=lambda c: c.acc)
                        if c.scenario == sc) or "-"
    lines.append(f"| {k} | {n} | {rates('noise')} | {rates('one_seed')} | "
                 f"{rates('example')} | "
                 f"{_f(max(c.fwer for c in group))} | "
                 f"{_f(min(c.coverage for c in group))} | "
                 f"{_f(max(c.mcnemar_fpr for c in group))} |")
  return "\n".join(lines)


def effect_table(cells: Sequence[Cell]) -> str:
  lines = ["| seeds K | n | accuracy | drop (points) | power after Holm | "
           "95% interval coverage |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
  for c in cells:
    lines.append(f"| {c.seeds} | {c.n} | {100 * c.acc:g}% | {100 * c.drop:g} | "
                 f"{_f(c.power, 2)} | {_f(c.coverage)} |")
  return "\n".join(lines)


def summary(null: Sequence[Cell], effects: Sequence[Cell], sweeps: int,
            alpha: float = ALPHA) -> tuple[str, bool]:
  """A closing paragraph and whether the rates meet the issue's targets."""
  limit = alpha + 2 * math.sqrt(alpha * (1 - alpha) / sweeps)
  fpr = max(c.fpr for c in null)
  fwer = max(c.fwer for c in null)
  cover = min(c.coverage for c in [*null, *effects])
  min_p = min(c.min_p for c in [*null, *effects])
  ok = fpr <= limit and fwer <= limit and cover >= 0.93 and min_p > 0
  text = (f"Largest per-class false-positive rate of the flag {fpr:.3f} (target <= "
          f"{limit:.3f}: alpha {alpha} plus two Monte Carlo standard errors over "
          f"{sweeps} sweeps); largest family-wise rate after Holm over {CLASSES} "
          f"classes {fwer:.3f}; smallest 95% interval coverage {cover:.3f} (target >= "
          f"0.93); smallest p-value {min_p:.2g} (never 0). "
          + ("All targets met." if ok else "TARGETS NOT MET."))
  return text, ok


def main(sweeps: int = 1000, seed: int = 0, quick: bool = False, out=print) -> bool:
  """Prints the calibration tables; returns whether the targets are met."""
  if quick:
    null = null_grid(seeds=(3, 5), n=(9, 200), acc=(0.9,))
    effects = effect_grid(((5, 200, 0.9, 0.1), (5, 200, 0.99, 0.3)))
  else:
    null, effects = null_grid(), effect_grid()
  t0 = time.perf_counter()
  null = calibrate(null, sweeps, seed)
  effects = calibrate(effects, sweeps, seed)
  text, ok = summary(null, effects, sweeps)
  out(f"Null sweeps: {sweeps} per cell, {CLASSES} classes each, logit sds: example "
      f"{EXAMPLE_SD}, seed {SEED_SD} (shared), run {RUN_SD} (setting x seed); one-seed "
      f"shock +/-{SHOCK}; setting x example {EXAMPLE_X_SD} (recentred). Flag: "
      f"seed-paired t-test, seeds' variance floored, the test set counted once, "
      f"alpha {ALPHA}.\n")
  out(null_table(null) + "\n")
  out("Real effects (one class of the family of " f"{CLASSES}; the others null):\n")
  out(effect_table(effects) + "\n")
  out(text)
  out(f"({time.perf_counter() - t0:.0f} s)")
  return ok
