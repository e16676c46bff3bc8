"""GRPO on a causal LM through TRL's ``GRPOTrainer``, with gradient-gap tracking (Section 5.2).

:func:`gap_tracking_trainer_class` builds a small ``GRPOTrainer`` subclass: it keeps each step's rewards
and group ids next to the completions (TRL shuffles the batch), and after the optimizer step
measures, per step,

(a) **the paper's estimate** of the batch-average gap magnitude, from
    g_GRPO ∝ c_q (g⁺_q − g⁻_q) with c_q = J_q(1 − J_q)/σ_q (σ_q: the reward scale; √(J_q(1−J_q))
    for ``scale_rewards="group"``): ‖Δ‖̂ = ‖∇L‖ / (ℓ · mean_q c_q), where ℓ is the loss's
    token normalisation (see :func:`length_factor`);
(b) **the measured gap** g⁺ − g⁻ (the batch average over prompts with both outcomes), from one
    extra backward pass through the signed, weighted sum of log π(o | q) that TRL's own loss forward
    computed (:func:`gap_from_scores`; no second forward), and every ``per_prompt_every`` steps each
    prompt's own g⁺_q − g⁻_q;

and the alignment of the optimizer's actual update u_k = θ_{k+1} − θ_k with the measured gap:
the paper's inner product Δμ_k = ⟨u_k/‖u_k‖, g⁺ − g⁻⟩ (eq. 12 with η_k = ‖u_k‖) and the cosine.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from rlvr_dynamics.lm.prompt_tracking import PromptTracker
from rlvr_dynamics.lm.scoring import (
    accuracy_standard_error,
    correct_counts,
    sampled_accuracy_and_entropy,
    sequence_log_probs,
)
from rlvr_dynamics.lm.task import Problem, correctness_reward, reward_dataset
from rlvr_dynamics.theory.boundary import IMPORTANCE_LEVELS

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
"""TRL's token aggregations (``GRPOConfig.loss_type``): ``"grpo"`` — per-sequence mean
(Shao et al. 2024); ``"dr_grpo"`` — sum over a constant ``B·max_completion_length`` (Liu et al.
2025, Dr. GRPO); ``"dapo"`` — sum over the active tokens of the batch (Yu et al. 2025, DAPO);
``"bnpo"`` — the same over the local batch."""
SCALE_REWARDS = ("group", "batch", "none")
"""TRL's advantage scaling (``GRPOConfig.scale_rewards``): divide by the group's reward std
(GRPO), by the batch's (PPO-Lite, Hu et al. 2025) or not at all (Dr. GRPO)."""
OPTIMIZERS = {"adamw": "adamw_torch", "sgd": "sgd"}
"""The optimizer: ``"adamw"`` (the paper's runs) or plain ``"sgd"`` (update ∥ gradient)."""
ADVANTAGE_FILTERS = ("all", "negative", "positive")
"""Which completions update the policy: every one (``"all"``, GRPO), only those with a negative
advantage (``"negative"``: GRPO-N, Yao et al.) or only positive ones (``"positive"``). The others
get advantage 0; the loss keeps its normalisation (they still count in the group and the batch).
The paper's estimate (a) assumes every completion updates, so it is recorded only for ``"all"``."""
PROMPT_WEIGHTINGS = ("none", "safe_step")
"""How each prompt's group is weighted in the update: ``"none"`` (TRL's loss as it is) or ``"safe_step"``
(the book's prompt-adaptive rule of the *Many prompts* chapter: Dr. GRPO's advantages r − Ĵ_q of prompt q
times w_q ∝ 1/(Ĵ_q · L̄_q), Ĵ_q the group's success rate and L̄_q its mean completion length, normalised to
mean 1 over the prompts with both outcomes — each prompt then moves along its own gap by its own safe
step (1 − J_q)/T_ψ₁, eq. (21), instead of Dr. GRPO's J_q(1 − J_q), so prompts far from solved are not
damped). It needs ``scale_rewards="none"`` (Dr. GRPO's advantages); use it with ``loss_type="dr_grpo"``."""
LR_SCHEDULES = {"constant": "constant_with_warmup", "cosine": "cosine"}
"""The learning-rate schedule after the linear warm-up of ``lr_warmup_steps``: ``"constant"`` or ``"cosine"`` (decay
to 0 at the last step, the schedule of the paper's Qwen runs); the values are transformers' scheduler names."""
TRACKING = ("off", "estimate", "measured")
"""What to measure per step: nothing, the paper's estimate (a) only, or (a) and (b)."""


@dataclass(frozen=True)
class GRPORunConfig:
    """One GRPO run (TRL ``GRPOConfig`` plus the tracking settings).

    **A step** is one optimizer update (``steps`` of them; TRL's ``max_steps``). With ``num_iterations`` = μ = 1
    (the default) every step generates its own batch of ``completions_per_step`` completions: on-policy, the
    importance ratio is 1 and the clip range ``epsilon``/``epsilon_high`` never acts. With μ > 1 a batch is
    generated every μ steps and trained on for μ consecutive steps (TRL's ``num_iterations`` with
    ``steps_per_generation = 1``, no gradient accumulation; the log-probabilities of the sampling policy θ_old
    are computed once at generation), so the ratio π_θ/π_θ_old moves away from 1 and is clipped to
    [1 − ε, 1 + ε_high] — per token (``importance_sampling_level="token"``, GRPO/PPO) or per response
    (``"sequence"``, GSPO, Zheng et al. 2025: the geometric-mean ratio, :mod:`rlvr_dynamics.theory.boundary`).
    On-policy GSPO's update is GRPO's with ``loss_type="grpo"`` (BD4; tested). A run of K steps then draws
    ⌈K/μ⌉ batches; the advantages (filtered by ``advantage_filter``, weighted by ``prompt_weighting``) are
    fixed at generation and so apply on every re-use. GSPO-N: ``importance_sampling_level="sequence"`` with
    ``advantage_filter="negative"``. The gap tracking assumes one update per generated batch: μ > 1 needs
    ``tracking="off"`` and ``tracked_prompts=0``.

    ``pass_problems`` > 0: at every evaluation point (step 0, every ``eval_every`` steps and the last) the first
    ``pass_problems`` validation problems get ``pass_samples`` completions each, and the evaluation record gains
    ``correct_counts`` (their numbers of correct completions, :func:`~rlvr_dynamics.lm.scoring.correct_counts`;
    pass@k from them with :func:`rlvr_dynamics.theory.boundary.pass_at_k_unbiased`). They are drawn from a
    generator of their own, so they change neither training nor the accuracy readings.
    """

    loss_type: str = "grpo"
    scale_rewards: str = "group"
    learning_rate: float = 3e-4
    lr_warmup_steps: int = 0  # linear learning-rate warm-up, then the schedule (softens Adam's first steps)
    lr_schedule: str = "constant"
    steps: int = 200
    completions_per_step: int = 256  # the batch: prompts per step × num_generations
    num_generations: int = 8  # G, completions per prompt
    max_completion_length: int = 8
    temperature: float = 1.0
    optimizer: str = "adamw"
    advantage_filter: str = "all"
    prompt_weighting: str = "none"
    max_grad_norm: float = 0.0  # 0: no clipping, so the logged gradient is the raw one
    tracking: str = "measured"
    per_prompt_every: int = 10
    tracked_prompts: int = 0  # Theorem 1 per prompt: the first this many validation prompts, every step (0: off)
    tracked_samples: int = 32  # completions of each tracked prompt per step (Ĵ_q and its gap's two sides)
    eval_every: int = 20
    eval_problems: int = 256
    eval_samples: int = 4
    importance_sampling_level: str = "token"  # the ratio's level: "token" (GRPO) or "sequence" (GSPO)
    num_iterations: int = 1  # μ: optimizer steps on each generated batch (1: on-policy, every step generates)
    epsilon: float = 0.2  # clip range of the ratio: [1 − epsilon, 1 + epsilon_high] (inactive when μ = 1)
    epsilon_high: float | None = None  # None: epsilon
    pass_problems: int = 0  # correct counts for pass@k: the first this many validation problems (0: off)
    pass_samples: int = 256  # completions of each of them at every evaluation point

    def check(self) -> None:
        """Raise a ``ValueError`` naming the first bad field."""
        for name, allowed in (("loss_type", LOSS_TYPES), ("scale_rewards", SCALE_REWARDS),
                              ("optimizer", tuple(OPTIMIZERS)), ("tracking", TRACKING),
                              ("advantage_filter", ADVANTAGE_FILTERS), ("prompt_weighting", PROMPT_WEIGHTINGS),
                              ("lr_schedule", tuple(LR_SCHEDULES)),
                              ("importance_sampling_level", IMPORTANCE_LEVELS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} '{value}' is unknown: allowed {', '.join(repr(a) for a in allowed)}")
        if self.prompt_weighting == "safe_step" and self.scale_rewards != "none":
            raise ValueError(f"prompt_weighting 'safe_step' weighs Dr. GRPO's advantages: it needs scale_rewards "
                             f"'none', got '{self.scale_rewards}'")
        if self.num_generations < 2:
            raise ValueError(f"num_generations = {self.num_generations}: GRPO needs at least 2 completions per "
                             "prompt (a group of one has no baseline)")
        if self.completions_per_step % self.num_generations:
            raise ValueError(f"num_generations = {self.num_generations} does not divide completions_per_step = "
                             f"{self.completions_per_step}: every prompt needs a whole group")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations = {self.num_iterations}: must be ≥ 1 (optimizer steps per generated "
                             "batch)")
        if self.num_iterations > 1 and (self.tracking != "off" or self.tracked_prompts):
            raise ValueError(f"num_iterations = {self.num_iterations} re-uses each batch, but the gap tracking assumes "
                             f"one update per batch: set tracking 'off' (got '{self.tracking}') and tracked_prompts 0 "
                             f"(got {self.tracked_prompts})")
        if self.tracked_prompts < 0 or (self.tracked_prompts and self.tracked_samples < 2):
            raise ValueError(f"tracked_prompts = {self.tracked_prompts}, tracked_samples = {self.tracked_samples}: "
                             "need tracked_prompts ≥ 0 and, to track, tracked_samples ≥ 2")
        if self.tracked_prompts and self.tracking != "measured":
            raise ValueError(f"tracked_prompts needs tracking 'measured' (the applied update), got '{self.tracking}'")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon = {self.epsilon}: the clip range [1 − epsilon, 1 + epsilon_high] needs "
                             "0 < epsilon < 1")
        if self.epsilon_high is not None and not self.epsilon_high > 0:
            raise ValueError(f"epsilon_high = {self.epsilon_high}: must be > 0 (None: the same as epsilon)")
        if self.pass_problems < 0 or (self.pass_problems and self.pass_samples < 1):
            raise ValueError(f"pass_problems = {self.pass_problems}, pass_samples = {self.pass_samples}: need "
                             "pass_problems ≥ 0 and, to count, pass_samples ≥ 1")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps = {self.lr_warmup_steps}: must be ≥ 0")
        for name in ("steps", "max_completion_length", "per_prompt_every", "eval_every", "eval_problems",
                     "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be ≥ 1")
        if not (self.learning_rate > 0 and self.temperature > 0 and self.max_grad_norm >= 0):
            raise ValueError("learning_rate and temperature must be > 0 and max_grad_norm ≥ 0")

    @property
    def prompts_per_step(self) -> int:
        return self.completions_per_step // self.num_generations


def reward_scale_factors(rewards: torch.Tensor, scale_rewards: str) -> torch.Tensor:
    """c_q = Cov-weight of (g⁺_q − g⁻_q) in the per-prompt GRPO gradient, for binary rewards.   # (Q,)

    ``rewards`` (Q, G) in {0, 1}. With Ĵ_q the group mean, Σ_i (r_i − Ĵ_q) ∇log π(o_i) / G =
    Ĵ_q(1 − Ĵ_q) (ḡ⁺_q − ḡ⁻_q); dividing by the reward scale σ gives c_q = Ĵ_q(1 − Ĵ_q)/σ —
    √(Ĵ_q(1 − Ĵ_q)) for ``"group"`` (the paper's relation), Ĵ_q(1 − Ĵ_q) for ``"none"``.
    """
    success = rewards.double().mean(-1)  # (Q,)
    covariance = success * (1 - success)
    if scale_rewards == "group":
        return covariance / (rewards.double().std(-1, correction=1) + 1e-4)  # TRL: unbiased std, + 1e-4
    if scale_rewards == "batch":
        return covariance / (rewards.double().std(correction=1) + 1e-4)
    if scale_rewards == "none":
        return covariance
    raise ValueError(f"scale_rewards '{scale_rewards}' is unknown: allowed {', '.join(SCALE_REWARDS)}")


def safe_step_weights(rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The ``"safe_step"`` weight of each prompt (:data:`PROMPT_WEIGHTINGS`), eq. (21) per prompt.  (Q, G) → (Q,)

    w_q ∝ 1/(Ĵ_q L̄_q) with Ĵ_q the group's success rate and L̄_q its mean completion length: Dr. GRPO's
    expected part of prompt q is J_q(1 − J_q)(g⁺_q − g⁻_q), the safe step's (1 − J_q)/T_ψ₁ (g⁺_q − g⁻_q).
    Normalised to mean 1 over the prompts with both outcomes; the others get 1 (their advantages are 0)."""
    success = rewards.double().mean(-1)  # (Q,)
    mixed = (success > 0) & (success < 1)
    raw = 1 / (success.clamp_min(1 / rewards.shape[-1]) * lengths.double().mean(-1).clamp_min(1))
    if not bool(mixed.any()):
        return torch.ones_like(success)
    return torch.where(mixed, raw / raw[mixed].mean(), 1.0)


def length_factor(completion_mask: torch.Tensor, loss_type: str, max_completion_length: int) -> float:
    """ℓ: how the loss scales a sequence's score ∇log π(o) = Σ_t ∇log π(o_t | …) (uniform-length
    approximation): mean 1/|o| (``grpo``), 1/max_completion_length (``dr_grpo``), 1/mean |o|
    (``dapo``, ``bnpo``)."""
    lengths = completion_mask.sum(-1).double().clamp(min=1)  # (B,)
    if loss_type == "grpo":
        return float((1 / lengths).mean())
    if loss_type == "dr_grpo":
        return 1 / max_completion_length
    if loss_type in ("dapo", "bnpo"):
        return float(1 / lengths.mean())
    raise ValueError(f"loss_type '{loss_type}' is unknown: allowed {', '.join(LOSS_TYPES)}")


def group_identity_sides(model, prompt_ids, prompt_mask, completion_ids, completion_mask, rewards: torch.Tensor,
                         scale_rewards: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides of the per-prompt identity behind the paper's estimate, for one group.   # (D,), (D,)

    Left: the GRPO direction with TRL's advantages, (1/G) Σ_i A_i ∇log π(o_i | q),
    A_i = (r_i − Ĵ)/(σ + 1e-4). Right: c_q (ḡ⁺ − ḡ⁻) with c_q from :func:`reward_scale_factors`.
    ``rewards`` (G,) must contain both outcomes. Sequence-level scores (no token normalisation).
    """
    correct = rewards > 0.5
    if correct.all() or not correct.any():
        raise ValueError("the group needs both a correct and an incorrect completion")
    params = [p for p in model.parameters() if p.requires_grad]
    scores = sequence_log_probs(model, prompt_ids, prompt_mask, completion_ids, completion_mask)  # (G,)
    rewards64 = rewards.double()
    scale = {"group": rewards64.std(correction=1) + 1e-4, "batch": rewards64.std(correction=1) + 1e-4,
             "none": torch.tensor(1.0, dtype=torch.float64)}[scale_rewards]
    advantages = (rewards64 - rewards64.mean()) / scale
    left = _flat(torch.autograd.grad((advantages.to(scores) * scores).mean(), params, retain_graph=True,
                                     allow_unused=True), params)
    gap = _flat(torch.autograd.grad(scores[correct].mean() - scores[~correct].mean(), params, allow_unused=True),
                params)
    right = reward_scale_factors(rewards64.view(1, -1), scale_rewards)[0] * gap
    return left, right


def batch_gap(model, batch, signed_weights: torch.Tensor, params, temperature: float = 1.0) -> torch.Tensor:
    """ḡ⁺ − ḡ⁻ = ∇ Σ_i (w⁺_i − w⁻_i) log π(o_i | q_i): the gap is the gradient of one signed, weighted sum
    of sequence log-probabilities (:func:`outcome_weights`), so one backward pass gives it — not one
    for ḡ⁺ and one for ḡ⁻. ``signed_weights`` (B,); returns the flat gap in float64.          # (P,)

    This is the stand-alone form (its own forward); the trainer takes the gap from TRL's forward
    instead (:func:`gap_from_scores`). ``temperature``: the policy's (TRL's loss scores at it)."""
    scores = sequence_log_probs(model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
                                batch["completion_mask"], temperature)  # (B,)
    return gap_from_scores(scores, signed_weights, params)


def gap_from_scores(scores: torch.Tensor, signed_weights: torch.Tensor, params, retain_graph: bool = False
                    ) -> torch.Tensor:
    """ḡ⁺ − ḡ⁻ from sequence log-probabilities ``scores`` (B,) still attached to their graph: one backward
    of Σ_i (w⁺_i − w⁻_i) log π(o_i | q_i). ``retain_graph`` keeps the graph for a later backward (the
    loss's, when the scores come from TRL's forward). Returns the flat gap in float64.       # (P,)"""
    objective = (signed_weights.to(scores) * scores).sum()
    return _flat(torch.autograd.grad(objective, params, retain_graph=retain_graph, allow_unused=True), params)


def _flat(tensors, params) -> torch.Tensor:
    return torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1).double()
                      for t, p in zip(tensors, params, strict=True)])


WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""Where launchers put the number of processes: torchrun / ``accelerate launch`` (``WORLD_SIZE``), MPI."""


def world_size() -> int:
    """The number of training processes: ``torch.distributed``'s once it is initialised, else what a launcher
    put in the environment (:data:`WORLD_SIZE_VARIABLES`), else 1 (a plain ``python``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    for name in WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{name}={value!r} in the environment is not a number of processes")
            return int(value)
    return 1


def per_process_batch_size(completions_per_step: int, num_generations: int, processes: int) -> int:
    """Each process's share of the step's batch (TRL's ``per_device_train_batch_size``): the global batch stays
    ``completions_per_step`` whatever the number of processes, and every process holds whole groups of G."""
    if processes < 1:
        raise ValueError(f"processes = {processes}: must be ≥ 1")
    if completions_per_step % processes:
        raise ValueError(f"completions_per_step = {completions_per_step} is not divisible by the {processes} "
                         "processes: each process generates an equal share of the batch")
    share = completions_per_step // processes
    if share % num_generations:
        raise ValueError(f"completions_per_step / processes = {share} is not a multiple of num_generations = "
                         f"{num_generations}: each process must hold whole groups")
    return share


def _distributed() -> bool:
    """True in a process group of more than one process (DDP); every helper below is the identity otherwise."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def _all_reduce_sum(value):
    """Σ over the processes of a tensor or a number (same type back); ``value`` itself in one process."""
    if not _distributed():
        return value
    tensor = torch.as_tensor(value).clone()
    torch.distributed.all_reduce(tensor)
    return tensor if isinstance(value, torch.Tensor) else tensor.item()


def _all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's rows, in process order: (n, …) → (processes · n, …) (n equal on every process; a
    second dimension of different widths is right-padded with 0 first); ``tensor`` itself in one process."""
    if not _distributed():
        return tensor
    tensor = tensor.contiguous()
    if tensor.dim() > 1:
        width = int(_all_reduce_max(torch.tensor(tensor.shape[1])))
        tensor = torch.nn.functional.pad(tensor, (0, 0) * (tensor.dim() - 2) + (0, width - tensor.shape[1]))
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, tensor)
    return torch.cat(parts)


def _all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if not _distributed():
        return tensor
    tensor = tensor.clone()
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return tensor


def _global_means(*columns: torch.Tensor) -> list[float] | None:
    """The mean of each (n,) column over every process's rows (n may differ, and be 0, per process); ``None``
    when no process has a row. In one process: ``column.mean()``."""
    if not _distributed():
        return [float(c.double().mean()) for c in columns] if len(columns[0]) else None
    sums = _all_reduce_sum(torch.stack([*(c.double().sum() for c in columns),
                                        torch.tensor(float(len(columns[0])), dtype=torch.float64)]))
    return None if float(sums[-1]) == 0 else [float(s / sums[-1]) for s in sums[:-1]]


def outcome_weights(rewards: torch.Tensor, groups: torch.Tensor, mixed_total: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights that turn Σ_i w_i log π(o_i) into the batch-average ḡ⁺ and ḡ⁻ over *mixed* prompts.

    ``rewards`` (B,), ``groups`` (B,) prompt ids. A prompt is mixed when its group has both a
    correct and an incorrect completion (g⁺_q and g⁻_q are both estimable). Returns
    ``(w_plus, w_minus, mixed_groups)``: w⁺_i = 1/(n⁺_q · Q_mixed) on correct rows of mixed
    prompts, likewise w⁻ on incorrect rows.                                             # (B,), (B,), (Q_mixed,)

    ``mixed_total``: Q_mixed when these rows are one process's share of a larger batch (the count over
    all processes; default this batch's): each process's Σ_i w_i ∇log π(o_i) is then its share of the
    batch average, and the shares sum to it.
    """
    correct = rewards > 0.5
    ids = torch.unique(groups)
    n_plus = torch.stack([(correct & (groups == q)).sum() for q in ids])
    n_all = torch.stack([(groups == q).sum() for q in ids])
    mixed = ids[(n_plus > 0) & (n_plus < n_all)]
    w_plus, w_minus = torch.zeros_like(rewards, dtype=torch.float64), torch.zeros_like(rewards, dtype=torch.float64)
    for q in mixed:
        rows = groups == q
        w_plus[rows & correct] = 1.0 / int((rows & correct).sum())
        w_minus[rows & ~correct] = 1.0 / int((rows & ~correct).sum())
    count = len(mixed) if mixed_total is None else mixed_total
    if count < len(mixed):
        raise ValueError(f"mixed_total = {mixed_total} is less than this batch's {len(mixed)} mixed prompts")
    if count:
        w_plus, w_minus = w_plus / count, w_minus / count
    return w_plus, w_minus, mixed


@functools.cache
def gap_tracking_trainer_class():
    """The ``GRPOTrainer`` subclass (built on first use: TRL is imported lazily)."""
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    class _Tracker(GRPOTrainer):
        """GRPOTrainer that records the gradient gap and the update alignment every step.

        In one process or several (DDP: ``accelerate launch`` / torchrun; each process generates its own groups
        and DDP averages the gradients), every recorded number is the global batch's: counts and sums are
        all-reduced, so ``step_records`` and ``eval_records`` are identical on every process (except ``seconds``,
        each process's own clock). Validation runs on every process with the same generator seed and the same
        (DDP-synchronised) weights, so it draws the same samples. Reading full gradients and parameters, the
        tracking does not support DeepSpeed ZeRO or FSDP (sharded parameters)."""

        def __init__(self, *args, run_config: GRPORunConfig, validation: list[Problem], eval_generator,
                     **kwargs):
            super().__init__(*args, **kwargs)
            if run_config.tracking != "off" and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
                raise ValueError(f"tracking '{run_config.tracking}' reads whole gradients and parameters: it supports "
                                 "one process or DDP, not DeepSpeed ZeRO or FSDP (use tracking 'off')")
            self.run_config = run_config
            self.validation = validation
            self.eval_generator = eval_generator
            self.step_records: list[dict] = []
            self.eval_records: list[dict] = []
            self._pending: dict = {}
            self._theta_before = None
            self._step_started = None
            self._capturing, self._captured_logps, self._shared_gap, self._mixed = False, None, None, None
            self._mixed_total = 0
            self.prompt_tracker = None
            if run_config.tracked_prompts:
                if run_config.tracked_prompts > len(validation):
                    raise ValueError(f"tracked_prompts = {run_config.tracked_prompts}: the validation split has "
                                     f"only {len(validation)} problems")
                generator = torch.Generator(device=self.model.device).manual_seed(eval_generator.initial_seed() + 1)
                self.prompt_tracker = PromptTracker(
                    self.model, self.processing_class, validation[:run_config.tracked_prompts],
                    run_config.tracked_samples, run_config.max_completion_length, run_config.temperature, generator)
            if run_config.pass_problems > len(validation):
                raise ValueError(f"pass_problems = {run_config.pass_problems}: the validation split has only "
                                 f"{len(validation)} problems")
            # the pass counts' own generator: turning them on changes neither training nor the accuracy readings
            self.pass_generator = torch.Generator(device=self.model.device).manual_seed(
                eval_generator.initial_seed() + 2)
            self.add_callback(_StepEnd(self))

        @property
        def _params(self):
            return [p for p in self.model.parameters() if p.requires_grad]

        def _flat_params(self) -> torch.Tensor:
            return torch.cat([p.detach().reshape(-1).double() for p in self._params])

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            # One reward function. TRL gathers every process's rows (in process order); ours are a slice of them.
            start = self.accelerator.process_index * len(prompts)
            self._last_rewards_all = rewards[:, 0].clone()  # (B_all,)
            self._last_rewards = rewards[start:start + len(prompts), 0].clone()  # (B,) this process's rows
            return rewards

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            batch = output["completion_ids"].shape[0]
            if self.run_config.advantage_filter == "negative":  # GRPO-N: positive advantages do not update
                output["advantages"] = output["advantages"].clamp(max=0)
            elif self.run_config.advantage_filter == "positive":
                output["advantages"] = output["advantages"].clamp(min=0)
            first_prompt = self.accelerator.process_index * (batch // self.num_generations)  # globally unique ids
            if self.run_config.prompt_weighting == "safe_step":  # groups are contiguous rows of G completions
                # normalised over every process's prompts; this process takes its own prompts' weights
                grouped = self._last_rewards_all.to(output["advantages"].device).view(-1, self.num_generations)
                lengths = _all_gather(output["completion_mask"].sum(-1)).view(-1, self.num_generations)
                all_weights = safe_step_weights(grouped, lengths).to(output["advantages"].dtype)  # (Q_all,)
                weights = all_weights[first_prompt:first_prompt + batch // self.num_generations]  # (Q,)
                output["advantages"] = output["advantages"] * weights.repeat_interleave(self.num_generations)
            kept = _all_gather(output["advantages"])  # every process's rows
            self._advantage_stats = {"advantage_min": float(kept.min()), "advantage_max": float(kept.max()),
                                     "updating_fraction": float((kept != 0).double().mean())}
            if self.run_config.prompt_weighting == "safe_step":
                self._advantage_stats.update(prompt_weight_min=float(all_weights.min()),
                                             prompt_weight_max=float(all_weights.max()))
            # TRL shuffles the batch before the step: carry each row's reward and prompt id along.
            output["gap_rewards"] = self._last_rewards.to(output["completion_ids"].device)
            output["gap_groups"] = (torch.arange(batch, device=output["completion_ids"].device) // self.num_generations
                                    + first_prompt)
            return output

        def evaluate_accuracy(self, step: int) -> None:
            config = self.run_config
            accuracy, entropy = sampled_accuracy_and_entropy(
                self.model, self.processing_class, self.validation[:config.eval_problems], config.eval_samples,
                config.max_completion_length, self.eval_generator, temperature=config.temperature)
            record = {"step": step, "accuracy": float(accuracy.mean()),
                      "accuracy_se": accuracy_standard_error(accuracy, config.eval_samples),
                      "entropy": float(entropy.mean())}
            if config.pass_problems:
                counts = correct_counts(self.model, self.processing_class, self.validation[:config.pass_problems],
                                        config.pass_samples, config.temperature, self.pass_generator,
                                        config.max_completion_length)
                record["correct_counts"] = counts.tolist()
            self.eval_records.append(record)

        def _get_per_token_logps_and_entropies(self, model, *args, **kwargs):
            logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
            if self._capturing:  # the loss's own forward: keep its graph-attached log-probabilities
                self._captured_logps = logps
            return logps, entropies, aux_loss

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """TRL's loss; with tracking "measured", also (b) ḡ⁺ − ḡ⁻ from the same forward: one extra
            backward through the signed sum of TRL's log-probabilities, keeping the graph for the loss's."""
            measured = self.run_config.tracking == "measured" and torch.is_grad_enabled()
            self._capturing, self._captured_logps, self._shared_gap = measured, None, None
            try:
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                self._capturing = False
            if measured:
                w_plus, w_minus, mixed = outcome_weights(inputs["gap_rewards"], inputs["gap_groups"])
                mixed_total = _all_reduce_sum(len(mixed))  # over every process's prompts
                if mixed_total != len(mixed):  # the average runs over all of them: this process holds its share
                    w_plus, w_minus, _ = outcome_weights(inputs["gap_rewards"], inputs["gap_groups"], mixed_total)
                if len(mixed):
                    scores = (self._captured_logps * inputs["completion_mask"]).sum(-1)  # log π(o_i | q_i)  (B,)
                    self._shared_gap = gap_from_scores(scores, w_plus - w_minus, self._params, retain_graph=True)
                if mixed_total:  # the shares sum to the batch average: the same ḡ⁺ − ḡ⁻ on every process  (P,)
                    share = self._shared_gap if len(mixed) else torch.zeros(
                        sum(p.numel() for p in self._params), dtype=torch.float64, device=self._params[0].device)
                    self._shared_gap = _all_reduce_sum(share)
                self._mixed, self._mixed_total = mixed, mixed_total
                self._captured_logps = None
            return loss

        def training_step(self, model, inputs, num_items_in_batch):
            config = self.run_config
            self._step_started = time.perf_counter()
            if config.tracking == "measured":
                self._theta_before = self._flat_params()
            if self.prompt_tracker is not None:  # Ĵ_q(k) and the completions for Δμ_q(k), at θ_k
                self.prompt_tracker.sample(self.state.global_step)
            loss = super().training_step(model, inputs, num_items_in_batch)
            batch = self._buffered_inputs[0]  # steps_per_generation = 1: this step's completions
            rewards, groups = batch["gap_rewards"], batch["gap_groups"]  # this process's rows
            everyone = _all_gather(rewards), _all_gather(groups)  # every process's rows (the same in one process)
            record = {"reward": float(everyone[0].mean()), **self._advantage_stats}
            if config.tracking != "off":
                record.update(self._estimate(*everyone, _all_gather(batch["completion_mask"])))
            if config.tracking == "measured":
                record.update(self._measure(model, batch, rewards, groups))
            self._pending = record
            return loss

        def _estimate(self, rewards, groups, completion_mask) -> dict:
            """(a): the paper's batch-average gap magnitude from the loss gradient's norm (the DDP-averaged
            gradient; ``rewards``, ``groups``, ``completion_mask``: every process's rows)."""
            config = self.run_config
            grad_norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in self._params if p.grad is not None))
            order = torch.argsort(groups, stable=True)
            grouped = rewards[order].view(-1, self.num_generations)  # (Q, G)
            factor = float(reward_scale_factors(grouped, config.scale_rewards).mean())
            scale = factor * length_factor(completion_mask, config.loss_type, config.max_completion_length)
            mixed = ((grouped.sum(-1) > 0) & (grouped.sum(-1) < self.num_generations)).double().mean()
            valid = scale > 0 and config.advantage_filter == "all"
            return {"grad_norm": grad_norm, "mean_scale_factor": factor, "mixed_fraction": float(mixed),
                    "gap_estimate": grad_norm / scale if valid else float("nan")}

        def _measure(self, model, batch, rewards, groups) -> dict:
            """(b): ḡ⁺ − ḡ⁻, taken in :meth:`compute_loss` from TRL's forward; each prompt's own gap
            (a forward and backward per prompt) every ``per_prompt_every`` steps."""
            params = self._params
            mixed, gap = self._mixed, self._shared_gap  # this process's mixed prompts; the global gap
            record = {"mixed_prompts": self._mixed_total}
            self._gaps = None
            if self._mixed_total == 0:
                return record
            loss_gradient = -_flat([p.grad for p in params], params)  # the ascent direction of this step
            record.update(gap_norm=float(gap.norm()),
                          gradient_gap_cosine=float(loss_gradient @ gap / (loss_gradient.norm() * gap.norm() + 1e-300)))
            per_prompt = None
            if (self.state.global_step + 1) % self.run_config.per_prompt_every == 0:  # this process's prompts
                model, per_prompt = self.accelerator.unwrap_model(model), []  # not through DDP: no synchronisation
                for q in mixed:
                    rows = groups == q
                    sub = {k: batch[k][rows] for k in ("prompt_ids", "prompt_mask", "completion_ids",
                                                       "completion_mask")}
                    correct = rewards[rows] > 0.5
                    s = sequence_log_probs(model, sub["prompt_ids"], sub["prompt_mask"], sub["completion_ids"],
                                           sub["completion_mask"], self.run_config.temperature)  # the trained π
                    objective = s[correct].mean() - s[~correct].mean()
                    per_prompt.append(_flat(torch.autograd.grad(objective, params, allow_unused=True), params))
                per_prompt = torch.stack(per_prompt) if per_prompt else gap.new_zeros((0, gap.numel()))  # (Q_mixed, P)
            self._gaps = (gap, per_prompt)
            return record

        def finish_step(self, step: int) -> None:
            record = {"step": step, **self._pending}
            if self.run_config.tracking == "measured":
                update = self._flat_params() - self._theta_before  # u_k = θ_{k+1} − θ_k
                step_length = float(update.norm())  # η_k
                record["step_length"] = step_length
                if self.prompt_tracker is not None:
                    self.prompt_tracker.inner_products(self._theta_before, update)
                    if step == self.run_config.steps:
                        self.prompt_tracker.sample(step)  # Ĵ_q(K)
                if self._gaps is not None and step_length > 0:
                    direction = update / step_length  # w_k
                    gap, per_prompt = self._gaps
                    record["alignment"] = float(direction @ gap)  # Δμ_k = ⟨w_k, g⁺ − g⁻⟩
                    record["alignment_cosine"] = record["alignment"] / (float(gap.norm()) + 1e-300)
                    if per_prompt is not None:
                        aligned = per_prompt @ direction  # (Q_mixed,) this process's prompts; means over all
                        means = _global_means(aligned, (aligned > 0).double(), per_prompt.norm(dim=-1))
                        if means is not None:
                            record.update(prompt_alignment_mean=means[0], prompt_alignment_positive=means[1],
                                          prompt_gap_norm_mean=means[2])
            record["seconds"] = time.perf_counter() - self._step_started
            self.step_records.append(record)
            if step % self.run_config.eval_every == 0 or step == self.run_config.steps:
                self.evaluate_accuracy(step)

    class _StepEnd(TrainerCallback):
        def __init__(self, trainer):
            self.trainer = trainer

        def on_train_begin(self, args, state, control, **kwargs):
            self.trainer.evaluate_accuracy(0)

        def on_step_end(self, args, state, control, **kwargs):
            self.trainer.finish_step(state.global_step)

    return _Tracker


@dataclass
class GRPORun:
    """A finished run: per-step records, validation accuracy every ``eval_every`` steps, timing."""

    config: GRPORunConfig
    steps: pd.DataFrame
    evals: pd.DataFrame
    seconds: float
    meta: dict = field(default_factory=dict)
    prompts: pd.DataFrame = field(default_factory=pd.DataFrame)  # PromptTracker.frame(), when prompts were tracked

    def cumulative(self) -> pd.DataFrame:
        """The cumulative gap of each reading at every step, joined with validation accuracy.

        * ``estimate``: Σ η_k ‖Δ‖̂_k — the paper's estimate (a), alignment assumed 1;
        * ``measured_magnitude``: Σ η_k ‖g⁺ − g⁻‖_k — measured magnitude, alignment assumed 1;
        * ``measured``: Σ η_k [Δμ_k]_+ — the measured gap and the actual update's alignment;
        * ``path``: Σ η_k — the length of the path, with the measured step lengths.
        """
        steps = self.steps.copy()
        eta = steps.get("step_length", pd.Series(self.config.learning_rate, index=steps.index))
        frame = pd.DataFrame({"step": steps["step"]})
        if "gap_estimate" in steps:
            frame["estimate"] = (eta * steps["gap_estimate"].fillna(0)).cumsum()
        if "gap_norm" in steps:
            frame["measured_magnitude"] = (eta * steps["gap_norm"].fillna(0)).cumsum()
            frame["measured"] = (eta * steps["alignment"].fillna(0).clip(lower=0)).cumsum()
        if "step_length" in steps:
            frame["path"] = eta.cumsum()  # Σ η_k: the distance travelled, whatever the direction
        zero = pd.DataFrame({c: [0.0] for c in frame.columns if c != "step"} | {"step": [0]})
        frame = pd.concat([zero, frame], ignore_index=True)
        return self.evals.merge(frame, on="step", how="left")


def run_grpo(model, tokenizer, train: list[Problem], validation: list[Problem], config: GRPORunConfig, seed: int,
             device: str = "cpu", progress: bool = False, output_dir: str | None = None,
             configure=None) -> GRPORun:
    """Train ``model`` (in place) with TRL GRPO on ``train``; track the gap; evaluate on ``validation``.

    TRL seeds the global RNG from ``seed`` (``transformers.set_seed``; seed + process index under a
    launcher) for its sampling; the validation samples use a private generator seeded with ``seed``.
    ``configure``: called with the built trainer before training (e.g. to add a callback).
    """
    from transformers import PrinterCallback, ProgressCallback

    with tempfile.TemporaryDirectory() as scratch, _trl_deprecations_silenced():
        trainer = build_trainer(model, tokenizer, train, validation, config, seed, device, output_dir or scratch,
                                progress)
        if not progress:  # no log dicts or bars in the caller's output (timings would differ run to run)
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
        if configure is not None:
            configure(trainer)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    prompts = trainer.prompt_tracker.frame() if trainer.prompt_tracker is not None else pd.DataFrame()
    return GRPORun(config, pd.DataFrame(trainer.step_records), pd.DataFrame(trainer.eval_records), seconds,
                   meta={"config": asdict(config), "seed": seed, "device": str(device)}, prompts=prompts)


@contextlib.contextmanager
def _trl_deprecations_silenced():
    """transformers 5 deprecates the name gradient_checkpointing, which TRL's config sets and its trainer reads
    every step: that FutureWarning is silenced for the block (no global change)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        yield


def build_trainer(model, tokenizer, train: list[Problem], validation: list[Problem], config: GRPORunConfig, seed: int,
                  device: str, output_dir: str, progress: bool = False):
    """The gap-tracking ``GRPOTrainer`` for one run (not yet trained): TRL's ``GRPOConfig`` from ``config``,
    no KL term, no gradient clipping unless ``max_grad_norm`` > 0; one optimizer step per TRL step (no gradient
    accumulation, ``steps_per_generation = 1``), a batch generated every ``num_iterations`` steps and trained on
    that many times (1: every completion scored once, the ratio is 1 and its clip range inactive); the ratio at
    ``importance_sampling_level`` (GRPO or GSPO). ``progress``: TRL's progress bar. Under a launcher of N
    processes (:func:`world_size`) each generates completions_per_step / N."""
    from trl import GRPOConfig

    config.check()
    with _trl_deprecations_silenced():
        args = GRPOConfig(
            output_dir=output_dir, max_steps=config.steps, learning_rate=config.learning_rate,
            lr_scheduler_type=LR_SCHEDULES[config.lr_schedule], warmup_steps=config.lr_warmup_steps, weight_decay=0.0,
            optim=OPTIMIZERS[config.optimizer],
            max_grad_norm=config.max_grad_norm,
            per_device_train_batch_size=per_process_batch_size(config.completions_per_step, config.num_generations,
                                                               world_size()),
            gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=config.num_iterations,
            importance_sampling_level=config.importance_sampling_level, epsilon=config.epsilon,
            epsilon_high=config.epsilon_high,
            num_generations=config.num_generations, max_completion_length=config.max_completion_length,
            temperature=config.temperature, top_p=1.0, top_k=0, beta=0.0, loss_type=config.loss_type,
            scale_rewards=config.scale_rewards, bf16=False, fp16=False, gradient_checkpointing=False,
            use_cpu=str(device) == "cpu", seed=seed, data_seed=seed, save_strategy="no", report_to="none",
            logging_steps=max(config.steps, 1), disable_tqdm=not progress, dataloader_num_workers=0,
            log_completions=False)
        eval_generator = torch.Generator(device=device).manual_seed(seed)
        return gap_tracking_trainer_class()(
            model=model, reward_funcs=correctness_reward, args=args, train_dataset=reward_dataset(train),
            processing_class=tokenizer, run_config=config, validation=validation, eval_generator=eval_generator)
