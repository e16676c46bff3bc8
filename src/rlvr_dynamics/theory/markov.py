"""Exact token-level quantities at any response length: verifier automata and the forward algorithm.

Enumerating responses (:meth:`TokenPolicy.enumerate_responses`) costs (V − 1)^{T−1}, so it stops
near T = 10. The chapter's verifiers read only the response's last token and how often the answer token
occurs. For the shared-parameter bigram policy (``TokenPolicy(..., position_bias=False)``) the
probability of every (length, outcome) pair is then a sum over (last token, count) that the
forward algorithm computes in O(T·V²·S) operations (S ≤ T counts) — exactly, in log space, and differentiably. Because

    g⁺ − g⁻ = ∇log J − ∇log(1 − J) = ∇f,   f = log J/(1 − J)          (eqs. 9–10)

autograd of the exact log-odds gives the Gradient Gap, and its Hessian gives the second-order
term of (17), at T = 1024 as easily as at T = 4.

Verifiers (string options, :data:`VERIFIERS`), with answer token c:

- ``"final_token"``: the last token before EOS is c (an answer line at the end of a chain);
- ``"contains"``: c occurs anywhere before EOS;
- ``"majority"``: more than half of the tokens before EOS are c (every step of the chain counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlvr_dynamics.theory import estimators
from rlvr_dynamics.theory.policies import EOS, TokenPolicy

VERIFIERS = ("final_token", "contains", "majority")
UNREACHABLE = -1e30  # a finite log-probability: −inf would make logsumexp's gradient NaN


@dataclass(frozen=True)
class Verifier:
    """A 0/1 reward that reads the response's last token and its count of the answer token c.

    Attributes:
        kind: one of :data:`VERIFIERS` — ``"final_token"`` (the last token before EOS is c),
            ``"contains"`` (c occurs at least once) or ``"majority"`` (more than half of the
            response's tokens are c: every step of the chain matters).
        vocab_size: V of the policy (token 0 is EOS).
        answer_token: c ∈ {1, …, V − 1}.
    """

    kind: str
    vocab_size: int
    answer_token: int = 1

    def __post_init__(self):
        if self.kind not in VERIFIERS:
            raise ValueError(f"verifier = {self.kind!r} is unknown: allowed {', '.join(map(repr, VERIFIERS))}")
        if not isinstance(self.vocab_size, int) or isinstance(self.vocab_size, bool) or self.vocab_size < 2:
            raise ValueError(f"vocab_size = {self.vocab_size!r} must be an integer ≥ 2")
        if (not isinstance(self.answer_token, int) or isinstance(self.answer_token, bool)
                or not 1 <= self.answer_token < self.vocab_size):
            raise ValueError(f"answer_token = {self.answer_token!r} must lie in 1 … {self.vocab_size - 1} (0 is EOS)")

    def count_cap(self, max_length: int) -> int:
        """How far the forward algorithm must count c: 0 (not at all), 1 (seen or not) or T − 1."""
        return {"final_token": 0, "contains": 1, "majority": max_length - 1}[self.kind]

    def accepts(self, last_token: torch.Tensor, count: torch.Tensor, length: int | torch.Tensor) -> torch.Tensor:
        """Reward of a response of ``length`` tokens (EOS included) from its last token before EOS
        (the BOS index V for an empty response) and its count of c (clipped at :meth:`count_cap`)."""
        if self.kind == "final_token":
            return last_token == self.answer_token
        if self.kind == "contains":
            return count >= 1
        return 2 * count > length - 1  # a strict majority of the length − 1 tokens before EOS

    def reward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The reward of responses: tokens (..., T) padded with EOS, lengths (...) → (...) float64."""
        steps = torch.arange(tokens.shape[-1], device=tokens.device)
        inside = steps < (lengths.unsqueeze(-1) - 1)  # the response's own tokens, before its EOS
        count = ((tokens == self.answer_token) & inside).sum(-1)
        last_index = (lengths - 2).clamp_min(0).unsqueeze(-1)
        last = torch.where(lengths > 1, tokens.gather(-1, last_index).squeeze(-1), self.vocab_size)
        return self.accepts(last, count.clamp_max(max(self.count_cap(tokens.shape[-1]), 1)), lengths).to(
            torch.float64)


def _log_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(eᵃ + eᵇ) through logsumexp: torch.logaddexp's double backward is NaN at the floor."""
    return torch.logsumexp(torch.stack([a, b]), dim=0)


def _check_bigram(policy: TokenPolicy) -> None:
    if policy.position_bias:
        raise ValueError("the forward algorithm and the count-based scores need position_bias=False "
                         "(parameters shared across positions)")


@dataclass(frozen=True)
class Outcomes:
    """log P(|o| = ℓ, r = 1) and log P(|o| = ℓ, r = 0) for ℓ = 1 … T, each (..., T)."""

    log_success_by_length: torch.Tensor
    log_failure_by_length: torch.Tensor

    @property
    def log_success(self) -> torch.Tensor:
        """log J, eq. (6). (...)."""
        return torch.logsumexp(self.log_success_by_length, dim=-1)

    @property
    def log_failure(self) -> torch.Tensor:
        """log(1 − J), never formed as 1 − J. (...)."""
        return torch.logsumexp(self.log_failure_by_length, dim=-1)

    @property
    def log_odds(self) -> torch.Tensor:
        """f = log J − log(1 − J). (...)."""
        return self.log_success - self.log_failure

    @property
    def lengths(self) -> torch.Tensor:
        """The lengths ℓ = 1 … T of the last axis, as floats. (T,)."""
        pmf = self.log_success_by_length
        return torch.arange(1, pmf.shape[-1] + 1, dtype=pmf.dtype, device=pmf.device)

    @property
    def log_length_pmf(self) -> torch.Tensor:
        """log P(|o| = ℓ), ℓ = 1 … T. (..., T)."""
        return _log_add(self.log_success_by_length, self.log_failure_by_length)


def outcomes(policy: TokenPolicy, theta: torch.Tensor, verifier: Verifier) -> Outcomes:
    """The forward algorithm over (last token, count of c). θ (..., D) → :class:`Outcomes`.

    log α_t(p, n) is the log-probability that the first t tokens are not EOS, the last one is p
    (p = 0 stands for BOS) and c occurred n times (clipped at the verifier's cap). At position t the
    response ends with probability π(EOS | p) (1 at the last position T, which forces EOS) and the
    verifier reads (p, n, t + 1).
    """
    _check_bigram(policy)
    if verifier.vocab_size != policy.vocab_size:
        raise ValueError(f"verifier vocab_size {verifier.vocab_size} ≠ policy vocab_size {policy.vocab_size}")
    v, length, answer = policy.vocab_size, policy.max_length, verifier.answer_token
    cap = verifier.count_cap(length)
    device, dtype = theta.device, theta.dtype
    bigram, _ = policy.split(theta)  # (..., V + 1, V)
    rows = torch.tensor([v, *range(1, v)], device=device)  # p = 0 → BOS row V of W
    log_next = torch.log_softmax(bigram[..., rows, :], dim=-1)  # (..., P=V, V): log π(· | p)
    last = torch.tensor([v, *range(1, v)], device=device).unsqueeze(-1)  # (P, 1), BOS as V
    count = torch.arange(cap + 1, device=device)  # (S,)
    start = torch.full((v, cap + 1), UNREACHABLE, dtype=dtype, device=device)
    start[0, 0] = 0.0  # BOS, no c yet
    alpha = start.expand(*theta.shape[:-1], v, cap + 1)  # (..., P, S)
    success, failure = [], []
    for position in range(length):
        ending = alpha if position == length - 1 else alpha + log_next[..., :, :1]  # last position forces EOS
        accepted = verifier.accepts(last, count, position + 1)  # (P, S)
        success.append(torch.logsumexp(torch.where(accepted, ending, UNREACHABLE), dim=(-2, -1)))
        failure.append(torch.logsumexp(torch.where(accepted, UNREACHABLE, ending), dim=(-2, -1)))
        if position == length - 1:
            break
        grown = torch.logsumexp(alpha.unsqueeze(-1) + log_next[..., :, None, 1:], dim=-3)  # (..., S, V − 1)
        grown = grown.transpose(-1, -2)  # (..., V − 1, S): next token v = 1 … V − 1
        if cap > 0:  # reading c moves the count up by one, clipped at the cap
            seen = grown[..., answer - 1, :]  # (..., S)
            moved = torch.cat([torch.full_like(seen[..., :1], UNREACHABLE), seen[..., :-1]], dim=-1)
            moved = torch.cat([moved[..., :-1], _log_add(moved[..., -1:], seen[..., -1:])], dim=-1)
            grown = torch.cat([grown[..., : answer - 1, :], moved.unsqueeze(-2), grown[..., answer:, :]], dim=-2)
        alpha = torch.cat([torch.full_like(grown[..., :1, :], UNREACHABLE), grown], dim=-2)  # (..., V, S)
    return Outcomes(torch.stack(success, -1), torch.stack(failure, -1))


def log_odds(policy: TokenPolicy, theta: torch.Tensor, verifier: Verifier) -> torch.Tensor:
    """f(θ) = log J/(1 − J), exact. (..., D) → (...)."""
    return outcomes(policy, theta, verifier).log_odds


def log_odds_and_gradient_gap(policy: TokenPolicy, theta: torch.Tensor, verifier: Verifier
                              ) -> tuple[Outcomes, torch.Tensor]:
    """The outcomes at θ and the Gradient Gap g⁺ − g⁻ = ∇f (eqs. 9–10). θ (..., D) → (..., D).

    Rows of a batch are independent, so one backward pass of Σf gives every row's gradient.
    """
    with torch.enable_grad():
        point = theta.detach().requires_grad_(True)
        result = outcomes(policy, point, verifier)
        (gap,) = torch.autograd.grad(result.log_odds.sum(), point)
    detached = Outcomes(result.log_success_by_length.detach(), result.log_failure_by_length.detach())
    return detached, gap


HESSIAN_MEMORY = 2 * 2**30
"""Bytes the Hessian's graphs may hold at once: :func:`log_odds_hessian` takes its points in chunks that fit."""


def hessian_bytes_per_point(policy: TokenPolicy, verifier: Verifier) -> int:
    """Memory of ∇²f at one θ: forward over reverse mode vmapped over the D parameters holds the forward
    algorithm's graph once per parameter, ~2 (V, S, V − 1) blocks per position (S = the verifier's count
    states). Measured runs came within ×1.5 of it."""
    vocab, states = policy.vocab_size, verifier.count_cap(policy.max_length) + 1
    return round(8 * policy.max_length * vocab * (vocab - 1) * policy.n_params * (2 * states + 0.5))


def hessian_chunk(policy: TokenPolicy, verifier: Verifier) -> int:
    """Points whose Hessians :func:`log_odds_hessian` computes at once: as many as fit in HESSIAN_MEMORY (≥ 1)."""
    return max(1, HESSIAN_MEMORY // hessian_bytes_per_point(policy, verifier))


def log_odds_hessian(policy: TokenPolicy, theta: torch.Tensor, verifier: Verifier) -> torch.Tensor:
    """∇²f, the second-order term of (17) along every pair of directions. θ (..., D) → (..., D, D).
    The points are taken :func:`hessian_chunk` at a time, so memory stays bounded whatever their number."""
    flat = theta.detach().reshape(-1, theta.shape[-1])

    def single(point: torch.Tensor) -> torch.Tensor:
        return log_odds(policy, point, verifier)

    hessian = torch.func.vmap(torch.func.hessian(single), chunk_size=hessian_chunk(policy, verifier))(flat)  # (B, D, D)
    return hessian.reshape(*theta.shape, theta.shape[-1])


def expected_update(policy: TokenPolicy, theta: torch.Tensor, verifier: Verifier, variant: str,
                    group_size: int | None = None) -> torch.Tensor:
    """The population update of each variant, as :func:`estimators.expected_direction` but exact
    at any T. θ (..., D) → (..., D).

    - reinforce: ∇J = J(1 − J)·∇f (eq. 4 with the exact baseline);
    - dr_grpo: (1 − 1/G)·∇J;
    - grpo: (1/σ) Σ_o ∇π(o)·(r(o) − J)/|o| with σ = √(J(1 − J)) held fixed, eq. (5): the gradient of
      a length-weighted success probability, which the forward algorithm computes per length.
    """
    estimators.check_variant(variant)
    if variant == "dr_grpo" and (group_size is None or group_size < 2):
        raise ValueError(f"group_size = {group_size!r}: dr_grpo needs a group of at least 2")
    with torch.enable_grad():
        point = theta.detach().requires_grad_(True)
        result = outcomes(policy, point, verifier)
        log_success, log_failure = result.log_success, result.log_failure
        if variant == "grpo":
            log_inverse_length = -torch.log(result.lengths)
            weighted_success = torch.logsumexp(result.log_success_by_length + log_inverse_length, -1).exp()
            weighted_failure = torch.logsumexp(result.log_failure_by_length + log_inverse_length, -1).exp()
            fail, succ = log_failure.detach().exp(), log_success.detach().exp()
            inverse_sigma = torch.exp(-0.5 * (log_success.detach() + log_failure.detach()))
            objective = inverse_sigma * (fail * weighted_success - succ * weighted_failure)
        else:
            objective = log_success.exp()  # J; its gradient is ∇J
        (update,) = torch.autograd.grad(objective.sum(), point)
    if variant == "dr_grpo":
        update = (1.0 - 1.0 / group_size) * update
    return update


def psi1_norm(values: torch.Tensor, log_weights: torch.Tensor, iterations: int = 100) -> torch.Tensor:
    """The ψ₁-Orlicz norm ‖ℓ‖_ψ₁ = inf{a > 0 : E exp(ℓ/a) ≤ 2} (Assumption 3) of a distribution
    on positive ``values`` (n,) with log-probabilities ``log_weights`` (..., n) → (...).

    Bisection on log a inside [E ℓ / log 2, max ℓ / log 2]: Jensen gives E exp(ℓ/a) ≥ 2 at the
    left end and ℓ ≤ max ℓ gives ≤ 2 at the right end.
    """
    log_two = torch.log(torch.tensor(2.0, dtype=log_weights.dtype))
    mean = (log_weights.exp() * values).sum(-1)
    low, high = torch.log(mean / log_two), torch.log(values.max() / log_two).expand_as(mean)
    for _ in range(iterations):
        middle = (low + high) / 2
        too_small = torch.logsumexp(log_weights + values / middle.exp().unsqueeze(-1), -1) > log_two
        low, high = torch.where(too_small, middle, low), torch.where(too_small, high, middle)
    return high.exp()


def length_psi1_norm(result: Outcomes) -> torch.Tensor:
    """‖|o|‖_ψ₁ under the policy, from the exact length distribution. (...)."""
    return psi1_norm(result.lengths, result.log_length_pmf)


def mean_length(result: Outcomes) -> torch.Tensor:
    """E|o|. (...)."""
    return (result.log_length_pmf.exp() * result.lengths).sum(-1)


def sample(policy: TokenPolicy, theta: torch.Tensor, n_samples: int, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n_samples`` responses from each of B policies at once: θ (B, D) → tokens (B, n, T)
    padded with EOS and lengths (B, n)."""
    _check_bigram(policy)
    if theta.dim() != 2:
        raise ValueError(f"sample takes a batch of parameter vectors (B, D), got {tuple(theta.shape)}")
    runs, v, length = theta.shape[0], policy.vocab_size, policy.max_length
    bigram, _ = policy.split(theta)  # (B, V + 1, V)
    probs = torch.softmax(bigram, dim=-1)
    run = torch.arange(runs, device=theta.device).unsqueeze(-1)  # (B, 1)
    previous = torch.full((runs, n_samples), v, dtype=torch.long, device=theta.device)
    finished = torch.zeros(runs, n_samples, dtype=torch.bool, device=theta.device)
    lengths = torch.full((runs, n_samples), length, dtype=torch.long, device=theta.device)
    tokens = torch.full((runs, n_samples, length), EOS, dtype=torch.long, device=theta.device)
    for position in range(length - 1):  # the last position is EOS (the fill value)
        rows = probs[run, previous]  # (B, n, V)
        drawn = torch.multinomial(rows.reshape(-1, v), 1, generator=generator).reshape(runs, n_samples)
        drawn = torch.where(finished, EOS, drawn)
        ends_now = ~finished & (drawn == EOS)
        lengths = torch.where(ends_now, position + 1, lengths)
        finished = finished | ends_now
        tokens[..., position] = drawn
        previous = drawn
        if bool(finished.all()):
            break
    return tokens, lengths


def sampled_scores(policy: TokenPolicy, theta: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
                   ) -> torch.Tensor:
    """∇log π(o) of sampled responses from transition counts. θ (B, D), tokens (B, n, T) → (B, n, D).

    With shared parameters π(· | p) is the same at every position, so the sum of token scores
    e_{o_t} − π(· | o_{t−1}) over the response is N_{p,·} − n_p π(· | p), N the counts of
    transitions p → v and n_p = Σ_v N_{p,v} (the forced EOS at position T contributes nothing).
    """
    _check_bigram(policy)
    runs, n_samples, length = tokens.shape
    v = policy.vocab_size
    bos = torch.full_like(tokens[..., :1], v)
    previous = torch.cat([bos, tokens[..., :-1]], dim=-1)  # (B, n, T)
    steps = torch.arange(length, device=tokens.device)
    counted = (steps < lengths.unsqueeze(-1)) & (steps < length - 1)  # free positions of the response
    pair = previous * v + tokens  # (B, n, T): index into the (V + 1)·V table
    counts = torch.zeros(runs, n_samples, (v + 1) * v, dtype=theta.dtype, device=theta.device)
    counts = counts.scatter_add_(-1, pair, counted.to(theta.dtype)).unflatten(-1, (v + 1, v))  # N (B, n, V+1, V)
    probs = torch.softmax(policy.split(theta)[0], dim=-1).unsqueeze(1)  # (B, 1, V + 1, V)
    return (counts - counts.sum(-1, keepdim=True) * probs).flatten(-2)
