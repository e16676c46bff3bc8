"""The capability boundary (pass@k) and the sequence-level importance ratio of GSPO.

**pass@k.** A prompt with success probability J = p_q is solved by at least one of k independent
samples with probability

    pass@k = 1 − (1 − J)^k,                                                          (BD1)

which the book forms as −expm1(k · log(1 − J)) from log(1 − J): where J ~ 1e-9, 1 − (1 − J)^k formed
directly loses every digit. From n ≥ k samples with c correct, the unbiased estimator of Chen et al.
(2021, *Evaluating Large Language Models Trained on Code*) is

    pass@k ≈ 1 − C(n − c, k) / C(n, k)                                               (BD2)

(its expectation over c ~ Binomial(n, J) is (BD1) exactly), formed from log-gamma functions.

**GSPO** (Zheng et al. 2025, *Group Sequence Policy Optimization*). A response o_i of |o_i| tokens,
sampled under θ_old, gets the *sequence-level* ratio, the geometric mean of its token ratios,

    s_i(θ) = (π_θ(o_i) / π_θ_old(o_i))^{1/|o_i|} = exp((1/|o_i|) Σ_t [log π_θ(o_i,t) − log π_θ_old(o_i,t)]),   (BD3)

and the objective (1/G) Σ_i min(s_i A_i, clip(s_i, 1 − ε_low, 1 + ε_high) A_i). GRPO's ratio is the
token's own, r_i,t = π_θ(o_i,t)/π_θ_old(o_i,t), clipped per token, and its loss (TRL ``loss_type="grpo"``)
averages the tokens of each response, then the responses. At θ = θ_old both ratios are 1 and both
gradients are (1/G) Σ_i A_i (1/|o_i|) Σ_t ∇ log π_θ(o_i,t): **on-policy, GSPO's update is GRPO's**
(BD4, derived in the chapter *The capability boundary*). The two differ only once θ has moved away from
the policy that sampled the batch (several updates per batch), through the ratio and its clipping.
"""

from __future__ import annotations

import torch

IMPORTANCE_LEVELS = ("token", "sequence")
"""Where the importance ratio is taken: ``"token"`` — each token's own ratio, clipped per token (GRPO,
PPO; TRL's default); ``"sequence"`` — the response's geometric-mean ratio (BD3), clipped per response
(GSPO, Zheng et al. 2025; TRL's ``importance_sampling_level="sequence"``)."""


def _check_level(level: str) -> None:
    if level not in IMPORTANCE_LEVELS:
        raise ValueError(f"level = {level!r} is unknown: allowed {', '.join(map(repr, IMPORTANCE_LEVELS))}")


def pass_at_k(log_failure: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
    """(BD1): pass@k = 1 − (1 − J)^k from log(1 − J), for every k.   (...), (K,) → (..., K)

    ``log_failure`` is log(1 − J) ≤ 0 (−inf for a prompt that is always solved: pass@k = 1)."""
    if bool((log_failure > 0).any()):
        raise ValueError("log_failure must be ≤ 0: it is log(1 − J)")
    ks = torch.as_tensor(ks, dtype=log_failure.dtype, device=log_failure.device)
    if ks.ndim != 1 or bool((ks < 1).any()):
        raise ValueError(f"ks must be a 1-d list of sample counts ≥ 1, got {ks.tolist()}")
    exponent = ks * log_failure.unsqueeze(-1)  # (..., K): k log(1 − J); −inf · k stays −inf
    return -torch.expm1(exponent)


def pass_at_k_unbiased(correct: torch.Tensor, samples: int, ks: torch.Tensor) -> torch.Tensor:
    """(BD2): the unbiased estimate 1 − C(n − c, k)/C(n, k) of pass@k from c correct of n samples.
    (...) integer counts c, n, (K,) with every k ≤ n → (..., K) float64

    C(n − c, k)/C(n, k) = Γ(n − c + 1) Γ(n − k + 1) / (Γ(n − c − k + 1) Γ(n + 1)), and 0 when n − c < k
    (then every draw of k contains a correct sample)."""
    ks = torch.as_tensor(ks, dtype=torch.float64, device=correct.device)
    if not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"samples = {samples!r} must be an integer ≥ 1")
    if ks.ndim != 1 or bool((ks < 1).any()) or bool((ks > samples).any()):
        raise ValueError(f"ks = {ks.tolist()} must lie in 1 … n = {samples}: the estimator needs n ≥ k samples")
    if bool((correct < 0).any()) or bool((correct > samples).any()):
        raise ValueError(f"correct counts must lie in 0 … n = {samples}")
    wrong = (samples - correct.to(torch.float64)).unsqueeze(-1)  # (..., 1): n − c
    n = torch.tensor(float(samples), dtype=torch.float64, device=correct.device)
    possible = wrong >= ks  # (..., K): C(n − c, k) > 0
    safe_rest = torch.where(possible, wrong - ks, 0.0)
    log_ratio = (torch.lgamma(wrong + 1) + torch.lgamma(n - ks + 1)
                 - torch.lgamma(safe_rest + 1) - torch.lgamma(n + 1))  # (..., K)
    return torch.where(possible, -torch.expm1(log_ratio), 1.0)


def log_importance_ratios(new_log_probs: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor,
                          level: str) -> torch.Tensor:
    """(BD3) The log importance ratio of every token: its own (``"token"``) or its response's (``"sequence"``,
    the same value on every token of the response).   (..., T), (..., T), (..., T) bool → (..., T)

    Tokens outside ``mask`` (past the response's end) get 0; a response needs at least one token."""
    _check_level(level)
    if not new_log_probs.shape == old_log_probs.shape == mask.shape:
        raise ValueError(f"shapes differ: {tuple(new_log_probs.shape)}, {tuple(old_log_probs.shape)}, "
                         f"{tuple(mask.shape)}")
    lengths = mask.sum(-1)
    if bool((lengths < 1).any()):
        raise ValueError("every response needs at least one token in mask")
    difference = torch.where(mask, new_log_probs - old_log_probs, 0.0)  # (..., T)
    if level == "token":
        return difference
    per_response = difference.sum(-1, keepdim=True) / lengths.unsqueeze(-1).to(difference.dtype)  # (..., 1)
    return torch.where(mask, per_response.expand_as(difference), 0.0)


def clipped_objective(new_log_probs: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor,
                      advantages: torch.Tensor, level: str, epsilon_low: float, epsilon_high: float) -> torch.Tensor:
    """The clipped policy objective of GRPO (``level="token"``) or GSPO (``"sequence"``, BD3), averaged over
    each response's tokens (TRL's ``loss_type="grpo"``): one value per response, to be averaged over the
    group and maximised.   (..., G, T) ×3, (..., G) → (..., G)

    Per token: min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A) with ρ = exp(log ratio); a sequence-level ρ is the
    same on every token, so the response's mean is GSPO's min(s A, clip(s) A)."""
    if not (0 <= epsilon_low < 1 and epsilon_high >= 0):
        raise ValueError(f"clip range (ε_low, ε_high) = ({epsilon_low}, {epsilon_high}) needs 0 ≤ ε_low < 1 and "
                         "ε_high ≥ 0")
    if advantages.shape != mask.shape[:-1]:
        raise ValueError(f"advantages {tuple(advantages.shape)} must match the responses {tuple(mask.shape[:-1])}")
    ratio = log_importance_ratios(new_log_probs, old_log_probs, mask, level).exp()  # (..., G, T)
    advantage = advantages.unsqueeze(-1)  # (..., G, 1)
    per_token = torch.minimum(ratio * advantage, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * advantage)
    per_token = torch.where(mask, per_token, 0.0)
    return per_token.sum(-1) / mask.sum(-1).to(per_token.dtype)  # (..., G)
