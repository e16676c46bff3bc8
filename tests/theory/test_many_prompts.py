"""Propositions B10–B12 (many prompts under one shared update): hand-computed cases, and the identities
against their definitions on random instances."""

import math

import pytest
import torch

from rlvr_dynamics.theory import bounds
from rlvr_dynamics.theory import many_prompts as mp

D = torch.float64


def test_prompt_alignments_by_hand():
    # w = (3, 4)/5; Δμ = ⟨w, gap_q⟩ for gaps e1, e2 and (−1, −1): 0.6, 0.8, −1.4.
    gaps = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=D)
    assert torch.allclose(mp.prompt_alignments(torch.tensor([3.0, 4.0], dtype=D), gaps),
                          torch.tensor([0.6, 0.8, -1.4], dtype=D))
    assert mp.prompt_alignments(torch.zeros(2, dtype=D), gaps).eq(0).all()  # no update: aligned with nothing
    batched = mp.prompt_alignments(torch.tensor([[3.0, 4.0], [0.0, -2.0]], dtype=D), gaps.expand(2, 3, 2))
    assert torch.allclose(batched[1], torch.tensor([0.0, -1.0, 1.0], dtype=D))
    with pytest.raises(ValueError, match="parameter axes differ"):
        mp.prompt_alignments(torch.ones(3, dtype=D), gaps)


def test_lemma1_constants_by_hand():
    assert float(mp.lemma1_constant(0.5, 2.0)) == 0.5 + 4.0 / 2
    assert float(mp.lemma1_constant(0.5, 2.0, "paper")) == 0.5 + 8 * 4.0
    with pytest.raises(ValueError, match="constant = 'loose' is unknown"):
        mp.lemma1_constant(0.5, 2.0, "loose")


def test_prompted_chain_regularity_is_the_bandits_at_two_and_grows_with_the_free_positions():
    norm = torch.tensor([0.5, 1.0, 2.0], dtype=D)
    score, smooth = mp.prompted_chain_regularity(norm, 2)
    assert torch.allclose(score, bounds.bandit_score_bound(norm))
    assert torch.allclose(smooth, bounds.bandit_smoothness_bound(norm))
    score, smooth = mp.prompted_chain_regularity(torch.tensor(1.0, dtype=D), 5)  # ‖x‖ = 1 and 3 table rows
    assert math.isclose(float(score), math.sqrt(2) * 4) and math.isclose(float(smooth), (1 + 3) / 2)
    with pytest.raises(ValueError, match="max_length must be ≥ 2"):
        mp.prompted_chain_regularity(norm, 1)


def test_log_odds_change_interval_by_hand():
    low, high = mp.log_odds_change_interval(torch.tensor([[1.0, -2.0]], dtype=D), torch.tensor([0.1], dtype=D),
                                            torch.tensor([[3.0, 5.0]], dtype=D))
    assert torch.allclose(low, torch.tensor([[0.1 - 0.03, -0.2 - 0.05]], dtype=D))
    assert torch.allclose(high, torch.tensor([[0.1 + 0.03, -0.2 + 0.05]], dtype=D))


def test_thresholds_and_spread_by_hand():
    alignments = torch.tensor([[1.0, 2.0, 3.0], [1.0, -1.0, 3.0]], dtype=D)
    constants = torch.tensor([2.0, 1.0, 3.0], dtype=D)
    # ratios Δμ/C: (0.5, 2, 1) and (0.5, 0, 1): the minimum sets both thresholds; one opposed prompt → 0.
    assert torch.allclose(mp.every_prompt_improves_below(alignments, constants), torch.tensor([0.5, 0.0], dtype=D))
    assert torch.allclose(mp.shared_safe_step(alignments, constants), torch.tensor([0.25, 0.0], dtype=D))
    assert torch.allclose(mp.safe_step_spread(alignments, constants), torch.tensor([0.5 / (3.5 / 3), 0.0], dtype=D))
    equal = mp.safe_step_spread(torch.tensor([2.0, 4.0], dtype=D), torch.tensor([1.0, 2.0], dtype=D))
    assert float(equal) == 1.0  # equal ratios: the shared step is every prompt's own


def test_weighted_alignment_identity_by_hand_and_on_random_gaps():
    # u = e1 + e2, ‖u‖ = √2; each Δμ = 1/√2, so Σ c Δμ = √2.
    left, right = mp.weighted_alignment_identity(torch.ones(2, dtype=D), torch.eye(2, dtype=D))
    assert math.isclose(float(left), math.sqrt(2)) and math.isclose(float(right), math.sqrt(2))
    generator = torch.Generator().manual_seed(0)
    gaps = torch.randn(5, 7, 11, generator=generator, dtype=D)
    weights = torch.rand(5, 7, generator=generator, dtype=D)
    left, right = mp.weighted_alignment_identity(weights, gaps)
    assert torch.allclose(left, right, rtol=1e-12)
    # a wrong normalisation of w would break it: the identity is not the trivial Σ c⟨u, gap⟩ = ‖u‖²
    assert not torch.allclose((weights * torch.einsum("bd,bqd->bq", torch.einsum("bq,bqd->bd", weights, gaps),
                                                      gaps)).sum(-1), right)


def test_opposed_prompts_is_the_sign_of_the_alignment():
    # parts (1, 0) and (−2, 0.1): ⟨u1, u2⟩ = −2 < −‖u1‖² = −1, so prompt 1 is opposed; prompt 2 is not.
    gaps = torch.tensor([[1.0, 0.0], [-2.0, 0.1]], dtype=D)
    assert mp.opposed_prompts(torch.ones(2, dtype=D), gaps).tolist() == [True, False]
    generator = torch.Generator().manual_seed(1)
    gaps = torch.randn(20, 6, 4, generator=generator, dtype=D)
    weights = torch.rand(20, 6, generator=generator, dtype=D)
    update = torch.einsum("bq,bqd->bd", weights, gaps)
    assert torch.equal(mp.opposed_prompts(weights, gaps), mp.prompt_alignments(update, gaps) < 0)


def test_stuck_ceiling_and_batch_ceiling_by_hand():
    steps = torch.tensor([0.1, 0.2], dtype=D)  # (K,)
    alignments = torch.tensor([[1.0, -1.0], [0.5, -2.0]], dtype=D)  # (K, Q)
    constants = torch.tensor([2.0, 3.0], dtype=D)
    ceiling = mp.stuck_log_odds_ceiling(torch.tensor([0.0, -1.0], dtype=D), steps, alignments, constants)
    expected = torch.tensor([[0.0, -1.0],
                             [0.1 + 2 * 0.01, -1.0 + 3 * 0.01],
                             [0.1 + 0.02 + 0.1 + 2 * 0.04, -1.0 + 0.03 + 3 * 0.04]], dtype=D)
    assert torch.allclose(ceiling, expected)
    batch = mp.batch_success_ceiling(torch.tensor([0.0, 2.0], dtype=D), torch.tensor([True, False]))
    assert math.isclose(float(batch), (0.5 + 1.0) / 2)
