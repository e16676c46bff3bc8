"""The chapter *Token-level theory* (Section 4): its parameters, the grid of lengths and the
measured regularity constants. The bounds live in :mod:`rlvr_dynamics.theory.bounds`, the
instances and exact runs in :mod:`rlvr_dynamics.engines.token_chain`, the sampled training in
:mod:`rlvr_dynamics.engines.token_training`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlvr_dynamics.config import parameter
from rlvr_dynamics.theory import DTYPE, markov

LEARNING_RATES = (1.0, 10.0, 100.0, 1000.0)  # the fixed learning rates of the sampled training


@dataclass(frozen=True)
class TokenConfig:
    """Parameters of the chapter *Token-level theory*."""

    vocab_size: int = parameter("V, tokens including EOS", "int", low=3, high=16)
    verifier: str = parameter("reward of the (22)/Theorem-3/4 runs, heatmap and training", "str",
                              choices=markov.VERIFIERS)
    initial_value: float = parameter("J₀ of the exact runs and the length law", "float", low=0.05, high=0.95)
    alignment: float = parameter("Δμ of the Theorem-4 adversary (≤ √(2.5·4)/240 ≈ 0.0132)", "float", low=1e-4,
                                 high=0.0132)
    longest_length: int = parameter("longest T of the length law (T = 4, 8, …, doubling)", "int", low=16, high=4096)
    majority_longest_length: int = parameter("longest T for the 'majority' verifier (its cost grows like T²)",
                                             "int", low=8, high=1024)
    instances: int = parameter("random instances (seeds) per length", "int", low=2, high=64)
    steps: int = parameter("steps of the exact runs", "int", low=5, high=10_000)
    value_points: int = parameter("values of J on the heatmap's axis", "int", low=3, high=50)
    group_size: int = parameter("G, responses per group in GRPO / Dr. GRPO", "int", low=2, high=64)
    training_longest_length: int = parameter("longest T of the sampled training (4, 16, 64, …)", "int", low=4,
                                             high=1024)
    training_steps: int = parameter("steps of the sampled training", "int", low=10, high=100_000)
    training_seeds: int = parameter("sampled-training runs per (variant, learning rate, T)", "int", low=2, high=256)
    training_initial_value: float = parameter("J₀ of the sampled training", "float", low=0.02, high=0.9)


PRESETS = {
    "ci": dict(vocab_size=6, verifier="final_token", initial_value=0.3, alignment=0.002, longest_length=256,
               majority_longest_length=64, instances=4, steps=30, value_points=7, group_size=8,
               training_longest_length=64, training_steps=100, training_seeds=8, training_initial_value=0.1),
    "paper": dict(vocab_size=6, verifier="final_token", initial_value=0.3, alignment=0.002, longest_length=1024,
                  majority_longest_length=512, instances=16, steps=100, value_points=15, group_size=8,
                  training_longest_length=256, training_steps=300, training_seeds=32, training_initial_value=0.1),
}


def measured_constants(vocab_size: int, states: int, generator: torch.Generator) -> tuple[float, float]:
    """The largest token-score norm ‖e_v − π(· | p)‖ and largest λ_max(diag π − ππᵀ) over random
    softmax rows of growing scale (logits × 1 … 30): the suprema G_p = √2 and L_p = ½ of Assumption 2."""
    scales = torch.logspace(0, math.log10(30), states, dtype=DTYPE).unsqueeze(-1)
    probs = torch.softmax(scales * torch.randn(states, vocab_size, generator=generator, dtype=DTYPE), dim=-1)
    eye = torch.eye(vocab_size, dtype=DTYPE)
    score_norm = torch.linalg.vector_norm(eye.unsqueeze(0) - probs.unsqueeze(1), dim=-1).max()  # over rows, tokens
    fisher = torch.diag_embed(probs) - probs.unsqueeze(-1) * probs.unsqueeze(-2)
    return float(score_norm), float(torch.linalg.eigvalsh(fisher)[..., -1].max())





def lengths_grid(longest: int, shortest: int = 4) -> list[int]:
    """T = 4, 8, 16, …, up to ``longest`` (doubling)."""
    out, length = [], shortest
    while length <= longest:
        out.append(length)
        length *= 2
    return out


