"""Statistics over seeds: pure functions on 1-D arrays (one value per seed), no I/O.

Every number a table or a claim reports comes from here, so the conventions live in one place:
- spread is the *sample* standard deviation (ddof = 1);
- the 95 % confidence interval of a mean is the Student t-interval  x̄ ± t_{0.975, n−1} · s / √n;
  with n = 1 it is undefined (NaN), never silently zero;
- two methods are compared *paired by seed* (same seed = same data order / head init): the paired t-test on
  d_s = a_s − b_s, effect sizes mean(d) and Cohen's d_z = mean(d) / sd(d);
- equivalence (TOST) within ±margin holds when the (1 − 2α) t-interval of mean(d) lies inside (−margin, margin).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

ALPHA = 0.05


def _arr(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError(f"non-finite value among {x.tolist()}")
    return x


def mean(values: Sequence[float]) -> float:
    x = _arr(values)
    return float(x.mean()) if x.size else math.nan


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof = 1); NaN for fewer than 2 values."""
    x = _arr(values)
    return float(x.std(ddof=1)) if x.size >= 2 else math.nan


def _student_t():
    """(quantile, survival) of Student's t from scipy.special, imported on first use: the functions scipy.stats.t
    and ttest_rel call (bit-identical, tested), without importing scipy.stats, whose import dominated the start of
    every table and plot command. scipy has no paired TOST and no Holm step-down, so those stay here."""
    from scipy.special import stdtr, stdtrit
    return (lambda q, df: stdtrit(df, q)), (lambda x, df: stdtr(df, -x))


def t_critical(n: int, level: float = 0.95) -> float:
    """Two-sided critical value t_{(1+level)/2, n−1} (e.g. 4.303 for n = 3); NaN for n < 2."""
    return float(_student_t()[0]((1.0 + level) / 2.0, n - 1)) if n >= 2 else math.nan


def ci_half_width(values: Sequence[float], level: float = 0.95) -> float:
    """t_{(1+level)/2, n−1} · s / √n; NaN for n < 2 (a single seed has no spread estimate)."""
    x = _arr(values)
    n = x.size
    return t_critical(n, level) * std(x) / math.sqrt(n) if n >= 2 else math.nan


@dataclass(frozen=True)
class Summary:
    """Mean ± t-interval of one quantity over seeds."""

    n: int
    mean: float
    std: float
    half_width: float   # NaN when n < 2
    level: float = 0.95

    @property
    def lo(self) -> float:
        return self.mean - self.half_width

    @property
    def hi(self) -> float:
        return self.mean + self.half_width

    @property
    def ci_defined(self) -> bool:
        return self.n >= 2 and math.isfinite(self.half_width)

    def to_dict(self) -> dict:
        return {**asdict(self), "lo": self.lo, "hi": self.hi}


def summarize(values: Sequence[float], level: float = 0.95) -> Summary:
    x = _arr(values)
    return Summary(int(x.size), mean(x), std(x), ci_half_width(x, level), level)


@dataclass(frozen=True)
class Paired:
    """Paired comparison of a vs b over the same seeds; d = a − b."""

    n: int
    mean_diff: float
    sd_diff: float
    d_z: float          # Cohen's d_z = mean(d) / sd(d)
    t: float
    p: float            # two-sided
    ci95: tuple[float, float]
    ci90: tuple[float, float]   # the TOST interval at α = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


def _interval(m: float, sd: float, n: int, level: float) -> tuple[float, float]:
    if n < 2:
        return (math.nan, math.nan)
    h = t_critical(n, level) * sd / math.sqrt(n)
    return (m - h, m + h)


def paired_test(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Paired t-test of a against b (aligned by seed). n < 2: t, p, d_z are NaN.

    Degenerate spread (all d_s equal, sd = 0) is the limit of the t-test: identical values give t = 0, p = 1;
    a constant non-zero difference gives t = ±inf, p = 0, d_z = ±inf (the difference has no seed noise).
    """
    x, y = _arr(a), _arr(b)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    d = x - y
    n = int(d.size)
    m = float(d.mean()) if n else math.nan
    if n < 2:
        return Paired(n, m, math.nan, math.nan, math.nan, math.nan, (math.nan, math.nan), (math.nan, math.nan))
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        if m == 0.0:
            t, p, dz = 0.0, 1.0, 0.0
        else:
            t, p, dz = math.copysign(math.inf, m), 0.0, math.copysign(math.inf, m)
    else:
        t = m / (sd / math.sqrt(n))
        p = float(2.0 * _student_t()[1](abs(t), n - 1))
        dz = m / sd
    return Paired(n, m, sd, dz, t, p, _interval(m, sd, n, 0.95), _interval(m, sd, n, 1.0 - 2 * ALPHA))


def equivalent(test: Paired, margin: float) -> bool:
    """TOST at α: the (1 − 2α) interval of mean(d) lies strictly inside (−margin, margin)."""
    lo, hi = test.ci90
    return test.n >= 2 and math.isfinite(lo) and -margin < lo and hi < margin


def differs_beyond(test: Paired, margin: float) -> bool:
    """The 95 % interval of mean(d) lies entirely outside [−margin, margin]: significantly different by > margin."""
    lo, hi = test.ci95
    return test.n >= 2 and math.isfinite(lo) and (lo > margin or hi < -margin)


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down correction: which of m hypotheses are rejected with the family-wise error held at α.

    Sorted ascending, p_(k) is compared with α / (m − k + 1) (k = 1..m); every hypothesis before the first
    p_(k) that misses its bound is rejected, the rest are not. A table that counts "pairs that differ" tests
    many pairs at once; uncorrected, some of those would differ by chance alone. NaN p-values are never rejected.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    rejected = [False] * p.size
    m = p.size
    for rank, i in enumerate(np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")):
        if not p[i] <= alpha / (m - rank):
            break
        rejected[int(i)] = True
    return rejected
