"""The softmax bandit of the two-stage paper: group policy-gradient updates, sampled and exact.

Companion paper: Yao et al., *The Debate on RLVR Reasoning Capability Boundary: Shrinkage,
Expansion, or Both? A Two-Stage Dynamic View*. Only its summary is available, so the lemma, the
expected update and the time scales below are derived in the book's chapter *Two-stage dynamics
and negative-only gradients*; equation labels (TS1)–(TS6) refer to that chapter.

**Policy.** One prompt, V actions (tokens), free logits z ∈ R^V, π = softmax(z). Action v has the
reward level r_v ∈ [0, 1]: paid as is (``reward_model="deterministic"``) or as a verifier that
returns 1 with probability r_v (``"bernoulli"``). The bandit has three classes of actions: one
*optimal* action O (reward r_O), ``high_actions`` explored high-reward actions H (r_H) and the
remaining low-reward actions L (r_L), with r_L < r_H < r_O.

**Update** (one step; G rollouts a_1..a_G ~ π with rewards ρ_i; step size η):

    z ← z + (η/G) Σ_i φ(A_i) (e_{a_i} − π),      A_i = (ρ_i − ρ̄) / (s + ε)   or   ρ_i − ρ̄,

with s the unbiased group std (``scale="group"``, GRPO; ε = 1e-4 as in TRL) or no scaling
(``"none"``, Dr. GRPO), and φ the advantage filter of the variant (:data:`SIGN_VARIANTS`). The
vector e_a − π is ∇_z log π(a) (Lemma 1, (TS1), :mod:`rlvr_dynamics.theory.logit_dynamics`).

**Batching.** Every run is a row of a (B, V) logit tensor with its own rewards, variant, scaling
and step size, so a whole figure (seeds × initial probabilities × variants) is one tensor
program on CPU or GPU: per step O(B·(V + G)) for the sampled update and O(B·V·m·C) for the exact
expected update (m reward levels, C = C(G−1+m−1, m−1) group compositions; m = 3 or 2).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from rlvr_dynamics.config import check_choice
from rlvr_dynamics.devices import resolve_device
from rlvr_dynamics.engines.records import Record
from rlvr_dynamics.theory.estimators import GRPO_STD_EPSILON
from rlvr_dynamics.theory.logit_dynamics import SCALES

SIGN_VARIANTS = ("grpo", "grpo_n", "grpo_p")
"""The advantage filter φ of the update:

- ``"grpo"``: every rollout updates, φ(A) = A;
- ``"grpo_n"``: only negative-advantage rollouts update, φ(A) = min(A, 0) (GRPO-N, Yao et al.);
- ``"grpo_p"``: only positive-advantage rollouts update, φ(A) = max(A, 0).

The sum is still divided by G (the filtered rollouts count in the group size).
"""


REWARD_MODELS = ("deterministic", "bernoulli")
"""``"deterministic"``: action v pays r_v; ``"bernoulli"``: a verifier pays 1 with probability r_v."""


CLASSES = ("optimal", "high", "low")
"""The action classes, in the order of :attr:`SoftmaxBandit.classes` and of class masses."""


def _per_run(name: str, values, runs: int, allowed: tuple[str, ...]) -> list[str]:
    """One string option per run: a single value is broadcast."""
    values = [values] * runs if isinstance(values, str) else list(values)
    if len(values) != runs:
        raise ValueError(f"{name}: {len(values)} values for {runs} runs")
    for value in values:
        check_choice(name, value, allowed)
    return values


# ----------------------------------------------------------------------------------------------
# The bandit
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftmaxBandit:
    """The three-class softmax bandit: action 0 is optimal, actions 1..high_actions are the
    explored high-reward actions, the rest are low-reward.

    ``class_rewards`` (B, 3): (r_O, r_H, r_L) of each run (one row broadcasts to every run).
    """

    actions: int
    high_actions: int
    class_rewards: torch.Tensor  # (B, 3) or (1, 3)

    def __post_init__(self) -> None:
        if self.actions < 3:
            raise ValueError(f"actions = {self.actions}: the bandit needs at least 3 (optimal, high, low)")
        if not 1 <= self.high_actions <= self.actions - 2:
            raise ValueError(f"high_actions = {self.high_actions}: allowed 1 ≤ high_actions ≤ actions − 2 = "
                             f"{self.actions - 2}")
        r = self.class_rewards
        if r.ndim != 2 or r.shape[-1] != 3:
            raise ValueError(f"class_rewards must have shape (B, 3), got {tuple(r.shape)}")
        if not ((r >= 0) & (r <= 1)).all():
            raise ValueError("class rewards must lie in [0, 1]")
        if not ((r[:, 2] < r[:, 1]) & (r[:, 1] < r[:, 0])).all():
            raise ValueError("class rewards must satisfy r_low < r_high < r_optimal")

    @property
    def classes(self) -> torch.Tensor:
        """Class index of every action (0 optimal, 1 high, 2 low).                             # (V,)"""
        index = torch.full((self.actions,), 2, dtype=torch.long, device=self.class_rewards.device)
        index[0] = 0
        index[1:1 + self.high_actions] = 1
        return index

    @property
    def rewards(self) -> torch.Tensor:
        """Reward level r_v of every action.                                                  # (B, V)"""
        return self.class_rewards[:, self.classes]

    def initial_logits(self, optimal_mass, high_mass) -> torch.Tensor:
        """Logits log π₀ with mass ``optimal_mass`` on O, ``high_mass`` spread evenly over H and the
        rest spread evenly over L. Scalars or (B,) tensors.                                    # (B, V)"""
        dtype, device = self.class_rewards.dtype, self.class_rewards.device
        p_o = torch.as_tensor(optimal_mass, dtype=dtype, device=device).reshape(-1, 1)
        p_h = torch.as_tensor(high_mass, dtype=dtype, device=device).reshape(-1, 1)
        p_o, p_h = torch.broadcast_tensors(p_o, p_h)
        p_l = 1 - p_o - p_h
        if not ((p_o > 0) & (p_h > 0) & (p_l > 0)).all():
            raise ValueError("initial masses must be positive with optimal_mass + high_mass < 1")
        low_actions = self.actions - 1 - self.high_actions
        per_class = torch.cat([p_o, p_h / self.high_actions, p_l / low_actions], dim=1)  # (B, 3)
        return per_class.log()[:, self.classes]

    def class_mass(self, probs: torch.Tensor) -> torch.Tensor:
        """Probability mass of each class. probs (..., V) → (..., 3)."""
        one_hot = torch.nn.functional.one_hot(self.classes, 3).to(probs.dtype)  # (V, 3)
        return probs @ one_hot

    def repeat(self, runs: int) -> SoftmaxBandit:
        """The same bandit with its reward rows broadcast to ``runs`` rows."""
        if self.class_rewards.shape[0] not in (1, runs):
            raise ValueError(f"{self.class_rewards.shape[0]} reward rows cannot cover {runs} runs")
        return SoftmaxBandit(self.actions, self.high_actions, self.class_rewards.expand(runs, 3))


# ----------------------------------------------------------------------------------------------
# The sampled group update
# ----------------------------------------------------------------------------------------------


def _run_flags(runs: int, scales, variants, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-run switches as (B, 1) bool tensors: divide by the group std, keep negative
    advantages, keep positive advantages. One string applies to every run."""
    def flags(name, values, allowed, predicate):
        if isinstance(values, str):
            check_choice(name, values, allowed)
            return torch.full((runs, 1), predicate(values), dtype=torch.bool, device=device)
        return torch.tensor([predicate(v) for v in _per_run(name, values, runs, allowed)],
                            device=device).unsqueeze(-1)

    return (flags("scale", scales, SCALES, lambda s: s == "group"),
            flags("variant", variants, SIGN_VARIANTS, lambda v: v in ("grpo", "grpo_n")),
            flags("variant", variants, SIGN_VARIANTS, lambda v: v in ("grpo", "grpo_p")))


def _apply(centred: torch.Tensor, spread: torch.Tensor, flags) -> torch.Tensor:
    """φ(A) from centred rewards, the group spread and the run flags (broadcast over trailing axes)."""
    divide, keep_negative, keep_positive = (f.view(f.shape[0], *([1] * (centred.ndim - 1))) for f in flags)
    advantages = torch.where(divide, centred / spread, centred)
    keep = ((advantages < 0) & keep_negative) | ((advantages > 0) & keep_positive)
    return torch.where(keep, advantages, 0.0)


def filtered_advantages(rewards: torch.Tensor, scales: Sequence[str] | str, variants: Sequence[str] | str,
                     flags=None) -> torch.Tensor:
    """Filtered group advantages φ(A_i). rewards (B, G) → (B, G).

    A_i = (ρ_i − ρ̄)/(s + ε) with s the unbiased std (``"group"``) or ρ_i − ρ̄ (``"none"``);
    φ per :data:`SIGN_VARIANTS`. A group whose rewards are all equal gets zero advantage. ``flags``:
    precomputed :func:`_run_flags` (the simulation loop passes them).
    """
    runs, group = rewards.shape
    if group < 2:
        raise ValueError(f"group size {group}: a group needs at least 2 rollouts (its mean is the baseline)")
    flags = flags if flags is not None else _run_flags(runs, scales, variants, rewards.device)
    centred = rewards - rewards.mean(-1, keepdim=True)
    spread = rewards.std(-1, correction=1, keepdim=True) + GRPO_STD_EPSILON
    return _apply(centred, spread, flags)


def sampled_logit_update(probs: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                         step_size: torch.Tensor) -> torch.Tensor:
    """(TS3): Δz = (η/G) Σ_i φ(A_i)(e_{a_i} − π), Lemma 1 summed over the group.

    probs (B, V), actions (B, G) long, advantages (B, G) (already filtered), step_size (B,) → (B, V).
    """
    group = actions.shape[-1]
    on_actions = torch.zeros_like(probs).scatter_add_(1, actions, advantages)  # Σ_i φ(A_i) e_{a_i}
    return step_size.unsqueeze(-1) / group * (on_actions - advantages.sum(-1, keepdim=True) * probs)


# ----------------------------------------------------------------------------------------------
# The expected update (their Theorem 1), exactly
# ----------------------------------------------------------------------------------------------


@functools.cache
def _compositions(total: int, parts: int) -> np.ndarray:
    """Every vector of ``parts`` non-negative integers summing to ``total`` (stars and bars). # (C, parts)"""
    rows = []
    for bars in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1,) + bars + (total + parts - 1,)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(parts)])
    return np.array(rows, dtype=np.int64)


def _reward_levels(bandit: SoftmaxBandit, probs: torch.Tensor, reward_model: str):
    """The group's reward levels and how they are drawn.

    Returns ``values`` (B, m), ``level_probs`` (B, m) — the law of one rollout's reward — and
    ``given_action`` (B, V, m) — the law of the reward given the action.
    """
    check_choice("reward_model", reward_model, REWARD_MODELS)
    rewards = bandit.rewards.to(probs)  # (B, V)
    if reward_model == "deterministic":
        values = bandit.class_rewards.to(probs).expand(probs.shape[0], 3)  # levels = class rewards, m = 3
        given_action = torch.nn.functional.one_hot(bandit.classes, 3).to(probs).expand(probs.shape[0], -1, -1)
        return values, bandit.class_mass(probs), given_action
    success = (probs * rewards).sum(-1)  # J
    failure = (probs * (1 - rewards)).sum(-1)  # 1 − J, summed directly (no cancellation near J = 1)
    values = torch.tensor([0.0, 1.0]).to(probs).expand(probs.shape[0], 2)
    given_action = torch.stack([1 - rewards, rewards], dim=-1)  # (B, V, 2)
    return values, torch.stack([failure, success], dim=-1), given_action


def conditional_advantages(logits: torch.Tensor, bandit: SoftmaxBandit, group_size: int, scales, variants,
                           reward_model: str = "deterministic", flags=None) -> torch.Tensor:
    """m_v = E[φ(A_1) | a_1 = v], exactly, by summing over the other G − 1 rollouts' reward counts.

    Given the first rollout's reward ρ₁ and the counts c (multinomial(G − 1, level probabilities)),
    A_1 is a function of (ρ₁, c) only; so m_v = Σ_ρ P(ρ | v) Σ_c P(c) φ(A_1(ρ, c)).   # (B, V)
    """
    if group_size < 2:
        raise ValueError(f"group_size = {group_size}: a group needs at least 2 rollouts")
    runs = logits.shape[0]
    flags = flags if flags is not None else _run_flags(runs, scales, variants, logits.device)
    probs = torch.softmax(logits, dim=-1)
    values, level_probs, given_action = _reward_levels(bandit, probs, reward_model)
    counts = torch.from_numpy(_compositions(group_size - 1, values.shape[1])).to(probs)  # (C, m)
    log_pmf = (math.lgamma(group_size) - torch.lgamma(counts + 1).sum(-1)  # multinomial log-pmf in log space
               + torch.xlogy(counts.unsqueeze(0), level_probs.unsqueeze(1)).sum(-1))  # (B, C)
    pmf = log_pmf.exp()
    others_sum = torch.einsum("cm,bm->bc", counts, values)  # (B, C)
    others_squares = torch.einsum("cm,bm->bc", counts, values**2)
    first = values.unsqueeze(-1)  # (B, m, 1): the first rollout's reward level
    mean = (first + others_sum.unsqueeze(1)) / group_size  # (B, m, C)
    squares = (first**2 + others_squares.unsqueeze(1)) - group_size * mean**2
    spread = (squares.clamp(min=0) / (group_size - 1)).sqrt() + GRPO_STD_EPSILON
    advantage = _apply(first - mean, spread, flags)  # (B, m, C)
    given_level = (advantage * pmf.unsqueeze(1)).sum(-1)  # E[φ(A_1) | ρ₁ = level]  (B, m)
    return torch.einsum("bvm,bm->bv", given_action, given_level)


def expected_logit_update(logits: torch.Tensor, bandit: SoftmaxBandit, group_size: int, step_size, scales,
                          variants, reward_model: str = "deterministic", flags=None) -> torch.Tensor:
    """Their Theorem 1, (TS4): E[Δz] = η π ⊙ (m − ⟨π, m⟩), m from :func:`conditional_advantages`.

    Exchangeability of the G rollouts turns (η/G) E Σ_i φ(A_i)(e_{a_i} − π) into
    η E[φ(A_1)(e_{a_1} − π)]. Unfiltered advantages sum to zero in every group, so then
    ⟨π, m⟩ = E φ(A_1) = 0 and E[Δz_v] = η π_v m_v.                                       # (B, V)
    """
    probs = torch.softmax(logits, dim=-1)
    m = conditional_advantages(logits, bandit, group_size, scales, variants, reward_model, flags)
    eta = torch.as_tensor(step_size, dtype=logits.dtype, device=logits.device).reshape(-1, 1)
    return eta * probs * (m - (probs * m).sum(-1, keepdim=True))


def dr_grpo_expected_update(logits: torch.Tensor, bandit: SoftmaxBandit, group_size: int, step_size) -> torch.Tensor:
    """(TS5): unscaled, unfiltered advantages give E[Δz] = η (1 − 1/G) π ⊙ (r − J) = η (1 − 1/G) ∇_z J,
    for either reward model (only the mean reward of each action enters).                  # (B, V)"""
    probs = torch.softmax(logits, dim=-1)
    rewards = bandit.rewards.to(probs)
    value = (probs * rewards).sum(-1, keepdim=True)
    eta = torch.as_tensor(step_size, dtype=logits.dtype, device=logits.device).reshape(-1, 1)
    return eta * (1 - 1 / group_size) * probs * (rewards - value)


# ----------------------------------------------------------------------------------------------
# The Gradient-Gap view and entropy
# ----------------------------------------------------------------------------------------------


def gradient_gap(probs: torch.Tensor, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """g⁺ − g⁻ in logit coordinates, reading r_v as the success probability of action v (eq. 9 of
    Suk & Duan): ∇_z J = π ⊙ (r − J) and g⁺ − g⁻ = ∇_z J / (J (1 − J)) = ∇_z logit J.

    probs, rewards (B, V) → (gap (B, V), J (B,), 1 − J (B,)); 1 − J is summed directly.
    """
    success = (probs * rewards).sum(-1)
    failure = (probs * (1 - rewards)).sum(-1)
    gap = probs * (rewards - success.unsqueeze(-1)) / (success * failure).unsqueeze(-1)
    return gap, success, failure


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of softmax(z) in nats, from log-probabilities. (..., V) → (...)."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)


# ----------------------------------------------------------------------------------------------
# Trajectories
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trajectories(Record):
    """Recorded every ``record_every`` steps (S records including step 0) for B runs.

    ``class_mass`` (S, B, 3): mass of (optimal, high, low); ``entropy`` (S, B); ``value`` (S, B) = J;
    ``log_odds`` (S, B) = logit J; ``signed_cumulative_alignment`` (S, B) = Σ_k ⟨Δz_k, g⁺ − g⁻⟩ (the
    first-order change of logit J); ``cumulative_gap`` (S, B) = Σ_k η_k [Δμ_k]₊ with η_k = ‖Δz_k‖ and
    Δμ_k = ⟨Δz_k/‖Δz_k‖, g⁺ − g⁻⟩ (eqs. 12–14 of Suk & Duan); ``moving_steps`` and
    ``misaligned_steps`` (S, B): counts of steps with Δz ≠ 0 and with Δμ_k < 0.
    """

    recorded_steps: torch.Tensor
    class_mass: torch.Tensor
    entropy: torch.Tensor
    value: torch.Tensor
    log_odds: torch.Tensor
    signed_cumulative_alignment: torch.Tensor
    cumulative_gap: torch.Tensor
    moving_steps: torch.Tensor
    misaligned_steps: torch.Tensor
    final_logits: torch.Tensor


def simulate(bandit: SoftmaxBandit, initial_logits: torch.Tensor, steps: int, group_size: int, step_size,
             scales, variants, reward_model: str = "deterministic", dynamics: str = "sampled",
             generator: torch.Generator | None = None, record_every: int = 1, device="cpu",
             progress: bool = False) -> Trajectories:
    """Run B independent trajectories at once from ``initial_logits`` (B, V).

    ``dynamics``: ``"sampled"`` draws G rollouts per step with ``generator`` (seeded by the caller)
    and applies (TS3); ``"expected"`` applies the exact expected update (TS4) — the mean-field
    path, deterministic. ``step_size``, ``scales`` and ``variants`` are one value or one per run.
    """
    check_choice("dynamics", dynamics, ("sampled", "expected"))
    check_choice("reward_model", reward_model, REWARD_MODELS)
    if steps < 1 or record_every < 1:
        raise ValueError(f"steps = {steps} and record_every = {record_every} must be ≥ 1")
    if group_size < 2:
        raise ValueError(f"group_size = {group_size}: a group needs at least 2 rollouts")
    if dynamics == "sampled" and generator is None:
        raise ValueError("sampled dynamics need an explicit torch.Generator")
    device = device if isinstance(device, torch.device) else resolve_device(device)
    logits = initial_logits.to(device=device, dtype=torch.float64).clone()
    runs = logits.shape[0]
    bandit = bandit.repeat(runs)
    bandit = SoftmaxBandit(bandit.actions, bandit.high_actions, bandit.class_rewards.to(device, torch.float64))
    flags = _run_flags(runs, scales, variants, device)
    eta = torch.as_tensor(step_size, dtype=torch.float64, device=device).expand(runs).clone()
    rewards = bandit.rewards  # (B, V)
    signed = torch.zeros(runs, dtype=torch.float64, device=device)
    aligned, moving, misaligned = torch.zeros_like(signed), torch.zeros_like(signed), torch.zeros_like(signed)
    records: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("recorded_steps", "class_mass", "entropy", "value", "log_odds", "signed_cumulative_alignment",
                        "cumulative_gap", "moving_steps", "misaligned_steps")}

    def record(step: int, probs: torch.Tensor, success: torch.Tensor, failure: torch.Tensor) -> None:
        records["recorded_steps"].append(torch.tensor(step))
        records["class_mass"].append(bandit.class_mass(probs))
        records["entropy"].append(entropy(logits))
        records["value"].append(success)
        records["log_odds"].append(success.log() - failure.log())
        for key, value in (("signed_cumulative_alignment", signed), ("cumulative_gap", aligned),
                           ("moving_steps", moving), ("misaligned_steps", misaligned)):
            records[key].append(value.clone())

    probs = torch.softmax(logits, dim=-1)
    gap, success, failure = gradient_gap(probs, rewards)
    record(0, probs, success, failure)
    for step in tqdm(range(1, steps + 1), disable=not progress, desc=f"{dynamics} dynamics"):
        if dynamics == "sampled":
            actions = torch.multinomial(probs, group_size, replacement=True, generator=generator)  # (B, G)
            paid = rewards.gather(1, actions)
            if reward_model == "bernoulli":
                draws = torch.rand(paid.shape, dtype=paid.dtype, device=device, generator=generator)
                paid = (draws < paid).to(paid.dtype)
            delta = sampled_logit_update(probs, actions, filtered_advantages(paid, None, None, flags), eta)
        else:
            delta = expected_logit_update(logits, bandit, group_size, eta, None, None, reward_model, flags)
        inner = (delta * gap).sum(-1)  # ⟨Δz_k, g⁺ − g⁻⟩ = η_k Δμ_k
        signed += inner
        aligned += inner.clamp(min=0)
        moved = delta.abs().amax(-1) > 0
        moving += moved
        misaligned += moved & (inner < 0)
        logits += delta
        logits -= logits.amax(-1, keepdim=True)  # a constant shift leaves π unchanged and keeps z bounded
        probs = torch.softmax(logits, dim=-1)
        gap, success, failure = gradient_gap(probs, rewards)
        if step % record_every == 0 or step == steps:
            record(step, probs, success, failure)
    stacked = {k: torch.stack(v) for k, v in records.items()}
    return Trajectories(**stacked, final_logits=logits).to("cpu")
