"""The language-model stack of Section 5.2 (beside the engines; it imports no other layer):
generated and GSM8K-format problems (:mod:`~rlvr_dynamics.lm.task`), a tokenizer and Qwen2-
architecture models built in code or loaded from local files (:mod:`~rlvr_dynamics.lm.model`),
padded log-probabilities and seeded sampling (:mod:`~rlvr_dynamics.lm.scoring`), the supervised
warm-up (:mod:`~rlvr_dynamics.lm.warmup`), TRL GRPO with gradient-gap tracking
(:mod:`~rlvr_dynamics.lm.grpo`) and one experiment from data to runs (:mod:`~rlvr_dynamics.lm.experiment`).
"""
