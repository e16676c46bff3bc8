"""The paper's objects and bounds, as pure torch functions (the bottom layer: it imports nothing
else of the package).

- :mod:`~rlvr_dynamics.theory.gaps`            J, log-odds, g⁺, g⁻, the Gradient Gap, identity (10), alignment (11),
  Var± (17)
- :mod:`~rlvr_dynamics.theory.estimators`      REINFORCE (4), GRPO (5), Dr. GRPO directions, exact and sampled
- :mod:`~rlvr_dynamics.theory.policies`        linear-softmax bandits and token-level autoregressive policies
- :mod:`~rlvr_dynamics.theory.markov`          the exact forward algorithm for bigram token policies
- :mod:`~rlvr_dynamics.theory.bounds`          every bound: Lemma 1, Theorems 1–4, Corollary 1, (18a), (20)–(22)
- :mod:`~rlvr_dynamics.theory.logit_dynamics`  the companion paper's Lemma 1 and time scales (two-stage dynamics)
- :mod:`~rlvr_dynamics.theory.many_prompts`    Lemma 1 and Theorem 1 per prompt under one shared update (B10–B12)
- :mod:`~rlvr_dynamics.theory.boundary`        pass@k (BD1, BD2), GSPO's sequence-level ratio (BD3, BD4)
"""

import torch

DTYPE = torch.float64
"""The dtype of every theory check on CPU (DESIGN: Numerics)."""
