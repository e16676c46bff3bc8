"""Statistics the chapters share: log-log slopes with intervals over seeds, and intervals for
medians (censored), means and success rates."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y on log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def slope_interval(lengths: np.ndarray, values: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Log-log slope of ``values`` (seeds, lengths) on ``lengths``: one least-squares slope per seed,
    their mean and a Student-t interval over seeds (and the pooled fit's slope and R²)."""
    log_x, log_y = np.log(lengths), np.log(values)
    per_seed = np.array([loglog_slope(lengths, row) for row in values])
    mean = float(per_seed.mean())
    if len(per_seed) > 1:
        half = float(stats.t.ppf(0.5 + level / 2, len(per_seed) - 1) * per_seed.std(ddof=1) / math.sqrt(len(per_seed)))
    else:
        half = math.nan
    pooled = stats.linregress(np.tile(log_x, len(log_y)), log_y.ravel())
    return {"slope": mean, "low": mean - half, "high": mean + half, "per_seed_min": float(per_seed.min()),
            "per_seed_max": float(per_seed.max()), "pooled_slope": float(pooled.slope),
            "pooled_r2": float(pooled.rvalue**2), "seeds": int(len(per_seed))}


def median_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Median and a distribution-free interval from order statistics (binomial); NaN values
    (censored runs) count as +∞, so a median beyond the horizon reads as ∞."""
    data = np.sort(np.where(np.isnan(values), np.inf, np.asarray(values, dtype=float)))
    n = data.size
    j = int(stats.binom.ppf((1 - level) / 2, n, 0.5))  # the j-th and (n − j + 1)-th order statistics
    return float(np.median(data)), float(data[max(j - 1, 0)]), float(data[min(n - j, n - 1)])


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval over seeds."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if data.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return mean, mean - half, mean + half


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float, float]:
    """Success rate and Wilson score interval."""
    if trials < 1:
        raise ValueError("trials must be ≥ 1")
    z = stats.norm.ppf(0.5 + level / 2)
    rate = successes / trials
    centre = (rate + z**2 / (2 * trials)) / (1 + z**2 / trials)
    half = z * math.sqrt(rate * (1 - rate) / trials + z**2 / (4 * trials**2)) / (1 + z**2 / trials)
    return rate, centre - half, centre + half
