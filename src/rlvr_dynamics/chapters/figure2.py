"""The chapter *GRPO on language models* (the paper's Figure 2) (Section 5.2): its parameters and the analysis.

The runs are one :mod:`rlvr_dynamics.lm.experiment` (GRPO runs from one warmed-up checkpoint); this
module holds the chapter's checks and turns the runs' records into its numbers:

* the checks of the task (disjoint splits, reference rewards, the answer extractor) and of the
  warm-up;
* identity (LM1) — GRPO's per-prompt direction is c_q (ḡ⁺ − ḡ⁻) — on groups sampled
  from the warmed-up model;
* the per-run summary (alignments, the paper's estimate (a) against the measured gap), the margins
  of the findings stated about it and the numbers the prose quotes from it;
* the design of runs whose clocks differ (optimizer, schedule, learning rate, horizon), its
  precision, Figure 2's panels of accuracy against the cumulative gap and against the clock, and the
  held-out test "gap or clock?" (fit on some runs, predict the others, over GRPO seeds);
* Theorem 1 prompt by prompt on fixed validation prompts: log-odds change against M_q(k);
* the recorded GPU run of the ``paper`` preset (its schema, checked against the preset);
* what the committed robustness record (``data/robustness/figure2.json``: this chapter at seeds
  0–9) says of the claims whose size depends on the seed, for the prose.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import optimize, special

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.chapters.statistics import seed_glue  # noqa: F401 (the notebook's prose: one home, statistics)
from rlvr_dynamics.config import parameter
from rlvr_dynamics.files import check_fields, project_root
from rlvr_dynamics.lm import experiment, grpo, scoring
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.experiment import run_label

EXTRACTOR_CASES = {"#### 1,234": 1234, "so 12+7=19\n#### 19": 19, "The answer is $42.": 42, "-7": -7,
                   "3.50 dollars": 3.5, "no number": None}
"""Completions and the number the answer extractor must read from each (None: no number)."""

DIRECTION_TOLERANCE = 1e-5
"""Largest relative error of identity (LM1) on the float32 model."""

MIN_GAIN = 0.10
"""The accuracy gain the first run is compared with (a recorded claim, never enforced: the gain's size
depends on the seed)."""

INTERVAL_LEVEL = 0.95
"""Level of the intervals over GRPO seeds."""

ROBUSTNESS_RECORD = Path("data") / "robustness" / "figure2.json"
"""The committed record of this chapter's claims at seeds 0–9 (``rlvr-book robustness figure2``),
relative to the repository root."""


@dataclass(frozen=True)
class Figure2Config(experiment.LMExperimentConfig):
    """Parameters of the chapter *GRPO on language models* (Section 5.2): the experiment's
    and the gain its first run must reach."""

    min_gain: float = parameter("validation-accuracy gain the first run is compared with (recorded, never "
                                "enforced)", "float", low=0.0, high=1.0)
    start_accuracy: float = parameter("sampled accuracy of the warmed-up model at the start of GRPO: the sampling "
                                      "temperature is set to reach it on training problems (0: use 'temperature')",
                                      "float", low=0.0, high=0.95)


_DESIGN = dict(
    # The gap-or-clock design: a model warmed up to 0.85 and sampled at the temperature that brings its accuracy to
    # 0.15 (≈ 2.5 at seed 0; greedy accuracy ≈ 0.95: GRPO has a wide range to climb in few steps), three runs whose
    # step lengths evolve differently — AdamW with warm-up + cosine decay, AdamW at a 20× lower constant rate (a
    # shorter horizon, so that k and k/K differ), SGD with warm-up + cosine (update ∥ gradient) — each at three GRPO
    # seeds; Dr. GRPO's loss; prompts tracked in the SGD run.
    warmup_target=0.85, temperature=1.0, start_accuracy=0.15, loss_types="dr_grpo", scale_rewards="none",
    learning_rates="2e-3,1e-4,0.3", optimizer="adamw,adamw,sgd", lr_schedules="cosine,constant,cosine",
    lr_warmup_steps=10, steps=120, run_steps="120,80,100", grpo_seeds=3, tracked_prompts=32, tracked_samples=32,
    tracked_runs="3",
    per_prompt_every=20, eval_every=4, eval_problems=256, eval_samples=8, workers=2)

PRESETS = {
    # ≈ 4 min on 2 CPU cores: the warm-up (≈ 50 s, cached), nine runs of 80-100 steps, one with prompts tracked.
    "ci": dict(experiment.PRESETS["ci"], **_DESIGN, min_gain=MIN_GAIN),
    # The same design on the 25 M-parameter model (GPU), longer runs and more validation samples.
    "paper": dict(experiment.PRESETS["paper"], **dict(_DESIGN, steps=300, run_steps="300,200,250", eval_every=10,
                                                      eval_problems=512, workers=1), min_gain=MIN_GAIN),
}


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


def calibrate_temperature(config: Figure2Config, model, tokenizer, problems: list[lm_task.Problem],
                          generator: torch.Generator, problems_used: int = 128, samples: int = 8
                          ) -> tuple[Figure2Config, float]:
    """``config`` with the sampling temperature at which the model's sampled accuracy on the first
    ``problems_used`` of ``problems`` (training problems: the validation split stays unseen) is
    ``config.start_accuracy`` (:func:`rlvr_dynamics.lm.scoring.temperature_for_accuracy`, rounded to 3 decimals), and
    that accuracy; ``config`` unchanged and NaN when ``start_accuracy`` is 0. A longer warm-up leaves a sharper
    model, so a fixed temperature would start every seed elsewhere; a fixed starting accuracy does not."""
    if config.start_accuracy <= 0:
        return config, float("nan")
    temperature, accuracy = scoring.temperature_for_accuracy(
        model, tokenizer, problems[:problems_used], config.start_accuracy, samples, config.max_completion_length,
        generator)
    return dataclasses.replace(config, temperature=round(temperature, 3)), accuracy


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
    measured gap Δ, the fraction of steps with u·Δ > 0 (both over the steps that moved), the median ratio
    of estimate (a) to ‖Δ‖ (eq. f2-estimate) and the mean ratio of a single prompt's gap to the batch-average gap."""
    return pd.DataFrame([{
        "run": run_label(run),
        "accuracy at 0": run.evals["accuracy"].iloc[0],
        "final accuracy": run.evals["accuracy"].iloc[-1],
        "gain": accuracy_gain(run),
        "mixed prompts": run.steps["mixed_prompts"].mean() / run.config.prompts_per_step,
        "cos(−∇L, Δ)": run.steps["gradient_gap_cosine"].mean(),
        "cos(u, Δ)": run.steps.loc[run.steps["step_length"] > 0, "alignment_cosine"].mean(),
        "u·Δ > 0": (run.steps.loc[run.steps["step_length"] > 0, "alignment"] > 0).mean(),
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
    * ``estimate_matches``: the median of (a)/‖Δ‖ within 15% of 1;
    * ``prompt_gap_longer``: a single prompt's gap ≥ 2× the batch-average gap, on average;
    * ``positive_alignment``: u·Δ > 0 at ≥ 95% of steps (the first step's update may be 0: a warm-up from 0);

    and by optimizer — AdamW: ``update_off_gap``, mean cos(u, Δ) ≤ 0.3 (Adam's update far from the gap), and
    ``measured_smaller``, the final cumulative gap (b) ≥ 3× smaller than (a) (eq. f2-cumulative); SGD:
    ``update_along_gap``, mean cos(u, Δ) ≥ 0.9 (the update is the loss gradient, scaled).
    """
    final = run.cumulative().iloc[-1]
    moved = run.steps[run.steps["step_length"] > 0]
    margins = {
        "gradient_along_gap": [run.steps["gradient_gap_cosine"].mean() - 0.9],
        "estimate_matches": [0.15 - abs((run.steps["gap_estimate"] / run.steps["gap_norm"]).median() - 1)],
        "prompt_gap_longer": [(run.steps["prompt_gap_norm_mean"] / run.steps["gap_norm"]).mean() - 2],
        "positive_alignment": [(moved["alignment"] > 0).mean() - 0.95],
    }
    if run.config.optimizer == "sgd":
        return dict(margins, update_along_gap=[moved["alignment_cosine"].mean() - 0.9])
    return dict(margins, update_off_gap=[0.3 - moved["alignment_cosine"].mean()],
                measured_smaller=[final["estimate"] / final["measured"] - 3])


def table_glue(runs: list[grpo.GRPORun], summary: pd.DataFrame) -> dict[str, float]:
    """The numbers the prose quotes from the runs' table (``summary`` is :func:`run_summary`), each the
    smallest and/or largest over the runs: the median ratio (a)/‖Δ‖ (``ratio_low``/``_high``), the
    mean cosine of −∇L with Δ (``gradient_cosine_min``), the ratio of a prompt's gap to the batch gap
    (``prompt_gap_low``/``_high``), the mean cosine of the update with Δ over the AdamW runs
    (``adam_cosine_low``/``_high``) and over the SGD runs (``sgd_cosine_min``), the fraction of steps with
    u·Δ > 0 (``positive_min``), the final ratio of cumulative gap (a) to (b) over the AdamW runs
    (``smaller_min``) and the accuracy gain (``gain_low``/``_high``). A quantity without runs of its
    optimizer is NaN."""
    adam = [run.config.optimizer == "adamw" for run in runs]
    columns = {"ratio": "(a)/‖Δ‖", "prompt_gap": "mean ‖Δ_q‖/‖Δ‖", "gain": "gain"}
    values = {}
    for name, column in columns.items():
        values[f"{name}_low"], values[f"{name}_high"] = float(summary[column].min()), float(summary[column].max())
    adam_cosine = summary.loc[adam, "cos(u, Δ)"]
    sgd_cosine = summary.loc[[not a for a in adam], "cos(u, Δ)"]
    finals = [run.cumulative().iloc[-1] for run, a in zip(runs, adam, strict=True) if a]
    return dict(values, gradient_cosine_min=float(summary["cos(−∇L, Δ)"].min()),
                adam_cosine_low=float(adam_cosine.min()) if len(adam_cosine) else float("nan"),
                adam_cosine_high=float(adam_cosine.max()) if len(adam_cosine) else float("nan"),
                sgd_cosine_min=float(sgd_cosine.min()) if len(sgd_cosine) else float("nan"),
                positive_min=float(summary["u·Δ > 0"].min()),
                smaller_min=float(min(row["estimate"] / row["measured"] for row in finals)) if finals else float("nan"))


# ----------------------------------------------------------------------------------------------
# Figure 2
# ----------------------------------------------------------------------------------------------


def logistic(x, intercept, slope):
    """σ(a + b·x), elementwise."""
    return special.expit(intercept + slope * x)


def logistic_fit(gap: np.ndarray, accuracy: np.ndarray) -> dict:
    """Least-squares fit of accuracy = σ(a + b·G) (Corollary 1's form: log-odds linear in the
    cumulative gap). Returns a, b, the RMSE and R² (in accuracy units)."""
    gap, accuracy = np.asarray(gap, float), np.asarray(accuracy, float)
    clipped = np.clip(accuracy, 1e-3, 1 - 1e-3)
    if np.ptp(gap) == 0:  # a variable that never moves explains nothing: the mean, slope 0
        a, b = float(special.logit(np.clip(accuracy.mean(), 1e-3, 1 - 1e-3))), 0.0
        residual = accuracy - logistic(gap, a, b)
        return {"intercept": a, "slope": b, "rmse": float(np.sqrt((residual ** 2).mean())), "r2": 0.0}
    start = np.polyfit(gap, special.logit(clipped), 1)[::-1]  # OLS on the log-odds as the start
    try:
        (a, b), _ = optimize.curve_fit(logistic, gap, accuracy, p0=start, maxfev=20_000)
    except RuntimeError:  # no convergence (a flat or degenerate cloud): keep the log-odds fit
        a, b = start
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


OPTIMIZER_NAMES = {"adamw": "AdamW", "sgd": "SGD"}
SCHEDULE_NAMES = {"constant": "constant", "cosine": "warm-up + cosine"}
"""How the figures name the optimizers (``grpo.OPTIMIZERS``) and the schedules (``grpo.LR_SCHEDULES``)."""


def figure_label(run: grpo.GRPORun) -> str:
    """A run's name in the figures, every setting spelled out: optimizer, learning rate and schedule, horizon K,
    loss, advantage scaling (:func:`~rlvr_dynamics.lm.experiment.run_label` is the short one the claims and
    tables use)."""
    c = run.config
    return (f"{OPTIMIZER_NAMES[c.optimizer]} lr {c.learning_rate:g} ({SCHEDULE_NAMES[c.lr_schedule]}, K = {c.steps}), "
            f"{LOSS_NAMES[c.loss_type]}, {SCALE_NAMES[c.scale_rewards]}{FILTER_NAMES[c.advantage_filter]}")


# ----------------------------------------------------------------------------------------------
# Gap or clock: held-out fits over runs whose clocks differ
# ----------------------------------------------------------------------------------------------


CLOCKS = {"measured": "cumulative gap (b)", "estimate": "paper's estimate (a)", "path": "path length Σ η_k",
          "step": "step k", "normalized_step": "k/K", "constant": "no variable (mean accuracy)"}
"""The variables accuracy is fitted on (columns of :func:`clock_table`): the two cumulative gaps (eq. f2-cumulative),
the distance travelled Σ η_k, the step count, the schedule's progress k/K, and none (a constant: the baseline)."""

GAP_CLOCK = "measured"
"""The variable every other one is compared with: Theorem 1's cumulative gap Σ η_k [Δμ_k]₊."""

MAX_ACCURACY_SE = 0.015
"""Largest standard error of one evaluation point (issue's precision target)."""

MIN_EVAL_POINTS = 20
"""Fewest evaluation points per run."""

MIN_SPAN = 0.4
"""Accuracy range at least one run must cover."""

SETUP_NUMBERS = {"0.1": MIN_GAIN, "95%": INTERVAL_LEVEL, "0.015": MAX_ACCURACY_SE, "0.4": MIN_SPAN,
                 "0.85": _DESIGN["warmup_target"], "0.15": _DESIGN["start_accuracy"]}
"""The decimals the prose types: constants of the set-up (every measured number is glued)."""


def clock_table(runs: dict[int, list[grpo.GRPORun]]) -> pd.DataFrame:
    """Every evaluation point of every run (GRPO seed → runs) with each variable of :data:`CLOCKS`:
    ``grpo_seed``, ``run`` (label), ``step``, ``normalized_step`` = k/K, ``accuracy``, ``accuracy_se``
    and the cumulative columns of ``GRPORun.cumulative``."""
    frames = []
    for seed, seed_runs in runs.items():
        for run in seed_runs:
            frame = run.cumulative()
            frame.insert(0, "run", run_label(run))
            frame.insert(0, "grpo_seed", seed)
            frame["normalized_step"] = frame["step"] / run.config.steps
            frame["constant"] = 0.0
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def heldout_fits(table: pd.DataFrame, clocks=tuple(CLOCKS)) -> pd.DataFrame:
    """Gap or clock, held out: within each GRPO seed, fit accuracy = σ(a + b·x) (Corollary 1's form) on the other
    runs' points pooled, for each variable x of ``clocks``, and predict the held-out run's accuracy. One row per
    (``grpo_seed``, ``held_out`` run, ``clock``) with the held-out ``rmse``. x is scaled by its largest training
    value (the fit is invariant to it; it only conditions the optimiser)."""
    rows = []
    for seed, data in table.groupby("grpo_seed", sort=True):
        for held_out in data["run"].unique():
            fit_on, test = data[data["run"] != held_out], data[data["run"] == held_out]
            for clock in clocks:
                if clock == "constant":
                    prediction = np.full(len(test), fit_on["accuracy"].mean())
                else:
                    scale = max(float(fit_on[clock].max()), 1e-300)
                    fit = logistic_fit(fit_on[clock] / scale, fit_on["accuracy"])
                    prediction = logistic(test[clock].to_numpy() / scale, fit["intercept"], fit["slope"])
                error = test["accuracy"].to_numpy() - prediction
                rows.append({"grpo_seed": seed, "held_out": held_out, "clock": clock,
                             "rmse": float(np.sqrt(np.mean(error ** 2)))})
    return pd.DataFrame(rows)


def clock_comparison(heldout: pd.DataFrame, reference: str = GAP_CLOCK) -> pd.DataFrame:
    """Per variable: the held-out RMSE averaged over runs, then its mean over GRPO seeds with a 95% t-interval
    over the seeds (each seed an independent replicate of the whole design); the paired difference RMSE(x) −
    RMSE(``reference``) the same way (> 0: the reference predicts held-out runs better), and in how many
    (seed, held-out run) pairs the reference's error is the smaller."""
    per_seed = heldout.groupby(["clock", "grpo_seed"])["rmse"].mean().unstack("grpo_seed")  # (clocks, seeds)
    pairs = heldout.pivot_table(index=["grpo_seed", "held_out"], columns="clock", values="rmse")
    rows = []
    for clock in per_seed.index:
        mean, low, high = statistics.mean_interval(per_seed.loc[clock], INTERVAL_LEVEL)
        difference = statistics.mean_interval(per_seed.loc[clock] - per_seed.loc[reference], INTERVAL_LEVEL)
        rows.append({"variable": clock, "held-out RMSE": mean, "RMSE low": low, "RMSE high": high,
                     "minus gap's": difference[0], "difference low": difference[1], "difference high": difference[2],
                     "gap better in": f"{int((pairs[clock] > pairs[reference]).sum())} of {len(pairs)}"})
    order = {clock: index for index, clock in enumerate(CLOCKS)}
    return pd.DataFrame(rows).sort_values("variable", key=lambda c: c.map(order)).reset_index(drop=True)


def best_clock(comparison: pd.DataFrame) -> str:
    """The variable with the smallest mean held-out RMSE."""
    return str(comparison.loc[comparison["held-out RMSE"].idxmin(), "variable"])


def gap_better_margins(comparison: pd.DataFrame, clock: str) -> list[float]:
    """One margin: the mean of RMSE(``clock``) − RMSE(gap) over the GRPO seeds (> 0: the gap's error is smaller)."""
    return [float(comparison.loc[comparison["variable"] == clock, "minus gap's"].iloc[0])]


def design_summary(runs: dict[int, list[grpo.GRPORun]]) -> pd.DataFrame:
    """One row per run of the first GRPO seed and its settings: optimizer, schedule, learning rate, K, the number
    of evaluation points, the largest standard error of a point, the accuracy span (largest minus smallest over the
    points, every GRPO seed), the coefficient of variation of η_k, and G_K/K and G_K/Σ η_k (the gap per step and
    per unit of distance: a relabelled step count has the same G_K/K in every run)."""
    rows = []
    first = next(iter(runs))
    for index, run in enumerate(runs[first]):
        c = run.config
        same = [seed_runs[index] for seed_runs in runs.values()]
        spans = [float(r.evals["accuracy"].max() - r.evals["accuracy"].min()) for r in same]
        finals = [r.cumulative().iloc[-1] for r in same]
        lengths = pd.concat([r.steps["step_length"] for r in same])
        rows.append({"run": run_label(run), "optimizer": c.optimizer, "schedule": c.lr_schedule,
                     "learning rate": c.learning_rate, "K": c.steps, "points": len(run.evals),
                     "largest SE": max(float(r.evals["accuracy_se"].max()) for r in same),
                     "accuracy span": max(spans), "CV of η_k": float(lengths.std() / lengths.mean()),
                     "G_K / K": float(np.mean([f["measured"] / c.steps for f in finals])),
                     "G_K / Σ η": float(np.mean([f["measured"] / f["path"] for f in finals]))})
    return pd.DataFrame(rows)


def precision_margins(runs: dict[int, list[grpo.GRPORun]]) -> dict[str, list[float]]:
    """The margins of the design's precision, each ≥ 0 when it holds: ``points`` — per run, its evaluation
    points minus :data:`MIN_EVAL_POINTS`; ``standard_error`` — per point, :data:`MAX_ACCURACY_SE` minus its
    standard error; ``span`` — the largest accuracy span of any run minus :data:`MIN_SPAN`."""
    every = [run for seed_runs in runs.values() for run in seed_runs]
    return {"points": [len(run.evals) - MIN_EVAL_POINTS for run in every],
            "standard_error": [MAX_ACCURACY_SE - se for run in every for se in run.evals["accuracy_se"]],
            "span": [max(float(run.evals["accuracy"].max() - run.evals["accuracy"].min()) for run in every)
                     - MIN_SPAN]}


def clock_spread_margins(design: pd.DataFrame, ratio: float = 2.0) -> list[float]:
    """One margin: the largest G_K/K over the runs divided by the smallest, minus ``ratio`` (≥ 0: the runs
    gather the gap at rates that differ by ``ratio``× or more per step, so G is not one relabelled step count)."""
    per_step = design["G_K / K"]
    return [float(per_step.max() / per_step.min()) - ratio]


def design_glue(design: pd.DataFrame) -> dict[str, float]:
    """The numbers the prose quotes from :func:`design_summary`: the fewest evaluation points (``points_min``),
    the largest standard error of a point (``se_max``), the largest accuracy span (``span_max``), the smallest
    and largest coefficient of variation of η_k (``cv_low``/``_high``) and the ratio of the largest to the
    smallest G_K/K (``per_step_spread``)."""
    per_step = design["G_K / K"]
    return {"points_min": int(design["points"].min()), "se_max": float(design["largest SE"].max()),
            "span_max": float(design["accuracy span"].max()), "cv_low": float(design["CV of η_k"].min()),
            "cv_high": float(design["CV of η_k"].max()), "per_step_spread": float(per_step.max() / per_step.min())}


def comparison_glue(comparison: pd.DataFrame) -> dict[str, float | str]:
    """The numbers the prose quotes from :func:`clock_comparison`: per variable v, its mean held-out RMSE
    (``rmse_v``) and, for the others, RMSE(v) − RMSE(gap) with its interval (``minus_v``, ``minus_v_low``,
    ``minus_v_high``) and the pairs where the gap is better (``gap_better_v``); and the best variable's name
    (``best_clock``)."""
    values: dict[str, float | str] = {"best_clock": CLOCKS[best_clock(comparison)]}
    for row in comparison.to_dict("records"):
        name = row["variable"]
        values[f"rmse_{name}"] = float(row["held-out RMSE"])
        if name != GAP_CLOCK:
            values.update({f"minus_{name}": float(row["minus gap's"]),
                           f"minus_{name}_low": float(row["difference low"]),
                           f"minus_{name}_high": float(row["difference high"]),
                           f"gap_better_{name}": str(row["gap better in"])})
    return values


def draw_clock_panel(ax, table: pd.DataFrame, clock: str, labels: dict[str, str], legend: bool = False):
    """One panel of Figure 2 on the matplotlib Axes ``ax``: accuracy against the variable ``clock`` of
    :data:`CLOCKS` (:func:`clock_table`), one colour and marker per run (``labels``: run → legend entry), every
    GRPO seed's points, each run's seeds joined by thin lines; dashed, one logistic fit over all runs pooled
    (Corollary 1's form). If accuracy is a function of ``clock``, the runs fall on that one curve."""
    import seaborn as sns

    markers = ["o", "s", "^", "D", "v", "P"]
    colours = sns.color_palette("colorblind", len(labels))
    for index, (run, label) in enumerate(labels.items()):
        data = table[table["run"] == run]
        for position, (_, seed_data) in enumerate(data.groupby("grpo_seed")):
            ax.plot(seed_data[clock], seed_data["accuracy"], color=colours[index], lw=0.6, alpha=0.6)
            ax.scatter(seed_data[clock], seed_data["accuracy"], color=colours[index], marker=markers[index % 6],
                       s=16, edgecolor="k", linewidth=0.2, label=label if position == 0 else None)
    scale = max(float(table[clock].max()), 1e-300)
    fit = logistic_fit(table[clock] / scale, table["accuracy"])
    grid = np.linspace(0, scale, 100)
    ax.plot(grid, logistic(grid / scale, fit["intercept"], fit["slope"]), color="0.2", lw=1.2, ls="--")
    ax.set(title=CLOCKS[clock], xlabel=CLOCKS[clock], ylabel="sampled validation accuracy")
    if legend:
        ax.legend(loc="lower right", title="run")


# ----------------------------------------------------------------------------------------------
# Theorem 1 per prompt
# ----------------------------------------------------------------------------------------------


def prompt_trajectories(frame: pd.DataFrame, samples: int) -> pd.DataFrame:
    """Per tracked prompt and step k (``PromptTracker.frame`` rows): the smoothed log-odds
    logit((successes + ½)/(samples + 1)) (finite at 0 and ``samples`` successes), its change since step 0,
    M_q(k) = Σ_{i<k} η_i [Δμ_q(i)]₊ (Theorem 1; a step where the prompt lacks an outcome adds 0) and the signed
    S_q(k) = Σ_{i<k} η_i Δμ_q(i), whose first-order prediction of the log-odds change has slope 1 (the gradient of
    logit J_q is g⁺_q − g⁻_q)."""
    frame = frame.sort_values(["prompt", "step"]).copy()
    frame["log_odds"] = special.logit((frame["successes"] + 0.5) / (samples + 1))
    grouped = frame.groupby("prompt")
    frame["log_odds_change"] = frame["log_odds"] - grouped["log_odds"].transform("first")
    inner = frame["inner"].fillna(0.0)
    frame["M"] = inner.clip(lower=0).groupby(frame["prompt"]).cumsum() - inner.clip(lower=0)
    frame["S"] = inner.groupby(frame["prompt"]).cumsum() - inner
    return frame.reset_index(drop=True)


def prompt_slopes(trajectories: pd.DataFrame) -> pd.DataFrame:
    """Theorem 1(b) per prompt: least-squares slopes (through the origin; both sides start at 0) of the
    log-odds change on M_q(k) and on S_q(k), the R² of each, the final M_q(K), the final change, and whether
    Theorem 1(b)'s log-odds form logit J_q(K) − logit J_q(0) ≥ M_q(K)/2 holds at the last step."""
    rows = []
    for prompt, data in trajectories.groupby("prompt"):
        y = data["log_odds_change"].to_numpy()
        row = {"prompt": prompt}
        for name in ("M", "S"):
            x = data[name].to_numpy()
            slope = float(x @ y / (x @ x)) if x @ x > 0 else float("nan")
            residual = y - slope * x
            total = float(((y - y.mean()) ** 2).sum())
            row[f"slope on {name}"] = slope
            row[f"R² on {name}"] = float(1 - (residual ** 2).sum() / total) if total > 0 else float("nan")
        last = data.iloc[-1]
        row.update({"M_q(K)": float(last["M"]), "log-odds change": float(last["log_odds_change"]),
                    "value at 0": float(data.iloc[0]["value"]), "value at K": float(last["value"]),
                    "bound (15b) holds": bool(last["log_odds_change"] >= last["M"] / 2)})
        rows.append(row)
    return pd.DataFrame(rows)


def slope_summary(slopes: pd.DataFrame) -> dict[str, float]:
    """The distribution of the per-prompt fits: median and quartiles of each slope, median R², the share of
    prompts with a positive slope on M and the share where the bound (15b) holds at the last step."""
    out = {"prompts": len(slopes)}
    for name in ("M", "S"):
        column = slopes[f"slope on {name}"].dropna()
        out.update({f"slope_{name}_median": float(column.median()), f"slope_{name}_q1": float(column.quantile(0.25)),
                    f"slope_{name}_q3": float(column.quantile(0.75)),
                    f"r2_{name}_median": float(slopes[f"R² on {name}"].median())})
    out.update(positive_share=float((slopes["slope on M"] > 0).mean()),
               bound_share=float(slopes["bound (15b) holds"].mean()))
    return out


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
# The recorded GPU run of the paper preset
# ----------------------------------------------------------------------------------------------


GPU_RECORD = Path("data") / "gpu" / "figure2"
"""The folder of the recorded GPU run of the ``paper`` preset (``record.json`` and its figures), relative to the
repository root; written by :func:`write_gpu_record` (``.ci/gpu-figure2``)."""

GPU_COMMAND = "OUT=out bash .ci/gpu-figure2  # on a CUDA machine; then commit data/gpu/figure2/"
"""How the record is made."""

_RECORD_FIELDS = {"device": str, "date": str, "command": str, "preset": str, "seed": int, "run_seconds": float,
                  "versions": dict, "parameters": dict, "headline": dict, "claims": list, "figures": list}


def write_gpu_record(run_folder: str | Path, destination: str | Path, command: str, date: str) -> Path:
    """The record of one execution of this chapter (``run_folder``: the output folder of ``rlvr-book run figure2``,
    with its ``metrics.json`` and figure PNGs): device, date, versions, command, preset, seed, parameters,
    run time, headline numbers and claims, and the figures copied beside ``record.json`` in ``destination``."""
    import shutil

    run_folder, destination = Path(run_folder), Path(destination)
    metrics = json.loads((run_folder / "metrics.json").read_text(encoding="utf-8"))
    destination.mkdir(parents=True, exist_ok=True)
    figures = []
    for figure in sorted(run_folder.rglob("*.png")):
        if figure.name in figures:
            raise ValueError(f"{run_folder}: two figures named {figure.name}")
        shutil.copyfile(figure, destination / figure.name)
        figures.append(figure.name)
    record = {"device": str(metrics["device"]), "date": date, "command": command,
              "preset": str(metrics["parameters"].get("preset", "")), "seed": int(metrics["seed"]),
              "run_seconds": float(metrics["run_seconds"]), "versions": metrics["versions"],
              "parameters": metrics["parameters"], "headline": metrics["headline"], "claims": metrics["claims"],
              "figures": figures}
    path = destination / "record.json"
    path.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    return path


def read_gpu_record(folder: str | Path | None = None, preset: str = "paper") -> dict | None:
    """The recorded GPU run (default :data:`GPU_RECORD` under the repository root), checked whole, or None where
    none is recorded. A ``ValueError`` names the first problem: a missing or mistyped field, a device that is not
    a GPU, a preset other than ``preset`` or parameters that differ from that preset's (the record must be the
    preset as the book defines it now), or a listed figure that is not in the folder."""
    folder = project_root() / GPU_RECORD if folder is None else Path(folder)
    path = folder / "record.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    check_fields(record, _RECORD_FIELDS, str(path))
    if not record["device"].startswith("cuda"):
        raise ValueError(f"{path}: device '{record['device']}' is not a GPU")
    if record["preset"] != preset:
        raise ValueError(f"{path}: preset '{record['preset']}', expected '{preset}'")
    expected = PRESETS[preset]
    different = sorted(name for name, value in expected.items() if record["parameters"].get(name) != value)
    if different:
        raise ValueError(f"{path}: parameters differ from the '{preset}' preset: {', '.join(different)}")
    if not all(isinstance(name, str) for name in record["figures"]):
        raise ValueError(f"{path}: field 'figures' is not a list of file names")
    missing = [name for name in record["figures"] if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{path}: figure files missing: {', '.join(missing)}")
    return record


def gpu_record_text(record: dict | None) -> str:
    """One paragraph for the chapter: what the record is (device, date, run time, versions), or that there is none
    yet and the command that makes it."""
    if record is None:
        return (f"No GPU run of the paper preset is recorded yet (no machine with a GPU was available when this "
                f"chapter was written). To record one: {GPU_COMMAND}")
    versions = ", ".join(f"{name} {version}" for name, version in sorted(record["versions"].items()))
    return (f"Recorded on {record['device']} on {record['date']}: the paper preset at seed {record['seed']}, "
            f"{record['run_seconds'] / 60:.1f} min ({versions}); command: {record['command']}")


def gpu_record_figure(record: dict, folder: str | Path | None = None) -> Path:
    """The recorded run's Figure 2 (``figure2.png`` beside ``record.json``; default folder :data:`GPU_RECORD` under
    the repository root). A ``ValueError`` when the record lists no such figure."""
    if "figure2.png" not in record["figures"]:
        raise ValueError("the GPU record lists no figure2.png")
    return (project_root() / GPU_RECORD if folder is None else Path(folder)) / "figure2.png"


def gpu_record_table(record: dict) -> pd.DataFrame:
    """The recorded GPU run's held-out comparison (its headline's ``clock_comparison``) as a table."""
    return pd.DataFrame(record["headline"]["clock_comparison"])


# ----------------------------------------------------------------------------------------------
# The committed robustness record (this chapter at seeds 0–9), for the prose
# ----------------------------------------------------------------------------------------------


def load_seed_record(path: str | Path | None = None) -> dict | None:
    """The committed robustness record (default :data:`ROBUSTNESS_RECORD` under the repository root),
    or None where there is none yet."""
    return statistics.load_seed_record(project_root() / ROBUSTNESS_RECORD if path is None else Path(path))


def enforced_summary(record: dict | None) -> str:
    """How many of the enforced claims of ``record`` held at every one of its seeds, as text."""
    if record is None:
        return "no robustness record yet"
    enforced = [c for c in record["claims"] if c["enforced"]]
    every = sum(c["held"] == c["of"] for c in enforced)
    count = f"all {every} of its" if every == len(enforced) else f"{every} of its {len(enforced)}"
    return (f"{count} enforced claims holding at every one of its {len(record['seeds'])} seeds "
            f"({statistics.seed_range(record['seeds'])})")
