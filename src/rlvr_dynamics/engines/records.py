"""The engines' one vocabulary: every engine returns a *record*, a frozen dataclass of tensors whose
field names are taken from :data:`VOCABULARY` (the same quantity has the same name in every record:
η_k is ``step`` everywhere, M(k) is ``cumulative_gap``). Shapes: S recorded steps, K steps, B runs,
E evaluation contexts, P pool contexts, D parameters, V actions.
"""

from __future__ import annotations

import dataclasses

import torch

VOCABULARY: dict[str, str] = {
    # the trajectory of J
    "recorded_steps": "the step k of each recorded point (S,)",
    "value": "J(θ_k), the success probability",
    "log_odds": "log J/(1 − J), computed in log space",
    "log_success": "log J, computed in log space",
    "log_failure": "log(1 − J), computed in log space",
    "log_odds_change": "f(θ_{k+1}) − f(θ_k), the one-step change of the log-odds",
    # the update θ_{k+1} = θ_k + η_k w_k (3)
    "alignment": "Δμ_k = w_k · (g⁺ − g⁻), the gap alignment (11)",
    "step": "η_k, the effective step of the update (3): ‖θ_{k+1} − θ_k‖",
    "step_size": "α, the nominal step size of a run (B,)",
    "cumulative_gap": "M(k) = Σ_{i<k} [Δμ_i]₊ η_i, the cumulative gap (14)",
    "relative_cumulative_gap": "Σ_{i<k} ([Δμ_x(i)]₊ − [Δμ_{x_i}(i)]₊) η_i, per context (Figure 1)",
    "signed_cumulative_alignment": "Σ_{i<k} Δμ_i η_i, the first-order change of the log-odds (16)",
    "smallest_alignment_ratio": "min_{i<k} [Δμ_i]₊ / η_i, Theorem 1(b)'s step condition (15a)",
    "negative_variance": "Var⁻ of w_k · ∇log π, the second-order term of (17)",
    "psi1": "‖|o|‖_ψ₁, the ψ₁ norm of the response length (Assumption 3)",
    "mean_length": "E|o|, the mean response length",
    # the Section-5.1 bandit
    "seed": "the seed of each run's problem (B,)",
    "band": "the curriculum band (lo, hi) on J(x_k)",
    "fallback": "the training-context draw when the band is empty",
    "best_arm": "the optimal arm of each evaluation context (B, E)",
    "pool_best_arm": "the optimal arm of each pool context (B, P)",
    "pool_value": "J of each pool context at the recorded steps (S, B, P)",
    "train_index": "the pool index of the training context x_k (K, B)",
    "train_value": "J_{x_k}(θ_k) of the training context (K, B)",
    "train_gap_norm": "‖g⁺ − g⁻‖ at the training context (K, B)",
    "fell_back": "whether step k found the band empty (K, B)",
    "final_theta": "the parameters after the last step",
    # many prompts sharing θ
    "selected": "the prompts that updated at step k (K, B, Q)",
    # sampled group updates (GRPO, GSPO and their sign filters)
    "clipped_fraction": "the share of the updating responses' tokens whose ratio was clipped (K, B)",
    "updating_fraction": "the share of the sampled responses with a nonzero filtered advantage (K, B)",
    # the two-stage softmax bandit
    "class_mass": "the probability of each action class (optimal, high, low) (S, B, 3)",
    "entropy": "the Shannon entropy of the policy, in nats",
    "moving_steps": "the number of steps so far whose update was not zero",
    "misaligned_steps": "the number of steps so far with Δμ_k < 0",
    "final_logits": "the logits after the last step (B, V)",
}


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of every engine's record: a frozen dataclass whose fields are in :data:`VOCABULARY`."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        annotations = cls.__dict__.get("__annotations__", {})
        unknown = sorted(set(annotations) - set(VOCABULARY))
        if unknown:
            raise TypeError(f"{cls.__name__}: fields {unknown} are not in the engines' vocabulary")

    def to(self, device: str | torch.device) -> Record:
        """The same record with every tensor (also inside dicts) on ``device``."""
        def move(value):
            if isinstance(value, torch.Tensor):
                return value.to(device)
            if isinstance(value, dict):
                return {key: move(item) for key, item in value.items()}
            return value

        return dataclasses.replace(self, **{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)})
