"""The chapter *The capability boundary: pass@k, GSPO and GSPO-N* (Yao et al.'s question at this scale):
its parameters, its runs, and every table, margin and figure panel it reports.

pass@k (BD1, BD2) and GSPO's sequence-level ratio (BD3, BD4) are in :mod:`rlvr_dynamics.theory.boundary`;
the sampled training of the five variants on many prompts with exact per-prompt success probabilities is
:func:`rlvr_dynamics.engines.multi_prompt.train_sampled`; the language-model runs are the Figure-2
experiment's (:mod:`rlvr_dynamics.lm.experiment`) with TRL's sequence-level importance sampling.

A *margin* is one number per checked case, ≥ 0 when the chapter's claim holds on that case. The drawing
functions take matplotlib Axes and import seaborn when called.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.config import parameter, split_list
from rlvr_dynamics.engines import multi_prompt as mp
from rlvr_dynamics.files import check_fields, project_root
from rlvr_dynamics.lm import experiment
from rlvr_dynamics.theory import DTYPE, boundary

VARIANTS = mp.SAMPLED_VARIANTS
"""The compared updates, in the engine's order: GRPO, GRPO-N, GRPO-P, GSPO, GSPO-N."""
VARIANT_NAMES = {"grpo": "GRPO", "grpo_n": "GRPO-N", "grpo_p": "GRPO-P", "gspo": "GSPO", "gspo_n": "GSPO-N"}
INTERVAL_LEVEL = 0.95
"""Level of the Student-t intervals over the problems (exact model) and over the GRPO seeds (language model)."""
IDENTITY_TOLERANCE = 1e-12
"""(BD4): on-policy, one GSPO step and one GRPO step from the same samples agree to this (float64)."""
RARE_LEVEL = 0.05
"""A prompt is *rare* when the base model solves it with probability below this: where the boundary lives."""
ENTROPY_TURN = 0.01
"""The token entropy has *turned* when it ends this many nats above its lowest point (falls, then rises)."""

SETUP_NUMBERS = {"95%": INTERVAL_LEVEL, "0.05": RARE_LEVEL, "0.01": ENTROPY_TURN}
"""Every decimal typed in the chapter's prose: a constant of the set-up (the tests check its value)."""

ROBUSTNESS_RECORD = Path("data") / "robustness" / "boundary.json"
"""The committed record of this chapter's claims at seeds 0–9 (``rlvr-book robustness boundary``)."""


def seed_record(path: str | Path | None = None) -> dict | None:
    """The committed robustness record (default :data:`ROBUSTNESS_RECORD` under the repository root), or None."""
    return statistics.load_seed_record(project_root() / ROBUSTNESS_RECORD if path is None else Path(path))


@dataclass
class BoundaryConfig:
    """Parameters of the chapter *The capability boundary*."""

    prompts: int = parameter("prompts Q of the prompted chain, all trained", "int", low=2, high=1_000)
    vocab_size: int = parameter("tokens V of the chain, EOS included", "int", low=3, high=64)
    feature_dim: int = parameter("prompt features d", "int", low=1, high=1_000)
    lengths: str = parameter("longest lengths T_q of the prompts, cycled over the prompts (each ≥ 2)", "str")
    answer_rule: str = parameter("'linear' (answers linear in the features) or 'random' (no θ solves every prompt)",
                                 "str", choices=mp.ANSWER_RULES)
    init_scale: float = parameter("scale of the base model's first-token weights U₀ (larger: a sharper base model "
                                  "with more rarely solved prompts)", "float", low=0.0, high=100.0)
    step_size: float = parameter("step size α of every variant", "float", low=1e-6, high=1e4)
    steps: int = parameter("sampled training steps of every run", "int", low=1, high=10_000_000)
    inner_steps: int = parameter("updates μ per sampled batch (1: on-policy, where GSPO's update is GRPO's)", "int",
                                 low=1, high=64)
    group_size: int = parameter("responses G per prompt and step", "int", low=2, high=1_024)
    seeds: int = parameter("problems per variant (every variant trains on the same problems; intervals are over "
                           "these)", "int", low=2, high=10_000)
    record_every: int = parameter("steps between recorded exact success probabilities", "int", low=1, high=1_000_000)
    largest_k: int = parameter("the largest k of pass@k (a power of 2)", "int", low=2, high=1 << 20)
    lm_steps: int = parameter("GRPO steps of each language-model run", "int", low=1, high=1_000_000)
    lm_eval_every: int = parameter("steps between validation checks of the language-model runs", "int", low=1,
                                   high=1_000_000)
    lm_seeds: int = parameter("GRPO seeds of the language-model comparison (intervals are over these)", "int",
                              low=2, high=1_000)
    lm_pass_problems: int = parameter("validation problems whose pass@k is estimated along the LM runs", "int",
                                      low=1, high=100_000)
    lm_pass_samples: int = parameter("samples n per problem for the unbiased pass@k estimate (n ≥ largest LM k)",
                                     "int", low=2, high=1_000_000)
    lm_num_iterations: int = parameter("updates μ per generated batch in the LM runs (TRL num_iterations)", "int",
                                       low=1, high=64)

    def check(self) -> None:
        self.length_list  # noqa: B018 (validates)
        if self.largest_k & (self.largest_k - 1):
            raise ValueError(f"parameter 'largest_k' = {self.largest_k} is not a power of 2")
        if self.record_every > self.steps:
            raise ValueError(f"parameter 'record_every' = {self.record_every} is out of range: allowed "
                             f"record_every ≤ steps = {self.steps}")
        if self.lm_eval_every > self.lm_steps:
            raise ValueError(f"parameter 'lm_eval_every' = {self.lm_eval_every} is out of range: allowed "
                             f"lm_eval_every ≤ lm_steps = {self.lm_steps}")
        validation = min(experiment.PRESETS[preset]["validation_size"] for preset in experiment.PRESETS)
        if self.lm_pass_problems > validation:
            raise ValueError(f"parameter 'lm_pass_problems' = {self.lm_pass_problems} is out of range: allowed "
                             f"lm_pass_problems ≤ {validation} (the validation problems)")
        self.lm_config()

    @property
    def length_list(self) -> tuple[int, ...]:
        return tuple(split_list("lengths", self.lengths, int, within=mp.CHAIN_LENGTHS))

    @property
    def ks(self) -> np.ndarray:
        """k = 1, 2, 4, …, largest_k."""
        return 2 ** np.arange(int(math.log2(self.largest_k)) + 1)

    @property
    def lm_ks(self) -> np.ndarray:
        """k = 1, 2, 4, … up to the LM's sample count n."""
        return 2 ** np.arange(int(math.log2(self.lm_pass_samples)) + 1)

    def lm_config(self, preset: str = "ci"):
        """The language-model comparison: the Figure-2 chapter's model and warm-up of ``preset`` (so its cached
        checkpoint is reused), GRPO's loss (std-scaled advantages, per-response token mean) for the five
        variants — the token- or sequence-level ratio and the sign filter — each with ``lm_num_iterations``
        updates per generated batch, the same steps and samples. Accuracy is measured on every validation problem
        (so the order of the validation list, see :func:`hard_first`, does not change it); pass@k on the first
        ``lm_pass_problems``."""
        base = experiment.LMExperimentConfig(**experiment.PRESETS[preset])
        filters = {"grpo": "all", "grpo_n": "negative", "grpo_p": "positive", "gspo": "all", "gspo_n": "negative"}
        config = dataclasses.replace(
            base, loss_types="grpo", scale_rewards="group", learning_rates=base.learning_rates.split(",")[0],
            optimizer="adamw", lr_schedules="constant", lr_warmup_steps=0, run_steps="",
            advantage_filters=",".join(filters[v] for v in VARIANTS),
            importance_sampling_levels=",".join("sequence" if v.startswith("gspo") else "token" for v in VARIANTS),
            num_iterations=self.lm_num_iterations, steps=self.lm_steps, eval_every=self.lm_eval_every,
            eval_problems=base.validation_size, tracked_prompts=0, tracked_runs="", grpo_seeds=1,
            pass_problems=self.lm_pass_problems, pass_samples=self.lm_pass_samples)
        config.check()
        return config


PRESETS = {
    # ≈ 3.5 min on 2 CPU cores: the exact model's 50 sampled runs ≈ 20 s, fifteen language-model runs ≈ 3 min.
    "ci": dict(prompts=32, vocab_size=6, feature_dim=3, lengths="2,4,8", answer_rule="linear", init_scale=3.0,
               step_size=3.0, steps=1000, inner_steps=2, group_size=8, seeds=10, record_every=25, largest_k=1024,
               lm_steps=40, lm_eval_every=20, lm_seeds=3, lm_pass_problems=32, lm_pass_samples=256,
               lm_num_iterations=2),
    # Three times longer exact runs on 32 problems, and 400 language-model steps (a GPU).
    "paper": dict(prompts=32, vocab_size=6, feature_dim=3, lengths="2,4,8", answer_rule="linear", init_scale=3.0,
                  step_size=3.0, steps=3000, inner_steps=2, group_size=8, seeds=32, record_every=25, largest_k=1024,
                  lm_steps=400, lm_eval_every=50, lm_seeds=3, lm_pass_problems=64, lm_pass_samples=512,
                  lm_num_iterations=2),
}


# ----------------------------------------------------------------------------------------------
# The exact model: many prompts, five variants, exact pass@k
# ----------------------------------------------------------------------------------------------


def problem_family(config: BoundaryConfig, seed: int, device="cpu") -> mp.PromptFamily:
    """``seeds`` problems of the book's ``seed`` (problem i is seed·10⁶ + i), each repeated once per variant:
    run b is problem b mod ``seeds`` under variant b // ``seeds``, so every variant trains on the same problems
    and starts from the same base model θ₀."""
    problems = [seed * 1_000_000 + index for index in range(config.seeds)]
    return mp.make_family("chain", problems * len(VARIANTS), config.prompts, config.vocab_size, config.feature_dim,
                          config.length_list, config.answer_rule, init_scale=config.init_scale, device=device)


def run_variants(config: BoundaryConfig, family: mp.PromptFamily, generator: torch.Generator) -> mp.SampledRun:
    """Every variant on every problem of ``family`` (:func:`problem_family`), one batched sampled training."""
    variants = [variant for variant in VARIANTS for _ in range(config.seeds)]
    return mp.train_sampled(family, variants, config.step_size, config.steps, generator, group_size=config.group_size,
                            inner_steps=config.inner_steps, record_every=config.record_every)


def pass_frame(run: mp.SampledRun, config: BoundaryConfig) -> pd.DataFrame:
    """pass@k (BD1) averaged over the prompts, per variant, problem, recorded step and k (long format)."""
    ks = torch.as_tensor(config.ks, dtype=DTYPE)
    values = boundary.pass_at_k(run.log_failure, ks).mean(-2).numpy()  # (S, B, K): mean over the Q prompts
    steps, runs, count = values.shape
    index = pd.MultiIndex.from_product([run.recorded_steps.numpy(), range(runs), config.ks], names=["step", "run", "k"])
    frame = pd.DataFrame({"pass": values.ravel()}, index=index).reset_index()
    frame["variant"] = [VARIANT_NAMES[VARIANTS[r // config.seeds]] for r in frame["run"]]
    frame["problem"] = frame["run"] % config.seeds
    return frame.drop(columns="run")


def against_base(frame: pd.DataFrame) -> pd.DataFrame:
    """Each row's pass@k minus the base model's (step 0, the same problem and k): column ``gain``."""
    base = frame[frame.step == 0].groupby(["problem", "k"])["pass"].first().rename("base")
    out = frame.join(base, on=["problem", "k"])
    return out.assign(gain=out["pass"] - out["base"])


def interval_table(frame: pd.DataFrame, column: str, by: Sequence[str]) -> pd.DataFrame:
    """Mean of ``column`` over the problems with its Student-t interval (INTERVAL_LEVEL), per group of ``by``."""
    rows = {key: statistics.mean_interval(group[column].to_numpy(), INTERVAL_LEVEL)
            for key, group in frame.groupby(list(by) if len(by) > 1 else by[0])}
    index = pd.MultiIndex.from_tuples(list(rows), names=list(by)) if len(by) > 1 else pd.Index(list(rows), name=by[0])
    return pd.DataFrame(list(rows.values()), index=index, columns=["mean", "low", "high"])


def interval_cells(table: pd.DataFrame, ks: Sequence[int]) -> pd.DataFrame:
    """An (variant, k) interval table as texts "mean [low, high]" to 3 decimals: variants as rows, the given k as
    columns (``pass@k``)."""
    cells = {f"pass@{k}": {variant: "{:.3f} [{:.3f}, {:.3f}]".format(*table.loc[(variant, k)])
                           for variant in VARIANT_NAMES.values()} for k in ks}
    return pd.DataFrame(cells)


def final_gains(frame: pd.DataFrame) -> pd.DataFrame:
    """pass@k − base at the last step, per variant and k: mean [interval] over the problems."""
    gains = against_base(frame)
    return interval_table(gains[gains.step == gains.step.max()], "gain", ["variant", "k"])


def crossover_ks(frame: pd.DataFrame) -> pd.DataFrame:
    """Per variant and problem, at the last step: the smallest k at which pass@k falls below the base model's
    (``crossover``, NaN when the trained curve stays above the base for every k) and whether pass@1 rose."""
    gains = against_base(frame)
    final = gains[gains.step == gains.step.max()]
    rows = []
    for (variant, problem), group in final.groupby(["variant", "problem"]):
        below = group[group.gain < 0].k
        rows.append(dict(variant=variant, problem=problem, crossover=float(below.min()) if len(below) else math.nan,
                         pass1_gain=float(group[group.k == 1].gain.iloc[0])))
    return pd.DataFrame(rows)


def crossover_summary(crossovers: pd.DataFrame) -> pd.DataFrame:
    """Per variant: how many problems' trained curves cross below the base, and the median crossover k over all the
    problems, those that never cross counted as ∞ (so the median is ∞ when fewer than half cross), with its
    order-statistics interval."""
    rows = {}
    for variant, group in crossovers.groupby("variant"):
        median, low, high = statistics.median_interval(group.crossover.to_numpy(), INTERVAL_LEVEL)
        rows[variant] = {"problems crossing below the base": f"{group.crossover.notna().sum()} of {len(group)}",
                         "median crossover k": median, "low": low, "high": high}
    return pd.DataFrame(rows).T


def boundary_trajectories(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """pass@k − base over the recorded steps, per variant, problem and step (for the figure and the timing)."""
    gains = against_base(frame)
    return gains[gains.k == k][["variant", "problem", "step", "gain"]]


def rare_prompts(run: mp.SampledRun, level: float = RARE_LEVEL) -> torch.Tensor:
    """The prompts the base model solves with probability below ``level``.   (B, Q) bool"""
    return run.log_success[0] < math.log(level)


FATES = ("rises", "dips, then recovers", "ends below its start")
"""What training does to a rare prompt's exact success probability J_q (recorded steps): it never falls below
half its start and ends above it (``"rises"``); it falls below half its start, then ends at or above it —
exploitation, then exploration, for that prompt (``"dips, then recovers"``); or it ends below its start
(``"ends below its start"``: the prompts that shrink the boundary)."""


def prompt_fates(run: mp.SampledRun, config: BoundaryConfig) -> pd.DataFrame:
    """Every rare prompt of every run (base J_q below RARE_LEVEL): variant, problem, prompt, its base and final
    J_q, the step of its lowest J_q (``bottom_step``, the prompt's switch from falling to rising when it recovers)
    and its fate (:data:`FATES`)."""
    start, final = run.log_success[0], run.log_success[-1]  # (B, Q)
    lowest, lowest_index = run.log_success.min(0)  # (B, Q)
    rare = rare_prompts(run)
    rows = []
    for r, q in rare.nonzero().tolist():
        dipped = float(lowest[r, q]) < float(start[r, q]) - math.log(2)
        fate = FATES[2] if float(final[r, q]) < float(start[r, q]) else FATES[1] if dipped else FATES[0]
        rows.append(dict(variant=VARIANT_NAMES[VARIANTS[r // config.seeds]], problem=r % config.seeds, prompt=q,
                         base=math.exp(float(start[r, q])), final=math.exp(float(final[r, q])),
                         bottom_step=int(run.recorded_steps[lowest_index[r, q]]), fate=fate))
    return pd.DataFrame(rows, columns=["variant", "problem", "prompt", "base", "final", "bottom_step", "fate"])


def fate_table(fates: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the share of the rare prompts with each fate, their count, and the median step at which the
    prompts that dip and recover turn (their lowest point; order-statistics interval)."""
    rows = {}
    for variant in VARIANT_NAMES.values():
        group = fates[fates.variant == variant]
        shares = {fate: float((group.fate == fate).mean()) for fate in FATES}
        turning = group[group.fate == FATES[1]].bottom_step.to_numpy(dtype=float)
        median, low, high = statistics.median_interval(turning, INTERVAL_LEVEL) if len(turning) else (math.nan,) * 3
        rows[variant] = shares | {"rare prompts": len(group), "median turn step": median, "turn low": low,
                                  "turn high": high}
    return pd.DataFrame(rows).T


def timing_table(frame: pd.DataFrame, config: BoundaryConfig) -> pd.DataFrame:
    """Per run, the boundary's course at the largest k: ``dipped`` (pass@k fell below the base at some recorded
    step), ``recovered_step`` (the first step from which it stays at or above the base after a dip; NaN when it
    did not dip or is still below at the end) and ``final_gain`` (pass@k − base at the end)."""
    trajectories = boundary_trajectories(frame, int(config.ks[-1]))
    rows = []
    for (variant, problem), series in trajectories.groupby(["variant", "problem"], sort=False):
        series = series.sort_values("step")
        below = series.gain.to_numpy() < 0
        last_below = np.flatnonzero(below)
        recovered = (math.nan if not below.any() or below[-1] else float(series.step.to_numpy()[last_below[-1] + 1]))
        rows.append(dict(variant=variant, problem=problem, dipped=bool(below.any()), recovered_step=recovered,
                         final_gain=float(series.gain.iloc[-1])))
    return pd.DataFrame(rows)


def timing_summary(timing: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the problems whose pass@(largest k) dipped below the base, those of them back at or above it by
    the end (and the median step of that recovery), and those below the base at the end."""
    rows = {}
    for variant in VARIANT_NAMES.values():
        group = timing[timing.variant == variant]
        recovered = group.recovered_step.dropna()
        rows[variant] = {"dipped below the base": int(group.dipped.sum()), "recovered by the end": len(recovered),
                         "median recovery step": float(recovered.median()) if len(recovered) else math.nan,
                         "below the base at the end": int((group.final_gain < 0).sum())}
    return pd.DataFrame(rows).T


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def on_policy_identity(config: BoundaryConfig, seed: int, inner_steps: int) -> float:
    """(BD4): the largest |Δθ| between one step of GSPO and one of GRPO (and of GSPO-N and GRPO-N) from the same
    samples — the same generator state — on two problems of the chapter, with ``inner_steps`` updates per batch."""
    small = dataclasses.replace(config, seeds=2)
    family = problem_family(small, seed)
    differences = []
    for token, sequence in (("grpo", "gspo"), ("grpo_n", "gspo_n")):
        finals = [mp.train_sampled(family, variant, config.step_size, 1, torch.Generator().manual_seed(seed),
                                   group_size=config.group_size, inner_steps=inner_steps).final_theta
                  for variant in (token, sequence)]
        differences.append(float((finals[0] - finals[1]).abs().max()))
    return max(differences)


def identity_margins(difference: float) -> list[float]:
    """On-policy GSPO and GRPO take the same step (BD4): IDENTITY_TOLERANCE − the largest difference."""
    return [IDENTITY_TOLERANCE - difference]


def estimator_bias(samples: int, ks: Sequence[int], successes: Sequence[float]) -> float:
    """The largest |E[estimate (BD2)] − pass@k (BD1)| over the given success probabilities J and k ≤ n, the mean
    taken exactly over c ~ Binomial(n, J) (no sampling)."""
    counts = torch.arange(samples + 1)
    ks = torch.as_tensor(list(ks))
    estimates = boundary.pass_at_k_unbiased(counts, samples, ks)  # (n + 1, K)
    worst = 0.0
    for success in successes:
        weights = torch.distributions.Binomial(samples, torch.tensor(success, dtype=DTYPE)).log_prob(
            counts.to(DTYPE)).exp()  # (n + 1,)
        exact = boundary.pass_at_k(torch.tensor(math.log1p(-success), dtype=DTYPE), ks)
        worst = max(worst, float(((weights.unsqueeze(-1) * estimates).sum(0) - exact).abs().max()))
    return worst


def unbiased_margins(bias: float, tolerance: float = 1e-10) -> list[float]:
    """The estimator (BD2) is unbiased: tolerance − its largest exact bias."""
    return [tolerance - bias]


def pass1_gain_margins(gains: pd.DataFrame) -> list[float]:
    """Every variant raises pass@1 (the mean over the problems at the last step): the mean gain per variant."""
    return [float(gains.loc[(name, 1), "mean"]) for name in VARIANT_NAMES.values()]


def paired_final(frame: pd.DataFrame, first: str, second: str, k: int) -> np.ndarray:
    """``first``'s pass@k minus ``second``'s at the last step, per problem (the same problems)."""
    final = frame[(frame.step == frame.step.max()) & (frame.k == k)].set_index(["variant", "problem"])["pass"]
    return (final.loc[first] - final.loc[second]).to_numpy()


def order_margins(frame: pd.DataFrame, first: str, second: str, k: int) -> list[float]:
    """``first`` ends with a larger pass@k than ``second`` (mean over the problems): the mean paired difference."""
    return [float(paired_final(frame, first, second, k).mean())]


def shrinkage_margins(gains: pd.DataFrame, variant: str, k: int) -> list[float]:
    """``variant`` ends below the base model at pass@k (mean over the problems): base − trained."""
    return [-float(gains.loc[(variant, k), "mean"])]


def clip_share(run: mp.SampledRun, config: BoundaryConfig) -> dict[str, float]:
    """The mean share of the updating tokens whose ratio was clipped, per variant."""
    return {VARIANT_NAMES[v]: float(run.clipped_fraction[:, i * config.seeds:(i + 1) * config.seeds].mean())
            for i, v in enumerate(VARIANTS)}


def exact_glue(gains: pd.DataFrame, crossovers: pd.DataFrame, timing: pd.DataFrame, fates: pd.DataFrame,
               frame: pd.DataFrame, config: BoundaryConfig, clipped: dict[str, float]) -> dict:
    """The numbers the prose quotes, ``{variant}`` in grpo, grpo_n, grpo_p, gspo, gspo_n:
    ``pass1_{variant}`` and ``passk_{variant}`` (gain over the base at k = 1 and the largest k, with ``_low``,
    ``_high``), ``cross_{variant}`` (problems crossing below the base) and ``median_cross_{variant}``,
    ``below_{variant}`` (problems below the base at the largest k at the end), ``recovered_{variant}`` (problems
    that dipped and recovered), ``clip_{variant}``, the paired differences ``p_minus_n`` and ``gspo_minus_grpo``
    at the largest k (with intervals), the base model's ``base_pass1`` and ``base_passk``, ``rare_share``
    (the share of rare prompts), the shares of the rare prompts' fates ``lost_{variant}`` and ``turn_{variant}``
    (:data:`FATES`), the median step at which the prompts that dip and recover turn (``turn_step_{variant}``) and
    at which the problems whose pass@(largest k) dipped are back at the base (``recovery_step_{variant}``; NaN
    when none) and the set-up (``largest_k``, ``problems``, ``steps``, ``inner_steps``, ``prompts``)."""
    largest = int(config.ks[-1])
    values = {"largest_k": largest, "problems": config.seeds, "steps": config.steps, "inner_steps": config.inner_steps,
              "prompts": config.prompts}
    for key, name in VARIANT_NAMES.items():
        for tag, k in (("pass1", 1), ("passk", largest)):
            row = gains.loc[(name, k)]
            values.update({f"{tag}_{key}": row["mean"], f"{tag}_{key}_low": row["low"],
                           f"{tag}_{key}_high": row["high"]})
        group = crossovers[crossovers.variant == name]
        values[f"cross_{key}"] = int(group.crossover.notna().sum())
        values[f"median_cross_{key}"] = float(group.crossover.median()) if group.crossover.notna().any() else math.inf
        rows = timing[timing.variant == name]
        values[f"below_{key}"] = int((rows.final_gain < 0).sum())
        values[f"recovered_{key}"] = int(rows.recovered_step.notna().sum())
        values[f"clip_{key}"] = clipped[name]
        group = fates[fates.variant == name]
        values[f"lost_{key}"] = float((group.fate == FATES[2]).mean())
        values[f"turn_{key}"] = float((group.fate == FATES[1]).mean())
        turning = group[group.fate == FATES[1]].bottom_step
        values[f"turn_step_{key}"] = float(turning.median()) if len(turning) else math.nan
        recovered = rows.recovered_step.dropna()
        values[f"recovery_step_{key}"] = float(recovered.median()) if len(recovered) else math.nan
    for tag, (first, second) in (("p_minus_n", ("GRPO-P", "GRPO-N")), ("gspo_minus_grpo", ("GSPO", "GRPO"))):
        mean, low, high = statistics.mean_interval(paired_final(frame, first, second, largest), INTERVAL_LEVEL)
        values.update({tag: mean, f"{tag}_low": low, f"{tag}_high": high})
    base = frame[(frame.step == 0) & (frame.variant == "GRPO")]
    values["base_pass1"] = float(base[base.k == 1]["pass"].mean())
    values["base_passk"] = float(base[base.k == largest]["pass"].mean())
    values["rare_share"] = float(len(fates) / (len(timing) * config.prompts))
    return values


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def variant_style() -> dict[str, dict]:
    """seaborn's ``palette`` and ``dashes`` for the variants: the colour says which advantages update (all: blue,
    negative only: orange, positive only: green; the base model black), the line the ratio's level (token: solid,
    sequence, GSPO: dashed)."""
    import seaborn as sns

    blue, orange, green = (sns.color_palette("colorblind")[i] for i in (0, 1, 2))
    palette = {"base model": (0.0, 0.0, 0.0), "GRPO": blue, "GRPO-N": orange, "GRPO-P": green, "GSPO": blue,
               "GSPO-N": orange}
    dashes = {name: (4, 2) if name.startswith("GSPO") else "" for name in palette}
    return {"palette": palette, "dashes": dashes, "hue": "variant", "style": "variant"}


def draw_curves(axes, frame: pd.DataFrame) -> None:
    """Two Axes: pass@k against k at the last step for the base model and each variant (mean over the problems,
    95% band), and pass@k − base against k with the zero line (below it: the boundary shrank)."""
    import seaborn as sns

    style = variant_style()
    final = frame[frame.step == frame.step.max()]
    base = frame[(frame.step == 0) & (frame.variant == "GRPO")].assign(variant="base model")
    curves = pd.concat([base, final], ignore_index=True)
    # seed: a fixed bootstrap for the 95% bands, so that every execution draws the same figure
    sns.lineplot(curves, x="k", y="pass", **style, errorbar=("ci", 95), seed=0, ax=axes[0])
    axes[0].legend(loc="lower right", fontsize="small")
    gains = against_base(frame)
    sns.lineplot(gains[gains.step == gains.step.max()], x="k", y="gain", **style,
                 errorbar=("ci", 95), seed=0, ax=axes[1], legend=False)
    axes[1].axhline(0.0, color="black", linewidth=0.8)
    for ax in axes:
        ax.set_xscale("log", base=2)
    axes[0].set(ylabel="pass@k (mean over prompts)")
    axes[1].set(ylabel="pass@k − base model")


def draw_trajectories(axes, frame: pd.DataFrame, largest_k: int) -> None:
    """Two Axes: pass@1 − base and pass@(largest k) − base over the training steps, per variant (mean over the
    problems, 95% band)."""
    import seaborn as sns

    style = variant_style()
    for ax, k in zip(axes, (1, largest_k), strict=True):
        sns.lineplot(boundary_trajectories(frame, k), x="step", y="gain", **style,
                     errorbar=("ci", 95), seed=0, ax=ax, legend=ax is axes[0])
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set(ylabel=f"pass@{k} − base model")


# ----------------------------------------------------------------------------------------------
# The language model: the five variants through TRL, pass@k from sampled counts
# ----------------------------------------------------------------------------------------------


def hard_first(lm_config, checkpoint, validation: list, count: int, samples: int, seed: int,
               device) -> tuple[list, np.ndarray]:
    """The validation problems reordered so that the ``count`` the base model solves least often come first (the
    LM runs estimate pass@k on the first ones), and the base model's correct counts of ``samples`` per problem,
    drawn with their own generator (seed·10⁶ + 7): the runs then measure the base afresh at step 0, so the
    selection's luck does not enter the base curve."""
    from rlvr_dynamics.lm import model as lm_model
    from rlvr_dynamics.lm import scoring

    model, tokenizer = lm_model.load_model(checkpoint, device)
    generator = torch.Generator(device=device).manual_seed(seed * 1_000_000 + 7)
    counts = scoring.correct_counts(model, tokenizer, validation, samples, lm_config.temperature, generator,
                                    lm_config.max_completion_length).cpu().numpy()
    order = np.argsort(counts, kind="stable")
    chosen = set(order[:count].tolist())
    return [validation[i] for i in order[:count]] + [p for i, p in enumerate(validation) if i not in chosen], counts


def lm_variant(run_config) -> str:
    """The variant of one LM run, from its importance-sampling level and advantage filter."""
    sequence = run_config.importance_sampling_level == "sequence"
    names = {("all", False): "GRPO", ("negative", False): "GRPO-N", ("positive", False): "GRPO-P",
             ("all", True): "GSPO", ("negative", True): "GSPO-N"}
    return names[(run_config.advantage_filter, sequence)]


def run_lm_variants(config, folder, train, validation, grpo_seeds: Sequence[int], device) -> dict[int, list]:
    """The five variants (the runs of ``config``, :meth:`BoundaryConfig.lm_config`) from the checkpoint in
    ``folder`` at every GRPO seed, in one pool of worker processes. GRPO seed → runs."""
    return experiment.run_seeds(config, folder, train, validation, list(grpo_seeds), device)


def lm_frames(runs: dict[int, list], ks: Sequence[int], samples: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two long frames over every LM run's validation points: (accuracy and token entropy per variant, GRPO seed
    and step) and (pass@k per variant, GRPO seed, step and k: the mean over the tracked problems of the unbiased
    estimate (BD2) from each problem's correct count of ``samples``)."""
    evals, passes = [], []
    ks = torch.as_tensor(list(ks))
    for grpo_seed, seed_runs in runs.items():
        for run in seed_runs:
            variant = lm_variant(run.config)
            frame = run.evals
            evals.append(frame[["step", "accuracy", "entropy"]].assign(variant=variant, grpo_seed=grpo_seed))
            for step, counts in zip(frame.step, frame.correct_counts, strict=True):
                estimate = boundary.pass_at_k_unbiased(torch.as_tensor(counts), samples, ks).mean(0)  # (K,)
                passes.append(pd.DataFrame({"k": ks.numpy(), "pass": estimate.numpy(), "step": step,
                                            "variant": variant, "grpo_seed": grpo_seed}))
    return pd.concat(evals, ignore_index=True), pd.concat(passes, ignore_index=True)


def lm_gains(passes: pd.DataFrame) -> pd.DataFrame:
    """pass@k at the last validation point minus at step 0 (the warm-started base model, the same checkpoint for
    every variant), per variant and k: mean [interval] over the GRPO seeds."""
    first = passes[passes.step == 0].set_index(["variant", "grpo_seed", "k"])["pass"]
    last = passes[passes.step == passes.step.max()].set_index(["variant", "grpo_seed", "k"])["pass"]
    gains = (last - first).rename("gain").reset_index()
    return interval_table(gains, "gain", ["variant", "k"])


def lm_entropy_changes(evals: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the token entropy's change from step 0 to the last point and from its lowest point to the
    last (a turn: it fell, then rose), and the accuracy gain — mean [interval] over the GRPO seeds."""
    rows = []
    for (variant, grpo_seed), group in evals.groupby(["variant", "grpo_seed"]):
        group = group.sort_values("step")
        rows.append(dict(variant=variant, grpo_seed=grpo_seed,
                         entropy_change=float(group.entropy.iloc[-1] - group.entropy.iloc[0]),
                         rebound=float(group.entropy.iloc[-1] - group.entropy.min()),
                         accuracy_gain=float(group.accuracy.iloc[-1] - group.accuracy.iloc[0])))
    frame = pd.DataFrame(rows)
    return pd.concat({column: interval_table(frame, column, ["variant"]) for column in
                      ("accuracy_gain", "entropy_change", "rebound")}, axis=1)


CHANGE_COLUMNS = {"accuracy_gain": "accuracy gain", "entropy_change": "entropy change (nats)",
                  "rebound": "entropy rise from its low (nats)"}


def change_cells(changes: pd.DataFrame) -> pd.DataFrame:
    """:func:`lm_entropy_changes` as texts "mean [low, high]" to 3 decimals: variants as rows, one column per
    quantity (:data:`CHANGE_COLUMNS`), so that the table fits the page's column."""
    cells = {label: {variant: "{:.3f} [{:.3f}, {:.3f}]".format(*changes.loc[variant, column])
                     for variant in changes.index} for column, label in CHANGE_COLUMNS.items()}
    return pd.DataFrame(cells)


def lm_glue(gains: pd.DataFrame, changes: pd.DataFrame, config: BoundaryConfig, lm_config) -> dict:
    """The numbers the prose quotes: ``lm_pass1_{variant}``, ``lm_passk_{variant}`` (gains at k = 1 and the
    largest k, with ``_low``, ``_high``), ``lm_entropy_{variant}`` (entropy change), ``lm_rebound_{variant}``
    (its rise from the lowest point to the end), ``lm_acc_{variant}`` (accuracy gain), ``lm_largest_rebound``,
    and the set-up (``lm_largest_k``, ``lm_steps``, ``lm_seeds``, ``lm_problems``, ``lm_iterations``)."""
    largest = int(config.lm_ks[-1])
    values = {"lm_largest_k": largest, "lm_steps": lm_config.steps, "lm_seeds": config.lm_seeds,
              "lm_problems": config.lm_pass_problems, "lm_iterations": config.lm_num_iterations,
              "lm_largest_rebound": float(changes[("rebound", "mean")].max())}
    for key, name in VARIANT_NAMES.items():
        for tag, k in (("pass1", 1), ("passk", largest)):
            row = gains.loc[(name, k)]
            values.update({f"lm_{tag}_{key}": row["mean"], f"lm_{tag}_{key}_low": row["low"],
                           f"lm_{tag}_{key}_high": row["high"]})
        values[f"lm_entropy_{key}"] = float(changes.loc[name, ("entropy_change", "mean")])
        values[f"lm_rebound_{key}"] = float(changes.loc[name, ("rebound", "mean")])
        values[f"lm_acc_{key}"] = float(changes.loc[name, ("accuracy_gain", "mean")])
    return values


def no_turn_margins(changes: pd.DataFrame) -> list[float]:
    """No variant's token entropy turns within the run: ENTROPY_TURN − its mean rise from the lowest point to the
    end (mean over the GRPO seeds), per variant."""
    return [ENTROPY_TURN - float(changes.loc[name, ("rebound", "mean")]) for name in VARIANT_NAMES.values()]


def lm_mean_margins(table: pd.DataFrame, rows: Sequence, sign: int = 1) -> list[float]:
    """The mean over the GRPO seeds of each listed row of an interval table, times ``sign`` (≥ 0: the claim holds)."""
    return [sign * float(table.loc[row, "mean"]) for row in rows]


def draw_lm(axes, evals: pd.DataFrame, passes: pd.DataFrame) -> None:
    """Three Axes: pass@k against k at step 0 (base) and at the last point per variant; token entropy and
    sampled accuracy over the steps (mean over the GRPO seeds, band from the smallest to the largest value)."""
    import seaborn as sns

    style = variant_style()
    base = passes[(passes.step == 0) & (passes.variant == "GRPO")].assign(variant="base model")
    final = passes[passes.step == passes.step.max()]
    sns.lineplot(pd.concat([base, final], ignore_index=True), x="k", y="pass", **style,
                 errorbar=("pi", 100), ax=axes[0])
    axes[0].set_xscale("log", base=2)
    axes[0].set(ylabel="pass@k (mean over problems)")
    for ax, y, label in ((axes[1], "entropy", "mean token entropy (nats)"),
                         (axes[2], "accuracy", "sampled validation accuracy")):
        sns.lineplot(evals, x="step", y=y, **style, errorbar=("pi", 100), marker="o", ax=ax,
                     legend=False)
        ax.set(ylabel=label)


# ----------------------------------------------------------------------------------------------
# The recorded long run (the `ci` preset with longer training; the chapter shows it beside its own)
# ----------------------------------------------------------------------------------------------

LONG_RUN = {"steps": 3000, "seeds": 32, "lm_steps": 400, "lm_eval_every": 50}
"""What the recorded long run changes in the ``ci`` preset: three times the exact model's steps on 32 problems, ten
times the language model's steps (on CPU; the ``paper`` preset's language model is the Figure-2 chapter's 25 M-
parameter model, for a GPU)."""

LONG_RECORD = Path("data") / "boundary" / "long-run.json"
"""The record of the long run (relative to the repository root), written by :func:`write_long_record`:
``rlvr-book run boundary -p steps 3000 -p seeds 32 -p lm_steps 400 -p lm_eval_every 50 --output DIR``, then
``python -m rlvr_dynamics.chapters.boundary DIR``."""

LONG_FIGURE = "long-run-lm.png"
"""The long run's language-model figure, copied beside the record (its ``boundary_lm.png``)."""

_LONG_FIELDS = {"device": str, "date": str, "command": str, "seed": int, "run_seconds": float, "versions": dict,
                "parameters": dict, "headline": dict}


def long_run_command(folder: str | Path) -> str:
    """The command that makes the long run into ``folder``."""
    overrides = " ".join(f"-p {name} {value}" for name, value in LONG_RUN.items())
    return f"rlvr-book run boundary {overrides} --output {folder}"


def write_long_record(run_folder: str | Path, destination: str | Path, command: str, date: str) -> Path:
    """The record of one execution (``run_folder``: the output folder of :func:`long_run_command`, with its
    ``metrics.json`` and ``boundary_lm.png``): device, date, versions, command, seed, parameters, run time and
    headline, and the language-model figure copied beside it as :data:`LONG_FIGURE`."""
    import shutil

    metrics = json.loads((Path(run_folder) / "metrics.json").read_text(encoding="utf-8"))
    record = {"device": str(metrics["device"]), "date": date, "command": command, "seed": int(metrics["seed"]),
              "run_seconds": float(metrics["run_seconds"]), "versions": metrics["versions"],
              "parameters": metrics["parameters"], "headline": metrics["headline"]}
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(run_folder) / "boundary_lm.png", destination.parent / LONG_FIGURE)
    destination.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    return destination


def long_record_figure(path: str | Path | None = None) -> Path:
    """The long run's language-model figure beside its record (default :data:`LONG_RECORD`); a ``ValueError`` when
    it is missing."""
    figure = (project_root() / LONG_RECORD if path is None else Path(path)).parent / LONG_FIGURE
    if not figure.is_file():
        raise ValueError(f"{figure}: the long run's figure is missing (write_long_record copies it)")
    return figure


def read_long_record(path: str | Path | None = None) -> dict:
    """The recorded long run (default :data:`LONG_RECORD` under the repository root), checked whole: a
    ``ValueError`` names a missing file, a missing or mistyped field, or parameters that differ from the ``ci``
    preset with :data:`LONG_RUN` as the chapter defines them now (a stale record)."""
    path = project_root() / LONG_RECORD if path is None else Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no recorded long run (see boundary.LONG_RECORD for the command)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    check_fields(record, _LONG_FIELDS, str(path))
    expected = PRESETS["ci"] | LONG_RUN
    different = sorted(name for name, value in expected.items() if record["parameters"].get(name) != value)
    if different:
        raise ValueError(f"{path}: parameters differ from the 'ci' preset with LONG_RUN: {', '.join(different)}")
    if not {"exact", "lm"} <= set(record["headline"]):
        raise ValueError(f"{path}: the headline lacks 'exact' or 'lm'")
    return record


def long_record_table(record: dict) -> pd.DataFrame:
    """The recorded run per variant: the exact model's pass@1 and pass@(largest k) gains over the base (mean [95%
    interval] over its problems), and the language model's accuracy gain, entropy change and entropy rise from its
    lowest point (mean over its GRPO seeds), as texts to 3 decimals."""
    exact, changes = record["headline"]["exact"], pd.DataFrame(record["headline"]["lm"]["changes"])
    changes = changes.set_index(changes.columns[0])
    largest = exact["largest_k"]

    def cell(name: str) -> str:
        return "{:.3f} [{:.3f}, {:.3f}]".format(exact[name], exact[f"{name}_low"], exact[f"{name}_high"])

    rows = {}
    for key, name in VARIANT_NAMES.items():
        lm = changes.loc[name]
        rows[name] = {"pass@1 gain": cell(f"pass1_{key}"), f"pass@{largest} gain": cell(f"passk_{key}"),
                      "LM accuracy gain": f"{lm[str(('accuracy_gain', 'mean'))]:.3f}",
                      "LM entropy change": f"{lm[str(('entropy_change', 'mean'))]:.3f}",
                      "LM entropy rise from its low": f"{lm[str(('rebound', 'mean'))]:.3f}"}
    return pd.DataFrame(rows).T


def long_record_glue(record: dict) -> dict:
    """The recorded run's numbers for the prose: ``long_steps``, ``long_problems``, ``long_lm_steps``,
    ``long_lm_seeds``, ``long_lm_problems``, ``long_lm_samples``, ``long_minutes``, ``long_device``,
    ``long_passk_{variant}``, ``long_below_{variant}`` and ``long_recovered_{variant}`` (problems below the base
    at the largest k at the end; problems back at the base after a dip), ``long_rebound`` (the largest mean rise
    of an LM variant's entropy from its lowest point), and per variant the language model's mean pass@1 and
    pass@(largest k) gains on the hard problems and entropy change: ``long_lm_pass1_{variant}``,
    ``long_lm_passk_{variant}``, ``long_lm_entropy_{variant}``, with ``long_lm_largest_k``."""
    exact, changes = record["headline"]["exact"], pd.DataFrame(record["headline"]["lm"]["changes"])
    parameters = record["parameters"]
    values = {"long_steps": parameters["steps"], "long_problems": parameters["seeds"],
              "long_lm_steps": parameters["lm_steps"], "long_lm_seeds": parameters["lm_seeds"],
              "long_lm_problems": parameters["lm_pass_problems"], "long_lm_samples": parameters["lm_pass_samples"],
              "long_minutes": record["run_seconds"] / 60,
              "long_device": record["device"], "long_rebound": float(changes[str(("rebound", "mean"))].max())}
    for key in VARIANT_NAMES:
        values.update({f"long_passk_{key}": exact[f"passk_{key}"], f"long_below_{key}": exact[f"below_{key}"],
                       f"long_recovered_{key}": exact[f"recovered_{key}"]})
    gains = pd.DataFrame(record["headline"]["lm"]["gains"]).set_index(["variant", "k"])["mean"]
    largest = int(gains.index.get_level_values("k").max())
    changes = changes.set_index(changes.columns[0])
    values["long_lm_largest_k"] = largest
    for key, name in VARIANT_NAMES.items():
        values.update({f"long_lm_pass1_{key}": float(gains[(name, 1)]),
                       f"long_lm_passk_{key}": float(gains[(name, largest)]),
                       f"long_lm_entropy_{key}": float(changes.loc[name, str(("entropy_change", "mean"))])})
    return values


if __name__ == "__main__":  # python -m rlvr_dynamics.chapters.boundary RUN_FOLDER: record the long run
    import datetime
    import sys

    folder = sys.argv[1]
    print(write_long_record(folder, project_root() / LONG_RECORD, long_run_command(folder),
                            datetime.date.today().isoformat()))
