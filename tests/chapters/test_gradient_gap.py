"""Tests of rlvr_dynamics.chapters.gradient_gap: the Monte-Carlo plug-in estimate of identity (10), and
the chapter's margins, tables and summaries — each shown to fail on a constructed counter-example."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rlvr_dynamics.chapters import gradient_gap
from rlvr_dynamics.theory.policies import TokenPolicy, random_bandits

from _helpers import assert_close, measures_memory, peak_rss_bytes, t


def test_monte_carlo_gradient_is_plug_in_identity():
    # (1/n) Σ (r_i − r̄) s_i = Ĵ(1 − Ĵ)(ĝ⁺ − ĝ⁻), with Ĵ = r̄ and ĝ± the sample means of the scores
    # over the correct / incorrect samples: an exact algebraic identity.
    generator = torch.Generator().manual_seed(5)
    instances = gradient_gap.random_token_policies(TokenPolicy(3, 3), 2, 1.0, generator)
    for index, n in ((0, 37), (1, 500)):
        score, reward, _ = gradient_gap.sampled_responses(instances, index, n, generator)
        correct = reward > 0.5
        assert correct.any() and (~correct).any()
        J_hat = reward.mean()
        g_plus = score[correct].mean(0)
        g_minus = score[~correct].mean(0)
        expected = J_hat * (1 - J_hat) * (g_plus - g_minus)
        plug_in = gradient_gap.monte_carlo_gradient(score, reward, unbiased=False)
        assert_close(plug_in, expected, rtol=1e-12, atol=1e-12)
        assert_close(gradient_gap.monte_carlo_gradient(score, reward, unbiased=True), expected * n / (n - 1),
                     rtol=1e-12, atol=1e-12)


def test_monte_carlo_gradient_by_hand():
    # Samples: scores (1, 0), (0, 1), (2, 2) with rewards (1, 0, 1): Ĵ = 2/3,
    # ĝ⁺ = ((1, 0) + (2, 2))/2 = (3/2, 1), ĝ⁻ = (0, 1) ⇒ Ĵ(1 − Ĵ)(ĝ⁺ − ĝ⁻) = (2/9)(3/2, 0) = (1/3, 0).
    score = t([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    reward = t([1.0, 0.0, 1.0])
    assert_close(gradient_gap.monte_carlo_gradient(score, reward, unbiased=False), [1 / 3, 0.0])
    assert_close(gradient_gap.monte_carlo_gradient(score, reward, unbiased=True), [0.5, 0.0])


# ----------------------------------------------------------------------------------------------
# The chapter's margins: each holds on the chapter's instances and fails on a constructed counter-example
# ----------------------------------------------------------------------------------------------


def _small_instances(seed=0, n=3):
    generator = torch.Generator().manual_seed(seed)
    tokens = gradient_gap.random_token_policies(TokenPolicy(3, 3), n, 1.0, generator)
    bandits = random_bandits(n, 3, 5, 1.0, generator)
    return tokens, bandits


def test_identity_and_score_margins_hold_and_fail_on_a_perturbed_gradient():
    tokens, bandits = _small_instances()
    bandit, token = gradient_gap.bandit_identity(bandits), gradient_gap.token_identity(tokens)
    for margins in gradient_gap.identity_margins(bandit, token).values():
        assert bool((margins > 0).all())
    assert bool((gradient_gap.eq4_margins(bandit, token) > 0).all())
    assert bool((gradient_gap.score_identity_margins(tokens) > 0).all())
    assert bool((gradient_gap.total_mass_margins(tokens) > 0).all())
    # a closed form off by one part in 10⁸ is a broken identity
    broken = dict(token, error_closed_form=token["error_closed_form"] + 1e-8)
    assert bool((gradient_gap.identity_margins(bandit, broken)["token-level policies, closed-form scores"] < 0).all())
    # a response set that misses a response does not carry all the probability
    missing = gradient_gap.TokenInstances(tokens.policy, tokens.theta, tokens.reward[:, 1:], tokens.tokens[1:],
                                          tokens.lengths[1:])
    assert bool((gradient_gap.total_mass_margins(missing) < 0).all())


def test_identity_headline_and_summary_by_hand():
    bandit = {"error_closed_form": t([1e-16, 3e-16]), "error_generic": t([5e-16, 2e-16]), "J": t([0.2, 0.4])}
    token = {"error_closed_form": t([2e-15]), "J": t([0.5])}
    assert gradient_gap.identity_headline(bandit, token) == {"identity_worst_relative_error_bandit": 5e-16,
                                                            "identity_worst_relative_error_token": 2e-15}
    summary = gradient_gap.identity_summary(bandit, token)
    assert "2 bandits: below 1e-16" in summary and "1 token policies: below 1e-15" in summary


def test_monte_carlo_margins_fail_outside_their_ranges():
    study = gradient_gap.MonteCarloStudy(0, 0.5, 1e-17, [100, 1000], t([0.1, 0.03]), -0.52, 0.01, 2, 100,
                                         t([1.0, -2.0]), t([30.0, 0.0]), 4.0)
    assert min(study.pair_margins()) > 0 and min(study.slope_margins()) > 0
    assert min(study.unbiased_margins()) == 2.0 and min(study.bias_detected_margins()) == 26.0
    assert study.headline()["mc_slope_interval"] == [-0.54, -0.5]
    # an error that does not decay (slope 0), a biased estimator (|z| 5 > 4), a test without power (|z| 3 < 4)
    flat = dataclasses.replace(study, slope=-0.05, z_corrected=t([5.0]), z_plug_in=t([3.0]))
    assert min(flat.slope_margins()) < 0 and min(flat.unbiased_margins()) < 0 and min(flat.bias_detected_margins()) < 0
    assert min(dataclasses.replace(study, exact_pair_error=1e-9).pair_margins()) < 0


def test_monte_carlo_study_is_seeded_and_holds_on_a_small_instance():
    tokens, _ = _small_instances(seed=1)
    autograd = gradient_gap.token_identity(tokens)["autograd"]
    first = gradient_gap.monte_carlo_study(tokens, autograd, 20_000, 1_000, torch.Generator().manual_seed(3))
    again = gradient_gap.monte_carlo_study(tokens, autograd, 20_000, 1_000, torch.Generator().manual_seed(3))
    assert torch.equal(first.relative_error, again.relative_error) and first.slope == again.slope
    assert first.index == gradient_gap.most_balanced_instance(tokens)
    assert min(first.pair_margins()) > 0 and min(first.bias_detected_margins()) > 0


def test_alignment_margins_hold_and_fail_on_tilted_or_untilted_directions():
    tokens, bandits = _small_instances(seed=2)
    exact = gradient_gap.exact_alignments(tokens, group_size=4)
    for variant in ("reinforce", "dr_grpo"):
        assert bool((gradient_gap.unit_cosine_margins(exact, variant) > 0).all())
    assert bool((gradient_gap.reinforce_step_margins(exact) > 0).all())
    assert bool((gradient_gap.bandit_grpo_margins(bandits) > 0).all())
    assert bool((gradient_gap.grpo_tilt_margins(exact) > 0).all())  # lengths 1 … 3 tilt GRPO
    # a GRPO direction on the gap (as when every response has one length) or against it fails the tilt claim
    for cosine in (1.0, -0.2):
        assert bool((gradient_gap.grpo_tilt_margins(dict(exact, grpo_cosine=t([cosine]))) < 0).all())
    # a tilted direction fails the unit-cosine claim
    tilted = dict(exact, reinforce_cosine=exact["grpo_cosine"])
    assert bool((gradient_gap.unit_cosine_margins(tilted, "reinforce") < 0).all())


def test_alignment_table_by_hand():
    exact = {f"{v}_cosine": t([0.9, 0.8]) for v in ("reinforce", "grpo", "dr_grpo")}
    nan = float("nan")
    sampled = {"reinforce": t([[0.5, -0.5], [1.0, 0.5]]), "grpo": t([[nan, 0.2], [nan, nan]]),
               "dr_grpo": t([[0.1, nan], [0.3, -0.1]])}
    table = gradient_gap.alignment_table(exact, sampled)
    assert table.loc["REINFORCE"].tolist() == [0.8, 0.375, 0.75, 0.0]
    assert table.loc["GRPO"].tolist() == [0.8, 0.2, 1.0, 0.75]
    assert table.loc["Dr. GRPO", "P(Δμ > 0 | update)"] == 2 / 3 and table.loc["Dr. GRPO", "P(no update)"] == 0.25
    headline = gradient_gap.alignment_headline(
        dict(exact, J=t([0.3, 0.9]), grpo_step_per_lr=t([1.0, 3.0]), reinforce_step_per_lr=t([1.0, 1.5])), table)
    assert headline["max_J"] == 0.9 and headline["grpo_over_reinforce_step_at_max_J"] == 2.0


def test_alignment_glue_reads_the_headline():
    nan = float("nan")
    exact = {f"{v}_cosine": t([0.9, 0.8]) for v in ("reinforce", "grpo", "dr_grpo")}
    sampled = {"reinforce": t([[0.5, -0.5], [1.0, 0.5]]), "grpo": t([[nan, 0.2], [nan, nan]]),
               "dr_grpo": t([[0.1, nan], [0.3, -0.1]])}
    table = gradient_gap.alignment_table(exact, sampled)
    headline = gradient_gap.alignment_headline(
        dict(exact, J=t([0.3, 0.9]), grpo_step_per_lr=t([1.0, 3.0]), reinforce_step_per_lr=t([1.0, 1.5])), table)
    glued = gradient_gap.alignment_glue(headline)
    assert glued["positive_min"] == 2 / 3 and glued["positive_max"] == 1.0 and glued["no_update"] == 0.75
    assert (glued["grpo_ratio"], glued["max_J"], glued["sampled_grpo"]) == (2.0, 0.9, 0.2)


# ----------------------------------------------------------------------------------------------
# The memory estimate of the book's pre-flight check
# ----------------------------------------------------------------------------------------------


def _config(**changes) -> gradient_gap.GradientGapConfig:
    return gradient_gap.GradientGapConfig(**{**gradient_gap.PRESETS["ci"], **changes})


def test_estimated_peak_bytes_grows_with_the_dominant_sizes():
    # Bandit-bound, 8·n·d·N·(N + 10) (the dense scores (n, N, d·N) and three kept (n, d, N)): doubling the
    # instances doubles it, doubling the arms multiplies it by (2·810)/410 ≈ 3.95.
    bandits = _config(bandit_instances=100, bandit_arms=400).estimated_peak_bytes()
    assert _config(bandit_instances=200, bandit_arms=400).estimated_peak_bytes() == 2 * bandits
    ratio = _config(bandit_instances=100, bandit_arms=800).estimated_peak_bytes() / bandits
    assert ratio == pytest.approx(3.95, rel=1e-3)
    # Sample-bound (the ci token policy, 10⁶ sampled responses): twice the samples, twice the memory.
    samples = _config(mc_max_samples=1_000_000).estimated_peak_bytes()
    assert _config(mc_max_samples=2_000_000).estimated_peak_bytes() / samples == pytest.approx(2, rel=1e-3)
    # The sizes, each in range, need about 80 PB (8 · 10⁵ · 10³ · 10⁴ · 10⁴ bytes of dense scores).
    assert _config(bandit_instances=100_000, bandit_arms=10_000, bandit_dim=1_000).estimated_peak_bytes() > 8e16


@pytest.mark.parametrize("preset", ["ci", "paper"])
def test_presets_estimate_well_under_the_ci_machine(preset):
    assert _config(**gradient_gap.PRESETS[preset]).estimated_peak_bytes() < 4 * 2**30


MEMORY_SETUP = """
import torch
from rlvr_dynamics.chapters import gradient_gap
from rlvr_dynamics.theory.policies import random_bandits
def core(n, dim, arms):
    problems = random_bandits(n, dim, arms, 1.0, torch.Generator().manual_seed(0))
    gradient_gap.bandit_identity(problems)
    gradient_gap.bandit_grpo_margins(problems)
core(2, 3, 5)
"""


@measures_memory
def test_estimated_peak_bytes_is_within_three_times_a_measured_run():
    # The bandit checks of identity (10) at n = 30, N = 300: dense scores of ≈ 0.2 GB, the estimate's
    # largest term (the sampled responses are cut to 10⁴).
    config = _config(bandit_instances=30, bandit_arms=300, mc_max_samples=10_000)
    measured = peak_rss_bytes(MEMORY_SETUP, f"core({config.bandit_instances}, {config.bandit_dim}, "
                                            f"{config.bandit_arms})")
    assert 1 / 3 < measured / config.estimated_peak_bytes() < 3
