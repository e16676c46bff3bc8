"""Sampled-gradient training of the token-level policy with a fixed learning rate, batched over runs.

Each run draws a group of G responses per step from its own policy, scores them with the
verifier and moves θ ← θ + α·ĝ, ĝ the one-group estimate of its variant
(:func:`estimators.sampled_direction`): ``"grpo"`` (group-std advantages and 1/|o| length
normalization, eq. 5), ``"dr_grpo"`` (group-mean advantages, no normalization) or
``"reinforce"`` (advantage r − J with the exact J, eq. 4). Plain SGD, no clipping: the update
the paper's analysis describes. J is recorded exactly (forward algorithm), not estimated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from rlvr_dynamics.engines.records import Record
from rlvr_dynamics.theory import estimators, markov
from rlvr_dynamics.theory.policies import TokenPolicy


@dataclass(frozen=True)
class TrainingRun(Record):
    """value (R + 1, B): exact J at steps 0, k, 2k, …; recorded_steps (R + 1,): those step numbers;
    step (K, B): η_k = ‖α ĝ‖ at every step."""

    value: torch.Tensor
    recorded_steps: torch.Tensor
    step: torch.Tensor


def train(policy: TokenPolicy, verifier: markov.Verifier, theta: torch.Tensor, variants: list[str],
          learning_rates: torch.Tensor, steps: int, group_size: int, generator: torch.Generator,
          record_every: int = 1, progress: bool = False) -> TrainingRun:
    """Run B = len(θ) trainings at once; run b uses ``variants[b]`` and ``learning_rates[b]``.

    θ (B, D) float64; learning_rates (B,) > 0; group_size G ≥ 2; ``generator`` on θ's device.
    """
    runs = theta.shape[0]
    if len(variants) != runs or learning_rates.shape != (runs,):
        raise ValueError(f"{runs} runs need {runs} variants and learning rates, got {len(variants)} and "
                         f"{tuple(learning_rates.shape)}")
    unknown = sorted(set(variants) - set(estimators.VARIANTS))
    if unknown:
        raise ValueError(f"variant {unknown[0]!r} is unknown: allowed {', '.join(map(repr, estimators.VARIANTS))}")
    if not bool((learning_rates > 0).all()) or not bool(torch.isfinite(learning_rates).all()):
        raise ValueError("learning rates must be positive and finite")
    if not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size = {group_size!r} must be an integer ≥ 2")
    if steps < 1 or record_every < 1:
        raise ValueError(f"steps = {steps} and record_every = {record_every} must be ≥ 1")
    groups = {variant: torch.tensor([v == variant for v in variants], device=theta.device)
              for variant in estimators.VARIANTS if variant in variants}
    values, recorded, norms = [], [], []
    for k in tqdm(range(steps + 1), disable=not progress, desc="sampled training", leave=False):
        needs_value = k % record_every == 0 or k == steps or "reinforce" in groups
        if needs_value:
            value = markov.outcomes(policy, theta, verifier).log_success.exp()  # (B,)
        if k % record_every == 0 or k == steps:
            values.append(value)
            recorded.append(k)
        if k == steps:
            break
        tokens, lengths = markov.sample(policy, theta, group_size, generator)  # (B, G, T), (B, G)
        rewards = verifier.reward(tokens, lengths)  # (B, G)
        scores = markov.sampled_scores(policy, theta, tokens, lengths)  # (B, G, D)
        update = torch.zeros_like(theta)
        for variant, mask in groups.items():
            baseline = value[mask] if variant == "reinforce" else None
            update[mask] = estimators.sampled_direction(scores[mask], rewards[mask], lengths[mask], variant, baseline)
        update = learning_rates.unsqueeze(-1) * update
        norms.append(torch.linalg.vector_norm(update, dim=-1))
        theta = theta + update
    return TrainingRun(torch.stack(values), torch.tensor(recorded), torch.stack(norms))
