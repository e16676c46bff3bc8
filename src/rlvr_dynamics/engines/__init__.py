"""Batched simulators of the paper's concrete instances (they import only :mod:`rlvr_dynamics.theory`
and the support modules). Every run is a row of a batch, so a sweep is one tensor program on CPU
or GPU; every engine returns a record whose field names follow one vocabulary
(:mod:`rlvr_dynamics.engines.records`).

- :mod:`~rlvr_dynamics.engines.bandit`          the contextual bandit of Section 5.1 (exact REINFORCE, curriculum band)
- :mod:`~rlvr_dynamics.engines.three_response`  the three-response softmax of Theorem 2 (and Theorem 1, Corollary 1)
- :mod:`~rlvr_dynamics.engines.token_chain`     the token-level bigram chain of Section 4: instances, exact runs
- :mod:`~rlvr_dynamics.engines.token_training`  sampled GRPO / Dr. GRPO / REINFORCE training on the chain
- :mod:`~rlvr_dynamics.engines.softmax_bandit`  the softmax bandit of the two-stage paper (GRPO, GRPO-N, GRPO-P)
- :mod:`~rlvr_dynamics.engines.multi_prompt`    many prompts sharing θ (the prompted chain; the Figure-1 bandit is
  its one-token case): exact per-prompt J, gaps, GRPO updates and prompt-adaptive update rules
"""
