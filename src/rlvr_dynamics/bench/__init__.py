"""The benchmarks, run as ``rlvr-book bench`` (the batched bandit engine against per-run loops) and
``rlvr-book bench-lm`` (the cost of gradient-gap tracking in TRL GRPO)."""
