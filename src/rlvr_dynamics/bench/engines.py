"""Sweep benchmarks of the token-chain and two-stage engines (part of ``rlvr-book bench``).

Both engines carry a leading run axis, like the bandit's, so a sweep is one tensor program on CPU
or GPU. For each, on one device:

- **token chain** (Section 4, :mod:`rlvr_dynamics.engines.token_chain`): the exact runs of the
  token-theory chapter — instances of the shared-parameter bigram chain (V = 6, T = 64) × 8 constant
  step sizes on the log grid 0.01 … 30, 100 exact gap-direction steps each (every J, gap and length
  moment by the forward algorithm);
- **two stage** (:mod:`rlvr_dynamics.engines.softmax_bandit`): the two-stage chapter's softmax bandit
  (V = 10, n_H = 3, G = 8, step 0.3), 3000 steps of sampled group updates and of the exact expected
  update, many runs at once.

Each is timed batched and one run at a time (``baseline_runs`` runs, scaled: their cost is a sum
over runs), the batched numbers checked against the one-at-a-time ones (exact dynamics: equal to
rounding). On CUDA, ``largest_within`` doubles the batch until a run exceeds the budget.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from rlvr_dynamics.engines import softmax_bandit, token_chain

TOKEN_STEP_SIZES = np.geomspace(0.01, 30.0, 8)
TOKEN_VOCABULARY, TOKEN_LENGTH, TOKEN_STEPS = 6, 64, 100
TWO_STAGE_STEPS, TWO_STAGE_GROUP, TWO_STAGE_STEP_SIZE = 3000, 8, 0.3


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, function, *args, **kwargs) -> tuple[float, object]:
    _synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    _synchronize(device)
    return time.perf_counter() - start, result


def token_chain_problem(instances: int, device: torch.device | str = "cpu"):
    """``instances`` instances × the 8 step sizes (instance-major): policy, verifier, θ₀ (B, D), steps (B,)."""
    policy, verifier, theta = token_chain.make_instances(TOKEN_VOCABULARY, TOKEN_LENGTH, "final_token", 0.3,
                                                         list(range(instances)), device=device)
    sizes = torch.as_tensor(np.tile(TOKEN_STEP_SIZES, instances), dtype=theta.dtype, device=theta.device)
    return policy, verifier, theta.repeat_interleave(len(TOKEN_STEP_SIZES), dim=0), sizes


def run_token_chain(problem, steps: int = TOKEN_STEPS) -> token_chain.ExactRun:
    policy, verifier, theta, sizes = problem
    return token_chain.simulate(policy, verifier, theta, steps, "gap", "constant", sizes)


def token_chain_workload(device: torch.device, instances: int = 8, steps: int = TOKEN_STEPS,
                         baseline_runs: int = 2) -> dict:
    """Batched (``instances`` × 8 runs) against one run at a time on ``baseline_runs`` of them, scaled."""
    problem = token_chain_problem(instances, device)
    runs = problem[2].shape[0]
    run_token_chain(problem, 2)  # warm-up
    batched_s, batched = _timed(device, run_token_chain, problem, steps)
    single_s, difference = 0.0, 0.0
    for row in np.linspace(0, runs - 1, baseline_runs).round().astype(int):
        policy, verifier, theta, sizes = problem
        seconds, alone = _timed(device, run_token_chain, (policy, verifier, theta[row:row + 1], sizes[row:row + 1]),
                                steps)
        single_s += seconds
        difference = max(difference, float((alone.value[:, 0] - batched.value[:, row]).abs().max()))
    return {"runs": runs, "steps": steps, "vocabulary": TOKEN_VOCABULARY, "length": TOKEN_LENGTH,
            "batched_s": batched_s, "one_run_at_a_time_s": single_s * runs / baseline_runs,
            "speedup_vs_one_run_at_a_time": single_s * runs / baseline_runs / batched_s,
            "max_abs_value_difference": difference}


def two_stage_problem(runs: int, device: torch.device | str = "cpu"):
    """The two-stage chapter's bandit and its initial logits (π_O = 0.02, π_H = 0.4), ``runs`` rows."""
    bandit = softmax_bandit.SoftmaxBandit(10, 3, torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64))
    return bandit, bandit.initial_logits(0.02, 0.4).expand(runs, -1).to(device)


def run_two_stage(problem, dynamics: str, steps: int = TWO_STAGE_STEPS, seed: int = 0):
    bandit, logits = problem
    generator = torch.Generator(device=logits.device).manual_seed(seed) if dynamics == "sampled" else None
    return softmax_bandit.simulate(bandit, logits, steps, TWO_STAGE_GROUP, TWO_STAGE_STEP_SIZE, "group", "grpo",
                                   dynamics=dynamics, generator=generator, record_every=10, device=logits.device)


def two_stage_workload(device: torch.device, runs: int = 256, steps: int = TWO_STAGE_STEPS,
                       baseline_runs: int = 2) -> dict:
    """Sampled and expected dynamics of ``runs`` runs at once, against one run at a time (scaled)."""
    problem = two_stage_problem(runs, device)
    out = {"runs": runs, "steps": steps, "group_size": TWO_STAGE_GROUP}
    for dynamics in ("sampled", "expected"):
        run_two_stage(problem, dynamics, 5)  # warm-up
        out[f"{dynamics}_batched_s"], batched = _timed(device, run_two_stage, problem, dynamics, steps)
        single_s, difference = 0.0, 0.0
        for _ in range(baseline_runs):
            seconds, alone = _timed(device, run_two_stage, (problem[0], problem[1][:1]), dynamics, steps)
            single_s += seconds
            difference = max(difference, float((alone.value[:, 0] - batched.value[:, 0]).abs().max()))
        out[f"{dynamics}_one_run_at_a_time_s"] = single_s * runs / baseline_runs
        out[f"{dynamics}_speedup_vs_one_run_at_a_time"] = single_s * runs / baseline_runs / out[f"{dynamics}_batched_s"]
        if dynamics == "expected":  # deterministic: the batched run is the single run, to rounding
            out["expected_max_abs_value_difference"] = difference
    return out


def largest_within(budget_s: float, run, start: int, limit: int = 1 << 22) -> dict | None:
    """The largest batch (doubling from ``start``) whose ``run(batch)`` (seconds) stays within ``budget_s``."""
    largest, batch = None, start
    while batch <= limit:
        try:
            seconds = run(batch)
        except torch.OutOfMemoryError:
            break
        if seconds > budget_s:
            break
        largest, batch = {"runs": batch, "seconds": seconds}, batch * 2
    return largest


def cuda_workloads(device: torch.device, budget_s: float = 10.0) -> dict:
    """Both sweeps on the GPU, and the largest of each within ``budget_s``."""
    def token_seconds(instances):
        problem = token_chain_problem(instances, device)
        return _timed(device, run_token_chain, problem)[0]

    def two_stage_seconds(runs):
        return _timed(device, run_two_stage, two_stage_problem(runs, device), "sampled")[0]

    return {"token_chain": token_chain_workload(device), "two_stage": two_stage_workload(device),
            "token_chain_largest_within_budget": largest_within(budget_s, token_seconds, 8),
            "two_stage_largest_within_budget": largest_within(budget_s, two_stage_seconds, 256),
            "budget_s": budget_s}


def report_lines(results: dict, title: str) -> list[str]:
    """The report of :func:`token_chain_workload` and :func:`two_stage_workload` results."""
    chain, stage = results["token_chain"], results["two_stage"]
    lines = [
        "", f"Token chain ({title}): {chain['runs']} exact runs (instances × 8 step sizes 0.01…30), "
            f"V = {chain['vocabulary']}, T = {chain['length']}, {chain['steps']} steps",
        f"  batched                 {chain['batched_s']:8.2f} s",
        f"  one run at a time       {chain['one_run_at_a_time_s']:8.2f} s    ratio "
        f"{chain['speedup_vs_one_run_at_a_time']:.1f}x   (max |ΔJ| {chain['max_abs_value_difference']:.1e})",
        "", f"Two-stage softmax bandit ({title}): {stage['runs']} runs × {stage['steps']} steps, "
            f"G = {stage['group_size']}",
    ]
    for dynamics in ("sampled", "expected"):
        lines.append(f"  {dynamics:<8} batched        {stage[f'{dynamics}_batched_s']:8.2f} s    one run at a time "
                     f"{stage[f'{dynamics}_one_run_at_a_time_s']:.2f} s (ratio "
                     f"{stage[f'{dynamics}_speedup_vs_one_run_at_a_time']:.1f}x)")
    lines.append(f"  expected: max |ΔJ| batched vs alone {stage['expected_max_abs_value_difference']:.1e}")
    for name in ("token_chain", "two_stage"):
        if f"{name}_largest_within_budget" in results:
            lines.append(f"  largest {name.replace('_', ' ')} sweep within {results['budget_s']:g} s: "
                         f"{results[f'{name}_largest_within_budget']}")
    return lines
