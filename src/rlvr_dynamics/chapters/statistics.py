"""Statistics the chapters share: log-log slopes with intervals over seeds, intervals for medians
(censored), means and success rates, and what the committed robustness records (claims at seeds 0–9) say."""

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


def load_seed_record(path) -> dict | None:
    """A committed robustness record (``data/robustness/NAME.json``: a chapter's claims at seeds 0–9), or None where
    there is none yet."""
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def seed_range(seeds: list[int]) -> str:
    """Seeds as text: "0–9" for a run of consecutive seeds, else a comma list."""
    seeds = sorted(seeds)
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def seed_glue(record: dict | None, name: str, claim: str, offset: float = 0.0) -> dict[str, str]:
    """What ``record`` (:func:`load_seed_record`) says of ``claim``, as two texts for the prose:
    ``NAME_held`` ("held at 8 of its 10 seeds (0–9)") and ``NAME_worst``, the worst margin over the
    seeds plus ``offset`` (the claim's threshold, so that it reads as the smallest value), to three
    decimals. Where the record (or the claim in it, or a seed's margin) is missing, the texts say so."""
    entry = next((c for c in (record or {}).get("claims", []) if c["claim"] == claim), None)
    if entry is None:
        return {f"{name}_held": "is not recorded yet", f"{name}_worst": "not recorded yet"}
    held = f"held at {entry['held']} of its {entry['of']} seeds ({seed_range(record['seeds'])})"
    worst = entry.get("worst_margin")
    return {f"{name}_held": held,
            f"{name}_worst": "not known (a seed's run stopped)" if worst is None else f"{worst + offset:.3f}"}
