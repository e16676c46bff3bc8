"""The chapter *GRPO on language models* (the paper's Figure 2) (Section 5.2): its parameters and the analysis.

The runs are one :mod:`rlvr_dynamics.lm.experiment` (GRPO runs from one warmed-up checkpoint); this
module holds the chapter's checks and turns the runs' records into its numbers:

* the checks of the task (disjoint splits, reference rewards, the answer extractor) and of the
  warm-up;
* identity (LM1) — GRPO's per-prompt direction is c_q (ḡ⁺ − ḡ⁻) — on groups sampled
  from the warmed-up model;
* the per-run summary (alignments, the paper's estimate (a) against the measured gap), the margins
  of the findings stated about it and the numbers the prose quotes from it;
* Figure 2's table and panels: the cumulative gap of each reading against validation accuracy,
  with logistic fits;
* the shape of the relation (rank correlation, logistic fit, curvature tests: logistic / concave /
  linear within noise), and whether the cumulative gap is only a relabelled step count (both of
  its factors near constant under Adam);
* what the committed robustness record (``data/robustness/figure2.json``: this chapter at seeds
  0–9) says of the claims whose size depends on the seed, for the prose.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import optimize, special, stats

from rlvr_dynamics.config import parameter
from rlvr_dynamics.files import project_root
from rlvr_dynamics.lm import experiment, grpo, scoring
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.experiment import run_label

READINGS = {"estimate": r"(a) paper's estimate: $\sum_k \eta_k \|\hat\Delta_k\|$",
            "measured": r"(b) measured: $\sum_k \eta_k [\Delta\mu_k]_+$"}
"""The two cumulative-gap readings of Figure 2 (``GRPORun.cumulative`` columns)."""

EXTRACTOR_CASES = {"#### 1,234": 1234, "so 12+7=19\n#### 19": 19, "The answer is $42.": 42, "-7": -7,
                   "3.50 dollars": 3.5, "no number": None}
"""Completions and the number the answer extractor must read from each (None: no number)."""

DIRECTION_TOLERANCE = 1e-5
"""Largest relative error of identity (LM1) on the float32 model."""

MIN_GAIN = 0.10
"""The accuracy gain the first run is compared with (a recorded claim, never enforced: the gain's size
depends on the seed)."""

RECORDED_SPEARMAN = 0.5
"""The rank correlation of accuracy with the cumulative gap that is recorded (never enforced); the
finding enforces a positive one."""

POOLED_IMPROVEMENT = 0.10
"""How much lower (as a fraction of the normalized step's) a cumulative gap's pooled RMSE must be to
count as a better fit than the step count."""

INTERVAL_LEVEL = 0.95
"""Level of the curvature intervals."""

SHAPE_TEST_LEVEL = 0.05
"""Level of the F-tests of :func:`relation_shape`."""

SETUP_NUMBERS = {"0.1": MIN_GAIN, "0.5": RECORDED_SPEARMAN, "10%": POOLED_IMPROVEMENT, "95%": INTERVAL_LEVEL,
                 "5%": SHAPE_TEST_LEVEL}
"""The decimals the prose types: constants of the set-up (every measured number is glued)."""

ROBUSTNESS_RECORD = Path("data") / "robustness" / "figure2.json"
"""The committed record of this chapter's claims at seeds 0–9 (``rlvr-book robustness figure2``),
relative to the repository root."""


@dataclass(frozen=True)
class Figure2Config(experiment.LMExperimentConfig):
    """Parameters of the chapter *GRPO on language models* (Section 5.2): the experiment's
    and the gain its first run must reach."""

    min_gain: float = parameter("validation-accuracy gain the first run is compared with (recorded, never "
                                "enforced)", "float", low=0.0, high=1.0)


PRESETS = {preset: dict(values, min_gain=MIN_GAIN) for preset, values in experiment.PRESETS.items()}


def format_table(frame: pd.DataFrame, width: int = 200) -> str:
    """``frame`` as text, floats with three decimals, without the index."""
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", width):
        return frame.to_string(index=False)


# ----------------------------------------------------------------------------------------------
# The task, the reward and the warm-up
# ----------------------------------------------------------------------------------------------


def describe_problems(train: list[lm_task.Problem], validation: list[lm_task.Problem],
                      examples: list[lm_task.Problem]) -> str:
    """The split sizes, then the prompt and reference of two training problems and of ``examples``."""
    lines = [f"{len(train)} training and {len(validation)} validation problems; examples:"]
    lines += [f"  prompt {problem.prompt!r} → reference {problem.solution!r}" for problem in train[:2] + examples]
    return "\n".join(lines)


def overlap_margins(train: list[lm_task.Problem], validation: list[lm_task.Problem]) -> list[int]:
    """One margin: minus the number of questions the two splits share (0 when disjoint)."""
    overlap = {p.question for p in train} & {p.question for p in validation}
    return [-len(overlap)]


def reference_reward_margins(problems: list[lm_task.Problem]) -> np.ndarray:
    """Per problem, the reward of its reference solution minus 1 (0 when the verifier accepts it)."""
    rewards = lm_task.correctness_reward([p.solution for p in problems], [str(p.answer) for p in problems])
    return np.asarray(rewards) - 1


def extract_answers(cases=EXTRACTOR_CASES) -> dict:
    """What :func:`rlvr_dynamics.lm.task.extract_answer` reads from each completion of ``cases``."""
    return {text: lm_task.extract_answer(text) for text in cases}


def describe_extractor(extracted: dict) -> str:
    """The extracted numbers as floats (None where there is none)."""
    return f"extractor: {({text: (None if v is None else float(v)) for text, v in extracted.items()})}"


def extractor_margins(extracted: dict, cases=EXTRACTOR_CASES) -> list[int]:
    """Per case, 0 when the extractor read the expected number (or rightly none), else −1."""
    return [0 if (extracted[t] is None) == (v is None) and (v is None or float(extracted[t]) == v) else -1
            for t, v in cases.items()]


def describe_warmup(parameter_count: int, warmup, target: float) -> str:
    """The model size and, when there was a warm-up (a ``WarmupResult``), where it stopped."""
    lines = [f"model: {parameter_count:,} parameters"]
    if warmup is not None:
        lines += [f"warm-up: {warmup.steps} steps, sampled validation accuracy {warmup.final_accuracy:.3f} "
                  f"(target {target}); reached: {warmup.reached_target}",
                  f"accuracy checks (step, accuracy): {[(s, round(a, 3)) for s, a in warmup.history[-4:]]}"]
    return "\n".join(lines)


def warmup_headline(warmup) -> dict:
    """The warm-up's steps and final sampled validation accuracy."""
    return dict(warmup_steps=warmup.steps, warmup_accuracy=warmup.final_accuracy)


def warmup_margins(warmup, target: float) -> list[float]:
    """One margin: the warm-up's final sampled accuracy minus its target."""
    return [warmup.final_accuracy - target]


# ----------------------------------------------------------------------------------------------
# Identity (LM1) on sampled groups
# ----------------------------------------------------------------------------------------------


def direction_errors(model, tokenizer, problems: list[lm_task.Problem], config: experiment.LMExperimentConfig,
                     generator: torch.Generator, device, groups: int = 4) -> list[float]:
    """Identity (LM1) on the first ``groups`` sampled groups with both outcomes.

    For each problem in turn, samples a group of ``config.num_generations`` completions from
    ``generator``; a group with both outcomes is compared under every reward scaling of
    ``grpo.SCALE_REWARDS``. Returns ‖left − right‖/‖right‖ per (group, scaling), group-major,
    with left = (1/G) Σ_i A_i ∇log π(o_i | q) and right = c_q (ḡ⁺ − ḡ⁻), both by autograd.
    """
    G = config.num_generations
    errors, mixed = [], 0
    for problem in problems:
        if mixed == groups:
            break
        encoded = tokenizer([problem.prompt] * G, return_tensors="pt", add_special_tokens=False).to(device)
        ids, mask = scoring.sample_completions(model, encoded["input_ids"], encoded["attention_mask"],
                                               config.max_completion_length, tokenizer.eos_token_id,
                                               tokenizer.pad_token_id, generator, config.temperature)  # (G, L)
        texts = tokenizer.batch_decode(ids * mask + tokenizer.pad_token_id * (1 - mask), skip_special_tokens=True)
        rewards = torch.tensor(lm_task.correctness_reward(texts, [str(problem.answer)] * G))  # (G,)
        if 0 < rewards.sum() < G:  # a group with both outcomes
            mixed += 1
            for scale in grpo.SCALE_REWARDS:
                left, right = grpo.group_identity_sides(model, encoded["input_ids"], encoded["attention_mask"], ids,
                                                        mask, rewards, scale)  # (D,), (D,)
                errors.append(float((left - right).norm() / right.norm()))
    return errors


def describe_direction_errors(errors: list[float]) -> str:
    """How many groups and scalings were compared, and the largest relative error."""
    groups = len(errors) // len(grpo.SCALE_REWARDS)
    return (f"(LM1) on {groups} mixed groups × {len(grpo.SCALE_REWARDS)} reward scalings: "
            f"largest relative error {max(errors):.1e}")


def direction_margins(errors: list[float]) -> np.ndarray:
    """Per comparison, the tolerance minus the relative error."""
    return DIRECTION_TOLERANCE - np.asarray(errors)


# ----------------------------------------------------------------------------------------------
# The runs
# ----------------------------------------------------------------------------------------------


def accuracy_gain(run: grpo.GRPORun) -> float:
    """Final minus initial sampled validation accuracy."""
    return float(run.evals["accuracy"].iloc[-1] - run.evals["accuracy"].iloc[0])


def run_summary(runs: list[grpo.GRPORun]) -> pd.DataFrame:
    """One row per run: accuracy at the start and the end, its gain, the fraction of prompts whose
    group has both outcomes, the mean cosines of the loss gradient −∇L and of the update u with the
    measured gap Δ, the fraction of steps with u·Δ > 0, the median ratio of estimate (a) to ‖Δ‖
    (eq. f2-estimate) and the mean ratio of a single prompt's gap to the batch-average gap."""
    return pd.DataFrame([{
        "run": run_label(run),
        "accuracy at 0": run.evals["accuracy"].iloc[0],
        "final accuracy": run.evals["accuracy"].iloc[-1],
        "gain": accuracy_gain(run),
        "mixed prompts": run.steps["mixed_prompts"].mean() / run.config.prompts_per_step,
        "cos(−∇L, Δ)": run.steps["gradient_gap_cosine"].mean(),
        "cos(u, Δ)": run.steps["alignment_cosine"].mean(),
        "u·Δ > 0": (run.steps["alignment"] > 0).mean(),
        "(a)/‖Δ‖": (run.steps["gap_estimate"] / run.steps["gap_norm"]).median(),
        "mean ‖Δ_q‖/‖Δ‖": (run.steps["prompt_gap_norm_mean"] / run.steps["gap_norm"]).mean(),
    } for run in runs])


def gain_margins(run: grpo.GRPORun, min_gain: float) -> list[float]:
    """One margin: the run's accuracy gain minus ``min_gain``."""
    return [accuracy_gain(run) - min_gain]


def accuracy_resolution(run: grpo.GRPORun) -> float:
    """The smallest change the sampled validation accuracy can show, 1/(eval_problems · eval_samples):
    the accuracy is the mean of that many 0/1 rewards (or of fewer, when the validation split is
    shorter: a coarser grid)."""
    return 1.0 / (run.config.eval_problems * run.config.eval_samples)


def rise_margins(runs: list[grpo.GRPORun]) -> list[float]:
    """Per run, its accuracy gain minus half the accuracy's resolution: both accuracies lie on the
    grid of :func:`accuracy_resolution`, so the margin is ≥ 0 exactly when the final accuracy is above
    the initial one (0 where they are equal, rounding included, is −half a step)."""
    return [accuracy_gain(run) - accuracy_resolution(run) / 2 for run in runs]


def run_margins(run: grpo.GRPORun) -> dict[str, list[float]]:
    """The margins of the findings about one run, each ≥ 0 when it holds:

    * ``gradient_along_gap``: mean cos(−∇L, Δ) ≥ 0.9;
    * ``update_off_gap``: mean cos(u, Δ) ≤ 0.3 (Adam's update far from the gap);
    * ``estimate_matches``: the median of (a)/‖Δ‖ within 15% of 1;
    * ``prompt_gap_longer``: a single prompt's gap ≥ 2× the batch-average gap, on average;
    * ``positive_alignment``: u·Δ > 0 at ≥ 95% of steps;
    * ``measured_smaller``: the final cumulative gap (b) ≥ 3× smaller than (a) (eq. f2-cumulative).
    """
    final = run.cumulative().iloc[-1]
    return {
        "gradient_along_gap": [run.steps["gradient_gap_cosine"].mean() - 0.9],
        "update_off_gap": [0.3 - run.steps["alignment_cosine"].mean()],
        "estimate_matches": [0.15 - abs((run.steps["gap_estimate"] / run.steps["gap_norm"]).median() - 1)],
        "prompt_gap_longer": [(run.steps["prompt_gap_norm_mean"] / run.steps["gap_norm"]).mean() - 2],
        "positive_alignment": [(run.steps["alignment"] > 0).mean() - 0.95],
        "measured_smaller": [final["estimate"] / final["measured"] - 3],
    }


def table_glue(runs: list[grpo.GRPORun], summary: pd.DataFrame) -> dict[str, float]:
    """The numbers the prose quotes from the runs' table (``summary`` is :func:`run_summary`), each the
    smallest and/or largest over the runs: the median ratio (a)/‖Δ‖ (``ratio_low``/``_high``), the
    mean cosine of −∇L with Δ (``gradient_cosine_min``), the ratio of a prompt's gap to the batch gap
    (``prompt_gap_low``/``_high``), the mean cosine of the update with Δ (``update_cosine_low``/
    ``_high``), the fraction of steps with u·Δ > 0 (``positive_min``), the final ratio of cumulative
    gap (a) to (b) (``smaller_min``) and the accuracy gain (``gain_low``/``_high``)."""
    final = [run.cumulative().iloc[-1] for run in runs]
    columns = {"ratio": "(a)/‖Δ‖", "prompt_gap": "mean ‖Δ_q‖/‖Δ‖", "update_cosine": "cos(u, Δ)", "gain": "gain"}
    values = {}
    for name, column in columns.items():
        values[f"{name}_low"], values[f"{name}_high"] = float(summary[column].min()), float(summary[column].max())
    return dict(values, gradient_cosine_min=float(summary["cos(−∇L, Δ)"].min()),
                positive_min=float(summary["u·Δ > 0"].min()),
                smaller_min=float(min(row["estimate"] / row["measured"] for row in final)))


# ----------------------------------------------------------------------------------------------
# Figure 2
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
    """σ(a + b·x), elementwise."""
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


LOSS_NAMES = {"grpo": "GRPO loss", "dr_grpo": "Dr. GRPO loss", "dapo": "DAPO loss", "bnpo": "BNPO loss"}
"""How the figures name TRL's token aggregations (``grpo.LOSS_TYPES``)."""
SCALE_NAMES = {"group": "advantages ÷ group std", "batch": "advantages ÷ batch std",
               "none": "advantages not std-scaled"}
"""How the figures name TRL's advantage scalings (``grpo.SCALE_REWARDS``: ``"none"`` = no division)."""
FILTER_NAMES = {"all": "", "negative": ", negative advantages only", "positive": ", positive advantages only"}
GAP_NAMES = {"gap_estimate": "(a) paper's estimate ‖Δ̂‖", "gap_norm": "(b) measured ‖Δ‖"}
COSINE_NAMES = {"gradient_gap_cosine": "cos(−∇L, Δ)", "alignment_cosine": "cos(u, Δ)"}
"""Legend names of the per-step records of :func:`diagnostics_frames`."""


def figure_label(run: grpo.GRPORun) -> str:
    """A run's name in the figures, every setting spelled out: loss, advantage scaling, learning rate
    (:func:`~rlvr_dynamics.lm.experiment.run_label` is the short one the claims and tables use)."""
    c = run.config
    return (f"{LOSS_NAMES[c.loss_type]}, {SCALE_NAMES[c.scale_rewards]}, lr {c.learning_rate:g}"
            f"{FILTER_NAMES[c.advantage_filter]}")


def draw_relation_panel(ax, table: pd.DataFrame, reading: str, title: str, labels: dict[str, str] | None = None):
    """One panel of Figure 2 on the matplotlib Axes ``ax``: accuracy against the cumulative gap
    ``reading`` of :func:`figure2_table`, one marker per run, coloured by the normalized step, with
    each run's logistic fit dashed; ``labels`` maps a run's ``run`` to its legend entry (default: itself).
    Returns the last scatter (for the colour bar)."""
    labels = labels or {}
    markers = dict(zip(table["run"].unique(), ["o", "s", "^", "D", "v"], strict=False))  # up to five runs
    for label, data in table.groupby("run", sort=False):
        points = ax.scatter(data[reading], data["accuracy"], c=data["normalized_step"], cmap="viridis", vmin=0,
                            vmax=1, marker=markers[label], s=38, edgecolor="k", linewidth=0.3,
                            label=labels.get(label, label))
        fit = logistic_fit(data[reading], data["accuracy"])
        grid = np.linspace(0, data[reading].max(), 100)
        ax.plot(grid, logistic(grid, fit["intercept"], fit["slope"]), color="0.4", lw=1, ls="--")
    ax.set(title=title, xlabel="cumulative gradient gap", ylabel="sampled validation accuracy")
    ax.legend(loc="lower right")
    return points


# ----------------------------------------------------------------------------------------------
# The shape of the relation, and the relabelling test
# ----------------------------------------------------------------------------------------------


def _unit_interval(x) -> np.ndarray:
    x = np.asarray(x, float)
    return (x - x.min()) / (np.ptp(x) or 1.0)


def curvature(x: np.ndarray, y: np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, float, float]:
    """Quadratic coefficient c of y ≈ a + b·x + c·x² (x scaled to [0, 1]) and its ``level`` (95%) interval."""
    x, y = _unit_interval(x), np.asarray(y, float)
    design = np.stack([np.ones_like(x), x, x ** 2], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(y) - 3
    residual = y - design @ coef
    sigma2 = (residual ** 2).sum() / max(dof, 1)
    se = math.sqrt(sigma2 * np.linalg.inv(design.T @ design)[2, 2])
    half = stats.t.ppf(0.5 + level / 2, max(dof, 1)) * se
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


def relation_shape(gap: np.ndarray, accuracy: np.ndarray, level: float = SHAPE_TEST_LEVEL) -> dict:
    """Is accuracy vs cumulative gap logistic, concave, convex, or linear within noise?

    A logistic relation is one whose log-odds are linear in G. Two F-tests (x² and x³ terms over
    a line, at ``level``): on the log-odds (weighted by the delta method) and on the accuracy.
    Verdicts: log-odds non-linear → ``"concave"`` or ``"convex"`` by the sign of their quadratic
    term (accuracy saturates faster, or slower, than a logistic); log-odds linear but accuracy not →
    ``"logistic"``; neither → ``"linear within noise"`` (the range is too narrow to tell a logistic
    from a line).
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


def _interval(estimate: tuple[float, float, float]) -> str:
    return "{:+.3f} [{:+.3f}, {:+.3f}]".format(*estimate)


@dataclass(frozen=True)
class RelationStudy:
    """Accuracy against the cumulative gap, every run and reading: the shape tests and the
    relabelling test, with the margins of the findings about them (each ≥ 0 when it holds).

    Attributes:
        shape: one row per (run, reading): Spearman, logistic fit, the two curvatures with their
            95% intervals (as text), the verdict of :func:`relation_shape`, the R² of G on k.
        curvatures: the accuracy curvature estimate of each row of ``shape``.
        relabelling: one row per run: :func:`step_relabelling`.
        pooled: :func:`pooled_fit_comparison`'s RMSE per column.
        first_run: the label of the first run.
    """

    shape: pd.DataFrame
    curvatures: list[float]
    relabelling: pd.DataFrame
    pooled: dict[str, float]
    first_run: str

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The shape table and the coefficients of variation of the relabelling test (one row per run)."""
        columns = ["run", "step_length_cv", "gap_estimate_cv", "gap_norm_cv", "alignment_cv"]
        return self.shape, self.relabelling[columns]

    def pooled_summary(self) -> str:
        """The pooled logistic fit's RMSE per column, as one line."""
        rmse = ", ".join(f"{name} {value:.4f}" for name, value in self.pooled.items())
        return f"pooled logistic fit over all runs, RMSE in accuracy: {rmse}"

    def report(self) -> str:
        """The shape table, the coefficients of variation and the pooled RMSEs, as text."""
        shape, variation = self.tables()
        return "\n".join([format_table(shape, 250), "", format_table(variation, 250), self.pooled_summary()])

    def headline(self) -> dict:
        return dict(shape=self.shape.to_dict("records"), relabelling=self.relabelling.to_dict("records"),
                    pooled_rmse=self.pooled)

    def step_r2_margins(self) -> list[float]:
        """Per reading, the smallest R² of G on k over the runs minus 0.95."""
        return [self.relabelling[f"{r}_vs_step_r2"].min() - 0.95 for r in READINGS]

    def step_length_margins(self) -> np.ndarray:
        """Per run, 0.5 minus the coefficient of variation of η_k."""
        return 0.5 - self.relabelling["step_length_cv"].to_numpy()

    def spearman_margins(self, threshold: float = 0.0) -> np.ndarray:
        """Per (run, reading), the rank correlation minus ``threshold`` (0: accuracy rises with G;
        the recorded claim uses :data:`RECORDED_SPEARMAN`)."""
        return self.shape["spearman"].to_numpy() - threshold

    def pooled_margins(self) -> list[float]:
        """Per reading, its pooled RMSE minus (1 − :data:`POOLED_IMPROVEMENT`) × the normalized step's
        (< 0: the gap fits ≥ 10% better)."""
        return [self.pooled[r] - (1 - POOLED_IMPROVEMENT) * self.pooled["normalized_step"] for r in READINGS]

    def no_logistic_margins(self) -> list[float]:
        """Per (run, reading), −1 where the verdict is "logistic", else 0."""
        return [-1.0 if v == "logistic" else 0.0 for v in self.shape["shape"]]

    def concave_margins(self) -> list[float]:
        """Per (run, reading), minus the accuracy curvature estimate."""
        return [-c for c in self.curvatures]

    def glue_values(self, table: pd.DataFrame) -> dict[str, float | str]:
        """The numbers the prose quotes from the study (``table`` is :func:`figure2_table`): the largest
        coefficient of variation of η_k over the runs (``step_cv_max``), the smallest and largest of the
        estimated gap's (``gap_cv_low``/``_high``), the smallest R² of G on k over runs and readings
        (``r2_min``), the smallest rank correlation (``spearman_min``), the accuracy range of the table
        (``accuracy_low``/``_high``) and the verdicts of the shape tests as text (``verdicts``)."""
        r2 = self.relabelling[[f"{r}_vs_step_r2" for r in READINGS]].to_numpy()
        accuracy = table["accuracy"].dropna()
        return {"step_cv_max": float(self.relabelling["step_length_cv"].max()),
                "gap_cv_low": float(self.relabelling["gap_estimate_cv"].min()),
                "gap_cv_high": float(self.relabelling["gap_estimate_cv"].max()),
                "r2_min": float(r2.min()), "spearman_min": float(self.shape["spearman"].min()),
                "accuracy_low": float(accuracy.min()), "accuracy_high": float(accuracy.max()),
                "verdicts": verdict_text(self.shape["shape"])}

    def first_run_concave_margins(self) -> list[float]:
        """Per reading of the first run, 0 where the verdict is "concave", else −1."""
        first = self.shape[self.shape["run"] == self.first_run]
        return [0.0 if v == "concave" else -1.0 for v in first["shape"]]


def verdict_text(verdicts) -> str:
    """How many (run, reading) pairs got each verdict of :func:`relation_shape`, most frequent first:
    ``"2 concave and 2 linear within noise, of 4 run-and-reading pairs"``."""
    counts = pd.Series(list(verdicts)).value_counts(sort=True)
    parts = [f"{count} {verdict}" for verdict, count in counts.items()]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed}, of {int(counts.sum())} run-and-reading pairs"


def relation_study(runs: list[grpo.GRPORun], table: pd.DataFrame) -> RelationStudy:
    """The shape and relabelling tests of every run and reading; ``table`` is :func:`figure2_table`."""
    rows, curvatures = [], []
    for run in runs:
        cumulative = run.cumulative()
        relabel = step_relabelling(run)
        for reading in READINGS:
            fit = logistic_fit(cumulative[reading], cumulative["accuracy"])
            shape = relation_shape(cumulative[reading], cumulative["accuracy"])
            curvatures.append(shape["accuracy_curvature"][0])
            rows.append({"run": run_label(run), "reading": reading,
                         "spearman": stats.spearmanr(cumulative[reading], cumulative["accuracy"]).statistic,
                         "logistic slope b": fit["slope"], "logistic R²": fit["r2"],
                         "accuracy curvature [95%]": _interval(shape["accuracy_curvature"]),
                         "log-odds curvature [95%]": _interval(shape["log_odds_curvature"]),
                         "shape": shape["verdict"], "R² of G on k": relabel[f"{reading}_vs_step_r2"]})
    relabelling = pd.DataFrame([{"run": run_label(run), **step_relabelling(run)} for run in runs])
    return RelationStudy(pd.DataFrame(rows), curvatures, relabelling, pooled_fit_comparison(table),
                         run_label(runs[0]))


# ----------------------------------------------------------------------------------------------
# Per-step diagnostics
# ----------------------------------------------------------------------------------------------


def diagnostics_frames(runs: list[grpo.GRPORun]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The per-step records of every run (a ``run`` column added: :func:`figure_label`), and two long
    views of them: the gap norms (``gap``: :data:`GAP_NAMES` of gap_estimate and gap_norm, ``value``)
    and the cosines with Δ (``cosine with Δ``: :data:`COSINE_NAMES`, ``value``)."""
    long = pd.concat([run.steps.assign(run=figure_label(run)) for run in runs], ignore_index=True)
    gaps = long.melt(id_vars=["step", "run"], value_vars=list(GAP_NAMES), var_name="gap").replace({"gap": GAP_NAMES})
    cosines = long.melt(id_vars=["step", "run"], value_vars=list(COSINE_NAMES), var_name="cosine with Δ").replace(
        {"cosine with Δ": COSINE_NAMES})
    return long, gaps, cosines


# ----------------------------------------------------------------------------------------------
# The committed robustness record (this chapter at seeds 0–9), for the prose
# ----------------------------------------------------------------------------------------------


def load_seed_record(path: str | Path | None = None) -> dict | None:
    """The committed robustness record (default :data:`ROBUSTNESS_RECORD` under the repository root),
    or None where there is none yet."""
    path = project_root() / ROBUSTNESS_RECORD if path is None else Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _seed_range(seeds: list[int]) -> str:
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
    held = f"held at {entry['held']} of its {entry['of']} seeds ({_seed_range(record['seeds'])})"
    worst = entry.get("worst_margin")
    return {f"{name}_held": held,
            f"{name}_worst": "not known (a seed's run stopped)" if worst is None else f"{worst + offset:.3f}"}


def enforced_summary(record: dict | None) -> str:
    """How many of the enforced claims of ``record`` held at every one of its seeds, as text."""
    if record is None:
        return "no robustness record yet"
    enforced = [c for c in record["claims"] if c["enforced"]]
    every = sum(c["held"] == c["of"] for c in enforced)
    count = f"all {every} of its" if every == len(enforced) else f"{every} of its {len(enforced)}"
    return (f"{count} enforced claims holding at every one of its {len(record['seeds'])} seeds "
            f"({_seed_range(record['seeds'])})")
