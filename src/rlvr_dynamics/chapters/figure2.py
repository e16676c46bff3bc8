"""The chapter *Figure 2: GRPO on language models* (Section 5.2): its parameters and the analysis.

The runs are one :mod:`rlvr_dynamics.lm.experiment` (GRPO runs from one warmed-up checkpoint); this
module turns their records into the chapter's numbers: the cumulative gap of each reading, rank
correlations, a logistic fit of accuracy on the cumulative gap, the shape of the relation
(logistic / concave / linear within noise), and whether the cumulative gap is only a relabelled
step count (both of its factors near constant under Adam).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from rlvr_dynamics.config import parameter
from rlvr_dynamics.lm import experiment, grpo
from rlvr_dynamics.lm.experiment import run_label

READINGS = {"estimate": "(a) paper's estimate: Σ η_k ‖Δ̂‖_k",
            "measured": "(b) measured: Σ η_k [Δμ_k]₊"}
"""The two cumulative-gap readings of Figure 2 (``GRPORun.cumulative`` columns)."""


@dataclass(frozen=True)
class Figure2Config(experiment.LMExperimentConfig):
    """Parameters of the chapter *Figure 2: GRPO on language models* (Section 5.2): the experiment's
    and the gain its first run must reach."""

    min_gain: float = parameter("validation-accuracy gain the first run must reach (asserted at ci)", "float",
                                low=0.0, high=1.0)


PRESETS = {preset: dict(values, min_gain=0.10) for preset, values in experiment.PRESETS.items()}


# ----------------------------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------------------------


def figure2_table(runs: list[grpo.GRPORun]) -> pd.DataFrame:
    """Long table: run, step, normalized step, accuracy and each reading's cumulative gap."""
    frames = []
    for run in runs:
        frame = run.cumulative()
        frame.insert(0, "run", run_label(run))
        frame["normalized_step"] = frame["step"] / run.config.steps
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def logistic(x, intercept, slope):
    return special.expit(intercept + slope * x)


def logistic_fit(gap: np.ndarray, accuracy: np.ndarray) -> dict:
    """Least-squares fit of accuracy = σ(a + b·G) (Corollary 1's form: log-odds linear in the
    cumulative gap). Returns a, b, the RMSE and R² (in accuracy units)."""
    gap, accuracy = np.asarray(gap, float), np.asarray(accuracy, float)
    clipped = np.clip(accuracy, 1e-3, 1 - 1e-3)
    start = np.polyfit(gap, special.logit(clipped), 1)[::-1]  # OLS on the log-odds as the start
    (a, b), _ = optimize.curve_fit(logistic, gap, accuracy, p0=start, maxfev=20_000)
    residual = accuracy - logistic(gap, a, b)
    total = ((accuracy - accuracy.mean()) ** 2).sum()
    return {"intercept": float(a), "slope": float(b), "rmse": float(np.sqrt((residual ** 2).mean())),
            "r2": float(1 - (residual ** 2).sum() / total) if total > 0 else float("nan")}


def _unit_interval(x) -> np.ndarray:
    x = np.asarray(x, float)
    return (x - x.min()) / (np.ptp(x) or 1.0)


def curvature(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Quadratic coefficient c of y ≈ a + b·x + c·x² (x scaled to [0, 1]) and its 95% interval."""
    x, y = _unit_interval(x), np.asarray(y, float)
    design = np.stack([np.ones_like(x), x, x ** 2], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(y) - 3
    residual = y - design @ coef
    sigma2 = (residual ** 2).sum() / max(dof, 1)
    se = math.sqrt(sigma2 * np.linalg.inv(design.T @ design)[2, 2])
    half = stats.t.ppf(0.975, max(dof, 1)) * se
    return float(coef[2]), float(coef[2] - half), float(coef[2] + half)


def nonlinearity_pvalue(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """p-value of the F-test that adding x² and x³ to a line improves the (weighted least-squares)
    fit of y (x scaled to [0, 1])."""
    x, y = _unit_interval(x), np.asarray(y, float)
    root = np.sqrt(np.ones_like(y) if weights is None else np.asarray(weights, float))
    residual = {}
    for degree in (1, 3):
        design = np.vander(x, degree + 1) * root[:, None]
        coef, *_ = np.linalg.lstsq(design, y * root, rcond=None)
        residual[degree] = float(((y * root - design @ coef) ** 2).sum())
    dof = len(y) - 4
    if residual[1] <= 1e-20 * float(((y * root) ** 2).sum()):
        return 1.0  # a line fits to rounding: nothing left to explain
    if dof < 1 or residual[3] <= 0:
        return 0.0
    statistic = ((residual[1] - residual[3]) / 2) / (residual[3] / dof)
    return float(stats.f.sf(statistic, 2, dof))


def relation_shape(gap: np.ndarray, accuracy: np.ndarray, level: float = 0.05) -> dict:
    """Is accuracy vs cumulative gap logistic, concave, convex, or linear within noise?

    A logistic relation is one whose log-odds are linear in G. Two F-tests (x² and x³ terms over
    a line, at ``level``): on the log-odds (weighted by the delta method) and on the accuracy. Verdicts: log-odds non-linear →
    ``"concave"`` or ``"convex"`` by the sign of their quadratic term (accuracy saturates faster,
    or slower, than a logistic); log-odds linear but accuracy not → ``"logistic"``; neither →
    ``"linear within noise"`` (the range is too narrow to tell a logistic from a line).
    """
    accuracy = np.clip(np.asarray(accuracy, float), 1e-3, 1 - 1e-3)
    log_odds = special.logit(accuracy)
    c = curvature(gap, accuracy)
    d = curvature(gap, log_odds)
    # Var(logit p̂) ≈ Var(p̂)/(p(1 − p))²: weight the log-odds by (p(1 − p))², so equal accuracy noise counts equally.
    p_accuracy = nonlinearity_pvalue(gap, accuracy)
    p_log_odds = nonlinearity_pvalue(gap, log_odds, weights=(accuracy * (1 - accuracy)) ** 2)
    if p_log_odds < level:
        verdict = "concave" if d[0] < 0 else "convex"
    elif p_accuracy < level:
        verdict = "logistic"
    else:
        verdict = "linear within noise"
    return {"accuracy_curvature": c, "log_odds_curvature": d, "accuracy_nonlinearity_p": p_accuracy,
            "log_odds_nonlinearity_p": p_log_odds, "verdict": verdict}


def step_relabelling(run: grpo.GRPORun) -> dict:
    """Is the cumulative gap only a relabelled step count? Both factors of each increment
    η_k·Δ_k near constant ⇒ G_k ∝ k. Reports the coefficients of variation of η_k = ‖u_k‖, of
    the estimated gap ‖Δ̂‖_k and of the measured alignment Δμ_k, and the R² of G_k on k for
    each reading."""
    steps = run.steps
    cumulative = run.cumulative().dropna()

    def cv(series):
        series = series.dropna()
        return float(series.std() / series.mean()) if len(series) > 1 and series.mean() != 0 else float("nan")

    result = {"step_length_cv": cv(steps["step_length"]), "gap_estimate_cv": cv(steps["gap_estimate"]),
              "alignment_cv": cv(steps["alignment"]), "gap_norm_cv": cv(steps["gap_norm"])}
    for reading in READINGS:
        fit = stats.linregress(cumulative["step"], cumulative[reading])
        result[f"{reading}_vs_step_r2"] = float(fit.rvalue ** 2)
    return result


def pooled_fit_comparison(table: pd.DataFrame) -> dict:
    """One logistic fit over all runs pooled, on each reading and on the normalized step: if a
    reading is more than a relabelled step count, it should align the runs better (lower RMSE)."""
    out = {}
    for column in (*READINGS, "normalized_step"):
        data = table.dropna(subset=[column])
        x = data[column].to_numpy() / max(float(data[column].max()), 1e-300)
        out[column] = logistic_fit(x, data["accuracy"].to_numpy())["rmse"]
    return out


def accuracy_gain(run: grpo.GRPORun) -> float:
    """Final minus initial sampled validation accuracy."""
    return float(run.evals["accuracy"].iloc[-1] - run.evals["accuracy"].iloc[0])
