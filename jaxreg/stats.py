"""Small, numpy-only statistics for the sweep report (no scipy).

Intervals: `wilson_interval` (a binomial proportion: one seed), `t_interval` (a mean
over seeds). Tests: `paired_example_bootstrap` (per-class change between two settings,
paired by seed and by test example, from per-example predictions) and
`paired_bootstrap` (the same from confusion-matrix counts only, for runs that did not
store predictions). Multiple comparisons: `holm`,
`benjamini_hochberg` (adjusted p-values, in the input order).

What `paired_bootstrap` resamples, exactly. For each class c, setting A (the baseline)
and setting B have per-seed correct counts a[k, c], b[k, c] out of n[c] test examples
(k runs over the seeds both settings have; the same seed means the same
initialization and data order, so the seeds pair the runs). One bootstrap replicate:

  1. draw K seeds with replacement (the same draw for A and B: the pairing is kept);
  2. for each drawn seed, redraw its correct counts as Binomial(n[c], a[k, c] / n[c])
     and Binomial(n[c], b[k, c] / n[c]), independently (resampling the class's test
     examples; which examples a model got right is not stored, so the correlation
     between the two models' errors on the same examples is lost: with positively
     correlated errors this overstates the variance, i.e. the test is conservative);
  3. the replicate's change is the mean over drawn seeds of b*/n - a*/n.

The interval is the 2.5/97.5 percentiles of the replicates; the two-sided p-value is
the smallest alpha whose percentile interval excludes zero,
min(1, 2 * min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (B + 1)). Counting cannot resolve a
p-value below about 2 / B, which a correction over many classes multiplies (Holm
over 100 classes: 0.02 at B = 10000), so where fewer than `TAIL_COUNT` replicates lie
on the far side of zero the p-value is the normal tail 2 * Phi(-|d| / sd(d*)) instead
(0 when every replicate equals a nonzero change).
"""

from __future__ import annotations

import math

import numpy as np

Z_975 = 1.959963984540054  # standard normal 97.5% quantile
TAIL_COUNT = 10  # fewer bootstrap replicates past zero than this: normal tail p-value

# Student t 97.5% quantiles for 1..30 degrees of freedom.
_T_975 = (12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836,
          2.446911851, 2.364624252, 2.306004135, 2.262157163, 2.228138852,
          2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546,
          2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447,
          2.079613845, 2.073873068, 2.068657610, 2.063898562, 2.059538553,
          2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456)


def t_quantile_975(df: int) -> float:
  """The 97.5% quantile of Student's t (table to 30 df, Cornish-Fisher beyond)."""
  if df < 1:
    raise ValueError(f"degrees of freedom must be >= 1, got {df}")
  if df <= len(_T_975):
    return _T_975[df - 1]
  z = Z_975
  return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
          + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def wilson_interval(k, n, z: float = Z_975):
  """Wilson score interval of k successes in n trials (arrays broadcast).

  Returns (lo, hi); NaN where n == 0.
  """
  k = np.asarray(k, dtype=float)
  n = np.asarray(n, dtype=float)
  with np.errstate(invalid="ignore", divide="ignore"):
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  lo, hi = np.clip(center - half, 0, 1), np.clip(center + half, 0, 1)
  bad = n <= 0
  return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def t_interval(samples, axis: int = 0):
  """Mean and 95% t-interval over `axis` (one value per seed).

  Returns (mean, lo, hi); the interval is NaN with fewer than two samples.
  """
  x = np.asarray(samples, dtype=float)
  k = x.shape[axis]
  mean = x.mean(axis=axis)
  if k < 2:
    nan = np.full_like(mean, np.nan)
    return mean, nan, nan
  half = t_quantile_975(k - 1) * x.std(axis=axis, ddof=1) / math.sqrt(k)
  return mean, mean - half, mean + half


def _adjust(pvalues, step):
  """Applies `step(sorted p, m) -> adjusted sorted p` to the non-NaN entries."""
  p = np.asarray(pvalues, dtype=float)
  out = np.full(p.shape, np.nan)
  ok = ~np.isnan(p)
  m = int(ok.sum())
  if m == 0:
    return out
  vals = p[ok]
  order = np.argsort(vals, kind="stable")
  adjusted = np.empty(m)
  adjusted[order] = step(vals[order], m)
  out[ok] = adjusted
  return out


def holm(pvalues):
  """Holm step-down adjusted p-values (family-wise error), in the input order.

  Sorted ascending p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m-j+1) p_(j)).
  NaN entries are left out of the family and stay NaN.
  """
  return _adjust(pvalues, lambda v, m: np.maximum.accumulate(
      np.minimum(1.0, (m - np.arange(m)) * v)))


def benjamini_hochberg(pvalues):
  """Benjamini-Hochberg adjusted p-values (false discovery rate), input order.

  Sorted ascending: adj_(i) = min_{j >= i} min(1, m / j * p_(j)). NaN stays NaN.
  """
  return _adjust(pvalues, lambda v, m: np.minimum.accumulate(
      np.minimum(1.0, v * m / np.arange(1, m + 1))[::-1])[::-1])


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg}


def paired_bootstrap(correct_a, correct_b, n, *, reps: int = 10000, seed: int = 0,
                     chunk: int = 1000):
  """Change in per-class accuracy from A to B, paired by seed (see module doc).

  Args:
    correct_a, correct_b: int [K, C], correct counts per seed (same seed order).
    n: int [C], test examples per class (classes with n == 0 give NaN).
    reps: bootstrap replicates B; seed: the generator's seed (results reproduce).

  Returns a dict of float [C] arrays: `delta` (observed mean change, as a
  fraction), `lo`, `hi` (95% percentile interval) and `p` (two-sided).
  """
  a = np.asarray(correct_a, dtype=np.int64)
  b = np.asarray(correct_b, dtype=np.int64)
  n = np.asarray(n, dtype=np.int64)
  if a.ndim != 2 or a.shape != b.shape or a.shape[1] != n.shape[0]:
    raise ValueError(f"need [K, C] counts and [C] totals, got {a.shape}, {b.shape}, "
                     f"{n.shape}")
  k, c = a.shape
  if k == 0:
    raise ValueError("no paired seeds to compare")
  safe_n = np.maximum(n, 1)
  pa, pb = a / safe_n, b / safe_n
  delta = (pb - pa).mean(axis=0)
  rng = np.random.default_rng(seed)
  draws = []
  for start in range(0, reps, chunk):
    size = min(chunk, reps - start)
    idx = rng.integers(0, k, size=(size, k))
    star_a = rng.binomial(n, pa[idx])  # [size, K, C]
    star_b = rng.binomial(n, pb[idx])
    draws.append(((star_b - star_a) / safe_n).mean(axis=1))  # [size, C]
  return _bootstrap_result(delta, np.concatenate(draws), n)


def _bootstrap_result(delta, d, n):
  """delta [C] and replicates d [B, C] -> delta, 95% percentile interval, p-value."""
  reps = d.shape[0]
  lo, hi = np.quantile(d, [0.025, 0.975], axis=0)
  far = np.minimum((d <= 0).sum(axis=0), (d >= 0).sum(axis=0))
  p = np.minimum(1.0, 2 * (far + 1) / (reps + 1))
  sd = d.std(axis=0)
  with np.errstate(divide="ignore", invalid="ignore"):
    z = np.where(sd > 0, np.abs(delta) / np.where(sd > 0, sd, 1), np.inf)
  z = np.where(delta == 0, 0.0, z)
  normal = np.array([math.erfc(v / math.sqrt(2)) for v in z])  # 2 * Phi(-z)
  p = np.where(far < TAIL_COUNT, normal, p)
  missing = n <= 0
  nan = np.nan
  return {"delta": np.where(missing, nan, delta), "lo": np.where(missing, nan, lo),
          "hi": np.where(missing, nan, hi), "p": np.where(missing, nan, p)}


def paired_example_bootstrap(correct_a, correct_b, labels, num_classes: int, *,
                             reps: int = 10000, seed: int = 0):
  """Change in per-class accuracy from A to B, pairing seeds AND test examples.

  Args:
    correct_a, correct_b: bool [K, N], whether each paired run (same seed order) got
      each test example right; labels: int [N], the examples' true classes.

  One replicate draws K seeds with replacement and, independently, each class's n[c]
  test examples with replacement (the same draws for A and B, so both the seed pairing
  and the example pairing are kept: errors the two models share cancel); its change
  for class c is the mean over drawn seeds and drawn examples of b - a. Interval and
  p-value as in `paired_bootstrap`. Returns the same dict.
  """
  a = np.asarray(correct_a, dtype=np.float64)
  b = np.asarray(correct_b, dtype=np.float64)
  labels = np.asarray(labels, dtype=np.int64)
  if a.ndim != 2 or a.shape != b.shape or a.shape[1] != labels.shape[0]:
    raise ValueError(f"need [K, N] correctness and [N] labels, got {a.shape}, "
                     f"{b.shape}, {labels.shape}")
  k, total = a.shape
  if k == 0:
    raise ValueError("no paired seeds to compare")
  n = np.bincount(labels, minlength=num_classes)
  safe_n = np.maximum(n, 1)
  diff = b - a                                               # [K, N] in {-1, 0, 1}
  onehot = np.zeros((total, num_classes))
  onehot[np.arange(total), labels] = 1.0
  delta = (diff @ onehot).mean(axis=0) / safe_n
  members = [np.flatnonzero(labels == c) for c in range(num_classes)]
  rng = np.random.default_rng(seed)
  chunk = max(1, min(1000, 4_000_000 // max(total, 1)))     # [chunk, N] floats in memory
  draws = []
  for start in range(0, reps, chunk):
    size = min(chunk, reps - start)
    seeds = rng.multinomial(k, np.full(k, 1.0 / k), size=size)        # [size, K]
    weights = np.zeros((size, total))                                   # [size, N]
    for idx in members:
      if len(idx):
        weights[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)),
                                          size=size)
    per_example = (seeds @ diff) * weights                 # summed over drawn seeds
    draws.append((per_example @ onehot) / (k * safe_n))
  return _bootstrap_result(delta, np.concatenate(draws), n)


def binomial_bootstrap(correct, n, statistic, *, reps: int = 2000, seed: int = 0):
  """95% percentile interval of statistic(per-class accuracy [reps, C]) for one run.

  Resamples each class's test examples (Binomial(n, correct/n)); used for the
  balanced and worst-class accuracy of a single-seed setting.
  """
  correct = np.asarray(correct, dtype=np.int64)
  n = np.asarray(n, dtype=np.int64)
  keep = n > 0
  rng = np.random.default_rng(seed)
  star = rng.binomial(n[keep], correct[keep] / n[keep], size=(reps, int(keep.sum())))
  values = statistic(star / n[keep])
  lo, hi = np.quantile(values, [0.025, 0.975])
  return float(lo), float(hi)
