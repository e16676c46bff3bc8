"""Where each result lives: one table mapping every result the book states — its number in the
paper (or the book's own name for it) and the label under which a chapter states it — to the
function that implements it and the test that fails when it is wrong.

The table is the one home of that mapping: ``tests/book/test_result_index.py`` checks that every
function and test exists, that every label is defined in its chapter and that every docstring opens
with the result's number; the book renders it as the page *Where each result lives*
(:func:`render_page`, generated when the book is staged), whose cross-references the strict build
resolves. Each link shows what is displayed at its target — "(10)", "Theorem 4", "Proposition B5" —
(:mod:`rlvr_dynamics.book.numbering`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rlvr_dynamics.book import numbering

PAGE = "book/result_index.md"
TESTS = "tests/"


@dataclass(frozen=True)
class Result:
    """One result the book states.

    Attributes:
        number: the paper's number for it ("eq. (10)", "Theorem 1(b)"; "Yao et al. Lemma 1" for the
            companion paper; "book" for a result of the book's own).
        mark: the text the implementation's docstring opens with (its first line contains it).
        statement: one line saying what it is.
        chapter: the notebook that states and checks it.
        label: the MyST label of its statement in that notebook (an equation or a theorem-like box),
            or "" when the chapter states it in prose.
        implementation: dotted path of the function (or constant's owner) that implements it.
        test: the test that fails when the implementation is wrong, as ``path::name`` below tests/.
    """

    number: str
    mark: str
    statement: str
    chapter: str
    label: str
    implementation: str
    test: str


RESULTS: tuple[Result, ...] = (
    # --- Section 2–3.1: the set-up and the Gradient Gap (chapter gradient_gap)
    Result("eq. (2)", "(2)", "success rate J = E[r*], one prompt", "gradient_gap", "gg-objective",
           "rlvr_dynamics.theory.gaps.success_probability",
           "theory/test_gaps.py::TestTwoArmByHand::test_success_probability"),
    Result("eq. (3)", "(3)", "generic update θ ← θ + η_k w_k: direction and effective step", "gradient_gap",
           "gg-update", "rlvr_dynamics.theory.estimators.normalize_direction",
           "theory/test_estimators.py::test_normalize_direction"),
    Result("eq. (4)", "(4)", "REINFORCE: the policy gradient with the exact baseline", "gradient_gap",
           "gg-reinforce", "rlvr_dynamics.theory.gaps.policy_gradient",
           "theory/test_estimators.py::test_reinforce_two_arm_by_hand"),
    Result("eq. (5)", "(5)", "GRPO's population update (std and length normalization)", "gradient_gap", "gg-grpo",
           "rlvr_dynamics.theory.estimators.expected_direction",
           "theory/test_estimators.py::test_grpo_general_lengths_against_numpy"),
    Result("eqs. (6)–(7)", "(7)", "the partition and the conditional policies π±", "gradient_gap",
           "gg-conditional", "rlvr_dynamics.theory.gaps.conditional_log_policy",
           "theory/test_gaps.py::TestTwoArmByHand::test_conditional_log_policy"),
    Result("eq. (8)", "(8)", "the conditional score means g⁺, g⁻", "gradient_gap", "gg-gpm",
           "rlvr_dynamics.theory.gaps.conditional_score_means",
           "theory/test_gaps.py::TestTwoArmByHand::test_conditional_score_means"),
    Result("eq. (9)", "(9)", "the Gradient Gap g⁺ − g⁻", "gradient_gap", "gg-def-gap",
           "rlvr_dynamics.theory.gaps.gradient_gap", "theory/test_gaps.py::TestTwoArmByHand::test_gradient_gap"),
    Result("eq. (10)", "(10)", "the Gradient-Gap identity ∇J = J(1 − J)(g⁺ − g⁻)", "gradient_gap",
           "gg-prop-identity", "rlvr_dynamics.theory.gaps.policy_gradient_from_gap",
           "theory/test_gaps.py::test_identity_on_random_token_policies"),
    Result("eq. (11)", "(11)", "the gap alignment Δμ = w · (g⁺ − g⁻)", "gradient_gap", "gg-alignment",
           "rlvr_dynamics.theory.gaps.gap_alignment", "theory/test_gaps.py::TestTwoArmByHand::test_gap_alignment"),
    Result("book", "Plug-in", "the sampled right-hand side of (10) and its n/(n − 1) correction", "gradient_gap",
           "", "rlvr_dynamics.chapters.gradient_gap.monte_carlo_gradient",
           "chapters/test_gradient_gap.py::test_monte_carlo_gradient_is_plug_in_identity"),
    Result("book", "E[(1/2)", "the exact mean of the n = 2 plug-in estimate, (1 − 1/2)∇J", "gradient_gap", "",
           "rlvr_dynamics.chapters.gradient_gap.exact_pair_estimator_mean",
           "chapters/test_gradient_gap.py::test_monte_carlo_study_is_seeded_and_holds_on_a_small_instance"),
    # --- Section 3: trajectory-level theory (chapter trajectory_theory)
    Result("Assumption 1(a), eq. (12)", "(12)", "score bound G_o = √2‖x‖ of the linear-softmax bandit",
           "trajectory_theory", "tt-constants", "rlvr_dynamics.theory.bounds.bandit_score_bound",
           "theory/test_bounds.py::test_bandit_score_bound_holds_and_is_approached"),
    Result("Assumption 1(b), eq. (13)", "(13)", "smoothness L_o = ‖x‖²/2 of the linear-softmax bandit",
           "trajectory_theory", "tt-constants", "rlvr_dynamics.theory.bounds.bandit_smoothness_bound",
           "theory/test_bounds.py::test_bandit_smoothness_bound_holds_and_is_approached"),
    Result("Lemma 1, eq. (16)", "Lemma 1", "one step moves the log-odds by Δμη up to (L_o + 8G_o²)η²",
           "trajectory_theory", "tt-lemma1", "rlvr_dynamics.theory.bounds.lemma1_remainder_bound",
           "theory/test_bounds.py::test_lemma1_remainder_bounds_the_three_response_log_odds_and_a_too_small_constant_does_not"),
    Result("Theorem 1(b), eq. (15a)", "(15a)", "the largest step of Theorem 1(b), [Δμ]₊/(2(L_o + 8G_o²))",
           "trajectory_theory", "tt-theorem1", "rlvr_dynamics.theory.bounds.convergence_step_bound",
           "theory/test_bounds.py::test_convergence_step_bound"),
    Result("Theorem 1(b), eq. (15b)", "(15b)", "J(K) ≥ J₀/(J₀ + (1 − J₀)e^{−M(K)/2})", "trajectory_theory",
           "tt-theorem1", "rlvr_dynamics.theory.bounds.convergence_lower_bound",
           "theory/test_bounds.py::test_convergence_lower_bound"),
    Result("Theorem 1(a)", "Theorem 1(a)", "stagnation when M(K) and Σ η² stay bounded", "trajectory_theory",
           "tt-theorem1", "rlvr_dynamics.theory.bounds.stagnation_upper_bound",
           "theory/test_bounds.py::test_stagnation_upper_bound"),
    Result("Corollary 1", "Corollary 1", "the largest constant step under a uniform gap", "trajectory_theory",
           "tt-corollary1", "rlvr_dynamics.theory.bounds.corollary1_step",
           "theory/test_bounds.py::test_corollary1_step_and_bound_by_hand"),
    Result("Corollary 1", "Corollary 1", "linear convergence 1 − J_K ≤ (1 − J₀)/J₀ · e^{−ΔμηK/2}",
           "trajectory_theory", "tt-corollary1", "rlvr_dynamics.theory.bounds.corollary1_log_failure_bound",
           "theory/test_bounds.py::test_corollary1_holds_on_the_uniform_gap_and_fails_above_its_rate"),
    Result("eq. (17)", "(17)", "the conditional variances Var± of the second-order expansion", "trajectory_theory",
           "tt-expansion", "rlvr_dynamics.theory.gaps.conditional_variances",
           "theory/test_gaps.py::test_conditional_variances_against_numpy"),
    Result("Theorem 2", "Theorem 2", "the step window [60Δμ/(L_o + G_o²), 1/(2√(L_o + G_o²))]",
           "trajectory_theory", "tt-theorem2", "rlvr_dynamics.theory.bounds.theorem2_window",
           "engines/test_three_response.py::test_theorem2_instance_collapses_in_the_window_and_not_below_the_safe_step"),
    Result("Theorem 2", "Theorem 2", "the instance: aligned at every step, yet J falls", "trajectory_theory",
           "tt-instance", "rlvr_dynamics.engines.three_response.direction",
           "engines/test_three_response.py::test_overshoot_raises_the_minority_wrong_response_and_benign_the_majority"),
    # --- Section 4: token-level theory (chapter token_theory)
    Result("Assumption 2", "Assumption 2", "the token score's suprema G_p = √2, L_p = ½, measured",
           "token_theory", "tok-assumption2", "rlvr_dynamics.chapters.token_theory.measured_constants",
           "chapters/test_token_theory.py::test_measured_constants_approach_the_suprema_from_below"),
    Result("Assumption 3", "Assumption 3", "the ψ₁ norm T_ψ₁ of the response length", "token_theory",
           "tok-assumption3", "rlvr_dynamics.theory.markov.psi1_norm",
           "theory/test_markov.py::test_psi1_of_point_masses_and_a_two_point_law_by_hand"),
    Result("eq. (22)", "(22)", "the refined one-step inequality of the log-odds", "token_theory", "tok-ineq22",
           "rlvr_dynamics.theory.bounds.log_odds_change_bound",
           "engines/test_token_chain.py::test_inequality_22_holds_at_constant_steps"),
    Result("Theorem 3, eq. (18a)", "(18a)", "the safe step of Theorem 3", "token_theory", "",
           "rlvr_dynamics.theory.bounds.theorem3_step_bound",
           "engines/test_token_chain.py::test_theorem3_steps_equal_the_bound_and_inequality_22_holds"),
    Result("Theorem 4, eq. (19)", "(19)", "the constant steps at which an aligned direction still fails",
           "token_theory", "tok-thm4", "rlvr_dynamics.theory.bounds.theorem4_window",
           "theory/test_bounds.py::test_theorem4_window_and_largest_alignment_by_hand"),
    Result("Theorem 4", "Theorem 4", "the adversarial direction along the most negative curvature",
           "token_theory", "tok-thm4-instance", "rlvr_dynamics.engines.token_chain.overshoot_candidates",
           "engines/test_token_chain.py::test_overshoot_candidates_are_unit_aligned_and_negatively_curved"),
    Result("eq. (20)", "(20)", "effective steps of GRPO and of Dr. GRPO / REINFORCE", "token_theory", "",
           "rlvr_dynamics.theory.bounds.effective_step",
           "theory/test_bounds.py::test_effective_and_safe_steps_by_hand"),
    Result("eq. (21)", "(21)", "the safe step's scaling Δμ(1 − J)/T_ψ₁", "token_theory", "",
           "rlvr_dynamics.theory.bounds.safe_step", "theory/test_bounds.py::test_effective_and_safe_steps_by_hand"),
    Result("book", "Outcomes", "J, the log-odds and the length law exactly, by the forward algorithm",
           "token_theory", "tok-family", "rlvr_dynamics.theory.markov.outcomes",
           "theory/test_markov.py::test_outcomes_and_gradient_gap_equal_enumeration"),
    # --- Section 5: experiments (chapters figure1, figure2)
    Result("Section 5.1", "Section 5.1", "exact REINFORCE on the contextual bandit with the band curriculum",
           "figure1", "f1-update", "rlvr_dynamics.engines.bandit.simulate",
           "engines/test_bandit.py::test_simulate_equals_numpy_reference"),
    Result("book", "Gap", "closed forms of the linear-softmax bandit: g± = x ⊗ (π± − π)", "figure1",
           "f1-closed-forms", "rlvr_dynamics.theory.policies.bandit_gradient_gap",
           "theory/test_policies.py::test_bandit_closed_forms_equal_generic_gaps"),
    Result("Section 5.2", "Both sides", "one prompt's GRPO direction is its sampled Gradient Gap, scaled",
           "figure2", "f2-identity", "rlvr_dynamics.lm.grpo.group_identity_sides",
           "lm/test_grpo.py::test_group_direction_identity"),
    Result("Corollary 1 (form)", "Corollary 1", "accuracy logistic in the cumulative gap: the fit", "figure2",
           "f2-cumulative", "rlvr_dynamics.chapters.figure2.logistic_fit",
           "chapters/test_figure2.py::test_logistic_fit_recovers_known_parameters"),
    Result("book", "Gap or clock", "held-out prediction of accuracy from the cumulative gap or from the clock",
           "figure2", "", "rlvr_dynamics.chapters.figure2.heldout_fits",
           "chapters/test_figure2.py::test_heldout_fits_pick_the_variable_accuracy_is_a_function_of"),
    Result("Theorem 1(b), per prompt", "Theorem 1(b) per prompt", "one prompt's log-odds change against its own "
           "M_q(k) on a language model", "figure2", "", "rlvr_dynamics.chapters.figure2.prompt_slopes",
           "chapters/test_figure2.py::test_prompt_slopes_by_hand"),
    Result("eq. (12), per prompt", "(12)", "η_k Δμ_q(k) = ⟨u_k, ḡ⁺_q − ḡ⁻_q⟩ of the applied update, by forward mode",
           "figure2", "", "rlvr_dynamics.lm.prompt_tracking.outcome_inner_products",
           "lm/test_prompt_tracking.py::test_prompt_tracker_records_successes_and_the_inner_products_autograd_gives"),
    # --- the companion paper (chapter two_stage)
    Result("Yao et al. Lemma 1", "Lemma 1", "the logit update of one sampled action", "two_stage", "ts-lemma1",
           "rlvr_dynamics.theory.logit_dynamics.logit_update",
           "theory/test_logit_dynamics.py::test_lemma1_matches_autograd_and_hand_values"),
    Result("book, (TS2)", "(TS2)", "the first-order probability change of softmax", "two_stage",
           "ts-probability-change", "rlvr_dynamics.theory.logit_dynamics.first_order_probability_change",
           "theory/test_logit_dynamics.py::test_first_order_probability_change_is_the_softmax_jacobian"),
    Result("Yao et al. Theorem 1", "Their Theorem 1", "the expected logit update of a group step, exactly",
           "two_stage", "ts-theorem1", "rlvr_dynamics.engines.softmax_bandit.expected_logit_update",
           "engines/test_softmax_bandit.py::test_expected_update_equals_enumeration_of_every_group"),
    Result("book, (TS5)", "(TS5)", "Dr. GRPO's expected update (1 − 1/G)∇_z J", "two_stage", "ts-dr-grpo",
           "rlvr_dynamics.engines.softmax_bandit.dr_grpo_expected_update",
           "engines/test_softmax_bandit.py::test_dr_grpo_closed_form_and_zero_sum"),
    Result("book, (TS6)", "(TS6)", "the exploration-stage rate of log(π_O/π_H)", "two_stage", "ts-rate",
           "rlvr_dynamics.theory.logit_dynamics.exploration_rate",
           "theory/test_logit_dynamics.py::test_exploration_rate_formula"),
    Result("book, (TS7)", "(TS7)", "when the better action starts to grow under std-scaled GRPO", "two_stage",
           "ts-onset", "rlvr_dynamics.theory.logit_dynamics.exploration_onset_ratio",
           "engines/test_softmax_bandit.py::test_two_stage_shape_on_the_mean_field_path"),
    # --- beyond the paper: many prompts under one shared update (chapter many_prompts)
    Result("book, (MP1)", "eq. (11) per prompt", "every prompt's alignment with one shared update", "many_prompts",
           "mp-alignment", "rlvr_dynamics.theory.many_prompts.prompt_alignments",
           "theory/test_many_prompts.py::test_prompt_alignments_by_hand"),
    Result("book, Proposition B10", "B10", "Lemma 1 per prompt: the interval of every prompt's log-odds change",
           "many_prompts", "mp-shared-step", "rlvr_dynamics.theory.many_prompts.log_odds_change_interval",
           "theory/test_many_prompts.py::test_log_odds_change_interval_by_hand"),
    Result("book, Proposition B10(b)", "B10(b)", "the step safe for every prompt, min_q Δμ_q/(2C_q)", "many_prompts",
           "mp-shared-step", "rlvr_dynamics.theory.many_prompts.shared_safe_step",
           "theory/test_many_prompts.py::test_thresholds_and_spread_by_hand"),
    Result("book, (MP2)", "B11", "Σ_q c_qΔμ_q = ‖u‖ for a weighted sum of gaps", "many_prompts", "mp-identity",
           "rlvr_dynamics.theory.many_prompts.weighted_alignment_identity",
           "theory/test_many_prompts.py::test_weighted_alignment_identity_by_hand_and_on_random_gaps"),
    Result("book, Proposition B11", "B11", "which prompts a weighted update opposes", "many_prompts", "mp-opposed",
           "rlvr_dynamics.theory.many_prompts.opposed_prompts",
           "theory/test_many_prompts.py::test_opposed_prompts_is_the_sign_of_the_alignment"),
    Result("book, (MP3)", "B12", "Theorem 1(a) per prompt: the log-odds ceiling of a stuck prompt", "many_prompts",
           "mp-ceiling", "rlvr_dynamics.theory.many_prompts.stuck_log_odds_ceiling",
           "theory/test_many_prompts.py::test_stuck_ceiling_and_batch_ceiling_by_hand"),
    Result("book", "Every prompt's outcomes", "each prompt's J, gap and GRPO update in the prompted chain, exactly",
           "many_prompts", "", "rlvr_dynamics.engines.multi_prompt.prompt_state",
           "engines/test_multi_prompt.py::test_every_prompts_gap_and_grpo_update_equal_autograd_through_enumeration"),
    Result("book", "PCGrad", "gradient surgery on the prompts' parts (Yu et al. 2020)", "many_prompts", "",
           "rlvr_dynamics.engines.multi_prompt.project_conflicts",
           "engines/test_multi_prompt.py::test_project_conflicts_by_hand"),
    Result("book", "The ``\"safe_step\"`` weight", "the safe-step rule as a TRL loss weighting", "many_prompts", "",
           "rlvr_dynamics.lm.grpo.safe_step_weights", "lm/test_grpo.py::test_safe_step_weights_by_hand"),
    # --- beyond the paper: the capability boundary (chapter boundary)
    Result("book, (BD1)", "(BD1)", "pass@k = 1 − (1 − J)^k from log(1 − J)", "boundary", "bd-pass",
           "rlvr_dynamics.theory.boundary.pass_at_k",
           "theory/test_boundary.py::test_pass_at_k_is_one_minus_the_chance_that_every_sample_fails"),
    Result("book, (BD2)", "(BD2)", "the unbiased pass@k estimator of Chen et al. (2021)", "boundary", "bd-estimator",
           "rlvr_dynamics.theory.boundary.pass_at_k_unbiased",
           "theory/test_boundary.py::test_unbiased_estimator_has_the_exact_pass_at_k_as_its_mean"),
    Result("book, (BD3)", "(BD3)", "GSPO's sequence-level importance ratio (Zheng et al. 2025)", "boundary", "bd-gspo",
           "rlvr_dynamics.theory.boundary.log_importance_ratios",
           "theory/test_boundary.py::test_sequence_ratio_is_the_geometric_mean_of_the_token_ratios"),
    Result("book, Proposition B13", "(BD4)", "on-policy, GSPO's update is GRPO's", "boundary", "bd-identity",
           "rlvr_dynamics.chapters.boundary.on_policy_identity",
           "theory/test_boundary.py::test_on_policy_gspo_and_grpo_have_the_same_gradient_BD4"),
    Result("book", "sampled trainings", "sampled GRPO, GRPO-N, GRPO-P, GSPO and GSPO-N on many prompts with exact J_q",
           "boundary", "", "rlvr_dynamics.engines.multi_prompt.train_sampled",
           "engines/test_multi_prompt.py::test_the_applied_gradient_equals_autograd_through_enumerated_sequences"),
)


def _escape(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]<>|$~])", r"\\\1", text)


def label_kinds(notebook_sources: dict[str, str]) -> dict[str, str]:
    """label → ``"ref"`` (a tagged display equation) or ``"prf:ref"`` (a theorem-like box), from the
    chapters' MyST sources (notebook name → text)."""
    return {label: role for label, (role, _) in numbering.reference_names(notebook_sources).items()}


def render_page(results: Sequence[Result], notebook_sources: dict[str, str], titles: dict[str, str]) -> str:
    """The MyST page *Where each result lives*, one section per chapter (in book order) listing its
    results; its cross-references to the statements are resolved by the strict build."""
    names = numbering.reference_names(notebook_sources)
    lines = [
        "# Where each result lives",
        "",
        "Every result the book states, by its number in the paper (or, marked *book*, a result of the book's "
        "own), with where a chapter states it, the function that implements it and the test that fails when "
        "that function is wrong. The page is generated from `rlvr_dynamics.book.result_index`, whose test "
        "checks that every function, test and label exists and that every implementation's docstring opens "
        "with the result's number. Code paths are under `src/rlvr_dynamics/`, tests under `tests/`.",
        "",
    ]
    for chapter, title in titles.items():
        chapter_results = [r for r in results if r.chapter == chapter]
        if not chapter_results:
            continue
        lines += [f"## {_escape(title)}", "", f"Chapter: {{doc}}`../notebooks/{chapter}`.", ""]
        for result in chapter_results:
            where = f" ({numbering.link(result.label, names)})" if result.label in names else ""
            module, _, name = result.implementation.removeprefix("rlvr_dynamics.").rpartition(".")
            test_file, _, test_name = result.test.partition("::")
            lines += [f"- **{_escape(result.number)}**: {_escape(result.statement)}{where}. "
                      f"Code: `{name}` in `{module.replace('.', '/')}.py`. "
                      f"Test: `{test_name}` in `{test_file}`.", ""]
    return "\n".join(lines)


def write_page(site: Path, root: Path) -> Path:
    """Render the page into the staged book ``site`` from the chapters' sources under ``root``."""
    from rlvr_dynamics.book.registry import NOTEBOOKS
    from rlvr_dynamics.files import write_bytes_atomic

    sources = {name: (root / spec.source).read_text(encoding="utf-8") for name, spec in NOTEBOOKS.items()}
    titles = {name: spec.title for name, spec in NOTEBOOKS.items()}
    return write_bytes_atomic(Path(site) / PAGE, render_page(RESULTS, sources, titles).encode("utf-8"))
