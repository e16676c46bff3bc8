"""Fixtures of the benchmark tests."""

import pytest


@pytest.fixture
def engine_results():
    """A token-chain and a two-stage sweep result as rlvr_dynamics.bench.engines records them: (chain, stage)."""
    chain = {"runs": 64, "steps": 100, "vocabulary": 6, "length": 64, "batched_s": 3.0, "one_run_at_a_time_s": 30.0,
             "speedup_vs_one_run_at_a_time": 10.0, "max_abs_value_difference": 0.0}
    stage = {"runs": 256, "steps": 3000, "group_size": 8, "sampled_batched_s": 0.5, "expected_batched_s": 0.7,
             "sampled_one_run_at_a_time_s": 50.0, "expected_one_run_at_a_time_s": 70.0,
             "sampled_speedup_vs_one_run_at_a_time": 100.0, "expected_speedup_vs_one_run_at_a_time": 100.0,
             "expected_max_abs_value_difference": 1e-16}
    return chain, stage
