"""Tests of rlvr_dynamics.engines.bandit (the Section-5.1 engine): problems, one and several steps
against autograd, the per-run NumPy loop of the definitions, batching, recording, float32, drift,
the empty band, the alignment matrix and bad input.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

from rlvr_dynamics.chapters import figure1
from rlvr_dynamics.engines import bandit
from rlvr_dynamics.engines.bandit import BanditSpec, EmptyBandWarning, make_bandits, simulate
from rlvr_dynamics.theory import bounds
from rlvr_dynamics.theory.policies import bandit_gradient_gap, bandit_log_policy

from _helpers import F64, assert_close, t

TINY = BanditSpec(dim=4, arms=6, pool_size=5, eval_size=7, init_scale=1.0)


SMALL = BanditSpec(dim=5, arms=12, pool_size=20, eval_size=30, init_scale=0.5)


PAPER = BanditSpec()  # d = 10, N = 100, P = 100, E = 500, init_scale = 0.01


def quiet_simulate(*args, **kwargs):
    """simulate with the EmptyBandWarning silenced (the paper's band is empty at the start)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBandWarning)
        return simulate(*args, **kwargs)


def max_diff(a, b):
    return (torch.as_tensor(a, dtype=F64) - torch.as_tensor(b, dtype=F64)).abs().max().item()


def value_of(theta, context, best):
    """J_x(θ) = π_θ(y*(x) | x) via policies.bandit_log_policy. θ (d, N), x (..., d), best (...)."""
    return bandit_log_policy(theta, context).exp().gather(-1, best.unsqueeze(-1)).squeeze(-1)


def autograd_value_gradient(theta, context, best):
    """J_x(θ) and ∇_θ J_x by autograd, for one context."""
    theta = theta.detach().clone().requires_grad_(True)
    value = value_of(theta, context, best)
    (grad,) = torch.autograd.grad(value, theta)
    return value.detach(), grad


def autograd_gap(theta, context, best):
    """The bandit's Gradient Gap x ⊗ (e_{y*} − π⁻) as ∇J_x / (J_x (1 − J_x)) (autograd)."""
    value, grad = autograd_value_gradient(theta, context, best)
    return grad / (value * (1 - value))


def one_hot(best, arms):
    return torch.nn.functional.one_hot(best, arms).to(F64)


# ----------------------------------------------------------------------------------------------
# make_bandits and ContextualBandits.repeat
# ----------------------------------------------------------------------------------------------


def test_make_bandits_shapes_and_types():
    bandits = make_bandits(TINY, [0, 1, 2], steps=9)
    d, n, p, e = TINY.dim, TINY.arms, TINY.pool_size, TINY.eval_size
    assert bandits.n_runs == 3 and bandits.seeds == (0, 1, 2)
    assert bandits.beta.shape == (3, d, n)
    assert bandits.contexts.shape == (3, p + e, d)
    assert bandits.best_arm.shape == (3, p + e) and bandits.best_arm.dtype == torch.long
    assert bandits.theta0.shape == (3, d, n)
    assert bandits.uniforms.shape == (3, 9) and bandits.uniforms.dtype == F64
    for tensor in (bandits.beta, bandits.contexts, bandits.theta0):
        assert tensor.dtype == F64
    assert bandits.contexts.min() >= 0 and bandits.contexts.max() <= 1
    assert bandits.uniforms.min() >= 0 and bandits.uniforms.max() < 1
    assert bandits.contexts[:, bandits.pool].shape == (3, p, d)
    assert bandits.contexts[:, bandits.evaluation].shape == (3, e, d)
    # Different seeds give different problems.
    assert not torch.equal(bandits.beta[0], bandits.beta[1])


@pytest.mark.parametrize("spec", [TINY, SMALL, PAPER])
def test_best_arm_is_argmax_of_scores(spec):
    bandits = make_bandits(spec, [0, 5], steps=1)
    scores = torch.einsum("bcd,bdn->bcn", bandits.contexts, bandits.beta)
    assert torch.equal(bandits.best_arm, scores.argmax(-1))
    # The reward is 1 only at the argmax: its score beats every other arm's.
    best_score = scores.gather(-1, bandits.best_arm.unsqueeze(-1))
    assert torch.all((scores < best_score) | (torch.arange(spec.arms) == bandits.best_arm.unsqueeze(-1)))


def test_init_scale_scales_theta0():
    # θ₀ = init_scale · (standard normal draw): the same draw at every scale; zero at scale 0.
    unit = make_bandits(BanditSpec(3, 4, 5, 6, init_scale=1.0), [2], steps=3)
    scaled = make_bandits(BanditSpec(3, 4, 5, 6, init_scale=0.25), [2], steps=3)
    zero = make_bandits(BanditSpec(3, 4, 5, 6, init_scale=0.0), [2], steps=3)
    assert_close(scaled.theta0, 0.25 * unit.theta0)
    assert torch.all(zero.theta0 == 0)
    assert torch.equal(unit.beta, scaled.beta) and torch.equal(unit.contexts, scaled.contexts)
    assert torch.equal(unit.uniforms, scaled.uniforms)


def test_same_seed_same_problem_regardless_of_batch():
    alone = make_bandits(SMALL, [3], steps=11)
    batch = make_bandits(SMALL, [1, 3], steps=11)
    for name in ("beta", "contexts", "best_arm", "theta0", "uniforms"):
        assert torch.equal(getattr(alone, name)[0], getattr(batch, name)[1]), name
    assert not torch.equal(batch.beta[0], batch.beta[1])


def test_same_seed_same_problem_regardless_of_dtype():
    f64 = make_bandits(SMALL, [1, 3], steps=11, dtype=torch.float64)
    f32 = make_bandits(SMALL, [1, 3], steps=11, dtype=torch.float32)
    for name in ("beta", "contexts", "theta0"):
        assert getattr(f32, name).dtype == torch.float32
        assert torch.equal(getattr(f32, name), getattr(f64, name).to(torch.float32)), name
    # Drawn in float64 either way: the same best arms and the same uniforms (kept in float64).
    assert torch.equal(f32.best_arm, f64.best_arm)
    assert f32.uniforms.dtype == F64 and torch.equal(f32.uniforms, f64.uniforms)


def test_number_of_prepared_steps_does_not_change_the_problem():
    # The uniforms are drawn last, so preparing more steps only appends draws.
    short = make_bandits(SMALL, [4], steps=5)
    long = make_bandits(SMALL, [4], steps=20)
    assert torch.equal(short.theta0, long.theta0) and torch.equal(short.contexts, long.contexts)
    assert torch.equal(short.uniforms, long.uniforms[:, :5])


@pytest.mark.parametrize("times", [1, 2, 3])
def test_repeat_is_seed_major(times):
    bandits = make_bandits(TINY, [7, 8, 9], steps=4)
    repeated = bandits.repeat(times)
    assert repeated.n_runs == 3 * times
    assert repeated.seeds == tuple(s for s in (7, 8, 9) for _ in range(times))
    assert repeated.spec == bandits.spec
    for b in range(3):
        for j in range(times):
            for name in ("beta", "contexts", "best_arm", "theta0", "uniforms"):
                assert torch.equal(getattr(repeated, name)[b * times + j], getattr(bandits, name)[b]), name


# ----------------------------------------------------------------------------------------------
# simulate: one and a few steps against autograd
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 4])
@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_one_step_equals_autograd(seed, alpha):
    bandits = make_bandits(TINY, [seed], steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyBandWarning)  # band [0, 1] always holds every context
        result = simulate(bandits, alpha, steps=1, band=(0.0, 1.0), record_every=1)
    pool, n_pool = bandits.pool, TINY.pool_size
    contexts, best = bandits.contexts[0], bandits.best_arm[0]
    eval_x, eval_best = contexts[bandits.evaluation], best[bandits.evaluation]
    theta0 = bandits.theta0[0]

    # Every pool context is eligible: x_0 is the ⌊u_0 P⌋-th pool context.
    index = int(result.train_index[0, 0])
    assert index == min(int(bandits.uniforms[0, 0] * n_pool), n_pool - 1)
    assert not result.fell_back.any()
    x0, y0 = contexts[index], best[index]

    j0, grad = autograd_value_gradient(theta0, x0, y0)
    assert 1e-3 < j0 < 1 - 1e-3  # not a degenerate case
    theta1 = theta0 + alpha * grad
    grad_norm = torch.linalg.vector_norm(grad)
    eta0 = alpha * grad_norm

    # Values before and after the update, at the evaluation and the pool contexts.
    assert_close(result.value[0, 0], value_of(theta0, eval_x, eval_best))
    assert_close(result.value[1, 0], value_of(theta1, eval_x, eval_best))
    assert_close(result.pool_value[0, 0], value_of(theta0, contexts[pool], best[pool]))
    assert_close(result.pool_value[1, 0], value_of(theta1, contexts[pool], best[pool]))
    assert_close(result.log_odds[1, 0], bounds.logit(value_of(theta1, eval_x, eval_best)), rtol=1e-11)
    assert_close(result.final_theta[0], theta1)

    # Per-step trace.
    gap0 = autograd_gap(theta0, x0, y0)
    assert_close(result.train_value[0, 0], j0)
    assert_close(result.step[0, 0], eta0)
    assert_close(result.train_gap_norm[0, 0], torch.linalg.vector_norm(gap0))
    assert_close(result.step_size, t([alpha]))

    # Gap alignment Δμ_x(0) = ⟨∇J/‖∇J‖, gap_x⟩ at every evaluation context.
    gaps_eval = torch.stack([autograd_gap(theta0, x, y) for x, y in zip(eval_x, eval_best, strict=True)])  # (E, d, N)
    assert_close(gaps_eval, bandit_gradient_gap(theta0, eval_x, one_hot(eval_best, TINY.arms)), rtol=1e-10)
    alignment = torch.einsum("dn,edn->e", grad / grad_norm, gaps_eval)
    positive = alignment.clamp_min(0)
    zeros = torch.zeros(TINY.eval_size, dtype=F64)
    for name in ("effective", "nominal"):
        assert_close(result.cumulative_gap[name][0, 0], zeros)
        assert_close(result.relative_cumulative_gap[name][0, 0], zeros)
    assert_close(result.signed_cumulative_alignment[1, 0], alignment * eta0, atol=1e-13)
    assert_close(result.cumulative_gap["effective"][1, 0], positive * eta0, atol=1e-13)
    assert_close(result.cumulative_gap["nominal"][1, 0], positive * alpha, atol=1e-13)
    gap_norm = torch.linalg.vector_norm(gap0)
    assert_close(result.relative_cumulative_gap["effective"][1, 0], (positive - gap_norm) * eta0, atol=1e-13)
    assert_close(result.relative_cumulative_gap["nominal"][1, 0], (positive - gap_norm) * alpha, atol=1e-13)
    assert torch.all(torch.isinf(result.smallest_alignment_ratio[0, 0]))
    assert_close(result.smallest_alignment_ratio[1, 0], positive / eta0, atol=1e-13)


@pytest.mark.parametrize("alpha", [0.7, 4.0])
def test_several_steps_equal_autograd_loop(alpha):
    # A K-step REINFORCE loop written with autograd, using the engine's own context choices
    # (checked against the band rule), reproduces every recorded quantity.
    steps = 6
    bandits = make_bandits(TINY, [11, 12], steps=steps)
    band = (0.0, 1.0)
    result = simulate(bandits, alpha, steps=steps, band=band)
    for run in range(2):
        contexts, best = bandits.contexts[run], bandits.best_arm[run]
        eval_x, eval_best = contexts[bandits.evaluation], best[bandits.evaluation]
        theta = bandits.theta0[run].clone()
        cumulative = torch.zeros(TINY.eval_size, dtype=F64)
        signed = torch.zeros(TINY.eval_size, dtype=F64)
        for k in range(steps):
            assert_close(result.value[k, run], value_of(theta, eval_x, eval_best), rtol=1e-11)
            assert_close(result.cumulative_gap["effective"][k, run], cumulative, rtol=1e-11, atol=1e-13)
            assert_close(result.signed_cumulative_alignment[k, run], signed, rtol=1e-11, atol=1e-13)
            index = int(result.train_index[k, run])
            assert index == min(int(bandits.uniforms[run, k] * TINY.pool_size), TINY.pool_size - 1)
            _, grad = autograd_value_gradient(theta, contexts[index], best[index])
            eta = alpha * torch.linalg.vector_norm(grad)
            assert_close(result.step[k, run], eta, rtol=1e-11)
            direction = grad / torch.linalg.vector_norm(grad)
            gap = bandit_gradient_gap(theta, eval_x, one_hot(eval_best, TINY.arms))
            alignment = torch.einsum("dn,edn->e", direction, gap)
            cumulative = cumulative + alignment.clamp_min(0) * eta
            signed = signed + alignment * eta
            theta = theta + alpha * grad
        assert_close(result.value[steps, run], value_of(theta, eval_x, eval_best), rtol=1e-11)
        assert_close(result.cumulative_gap["effective"][steps, run], cumulative, rtol=1e-11, atol=1e-13)
        assert_close(result.final_theta[run], theta, rtol=1e-11)


def test_trajectories_shapes_and_bookkeeping():
    bandits = make_bandits(SMALL, [0, 1], steps=30).repeat(2)
    result = quiet_simulate(bandits, [0.1, 2.0, 0.1, 2.0], steps=30, record_every=7)
    s, b, e, p = 6, 4, SMALL.eval_size, SMALL.pool_size  # recorded steps 0, 7, 14, 21, 28, 30
    assert result.recorded_steps.tolist() == [0, 7, 14, 21, 28, 30]
    for tensor in (result.value, result.log_odds, result.signed_cumulative_alignment,
                   result.smallest_alignment_ratio, *result.cumulative_gap.values(),
                   *result.relative_cumulative_gap.values()):
        assert tensor.shape == (s, b, e)
    assert set(result.cumulative_gap) == set(result.relative_cumulative_gap) == set(bandit.ETA_READINGS)
    assert result.pool_value.shape == (s, b, p)
    for tensor in (result.train_index, result.train_value, result.train_gap_norm, result.step,
                   result.fell_back):
        assert tensor.shape == (30, b)
    assert result.fell_back.dtype == torch.bool
    assert result.final_theta.shape == (b, SMALL.dim, SMALL.arms)
    assert result.seed.tolist() == [0, 0, 1, 1]
    assert_close(result.step_size, t([0.1, 2.0, 0.1, 2.0]))
    assert torch.equal(result.best_arm, bandits.best_arm[:, bandits.evaluation])
    assert torch.equal(result.pool_best_arm, bandits.best_arm[:, bandits.pool])
    assert result.band == (0.2, 0.8) and result.fallback == "pool"
    assert result.train_index.min() >= 0 and result.train_index.max() < p
    # Cumulative gaps are non-decreasing; M_eff − relative_eff is the same for every context.
    for name in bandit.ETA_READINGS:
        assert torch.all(result.cumulative_gap[name].diff(dim=0) >= 0)
    assert figure1.relative_offset_spread(result) < 1e-9
    # The recorded J of the training context is the pool value at that step (record_every = 1 run).
    full = quiet_simulate(bandits, [0.1, 2.0, 0.1, 2.0], steps=30)
    picked = full.pool_value[:-1].gather(-1, full.train_index.unsqueeze(-1)).squeeze(-1)
    assert_close(full.train_value, picked)
    # η_k = α J(1 − J) ‖gap‖ with J the training context's value.
    assert_close(full.step, full.step_size * full.train_value * (1 - full.train_value)
                 * full.train_gap_norm, rtol=1e-10)


# ----------------------------------------------------------------------------------------------
# simulate against the per-run NumPy loop
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fallback", bandit.FALLBACKS)
@pytest.mark.parametrize("alpha", [0.1, 3.0])
def test_simulate_equals_numpy_reference(fallback, alpha):
    steps, seeds = 150, [0, 1]
    bandits = make_bandits(PAPER, seeds, steps=steps)
    result = quiet_simulate(bandits, alpha, steps=steps, fallback=fallback)
    for run in range(len(seeds)):
        reference = bandit.simulate_reference_numpy(bandits, run, alpha, steps, fallback=fallback)
        assert reference["value"].shape == (steps + 1, PAPER.eval_size)
        assert np.array_equal(result.train_index[:, run].numpy(), reference["train_index"])
        assert max_diff(result.value[:, run], reference["value"]) < 1e-12
        assert max_diff(result.cumulative_gap["effective"][:, run], reference["cumulative_gap"]) < 1e-10
        # Relative as well as absolute agreement for the cumulative gap.
        scale = max(1.0, np.abs(reference["cumulative_gap"]).max())
        assert max_diff(result.cumulative_gap["effective"][:, run], reference["cumulative_gap"]) < 1e-12 * scale
    if alpha == 3.0:  # the large step reaches the band: both branches of the draw were exercised
        assert result.fell_back.any() and not result.fell_back.all()


@pytest.mark.parametrize("spec", [BanditSpec(1, 2, 1, 1, 0.0), BanditSpec(2, 2, 3, 4, 1.0), BanditSpec(1, 5, 2, 3, 0.0),
                                  BanditSpec(3, 3, 4, 5, 5.0)], ids=str)
@pytest.mark.parametrize("fallback", bandit.FALLBACKS)
def test_corner_specs_equal_numpy_reference(spec, fallback):
    # d = 1, N = 2, a pool of one context, θ₀ = 0 (all ties) or a large θ₀ (J near 0), and α = 20.
    steps = 60
    bandits = make_bandits(spec, [0, 1], steps)
    result = quiet_simulate(bandits, 20.0, steps, fallback=fallback)
    for run in range(2):
        reference = bandit.simulate_reference_numpy(bandits, run, 20.0, steps, fallback=fallback)
        assert np.array_equal(result.train_index[:, run].numpy(), reference["train_index"])
        assert max_diff(result.value[:, run], reference["value"]) < 1e-11
        assert max_diff(result.cumulative_gap["effective"][:, run], reference["cumulative_gap"]) < 1e-10
    assert torch.all(torch.isfinite(result.log_odds))


# ----------------------------------------------------------------------------------------------
# Batching, recording, dtype, drift
# ----------------------------------------------------------------------------------------------


def test_batched_runs_equal_runs_alone():
    steps, seeds, step_sizes = 120, [0, 1], [0.1, 1.0]
    batched = quiet_simulate(make_bandits(PAPER, seeds, steps).repeat(2), step_sizes * 2, steps)
    for i, seed in enumerate(seeds):
        for j, alpha in enumerate(step_sizes):
            row = i * len(step_sizes) + j
            alone = quiet_simulate(make_bandits(PAPER, [seed], steps), alpha, steps)
            assert torch.equal(batched.train_index[:, row], alone.train_index[:, 0])
            assert torch.equal(batched.fell_back[:, row], alone.fell_back[:, 0])
            assert max_diff(batched.value[:, row], alone.value[:, 0]) < 1e-12
            for name in bandit.ETA_READINGS:
                assert max_diff(batched.cumulative_gap[name][:, row], alone.cumulative_gap[name][:, 0]) < 1e-12
                assert max_diff(batched.relative_cumulative_gap[name][:, row],
                                alone.relative_cumulative_gap[name][:, 0]) < 1e-12
            assert max_diff(batched.final_theta[row], alone.final_theta[0]) < 1e-12
    # The step sizes are really different runs.
    assert max_diff(batched.value[-1, 0], batched.value[-1, 1]) > 1e-3


@pytest.mark.parametrize("steps, every, expected", [(25, 10, [0, 10, 20, 25]), (20, 10, [0, 10, 20]),
                                                    (7, 1, list(range(8))), (5, 9, [0, 5])])
def test_record_every(steps, every, expected):
    bandits = make_bandits(SMALL, [2, 3], steps=steps)
    sparse = quiet_simulate(bandits, 1.5, steps, record_every=every)
    full = quiet_simulate(bandits, 1.5, steps, record_every=1)
    assert sparse.recorded_steps.tolist() == expected
    at = torch.tensor(expected)
    for name in ("value", "log_odds", "signed_cumulative_alignment", "smallest_alignment_ratio", "pool_value"):
        assert torch.equal(getattr(sparse, name), getattr(full, name)[at]), name
    for name in bandit.ETA_READINGS:
        assert torch.equal(sparse.cumulative_gap[name], full.cumulative_gap[name][at])
        assert torch.equal(sparse.relative_cumulative_gap[name], full.relative_cumulative_gap[name][at])
    # Per-step traces do not depend on the recording.
    for name in ("train_index", "train_value", "train_gap_norm", "step", "fell_back", "final_theta"):
        assert torch.equal(getattr(sparse, name), getattr(full, name)), name


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_float32_agrees_with_float64(alpha):
    steps = 300
    f64 = quiet_simulate(make_bandits(PAPER, [0], steps, dtype=torch.float64), alpha, steps, record_every=10)
    f32 = quiet_simulate(make_bandits(PAPER, [0], steps, dtype=torch.float32), alpha, steps, record_every=10)
    assert f32.value.dtype == torch.float32 and f64.value.dtype == F64
    assert torch.equal(f32.train_index, f64.train_index)
    assert max_diff(f32.value, f64.value) < 1e-3
    assert (f64.value[-1] - f64.value[0]).abs().max() > 1e-3  # J moved: the comparison is not vacuous


@pytest.mark.parametrize("alpha", [0.1, 3.0])
def test_no_drift_from_incremental_logits(alpha):
    steps = 300  # > REFRESH_EVERY, and not a multiple of it: the last refresh was 44 steps before
    assert steps > bandit.REFRESH_EVERY and steps % bandit.REFRESH_EVERY != 0
    bandits = make_bandits(PAPER, [0, 1], steps)
    result = quiet_simulate(bandits, alpha, steps, record_every=50)
    for run in range(2):
        theta = result.final_theta[run]
        contexts, best = bandits.contexts[run], bandits.best_arm[run]
        recomputed = value_of(theta, contexts[bandits.evaluation], best[bandits.evaluation])
        assert max_diff(result.value[-1, run], recomputed) < 1e-10
        assert max_diff(result.pool_value[-1, run], value_of(theta, contexts[bandits.pool], best[bandits.pool])) < 1e-10
        # The final θ itself is the sum of the rank-one updates: J changed at the training contexts.
        assert max_diff(theta, bandits.theta0[run]) > 0


def _assert_same_trajectories(whole, grouped, atol):
    for field in dataclasses.fields(bandit.BanditTrajectories):
        a, b = getattr(whole, field.name), getattr(grouped, field.name)
        pairs = [(a[key], b[key]) for key in a] if isinstance(a, dict) else [(a, b)]
        for x, y in pairs:
            if not isinstance(x, torch.Tensor):
                assert x == y, field.name
            elif atol == 0 or not x.is_floating_point():
                assert torch.equal(x, y), field.name
            else:
                assert_close(y, x, atol=atol)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_the_compiled_step_gives_the_eager_trajectories(dtype, tolerance):
    """compile=True (one fused loop over the evaluation logits, the benchmark's fast path) follows the
    eager engine: same training contexts, every recorded quantity to rounding, across a refresh of the
    logits and on both updates."""
    steps, seeds = 150, [0, 1]
    assert steps > bandit.REFRESH_EVERY
    for update in bandit.UPDATES:
        bandits = make_bandits(PAPER, seeds, steps, dtype=dtype).repeat(2)
        alphas = [0.3, 3.0] * len(seeds)
        eager = quiet_simulate(bandits, alphas, steps, record_every=25, update=update)
        fused = quiet_simulate(bandits, alphas, steps, record_every=25, update=update, compile=True)
        assert (eager.value[-1] - eager.value[0]).abs().max() > 1e-2  # J moved: the comparison is not vacuous
        assert torch.equal(eager.train_index, fused.train_index)
        for field in dataclasses.fields(bandit.BanditTrajectories):
            a, b = getattr(eager, field.name), getattr(fused, field.name)
            for x, y in ([(a[key], b[key]) for key in a] if isinstance(a, dict) else [(a, b)]):
                if isinstance(x, torch.Tensor) and x.is_floating_point():
                    finite = torch.isfinite(x)  # smallest_alignment_ratio starts at +inf
                    assert torch.equal(finite, torch.isfinite(y)), field.name
                    torch.testing.assert_close(y[finite], x[finite], rtol=tolerance, atol=tolerance, msg=field.name)
                elif isinstance(x, torch.Tensor):
                    assert torch.equal(x, y), field.name
                else:
                    assert x == y, field.name


def test_simulating_in_groups_equals_one_batch():
    """Splitting a sweep into groups of runs (for the CPU cache) changes nothing: bitwise on the
    paper's sizes with the paper's band; to 1e-12 (BLAS blocking) where every context trains."""
    sizes = np.tile([0.1, 1.0, 5.0], 2)
    problems = make_bandits(BanditSpec(pool_size=6, eval_size=5), [0, 1], 12).repeat(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBandWarning)
        whole = simulate(problems, sizes, 12, record_every=5)
        for group_size in (2, None):
            _assert_same_trajectories(whole, bandit.simulate_in_groups(problems, sizes, 12, group_size=group_size,
                                                                       record_every=5), atol=0)
    problems = make_bandits(BanditSpec(dim=4, arms=6, pool_size=6, eval_size=5), [0, 1], 12).repeat(3)
    options = dict(band=(0.0, 1.0), record_every=5)
    whole = simulate(problems, sizes, 12, **options)
    grouped = bandit.simulate_in_groups(problems, sizes, 12, group_size=2, **options)
    assert torch.equal(whole.train_index, grouped.train_index)
    _assert_same_trajectories(whole, grouped, atol=1e-12)
    with pytest.raises(ValueError, match="'group_size'"):
        bandit.simulate_in_groups(problems, sizes, 12, group_size=0)


# ----------------------------------------------------------------------------------------------
# Empty band and fallbacks
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fallback", bandit.FALLBACKS)
def test_empty_band_warns_with_counts_and_runs_every_step(fallback):
    steps, seeds = 40, [0, 1, 2]
    bandits = make_bandits(PAPER, seeds, steps)
    with pytest.warns(EmptyBandWarning) as caught:
        result = simulate(bandits, 0.1, steps, band=(0.99, 1.0), fallback=fallback)
    messages = [str(w.message) for w in caught if issubclass(w.category, EmptyBandWarning)]
    assert len(messages) == 1
    message = messages[0]
    assert f"at {steps * len(seeds)} of {steps * len(seeds)} steps" in message
    assert f"{len(seeds)} of {len(seeds)} runs" in message
    assert "first in-band step of run 0: never" in message
    assert repr(fallback) in message and "[0.99, 1]" in message
    assert result.fell_back.shape == (steps, len(seeds)) and result.fell_back.all()
    assert result.recorded_steps[-1] == steps and result.value.shape[0] == steps + 1
    assert torch.all(result.pool_value < 0.99)
    assert torch.all(torch.isfinite(result.value)) and torch.all(torch.isfinite(result.cumulative_gap["effective"]))
    if fallback == "pool":  # the whole pool: the ⌊u_k P⌋-th context
        expected = torch.minimum((bandits.uniforms[:, :steps] * PAPER.pool_size).long(),
                                 torch.tensor(PAPER.pool_size - 1)).T
        assert torch.equal(result.train_index, expected)
    else:  # every value is below the band: a pool context of maximal J at every step
        chosen = result.pool_value[:-1].gather(-1, result.train_index.unsqueeze(-1)).squeeze(-1)
        assert torch.equal(chosen, result.pool_value[:-1].amax(-1))
        assert torch.equal(chosen, result.train_value)
        assert result.pool_value[0, 0, result.train_index[0, 0]] == result.pool_value[0, 0].max()


def test_nearest_fallback_from_above_takes_the_smallest_value():
    # Every value above the band: the nearest contexts are those of minimal J.
    bandits = make_bandits(TINY, [0, 1], steps=5)
    with pytest.warns(EmptyBandWarning):
        result = simulate(bandits, 0.5, 5, band=(0.0, 1e-9), fallback="nearest")
    assert torch.all(result.pool_value > 1e-9)
    chosen = result.pool_value[:-1].gather(-1, result.train_index.unsqueeze(-1)).squeeze(-1)
    assert torch.equal(chosen, result.pool_value[:-1].amin(-1))


def test_partially_empty_band_counts_and_first_in_band_step():
    # Run 1 (α = 3) reaches the band, run 0 (α = 0.1) does not: the warning counts per run.
    steps = 150
    bandits = make_bandits(PAPER, [0], steps).repeat(2)
    with pytest.warns(EmptyBandWarning) as caught:
        result = simulate(bandits, [0.1, 3.0], steps)
    fell = result.fell_back
    assert fell[:, 0].all() and not fell[:, 1].all()
    message = str(caught[0].message)
    assert f"at {int(fell.sum())} of {2 * steps} steps (2 of 2 runs" in message
    # Where the band is hit, the chosen context's J lies in it.
    in_band = result.train_value[~fell[:, 1], 1]
    assert in_band.numel() > 0 and torch.all((in_band >= 0.2) & (in_band <= 0.8))
    # Where it fell back, no pool context was in the band.
    pool = result.pool_value[:-1, 1][fell[:, 1]]
    assert not ((pool >= 0.2) & (pool <= 0.8)).any()


def test_first_in_band_step_reported_for_run_0():
    steps = 150
    bandits = make_bandits(PAPER, [0], steps)
    with pytest.warns(EmptyBandWarning) as caught:
        result = simulate(bandits, 3.0, steps)
    first = int((~result.fell_back[:, 0]).nonzero()[0])
    assert f"first in-band step of run 0: {first})" in str(caught[0].message)


@pytest.mark.parametrize("u, expected", [(0.0, 1), (0.34, 2), (0.5, 2), (0.67, 3), (0.999999, 3)])
def test_choice_is_uniform_over_the_closed_band(u, expected):
    # Run 0: J = (0.1, 0.2, 0.5, 0.8, 0.9), band [0.2, 0.8] (ends included): eligible 1, 2, 3, and
    # the ⌊3u⌋-th of them is taken. Run 1 (same u): nothing in the band.
    pool_value = t([[0.1, 0.2, 0.5, 0.8, 0.9], [0.05, 0.1, 0.1, 0.95, 0.01]])
    uniforms = t([u, u])
    index, empty = bandit._choose_training_contexts(pool_value, uniforms, (0.2, 0.8), "pool")
    assert index[0] == expected and empty.tolist() == [False, True]
    assert index[1] == min(int(5 * u), 4)  # "pool": the ⌊5u⌋-th of the whole pool
    index, empty = bandit._choose_training_contexts(pool_value, uniforms, (0.2, 0.8), "nearest")
    assert index[0] == expected and empty.tolist() == [False, True]
    assert index[1] == (1 if u < 0.5 else 2)  # "nearest": the tie J = 0.1 at positions 1 and 2


def test_band_that_is_hit_does_not_warn():
    bandits = make_bandits(TINY, [0, 1], steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyBandWarning)
        result = simulate(bandits, 1.0, 20, band=(0.0, 1.0))
    assert not result.fell_back.any()


# ----------------------------------------------------------------------------------------------
# alignment_matrix
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alignment_matrix_equals_autograd(seed):
    generator = torch.Generator().manual_seed(seed)
    d, n, p, e = 4, 6, 5, 7
    theta = 1.5 * torch.randn(d, n, generator=generator, dtype=F64)
    train = torch.rand(p, d, generator=generator, dtype=F64)
    train_best = torch.randint(n, (p,), generator=generator)
    contexts = torch.rand(e, d, generator=generator, dtype=F64)
    best = torch.randint(n, (e,), generator=generator)
    matrix = bandit.alignment_matrix(theta, train, train_best, contexts, best)
    assert matrix.shape == (p, e)
    gaps_eval = bandit_gradient_gap(theta, contexts, one_hot(best, n))  # (E, d, N)
    expected = torch.empty(p, e, dtype=F64)
    for i in range(p):
        _, grad = autograd_value_gradient(theta, train[i], train_best[i])
        expected[i] = torch.einsum("dn,edn->e", grad / torch.linalg.vector_norm(grad), gaps_eval)
    assert_close(matrix, expected, rtol=1e-10, atol=1e-13)
    # A context's alignment with itself is the norm of its gap.
    self_matrix = bandit.alignment_matrix(theta, contexts, best, contexts, best)
    assert_close(self_matrix.diagonal(), torch.linalg.vector_norm(gaps_eval.flatten(-2), dim=-1), rtol=1e-10)


def test_alignment_positive_for_pairs_with_the_same_optimal_arm():
    # x ≥ 0 makes x̂_i · x_j > 0, and v_i · v_j = 1 + π⁻_i · π⁻_j > 0 when y*(x_i) = y*(x_j).
    bandits = make_bandits(SMALL, [0], steps=1)
    generator = torch.Generator().manual_seed(0)
    theta = 2.0 * torch.randn(SMALL.dim, SMALL.arms, generator=generator, dtype=F64)
    contexts, best = bandits.contexts[0], bandits.best_arm[0]
    matrix = bandit.alignment_matrix(theta, contexts, best, contexts, best)
    same = best[:, None] == best[None, :]
    assert same.sum() > len(best)  # some pairs besides the diagonal share an arm
    assert torch.all(matrix[same] > 0)
    assert (matrix[~same] < 0).any()  # and different arms can be misaligned


def test_engine_alignment_equals_alignment_matrix():
    # The signed cumulative alignment after one step is Δμ(0) η_0 with Δμ from alignment_matrix.
    bandits = make_bandits(SMALL, [5], steps=1)
    result = simulate(bandits, 0.3, 1, band=(0.0, 1.0))
    index = result.train_index[0, 0]
    contexts, best = bandits.contexts[0], bandits.best_arm[0]
    row = bandit.alignment_matrix(bandits.theta0[0], contexts[index][None], best[index][None],
                                  contexts[bandits.evaluation], best[bandits.evaluation])[0]
    assert_close(result.signed_cumulative_alignment[1, 0], row * result.step[0, 0], atol=1e-13)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def _bandits(seeds=(0, 1), steps=5):
    return make_bandits(TINY, list(seeds), steps)


BAD_INPUT = {
    # BanditSpec
    "dim=0": (lambda: BanditSpec(dim=0), "'dim'"),
    "dim=-1": (lambda: BanditSpec(dim=-1), "'dim'"),
    "dim=2.5": (lambda: BanditSpec(dim=2.5), "'dim'"),
    "dim=True": (lambda: BanditSpec(dim=True), "'dim'"),
    "arms=0": (lambda: BanditSpec(arms=0), "'arms'"),
    "arms=1": (lambda: BanditSpec(arms=1), "'arms'"),
    "pool_size=0": (lambda: BanditSpec(pool_size=0), "'pool_size'"),
    "eval_size=0": (lambda: BanditSpec(eval_size=0), "'eval_size'"),
    "init_scale=nan": (lambda: BanditSpec(init_scale=math.nan), "'init_scale'"),
    "init_scale=inf": (lambda: BanditSpec(init_scale=math.inf), "'init_scale'"),
    "init_scale=-1": (lambda: BanditSpec(init_scale=-1.0), "'init_scale'"),
    "init_scale='x'": (lambda: BanditSpec(init_scale="x"), "'init_scale'"),
    "init_scale=None": (lambda: BanditSpec(init_scale=None), "'init_scale'"),
    # check_band
    "band=(-0.1,0.5)": (lambda: bandit.check_band((-0.1, 0.5)), "'band'"),
    "band=(0.5,0.5)": (lambda: bandit.check_band((0.5, 0.5)), "'band'"),
    "band=(0.6,0.4)": (lambda: bandit.check_band((0.6, 0.4)), "'band'"),
    "band=(0.2,1.1)": (lambda: bandit.check_band((0.2, 1.1)), "'band'"),
    "band=(nan,0.5)": (lambda: bandit.check_band((math.nan, 0.5)), "'band'"),
    "band=(0.2,inf)": (lambda: bandit.check_band((0.2, math.inf)), "'band'"),
    "band=0.5": (lambda: bandit.check_band(0.5), "'band'"),
    "band=triple": (lambda: bandit.check_band((0.1, 0.2, 0.3)), "'band'"),
    "band=text": (lambda: bandit.check_band("ab"), "'band'"),
    "simulate band=(0.6,0.4)": (lambda: simulate(_bandits(), 0.1, 3, band=(0.6, 0.4)), "'band'"),
    "simulate band=0.5": (lambda: simulate(_bandits(), 0.1, 3, band=0.5), "'band'"),
    "reference band=(0.5,0.5)": (lambda: bandit.simulate_reference_numpy(_bandits(), 0, 0.1, 3, band=(0.5, 0.5)),
                                 "'band'"),
    # check_step_sizes and simulate's step sizes
    "step=0": (lambda: bandit.check_step_sizes(0.0), "'step_size'"),
    "step=-1": (lambda: bandit.check_step_sizes(-1.0), "'step_size'"),
    "step=inf": (lambda: bandit.check_step_sizes(math.inf), "'step_size'"),
    "step=nan": (lambda: bandit.check_step_sizes(math.nan), "'step_size'"),
    "step=[]": (lambda: bandit.check_step_sizes([]), "'step_size'"),
    "step='abc'": (lambda: bandit.check_step_sizes("abc"), "'step_size'"),
    "step=None": (lambda: bandit.check_step_sizes(None), "'step_size'"),
    "step 2-D": (lambda: bandit.check_step_sizes([[0.1, 2.0]]), "'step_size'"),
    "step=[0.1,nan]": (lambda: bandit.check_step_sizes(np.array([0.1, math.nan])), "'step_size'"),
    "simulate step=0": (lambda: simulate(_bandits(), 0.0, 3), "'step_size'"),
    "simulate step=[0.1,-1]": (lambda: simulate(_bandits(), [0.1, -1.0], 3), "'step_size'"),
    "simulate step=[]": (lambda: simulate(_bandits(), [], 3), "'step_size'"),
    "simulate step count 3 for 2": (lambda: simulate(_bandits(), [0.1, 0.2, 0.3], 3), "'step_size'"),
    "simulate step count 2 for 4": (lambda: simulate(_bandits().repeat(2), [0.1, 0.2], 3), "'step_size'"),
    # fallback
    "simulate fallback=bogus": (lambda: simulate(_bandits(), 0.1, 3, fallback="bogus"), "'fallback'"),
    "reference fallback=bogus": (lambda: bandit.simulate_reference_numpy(_bandits(), 0, 0.1, 3, fallback="bogus"),
                                 "'fallback'"),
    # steps and record_every
    "simulate steps=0": (lambda: simulate(_bandits(), 0.1, 0), "'steps'"),
    "simulate steps=-2": (lambda: simulate(_bandits(), 0.1, -2), "'steps'"),
    "simulate steps=2.0": (lambda: simulate(_bandits(), 0.1, 2.0), "'steps'"),
    "simulate steps>prepared": (lambda: simulate(_bandits(steps=5), 0.1, 6), "'steps'"),
    "simulate record_every=0": (lambda: simulate(_bandits(), 0.1, 3, record_every=0), "'record_every'"),
    "simulate record_every=-1": (lambda: simulate(_bandits(), 0.1, 3, record_every=-1), "'record_every'"),
    "make_bandits steps=0": (lambda: make_bandits(TINY, [0], 0), "'steps'"),
    # make_bandits: seeds, dtype, device
    "make_bandits seeds=[]": (lambda: make_bandits(TINY, [], 5), "'seeds'"),
    "make_bandits seeds=[2.7]": (lambda: make_bandits(TINY, [2.7], 5), "'seeds'"),
    "make_bandits seeds=[-1]": (lambda: make_bandits(TINY, [-1], 5), "'seeds'"),
    "make_bandits dtype=int64": (lambda: make_bandits(TINY, [0], 5, dtype=torch.int64), "'dtype'"),
    "make_bandits dtype=float16": (lambda: make_bandits(TINY, [0], 5, dtype=torch.float16), "'dtype'"),
    "make_bandits device=tpu": (lambda: make_bandits(TINY, [0], 5, device="tpu"), "'device'"),
    "make_bandits device=cuda:zero": (lambda: make_bandits(TINY, [0], 5, device="cuda:zero"), "'device'"),
}


@pytest.mark.parametrize("call, match", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_raises_value_error_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_gpu_raises():
    with pytest.raises(ValueError, match="'device'"):
        make_bandits(TINY, [0], 5, device="cuda")


def test_good_input_is_accepted_and_normalised():
    assert bandit.check_band([0, 1]) == (0.0, 1.0)
    assert bandit.check_band(np.array([0.2, 0.8])) == (0.2, 0.8)
    assert_close(bandit.check_step_sizes(0.5), t([0.5]))
    assert_close(bandit.check_step_sizes([0.1, 2.0]), t([0.1, 2.0]))
    # A single step size applies to every run; numpy integers are valid sizes.
    BanditSpec(dim=np.int64(3), arms=2, pool_size=1, eval_size=1, init_scale=0.0)
    result = simulate(_bandits(), 1, np.int64(3), band=(0.0, 1.0), record_every=np.int64(2))
    assert_close(result.step_size, t([1.0, 1.0]))
    assert result.recorded_steps.tolist() == [0, 2, 3]
    assert make_bandits(TINY, [0], 2, device="auto").contexts.device.type in ("cpu", "cuda")
    assert make_bandits(TINY, [0], 2, device=torch.device("cpu")).contexts.device.type == "cpu"


# ----------------------------------------------------------------------------------------------
# The normalized update (constant effective step)
# ----------------------------------------------------------------------------------------------


def test_bandit_normalized_update_has_constant_effective_step_and_matches_autograd():
    spec = bandit.BanditSpec(dim=4, arms=6, pool_size=5, eval_size=7, init_scale=1.0)
    problems = bandit.make_bandits(spec, [0], 3)
    result = bandit.simulate(problems, 0.7, 1, band=(0.0, 1.0), update="normalized")
    assert_close(result.step, torch.full_like(result.step, 0.7), atol=1e-15)
    index = int(result.train_index[0, 0])
    theta = problems.theta0[0].clone().requires_grad_(True)
    x = problems.contexts[0, index]
    value = torch.softmax(x @ theta, -1)[problems.best_arm[0, index]]
    (grad,) = torch.autograd.grad(value, theta)
    assert_close(result.final_theta[0], problems.theta0[0] + 0.7 * grad / torch.linalg.vector_norm(grad), atol=1e-12)
    with pytest.raises(ValueError, match="'update'"):
        bandit.simulate(problems, 0.7, 1, update="adam")


def test_learned_arms_are_the_optimal_arms_of_converged_contexts():
    bandits = make_bandits(SMALL, [0], 200)
    result = quiet_simulate(bandits, 2.0, 200)
    final, best = result.value[-1, 0], result.best_arm[0]
    learned = bandit.learned_arms(result, 0)
    assert learned.tolist() == sorted(set(best[final >= 0.9].tolist()))
    assert len(bandit.learned_arms(result, 0, level=1.1)) == 0  # nothing reaches J > 1
    assert set(bandit.learned_arms(result, 0, level=0.0).tolist()) == set(best.tolist())
