"""The chapter *Token-level theory* (Section 4): its parameters and every study, margin, table and
figure frame of the notebook.

The paper's bounds live in :mod:`rlvr_dynamics.theory.bounds` ((18a), (19), (20)–(22)), the token
chain's instances and exact runs in :mod:`rlvr_dynamics.engines.token_chain`, the sampled training
in :mod:`rlvr_dynamics.engines.token_training`; this module runs them at the chapter's settings and
turns the results into the claims' margins (≥ 0 when a claim holds), headline numbers and tables.

The studies, in the notebook's order (each draws from its own seeds, except where a ``generator`` is
passed: then in the order of the notebook's cells):

1. exactness of the forward algorithm against enumeration (:func:`forward_algorithm_errors`);
2. Assumptions 2 and 3, measured (:func:`measured_constants`, :func:`assumption3_table`);
3. inequality (22) and Theorem 3 on exact runs (:func:`theorem3_study`);
4. explicit instances of Theorem 4, run until J collapses (:func:`theorem4_collapse`, on a NumPy path for the
   ``final_token`` verifier, :func:`final_token_log_odds`);
5. the length law of the critical step (:func:`length_law`);
6. the effective steps (20) over the safe step (18a) (:func:`step_ratios`), and GRPO's as J → 1
   (:func:`grpo_ratio_near_one`);
7. sampled training with fixed learning rates on a grid a factor 2 apart (:func:`sampled_training`,
   :func:`training_outcome`).

Numbers the prose types are constants of the set-up (SETUP_NUMBERS); every measured number is glued from the
run (the ``numbers`` methods).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from rlvr_dynamics.chapters import statistics
from rlvr_dynamics.config import parameter
from rlvr_dynamics.engines import token_chain, token_training
from rlvr_dynamics.theory import DTYPE, bounds, estimators, gaps, markov
from rlvr_dynamics.theory.policies import TokenPolicy

INTERVAL_LEVEL = 0.95
"""The level of every interval of the chapter (Student-t over instances, bootstrap, ψ₁'s is 99%)."""
FULL_SUCCESS = 1.0
"""J = 1: the "100%" of the paper's stagnation hypothesis."""
SETUP_NUMBERS = {"95%": INTERVAL_LEVEL, "100%": FULL_SUCCESS}
"""The decimals the prose types: constants of the set-up (every measured number is glued)."""
HEAP_BLOCK_LIMIT = 32 * 2**20
"""glibc serves blocks smaller than this from its heap (the largest dynamic mmap threshold on 64-bit Linux):
the forward algorithm's per-position blocks of that size pile up there over the T positions (measured), larger
ones go back to the system when freed."""


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
    training_longest_length: int = parameter("longest T of the sampled training (4, 8, 16, …, doubling)", "int",
                                             low=8, high=1024)
    training_steps: int = parameter("steps of the sampled training", "int", low=10, high=100_000)
    training_seeds: int = parameter("sampled-training runs per (variant, learning rate, T)", "int", low=2, high=256)
    training_initial_value: float = parameter("J₀ of the sampled training", "float", low=0.02, high=0.45)
    training_rate_doublings: int = parameter("learning rates of the sampled training: 1, 2, 4, …, 2^(n − 1)", "int",
                                             low=2, high=30)

    def estimated_peak_bytes(self) -> int:
        """The run's peak memory in bytes from its largest float64 tensors (the interpreter and its
        libraries, ≈ 0.4 GB, not included): the studies run one after another, so the peak is the largest
        study's. Exact studies hold the forward algorithm's graph, (B, V, S, V − 1) per position, S the
        verifier's count states (1, 2 or T); the length law's Hessian holds it once per parameter, which
        grows like T² for the ``majority`` verifier. Measured runs of 0.2–2 GB came within ×1.5 of it."""
        vocab, params = self.vocab_size, (self.vocab_size + 1) * self.vocab_size

        def states(kind: str, length: int) -> int:
            return markov.Verifier(kind, vocab).count_cap(length) + 1

        def graph(runs: int, length: int, kind: str) -> int:
            """∇f by the forward algorithm: its autograd graph, ~2 (B, V, S, V − 1) blocks per position."""
            return 8 * runs * length * vocab * (vocab - 1) * (2 * states(kind, length) + 5)

        def hessian(runs: int, length: int, kind: str) -> int:
            """∇²f of ``runs`` points, taken markov.hessian_chunk at a time (markov.hessian_bytes_per_point each)."""
            policy, verifier = TokenPolicy(vocab, length, position_bias=False), markov.Verifier(kind, vocab)
            return min(runs, markov.hessian_chunk(policy, verifier)) * markov.hessian_bytes_per_point(policy, verifier)

        def forward(runs: int, length: int, kind: str) -> int:
            """f without a graph: ~3 (B, V, S, V − 1) temporaries, and (B, V, S) blocks that pile up on the heap."""
            block = 8 * runs * vocab * states(kind, length)
            return 3 * block * (vocab - 1) + (block * length if block < HEAP_BLOCK_LIMIT else 0)

        longest = lengths_grid(self.longest_length)[-1]
        exact = max(t for t in RUN_LENGTHS if t <= self.longest_length)
        near = max(t for t in NEAR_ONE_LENGTHS if t <= self.longest_length)
        law = [(kind, lengths_grid(self.majority_longest_length if kind == "majority" else self.longest_length)[-1])
               for kind in markov.VERIFIERS]
        runs = 3 * self.training_rate_doublings * self.training_seeds  # (variant, learning rate, instance)
        length = lengths_grid(self.training_longest_length)[-1]
        checks = {
            # the Hessian of every instance, and one step of both adversary signs at the 81 steps of the grid
            "length law": max(max(hessian(self.instances, t, kind), forward(2 * 81 * self.instances, t, kind))
                              for kind, t in law),
            "theorem 3": graph(2 * len(CONSTANT_STEPS), exact, self.verifier)
                         + hessian(2 * len(CONSTANT_STEPS), min(exact, ADVERSARY_LONGEST), self.verifier),
            "step ratios": graph(self.value_points, longest, self.verifier),
            "near one": graph(len(NEAR_ONE_GAPS), near, self.verifier),
            "assumption 3": 4 * 8 * 4000 * longest,  # 4000 sampled responses (n, T) and their copies
            # per step: sampled tokens (B, G, T) and ~4 copies, the scores (B, G, D) thrice, J by the forward
            # algorithm, and the effective steps (K, B) of every step
            "training": 8 * runs * self.group_size * (5 * length + 3 * params) + forward(runs, length, self.verifier)
                        + self.training_steps * (2 * 8 * runs + 500),
        }
        return max(checks.values())


PRESETS = {
    "ci": dict(vocab_size=6, verifier="final_token", initial_value=0.3, alignment=0.002, longest_length=256,
               majority_longest_length=64, instances=4, steps=30, value_points=7, group_size=8,
               training_longest_length=64, training_steps=100, training_seeds=8, training_initial_value=0.1,
               training_rate_doublings=18),
    "paper": dict(vocab_size=6, verifier="final_token", initial_value=0.3, alignment=0.002, longest_length=1024,
                  majority_longest_length=512, instances=16, steps=100, value_points=15, group_size=8,
                  training_longest_length=256, training_steps=300, training_seeds=32, training_initial_value=0.1,
                  training_rate_doublings=20),
}


def measured_constants(vocab_size: int, states: int, generator: torch.Generator) -> tuple[float, float]:
    """Assumption 2, measured: the largest token-score norm ‖e_v − π(· | p)‖ and largest
    λ_max(diag π − ππᵀ) over random softmax rows of growing scale (logits × 1 … 30), which approach
    the suprema G_p = √2 and L_p = ½."""
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


def _slope_fit(lengths: list[int], values: np.ndarray) -> dict[str, float]:
    """:func:`statistics.slope_interval` of ``values`` (instances, lengths) on ``lengths``; NaNs when fewer than two
    lengths or a value is missing."""
    if len(lengths) < 2 or not np.isfinite(values).all():
        keys = ("slope", "low", "high", "per_seed_min", "per_seed_max", "pooled_slope", "pooled_r2", "seeds")
        return dict.fromkeys(keys, math.nan)
    return statistics.slope_interval(np.array(lengths), values)


def instance_seeds(seed: int, count: int, offset: int = 0) -> list[int]:
    """The seeds of ``count`` instances: seed · 1000 + offset + i (offset 0: the exact studies; 500: the training)."""
    return [seed * 1000 + offset + i for i in range(count)]


# ----------------------------------------------------------------------------------------------
# Exactness of the forward algorithm; Assumptions 2 and 3
# ----------------------------------------------------------------------------------------------

EXACTNESS_TOLERANCE = 1e-12
"""Largest difference between the forward algorithm and the enumeration of every response."""


def forward_algorithm_errors(group_size: int, generator: torch.Generator) -> tuple[int, list[float]]:
    """The forward algorithm of :mod:`rlvr_dynamics.theory.markov` against enumerating every response of
    a small chain (V = 4, T = 6, five random θ drawn from ``generator``): for each verifier, the largest
    differences of the log-odds f, of ∇f = g⁺ − g⁻ and of the three population updates.

    Returns the number of responses enumerated and the 3 · (2 + 3) largest absolute differences."""
    small = TokenPolicy(4, 6, position_bias=False)
    tokens, lengths = small.enumerate_responses()  # (R, T), (R,)
    theta_small = torch.randn(5, small.n_params, generator=generator, dtype=DTYPE)
    log_prob, score = small.log_prob_and_score(theta_small, tokens, lengths)  # (5, R), (5, R, D)
    errors = []
    for kind in markov.VERIFIERS:
        check = markov.Verifier(kind, 4, 2)
        reward = check.reward(tokens, lengths).expand_as(log_prob)  # (5, R)
        result, gap = markov.log_odds_and_gradient_gap(small, theta_small, check)
        errors.append((result.log_odds - gaps.log_odds(log_prob, reward)).abs().max().item())
        errors.append((gap - gaps.gradient_gap(log_prob, score, reward)).abs().max().item())
        for variant in estimators.VARIANTS:
            exact = markov.expected_update(small, theta_small, check, variant, group_size)
            listed = estimators.expected_direction(log_prob, score, reward, lengths.expand_as(log_prob), variant,
                                                   group_size)
            errors.append((exact - listed).abs().max().item())
    return small.n_responses, errors


def exactness_margins(errors: list[float]) -> list[float]:
    """EXACTNESS_TOLERANCE − each difference of :func:`forward_algorithm_errors`."""
    return [EXACTNESS_TOLERANCE - e for e in errors]


def assumption2_margins(score_max: float, fisher_max: float) -> list[float]:
    """The measured suprema of :func:`measured_constants` reach ≥ 0.99 G_p and ≥ 0.95 L_p, and never
    exceed G_p = √2 and L_p = ½ (up to 1e-12): [G_p − score, score − 0.99 G_p, L_p − fisher, fisher − 0.95 L_p]."""
    score_bound, smoothness = bounds.SCORE_BOUND, bounds.SMOOTHNESS
    return [score_bound - score_max + 1e-12, score_max - 0.99 * score_bound, smoothness - fisher_max + 1e-12,
            fisher_max - 0.95 * smoothness]


def assumption3_table(config: TokenConfig, seeds: list[int], generator: torch.Generator, device: torch.device | str,
                      samples: int = 4000, resamples: int = 200) -> pd.DataFrame:
    """Assumption 3 at every length of :func:`lengths_grid`, on the first instance of ``seeds``: the mean
    length E|o|, the ψ₁ norm of the exact length distribution, its estimate from ``samples`` sampled
    responses with a 99% bootstrap interval (``resamples`` resamples, drawn from ``generator`` after the
    samples), and the bound T/log 2. One row per T."""
    rows = []
    for length in lengths_grid(config.longest_length):
        policy, check, theta0 = token_chain.make_instances(config.vocab_size, length, config.verifier,
                                                           config.initial_value, seeds[:1], device)
        result = markov.outcomes(policy, theta0, check)
        exact, mean = markov.length_psi1_norm(result).item(), markov.mean_length(result).item()
        _, sampled = markov.sample(policy, theta0, samples, generator)  # lengths (1, n)
        support = torch.arange(1, length + 1, dtype=DTYPE)
        draws = sampled[0][torch.randint(sampled.shape[1], (resamples, sampled.shape[1]), generator=generator)]
        counts = torch.stack([torch.bincount(sampled[0] - 1, minlength=length)]
                             + [torch.bincount(row - 1, minlength=length) for row in draws]).to(DTYPE)  # (1 + B, T)
        log_weights = torch.log(counts / counts.sum(-1, keepdim=True))  # the sample's, then each resample's
        norms = markov.psi1_norm(support, log_weights)  # (1 + B,)
        estimate = norms[0].item()
        low, high = torch.quantile(norms[1:], torch.tensor([0.005, 0.995], dtype=DTYPE)).tolist()
        rows.append(dict(T=length, mean_length=mean, psi1_exact=exact, psi1_samples=estimate, ci_low=low, ci_high=high,
                         bound=length / math.log(2)))
    return pd.DataFrame(rows)


def assumption3_margins(table: pd.DataFrame) -> list[float]:
    """E|o| ≤ ‖|o|‖_ψ₁ ≤ T/log 2 at every length: [ψ₁ − E|o|, T/log 2 − ψ₁] per row of :func:`assumption3_table`."""
    margins = []
    for row in table.itertuples():
        margins += [row.psi1_exact - row.mean_length, row.bound - row.psi1_exact]
    return margins


def assumption3_numbers(table: pd.DataFrame) -> dict[str, float]:
    """For the prose: the range of ‖|o|‖_ψ₁/E|o| over the lengths, and E|o|/T at the longest T (which tends to
    (1 − e⁻²)/2 for the stopping probability 2/T of the instances)."""
    ratio = table.psi1_exact / table.mean_length
    last = table.iloc[-1]
    return dict(psi1_over_mean_min=float(ratio.min()), psi1_over_mean_max=float(ratio.max()),
                mean_length_over_t=float(last.mean_length / last["T"]), mean_length_longest_t=int(last["T"]))


def bootstrap_margins(table: pd.DataFrame, slack: float = 0.02) -> list[float]:
    """The exact ψ₁ norm lies in the bootstrap interval, up to ``slack`` of it: the distance to the
    nearer end of the interval over the norm, plus the slack, per row of :func:`assumption3_table`."""
    return [min(row.psi1_exact - row.ci_low, row.ci_high - row.psi1_exact) / row.psi1_exact + slack
            for row in table.itertuples()]


# ----------------------------------------------------------------------------------------------
# Inequality (22) and Theorem 3
# ----------------------------------------------------------------------------------------------

RUN_LENGTHS = (4, 16, 64, 256)
"""The lengths of the exact runs of (22) and Theorem 3 (those up to ``longest_length``)."""
ADVERSARY_LONGEST = 16
"""The longest T at which the exact runs include the Theorem-4 adversary (it needs a Hessian per step)."""
CONSTANT_STEPS = (0.01, 0.1, 1.0)
"""The constant step sizes of the exact runs (and the initial sizes of the Theorem-3 step rule)."""


@dataclass(frozen=True)
class Theorem3Study:
    """Inequality (22) at every step and Theorem 3's guarantee (18b) under the step (18a), over exact runs.

    Attributes:
        margins22: log-odds change − the right-hand side of (22), every step of every run. (N₂₂,)
        margins3: J_K − the bound (18b), every K of every run under (18a). (N₃,)
        tightness: per (length, rule) under (18a), the smallest log-odds gain over M(K)/2.
        runs: one row per (T, rule, step rule): the mean final J and the worst margin of (22).
    """

    margins22: torch.Tensor
    margins3: torch.Tensor
    tightness: list[float]
    runs: pd.DataFrame

    def ineq22_margins(self) -> torch.Tensor:
        """(22) holds at every step, up to 1e-12 of rounding. (N₂₂,)"""
        return self.margins22 + 1e-12

    def theorem3_margins(self) -> torch.Tensor:
        """J_K ≥ (18b) at every K, up to 1e-12 of rounding. (N₃,)"""
        return self.margins3 + 1e-12

    def final_values(self) -> pd.DataFrame:
        """The mean final J per (T, direction rule) and step rule."""
        return self.runs.pivot_table(index=["T", "rule"], columns="step_rule", values="final_J")

    def summary(self) -> str:
        """How many steps and (K, run) pairs were checked, the worst margins and the tightness of (18b)."""
        return (f"(22): {self.margins22.numel()} steps, worst margin {self.margins22.min().item():.2e}; "
                f"Theorem 3: {self.margins3.numel()} (K, run) pairs, worst margin {self.margins3.min().item():.2e}; "
                f"log-odds gain / (M/2) ≥ {min(self.tightness):.2f}")

    def numbers(self) -> dict[str, float]:
        """For the prose: the smallest log-odds gain over M(K)/2 under (18a), and the steps of (22) checked."""
        return dict(theorem3_gain_over_bound=min(self.tightness), ineq22_steps=int(self.margins22.numel()))

    def headline(self) -> dict[str, object]:
        """The worst margins of (22) and (18b), the number of steps checked and the tightness of (18b)."""
        return dict(ineq22_worst_margin=self.margins22.min().item(), ineq22_steps=self.margins22.numel(),
                    theorem3_worst_margin=self.margins3.min().item(), theorem3_gain_over_bound_min=min(self.tightness))


def theorem3_study(config: TokenConfig, seeds: list[int], device: torch.device | str) -> Theorem3Study:
    """Exact runs on the first two instances of ``seeds`` at every length of RUN_LENGTHS up to
    ``longest_length``: directions ``gap``, ``grpo`` (and ``overshoot`` up to ADVERSARY_LONGEST), each
    with the step rules of :data:`token_chain.STEP_RULES` from the CONSTANT_STEPS, ``steps`` steps.
    Checks (22) (:func:`bounds.log_odds_change_bound`, constants at θ_k) at every step and, under the
    step (18a), Theorem 3's bound (18b) (:func:`bounds.convergence_lower_bound`) at every K."""
    margins22, margins3, tightness, run_rows = [], [], [], []
    for length in [t for t in RUN_LENGTHS if t <= config.longest_length]:
        policy, check, theta0 = token_chain.make_instances(config.vocab_size, length, config.verifier,
                                                           config.initial_value, seeds[:2], device)
        rules = ("gap", "grpo", "overshoot") if length <= ADVERSARY_LONGEST else ("gap", "grpo")
        for rule in rules:
            for step_rule in token_chain.STEP_RULES:
                sizes = torch.tensor(CONSTANT_STEPS, dtype=DTYPE, device=device).repeat(len(theta0))  # (B,)
                start = theta0.repeat_interleave(len(CONSTANT_STEPS), 0)  # (B, D), B = instances × sizes
                target = torch.full((len(start),), config.alignment, dtype=DTYPE, device=device)
                run = token_chain.simulate(policy, check, start, config.steps, rule, step_rule, sizes, target)
                bound = bounds.log_odds_change_bound(run.alignment, run.step, run.log_failure[:-1], length,
                                                     run.psi1[:-1])  # (K, B)
                margins22.append((run.log_odds_change - bound).flatten())
                if step_rule == "theorem3":
                    cumulative = (run.alignment * run.step).cumsum(0)  # M(K), (K, B)
                    lower = bounds.convergence_lower_bound(run.value[0], cumulative)
                    margins3.append((run.value[1:] - lower).flatten())
                    gain = run.log_odds[-1] - run.log_odds[0]
                    tightness.append((gain / (cumulative[-1] / 2)).min().item())
                run_rows.append(dict(T=length, rule=rule, step_rule=step_rule, final_J=run.value[-1].mean().item(),
                                     worst_margin_22=(run.log_odds_change - bound).min().item()))
    return Theorem3Study(torch.cat(margins22), torch.cat(margins3), tightness, pd.DataFrame(run_rows))


# ----------------------------------------------------------------------------------------------
# Theorem 4: explicit instances, run to collapse
# ----------------------------------------------------------------------------------------------

THEOREM4_LENGTHS = (4, 8, 16)
"""The lengths T of the Theorem-4 runs (verifier ``final_token``)."""
THEOREM4_INITIAL_VALUE = 0.5
THEOREM4_SEEDS = 4
"""Instances per length: the first of the chapter's instance seeds."""
COLLAPSE_FLOOR = 1e-3
"""A Theorem-4 run has collapsed once J < COLLAPSE_FLOOR."""
THEOREM4_MAX_STEPS = 20_000
"""The cap on the steps of a Theorem-4 run (it stops once every instance is below COLLAPSE_FLOOR)."""
HESSIAN_REFRESH = 50
"""The Theorem-4 adversary recomputes the Hessian of f every this many steps."""
FAST_PATH_TOLERANCE = 1e-9
"""Largest difference between :func:`final_token_log_odds` and the forward algorithm (f and ∇f)."""


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def final_token_log_odds(theta: np.ndarray, vocab_size: int, max_length: int,
                         answer_token: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The log-odds f = log J/(1 − J) of the ``final_token`` verifier and its gradient ∇f = g⁺ − g⁻, for the
    shared-parameter bigram chain of :func:`token_chain.make_instances`, in NumPy (float64) with a hand-written
    backward pass: the same numbers as :func:`markov.log_odds_and_gradient_gap` at a fraction of the cost per
    call, for the thousands of steps of a Theorem-4 run. θ (..., D) → f (...), ∇f (..., D).

    Forward: α_t(p) is the probability that the first t tokens are not EOS and the last is p (p = 0: BOS);
    α_{t+1}(v) = Σ_p α_t(p) π(v | p) for v ≥ 1. The response ends at position t with probability
    α_t(p) π(EOS | p) (α_{T−1}(p) at the last position, which forces EOS) and is correct when p = c.
    Backward: δ_t = ∂f/∂α_t = u_t + Q δ_{t+1} with u_t the weight of ending at position t (1/J for c,
    −1/(1 − J) otherwise, times π(EOS | p) before the last position) and Q = π(v ≥ 1 | p); then the
    gradient in π and, through the softmax of each row, in W. J and 1 − J are summed separately (never
    1 − J formed from J)."""
    v, length = vocab_size, max_length
    table = theta.reshape(*theta.shape[:-1], v + 1, v)
    rows = [v, *range(1, v)]  # P index p = 0 is the BOS row V of W
    probs = _softmax(table[..., rows, :])  # (..., P = V, V): π(· | p)
    stop, onward = probs[..., 0], probs[..., 1:]  # (..., P), (..., P, V − 1)
    alpha = np.zeros((*theta.shape[:-1], length, v))
    alpha[..., 0, 0] = 1.0
    for t in range(length - 1):
        alpha[..., t + 1, 1:] = np.matmul(alpha[..., t, None, :], onward)[..., 0, :]
    correct = np.arange(v) == answer_token
    ending = np.concatenate([alpha[..., :-1, :] * stop[..., None, :], alpha[..., -1:, :]], axis=-2)  # (..., T, P)
    success, failure = ending[..., correct].sum((-2, -1)), ending[..., ~correct].sum((-2, -1))
    weight = np.where(correct, 1.0 / success[..., None], -1.0 / failure[..., None])  # (..., P): ∂f/∂ending
    delta = np.zeros_like(alpha)
    delta[..., -1, :] = weight
    for t in range(length - 2, -1, -1):
        delta[..., t, :] = weight * stop + np.matmul(onward, delta[..., t + 1, 1:, None])[..., 0]
    grad_probs = np.concatenate([(alpha[..., :-1, :].sum(-2) * weight)[..., None],
                                 np.matmul(np.swapaxes(alpha[..., :-1, :], -1, -2), delta[..., 1:, 1:])], axis=-1)
    grad_logits = probs * (grad_probs - (probs * grad_probs).sum(-1, keepdims=True))  # through the row softmax
    grad = np.zeros_like(table)
    grad[..., rows, :] = grad_logits
    return np.log(success) - np.log(failure), grad.reshape(theta.shape)


def final_token_hessian(theta: np.ndarray, vocab_size: int, max_length: int, step: float = 1e-4) -> np.ndarray:
    """∇²f by central differences of the exact gradient of :func:`final_token_log_odds` (all D directions in
    one batched call), symmetrized. θ (B, D) → (B, D, D). It only chooses the adversary's direction n."""
    dim = theta.shape[-1]
    shifts = np.eye(dim) * step
    points = np.concatenate([theta[:, None, :] + shifts, theta[:, None, :] - shifts], axis=1)  # (B, 2D, D)
    _, grad = final_token_log_odds(points, vocab_size, max_length)
    hessian = (grad[:, :dim] - grad[:, dim:]) / (2 * step)
    return (hessian + np.swapaxes(hessian, -1, -2)) / 2


@dataclass(frozen=True)
class CollapseRun:
    """One length's Theorem-4 runs (B instances at the top of window (19)).

    Attributes:
        length: T. step: the constant step η (window (19)'s upper end). low: window (19)'s lower end.
        log_odds: f at steps 0 … K. (K + 1, B)
        alignment: Δμ_k = ⟨w_k, ∇f(θ_k)⟩ at steps 0 … K − 1. (K, B)
        gap_norm: ‖∇f(θ_k)‖ at steps 0 … K − 1 (the construction needs ≥ Δμ). (K, B)
        final_theta: θ_K. (B, D)
        fast_errors: largest |f|, ‖∇f‖ differences of the NumPy path against the forward algorithm, at θ₀ and θ_K.
    """

    length: int
    step: float
    low: float
    log_odds: np.ndarray
    alignment: np.ndarray
    gap_norm: np.ndarray
    final_theta: np.ndarray
    fast_errors: list[float]

    @property
    def value(self) -> np.ndarray:
        """J at steps 0 … K. (K + 1, B)"""
        return 1 / (1 + np.exp(-self.log_odds))

    def collapse_steps(self) -> np.ndarray:
        """The first step with J < COLLAPSE_FLOOR, per instance (−1 where J never got there). (B,)"""
        below = self.value < COLLAPSE_FLOOR
        return np.where(below.any(0), below.argmax(0), -1)


def collapse_run(theta: torch.Tensor, vocab_size: int, length: int, alignment: float,
                 max_steps: int = THEOREM4_MAX_STEPS, refresh: int = HESSIAN_REFRESH) -> CollapseRun:
    """The Theorem-4 adversary from θ₀ (B, D) at the constant step η = window (19)'s upper end, until every
    instance has J < COLLAPSE_FLOOR or ``max_steps``. The direction is w_k = cos φ ĝ_k ± sin φ n_k with
    cos φ = Δμ/‖∇f(θ_k)‖ (alignment exactly Δμ) and n_k ⊥ ĝ_k: every ``refresh`` steps the eigenvector of
    P∇²fP with the most negative eigenvalue (P projects out ĝ_k), in between the last one made orthogonal to
    ĝ_k again; of ±n_k the sign that lowers J more at the step taken (:func:`token_chain.overshoot_candidates`,
    with a Hessian refreshed less often). Every quantity from :func:`final_token_log_odds`."""
    low, step = bounds.theorem4_window(alignment, length)
    theta = theta.detach().cpu().numpy().copy()
    runs = np.arange(len(theta))
    log_odds, grad = final_token_log_odds(theta, vocab_size, length)
    target = math.log(COLLAPSE_FLOOR) - math.log1p(-COLLAPSE_FLOOR)
    trace, aligned, norms = [log_odds], [], []
    for k in range(max_steps):
        norm = np.linalg.norm(grad, axis=-1, keepdims=True)
        unit = grad / norm
        if k % refresh == 0:
            projector = np.eye(theta.shape[-1]) - unit[:, :, None] * unit[:, None, :]
            normal = np.linalg.eigh(projector @ final_token_hessian(theta, vocab_size, length) @ projector)[1][..., 0]
        normal = normal - (normal * unit).sum(-1, keepdims=True) * unit
        normal = normal / np.linalg.norm(normal, axis=-1, keepdims=True)
        cosine = np.minimum(alignment / norm, 1.0)
        candidates = np.stack([cosine * unit + np.sqrt(1 - cosine**2) * normal,
                               cosine * unit - np.sqrt(1 - cosine**2) * normal], axis=1)  # (B, 2, D)
        points = theta[:, None, :] + step * candidates
        trial, trial_grad = final_token_log_odds(points, vocab_size, length)
        pick = trial.argmin(-1)  # the sign that lowers J more
        aligned.append((candidates[runs, pick] * grad).sum(-1))
        norms.append(norm[:, 0])
        theta, log_odds, grad = points[runs, pick], trial[runs, pick], trial_grad[runs, pick]
        trace.append(log_odds)
        if bool((log_odds < target).all()):
            break
    return CollapseRun(length, step, low, np.stack(trace), np.stack(aligned), np.stack(norms),
                      theta, [])


def fast_path_errors(theta: np.ndarray, vocab_size: int, length: int) -> list[float]:
    """Largest |Δf| and |Δ∇f| between :func:`final_token_log_odds` and the forward algorithm of
    :mod:`rlvr_dynamics.theory.markov` at θ (B, D)."""
    policy, check = TokenPolicy(vocab_size, length, position_bias=False), markov.Verifier("final_token", vocab_size)
    result, gap = markov.log_odds_and_gradient_gap(policy, torch.as_tensor(theta, dtype=DTYPE), check)
    log_odds, grad = final_token_log_odds(theta, vocab_size, length)
    return [float(np.abs(log_odds - result.log_odds.numpy()).max()), float(np.abs(grad - gap.numpy()).max())]


@dataclass(frozen=True)
class Theorem4Collapse:
    """Theorem 4's adversary at the top of window (19), run until J < COLLAPSE_FLOOR, at several lengths.

    Attributes:
        alignment: the target Δμ.
        runs: one :class:`CollapseRun` per length of THEOREM4_LENGTHS.
    """

    alignment: float
    runs: list[CollapseRun]

    def hypothesis_margins(self) -> list[float]:
        """Per length: Δμ ≤ √((L_p + G_p²)T)/240 (Theorem 4's hypothesis) and the window non-empty."""
        return [m for run in self.runs
                for m in (bounds.theorem4_largest_alignment(run.length) - self.alignment, run.step - run.low)]

    def alignment_margins(self) -> list[float]:
        """Δμ_k = Δμ at every step, to 1e-12 (it needs ‖∇f‖ ≥ Δμ: cos φ ≤ 1), every run."""
        return [1e-12 - float(np.abs(run.alignment - self.alignment).max()) for run in self.runs] + [
            float(run.gap_norm.min()) - self.alignment for run in self.runs]

    def decrease_margins(self) -> np.ndarray:
        """f_k − f_{k+1} at every step of every run: > 0 when J decreased (f is increasing in J)."""
        return np.concatenate([(run.log_odds[:-1] - run.log_odds[1:]).ravel() for run in self.runs])

    def collapse_margins(self) -> list[float]:
        """Per (length, instance): 1 − (first step with J < COLLAPSE_FLOOR)/THEOREM4_MAX_STEPS, −1 if never."""
        return [1 - s / THEOREM4_MAX_STEPS if s >= 0 else -1.0 for run in self.runs for s in run.collapse_steps()]

    def exactness_margins(self) -> list[float]:
        """FAST_PATH_TOLERANCE − each difference of the NumPy path against the forward algorithm."""
        return [FAST_PATH_TOLERANCE - e for run in self.runs for e in run.fast_errors]

    def table(self) -> pd.DataFrame:
        """One row per length: window (19), the step used, the steps to collapse (min, max over instances) and
        the mean fall of the log-odds per step."""
        rows = []
        for run in self.runs:
            steps = run.collapse_steps()
            fall = float((run.log_odds[0] - run.log_odds[-1]).mean() / (len(run.log_odds) - 1))
            rows.append(dict(T=run.length, window_low=run.low, step=run.step, steps_min=int(steps.min()),
                             steps_max=int(steps.max()), fall_per_step=fall))
        return pd.DataFrame(rows)

    def numbers(self) -> dict[str, object]:
        """For the prose: the steps to collapse (text, per length), the fall of f per step at the shortest and
        the longest length, and the largest number of steps."""
        table = self.table()
        first, last = table.iloc[0], table.iloc[-1]
        steps = ", ".join(f"{row.steps_min}–{row.steps_max} at T = {row.T}" for row in table.itertuples())
        return dict(theorem4_steps=steps, theorem4_steps_max=int(table.steps_max.max()),
                    theorem4_fall_short=float(first.fall_per_step), theorem4_fall_long=float(last.fall_per_step),
                    theorem4_short=int(first["T"]), theorem4_long=int(last["T"]))

    def curve_frame(self, points: int = 200) -> pd.DataFrame:
        """For the figure: J against the step, about ``points`` points per run."""
        rows = []
        for run in self.runs:
            keep = np.unique(np.linspace(0, len(run.log_odds) - 1, points).astype(int))
            for instance in range(run.log_odds.shape[1]):
                rows += [dict(T=run.length, instance=instance, step=int(k), J=float(run.value[k, instance]))
                         for k in keep]
        return pd.DataFrame(rows)

    def headline(self) -> dict[str, object]:
        """The windows, the steps to collapse per length and instance, and the fall per step."""
        return dict(theorem4_windows={run.length: [run.low, run.step] for run in self.runs},
                    theorem4_collapse_steps={run.length: run.collapse_steps().tolist() for run in self.runs},
                    theorem4_fall_per_step=self.table().set_index("T").fall_per_step.to_dict())


def theorem4_collapse(config: TokenConfig, seeds: list[int]) -> Theorem4Collapse:
    """Theorem 4's adversary at alignment ``config.alignment`` and the step at the top of window (19), at every
    length of THEOREM4_LENGTHS: verifier ``final_token``, J₀ = THEOREM4_INITIAL_VALUE, the first THEOREM4_SEEDS
    of ``seeds`` (:func:`collapse_run`), with the NumPy path checked against the forward algorithm at the first
    and the last θ of every run."""
    runs = []
    for length in THEOREM4_LENGTHS:
        _, _, theta = token_chain.make_instances(config.vocab_size, length, "final_token", THEOREM4_INITIAL_VALUE,
                                                 seeds[:THEOREM4_SEEDS])
        run = collapse_run(theta, config.vocab_size, length, config.alignment, THEOREM4_MAX_STEPS, HESSIAN_REFRESH)
        errors = (fast_path_errors(theta.numpy(), config.vocab_size, length)
                  + fast_path_errors(run.final_theta, config.vocab_size, length))
        runs.append(dataclasses.replace(run, fast_errors=errors))
    return Theorem4Collapse(config.alignment, runs)


# ----------------------------------------------------------------------------------------------
# The length law of the critical step
# ----------------------------------------------------------------------------------------------

PAPER_SLOPE = -1.0
"""The paper's slope of the critical step in T (η* ∝ Δμ/T): attained unless every verifier's 95% interval lies
above it (the bound (22) keeps every slope ≥ −1 asymptotically, so only 'attained' can be tested)."""
FLAT_SLOPE_LIMIT = -0.5
"""``final_token``: the critical step flattens when the interval's low end is above this."""
TAIL_SHORTEST = 16
"""The tail fits of the length law use the lengths T ≥ this (the asymptotic regime)."""
MAJORITY_SLOPE = -0.5
"""``majority``: the slope of a √T-scaled statistic, η* ∝ T^(−1/2)."""
MAJORITY_TOLERANCE = 0.15
"""``majority``: the tail fit's 95% interval lies within MAJORITY_SLOPE ± this (a record, not enforced)."""


@dataclass(frozen=True)
class LengthLaw:
    """The critical step η*(T) of one step of the Theorem-4 adversary, per verifier, length and instance.

    Attributes:
        table: one row per (verifier, T, instance): η* and the gap norm ‖∇f‖ at θ₀.
        fits: per verifier, :func:`statistics.slope_interval` of log η* on log T (slope, low, high, …).
        tail_fits: the same over the lengths T ≥ TAIL_SHORTEST.
    """

    table: pd.DataFrame
    fits: dict[str, dict[str, float]]
    tail_fits: dict[str, dict[str, float]]

    def fit_table(self) -> pd.DataFrame:
        """The fits, one row per verifier."""
        return pd.DataFrame(self.fits).T

    def exists_margins(self) -> np.ndarray:
        """½ where a critical step was found, −½ where none was (η* = NaN). (rows,)"""
        return np.isfinite(self.table.eta_star.to_numpy()).astype(float) - 0.5

    def paper_slope_margins(self) -> list[float]:
        """Per verifier, the interval's low end − PAPER_SLOPE: > 0 iff the paper's 1/T is excluded (not attained)."""
        fits = self.fit_table()
        return [fits.loc[k, "low"] - PAPER_SLOPE for k in markov.VERIFIERS]

    def flattening_margins(self) -> list[float]:
        """``final_token``: the interval's low end − FLAT_SLOPE_LIMIT."""
        return [self.fit_table().loc["final_token", "low"] - FLAT_SLOPE_LIMIT]

    def majority_margins(self) -> list[float]:
        """``majority``: the tail fit's interval within MAJORITY_SLOPE ± MAJORITY_TOLERANCE, both ends."""
        fit = self.tail_fits["majority"]
        return [fit["low"] - (MAJORITY_SLOPE - MAJORITY_TOLERANCE), MAJORITY_SLOPE + MAJORITY_TOLERANCE - fit["high"]]

    def window_table(self, alignment: float, verifier: str = "final_token") -> pd.DataFrame:
        """Theorem 4's window (19) against the critical step of ``verifier``, per T: the window's ends, the
        smallest and largest η* over the instances, and in how many instances the whole window lies above η*
        (every step in it lowers J at the first step)."""
        rows = []
        for length, group in self.table[self.table.verifier == verifier].groupby("T"):
            low, high = bounds.theorem4_window(alignment, int(length))
            rows.append(dict(T=int(length), window_low=low, window_high=high, eta_star_min=group.eta_star.min(),
                             eta_star_max=group.eta_star.max(), above=int((group.eta_star < low).sum()),
                             instances=len(group)))
        return pd.DataFrame(rows)

    def numbers(self, alignment: float) -> dict[str, object]:
        """For the prose: every verifier's slope and interval (``slope_KIND``, ``low_KIND``, ``high_KIND``; tail
        fits ``tail_…``), and where window (19) lies against η* (``window_above``: text, per length)."""
        out = {}
        for kind in markov.VERIFIERS:
            for prefix, fits in (("", self.fits), ("tail_", self.tail_fits)):
                out.update({f"{prefix}{key}_{kind}": float(fits[kind][key]) for key in ("slope", "low", "high")})
        window = self.window_table(alignment)
        out["window_above"] = ", ".join(f"{row.above} of {row.instances} at T = {row.T}" for row in window.itertuples())
        return out

    def window_margins(self, alignment: float) -> list[float]:
        """Window (19) lies above η* in every instance at the shortest T and in none at the longest (final_token):
        [above − instances + ½ at the shortest, ½ − above at the longest]."""
        window = self.window_table(alignment)
        first, last = window.iloc[0], window.iloc[-1]
        return [first.above - first.instances + 0.5, 0.5 - last.above]

    def headline(self) -> dict[str, object]:
        """Every verifier's fit, over all lengths and over T ≥ TAIL_SHORTEST."""
        return {"length_law": {kind: self.fits[kind] for kind in markov.VERIFIERS},
                "length_law_tail": {kind: self.tail_fits[kind] for kind in markov.VERIFIERS}}

    def reference_lines(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the figure: T at the ends of the plotted range, and lines of slope −1 and −2 through the
        largest mean η* at T = 4."""
        law = self.table
        anchor = law[(law["T"] == 4)].groupby("verifier").eta_star.mean().max()
        grid_t = np.array([4, max(law["T"])])
        return grid_t, anchor * (grid_t / 4) ** -1.0, anchor * (grid_t / 4) ** -2.0

    def legend_labels(self, names: list[str]) -> list[str]:
        """For the figure: each verifier's legend entry with its slope and interval; other entries unchanged."""
        labels = [f"{kind.replace('_', ' ')}: slope {self.fits[kind]['slope']:.2f} [{self.fits[kind]['low']:.2f}, "
                  f"{self.fits[kind]['high']:.2f}]" for kind in markov.VERIFIERS]
        return [labels[markov.VERIFIERS.index(n)] if n in markov.VERIFIERS else n for n in names]


def length_law(config: TokenConfig, seeds: list[int], device: torch.device | str) -> LengthLaw:
    """η*(T) for every verifier (lengths up to ``longest_length``, ``majority_longest_length`` for
    ``majority``) and every instance of ``seeds`` at J₀ = ``initial_value``: the smallest step from which
    one step of the Theorem-4 adversary at alignment ``config.alignment`` lowers J
    (:func:`token_chain.one_step_threshold`, smallest over both signs of the adversary)."""
    law_rows, law_fits, tail_fits = [], {}, {}
    for kind in markov.VERIFIERS:
        longest = config.majority_longest_length if kind == "majority" else config.longest_length
        kind_lengths = lengths_grid(longest)
        thresholds = np.zeros((len(seeds), len(kind_lengths)))  # (instances, lengths)
        for column, length in enumerate(kind_lengths):
            policy, check, theta0 = token_chain.make_instances(config.vocab_size, length, kind, config.initial_value,
                                                               seeds, device)
            result, gap = markov.log_odds_and_gradient_gap(policy, theta0, check)  # gap (n, D)
            hessian = markov.log_odds_hessian(policy, theta0, check)  # (n, D, D)
            target = torch.full((len(seeds),), config.alignment, dtype=DTYPE, device=device)
            candidates = token_chain.overshoot_candidates(gap, hessian, target)  # (n, 2, D)
            eta_star = token_chain.one_step_threshold(policy, check, theta0, candidates, target).min(-1).values
            thresholds[:, column] = eta_star.cpu().numpy()
            for index, value in enumerate(thresholds[:, column]):
                law_rows.append(dict(verifier=kind, T=length, instance=index, eta_star=value,
                                     gap_norm=torch.linalg.vector_norm(gap[index]).item()))
        law_fits[kind] = statistics.slope_interval(np.array(kind_lengths), thresholds)
        tail = np.array(kind_lengths) >= TAIL_SHORTEST
        tail_fits[kind] = _slope_fit(list(np.array(kind_lengths)[tail]), thresholds[:, tail])
    return LengthLaw(pd.DataFrame(law_rows), law_fits, tail_fits)


# ----------------------------------------------------------------------------------------------
# Effective steps (20) against the safe step (18a)
# ----------------------------------------------------------------------------------------------

DR_GRPO_SLOPE_RANGE = (0.8, 1.2)
"""Dr. GRPO and REINFORCE: the T-slope of η_eff/η_safe lies here at every J (theory: 1)."""
NORMALIZATION_GAIN = 0.4
"""GRPO's T-slope is below Dr. GRPO's by at least this at every J."""
GRPO_VALUE_GROWTH = 5.0
"""GRPO's ratio grows at least this many times from the smallest to the largest J, at every T."""
HEATMAP_VARIANTS = ("grpo", "dr_grpo", "reinforce")
"""The panels of the heatmap, left to right."""
VARIANT_TITLES = {"grpo": "GRPO", "dr_grpo": "Dr. GRPO", "reinforce": "REINFORCE"}
"""How the figures name the update rules (``estimators.VARIANTS``)."""


@dataclass(frozen=True)
class StepRatios:
    """η_eff/η_safe of the exact population updates on a (J, T) grid (:func:`token_chain.step_ratio_grid`).

    Attributes:
        values: the J axis. (P,)
        lengths: the T axis. (L,)
        ratio: variant → η_eff/η_safe. (P, L) each.
        t_slopes: variant → log-log slope in T, per J. (P,) each.
        j_slopes: GRPO's slope of log ratio on log √(J/(1 − J)), per T. (L,)
    """

    values: np.ndarray
    lengths: list[int]
    ratio: dict[str, np.ndarray]
    t_slopes: dict[str, np.ndarray]
    j_slopes: np.ndarray

    def linear_growth_margins(self) -> np.ndarray:
        """Dr. GRPO then REINFORCE: distance of the T-slope inside DR_GRPO_SLOPE_RANGE, per J. (2P,)"""
        low, high = DR_GRPO_SLOPE_RANGE
        return np.concatenate([np.minimum(self.t_slopes[v] - low, high - self.t_slopes[v])
                               for v in ("dr_grpo", "reinforce")])

    def normalization_margins(self) -> np.ndarray:
        """Dr. GRPO's T-slope − GRPO's − NORMALIZATION_GAIN, per J. (P,)"""
        return self.t_slopes["dr_grpo"] - self.t_slopes["grpo"] - NORMALIZATION_GAIN

    def value_growth_margins(self) -> np.ndarray:
        """GRPO's ratio at the largest J over that at the smallest − GRPO_VALUE_GROWTH, per T. (L,)"""
        return self.ratio["grpo"][-1] / self.ratio["grpo"][0] - GRPO_VALUE_GROWTH

    def numbers(self) -> dict[str, float]:
        """For the prose: the range over J of the T-slopes of GRPO and Dr. GRPO, and of GRPO's J-slopes."""
        out = {}
        for variant in ("grpo", "dr_grpo"):
            out[f"t_slope_{variant}_min"] = float(self.t_slopes[variant].min())
            out[f"t_slope_{variant}_max"] = float(self.t_slopes[variant].max())
        return out | dict(j_slope_min=float(self.j_slopes.min()), j_slope_max=float(self.j_slopes.max()))

    def slope_table(self) -> pd.DataFrame:
        """The T-slopes, one row per variant, one column per J."""
        return pd.DataFrame(self.t_slopes, index=self.values).T

    def headline(self) -> dict[str, object]:
        """The T-slopes per variant and J, the J axis, and GRPO's slopes in √(J/(1 − J)) per T."""
        return dict(step_ratio_t_slopes={v: self.t_slopes[v].tolist() for v in self.t_slopes},
                    step_ratio_values=self.values.tolist(), grpo_ratio_j_slopes=self.j_slopes.tolist())

    def log_frames(self) -> dict[str, pd.DataFrame]:
        """For the heatmap: log₁₀ of each variant's ratio, J down the rows and T across the columns."""
        return {variant: pd.DataFrame(np.log10(self.ratio[variant]), index=self.values, columns=self.lengths)
                for variant in HEATMAP_VARIANTS}

    def color_range(self) -> dict[str, float]:
        """For the heatmap: one colour scale (vmin, vmax of log₁₀ ratio) shared by the panels."""
        return dict(vmin=np.log10(min(self.ratio[v].min() for v in estimators.VARIANTS)),
                    vmax=np.log10(max(self.ratio[v].max() for v in estimators.VARIANTS)))


def ratio_study(values: np.ndarray, lengths: list[int], ratio: dict[str, np.ndarray]) -> StepRatios:
    """The least-squares log-log slopes of η_eff/η_safe (variant → (P, L) on the grid ``values`` × ``lengths``):
    in T per J for every variant, and for GRPO in √(J/(1 − J)) per T."""
    log_t = np.log(lengths)
    t_slopes = {variant: np.array([np.polyfit(log_t, np.log(row), 1)[0] for row in ratio[variant]])
                for variant in estimators.VARIANTS}
    formula = np.sqrt(values / (1 - values))
    j_slopes = np.array([np.polyfit(np.log(formula), np.log(col), 1)[0] for col in ratio["grpo"].T])
    return StepRatios(values, lengths, ratio, t_slopes, j_slopes)


def step_ratios(config: TokenConfig, seed: int, device: torch.device | str) -> StepRatios:
    """The ratio on ``value_points`` values of J in [0.05, 0.95] and the lengths of :func:`lengths_grid`,
    instance ``seed`` (:func:`token_chain.step_ratio_grid`), with its slopes (:func:`ratio_study`)."""
    values = np.round(np.linspace(0.05, 0.95, config.value_points), 4)
    lengths = lengths_grid(config.longest_length)
    heat = token_chain.step_ratio_grid(values, lengths, seed, config.vocab_size, config.verifier, config.group_size,
                                       device)
    return ratio_study(values, lengths, heat)


NEAR_ONE_GAPS = tuple(10.0 ** -(k / 4) for k in range(2, 29))
"""1 − J of GRPO's ratio as J → 1: 10^(−1/2) down to 10⁻⁷, four points per decade."""
NEAR_ONE_LENGTHS = (4, 16, 64, 256)
"""The lengths of GRPO's ratio as J → 1 (those up to ``longest_length``)."""
PEAK_FACTOR = 2.0
"""The peak of GRPO's ratio under (18a) lies within this factor of 1 − J = T_ψ₁/(8T²) (grid: 10^(1/4) ≈ 1.78)."""
FALL_FACTOR = 2.0
"""Under (18a) GRPO's ratio at the smallest 1 − J is below its peak by at least this factor; under (21) it is
above its value at that peak by at least this factor."""


@dataclass(frozen=True)
class NearOneRatios:
    """GRPO's η_eff/η_safe as J → 1, exact population updates (α = 1), one instance, under (18a) and under
    the simplified (21).

    Attributes:
        gaps: 1 − J. (P,)
        lengths: T. (L,)
        ratio: η_GRPO/η_safe with η_safe = (18a) (:func:`bounds.theorem3_step_bound`). (P, L)
        simplified: η_GRPO/η_safe with η_safe = (21), Δμ(1 − J)/T_ψ₁ (:func:`bounds.safe_step`). (P, L)
        psi1: T_ψ₁ of the instance at each T (the length law does not depend on J here). (L,)
    """

    gaps: np.ndarray
    lengths: list[int]
    ratio: np.ndarray
    simplified: np.ndarray
    psi1: np.ndarray

    def predicted_peaks(self) -> np.ndarray:
        """1 − J = T_ψ₁/(8T²), where the length term of (18a), min{T_ψ₁/(1 − J), 8T²}, stops growing. (L,)"""
        return self.psi1 / (8 * np.asarray(self.lengths, dtype=float) ** 2)

    def peaks(self) -> pd.DataFrame:
        """Per T: T_ψ₁, the predicted and the measured 1 − J of the peak of the (18a) ratio, the peak value,
        the ratios at the smallest 1 − J under (18a) and (21)."""
        index = self.ratio.argmax(0)
        columns = np.arange(len(self.lengths))
        return pd.DataFrame(dict(T=self.lengths, psi1=self.psi1, predicted_gap=self.predicted_peaks(),
                                 peak_gap=self.gaps[index], peak_ratio=self.ratio[index, columns],
                                 end_ratio=self.ratio[-1], end_simplified=self.simplified[-1]))

    def peak_margins(self) -> list[float]:
        """Per T: the peak within PEAK_FACTOR of T_ψ₁/(8T²) (log₁₀ distance), the (18a) ratio at the smallest
        1 − J below the peak by FALL_FACTOR, and the (21) ratio there above its value at the peak by FALL_FACTOR."""
        index = self.ratio.argmax(0)
        columns = np.arange(len(self.lengths))
        location = math.log10(PEAK_FACTOR) - np.abs(np.log10(self.gaps[index] / self.predicted_peaks()))
        fall = np.log10(self.ratio[index, columns] / self.ratio[-1]) - math.log10(FALL_FACTOR)
        growth = np.log10(self.simplified[-1] / self.simplified[index, columns]) - math.log10(FALL_FACTOR)
        return np.stack([location, fall, growth], axis=1).ravel().tolist()

    def numbers(self) -> dict[str, float]:
        """For the prose: at the shortest (``near_first_…``) and the longest (``near_last_…``) T, the predicted
        and the measured 1 − J of the peak, the peak ratio, and the ratios at the smallest 1 − J under (18a)
        and (21); the smallest 1 − J (``near_smallest_gap``)."""
        peaks = self.peaks()
        out = dict(near_smallest_gap=float(self.gaps[-1]))
        for name, row in (("first", peaks.iloc[0]), ("last", peaks.iloc[-1])):
            out |= {f"near_{name}_T": int(row["T"]), f"near_{name}_predicted": float(row.predicted_gap),
                    f"near_{name}_peak_gap": float(row.peak_gap), f"near_{name}_peak": float(row.peak_ratio),
                    f"near_{name}_end": float(row.end_ratio), f"near_{name}_end_simplified": float(row.end_simplified)}
        return out

    def frame(self) -> pd.DataFrame:
        """For the figure: one row per (T, 1 − J, bound): the ratio."""
        rows = [dict(T=length, gap=gap, bound=name, ratio=values[p, column])
                for column, length in enumerate(self.lengths) for p, gap in enumerate(self.gaps)
                for name, values in (("(18a)", self.ratio), ("(21)", self.simplified))]
        return pd.DataFrame(rows)

    def headline(self) -> dict[str, object]:
        """The peaks per T."""
        return dict(grpo_ratio_near_one=self.peaks().to_dict("records"))


def grpo_ratio_near_one(config: TokenConfig, seed: int, device: torch.device | str) -> NearOneRatios:
    """GRPO's ratio at 1 − J in NEAR_ONE_GAPS and the lengths of NEAR_ONE_LENGTHS up to ``longest_length``, on the
    instance ``seed`` calibrated to each J: the exact population GRPO update g (:func:`markov.expected_update`)
    gives η_eff = ‖g‖ and its alignment Δμ = ⟨g/‖g‖, ∇f⟩; η_safe is (18a) and (21) at that alignment."""
    gaps = np.array(NEAR_ONE_GAPS)
    lengths = [t for t in NEAR_ONE_LENGTHS if t <= config.longest_length]
    ratio, simplified, psi1 = np.zeros((len(gaps), len(lengths))), np.zeros((len(gaps), len(lengths))), []
    for column, length in enumerate(lengths):
        values = torch.tensor(1 - gaps, dtype=DTYPE, device=device)
        policy, check, theta = token_chain.make_instances(config.vocab_size, length, config.verifier, values,
                                                          [seed] * len(gaps), device)
        result, gap = markov.log_odds_and_gradient_gap(policy, theta, check)
        norms = markov.length_psi1_norm(result)
        update = markov.expected_update(policy, theta, check, "grpo")
        norm = torch.linalg.vector_norm(update, dim=-1)
        alignment = (update * gap).sum(-1) / norm
        exact_value = result.log_success.exp()
        safe = bounds.theorem3_step_bound(alignment, result.log_failure, length, norms)
        ratio[:, column] = (norm / safe).cpu().numpy()
        simplified[:, column] = (norm / bounds.safe_step(alignment, exact_value, norms)).cpu().numpy()
        psi1.append(norms[0].item())
    return NearOneRatios(gaps, lengths, ratio, simplified, np.array(psi1))


# ----------------------------------------------------------------------------------------------
# Sampled training with a fixed learning rate
# ----------------------------------------------------------------------------------------------

TRAINING_SEED_OFFSET = 500
"""The training instances' seeds are seed · 1000 + 500 + i."""
WORKING_GAIN = 0.5
"""A run works when its final J is at least J₀ + WORKING_GAIN (a collapsed run, J → 0, never does)."""
PLATEAU_VALUE = 0.99
"""GRPO stagnates below 100% when its tail-J interval lies under this."""
PLATEAU_RATES = 16.0
"""The paper's stagnation hypothesis is tested at GRPO's working learning rates from this one up."""
SLOPE_VARIANTS = ("dr_grpo", "grpo")
"""The variants whose largest working learning rate is fitted against T."""
FIT_SHORTEST = 8
"""The slope of the largest working learning rate is fitted over the lengths T ≥ this (and over all lengths)."""
BOOTSTRAP_RESAMPLES = 2000
"""Resamples of the instances for the slope's 95% interval (a generator seeded 0: the same at every run)."""


def learning_rates(doublings: int) -> list[float]:
    """The learning-rate grid of the sampled training: 1, 2, 4, …, 2^(doublings − 1) (a factor 2 apart)."""
    return [2.0**k for k in range(doublings)]


def figure_rates(rates: list[float], every: int = 4) -> list[float]:
    """The learning rates the training figure draws: every ``every``-th of the grid, from the smallest."""
    return rates[::every]


@dataclass(frozen=True)
class SampledTraining:
    """Runs of (variant, learning rate, instance) at each length, advancing together.

    Attributes:
        lengths: the lengths trained at, shortest first.
        rates: the learning-rate grid, smallest first.
        initial_value: J₀.
        curves: one row per (T, variant, learning rate, instance, recorded step) at the rates of
            :func:`figure_rates`: the exact J.
        finals: one row per (T, variant, learning rate, instance): the final J, the mean J over the last
            fifth of the run (tail_J) and whether the run works (final J ≥ J₀ + WORKING_GAIN).
    """

    lengths: list[int]
    rates: list[float]
    initial_value: float
    curves: pd.DataFrame
    finals: pd.DataFrame

    def curve_frame(self) -> pd.DataFrame:
        """For the figure: the curves with the learning rate as a label ("learning rate") and the update rule's
        name ("update", :data:`VARIANT_TITLES`)."""
        return self.curves.assign(**{"learning rate": self.curves.learning_rate.map("{:g}".format),
                                     "update": self.curves.variant.map(VARIANT_TITLES)})


def sampled_training(config: TokenConfig, seed: int, device: torch.device | str) -> SampledTraining:
    """Sampled training at every length of :func:`lengths_grid` up to ``training_longest_length``, from the
    ``training_seeds`` instances (seeds :func:`instance_seeds` with offset TRAINING_SEED_OFFSET) at
    J₀ = ``training_initial_value``: every (variant, learning rate of :func:`learning_rates`, instance) for
    ``training_steps`` SGD steps with groups of ``group_size`` (:func:`token_training.train`; the samples at
    length T are drawn from a generator on ``device`` seeded seed + T). J is recorded about 25 times per run."""
    train_seeds = instance_seeds(seed, config.training_seeds, TRAINING_SEED_OFFSET)
    lengths = lengths_grid(config.training_longest_length)
    rates = learning_rates(config.training_rate_doublings)
    drawn = set(figure_rates(rates))
    variants = list(estimators.VARIANTS)
    curves, finals = [], []
    for length in lengths:
        policy, check, theta0 = token_chain.make_instances(config.vocab_size, length, config.verifier,
                                                           config.training_initial_value, train_seeds, device)
        layout = [(v, lr, i) for v in variants for lr in rates for i in range(len(train_seeds))]
        start = torch.stack([theta0[i] for _, _, i in layout])  # (B, D)
        lr_tensor = torch.tensor([lr for _, lr, _ in layout], dtype=DTYPE, device=device)  # (B,)
        run = token_training.train(policy, check, start, [v for v, _, _ in layout], lr_tensor, config.training_steps,
                                   config.group_size, torch.Generator(device).manual_seed(seed + length),
                                   record_every=max(1, config.training_steps // 25))
        tail = run.value[-max(2, len(run.value) // 5):].mean(0)  # mean J over the last fifth of the run, (B,)
        final = run.value[-1].tolist()
        for index, (variant, rate, instance) in enumerate(layout):
            finals.append(dict(T=length, variant=variant, learning_rate=rate, instance=instance,
                               final_J=final[index], tail_J=tail[index].item()))
            if rate in drawn:
                for step, value in zip(run.recorded_steps.tolist(), run.value[:, index].tolist(), strict=True):
                    curves.append(dict(T=length, variant=variant, learning_rate=rate, instance=instance, step=step,
                                       J=value))
    curves, finals = pd.DataFrame(curves), pd.DataFrame(finals)
    finals["works"] = finals.final_J >= config.training_initial_value + WORKING_GAIN
    return SampledTraining(lengths, rates, config.training_initial_value, curves, finals)


def t_interval(values) -> pd.Series:
    """Mean and 95% Student-t interval (mean, low, high) of ``values``."""
    values = np.asarray(values)
    half = stats.t.ppf((1 + INTERVAL_LEVEL) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return pd.Series({"mean": values.mean(), "low": values.mean() - half, "high": values.mean() + half})


def largest_working(works: pd.Series, rates: list[float]) -> float:
    """The largest rate r of the grid ``rates`` such that every rate ≤ r works (``works``: rate → bool);
    NaN when even the smallest fails."""
    largest = math.nan
    for rate in sorted(rates):
        if not bool(works.get(rate, False)):
            break
        largest = rate
    return largest


@dataclass(frozen=True)
class TrainingOutcome:
    """What the sampled training shows, per (variant, learning rate, T).

    Attributes:
        summary: the final J's mean and 95% interval (columns mean, low, high; index variant, rate, T).
        failing: the share of runs that do not work (index variant, rate; one column per T).
        largest_working: the largest rate r with every run working at every rate ≤ r (index variant; one
            column per T).
        instance_largest: the same per instance (index variant, T; one column per instance).
        fits: per variant of SLOPE_VARIANTS and lengths ("all", or "tail": T ≥ FIT_SHORTEST), the log-log slope
            of the largest working rate on T with its bootstrap interval (:func:`rate_slope`).
        rates: the grid. short, long: the shortest and longest T trained at.
        lost_rates: the learning rates that work for Dr. GRPO at the shortest T and fail at the longest.
        plateau: GRPO at the longest T: the tail J's mean and interval per learning rate.
    """

    summary: pd.DataFrame
    failing: pd.DataFrame
    largest_working: pd.DataFrame
    instance_largest: pd.DataFrame
    fits: dict[str, dict[str, dict[str, float]]]
    rates: list[float]
    short: int
    long: int
    lost_rates: list[float]
    plateau: pd.DataFrame

    def censored(self) -> pd.DataFrame:
        """The share of instances whose largest working rate is the top of the grid (index variant; per T)."""
        return (self.instance_largest >= max(self.rates)).mean(axis=1).unstack("T")

    def length_failure_margins(self) -> list[float]:
        """Some learning rate works for Dr. GRPO at the shortest T and fails at the longest: count − ½."""
        return [len(self.lost_rates) - 0.5]

    def grpo_shrinks_margins(self) -> list[float]:
        """GRPO's largest working rate is lower at the longest T than at the shortest: log₂ of their ratio − ½
        (on a grid a factor 2 apart, ≥ 0 iff at least one grid step lower)."""
        largest = self.largest_working
        return [math.log2(largest.loc["grpo", self.short] / largest.loc["grpo", self.long]) - 0.5]

    def grpo_above_margins(self) -> list[float]:
        """At the longest T, GRPO's largest working rate is above Dr. GRPO's: log₂ of their ratio − ½ (≥ 0 iff at
        least one grid step, a factor 2, above)."""
        largest = self.largest_working
        return [math.log2(largest.loc["grpo", self.long] / largest.loc["dr_grpo", self.long]) - 0.5]

    def stagnation_margins(self) -> list[float]:
        """The paper's hypothesis, GRPO stagnates below 100%: PLATEAU_VALUE − the largest tail-J interval's
        high end over GRPO's working rates ≥ PLATEAU_RATES at the longest T (NaN: no such rate)."""
        top = self.largest_working.loc["grpo", self.long]
        rows = self.plateau[(self.plateau.index >= PLATEAU_RATES) & (self.plateau.index <= top)]
        return [PLATEAU_VALUE - rows["high"].max() if len(rows) else math.nan]

    def slope_table(self) -> pd.DataFrame:
        """The fits, one row per (variant, lengths)."""
        return pd.DataFrame([dict(variant=v, lengths=which, **fit) for v in self.fits
                             for which, fit in self.fits[v].items()]).set_index(["variant", "lengths"])

    def numbers(self) -> dict[str, object]:
        """For the prose: each variant's largest working rate at the shortest and the longest T, the tail fits
        (slope, low, high per variant of SLOPE_VARIANTS), the grid's top and the lost rates of Dr. GRPO."""
        largest = self.largest_working
        out = dict(top_rate=float(max(self.rates)), lost_rates=len(self.lost_rates), fit_shortest=FIT_SHORTEST,
                   training_short=self.short, training_long=self.long)
        for variant in largest.index:
            out[f"largest_{variant}_short"] = float(largest.loc[variant, self.short])
            out[f"largest_{variant}_long"] = float(largest.loc[variant, self.long])
        for variant in SLOPE_VARIANTS:
            out |= {f"rate_slope_{variant}_{key}": float(self.fits[variant]["tail"][key])
                    for key in ("slope", "low", "high")}
        return out

    def slope_margins(self, variant: str, slope: float) -> list[float]:
        """``slope`` lies in the bootstrap interval of ``variant``'s tail fit: [slope − low, high − slope]."""
        fit = self.fits[variant]["tail"]
        return [slope - fit["low"] + 1e-9, fit["high"] - slope + 1e-9]  # 1e-9: the slopes of log₂ rates are exact

    def headline(self) -> dict[str, object]:
        """The tables as records: final J, failing share, largest working rate, slopes, GRPO's plateau."""
        return dict(training_final=self.summary.reset_index().to_dict("records"),
                    training_failing_share=self.failing.stack().rename("share").reset_index().to_dict("records"),
                    largest_working_learning_rate=self.largest_working.stack().rename("rate").reset_index()
                    .to_dict("records"),
                    largest_working_rate_slopes=self.fits,
                    grpo_plateau=self.plateau.reset_index().to_dict("records"))


def rate_slope(lengths: list[int], instance_rates: np.ndarray, rates: list[float],
               resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, float]:
    """The log-log slope of the largest working rate on T and its 95% bootstrap interval over instances.

    ``instance_rates`` (L, n): each instance's largest working rate at each length (NaN: even the smallest rate
    fails, counted as half of it). The largest working rate of a set of instances is their smallest. The slope
    is the least-squares slope of log₂ min_i rate_i(T) on log₂ T; the interval its 2.5% and 97.5% quantiles over
    ``resamples`` resamples of the instances with replacement (a generator seeded 0). ``censored``: the number
    of lengths at which the largest working rate is the top of the grid (the slope is then a bound)."""
    values = np.where(np.isnan(instance_rates), min(rates) / 2, instance_rates)  # (L, n)
    if len(lengths) < 2:
        return dict(slope=math.nan, low=math.nan, high=math.nan, censored=math.nan)
    log_t = np.log2(lengths)
    draws = np.random.default_rng(0).integers(values.shape[1], size=(resamples, values.shape[1]))
    resampled = values[:, draws].min(-1)  # (L, resamples)
    slopes = np.polyfit(log_t, np.log2(resampled), 1)[0]
    low, high = np.quantile(slopes, [(1 - INTERVAL_LEVEL) / 2, (1 + INTERVAL_LEVEL) / 2])
    largest = values.min(-1)
    return dict(slope=float(np.polyfit(log_t, np.log2(largest), 1)[0]), low=float(low), high=float(high),
                censored=int((largest >= max(rates)).sum()))


def training_outcome(training: SampledTraining) -> TrainingOutcome:
    """The tables of :class:`TrainingOutcome` from the runs' final and tail values."""
    finals, keys, rates = training.finals, ["variant", "learning_rate", "T"], training.rates
    summary = finals.groupby(keys).final_J.apply(t_interval).unstack()
    failing = 1 - finals.groupby(keys).works.mean().unstack("T")
    works = finals.groupby(keys).works.all()
    largest = pd.DataFrame({length: {v: largest_working(works.xs((v, length), level=("variant", "T")), rates)
                                     for v in finals.variant.unique()} for length in training.lengths})
    largest.index.name, largest.columns.name = "variant", "T"
    per_instance = finals.set_index(["variant", "T", "instance", "learning_rate"]).works
    instance_largest = per_instance.groupby(level=["variant", "T", "instance"]).apply(
        lambda group: largest_working(group.droplevel(["variant", "T", "instance"]), rates)).unstack("instance")
    tail = [t for t in training.lengths if t >= FIT_SHORTEST]
    fits = {variant: {"all": rate_slope(training.lengths, instance_largest.loc[variant].to_numpy(), rates),
                      "tail": rate_slope(tail, instance_largest.loc[variant].loc[tail].to_numpy(), rates)}
            for variant in SLOPE_VARIANTS}
    short, long = training.lengths[0], training.lengths[-1]
    lost_rates = [float(rate) for rate in rates
                  if works.get(("dr_grpo", rate, short), False) and not works.get(("dr_grpo", rate, long), False)]
    grpo_long = finals[(finals.variant == "grpo") & (finals["T"] == long)]
    plateau = grpo_long.groupby("learning_rate").tail_J.apply(t_interval).unstack()
    return TrainingOutcome(summary, failing, largest, instance_largest, fits, rates, short, long, lost_rates, plateau)
