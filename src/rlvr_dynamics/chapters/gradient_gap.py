"""The Gradient-Gap chapter: random instances and the three-way check of identity (10),
the Monte-Carlo estimator of its right-hand side, and gap alignment (11) of update directions.

Identity (10): ∇_θ J = J (1 − J) (g⁺ − g⁻). Three independent computations:

1. **closed form**: g± from the analytic scores (x ⊗ (e_y − π) for bandits; Σ_t (e_{o_t} − π_t)
   for token policies), then J (1 − J)(g⁺ − g⁻);
2. **autograd**: ∇_θ of J(θ) = Σ_o π_θ(o) r(o) by backpropagation (the left-hand side);
3. **Monte-Carlo**: from n sampled responses, Ĵ(1 − Ĵ)(ĝ⁺ − ĝ⁻) = (1/n) Σ_i (r_i − r̄) ∇log π(o_i),
   whose mean is (1 − 1/n) ∇J; ``n/(n − 1)`` times it is unbiased.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from rlvr_dynamics.config import parameter
from rlvr_dynamics.theory import DTYPE, estimators, gaps
from rlvr_dynamics.theory.policies import (
    BanditInstances,
    TokenPolicy,
    bandit_gradient_gap,
    bandit_log_policy,
    bandit_policy_gradient,
    bandit_scores,
    random_reward,
)


@dataclass(frozen=True)
class GradientGapConfig:
    """Parameters of the chapter *Problem set-up and the Gradient Gap*."""

    bandit_instances: int = parameter("random linear-softmax bandits checked", "int", low=1, high=100_000)
    bandit_dim: int = parameter("context dimension d of the bandits", "int", low=1, high=1_000)
    bandit_arms: int = parameter("number of arms N of the bandits", "int", low=2, high=10_000)
    token_instances: int = parameter("random token-level policies checked", "int", low=1, high=10_000)
    vocab_size: int = parameter("token vocabulary size V, EOS included", "int", low=2, high=16)
    max_length: int = parameter("longest response T (exact enumeration of all responses)", "int", low=1, high=12)
    theta_scale: float = parameter("standard deviation of the random parameters θ", "float", low=1e-6, high=10.0)
    mc_max_samples: int = parameter("largest Monte-Carlo sample size n", "int", low=10_000, high=10_000_000)
    mc_repeats: int = parameter("independent Monte-Carlo estimates for the unbiasedness test", "int", low=1_000,
                                high=1_000_000)
    group_size: int = parameter("group size G of sampled GRPO / Dr. GRPO updates", "int", low=2, high=1_024)
    sampled_groups: int = parameter("sampled groups per instance for the alignment of sampled updates", "int",
                                    low=1, high=1_000_000)

    def check(self) -> None:
        policy = TokenPolicy(self.vocab_size, self.max_length)
        if policy.n_responses > 200_000:
            raise ValueError(
                f"parameters 'vocab_size' = {self.vocab_size} and 'max_length' = {self.max_length} give "
                f"{policy.n_responses} responses to enumerate: allowed at most 200000"
            )
        if self.mc_max_samples > 1_000 * self.mc_repeats * 64:
            raise ValueError(f"parameter 'mc_max_samples' = {self.mc_max_samples} is out of range for "
                             f"mc_repeats = {self.mc_repeats}: allowed mc_max_samples ≤ 64000·mc_repeats")

    def estimated_peak_bytes(self) -> int:
        """The run's peak memory in bytes from its largest float64 tensors (the interpreter and its
        libraries, ≈ 0.4 GB, not included). The checks run one after another, so the peak is the largest
        of them on top of what the chapter keeps. Measured runs of 0.2–2 GB came within ×1.5 of it."""
        n, d, arms = self.bandit_instances, self.bandit_dim, self.bandit_arms
        policy = TokenPolicy(self.vocab_size, self.max_length)
        responses, params = policy.n_responses, policy.n_params
        position_terms = self.max_length * self.vocab_size  # T·V: one softmax row per position
        samples = max(self.mc_max_samples, 2 * self.mc_repeats, self.group_size * self.sampled_groups)
        kept = 8 * 3 * n * d * arms  # θ, ∇J by autograd and by the closed form: (n, d, N) each, kept
        checks = {
            # dense bandit scores (n, N, d·N) of eq. (8) and the GRPO check, plus ~7 (n, d, N) temporaries
            "bandit": 8 * n * d * arms * (arms + 7),
            # scores (n, R, D) of every enumerated response and ~4 per-position (n, R, T, V) terms
            "token": 8 * self.token_instances * responses * (params + 4 * position_terms),
            # the n = 2 enumeration of every response pair: (256, R, D) blocks, twice
            "pairs": 16 * min(responses, 256) * responses * params,
            # sampled responses: scores (n, D) twice and ~3 per-position (n, T, V) terms
            "samples": 8 * samples * (2 * params + 3 * position_terms),
        }
        return kept + max(checks.values())


PRESETS = {
    "ci": dict(bandit_instances=32, bandit_dim=10, bandit_arms=100, token_instances=12, vocab_size=4,
               max_length=5, theta_scale=1.0, mc_max_samples=100_000, mc_repeats=2_000, group_size=8,
               sampled_groups=2_000),
    "paper": dict(bandit_instances=500, bandit_dim=10, bandit_arms=100, token_instances=64, vocab_size=5,
                  max_length=7, theta_scale=1.0, mc_max_samples=1_000_000, mc_repeats=20_000, group_size=8,
                  sampled_groups=20_000),
}


def relative_error(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """‖estimate − reference‖ / ‖reference‖ over the last axis (flattening trailing (d, N))."""
    estimate, reference = estimate.flatten(1), reference.flatten(1)
    return torch.linalg.vector_norm(estimate - reference, dim=-1) / torch.linalg.vector_norm(reference, dim=-1)


# ----------------------------------------------------------------------------------------------
# Linear-softmax bandits
# ----------------------------------------------------------------------------------------------


def bandit_identity(instances: BanditInstances) -> dict[str, torch.Tensor]:
    """Identity (10) on bandits, three computations of ∇J. Each entry (n,) or (n, d, N)."""
    theta, context, reward = instances.theta, instances.context, instances.reward
    log_prob = bandit_log_policy(theta, context)  # (n, N)
    success = gaps.success_probability(log_prob, reward)  # (n,)
    variability = success * (1 - success)
    closed_form = variability[:, None, None] * bandit_gradient_gap(theta, context, reward)  # (n, d, N)
    generic = gaps.policy_gradient_from_gap(log_prob, bandit_scores(theta, context), reward).unflatten(
        -1, theta.shape[-2:]
    )  # (n, d, N) from the dense scores and the generic eq. (8)
    leaf = theta.detach().clone().requires_grad_(True)
    objective = (bandit_log_policy(leaf, context).exp() * reward).sum()  # Σ_n J_n
    (autograd,) = torch.autograd.grad(objective, leaf)
    return {
        "J": success,
        "autograd": autograd,
        "closed_form": closed_form,
        "error_closed_form": relative_error(closed_form, autograd),
        "error_generic": relative_error(generic, autograd),
        "error_eq4": relative_error(bandit_policy_gradient(theta, context, reward), autograd),
    }


# ----------------------------------------------------------------------------------------------
# Token-level policies
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenInstances:
    """n random token-level problems on the same response set.

    theta (n, D), reward (n, R) over the enumerated responses tokens (R, T), lengths (R,).
    """

    policy: TokenPolicy
    theta: torch.Tensor
    reward: torch.Tensor
    tokens: torch.Tensor
    lengths: torch.Tensor


def random_token_policies(policy: TokenPolicy, n: int, theta_scale: float,
                          generator: torch.Generator) -> TokenInstances:
    """θ ~ N(0, scale²) and a random verifier per instance (success fraction ~ U(0.1, 0.9))."""
    device = generator.device
    tokens, lengths = policy.enumerate_responses(device)
    theta = theta_scale * torch.randn(n, policy.n_params, generator=generator, device=device, dtype=DTYPE)
    fractions = 0.1 + 0.8 * torch.rand(n, generator=generator, device=device, dtype=DTYPE)
    reward = torch.stack([random_reward(len(lengths), float(f), generator) for f in fractions])
    return TokenInstances(policy, theta, reward, tokens, lengths)


def token_identity(instances: TokenInstances) -> dict[str, torch.Tensor]:
    """Identity (10) on token-level policies: closed-form scores vs autograd of J(θ)."""
    policy, theta, reward = instances.policy, instances.theta, instances.reward
    log_prob, score = policy.log_prob_and_score(theta, instances.tokens, instances.lengths)  # (n, R), (n, R, D)
    closed_form = gaps.policy_gradient_from_gap(log_prob, score, reward)  # (n, D)
    leaf = theta.detach().clone().requires_grad_(True)
    objective = (policy.log_prob(leaf, instances.tokens, instances.lengths).exp() * reward).sum()
    (autograd,) = torch.autograd.grad(objective, leaf)
    return {
        "J": gaps.success_probability(log_prob, reward),
        "autograd": autograd,
        "closed_form": closed_form,
        "error_closed_form": relative_error(closed_form, autograd),
        "error_eq4": relative_error(gaps.policy_gradient(log_prob, score, reward), autograd),
    }


# ----------------------------------------------------------------------------------------------
# Monte-Carlo
# ----------------------------------------------------------------------------------------------


def sampled_responses(instances: TokenInstances, index: int, n_samples: int, generator: torch.Generator):
    """n responses of instance ``index`` drawn autoregressively, with their scores and rewards.

    Returns score (n, D), reward (n,), lengths (n,).
    """
    policy, theta = instances.policy, instances.theta[index]
    tokens, lengths = policy.sample(theta, n_samples, generator)
    _, score = policy.log_prob_and_score(theta, tokens, lengths)  # (n, D)
    reward = instances.reward[index][policy.response_index(tokens, lengths)]
    return score, reward, lengths


def monte_carlo_gradient(score: torch.Tensor, reward: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Plug-in right-hand side of (10) from samples: Ĵ(1 − Ĵ)(ĝ⁺ − ĝ⁻) = (1/n) Σ (r_i − r̄) s_i.

    score (..., n, D), reward (..., n) → (..., D). Its mean is (1 − 1/n)∇J; ``unbiased`` rescales
    by n/(n − 1). It is the group-mean-baseline (Dr. GRPO) estimator with G = n.
    """
    n = reward.shape[-1]
    estimate = estimators.sampled_direction(score, reward, torch.ones_like(reward), "dr_grpo")
    return estimate * (n / (n - 1)) if unbiased else estimate


def monte_carlo_convergence(
    instances: TokenInstances, index: int, exact: torch.Tensor, sample_sizes: list[int], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Relative error of the unbiased MC estimate against the exact ∇J at growing n (one draw each,
    nested: the first n samples of one long stream)."""
    score, reward, _ = sampled_responses(instances, index, max(sample_sizes), generator)
    errors = [
        relative_error(monte_carlo_gradient(score[:n], reward[:n], unbiased=True)[None], exact[None])[0]
        for n in sample_sizes
    ]
    return {"n": torch.tensor(sample_sizes, dtype=DTYPE), "relative_error": torch.stack(errors)}


def monte_carlo_bias_test(
    instances: TokenInstances, index: int, exact: torch.Tensor, group: int, repeats: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """z-scores of the mean of ``repeats`` independent estimates (n = ``group`` each) against ∇J,
    per parameter coordinate, for the plug-in and the n/(n − 1)-corrected estimator. (D,) each.

    Coordinates whose estimates never vary (parameters no response touches) get z = 0.
    """
    score, reward, _ = sampled_responses(instances, index, group * repeats, generator)
    score, reward = score.unflatten(0, (repeats, group)), reward.unflatten(0, (repeats, group))
    result = {}
    for name, unbiased in (("plug_in", False), ("corrected", True)):
        estimates = monte_carlo_gradient(score, reward, unbiased)  # (repeats, D)
        standard_error = estimates.std(0) / repeats**0.5
        deviation = estimates.mean(0) - exact
        safe_error = torch.where(standard_error > 0, standard_error, 1.0)
        result[name] = torch.where(standard_error > 0, deviation / safe_error, 0.0)
    return result


# ----------------------------------------------------------------------------------------------
# Gap alignment of update directions
# ----------------------------------------------------------------------------------------------


def exact_alignments(instances: TokenInstances, group_size: int) -> dict[str, torch.Tensor]:
    """For each variant: Δμ = w · (g⁺ − g⁻) (eq. 11) of the population direction w = g/‖g‖, its
    cosine with the gap, and ‖g‖ (the effective step per unit learning rate, η_k/α). (n,) each."""
    policy = instances.policy
    log_prob, score = policy.log_prob_and_score(instances.theta, instances.tokens, instances.lengths)
    gap = gaps.gradient_gap(log_prob, score, instances.reward)  # (n, D)
    gap_norm = torch.linalg.vector_norm(gap, dim=-1)
    lengths = instances.lengths.expand_as(log_prob)
    out = {"J": gaps.success_probability(log_prob, instances.reward), "gap_norm": gap_norm}
    for variant in estimators.VARIANTS:
        update = estimators.expected_direction(log_prob, score, instances.reward, lengths, variant, group_size)
        direction, norm = estimators.normalize_direction(update)
        alignment = gaps.gap_alignment(direction, gap)
        out[f"{variant}_alignment"] = alignment
        out[f"{variant}_cosine"] = alignment / gap_norm
        out[f"{variant}_step_per_lr"] = norm
    return out


def sampled_alignments(
    instances: TokenInstances, index: int, group_size: int, n_groups: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Cosine between each sampled one-group update and the exact gap, per variant. (n_groups,) each;
    NaN marks a group whose update is zero (all rewards equal under grpo / dr_grpo)."""
    policy = instances.policy
    log_prob, score_all = policy.log_prob_and_score(instances.theta[index], instances.tokens, instances.lengths)
    reward_all = instances.reward[index]
    gap = gaps.gradient_gap(log_prob, score_all, reward_all)  # (D,)
    success = gaps.success_probability(log_prob, reward_all)
    score, reward, lengths = sampled_responses(instances, index, group_size * n_groups, generator)
    score = score.unflatten(0, (n_groups, group_size))
    reward, lengths = reward.unflatten(0, (n_groups, group_size)), lengths.unflatten(0, (n_groups, group_size))
    out = {}
    for variant in estimators.VARIANTS:
        update = estimators.sampled_direction(score, reward, lengths, variant, success.expand(n_groups))
        direction, norm = estimators.normalize_direction(update)
        cosine = gaps.gap_alignment(direction, gap) / torch.linalg.vector_norm(gap)
        out[variant] = torch.where(norm > 0, cosine, torch.nan)
    return out


def most_balanced_instance(instances: TokenInstances) -> int:
    """Index of the instance whose success rate J is closest to 1/2 (the best-conditioned one for
    sampling checks: both regions are sampled often)."""
    log_prob = instances.policy.log_prob(instances.theta, instances.tokens, instances.lengths)
    return int((gaps.success_probability(log_prob, instances.reward) - 0.5).abs().argmin())


def exact_pair_estimator_mean(instances: TokenInstances, index: int) -> torch.Tensor:
    """E[(1/2) Σ_{i=1,2} (r_i − r̄) s_i] for n = 2 by enumerating all R² ordered pairs. (D,).

    Each pair contributes π(o₁)π(o₂)·(1/4)(r₁ − r₂)(s₁ − s₂); the Monte-Carlo argument says the
    sum is (1 − 1/2)∇J. Computed in row blocks to bound memory.
    """
    policy = instances.policy
    log_prob, score = policy.log_prob_and_score(instances.theta[index], instances.tokens, instances.lengths)
    probs, reward = log_prob.exp(), instances.reward[index]  # (R,), (R,)
    total = torch.zeros(policy.n_params, dtype=score.dtype, device=score.device)
    for start in range(0, len(probs), 256):
        block = slice(start, start + 256)
        weight = probs[block, None] * probs[None, :] * (reward[block, None] - reward[None, :]) / 4  # (b, R)
        difference = score[block, None, :] - score[None, :, :]  # (b, R, D)
        total += torch.einsum("br,brd->d", weight, difference)
    return total


# ----------------------------------------------------------------------------------------------
# The chapter's checks: margins (≥ 0 when the claim holds), headline numbers, tables and summaries
# ----------------------------------------------------------------------------------------------

IDENTITY_TOLERANCE = 1e-10
"""Largest relative error of a float64 closed form against autograd that counts as equal."""
MASS_TOLERANCE = 1e-12
"""Largest |Σ_o π(o) − 1| over the enumerated responses."""
MC_SLOPE_RANGE = (-0.65, -0.35)
"""The fitted log-log slope of the Monte-Carlo error must lie here (theory: −½)."""
MC_STREAMS = 8
"""Independent sample streams whose relative errors are averaged in the convergence check."""
MC_FAMILY_LEVEL = 1e-3
"""Family-wise level of the Bonferroni-corrected z test of unbiasedness."""
VARIANT_NAMES = {"reinforce": "REINFORCE", "grpo": "GRPO", "dr_grpo": "Dr. GRPO"}


def token_scores(instances: TokenInstances) -> tuple[torch.Tensor, torch.Tensor]:
    """log π (n, R) and the scores (n, R, D) of every enumerated response of every instance."""
    return instances.policy.log_prob_and_score(instances.theta, instances.tokens, instances.lengths)


def total_mass_margins(instances: TokenInstances) -> torch.Tensor:
    """MASS_TOLERANCE − |Σ_o π(o) − 1| per instance: the enumeration lists every response. (n,)"""
    log_prob, _ = token_scores(instances)
    return MASS_TOLERANCE - (log_prob.exp().sum(-1) - 1).abs()


def describe_instances(instances: TokenInstances, config: GradientGapConfig) -> str:
    """The sizes of the chapter's two policy families, and how far Σπ is from 1."""
    policy = instances.policy
    log_prob, _ = token_scores(instances)
    return "\n".join([
        f"token policy: V={policy.vocab_size}, T={policy.max_length}, R={policy.n_responses} responses, "
        f"D={policy.n_params} parameters",
        f"bandits: d={config.bandit_dim}, N={config.bandit_arms}, D={config.bandit_dim * config.bandit_arms}",
        f"max |Σπ − 1| = {float((log_prob.exp().sum(-1) - 1).abs().max()):.0e}",
    ])


def identity_margins(bandit: dict[str, torch.Tensor], token: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Identity (10), closed form against autograd, per check: IDENTITY_TOLERANCE − relative error. (n,) each."""
    return {
        "bandits, O(dN) closed form x⊗(π⁺−π⁻)": IDENTITY_TOLERANCE - bandit["error_closed_form"],
        "bandits, generic eq. (8) on dense scores": IDENTITY_TOLERANCE - bandit["error_generic"],
        "token-level policies, closed-form scores": IDENTITY_TOLERANCE - token["error_closed_form"],
    }


def eq4_margins(bandit: dict[str, torch.Tensor], token: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eq. (4) with the exact baseline against autograd, bandits then token policies. (n_b + n_t,)"""
    return IDENTITY_TOLERANCE - torch.cat([bandit["error_eq4"], token["error_eq4"]])


def score_identity_margins(instances: TokenInstances) -> torch.Tensor:
    """Step 2 of the proof of (10), J g⁺ + (1 − J) g⁻ = 0: IDENTITY_TOLERANCE − ‖J g⁺ + (1 − J) g⁻‖/‖g⁺‖. (n,)"""
    log_prob, score = token_scores(instances)
    g_plus, g_minus = gaps.conditional_score_means(log_prob, score, instances.reward)
    success = gaps.success_probability(log_prob, instances.reward)[:, None]  # (n, 1)
    residual = torch.linalg.vector_norm(success * g_plus + (1 - success) * g_minus, dim=-1)
    return IDENTITY_TOLERANCE - residual / torch.linalg.vector_norm(g_plus, dim=-1)


def identity_headline(bandit: dict[str, torch.Tensor], token: dict[str, torch.Tensor]) -> dict[str, float]:
    """The worst relative error of the closed forms, per family."""
    return {
        "identity_worst_relative_error_bandit": float(torch.cat([bandit["error_closed_form"],
                                                                 bandit["error_generic"]]).max()),
        "identity_worst_relative_error_token": float(token["error_closed_form"].max()),
    }


def identity_summary(bandit: dict[str, torch.Tensor], token: dict[str, torch.Tensor]) -> str:
    """The range of J and the order of magnitude of the worst relative error, per family."""
    def below(value: float) -> str:
        return f"below 1e-{-math.floor(math.log10(max(value, 1e-300)))}"

    worst = identity_headline(bandit, token)
    return "\n".join([
        f"success rates J: bandits {float(bandit['J'].min()):.3f} … {float(bandit['J'].max()):.3f}, "
        f"token policies {float(token['J'].min()):.3f} … {float(token['J'].max()):.3f}",
        f"worst relative error, {len(bandit['J'])} bandits: {below(worst['identity_worst_relative_error_bandit'])}",
        f"worst relative error, {len(token['J'])} token policies: "
        f"{below(worst['identity_worst_relative_error_token'])}",
    ])


@dataclass(frozen=True)
class MonteCarloStudy:
    """Check 3 of identity (10) on one instance: the exact n = 2 mean, the n^(−1/2) convergence of
    the corrected estimate, and the z test of unbiasedness (and of the plug-in's bias)."""

    index: int
    value: float
    exact_pair_error: float  # ‖E[plug-in at n = 2] − ½∇J‖/‖∇J‖, by enumeration of every pair
    sizes: list[int]
    relative_error: torch.Tensor  # (len(sizes),), mean over MC_STREAMS streams
    slope: float
    slope_stderr: float
    group: int
    repeats: int
    z_corrected: torch.Tensor  # (D,)
    z_plug_in: torch.Tensor  # (D,)
    z_critical: float

    def pair_margins(self) -> list[float]:
        return [IDENTITY_TOLERANCE - self.exact_pair_error]

    def slope_margins(self) -> list[float]:
        return [self.slope - MC_SLOPE_RANGE[0], MC_SLOPE_RANGE[1] - self.slope]

    def unbiased_margins(self) -> list[float]:
        return [self.z_critical - float(self.z_corrected.abs().max())]

    def bias_detected_margins(self) -> list[float]:
        return [float(self.z_plug_in.abs().max()) - self.z_critical]

    def headline(self) -> dict[str, object]:
        return dict(mc_slope=self.slope, mc_slope_interval=[self.slope - 2 * self.slope_stderr,
                                                            self.slope + 2 * self.slope_stderr],
                    mc_max_abs_z_corrected=float(self.z_corrected.abs().max()),
                    mc_max_abs_z_plug_in=float(self.z_plug_in.abs().max()), mc_z_critical=self.z_critical)

    def summary(self) -> str:
        low, high = self.headline()["mc_slope_interval"]
        return "\n".join([
            f"instance {self.index}: J = {self.value:.3f}",
            f"relative error at n = {self.sizes[0]} … {self.sizes[-1]}: "
            + ", ".join(f"{e:.3f}" for e in self.relative_error.tolist()),
            f"fitted log-log slope {self.slope:.3f} (±2 s.e.: {low:.3f} … {high:.3f}); theory −0.5",
            f"{self.repeats} estimates at n = {self.group}, {int((self.z_corrected != 0).sum())} parameters: "
            f"max |z| corrected {float(self.z_corrected.abs().max()):.2f}, plug-in "
            f"{float(self.z_plug_in.abs().max()):.2f}, bound {self.z_critical:.2f}",
        ])


def monte_carlo_study(instances: TokenInstances, autograd: torch.Tensor, max_samples: int, repeats: int,
                      generator: torch.Generator) -> MonteCarloStudy:
    """Check 3 on the instance whose J is closest to ½ (both regions sampled often). ``autograd``
    (n, D) is ∇J of every instance; draws from ``generator``: the convergence streams, then the
    ``repeats`` groups of n = 2 of the z test."""
    index = most_balanced_instance(instances)
    exact = autograd[index]
    pair_mean = exact_pair_estimator_mean(instances, index)
    pair_error = float(torch.linalg.vector_norm(pair_mean - 0.5 * exact) / torch.linalg.vector_norm(exact))
    sizes = np.unique(np.logspace(2, math.log10(max_samples), 7).astype(int)).tolist()
    curves = [monte_carlo_convergence(instances, index, exact, sizes, generator)["relative_error"]
              for _ in range(MC_STREAMS)]
    relative = torch.stack(curves).mean(0)  # (len(sizes),)
    fit = stats.linregress(np.log(sizes), np.log(relative.cpu().numpy()))
    group = 2  # where the plug-in's bias (1 − 1/n)∇J is largest
    z_scores = monte_carlo_bias_test(instances, index, exact, group, repeats, generator)
    active = int((z_scores["corrected"] != 0).sum())
    z_critical = float(stats.norm.ppf(1 - MC_FAMILY_LEVEL / (2 * active)))
    log_prob = instances.policy.log_prob(instances.theta, instances.tokens, instances.lengths)
    value = float(gaps.success_probability(log_prob, instances.reward)[index])
    return MonteCarloStudy(index, value, pair_error, sizes, relative, fit.slope, fit.stderr, group, repeats,
                           z_scores["corrected"], z_scores["plug_in"], z_critical)


def unit_cosine_margins(exact: dict[str, torch.Tensor], variant: str) -> torch.Tensor:
    """The population direction of ``variant`` is the gap's: IDENTITY_TOLERANCE − |cosine − 1|. (n,)"""
    return IDENTITY_TOLERANCE - (exact[f"{variant}_cosine"] - 1).abs()


def reinforce_step_margins(exact: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eq. (20), REINFORCE form: η/α = J(1 − J)‖g⁺ − g⁻‖. IDENTITY_TOLERANCE − |ratio − 1|. (n,)"""
    value = exact["J"]
    return IDENTITY_TOLERANCE - (exact["reinforce_step_per_lr"] / (value * (1 - value) * exact["gap_norm"]) - 1).abs()


def bandit_grpo_margins(instances: BanditInstances) -> torch.Tensor:
    """GRPO on bandits (|o| = 1): cosine 1 with the gap and ‖g_GRPO‖ = √(J(1 − J))‖g⁺ − g⁻‖. (2n,)"""
    log_prob = bandit_log_policy(instances.theta, instances.context)  # (n, N)
    score = bandit_scores(instances.theta, instances.context)  # (n, N, dN)
    update = estimators.expected_direction(log_prob, score, instances.reward, torch.ones_like(log_prob), "grpo")
    gap = gaps.gradient_gap(log_prob, score, instances.reward)
    value = gaps.success_probability(log_prob, instances.reward)
    direction, norm = estimators.normalize_direction(update)
    gap_norm = torch.linalg.vector_norm(gap, dim=-1)
    return torch.cat([IDENTITY_TOLERANCE - (gaps.gap_alignment(direction, gap) / gap_norm - 1).abs(),
                      IDENTITY_TOLERANCE - (norm / ((value * (1 - value)).sqrt() * gap_norm) - 1).abs()])


def grpo_tilt_margins(exact: dict[str, torch.Tensor]) -> torch.Tensor:
    """GRPO's population direction with varying lengths: 0 < cosine < 1 − 1e-6. min of both sides. (n,)"""
    cosine = exact["grpo_cosine"]
    return torch.minimum(cosine, 1 - 1e-6 - cosine)


def sampled_alignment_cosines(instances: TokenInstances, group_size: int, n_groups: int,
                              generator: torch.Generator) -> dict[str, torch.Tensor]:
    """:func:`sampled_alignments` of every instance in turn: variant → (instances, groups) cosines."""
    per_instance = [sampled_alignments(instances, index, group_size, n_groups, generator)
                    for index in range(len(instances.theta))]
    return {variant: torch.stack([cosines[variant] for cosines in per_instance]) for variant in estimators.VARIANTS}


def alignment_table(exact: dict[str, torch.Tensor], sampled: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Per variant: the exact cosine (min over instances), the mean sampled cosine, P(Δμ > 0 | an
    update) and P(no update)."""
    rows = []
    for variant in ("reinforce", "grpo", "dr_grpo"):
        cosine = sampled[variant]
        updated = ~cosine.isnan()
        rows.append({
            "variant": VARIANT_NAMES[variant],
            "exact cosine (min over instances)": float(exact[f"{variant}_cosine"].min()),
            "sampled cosine (mean)": float(cosine[updated].mean()),
            "P(Δμ > 0 | update)": float((cosine[updated] > 0).double().mean()),
            "P(no update)": float((~updated).double().mean()),
        })
    return pd.DataFrame(rows).set_index("variant")


def alignment_headline(exact: dict[str, torch.Tensor], table: pd.DataFrame) -> dict[str, object]:
    """The table, GRPO's smallest exact cosine, and GRPO's effective step over REINFORCE's at the largest J."""
    top = int(exact["J"].argmax())
    return {"alignment": table.to_dict(orient="index"), "grpo_exact_cosine_min": float(exact["grpo_cosine"].min()),
            "grpo_over_reinforce_step_at_max_J": float(exact["grpo_step_per_lr"][top]
                                                       / exact["reinforce_step_per_lr"][top]),
            "max_J": float(exact["J"][top])}


def alignment_glue(headline: dict[str, object]) -> dict[str, float]:
    """The alignment numbers the prose quotes, from the headline of :func:`alignment_headline`: GRPO's
    smallest exact cosine, its effective step over REINFORCE's at the largest J, each variant's mean
    sampled cosine, the range over variants of P(Δμ > 0 | an update), and P(no update) of GRPO (the
    same groups give no update under Dr. GRPO: all their rewards are equal)."""
    table = headline["alignment"]
    positive = [row["P(Δμ > 0 | update)"] for row in table.values()]
    return {"grpo_cosine_min": headline["grpo_exact_cosine_min"], "max_J": headline["max_J"],
            "grpo_ratio": headline["grpo_over_reinforce_step_at_max_J"],
            "sampled_reinforce": table["REINFORCE"]["sampled cosine (mean)"],
            "sampled_grpo": table["GRPO"]["sampled cosine (mean)"],
            "sampled_dr_grpo": table["Dr. GRPO"]["sampled cosine (mean)"],
            "positive_min": min(positive), "positive_max": max(positive),
            "no_update": table["GRPO"]["P(no update)"]}


def identity_frames(bandit: dict[str, torch.Tensor], token: dict[str, torch.Tensor]
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the figure: every coordinate of both sides of (10) (family, autograd, closed form), and the
    relative error of every instance per check."""
    scatter = pd.concat([
        pd.DataFrame({"autograd ∇J": result["autograd"].flatten().cpu(),
                      "J(1−J)(g⁺−g⁻), closed form": result["closed_form"].flatten().cpu(), "family": family})
        for family, result in (("bandits", bandit), ("token policies", token))
    ])
    errors = pd.concat([
        pd.DataFrame({"relative error": bandit["error_closed_form"].cpu(), "check": "bandit, O(dN) form"}),
        pd.DataFrame({"relative error": bandit["error_generic"].cpu(), "check": "bandit, dense scores"}),
        pd.DataFrame({"relative error": token["error_closed_form"].cpu(), "check": "token policies"}),
    ])
    return scatter, errors


def alignment_frames(exact: dict[str, torch.Tensor], sampled: dict[str, torch.Tensor]
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the figure: the cosine of every sampled update that moved (variant, cosine), and the
    effective step per unit α and gap norm of every exact update (J, η/α, variant)."""
    variants = ("reinforce", "grpo", "dr_grpo")
    cosines = pd.concat([pd.DataFrame({"cosine with the gap": sampled[v][~sampled[v].isnan()].cpu(),
                                       "variant": VARIANT_NAMES[v]}) for v in variants])
    steps = pd.concat([pd.DataFrame({"J": exact["J"].cpu(), "η/α": exact[f"{v}_step_per_lr"].cpu()
                                     / exact["gap_norm"].cpu(), "variant": VARIANT_NAMES[v]}) for v in variants])
    return cosines, steps
