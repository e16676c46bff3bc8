"""Many prompts sharing one parameter vector, exactly: the *prompted bigram chain*, batched over runs.

**Policy.** Tokens 0 … V − 1, token 0 is EOS. Prompt q is a feature vector x_q ∈ [0, 1]^d with its own
longest length T_q and answer token a_q. Its first token is drawn from the logits x_qᵀU + b (U ∈ R^{d×V}
shared by every prompt; b a constant that puts EOS at −30, so every response has a token), each later token
from the row W[o_{t−1}] of one table W ∈ R^{(V−1)×V} shared by every prompt, and position T_q forces EOS.
The verifier accepts a response whose last token before EOS is a_q (``"final_token"`` of Section 4).
θ = (U, W) flattened, D = dV + (V − 1)V; without lengths above 2, W is never reached and θ = U.

- ``kind="bandit"``: every T_q = 2, so a response is one arm: the linear-softmax contextual bandit of
  Section 5.1 with the N = V − 1 arms, drawn by :func:`rlvr_dynamics.engines.bandit.make_bandits` (the
  Figure-1 problem itself: its pool contexts, optimal arms and θ₀).
- ``kind="chain"``: lengths cycle through ``lengths`` (prompts differ in length and so in difficulty);
  W₀ has N(0, 1) entries and an EOS column that stops each row with probability ``stop``.

**Exact per prompt** (:func:`prompt_state`): J_q, log(1 − J_q) and the length law by a forward algorithm
over the last token (the final-token verifier needs no count), every prompt's Gradient Gap ∇f_q (eq. 10)
and exact GRPO update (eq. 5) by one backward pass each — every prompt gets its own copy of the shared
rows, so the copies' gradients are the per-prompt gradients — and the ψ₁ norm of the length.

**Update** (:func:`train`): θ ← θ + α u_k, u_k a combination of the per-prompt updates of the prompts
selected at step k (:data:`UPDATE_RULES`, :data:`PROMPT_SELECTIONS`); exact expectations, no sampling
noise, so runs differ only by their problem.

**Sampled training** (:func:`train_sampled`): each step draws a group of G responses per training prompt
from θ_old (:func:`sample_responses`), forms TRL's group advantages A_i = (r_i − r̄)/(s + 10⁻⁴) (s the
unbiased group std; rollouts a variant filters out still count in r̄ and s) and φ(A) per
:data:`SAMPLED_VARIANTS`, then takes μ plain gradient-ascent steps on the clipped objective of
:func:`rlvr_dynamics.theory.boundary.clipped_objective` with ratios against θ_old — token-level (GRPO) or
sequence-level (GSPO, BD3); with μ = 1 both are on-policy and take the same step (BD4). Every prompt's
exact J_q, held-out prompts included, is recorded in log space along the way.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from rlvr_dynamics.engines import bandit
from rlvr_dynamics.engines.records import Record
from rlvr_dynamics.theory import DTYPE, boundary, estimators, many_prompts, markov

FAMILY_KINDS = ("bandit", "chain")
"""``"bandit"`` (one-token responses: Section 5.1's contextual bandit) or ``"chain"`` (lengths up to T_q)."""
ANSWER_RULES = ("linear", "random")
"""How a prompt's answer is set: ``"linear"`` — argmax of hidden scores βᵀx (Section 5.1; a linear policy
can solve every prompt); ``"random"`` — uniform, independent of x (with Q > d no θ solves every prompt)."""
UPDATE_RULES = ("grpo", "dr_grpo", "safe_step", "pcgrad")
"""The update u_k from the selected prompts S_k (mean over S_k of each prompt's part):

- ``"grpo"``: the exact GRPO update, eq. (5) (advantages over σ_q, 1/|o|) — Shao et al. 2024;
- ``"dr_grpo"``: (1 − 1/G)∇J_q = (1 − 1/G) J_q(1 − J_q)(g⁺_q − g⁻_q) — Liu et al. 2025 (Dr. GRPO);
- ``"safe_step"``: each prompt moves along its own gap by its own safe step, eq. (21):
  (1 − J_q)/T_ψ₁,q · (g⁺_q − g⁻_q) (the book's prompt-adaptive scale: the J_q factor of ∇J_q is gone,
  so prompts far from solved are not damped);
- ``"pcgrad"``: Dr. GRPO's per-prompt parts with gradient surgery (Yu et al. 2020, PCGrad): each part,
  against the others in a random order, loses its component along any part it conflicts with."""
PROMPT_SELECTIONS = ("all", "uniform", "band")
"""Which prompts update at step k: ``"all"``; ``"uniform"`` — m at random; ``"band"`` — m at random among
those with J_q in the band (Section 5.1's curriculum), topped up at random from the others when fewer."""
SAMPLED_VARIANTS = ("grpo", "grpo_n", "grpo_p", "gspo", "gspo_n")
"""The sampled update of :func:`train_sampled`: its importance ratio and its advantage filter φ.

- ``"grpo"``: token-level ratio, every advantage (Shao et al. 2024; TRL's default);
- ``"grpo_n"``: token-level, negative advantages only, φ(A) = min(A, 0) (GRPO-N, Yao et al.);
- ``"grpo_p"``: token-level, positive advantages only, φ(A) = max(A, 0);
- ``"gspo"``: sequence-level ratio (BD3), every advantage (Zheng et al. 2025, GSPO);
- ``"gspo_n"``: sequence-level, negative advantages only.

The filter acts after the advantages are formed, so a filtered rollout still counts in the group's mean
and std and in the group size G that the objective averages over (as TRL's runner in
:mod:`rlvr_dynamics.lm.grpo` clamps its advantages)."""
EMPTY_LOGIT = -30.0  # EOS as the first token: an empty response has probability ≈ 1e-13
CHAIN_LENGTHS = (2, 64)
"""The lengths T_q a chapter may give its prompts (inclusive): a response needs one token and its EOS, and the
exact forward pass costs T_q steps per prompt."""
UNREACHABLE = markov.UNREACHABLE


@dataclass(frozen=True)
class PromptFamily:
    """Q prompts of the prompted bigram chain, B runs (one problem per run).

    Attributes:
        kind: one of :data:`FAMILY_KINDS`.
        vocab_size: V, tokens including EOS (token 0).
        features: (B, Q, d) the prompts' feature vectors x_q.
        max_lengths: (Q,) T_q ≥ 2, the same in every run.
        answers: (B, Q) a_q ∈ 1 … V − 1.
        theta0: (B, D) the initial parameters.
    """

    kind: str
    vocab_size: int
    features: torch.Tensor
    max_lengths: torch.Tensor
    answers: torch.Tensor
    theta0: torch.Tensor

    @property
    def n_prompts(self) -> int:
        return self.features.shape[-2]

    @property
    def feature_dim(self) -> int:
        return self.features.shape[-1]

    @property
    def has_chain(self) -> bool:
        """Whether any prompt is long enough to reach W (T_q > 2)."""
        return int(self.max_lengths.max()) > 2

    @property
    def n_params(self) -> int:
        v = self.vocab_size
        return self.feature_dim * v + (v - 1) * v * self.has_chain

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """θ (..., D) → U (..., d, V) and W (..., V − 1, V) (None without chain prompts)."""
        if theta.shape[-1] != self.n_params:
            raise ValueError(f"theta has {theta.shape[-1]} parameters, this family has {self.n_params}")
        d, v = self.feature_dim, self.vocab_size
        start = theta[..., : d * v].unflatten(-1, (d, v))
        return start, (theta[..., d * v:].unflatten(-1, (v - 1, v)) if self.has_chain else None)

    def constants(self, constant: str = "sharp") -> torch.Tensor:
        """C_q of Lemma 1 for every prompt (B10), from G_o and L_o of
        :func:`~rlvr_dynamics.theory.many_prompts.prompted_chain_regularity`.   (B, Q)"""
        score, smoothness = many_prompts.prompted_chain_regularity(
            torch.linalg.vector_norm(self.features, dim=-1), self.max_lengths.to(self.features))
        return many_prompts.lemma1_constant(smoothness, score, constant)


def _check_choice(name: str, value: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name} = {value!r} is unknown: allowed {', '.join(map(repr, allowed))}")
    return value


def make_family(kind: str, seeds: list[int], n_prompts: int, vocab_size: int, feature_dim: int,
                lengths: tuple[int, ...] = (2,), answer_rule: str = "linear", init_scale: float = 0.01,
                stop: float = 0.5, device: torch.device | str = "cpu") -> PromptFamily:
    """One problem per seed (each from its own ``torch.Generator(seed)`` on the CPU, float64, then moved).

    ``"bandit"``: the Figure-1 problem of :func:`~rlvr_dynamics.engines.bandit.make_bandits` with d =
    ``feature_dim``, N = V − 1 arms and ``n_prompts`` pool contexts (its θ₀ with entries N(0, init_scale²));
    ``lengths`` must be (2,). ``"chain"``: contexts uniform on [0, 1]^d, T_q = lengths[q mod len(lengths)],
    U₀ entries N(0, init_scale²), W₀ entries N(0, 1) with the EOS column set so that every row stops with
    probability ``stop``. ``answer_rule``: :data:`ANSWER_RULES`."""
    _check_choice("kind", kind, FAMILY_KINDS)
    _check_choice("answer_rule", answer_rule, ANSWER_RULES)
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    if not (isinstance(vocab_size, int) and vocab_size >= 3):
        raise ValueError(f"vocab_size = {vocab_size!r} must be an integer ≥ 3 (EOS and two answers)")
    if not lengths or any(not isinstance(t, int) or t < 2 for t in lengths):
        raise ValueError(f"lengths = {lengths!r} must be integers ≥ 2")
    if kind == "bandit" and set(lengths) != {2}:
        raise ValueError(f"lengths = {lengths!r}: a bandit prompt has one-token responses (T = 2)")
    if not 0 < stop < 1:
        raise ValueError(f"stop = {stop!r} must lie in (0, 1)")
    v, d = vocab_size, feature_dim
    max_lengths = torch.tensor([lengths[q % len(lengths)] for q in range(n_prompts)])
    rows = []
    for seed in seeds:
        if kind == "bandit":
            problem = bandit.make_bandits(bandit.BanditSpec(d, v - 1, n_prompts, 1, init_scale), [seed], 1)
            features, answers = problem.contexts[0, :n_prompts], problem.best_arm[0, :n_prompts] + 1
            start = torch.cat([torch.zeros(d, 1, dtype=DTYPE), problem.theta0[0]], dim=-1)  # (d, V): EOS column 0
            generator = torch.Generator().manual_seed(seed)
            table = None
        else:
            generator = torch.Generator().manual_seed(seed)
            features = torch.rand(n_prompts, d, generator=generator, dtype=DTYPE)
            beta = torch.randn(d, v - 1, generator=generator, dtype=DTYPE)
            answers = (features @ beta).argmax(-1) + 1
            start = init_scale * torch.randn(d, v, generator=generator, dtype=DTYPE)
            table = torch.randn(v - 1, v, generator=generator, dtype=DTYPE)
            table[:, 0] = math.log(stop / (1 - stop)) + torch.logsumexp(table[:, 1:], dim=-1)  # P(EOS | p) = stop
        if answer_rule == "random":
            answers = torch.randint(1, v, (n_prompts,), generator=generator)
        theta = start.flatten() if int(max_lengths.max()) == 2 else torch.cat([start.flatten(), table.flatten()])
        rows.append((features, answers, theta))
    features, answers, theta0 = (torch.stack(t) for t in zip(*rows, strict=True))
    return PromptFamily(kind, v, features.to(device), max_lengths.to(device), answers.to(device), theta0.to(device))


def final_token_outcomes(start_logits: torch.Tensor, table: torch.Tensor | None, answers: torch.Tensor,
                         max_lengths: torch.Tensor) -> markov.Outcomes:
    """The forward algorithm of the final-token verifier, one answer and one longest length per row:
    log P(|o| = ℓ, r = 1) and log P(|o| = ℓ, r = 0), ℓ = 1 … max T.   (..., V), (..., V − 1, V), (...), (...)

    α_t(p) is the log-probability that the first t tokens are not EOS and the last is p (p = 0: none
    yet). At position t the response ends with probability π(EOS | p) — with probability 1 at t = T of
    its row — and is correct iff p = a. Rows past their T carry no mass (UNREACHABLE)."""
    v = start_logits.shape[-1]
    longest = int(max_lengths.max())
    first = torch.log_softmax(start_logits, dim=-1).unsqueeze(-2)  # (..., 1, V)
    if table is None:  # one-token responses (every T = 2): the bandit, without the table's O(V²) work
        if longest != 2 or int(max_lengths.min()) != 2:
            raise ValueError("without a table W every prompt must have T = 2")
        first = first.squeeze(-2)
        answer = first.gather(-1, answers.unsqueeze(-1)).squeeze(-1)  # log π(a)
        others = torch.logsumexp(torch.where(torch.arange(v, device=first.device) == answers.unsqueeze(-1),
                                             UNREACHABLE, first)[..., 1:], dim=-1)  # log π(wrong arms)
        empty = first[..., 0]  # log π(EOS first): an empty response, wrong
        return markov.Outcomes(torch.stack([torch.full_like(empty, UNREACHABLE), answer], -1),
                               torch.stack([empty, others], -1))
    later = torch.log_softmax(table, dim=-1)  # (..., V − 1, V)
    log_next = torch.cat([first, later], dim=-2)  # (..., P = V, V): log π(· | p), p = 0 the start
    correct = torch.arange(v, device=start_logits.device) == answers.unsqueeze(-1)  # (..., V)
    alpha = torch.full_like(start_logits, UNREACHABLE)
    alpha[..., 0] = 0.0
    success, failure = [], []
    for position in range(longest):
        forced = (max_lengths == position + 1).unsqueeze(-1)  # (..., 1): this position is the row's T
        ending = torch.where(forced, alpha, alpha + log_next[..., 0])  # (..., V)
        success.append(torch.logsumexp(torch.where(correct, ending, UNREACHABLE), dim=-1))
        failure.append(torch.logsumexp(torch.where(correct, UNREACHABLE, ending), dim=-1))
        if position == longest - 1:
            break
        grown = torch.logsumexp(alpha.unsqueeze(-1) + log_next[..., 1:], dim=-2)  # (..., V − 1): next token 1 … V − 1
        alpha = torch.cat([torch.full_like(grown[..., :1], UNREACHABLE), grown], dim=-1)
        alpha = torch.where((max_lengths <= position + 1).unsqueeze(-1), UNREACHABLE, alpha)  # ended rows
    return markov.Outcomes(torch.stack(success, -1), torch.stack(failure, -1))


@dataclass(frozen=True)
class PromptState:
    """Every prompt's exact quantities at θ (B runs, Q prompts, D parameters).

    Attributes:
        outcomes: the per-prompt length law by outcome (:class:`~rlvr_dynamics.theory.markov.Outcomes`, (B, Q, T)).
        gaps: (B, Q, D) g⁺_q − g⁻_q = ∇f_q, eq. (10).
        grpo_updates: (B, Q, D) the exact GRPO update of each prompt, eq. (5) (None unless asked).
        psi1: (B, Q) ‖|o|‖_ψ₁ of each prompt's response length (Assumption 3), computed when first read: only
            the safe step uses it, and its bisection cost as much as the rest of a step.
    """

    outcomes: markov.Outcomes
    gaps: torch.Tensor
    grpo_updates: torch.Tensor | None

    @functools.cached_property
    def psi1(self) -> torch.Tensor:
        return markov.length_psi1_norm(self.outcomes)  # (B, Q)

    @property
    def log_odds(self) -> torch.Tensor:
        return self.outcomes.log_odds  # (B, Q)

    @property
    def value(self) -> torch.Tensor:
        return self.outcomes.log_success.exp()  # (B, Q)


def _grpo_objective(result: markov.Outcomes) -> torch.Tensor:
    """The function whose gradient is the exact GRPO update (5) of each row, σ = √(J(1 − J)) held fixed:
    (1/σ)[(1 − J) Σ_ℓ P(ℓ, r = 1)/ℓ − J Σ_ℓ P(ℓ, r = 0)/ℓ] (as :func:`rlvr_dynamics.theory.markov.expected_update`).

    Every factor is taken in log space: where J saturates, the coefficients √((1 − J)/J) and √(J/(1 − J))
    overflow while the weighted sums underflow, and their product formed directly is inf · 0 = NaN."""
    log_inverse_length = -torch.log(result.lengths)
    log_weighted_success = torch.logsumexp(result.log_success_by_length + log_inverse_length, -1)
    log_weighted_failure = torch.logsumexp(result.log_failure_by_length + log_inverse_length, -1)
    log_success, log_failure = result.log_success.detach(), result.log_failure.detach()
    return (torch.exp(0.5 * (log_failure - log_success) + log_weighted_success)
            - torch.exp(0.5 * (log_success - log_failure) + log_weighted_failure))


def prompt_state(family: PromptFamily, theta: torch.Tensor, grpo: bool = False) -> PromptState:
    """Every prompt's outcomes, Gradient Gap and (``grpo``) GRPO update at θ (B, D), exactly.

    Each prompt gets its own leaf copy of its start logits x_qᵀU + b and of W, so one backward pass of
    Σ_q f_q gives every prompt's own gradient; the chain rule back to U is x_q ⊗ (gradient of the start
    logits)."""
    start_table, table = family.split(theta.detach())
    bias = torch.zeros(family.vocab_size, dtype=theta.dtype, device=theta.device)
    bias[0] = EMPTY_LOGIT
    with torch.enable_grad():
        start = (torch.einsum("bqd,bdv->bqv", family.features, start_table) + bias).requires_grad_(True)  # (B, Q, V)
        rows = None if table is None else table.unsqueeze(1).expand(-1, family.n_prompts, -1, -1).clone(
        ).requires_grad_(True)  # (B, Q, V − 1, V): one copy per prompt
        leaves = [start] if rows is None else [start, rows]
        result = final_token_outcomes(start, rows, family.answers, family.max_lengths)
        wanted = [result.log_odds.sum()] + ([_grpo_objective(result).sum()] if grpo else [])
        gradients = [torch.autograd.grad(objective, leaves, retain_graph=index + 1 < len(wanted))
                     for index, objective in enumerate(wanted)]

    def flatten(parts) -> torch.Tensor:
        through_u = torch.einsum("bqd,bqv->bqdv", family.features, parts[0]).flatten(-2)  # (B, Q, dV)
        return through_u if rows is None else torch.cat([through_u, parts[1].flatten(-2)], dim=-1)  # (B, Q, D)

    detached = markov.Outcomes(result.log_success_by_length.detach(), result.log_failure_by_length.detach())
    return PromptState(detached, flatten(gradients[0]), flatten(gradients[1]) if grpo else None)


def dr_grpo_weights(state: PromptState, group_size: int) -> torch.Tensor:
    """Dr. GRPO's weight of each prompt's gap, c_q = (1 − 1/G) J_q(1 − J_q) (∇J_q = J_q(1 − J_q)∇f_q, eq. 10),
    J(1 − J) formed in log space.   (B, Q)"""
    return (1 - 1 / group_size) * torch.exp(state.outcomes.log_success + state.outcomes.log_failure)


def prompt_parts(state: PromptState, rule: str, group_size: int) -> torch.Tensor:
    """Each prompt's part of the update before averaging (:data:`UPDATE_RULES`).   (B, Q, D)"""
    _check_choice("rule", rule, UPDATE_RULES)
    if rule == "grpo":
        if state.grpo_updates is None:
            raise ValueError("rule 'grpo' needs prompt_state(..., grpo=True)")
        return state.grpo_updates
    if rule == "safe_step":  # eq. (21) per prompt: (1 − J_q)/T_ψ₁ along the prompt's own gap
        return (state.outcomes.log_failure.exp() / state.psi1).unsqueeze(-1) * state.gaps
    return dr_grpo_weights(state, group_size).unsqueeze(-1) * state.gaps


def project_conflicts(parts: torch.Tensor, selected: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """PCGrad (Yu et al. 2020): each selected part u_q, against the other selected parts u_p in ``order``,
    loses its component along u_p whenever ⟨u_q, u_p⟩ < 0 (projected onto u_p's normal plane).
    (B, Q, D), (B, Q) bool, (B, Q) a permutation of the prompts per run → (B, Q, D)."""
    projected = parts.clone()
    q_axis = torch.arange(parts.shape[1], device=parts.device)
    for position in range(parts.shape[1]):
        other = order[:, position]  # (B,)
        reference = parts[torch.arange(parts.shape[0]), other]  # (B, D): the original u_p, as in PCGrad
        inner = torch.einsum("bqd,bd->bq", projected, reference)  # (B, Q)
        norm2 = (reference * reference).sum(-1, keepdim=True).clamp_min(torch.finfo(parts.dtype).tiny)
        conflict = (inner < 0) & selected & selected[torch.arange(parts.shape[0]), other].unsqueeze(-1) \
            & (q_axis.unsqueeze(0) != other.unsqueeze(-1))
        projected = projected - torch.where(conflict, inner / norm2, 0.0).unsqueeze(-1) * reference.unsqueeze(1)
    return projected


def select_prompts(value: torch.Tensor, selection: str, count: int, band: tuple[float, float],
                   generator: torch.Generator) -> torch.Tensor:
    """Which prompts update this step (:data:`PROMPT_SELECTIONS`).   (B, Q) → (B, Q) bool with ``count`` True
    per run (every prompt for ``"all"``). ``"band"`` ranks the prompts with J_q in [lo, hi] first, each
    group in a random order, so the band's prompts are taken first and the rest only to top up."""
    _check_choice("selection", selection, PROMPT_SELECTIONS)
    if selection == "all":
        return torch.ones_like(value, dtype=torch.bool)
    keys = torch.rand(value.shape, generator=generator, dtype=value.dtype, device=value.device)
    if selection == "band":
        keys = keys + ((value < band[0]) | (value > band[1])).to(value.dtype)
    chosen = keys.argsort(dim=-1)[:, :count]
    return torch.zeros_like(value, dtype=torch.bool).scatter(-1, chosen, True)


@dataclass(frozen=True)
class PromptRun(Record):
    """What :func:`train` records. S recorded steps, K steps, B runs, Q prompts.

    value, log_odds: (S, B, Q) J_q and f_q at the recorded steps (recorded_steps (S,)).
    alignment: (K, B, Q) Δμ_q(k) = ⟨u_k/‖u_k‖, g⁺_q − g⁻_q⟩ of every prompt, selected or not.
    log_odds_change: (K, B, Q) f_q(θ_{k+1}) − f_q(θ_k).
    step: (K, B) η_k = α‖u_k‖. step_size: (B,) α. selected: (K, B, Q) the prompts that updated at k.
    final_theta: (B, D).
    """

    recorded_steps: torch.Tensor
    value: torch.Tensor
    log_odds: torch.Tensor
    alignment: torch.Tensor
    log_odds_change: torch.Tensor
    step: torch.Tensor
    step_size: torch.Tensor
    selected: torch.Tensor
    final_theta: torch.Tensor


def train(family: PromptFamily, rule: str, step_sizes: torch.Tensor | float, steps: int,
          generator: torch.Generator, selection: str = "all", prompts_per_step: int | None = None,
          band: tuple[float, float] = (0.2, 0.8), group_size: int = 8, record_every: int = 1,
          theta: torch.Tensor | None = None) -> PromptRun:
    """Run B = len(θ₀) exact trainings at once: θ ← θ + α u_k (module docstring).

    ``rule``: :data:`UPDATE_RULES`; ``step_sizes``: α, a number or (B,); ``selection``:
    :data:`PROMPT_SELECTIONS` with ``prompts_per_step`` m (default all); ``group_size`` G enters Dr. GRPO's
    (1 − 1/G) (and PCGrad's parts); ``generator`` draws the selections and PCGrad's orders (on θ's device)."""
    _check_choice("rule", rule, UPDATE_RULES)
    _check_choice("selection", selection, PROMPT_SELECTIONS)
    theta = (family.theta0 if theta is None else theta).clone()
    runs, prompts = theta.shape[0], family.n_prompts
    count = prompts if prompts_per_step is None else prompts_per_step
    if not (isinstance(count, int) and 1 <= count <= prompts):
        raise ValueError(f"prompts_per_step = {prompts_per_step!r} must be an integer in 1 … {prompts}")
    if not (isinstance(steps, int) and steps >= 1 and isinstance(record_every, int) and record_every >= 1):
        raise ValueError(f"steps = {steps!r} and record_every = {record_every!r} must be integers ≥ 1")
    if not (isinstance(group_size, int) and group_size >= 2):
        raise ValueError(f"group_size = {group_size!r} must be an integer ≥ 2")
    if not 0 <= band[0] <= band[1] <= 1:
        raise ValueError(f"band = {band!r} must satisfy 0 ≤ lo ≤ hi ≤ 1")
    alpha = torch.as_tensor(step_sizes, dtype=theta.dtype, device=theta.device).expand(runs).clone()
    if not bool(((alpha > 0) & torch.isfinite(alpha)).all()):
        raise ValueError(f"step sizes {alpha.tolist()} must be positive and finite")
    values, log_odds, recorded, alignments, changes, lengths, chosen = [], [], [], [], [], [], []
    state = prompt_state(family, theta, grpo=rule == "grpo")
    for k in range(steps + 1):
        if k % record_every == 0 or k == steps:
            values.append(state.value)
            log_odds.append(state.log_odds)
            recorded.append(k)
        if k == steps:
            break
        selected = select_prompts(state.value, selection, count, band, generator)  # (B, Q)
        parts = prompt_parts(state, "dr_grpo" if rule == "pcgrad" else rule, group_size)
        if rule == "pcgrad":
            order = torch.rand(runs, prompts, generator=generator, dtype=theta.dtype, device=theta.device).argsort(-1)
            parts = project_conflicts(parts, selected, order)
        update = alpha.unsqueeze(-1) * (parts * selected.unsqueeze(-1)).sum(1) / count  # (B, D)
        alignments.append(many_prompts.prompt_alignments(update, state.gaps))
        lengths.append(torch.linalg.vector_norm(update, dim=-1))
        chosen.append(selected)
        theta = theta + update
        previous = state.log_odds
        state = prompt_state(family, theta, grpo=rule == "grpo")
        changes.append(state.log_odds - previous)
    return PromptRun(torch.tensor(recorded), torch.stack(values), torch.stack(log_odds), torch.stack(alignments),
                     torch.stack(changes), torch.stack(lengths), alpha, torch.stack(chosen), theta)


# ----------------------------------------------------------------------------------------------
# Sampled training: GRPO, GRPO-N, GRPO-P, GSPO, GSPO-N
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SampledGroups:
    """G sampled responses to each of Q' prompts, B runs.

    Attributes:
        prompts: (Q',) long, the family's index of each sampled prompt.
        tokens: (B, Q', G, T) long, T = max T_q of the sampled prompts; 0 (EOS) after the response's end.
        mask: (B, Q', G, T) bool, the response's tokens *including its EOS* (as a language model's completion
            includes EOS): |o| = ``mask.sum(-1)`` ≥ 1 is the length ℓ of :func:`final_token_outcomes` and
            the length that GRPO and GSPO divide by. A forced EOS (at position T_q) is a token of
            probability 1: its log-probability is 0 and its token ratio always 1.
        rewards: (B, Q', G) float, the final-token verifier: 1 iff the last token before EOS is a_q (an
            empty response, EOS first, is wrong).
    """

    prompts: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)  # (B, Q', G): |o| with its EOS


def _start_log_probs(family: PromptFamily, start_table: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """log π(first token | x_q) of the given prompts.   (B, d, V), (Q',) → (B, Q', V)"""
    bias = torch.zeros(family.vocab_size, dtype=start_table.dtype, device=start_table.device)
    bias[0] = EMPTY_LOGIT
    return torch.log_softmax(torch.einsum("bqd,bdv->bqv", family.features[:, prompts], start_table) + bias, -1)


def _prompt_indices(family: PromptFamily, prompts: torch.Tensor | None) -> torch.Tensor:
    """(Q,) bool mask or None (every prompt) → (Q',) long indices."""
    q = family.n_prompts
    if prompts is None:
        return torch.arange(q, device=family.max_lengths.device)
    if not (isinstance(prompts, torch.Tensor) and prompts.dtype == torch.bool and prompts.shape == (q,)):
        shape = tuple(prompts.shape) if isinstance(prompts, torch.Tensor) else type(prompts).__name__
        raise ValueError(f"the prompt mask must be a ({q},) bool tensor, got {shape}")
    if not bool(prompts.any()):
        raise ValueError("the prompt mask selects no prompt")
    return prompts.to(family.max_lengths.device).nonzero().squeeze(-1)


def sample_responses(family: PromptFamily, theta: torch.Tensor, group_size: int, generator: torch.Generator,
                     prompts: torch.Tensor | None = None) -> SampledGroups:
    """Draw G responses per prompt from π_θ, position by position, every run at once.   θ (B, D)

    ``prompts``: an optional (Q,) bool mask of the prompts to sample (default all). Each position draws
    one Gumbel-max sample per response from uniforms of ``generator`` (drawn on the generator's device and
    moved to θ's), so the same generator state gives the same responses; position T_q forces EOS."""
    if not (isinstance(group_size, int) and group_size >= 1):
        raise ValueError(f"group_size = {group_size!r} must be an integer ≥ 1")
    index = _prompt_indices(family, prompts)
    theta = theta.detach()
    start_table, table = family.split(theta)
    runs, v, device = theta.shape[0], family.vocab_size, theta.device
    lengths = family.max_lengths[index]  # (Q',)
    longest = int(lengths.max())
    log_start = _start_log_probs(family, start_table, index).unsqueeze(2)  # (B, Q', 1, V)
    log_table = None if table is None else torch.log_softmax(table, -1)  # (B, V − 1, V)
    shape = (runs, index.numel(), group_size)
    run_axis = torch.arange(runs, device=device).view(runs, 1, 1)
    tokens = torch.zeros(*shape, longest, dtype=torch.long, device=device)
    mask = torch.zeros(*shape, longest, dtype=torch.bool, device=device)
    alive = torch.ones(shape, dtype=torch.bool, device=device)
    previous = torch.zeros(shape, dtype=torch.long, device=device)  # the last token so far (0: none yet)
    last = torch.zeros(shape, dtype=torch.long, device=device)  # the last token before the response's EOS
    for position in range(longest):
        forced = (lengths == position + 1).view(1, -1, 1)  # (1, Q', 1): this position is the prompt's T
        # position 0: the start logits; later ones the rows W[o_{t−1}] (a response that has ended reads row 1
        # and is masked; without W every later position is forced)
        later = position > 0 and log_table is not None
        log_next = log_table[run_axis, (previous - 1).clamp_min(0)] if later else log_start.expand(*shape, v)
        uniform = torch.rand(*shape, v, generator=generator, dtype=theta.dtype, device=generator.device).to(device)
        drawn = (log_next - torch.log(-torch.log(uniform))).argmax(-1)  # Gumbel-max: a draw from π(· | o_{<t})
        token = torch.where(forced | ~alive, 0, drawn)
        tokens[..., position] = token
        mask[..., position] = alive
        ending = alive & (token == 0)
        last = torch.where(ending, previous, last)
        alive = alive & (token != 0)
        previous = token
    answers = family.answers[:, index].unsqueeze(-1)  # (B, Q', 1): a_q ≥ 1, so an empty response is wrong
    return SampledGroups(index, tokens, mask, (last == answers).to(theta.dtype))


def response_token_log_probs(family: PromptFamily, theta: torch.Tensor, groups: SampledGroups) -> torch.Tensor:
    """log π_θ of every sampled token, 0 outside the mask and at a forced EOS (probability 1),
    differentiable in θ.   θ (B, D) → (B, Q', G, T)

    Σ_t of a response is log π_θ(o), the probability :func:`final_token_outcomes` sums."""
    start_table, table = family.split(theta)
    tokens, mask = groups.tokens, groups.mask
    runs, prompts, group, longest = tokens.shape
    lengths = family.max_lengths[groups.prompts]  # (Q',)
    first = _start_log_probs(family, start_table, groups.prompts).unsqueeze(2).expand(-1, -1, group, -1)
    parts = [first.gather(-1, tokens[..., :1])]  # (B, Q', G, 1)
    if longest > 1:
        if table is None:
            parts.append(torch.zeros(runs, prompts, group, longest - 1, dtype=theta.dtype, device=theta.device))
        else:
            v = family.vocab_size
            log_table = torch.log_softmax(table, -1).flatten(-2)  # (B, (V − 1)V)
            index = (tokens[..., :-1] - 1).clamp_min(0) * v + tokens[..., 1:]  # row o_{t−1}, column o_t
            parts.append(log_table.gather(-1, index.flatten(1)).view(runs, prompts, group, longest - 1))
    log_probs = torch.cat(parts, dim=-1)
    positions = torch.arange(longest, device=tokens.device)
    forced = (positions + 1 == lengths.unsqueeze(-1)).view(1, prompts, 1, longest)  # (1, Q', 1, T)
    return torch.where(mask & ~forced, log_probs, 0.0)


def filtered_group_advantages(rewards: torch.Tensor, variants: list[str]) -> torch.Tensor:
    """φ(A_i) of each group: A_i = (r_i − r̄)/(s + 10⁻⁴) (TRL, :func:`rlvr_dynamics.theory.estimators.group_advantages`),
    then each run's filter (:data:`SAMPLED_VARIANTS`).   (B, ..., G), B variants → (B, ..., G)"""
    advantages = estimators.group_advantages(rewards, "grpo")
    shape = (len(variants),) + (1,) * (rewards.ndim - 1)
    negative = torch.tensor([v in ("grpo", "grpo_n", "gspo", "gspo_n") for v in variants], device=rewards.device)
    positive = torch.tensor([v in ("grpo", "grpo_p", "gspo") for v in variants], device=rewards.device)
    keep = ((advantages < 0) & negative.view(shape)) | ((advantages > 0) & positive.view(shape))
    return torch.where(keep, advantages, 0.0)


def sampled_objective(new_log_probs: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor,
                      advantages: torch.Tensor, sequence_level: torch.Tensor, epsilon: tuple[float, float],
                      sequence_epsilon: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each run's clipped objective, the mean over its prompts and responses of
    :func:`~rlvr_dynamics.theory.boundary.clipped_objective` — token-level with ``epsilon`` or, where
    ``sequence_level``, sequence-level (BD3) with ``sequence_epsilon`` — and where the clip binds.
    (B, Q, G, T) ×3, (B, Q, G), (B,) bool → (B,) differentiable, (B, Q, G, T) bool

    A token is clipped where its ratio ρ leaves the range on the side that stops its gradient:
    ρ > 1 + ε_high with A > 0, or ρ < 1 − ε_low with A < 0."""
    runs = new_log_probs.shape[0]
    objective = new_log_probs.new_zeros(runs)
    clipped = torch.zeros_like(mask)
    for level, (low, high), chosen in (("token", epsilon, ~sequence_level), ("sequence", sequence_epsilon,
                                                                              sequence_level)):
        index = chosen.nonzero().squeeze(-1)
        if index.numel() == 0:
            continue
        new, old, where, advantage = new_log_probs[index], old_log_probs[index], mask[index], advantages[index]
        per_response = boundary.clipped_objective(new, old, where, advantage, level, low, high)  # (b, Q, G)
        objective = objective.index_add(0, index, per_response.flatten(1).mean(-1))
        with torch.no_grad():
            ratio = boundary.log_importance_ratios(new, old, where, level).exp()
            sign = advantage.unsqueeze(-1)
            bound = ((ratio > 1 + high) & (sign > 0)) | ((ratio < 1 - low) & (sign < 0))
            clipped[index] = bound & where
    return objective, clipped


@dataclass(frozen=True)
class SampledRun(Record):
    """What :func:`train_sampled` records. S recorded steps, K steps, B runs, Q prompts (held-out ones too).

    log_success, log_failure: (S, B, Q) log J_q and log(1 − J_q), exact, at the recorded steps
    (recorded_steps (S,)). clipped_fraction: (K, B) the share of the updating responses' tokens (those with
    φ(A) ≠ 0) whose ratio was clipped on step k's last inner step (0 when none updates).
    updating_fraction: (K, B) the share of step k's sampled responses with φ(A) ≠ 0. step_size: (B,) α.
    final_theta: (B, D).
    """

    recorded_steps: torch.Tensor
    log_success: torch.Tensor
    log_failure: torch.Tensor
    clipped_fraction: torch.Tensor
    updating_fraction: torch.Tensor
    step_size: torch.Tensor
    final_theta: torch.Tensor


def exact_outcomes(family: PromptFamily, theta: torch.Tensor) -> markov.Outcomes:
    """Every prompt's exact length law by outcome at θ (B, D), no gradient.   → Outcomes of (B, Q, T)"""
    with torch.no_grad():
        start_table, table = family.split(theta)
        bias = torch.zeros(family.vocab_size, dtype=theta.dtype, device=theta.device)
        bias[0] = EMPTY_LOGIT
        start = torch.einsum("bqd,bdv->bqv", family.features, start_table) + bias
        rows = None if table is None else table.unsqueeze(1).expand(-1, family.n_prompts, -1, -1)
        return final_token_outcomes(start, rows, family.answers, family.max_lengths)


def _check_clip_range(name: str, value) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {value!r} must be a pair (ε_low, ε_high)") from None
    if not (0 <= low < 1 and 0 <= high < math.inf):
        raise ValueError(f"{name} = {value!r} needs 0 ≤ ε_low < 1 and 0 ≤ ε_high < ∞")
    return low, high


def train_sampled(family: PromptFamily, variants, step_size: torch.Tensor | float, steps: int,
                  generator: torch.Generator, group_size: int = 8, inner_steps: int = 1,
                  epsilon: tuple[float, float] = (0.2, 0.2), sequence_epsilon: tuple[float, float] = (3e-4, 4e-4),
                  record_every: int = 1, train_prompts: torch.Tensor | None = None) -> SampledRun:
    """Run B = len(θ₀) sampled trainings at once (module docstring, *Sampled training*).

    ``variants``: one of :data:`SAMPLED_VARIANTS` per run, or one for every run. ``step_size``: α, a number
    or (B,). Each step samples G = ``group_size`` responses per training prompt from θ_old, then takes
    ``inner_steps`` μ steps θ ← θ + α ∇_θ [mean over training prompts and responses of the clipped objective]
    with ratios against θ_old: token-level with ``epsilon`` (grpo*), sequence-level with ``sequence_epsilon``
    (gspo*; GSPO's paper and TRL use (3e-4, 4e-4)). ``train_prompts``: an optional (Q,) bool mask of the
    prompts that train (default all); every prompt's exact J_q is recorded at every ``record_every``-th
    step and at the end. All randomness comes from ``generator``."""
    theta = family.theta0.clone()
    runs = theta.shape[0]
    variants = [variants] * runs if isinstance(variants, str) else list(variants)
    if len(variants) != runs:
        raise ValueError(f"variants: {len(variants)} values for {runs} runs")
    for variant in variants:
        _check_choice("variant", variant, SAMPLED_VARIANTS)
    if not (isinstance(steps, int) and steps >= 1 and isinstance(record_every, int) and record_every >= 1):
        raise ValueError(f"steps = {steps!r} and record_every = {record_every!r} must be integers ≥ 1")
    if not (isinstance(group_size, int) and group_size >= 2):
        raise ValueError(f"group_size = {group_size!r} must be an integer ≥ 2 (the group mean is the baseline)")
    if not (isinstance(inner_steps, int) and inner_steps >= 1):
        raise ValueError(f"inner_steps = {inner_steps!r} must be an integer ≥ 1")
    epsilon = _check_clip_range("epsilon", epsilon)
    sequence_epsilon = _check_clip_range("sequence_epsilon", sequence_epsilon)
    if train_prompts is not None and not (isinstance(train_prompts, torch.Tensor) and train_prompts.dtype == torch.bool
                                          and train_prompts.shape == (family.n_prompts,) and bool(train_prompts.any())):
        shape = tuple(train_prompts.shape) if isinstance(train_prompts, torch.Tensor) else type(train_prompts).__name__
        raise ValueError(f"train_prompts must be a ({family.n_prompts},) bool tensor selecting at least one prompt, "
                         f"got {shape}")
    alpha = torch.as_tensor(step_size, dtype=theta.dtype, device=theta.device).expand(runs).clone()
    if not bool(((alpha > 0) & torch.isfinite(alpha)).all()):
        raise ValueError(f"step sizes {alpha.tolist()} must be positive and finite")
    sequence_level = torch.tensor([v.startswith("gspo") for v in variants], device=theta.device)
    recorded, successes, failures, clipped_fractions, updating_fractions = [], [], [], [], []
    for k in range(steps + 1):
        if k % record_every == 0 or k == steps:
            outcomes = exact_outcomes(family, theta)
            successes.append(outcomes.log_success)
            failures.append(outcomes.log_failure)
            recorded.append(k)
        if k == steps:
            break
        groups = sample_responses(family, theta, group_size, generator, train_prompts)
        advantages = filtered_group_advantages(groups.rewards, variants)  # (B, Q', G)
        with torch.no_grad():
            old_log_probs = response_token_log_probs(family, theta, groups)
        for _ in range(inner_steps):
            point = theta.detach().requires_grad_(True)
            with torch.enable_grad():
                new_log_probs = response_token_log_probs(family, point, groups)
                objective, clipped = sampled_objective(new_log_probs, old_log_probs, groups.mask, advantages,
                                                       sequence_level, epsilon, sequence_epsilon)
                (gradient,) = torch.autograd.grad(objective.sum(), point)
            theta = theta + alpha.unsqueeze(-1) * gradient
        updating = advantages != 0  # (B, Q', G)
        active = groups.mask & updating.unsqueeze(-1)  # (B, Q', G, T)
        clipped_fractions.append((clipped & active).flatten(1).sum(-1).to(theta.dtype)
                                 / active.flatten(1).sum(-1).clamp_min(1))
        updating_fractions.append(updating.flatten(1).to(theta.dtype).mean(-1))
    return SampledRun(torch.tensor(recorded), torch.stack(successes), torch.stack(failures),
                      torch.stack(clipped_fractions), torch.stack(updating_fractions), alpha, theta)
