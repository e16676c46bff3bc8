"""The multi-prompt engine: the forward algorithm and every per-prompt quantity against enumeration and
autograd, the rules and selections by hand, and the training loop against the propositions."""

import dataclasses

import pytest
import torch

from rlvr_dynamics.engines import bandit
from rlvr_dynamics.engines import multi_prompt as mp
from rlvr_dynamics.theory import many_prompts, markov
from rlvr_dynamics.theory.policies import TokenPolicy

D = torch.float64


@pytest.fixture(scope="module")
def chain():
    return mp.make_family("chain", [3, 4], n_prompts=5, vocab_size=4, feature_dim=2, lengths=(2, 3, 4))


@pytest.fixture(scope="module")
def bandit_family():
    return mp.make_family("bandit", [7, 8], n_prompts=6, vocab_size=5, feature_dim=3)


def _prompt_table(family, theta, run, q):
    """Prompt q's bigram table (V + 1, V) of markov's layout, built differentiably from θ of ``run``."""
    start, table = family.split(theta)
    v = family.vocab_size
    bias = torch.zeros(v, dtype=D)
    bias[0] = mp.EMPTY_LOGIT
    rows = [torch.zeros(1, v, dtype=D)] + ([table] if table is not None else [torch.zeros(v - 1, v, dtype=D)])
    return torch.cat(rows + [(family.features[run, q] @ start + bias).unsqueeze(0)])


def _enumerated(family, theta, run, q):
    """log π of every response of prompt q, its reward and length (enumeration: the independent reference)."""
    v, length = family.vocab_size, int(family.max_lengths[q])
    policy = TokenPolicy(v, length, position_bias=False)
    tokens, lengths = policy.enumerate_responses()
    log_prob = policy.log_prob(_prompt_table(family, theta, run, q).flatten(), tokens, lengths)
    reward = markov.Verifier("final_token", v, int(family.answers[run, q])).reward(tokens, lengths)
    return log_prob, reward, lengths.to(D)


def test_final_token_forward_algorithm_equals_markov_and_enumeration(chain):
    state = mp.prompt_state(chain, chain.theta0)
    for run in range(2):
        for q in range(chain.n_prompts):
            log_prob, reward, _ = _enumerated(chain, chain.theta0[run], run, q)
            success = torch.logsumexp(torch.where(reward > 0, log_prob, -torch.inf), -1)
            assert torch.allclose(state.outcomes.log_success[run, q], success, atol=1e-12)
            reference = markov.outcomes(TokenPolicy(4, int(chain.max_lengths[q]), position_bias=False),
                                        _prompt_table(chain, chain.theta0[run], run, q).flatten(),
                                        markov.Verifier("final_token", 4, int(chain.answers[run, q])))
            length = int(chain.max_lengths[q])
            assert torch.allclose(state.outcomes.log_success_by_length[run, q, :length],
                                  reference.log_success_by_length, atol=1e-12)


def test_every_prompts_gap_and_grpo_update_equal_autograd_through_enumeration(chain):
    theta = chain.theta0 + 0.3 * torch.randn(chain.theta0.shape, generator=torch.Generator().manual_seed(0), dtype=D)
    state = mp.prompt_state(chain, theta, grpo=True)
    for run in range(2):
        for q in range(chain.n_prompts):
            point = theta[run].clone().requires_grad_(True)
            log_prob, reward, lengths = _enumerated(chain, point, run, q)
            log_j = torch.logsumexp(torch.where(reward > 0, log_prob, -torch.inf), -1)
            log_fail = torch.logsumexp(torch.where(reward > 0, -torch.inf, log_prob), -1)
            (gap,) = torch.autograd.grad(log_j - log_fail, point, retain_graph=True)
            value, sigma = log_j.exp().detach(), (log_j + log_fail).mul(0.5).exp().detach()
            surrogate = (log_prob.exp() * (reward - value) / sigma / lengths).sum()  # eq. (5) by enumeration
            (grpo,) = torch.autograd.grad(surrogate, point)
            assert torch.allclose(state.gaps[run, q], gap, atol=1e-10)
            assert torch.allclose(state.grpo_updates[run, q], grpo, atol=1e-10)


def test_the_bandit_family_is_the_figure1_problem(bandit_family):
    problem = bandit.make_bandits(bandit.BanditSpec(3, 4, 6, 1, 0.01), [7], 1)
    assert torch.equal(bandit_family.features[0], problem.contexts[0, :6])
    assert torch.equal(bandit_family.answers[0], problem.best_arm[0, :6] + 1)
    state = mp.prompt_state(bandit_family, bandit_family.theta0, grpo=True)
    logits = problem.contexts[0, :6] @ problem.theta0[0]  # (Q, N): the Figure-1 policy
    expected = torch.softmax(logits, -1).gather(-1, problem.best_arm[0, :6, None]).squeeze(-1)
    assert torch.allclose(state.value[0], expected, rtol=1e-10)
    # one-token responses: GRPO's update is ∇J/(σ · 2) = √(J(1 − J)) gap / 2 (every length is 2)
    spread = torch.exp(0.5 * (state.outcomes.log_success + state.outcomes.log_failure)).unsqueeze(-1)
    assert torch.allclose(state.grpo_updates, spread * state.gaps / 2, atol=1e-12)


def test_make_family_is_deterministic_and_rejects_bad_settings(chain):
    again = mp.make_family("chain", [3, 4], n_prompts=5, vocab_size=4, feature_dim=2, lengths=(2, 3, 4))
    assert torch.equal(again.theta0, chain.theta0) and torch.equal(again.answers, chain.answers)
    assert chain.max_lengths.tolist() == [2, 3, 4, 2, 3] and chain.n_params == 2 * 4 + 3 * 4
    random = mp.make_family("chain", [3], n_prompts=5, vocab_size=4, feature_dim=2, answer_rule="random")
    assert random.answers.min() >= 1 and random.answers.max() <= 3
    for change, message in [(dict(kind="tree"), "kind = 'tree' is unknown"),
                            (dict(answer_rule="odd"), "answer_rule = 'odd' is unknown"),
                            (dict(vocab_size=2), "vocab_size = 2 must be an integer ≥ 3"),
                            (dict(lengths=(1,)), "must be integers ≥ 2"),
                            (dict(kind="bandit", lengths=(3,)), "a bandit prompt has one-token responses"),
                            (dict(seeds=[]), "seeds is empty")]:
        arguments = dict(kind="chain", seeds=[0], n_prompts=3, vocab_size=4, feature_dim=2, lengths=(2, 3)) | change
        with pytest.raises(ValueError, match=message):
            mp.make_family(**arguments)


def test_rule_parts_by_their_definitions(chain):
    state = mp.prompt_state(chain, chain.theta0, grpo=True)
    value, failure = state.value.unsqueeze(-1), state.outcomes.log_failure.exp().unsqueeze(-1)
    assert torch.allclose(mp.prompt_parts(state, "dr_grpo", 4), 0.75 * value * failure * state.gaps)
    assert torch.allclose(mp.prompt_parts(state, "safe_step", 4), failure / state.psi1.unsqueeze(-1) * state.gaps)
    assert torch.equal(mp.prompt_parts(state, "grpo", 4), state.grpo_updates)
    with pytest.raises(ValueError, match="needs prompt_state"):
        mp.prompt_parts(mp.prompt_state(chain, chain.theta0), "grpo", 4)
    with pytest.raises(ValueError, match="rule = 'adam' is unknown"):
        mp.prompt_parts(state, "adam", 4)


def test_project_conflicts_by_hand():
    # u1 = (1, 0), u2 = (−1, 1) conflict (⟨u1, u2⟩ = −1): u1 → u1 + u2/2 = (½, ½), u2 → u2 + u1 = (0, 1).
    parts = torch.tensor([[[1.0, 0.0], [-1.0, 1.0], [5.0, 5.0]]], dtype=D)
    selected = torch.tensor([[True, True, False]])
    for order in ([0, 1, 2], [1, 0, 2], [2, 1, 0]):
        projected = mp.project_conflicts(parts, selected, torch.tensor([order]))
        assert torch.allclose(projected[0, :2], torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=D))
        assert torch.equal(projected[0, 2], parts[0, 2])  # not selected: untouched, and never a reference


def test_select_prompts_by_hand():
    value = torch.tensor([[0.1, 0.5, 0.6, 0.95]], dtype=D)
    generator = torch.Generator().manual_seed(0)
    assert mp.select_prompts(value, "all", 4, (0.2, 0.8), generator).all()
    for _ in range(5):  # the band's two prompts come first, whatever the draw
        assert mp.select_prompts(value, "band", 2, (0.2, 0.8), generator).tolist() == [[False, True, True, False]]
        assert mp.select_prompts(value, "uniform", 3, (0.2, 0.8), generator).sum() == 3
    topped = mp.select_prompts(value, "band", 3, (0.2, 0.8), generator)
    assert topped[0, 1] and topped[0, 2] and topped.sum() == 3
    with pytest.raises(ValueError, match="selection = 'greedy' is unknown"):
        mp.select_prompts(value, "greedy", 1, (0.2, 0.8), generator)


@pytest.mark.parametrize("rule", mp.UPDATE_RULES)
def test_training_records_the_update_and_obeys_lemma1_per_prompt(chain, rule):
    run = mp.train(chain, rule, 30.0, 12, torch.Generator().manual_seed(0), group_size=4, record_every=5)
    assert run.recorded_steps.tolist() == [0, 5, 10, 12] and run.value.shape == (4, 2, 5)
    assert run.alignment.shape == (12, 2, 5) and run.step.shape == (12, 2) and run.selected.all()
    assert torch.allclose(run.log_odds_change[:5].sum(0), run.log_odds[1] - run.log_odds[0], atol=1e-12)
    low, high = many_prompts.log_odds_change_interval(run.alignment, run.step, chain.constants())
    assert (low <= run.log_odds_change + 1e-12).all() and (run.log_odds_change <= high + 1e-12).all()
    again = mp.train(chain, rule, 30.0, 12, torch.Generator().manual_seed(0), group_size=4, record_every=5)
    assert torch.equal(again.final_theta, run.final_theta)


def test_training_steps_the_mean_of_the_selected_parts(chain):
    generator = torch.Generator().manual_seed(1)
    run = mp.train(chain, "dr_grpo", 2.0, 1, generator, selection="uniform", prompts_per_step=2, group_size=4)
    state = mp.prompt_state(chain, chain.theta0)
    parts = mp.prompt_parts(state, "dr_grpo", 4)
    expected = chain.theta0 + 2.0 * (parts * run.selected[0].unsqueeze(-1)).sum(1) / 2
    assert torch.allclose(run.final_theta, expected) and run.selected[0].sum(-1).tolist() == [2, 2]
    assert torch.allclose(run.step[0], torch.linalg.vector_norm(expected - chain.theta0, dim=-1))
    assert torch.allclose(run.alignment[0], many_prompts.prompt_alignments(expected - chain.theta0, state.gaps))


@pytest.mark.parametrize("change, message", [
    (dict(rule="adam"), "rule = 'adam' is unknown"), (dict(selection="greedy"), "selection = 'greedy' is unknown"),
    (dict(prompts_per_step=0), "prompts_per_step = 0"), (dict(prompts_per_step=6), "prompts_per_step = 6"),
    (dict(steps=0), "steps = 0"), (dict(group_size=1), "group_size = 1"), (dict(band=(0.8, 0.2)), "band"),
    (dict(step_sizes=-1.0), "must be positive and finite"), (dict(step_sizes=float("nan")), "positive and finite"),
])
def test_train_rejects_bad_settings(chain, change, message):
    arguments = dict(rule="dr_grpo", step_sizes=1.0, steps=2, generator=torch.Generator()) | change
    with pytest.raises(ValueError, match=message):
        mp.train(chain, **arguments)


def test_split_rejects_the_wrong_parameter_count(chain):
    with pytest.raises(ValueError, match="this family has 20"):
        chain.split(torch.zeros(2, 19, dtype=D))
    assert dataclasses.replace(chain, max_lengths=torch.tensor([2] * 5)).n_params == 8


def test_grpo_stays_finite_where_success_saturates(chain):
    """A huge step drives J_q to 1 in float64: GRPO's 1/σ overflows while its weighted sums underflow, and the
    update formed directly is inf · 0 = NaN. In log space every value stays finite and Lemma 1 keeps holding."""
    run = mp.train(chain, "grpo", 1e4, 40, torch.Generator().manual_seed(0), group_size=4)
    assert torch.isfinite(run.final_theta).all() and torch.isfinite(run.log_odds).all()
    assert torch.isfinite(run.alignment).all() and run.log_odds[-1].max() > 30  # saturated: J > 1 − 1e-13
    state = mp.prompt_state(chain, run.final_theta, grpo=True)
    assert torch.isfinite(state.grpo_updates).all()
