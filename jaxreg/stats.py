"""The report's statistics, on scipy.stats: the per-class flag, exact per-run evidence,
intervals, multiple-comparison corrections and power.

The unit of replication is the seed. Two settings trained with the same seed are still
two separately trained models, so each (setting, seed) run carries its own class-level
random effect; a test that pools test examples over seeds treats them as replicates and
rejects far too often when those run effects exist (`jaxreg/report/calibration.py`
simulates it).

The flag (`seed_paired_test`). For one class, setting A (the baseline) and setting B
have per-seed correct counts a_k, b_k out of n test examples, k = 1..K over the seeds
(runs) both settings have. The per-seed change is d_k = (b_k - a_k) / n and

    t = mean(d) / se,   se^2 = max(s_d^2, floor) / K + v_test,

a paired t-test (`scipy.stats.t`) with two variance terms:

- Training randomness: s_d^2 / K, floored at the within-seed binomial variance of one
  seed's difference, floor = (pa (1 - pa) + pb (1 - pb)) / n, each setting's accuracy
  shrunk as pa = (sum_k a_k + 1/2) / (K n + 1) so that K seeds that agree exactly
  never give a zero variance.
- The test set: all seeds share the same n test examples, a sample of the class. The
  flag's claim is about the class ("B changes this class's expected accuracy"), so the
  sampling variance of those n examples enters once, NOT divided by K:
      v_test = (n m2 + f) / (n + 1) / n,
  m2 = the mean over the class's examples of delta_i^2, delta_i = an example's change
  averaged over the seeds (from the stored per-example predictions), uncentered: the
  spread the examples would have if the class did not change, so that a few examples
  that flip in every seed are not a certainty; less the run-to-run noise delta_i still
  carries (the residual mean square of the seed x example table over K), which the
  seeds' term counts already (`test_m2`); f = pa' (1 - pa') + pb' (1 - pb') with
  the accuracies shrunk over the n examples (pa' = (mean_k a_k + 1/2) / (n + 1)), one
  pseudo-example that keeps v_test off 0. Without per-example predictions m2 is its
  upper bound at these accuracies, min(pa + pb, 2 - pa - pb): the largest share of
  examples the two settings can disagree on.

The degrees of freedom are Welch-Satterthwaite's (from K - 1 for the first term and n
for the second) with the first term at its upper 95% confidence bound
(`combined_se`): from the estimate itself they grow when the seeds' variance is small
by chance, and the test rejected too often at K = 3. A class of one example can never
be flagged (|t| <= 1.63); two examples that flip in every seed give p ~ 0.2. Fewer than MIN_SEEDS seeds give no p-value (NaN):
one or two seeds cannot estimate the seed-to-seed variation. The 95% interval is
mean(d) +/- t(0.975, df) se, so it excludes 0 exactly when p < 0.05. No Wilcoxon: its
smallest exact two-sided p at K <= 5 is 0.0625. `jaxreg/report/calibration.py` checks
the false-positive rate, including a null where B changes which examples are right
but not the class's expected accuracy (a setting x example effect).

Per-run evidence (`mcnemar_exact`, `newcombe_paired`): with stored per-example
predictions, the exact McNemar test on the discordant (seed, example) pairs says whether
*these runs* differ on *this test set*; it treats the runs as fixed, so it is never the
flag. Newcombe's square-and-add interval (his method 10, with its correlation term)
gives a one-seed paired difference its interval.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as st

MIN_SEEDS = 3      # fewer paired seeds: no flag (the report says why)
CONFIDENCE = 0.95


def _z(confidence: float) -> float:
  return float(st.norm.ppf(0.5 + confidence / 2))


def wilson_interval(k, n, confidence: float = CONFIDENCE):
  """Wilson score interval of k successes in n trials (arrays broadcast).

  Written out (vectorized) because scipy's `binomtest(...).proportion_ci('wilson')` is
  one scalar at a time; tests check it against scipy. The bounds are clipped so that
  lo <= k/n <= hi exactly (rounding gave 8.7e-19 > 0 for 0 of 400, a negative error
  bar for matplotlib). Returns (lo, hi); NaN where n == 0.
  """
  z = _z(confidence)
  k = np.asarray(k, dtype=float)
  n = np.asarray(n, dtype=float)
  with np.errstate(invalid="ignore", divide="ignore"):
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = np.clip(np.minimum(center - half, p), 0, 1)
    hi = np.clip(np.maximum(center + half, p), 0, 1)
  bad = n <= 0
  return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def shrunk_proportion(k, n):
  """(k + 1/2) / (n + 1): a proportion pulled off 0 and 1 (for variance floors)."""
  return (np.asarray(k, dtype=float) + 0.5) / (np.asarray(n, dtype=float) + 1)


def binomial_variance(correct, n, seeds: int = 1):
  """One run's binomial variance p (1 - p) / n of a class accuracy, with p shrunk
  from the `correct` count pooled over `seeds` runs of n examples each:
  p = (correct + 1/2) / (seeds n + 1), so that it is never 0 for finite n (a class at
  0% or 100% is still a sample of its examples). NaN where n == 0."""
  n = np.asarray(n, dtype=float)
  p = shrunk_proportion(correct, seeds * n)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(n > 0, p * (1 - p) / np.where(n > 0, n, 1), np.nan)


PRIOR_EXAMPLES = 1  # pseudo-examples at the binomial variance in v_test


def accuracy_test_variance(n, acc):
  """(v_test, df) of one class accuracy from its n test examples as a sample of the
  class, not divided by the seeds: the Bernoulli variance (its upper bound over
  examples) at the accuracy pulled in by z^2 pseudo-examples each way, so that a class
  right on all n examples keeps Wilson's width at the boundary (~z^2 / n). With the
  raw accuracy it was 1/n^3 and the interval covered 16-74% of the class's accuracy
  near 100% (a review's exact computation). Arrays broadcast; NaN where n == 0."""
  n = np.asarray(n, dtype=float)
  acc = np.clip(np.asarray(acc, dtype=float), 0, 1)
  z2 = _z(CONFIDENCE) ** 2
  with np.errstate(invalid="ignore", divide="ignore"):
    p = (acc * n + z2) / (n + 2 * z2)
    v = p * (1 - p) / np.where(n > 0, n, 1)
  return np.where(n > 0, v, np.nan), n


def test_set_variance(n, acc_a, acc_b, m2=None):
  """(v_test, df): the variance a class's mean change from A to B gets from its n test
  examples being a sample of the class; not divided by the seeds, which all share
  them (module doc). m2: the mean squared per-example change (from stored
  predictions), else its upper bound min(pa + pb, 2 - pa - pb). Arrays broadcast;
  NaN where n == 0."""
  n = np.asarray(n, dtype=float)
  acc_a = np.clip(np.asarray(acc_a, dtype=float), 0, 1)
  acc_b = np.clip(np.asarray(acc_b, dtype=float), 0, 1)
  with np.errstate(invalid="ignore", divide="ignore"):
    sa = shrunk_proportion(acc_a * n, n)
    sb = shrunk_proportion(acc_b * n, n)
    f = sa * (1 - sa) + sb * (1 - sb)
    # without per-example changes: the largest share of examples the two settings
    # can disagree on at these accuracies (each example's change is at most 1 in
    # size): min(pa + pb, 2 - pa - pb). Independent examples' pa(1-pb) + pb(1-pa)
    # was no bound: settings that get opposite examples right exceed it (a null
    # flagged 10-14% of the time, simulated)
    m = (np.minimum(acc_a + acc_b, 2 - acc_a - acc_b)
         if m2 is None else np.asarray(m2, dtype=float))
    v = (n * m + PRIOR_EXAMPLES * f) / (n + PRIOR_EXAMPLES) / n
  v = np.where(n > 0, v, np.nan)
  return v, n - 1 + PRIOR_EXAMPLES


def combined_se(seed_var, seeds, test_var, test_df):
  """(se, df) of a mean over K seeds on one shared test set: se^2 = seed_var / K +
  test_var (arrays broadcast; K >= 2). df: Welch-Satterthwaite's from K - 1 and
  test_df, with the seeds' term taken at its upper 95% confidence bound,
  seed_var (K - 1) / chi2(0.05, K - 1) / K.

  Satterthwaite's df from the estimate itself grows when the seeds' variance is small
  by chance, which made the flag reject 7% of true nulls at K = 3 (large run-to-run
  noise and a setting x example effect, simulated; 7.8% at worst with a known test-set
  variance). At the bound it stays at or below alpha (K = 2..20, any share of the two
  terms), and a test set whose term truly dominates still lends its df.
  """
  k = np.asarray(seeds, dtype=float)
  a = np.asarray(seed_var, dtype=float) / k
  b = np.asarray(test_var, dtype=float)
  var = a + b
  up = a * (k - 1) / st.chi2.ppf(0.05, np.maximum(k - 1, 1))
  with np.errstate(invalid="ignore", divide="ignore"):
    df = (up + b) ** 2 / (up ** 2 / (k - 1) + b ** 2 / np.asarray(test_df, dtype=float))
  return np.sqrt(var), df


def t_interval(samples, axis: int = 0, floor=None, test_var=None, test_df=None,
               confidence: float = CONFIDENCE):
  """Mean and t interval over `axis` (one value per seed): the seeds' variance floored
  at `floor`, plus `test_var` (with `test_df` degrees of freedom) when the seeds share
  a test set (`accuracy_test_variance`, `test_set_variance`).

  half-width = t(0.5 + confidence/2, df) * se, se^2 = max(s^2, floor) / K + test_var.
  Returns (mean, lo, hi); the interval is NaN with fewer than two samples.
  """
  x = np.asarray(samples, dtype=float)
  x = np.moveaxis(x, axis, 0)
  k = x.shape[0]
  mean = x.mean(axis=0)
  if k < 2:
    nan = np.full_like(mean, np.nan)
    return mean, nan, nan
  var = x.var(axis=0, ddof=1)
  if floor is not None:
    var = np.maximum(var, floor)
  if test_var is None:
    se, df = np.sqrt(var / k), k - 1
  else:
    se, df = combined_se(var, k, test_var, test_df)
  half = st.t.ppf(0.5 + confidence / 2, df) * se
  return mean, mean - half, mean + half


def seed_floor(correct_a, correct_b, n, seeds):
  """The floor on the variance of one seed's change: the within-seed binomial
  variance, each accuracy pooled over the K seeds and shrunk (module doc)."""
  return (binomial_variance(correct_a, n, seeds)
          + binomial_variance(correct_b, n, seeds))


def seed_paired_test(correct_a, correct_b, n, m2=None,
                     confidence: float = CONFIDENCE) -> dict:
  """The flag's test: per-class change from A to B, paired by seed (module doc).

  Args:
    correct_a, correct_b: correct counts [..., K, C] (seeds on axis -2, the same seed
      order for both); n: test examples per class, broadcast against [..., C];
    m2: the mean over each class's examples of the squared per-example change
      averaged over the seeds [..., C] (`example_m2`), or None (counts only).

  Returns a dict of float arrays [..., C]: `delta` (mean change, a fraction), `lo`,
  `hi` (the t interval; NaN for one seed), `p` (two-sided; NaN with fewer than
  MIN_SEEDS seeds or n == 0), `sd` (of the per-seed changes), `floor`, `var` (the
  seed variance used), `test_var`, `se`, `df`, `t`, and the int `seeds` K.
  """
  a = np.asarray(correct_a, dtype=float)
  b = np.asarray(correct_b, dtype=float)
  if a.shape != b.shape or a.ndim < 2:
    raise ValueError(f"need [..., K, C] counts of the same shape, got {a.shape}, "
                     f"{b.shape}")
  k = a.shape[-2]
  if k == 0:
    raise ValueError("no paired seeds to compare")
  n = np.broadcast_to(np.asarray(n, dtype=float), a.shape[:-2] + a.shape[-1:])
  safe = np.maximum(n, 1)
  d = (b - a) / safe[..., None, :]                            # [..., K, C]
  delta = d.mean(axis=-2)
  floor = seed_floor(a.sum(-2), b.sum(-2), n, k)
  sd = d.std(axis=-2, ddof=1) if k > 1 else np.full(delta.shape, np.nan)
  var = np.maximum(np.nan_to_num(sd ** 2, nan=0.0), floor)
  test_var, test_df = test_set_variance(n, a.mean(-2) / safe, b.mean(-2) / safe, m2)
  missing = n <= 0
  nan = np.full(delta.shape, np.nan)
  if k > 1:
    se, df = combined_se(var, k, test_var, test_df)
    tval = delta / se
    half = st.t.ppf(0.5 + confidence / 2, df) * se
    lo, hi = np.clip(delta - half, -1, 1), np.clip(delta + half, -1, 1)
  else:
    se = df = tval = lo = hi = nan
  p = 2 * st.t.sf(np.abs(tval), df) if k >= MIN_SEEDS else nan
  out = {"delta": delta, "lo": lo, "hi": hi, "p": p, "sd": sd, "floor": floor,
         "var": var, "test_var": test_var, "se": se, "df": df, "t": tval}
  out = {key: np.where(missing, np.nan, v) for key, v in out.items()}
  out["seeds"] = k
  return out


def test_m2(change):
  """The m2 of `seed_paired_test` from per-example changes `change` [..., K, n] (seed,
  example; b - a in {-1, 0, 1}): the mean over examples of the squared per-example
  change averaged over the seeds, less the run-to-run noise that average still
  carries, MS_res / K (the residual mean square of the seed x example table, which
  the seeds' term already counts), at least 0. The residual is left in with one
  example or one seed."""
  d = np.asarray(change, dtype=float)
  k, n = d.shape[-2], d.shape[-1]
  per_example = d.mean(-2)                                   # [..., n]
  m2 = (per_example ** 2).mean(-1)
  if k < 2 or n < 2:
    return m2
  per_seed = d.mean(-1)                                      # [..., K]
  grand = per_example.mean(-1)
  ss_res = ((d ** 2).sum((-1, -2)) - k * (per_example ** 2).sum(-1)
            - n * (per_seed ** 2).sum(-1) + k * n * grand ** 2)
  ms_res = np.maximum(ss_res, 0) / ((k - 1) * (n - 1))
  return np.maximum(m2 - ms_res / k, 0)


def example_m2(right_a, right_b, labels, classes: int):
  """`test_m2` per class from stored predictions: right_a, right_b [K, N] booleans
  (seed-paired), labels [N] -> [C] (NaN for a class without examples)."""
  change = np.asarray(right_b, float) - np.asarray(right_a, float)       # [K, N]
  labels = np.asarray(labels)
  out = np.full(classes, np.nan)
  for c in np.unique(labels):
    if 0 <= c < classes:
      out[c] = test_m2(change[:, labels == c])
  return out


def mcnemar_exact(lost, gained):
  """Exact two-sided McNemar p-value from the discordant pairs (arrays broadcast).

  lost: pairs A got right and B wrong; gained: the reverse. Under "these two runs are
  exchangeable on this test set" lost ~ Binomial(lost + gained, 1/2); the two-sided p
  of `scipy.stats.binomtest(lost, lost + gained, 0.5)` is, for p = 1/2 (a symmetric
  distribution), min(1, 2 P(X <= min(lost, gained))): written so for arrays (tests
  check it against binomtest). 1 where there is no discordant pair; NaN where NaN.
  """
  lost = np.asarray(lost, dtype=float)
  gained = np.asarray(gained, dtype=float)
  total = lost + gained
  with np.errstate(invalid="ignore"):
    p = np.minimum(1.0, 2 * st.binom.cdf(np.minimum(lost, gained), total, 0.5))
  return np.where(total == 0, 1.0, p)


def newcombe_paired(both, only_b, only_a, neither, confidence: float = CONFIDENCE):
  """Newcombe's square-and-add interval for pb - pa from paired binary outcomes.

  Newcombe (1998, Stat Med 17:2635), method 10, as in Fagerland, Lydersen & Laake's
  "Statistical analysis of contingency tables" (ch. 8): the Wilson intervals of pa and
  pb combined with the correlation term phi = (AD - BC - N/2) / sqrt(margins) when
  AD - BC > N/2, 0 when 0 <= AD - BC <= N/2, (AD - BC) / sqrt(margins) when negative,
  and 0 when a margin is empty. With only_b = only_a = 0 (identical runs) the
  interval still has positive width. Arrays broadcast; returns (lo, hi), NaN where
  the total is 0. `only_b`: examples B got right and A wrong.
  """
  n11, n12, n21, n22 = (np.asarray(x, dtype=float)
                        for x in (both, only_b, only_a, neither))
  total = n11 + n12 + n21 + n22
  kb, ka = n11 + n12, n11 + n21                 # B right, A right
  with np.errstate(invalid="ignore", divide="ignore"):
    pb, pa = kb / total, ka / total
    lb, ub = wilson_interval(kb, total, confidence)
    la, ua = wilson_interval(ka, total, confidence)
    margins = kb * (total - kb) * ka * (total - ka)
    cross = n11 * n22 - n12 * n21
    phi = np.where(cross > total / 2, cross - total / 2, np.where(cross >= 0, 0.0, cross))
    phi = np.where(margins > 0, phi / np.sqrt(np.where(margins > 0, margins, 1)), 0.0)
    delta = pb - pa
    lo = delta - np.sqrt(np.maximum(
        (pb - lb) ** 2 + (ua - pa) ** 2 - 2 * phi * (pb - lb) * (ua - pa), 0))
    hi = delta + np.sqrt(np.maximum(
        (ub - pb) ** 2 + (pa - la) ** 2 - 2 * phi * (ub - pb) * (pa - la), 0))
  return np.where(total > 0, np.clip(lo, -1, 1), np.nan), \
      np.where(total > 0, np.clip(hi, -1, 1), np.nan)


def newcombe_unpaired(kb, ka, n, confidence: float = CONFIDENCE):
  """Newcombe's hybrid score interval for pb - pa from counts alone (independent
  samples: his 1998 Stat Med 17:873 method 10, the phi = 0 case of the paired one).
  Used for one seed without stored predictions; with positively correlated errors on
  the shared test examples it is conservative. Returns (lo, hi)."""
  kb, ka, n = (np.asarray(x, dtype=float) for x in (kb, ka, n))
  with np.errstate(invalid="ignore", divide="ignore"):
    pb, pa = kb / n, ka / n
    lb, ub = wilson_interval(kb, n, confidence)
    la, ua = wilson_interval(ka, n, confidence)
    lo = pb - pa - np.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    hi = pb - pa + np.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
  return np.where(n > 0, np.clip(lo, -1, 1), np.nan), \
      np.where(n > 0, np.clip(hi, -1, 1), np.nan)


def _adjust(pvalues, step):
  """Applies `step(sorted p [..., m], m) -> adjusted` along the last axis; NaN entries
  are left out of each row's family and stay NaN."""
  p = np.asarray(pvalues, dtype=float)
  if p.ndim == 0:
    return _adjust(p[None], step)[0]
  if p.ndim > 1:
    flat = p.reshape(-1, p.shape[-1])
    if not np.isnan(flat).any():  # the simulations' case: every row at once
      order = np.argsort(flat, axis=-1, kind="stable")
      adjusted = step(np.take_along_axis(flat, order, -1), flat.shape[-1])
      out = np.empty_like(flat)
      np.put_along_axis(out, order, adjusted, -1)
      return out.reshape(p.shape)
    return np.stack([_adjust(row, step) for row in flat]).reshape(p.shape)
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
  NaN entries are left out of the family and stay NaN. A 2-D input is one family per
  row.
  """
  return _adjust(pvalues, lambda v, m: np.maximum.accumulate(
      np.minimum(1.0, (m - np.arange(m)) * v), axis=-1))


def benjamini_hochberg(pvalues):
  """Benjamini-Hochberg adjusted p-values (false discovery rate), input order.

  Sorted ascending: adj_(i) = min_{j >= i} min(1, m / j * p_(j)). NaN stays NaN.
  (scipy.stats.false_discovery_control computes the same for 1-D input without NaN.)
  """
  def step(v, m):
    raw = np.minimum(1.0, v * m / np.arange(1, m + 1))
    return np.flip(np.minimum.accumulate(np.flip(raw, -1), axis=-1), -1)
  return _adjust(pvalues, step)


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg}


# ------------------------------------------------------------------------ power


def t_test_power(effect, se, df, alpha: float):
  """Power of the two-sided flag at level `alpha` (arrays broadcast): P(|T| > t_crit)
  with T noncentral t on `df` degrees of freedom, noncentrality effect / se."""
  df = np.asarray(df, dtype=float)
  crit = st.t.ppf(1 - alpha / 2, df)
  ncp = np.abs(np.asarray(effect, dtype=float)) / np.asarray(se, dtype=float)
  # the far tail P(T < -crit) is below alpha/2 and shrinks as ncp grows; scipy's nct.cdf
  # returns NaN there for large ncp (checked on scipy 1.17), where it is ~0
  return st.nct.sf(crit, df, ncp) + np.nan_to_num(st.nct.cdf(-crit, df, ncp), nan=0.0)


def se_at(acc_a, drop, n, seeds, seed_var=0.0, spread=None):
  """(se, df) of the flag when A has accuracy acc_a in every seed and B acc_a - drop,
  with between-seed variance `seed_var` of the per-seed change floored as the test
  floors it. The test-set term takes m2 = spread + drop^2, `spread` the variance of
  the per-example changes (observed: m2 - delta^2 of a sweep), or, without it, the
  test's upper bound (`test_set_variance`)."""
  acc_a = np.asarray(acc_a, dtype=float)
  acc_b = np.clip(acc_a - np.asarray(drop, dtype=float), 0, 1)
  kn = np.asarray(seeds) * np.asarray(n, dtype=float)
  floor = seed_floor(acc_a * kn, acc_b * kn, n, seeds)
  m2 = None if spread is None else np.asarray(spread, float) + (acc_a - acc_b) ** 2
  test_var, test_df = test_set_variance(n, acc_a, acc_b, m2)
  return combined_se(np.maximum(np.nan_to_num(seed_var), floor), seeds, test_var,
                     test_df)


def power_at(drop, acc_a, n, seeds, seed_var, alpha: float, spread=None):
  """Power of the flag to detect `drop` (arrays broadcast; `se_at`)."""
  se, df = se_at(acc_a, drop, n, seeds, seed_var, spread)
  return t_test_power(drop, se, df, alpha)


def detectable_drop(acc_a, n, seeds: int, seed_var, alpha: float, power: float = 0.8,
                    step: float = 0.001, spread=None):
  """Smallest drop (a fraction) the flag detects with `power` at level `alpha`.

  Per class (arrays broadcast): A's accuracy acc_a, n test examples, K = `seeds`, the
  between-seed variance of the per-seed change `seed_var` and the per-example spread
  `spread` (from the sweep; None: the test's upper bound), with the variance the test
  uses at each candidate drop (`se_at`). NaN where no drop down to
  0% reaches that power, or with fewer than MIN_SEEDS seeds. Found on a grid of `step`.
  """
  acc_a, n, seed_var = np.broadcast_arrays(*(np.asarray(x, dtype=float)
                                             for x in (acc_a, n, seed_var)))
  out = np.full(acc_a.shape, np.nan)
  if seeds < MIN_SEEDS:
    return out
  drops = np.arange(step, 1 + step / 2, step)                 # [D]
  a, nn, v = acc_a[..., None], n[..., None], seed_var[..., None]
  sp = None if spread is None else np.broadcast_to(spread, acc_a.shape)[..., None]

  def reaches(i):  # whether the drop drops[i] ([..., J] indices) has `power`
    return power_at(drops[i], a, nn, seeds, v, alpha, sp) >= power

  # Power grows with the drop (the variance grows slower than the drop squared), so
  # the first grid point that reaches it is found by bisection: the same point as
  # scanning the whole grid with ~100x fewer noncentral t evaluations (a scan of 1000
  # classes took seconds). It counts if it is a drop the class can have (<= its
  # accuracy).
  lo = np.full(acc_a.shape, -1)                       # never reaches (or -1)
  hi = np.full(acc_a.shape, len(drops) - 1)           # reaches, where any point does
  found = reaches(hi[..., None])[..., 0]
  while np.any(hi - lo > 1):
    mid = (lo + hi) // 2
    hit = reaches(mid[..., None])[..., 0]
    hi, lo = np.where(hit, mid, hi), np.where(hit, lo, mid)
  first = hi
  found &= (n > 0) & (drops[first] <= acc_a + 1e-12)
  return np.where(found, drops[first], np.nan)


def can_reach(acc_a, n, seeds: int, alpha: float):
  """Whether the flag could reach p < alpha at all: the largest possible drop (A's
  accuracy to 0% in every seed, no seed-to-seed spread) against its variance."""
  acc_a, n = np.broadcast_arrays(np.asarray(acc_a, float), np.asarray(n, float))
  if seeds < MIN_SEEDS:
    return np.zeros(acc_a.shape, bool)
  se, df = se_at(acc_a, acc_a, n, seeds)
  with np.errstate(invalid="ignore", divide="ignore"):
    p = 2 * st.t.sf(acc_a / se, df)
  return (n > 0) & (acc_a > 0) & (p < alpha)


def seeds_needed(drop, acc_a, n, seed_var, alpha: float, power: float = 0.8,
                 max_seeds: int = 200, spread=None):
  """Smallest K >= MIN_SEEDS at which the flag detects `drop` with `power` (arrays
  broadcast); 0 where even max_seeds is not enough (the test set alone may be too
  small: its variance does not shrink with K)."""
  drop, acc_a, n, seed_var = np.broadcast_arrays(
      *(np.asarray(x, dtype=float) for x in (drop, acc_a, n, seed_var)))
  ks = np.arange(MIN_SEEDS, max_seeds + 1)
  shape = drop.shape + (1,)
  sp = None if spread is None else np.broadcast_to(spread, drop.shape).reshape(shape)
  ok = power_at(drop.reshape(shape), acc_a.reshape(shape), n.reshape(shape), ks,
                seed_var.reshape(shape), alpha, sp) >= power
  return np.where(ok.any(-1), ks[np.argmax(ok, -1)], 0)


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
