"""The multi-prompt engine: the forward algorithm and every per-prompt quantity against enumeration and
autograd, the rules and selections by hand, and the training loop against the propositions."""

import dataclasses

import pytest
import torch

from rlvr_dynamics.engines import bandit
from rlvr_dynamics.engines import multi_prompt as mp
from rlvr_dynamics.engines.records import VOCABULARY, Record
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


# ----------------------------------------------------------------------------------------------
# Sampled training: GRPO, GRPO-N, GRPO-P, GSPO, GSPO-N
# ----------------------------------------------------------------------------------------------


def _perturbed(family, scale=0.5, seed=0):
    """The family from θ₀ + N(0, scale²) noise: first tokens far from uniform, so the tests see real policies."""
    noise = torch.randn(family.theta0.shape, generator=torch.Generator().manual_seed(seed), dtype=D)
    return dataclasses.replace(family, theta0=family.theta0 + scale * noise)


def _enumerated_groups(family, q):
    """Every response of prompt q as a SampledGroups (the same R responses in every run), and their lengths."""
    policy = TokenPolicy(family.vocab_size, int(family.max_lengths[q]), position_bias=False)
    tokens, lengths = policy.enumerate_responses()
    runs = family.theta0.shape[0]
    mask = torch.arange(tokens.shape[-1]) < lengths.unsqueeze(-1)  # |o| counts the EOS
    shape = (runs, 1) + tuple(tokens.shape)
    return mp.SampledGroups(torch.tensor([q]), tokens.expand(shape), mask.expand(shape),
                            torch.zeros(shape[:-1], dtype=D)), lengths


def test_sequence_log_probs_sum_to_the_forward_algorithm(chain):
    family = _perturbed(chain)
    exact = mp.exact_outcomes(family, family.theta0)
    for q in range(chain.n_prompts):
        groups, lengths = _enumerated_groups(family, q)
        assert torch.equal(groups.lengths[0, 0], lengths)
        sequence = mp.response_token_log_probs(family, family.theta0, groups).sum(-1)[:, 0]  # (B, R): log π(o)
        for run in range(2):
            log_prob, reward, _ = _enumerated(family, family.theta0[run], run, q)  # TokenPolicy: independent
            assert torch.allclose(sequence[run], log_prob, atol=1e-12)
            assert torch.allclose(torch.logsumexp(sequence[run], -1), torch.zeros((), dtype=D), atol=1e-12)
            success = torch.logsumexp(torch.where(reward > 0, sequence[run], -torch.inf), -1)
            assert torch.allclose(success, exact.log_success[run, q], atol=1e-12)


def test_sampled_responses_are_well_formed_and_succeed_at_the_exact_rate(chain):
    family, group = _perturbed(chain), 4000
    groups = mp.sample_responses(family, family.theta0, group, torch.Generator().manual_seed(0))
    assert groups.tokens.shape == (2, 5, group, 4) and groups.rewards.shape == (2, 5, group)
    ends = groups.lengths - 1  # the EOS is the last token of the mask, and the only EOS in it
    assert (groups.tokens.gather(-1, ends.unsqueeze(-1)) == 0).all()
    assert ((groups.tokens == 0) == (~groups.mask | (torch.arange(4) == ends.unsqueeze(-1)))).all()
    assert (groups.lengths <= chain.max_lengths.view(1, -1, 1)).all()
    last = groups.tokens.gather(-1, (ends - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1)
    assert torch.equal(groups.rewards, (last == family.answers.unsqueeze(-1)).to(D))
    # 10 cells of 4000 draws: the frequency lies within 4.5 binomial standard errors of the exact J_q
    value = mp.exact_outcomes(family, family.theta0).log_success.exp()
    error = (groups.rewards.mean(-1) - value).abs() / (value * (1 - value) / group).sqrt()
    assert error.max() < 4.5 and value.min() < 0.3 < value.max()
    again = mp.sample_responses(family, family.theta0, group, torch.Generator().manual_seed(0))
    assert torch.equal(again.tokens, groups.tokens)


def test_one_sampled_step_on_the_bandit_by_hand(bandit_family):
    """G = 2, one success and one failure: r̄ = ½, s = √½ (unbiased), A = ±½/(√½ + 10⁻⁴). A response is
    (arm, EOS) with |o| = 2 and log π(EOS) = 0 (forced), so the objective is ½ Σ_i A_i · ½ log π(a_i) and
    Δθ = α ¼ Σ_i A_i x ⊗ (e_{a_i} − π); GRPO-N keeps the failure's term only, GRPO-P the success's."""
    family = _perturbed(bandit_family)
    only = torch.tensor([False, False, True, False, False, False])  # prompt 2 trains, the others are held out
    seed = next(s for s in range(200) if (mp.sample_responses(
        family, family.theta0, 2, torch.Generator().manual_seed(s), only).rewards.sum(-1) == 1).all())
    groups = mp.sample_responses(family, family.theta0, 2, torch.Generator().manual_seed(seed), only)
    x = family.features[:, 2]  # (B, d)
    bias = torch.tensor([mp.EMPTY_LOGIT, 0, 0, 0, 0], dtype=D)
    policy = torch.softmax(torch.einsum("bd,bdv->bv", x, family.split(family.theta0)[0]) + bias, -1)  # (B, V)
    advantage = 0.5 / (0.5 ** 0.5 + 1e-4)
    terms = {}
    for sign, name in [(1.0, "success"), (0.0, "failure")]:
        arm = groups.tokens[:, 0, :, 0][groups.rewards[:, 0] == sign]  # (B,) the arm of that response
        score = torch.nn.functional.one_hot(arm, 5).to(D) - policy  # e_a − π
        terms[name] = (2 * sign - 1) * advantage / 4 * torch.einsum("bd,bv->bdv", x, score).flatten(1)
    for variant, expected in [("grpo", terms["success"] + terms["failure"]), ("grpo_n", terms["failure"]),
                              ("grpo_p", terms["success"])]:
        run = mp.train_sampled(family, variant, 0.5, 1, torch.Generator().manual_seed(seed), group_size=2,
                               train_prompts=only)
        assert torch.allclose(run.final_theta - family.theta0, 0.5 * expected, atol=1e-12)
        assert run.updating_fraction.tolist() == [[1.0, 1.0] if variant == "grpo" else [0.5, 0.5]]
        assert run.clipped_fraction.tolist() == [[0.0, 0.0]]  # on-policy: every ratio is 1
        assert run.log_success.shape == (2, 2, 6)  # held-out prompts are recorded too
        assert torch.equal(run.log_success[-1], mp.exact_outcomes(family, run.final_theta).log_success)


def test_on_policy_gspo_steps_as_grpo_and_not_with_two_inner_steps(chain):
    """(BD4): at θ = θ_old every ratio is 1, so one inner step of GSPO is GRPO's step (and GSPO-N GRPO-N's);
    the second inner step is off-policy, where the ratios (and GSPO's narrow clip range) differ."""
    family = _perturbed(chain)

    def final(variant, inner_steps):
        return mp.train_sampled(family, variant, 2.0, 1, torch.Generator().manual_seed(3), group_size=6,
                                inner_steps=inner_steps).final_theta

    for token, sequence in [("grpo", "gspo"), ("grpo_n", "gspo_n")]:
        moved = final(token, 1) - family.theta0
        assert moved.abs().max() > 1e-2 and torch.allclose(final(sequence, 1) - family.theta0, moved, atol=1e-12)
        assert (final(sequence, 2) - final(token, 2)).abs().max() > 1e-3
    # runs of one batch sample the same responses whatever their variants: a mixed batch is its rows
    mixed = final(["grpo", "gspo_n"], 2)
    assert torch.equal(mixed[0], final("grpo", 2)[0]) and torch.equal(mixed[1], final("gspo_n", 2)[1])


def test_the_applied_gradient_equals_autograd_through_enumerated_sequences(chain):
    """The engine's step against an independent objective built from TokenPolicy's sequence log-probs:
    on-policy GRPO, (1/QG) Σ A_i log π(o_i)/|o_i|; two inner steps of GSPO, (1/QG) Σ min(s_i A_i, clip(s_i) A_i)
    with s_i = exp((log π_θ(o_i) − log π_old(o_i))/|o_i|) (BD3)."""
    family, group, alpha, clip = _perturbed(chain), 4, 1.5, (0.005, 0.008)
    groups = mp.sample_responses(family, family.theta0, group, torch.Generator().manual_seed(1))
    rewards = groups.rewards
    advantages = (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, correction=1, keepdim=True) + 1e-4)
    enumerations = [TokenPolicy(4, int(t), position_bias=False).enumerate_responses()[0] for t in chain.max_lengths]

    def sequence_log_probs(theta, run):  # (Q, G): log π_θ(o) looked up in the enumeration of each prompt
        rows = []
        for q in range(chain.n_prompts):
            log_prob, _, _ = _enumerated(family, theta, run, q)
            length = int(chain.max_lengths[q])
            found = (groups.tokens[run, q, :, None, :length] == enumerations[q][None]).all(-1)  # (G, R)
            assert (found.sum(-1) == 1).all()
            rows.append(log_prob[found.int().argmax(-1)])
        return torch.stack(rows)

    lengths = groups.lengths.to(D)
    grpo = mp.train_sampled(family, "grpo", alpha, 1, torch.Generator().manual_seed(1), group_size=group)
    gspo = mp.train_sampled(family, "gspo", alpha, 1, torch.Generator().manual_seed(1), group_size=group,
                            inner_steps=2, sequence_epsilon=clip)
    assert gspo.clipped_fraction.min() > 0  # the clip binds on some responses of the second inner step
    for run in range(2):
        point = family.theta0[run].clone().requires_grad_(True)
        objective = (advantages[run] * sequence_log_probs(point, run) / lengths[run]).mean()
        (gradient,) = torch.autograd.grad(objective, point)
        assert torch.allclose(grpo.final_theta[run], family.theta0[run] + alpha * gradient, atol=1e-12)
        old, theta = sequence_log_probs(family.theta0[run], run).detach(), family.theta0[run]
        for _ in range(2):
            point = theta.clone().requires_grad_(True)
            ratio = ((sequence_log_probs(point, run) - old) / lengths[run]).exp()
            objective = torch.minimum(ratio * advantages[run],
                                      ratio.clamp(1 - clip[0], 1 + clip[1]) * advantages[run]).mean()
            theta = theta + alpha * torch.autograd.grad(objective, point)[0]
        assert torch.allclose(gspo.final_theta[run], theta, atol=1e-12)


@pytest.mark.parametrize("sequence", [False, True], ids=["token", "sequence"])
def test_clipped_tokens_carry_no_gradient(chain, sequence):
    """Off-policy (θ = θ_old + noise), detaching the clipped tokens' log-probs leaves the gradient as it was;
    detaching the unclipped ones changes it."""
    family = _perturbed(chain)
    groups = mp.sample_responses(family, family.theta0, 6, torch.Generator().manual_seed(2))
    advantages = mp.filtered_group_advantages(groups.rewards, ["grpo", "grpo"])
    old = mp.response_token_log_probs(family, family.theta0, groups)
    point = (family.theta0 + 0.2 * torch.randn(family.theta0.shape, generator=torch.Generator().manual_seed(5),
                                               dtype=D)).requires_grad_(True)
    new = mp.response_token_log_probs(family, point, groups)
    levels = torch.tensor([sequence, sequence])

    def gradient(log_probs):
        objective, clipped = mp.sampled_objective(log_probs, old, groups.mask, advantages, levels, (0.1, 0.1),
                                                  (0.01, 0.01))
        return torch.autograd.grad(objective.sum(), point, retain_graph=True)[0], clipped

    full, clipped = gradient(new)
    updating = groups.mask & (advantages != 0).unsqueeze(-1)
    assert clipped.any() and (clipped & updating).sum() < updating.sum()  # some clipped, some not
    assert torch.allclose(gradient(torch.where(clipped, new.detach(), new))[0], full, atol=1e-14)
    assert not torch.allclose(gradient(torch.where(updating & ~clipped, new.detach(), new))[0], full)


def test_a_large_step_clips_gspo_on_its_second_inner_step(chain):
    run = mp.train_sampled(_perturbed(chain), ["gspo", "grpo"], 5.0, 3, torch.Generator().manual_seed(0),
                           group_size=6, inner_steps=2)
    assert (run.clipped_fraction[:, 0] > 0).all() and (run.clipped_fraction <= 1).all()
    once = mp.train_sampled(_perturbed(chain), "gspo", 5.0, 3, torch.Generator().manual_seed(0), group_size=6)
    assert (once.clipped_fraction == 0).all()  # on-policy: nothing to clip


def test_sampled_training_records_and_is_deterministic(chain):
    arguments = dict(family=_perturbed(chain), variants=["gspo_n", "grpo_p"], step_size=torch.tensor([1.0, 2.0]),
                     steps=7, group_size=4, inner_steps=2, record_every=3,
                     train_prompts=torch.tensor([True, True, False, True, True]))
    run = mp.train_sampled(generator=torch.Generator().manual_seed(4), **arguments)
    again = mp.train_sampled(generator=torch.Generator().manual_seed(4), **arguments)
    for field in dataclasses.fields(run):
        assert torch.equal(getattr(run, field.name), getattr(again, field.name)), field.name
    assert run.recorded_steps.tolist() == [0, 3, 6, 7] and run.log_success.shape == run.log_failure.shape == (4, 2, 5)
    assert run.clipped_fraction.shape == run.updating_fraction.shape == (7, 2) and run.step_size.tolist() == [1, 2]
    assert torch.allclose(torch.logaddexp(run.log_success, run.log_failure), torch.zeros((), dtype=D), atol=1e-12)
    final = mp.exact_outcomes(arguments["family"], run.final_theta)
    assert torch.equal(run.log_failure[-1], final.log_failure)
    assert issubclass(mp.SampledRun, Record) and mp.SampledRun.__dataclass_params__.frozen
    assert {field.name for field in dataclasses.fields(mp.SampledRun)} <= set(VOCABULARY)


@pytest.mark.parametrize("change, message", [
    (dict(variants="ppo"), "variant = 'ppo' is unknown: allowed 'grpo', 'grpo_n', 'grpo_p', 'gspo', 'gspo_n'"),
    (dict(variants=["grpo"] * 3), "variants: 3 values for 2 runs"),
    (dict(inner_steps=0), "inner_steps = 0"), (dict(inner_steps=1.5), "inner_steps = 1.5"),
    (dict(group_size=1), "group_size = 1"), (dict(steps=0), "steps = 0"), (dict(record_every=0), "record_every = 0"),
    (dict(step_size=-1.0), "must be positive and finite"), (dict(step_size=float("inf")), "positive and finite"),
    (dict(epsilon=(1.0, 0.2)), "epsilon = \\(1.0, 0.2\\) needs"), (dict(epsilon=(0.2, -0.1)), "needs 0 ≤ ε_low"),
    (dict(sequence_epsilon=(3e-4,)), "sequence_epsilon = \\(0.0003,\\) must be a pair"),
    (dict(train_prompts=torch.ones(4, dtype=torch.bool)), "train_prompts must be a \\(5,\\) bool tensor"),
    (dict(train_prompts=torch.ones(5)), "train_prompts must be"),
    (dict(train_prompts=torch.zeros(5, dtype=torch.bool)), "selecting at least one prompt"),
])
def test_train_sampled_rejects_bad_settings(chain, change, message):
    arguments = dict(variants="grpo", step_size=1.0, steps=2, generator=torch.Generator()) | change
    with pytest.raises(ValueError, match=message):
        mp.train_sampled(chain, **arguments)
