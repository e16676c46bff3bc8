"""Policies whose responses can be listed exactly.

**Linear-softmax bandit** (Section 5.1): a context x ∈ R^d, N arms, logits θᵀx with θ ∈ R^{d×N};
a response is one arm, so |o| = 1. Its score is ∇_θ log π(y | x) = x ⊗ (e_y − π), which gives
O(dN) closed forms for every quantity of :mod:`rlvr_dynamics.theory.gaps`.

**Token-level policy** (Section 2, eq. 1): an autoregressive softmax over a vocabulary of V
tokens, token 0 being EOS, responses of length 1 … T (the last allowed position forces EOS, so
|o| ≤ T = T_∞). Parameters are shared across positions, as in Section 4: the logits at position t
are ``h = W[o_{t−1}] + B[t]`` (a bigram table W with a BOS row, plus a position bias B), so the
trajectory score is the sum of token scores. θ is the flat vector (W, B) of size
D = (V + 1)·V + T·V. With ``position_bias=False`` the policy is a pure bigram chain (θ = W,
D = (V + 1)·V): every parameter is shared by all positions, the family of the token-level chapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlvr_dynamics.theory.gaps import conditional_log_policy

EOS = 0
MAX_ENUMERATED_RESPONSES = 2_000_000


# ----------------------------------------------------------------------------------------------
# Linear-softmax contextual bandit
# ----------------------------------------------------------------------------------------------


def bandit_log_policy(theta: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """log π_θ(· | x) = log_softmax(θᵀx), eq. (1) with one-token responses.

    theta (..., d, N), context (..., d) → (..., N).
    """
    if theta.shape[-2] != context.shape[-1]:
        raise ValueError(f"theta {tuple(theta.shape)} and context {tuple(context.shape)}: d differs")
    logits = torch.einsum("...d,...dn->...n", context, theta)  # (..., N)
    return torch.log_softmax(logits, dim=-1)


def bandit_scores(theta: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Every arm's score ∇_θ log π(y | x) = x ⊗ (e_y − π), flattened: (..., N, d·N).

    Dense, for the generic functions of :mod:`rlvr_dynamics.theory.gaps` and for tests; the bandit's
    own closed forms below never build it.
    """
    probs = bandit_log_policy(theta, context).exp()  # (..., N)
    n_arms = probs.shape[-1]
    eye = torch.eye(n_arms, dtype=probs.dtype, device=probs.device)
    centred = eye - probs.unsqueeze(-2)  # (..., N_y, N): row y is e_y − π
    outer = torch.einsum("...d,...yn->...ydn", context, centred)  # (..., N_y, d, N)
    return outer.flatten(-2)


def bandit_conditional_probs(
    theta: torch.Tensor, context: torch.Tensor, reward: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """π, π⁺, π⁻ over arms (eq. 7), each (..., N); π± are zero vectors on an empty region."""
    log_prob = bandit_log_policy(theta, context)
    plus = conditional_log_policy(log_prob, reward, positive=True).exp()
    minus = conditional_log_policy(log_prob, reward, positive=False).exp()
    return log_prob.exp(), plus, minus


def bandit_gradient_gap(theta: torch.Tensor, context: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """Closed form of the Gradient Gap (9) for linear logits: x ⊗ (π⁺ − π⁻). (..., d, N).

    From g^± = Σ_y π^±(y) x ⊗ (e_y − π) = x ⊗ (π^± − π); the π terms cancel in the difference.
    """
    _, plus, minus = bandit_conditional_probs(theta, context, reward)
    return torch.einsum("...d,...n->...dn", context, plus - minus)


def bandit_policy_gradient(theta: torch.Tensor, context: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """Closed form of ∇_θ J (eq. 4) for linear logits: x ⊗ (π ∘ (r − J)). (..., d, N)."""
    probs = bandit_log_policy(theta, context).exp()  # (..., N)
    success = (probs * reward).sum(-1, keepdim=True)  # (..., 1)
    return torch.einsum("...d,...n->...dn", context, probs * (reward - success))


# ----------------------------------------------------------------------------------------------
# Token-level autoregressive policy
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPolicy:
    """Autoregressive softmax policy with shared parameters (module docstring).

    Attributes:
        vocab_size: V, number of tokens including EOS (token 0); at least 2.
        max_length: T = T_∞, the longest response; position T forces EOS.
        position_bias: whether the logits carry the per-position bias B (else B ≡ 0, D = (V + 1)·V).
    """

    vocab_size: int
    max_length: int
    position_bias: bool = True

    def __post_init__(self):
        if not isinstance(self.vocab_size, int) or isinstance(self.vocab_size, bool) or self.vocab_size < 2:
            raise ValueError(f"vocab_size = {self.vocab_size!r} must be an integer ≥ 2 (EOS plus one token)")
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 1:
            raise ValueError(f"max_length = {self.max_length!r} must be an integer ≥ 1")
        if not isinstance(self.position_bias, bool):
            raise ValueError(f"position_bias = {self.position_bias!r} must be True or False")

    @property
    def n_params(self) -> int:
        """D = (V + 1)·V (bigram rows incl. BOS) + T·V (position biases, if any)."""
        return (self.vocab_size + 1) * self.vocab_size + self.max_length * self.vocab_size * self.position_bias

    @property
    def n_responses(self) -> int:
        """R = Σ_{ℓ=1}^{T} (V − 1)^{ℓ−1}: ℓ − 1 non-EOS tokens, then EOS."""
        return sum((self.vocab_size - 1) ** (length - 1) for length in range(1, self.max_length + 1))

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat θ (..., D) → bigram table W (..., V + 1, V) and position bias B (..., T, V) (zeros
        without ``position_bias``)."""
        if theta.shape[-1] != self.n_params:
            raise ValueError(f"theta has {theta.shape[-1]} parameters, this policy has {self.n_params}")
        v, t = self.vocab_size, self.max_length
        n_bigram = (v + 1) * v
        bigram = theta[..., :n_bigram].unflatten(-1, (v + 1, v))
        if not self.position_bias:
            return bigram, theta.new_zeros(*theta.shape[:-1], t, v)
        return bigram, theta[..., n_bigram:].unflatten(-1, (t, v))

    def enumerate_responses(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Every response: tokens (R, T) padded with EOS after the end, lengths (R,), by length."""
        if self.n_responses > MAX_ENUMERATED_RESPONSES:
            raise ValueError(
                f"{self.n_responses} responses (V={self.vocab_size}, T={self.max_length}) exceed "
                f"{MAX_ENUMERATED_RESPONSES}: use Monte-Carlo sampling instead of enumeration"
            )
        blocks, lengths = [], []
        for length in range(1, self.max_length + 1):
            body = torch.cartesian_prod(*[torch.arange(1, self.vocab_size)] * (length - 1)) if length > 1 else None
            count = (self.vocab_size - 1) ** (length - 1)
            tokens = torch.full((count, self.max_length), EOS, dtype=torch.long)
            if body is not None:
                tokens[:, : length - 1] = body.reshape(count, length - 1)
            blocks.append(tokens)
            lengths.append(torch.full((count,), length, dtype=torch.long))
        return torch.cat(blocks).to(device), torch.cat(lengths).to(device)

    def _position_log_probs(self, theta: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """log π(· | q, o_<t) at every position: (..., R, T, V)."""
        bigram, position = self.split(theta)
        bos = torch.full_like(tokens[:, :1], self.vocab_size)  # BOS is row V of W
        previous = torch.cat([bos, tokens[:, :-1]], dim=1)  # (R, T)
        logits = bigram[..., previous, :] + position.unsqueeze(-3)  # (..., R, T, V)
        # Position T (index T − 1) must end the response: only EOS is allowed there.
        forced = torch.zeros(self.max_length, self.vocab_size, dtype=torch.bool, device=theta.device)
        forced[-1, 1:] = True
        logits = logits.masked_fill(forced, -torch.inf)
        return torch.log_softmax(logits, dim=-1)

    def log_prob(self, theta: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """log π_θ(o | q) = Σ_{t ≤ |o|} log π_θ(o_t | q, o_<t), eq. (1). θ (..., D) → (..., R).

        Differentiable in θ (the autograd reference for the closed-form score).
        """
        position_log_probs = self._position_log_probs(theta, tokens)  # (..., R, T, V)
        index = tokens.expand(*position_log_probs.shape[:-1]).unsqueeze(-1)
        token_log_probs = position_log_probs.gather(-1, index).squeeze(-1)  # (..., R, T)
        inside = self._inside(lengths)  # (R, T)
        return torch.where(inside, token_log_probs, 0.0).sum(-1)

    def _inside(self, lengths: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(self.max_length, device=lengths.device)
        return steps < lengths.unsqueeze(-1)  # (R, T): positions 0 … |o| − 1

    def log_prob_and_score(
        self, theta: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(o) (..., R) and the closed-form score ∇_θ log π(o) (..., R, D).

        Each token contributes e_{o_t} − π(· | o_<t) to row o_{t−1} of W and row t of B
        (the logits are linear in θ); the forced EOS at position T contributes 0.
        """
        position_log_probs = self._position_log_probs(theta, tokens)  # (..., R, T, V)
        index = tokens.expand(*position_log_probs.shape[:-1]).unsqueeze(-1)
        inside = self._inside(lengths).unsqueeze(-1)  # (R, T, 1)
        log_prob = torch.where(inside, position_log_probs.gather(-1, index), 0.0).sum((-1, -2))
        token_scores = F.one_hot(tokens, self.vocab_size).to(theta.dtype) - position_log_probs.exp()
        token_scores = torch.where(inside, token_scores, 0.0)  # (..., R, T, V)
        bos = torch.full_like(tokens[:, :1], self.vocab_size)
        previous = F.one_hot(torch.cat([bos, tokens[:, :-1]], dim=1), self.vocab_size + 1).to(theta.dtype)
        bigram_score = torch.einsum("rtp,...rtv->...rpv", previous, token_scores)  # (..., R, V+1, V)
        if not self.position_bias:
            return log_prob, bigram_score.flatten(-2)  # (..., R, D)
        score = torch.cat([bigram_score.flatten(-2), token_scores.flatten(-2)], dim=-1)  # (..., R, D)
        return log_prob, score

    def response_index(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Position of each response in :meth:`enumerate_responses`' order. (n,) long.

        Responses are listed by length, then lexicographically in tokens 1 … V − 1.
        """
        base = self.vocab_size - 1
        offsets = torch.tensor(
            [sum(base ** (length - 1) for length in range(1, ell)) for ell in range(1, self.max_length + 1)],
            dtype=torch.long, device=tokens.device,
        )  # (T,): index of the first response of each length
        index = torch.zeros_like(lengths)
        for position in range(self.max_length - 1):
            inside = position < lengths - 1
            index = torch.where(inside, index * base + (tokens[:, position] - 1), index)
        return offsets[lengths - 1] + index

    def sample(
        self, theta: torch.Tensor, n_samples: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw responses autoregressively: tokens (n, T) padded with EOS, lengths (n,).

        θ is one parameter vector (D,); ``generator`` (on θ's device) makes draws reproducible.
        """
        if theta.dim() != 1:
            raise ValueError(f"sample takes one parameter vector (D,), got {tuple(theta.shape)}")
        bigram, position = self.split(theta)
        tokens = torch.full((n_samples, self.max_length), EOS, dtype=torch.long, device=theta.device)
        previous = torch.full((n_samples,), self.vocab_size, dtype=torch.long, device=theta.device)
        finished = torch.zeros(n_samples, dtype=torch.bool, device=theta.device)
        lengths = torch.full((n_samples,), self.max_length, dtype=torch.long, device=theta.device)
        for step in range(self.max_length):
            logits = bigram[previous] + position[step]  # (n, V)
            if step == self.max_length - 1:
                logits = logits.clone()
                logits[:, 1:] = -torch.inf
            drawn = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
            drawn = torch.where(finished, EOS, drawn)
            ends_now = (~finished) & (drawn == EOS)
            lengths = torch.where(ends_now, step + 1, lengths)
            finished = finished | ends_now
            tokens[:, step] = drawn
            previous = drawn
        return tokens, lengths


def contains_token_reward(tokens: torch.Tensor, lengths: torch.Tensor, token: int) -> torch.Tensor:
    """A verifiable 0/1 reward: 1 iff the response contains ``token`` before its EOS. (R,)."""
    if token == EOS:
        raise ValueError("token must not be EOS (every response ends with EOS)")
    steps = torch.arange(tokens.shape[-1], device=tokens.device)
    inside = steps < (lengths.unsqueeze(-1) - 1)
    return ((tokens == token) & inside).any(-1).to(torch.float64)


def random_reward(n_responses: int, success_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A random verifier: each response correct with probability ``success_fraction``,
    forced to have at least one correct and one incorrect response. (R,) float64."""
    if not 0.0 < success_fraction < 1.0:
        raise ValueError(f"success_fraction = {success_fraction!r} must lie in (0, 1)")
    if n_responses < 2:
        raise ValueError(f"n_responses = {n_responses} must be ≥ 2 to hold both a correct and a wrong response")
    device = generator.device
    reward = (torch.rand(n_responses, generator=generator, device=device) < success_fraction).to(torch.float64)
    order = torch.randperm(n_responses, generator=generator, device=device)
    reward[order[0]], reward[order[1]] = 1.0, 0.0
    return reward


@dataclass(frozen=True)
class BanditInstances:
    """n independent bandit problems: theta (n, d, N), context (n, d), reward (n, N)."""

    theta: torch.Tensor
    context: torch.Tensor
    reward: torch.Tensor


def random_bandits(n: int, dim: int, arms: int, theta_scale: float, generator: torch.Generator) -> BanditInstances:
    """Section 5.1's reward on random problems: β ~ N(0, 1)^{d×N}, x ~ U[0,1]^d, the k arms with
    the largest scores βᵀx are correct (k = 1 is the paper's argmax; k ~ U{1 … ⌈N/4⌉} varies J)."""
    device = generator.device
    beta = torch.randn(n, dim, arms, generator=generator, device=device, dtype=torch.float64)
    context = torch.rand(n, dim, generator=generator, device=device, dtype=torch.float64)
    theta = theta_scale * torch.randn(n, dim, arms, generator=generator, device=device, dtype=torch.float64)
    scores = torch.einsum("nd,ndk->nk", context, beta)  # (n, N)
    top_k = torch.randint(1, max(2, -(-arms // 4)) + 1, (n, 1), generator=generator, device=device)
    ranks = scores.argsort(-1, descending=True).argsort(-1)  # rank 0 = argmax arm
    return BanditInstances(theta, context, (ranks < top_k).to(torch.float64))
