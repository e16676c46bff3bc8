"""Tests of rlvr_dynamics.bench.engines: the token-chain and two-stage sweeps agree with their runs one at a
time, the report prints every figure, and the largest-batch search stops where it should."""

from __future__ import annotations

import torch

from rlvr_dynamics.bench import engines

CPU = torch.device("cpu")


def test_the_token_chain_sweep_equals_its_runs_one_at_a_time():
    result = engines.token_chain_workload(CPU, instances=1, steps=3, baseline_runs=3)
    assert result["runs"] == len(engines.TOKEN_STEP_SIZES)
    assert result["max_abs_value_difference"] < 1e-12 and result["batched_s"] > 0
    # the sweep is not vacuous: J moves, and by different amounts at different step sizes
    run = engines.run_token_chain(engines.token_chain_problem(1), steps=3)
    moved = (run.value[-1] - run.value[0]).abs()
    assert moved.min() > 0 and moved.max() > 10 * moved.min()


def test_the_two_stage_sweep_times_both_dynamics_and_the_expected_one_equals_a_single_run():
    result = engines.two_stage_workload(CPU, runs=4, steps=20, baseline_runs=1)
    assert result["expected_max_abs_value_difference"] < 1e-12
    assert all(result[f"{d}_batched_s"] > 0 and result[f"{d}_one_run_at_a_time_s"] > 0
               for d in ("sampled", "expected"))


def test_largest_within_doubles_until_the_budget_or_memory_runs_out():
    assert engines.largest_within(1.0, lambda runs: runs / 64, 8) == {"runs": 64, "seconds": 1.0}
    assert engines.largest_within(1.0, lambda runs: 2.0, 8) is None

    def out_of_memory(runs):
        if runs > 16:
            raise torch.OutOfMemoryError("no room")
        return 0.1

    assert engines.largest_within(1.0, out_of_memory, 8) == {"runs": 16, "seconds": 0.1}


def test_the_report_prints_both_engines_on_cpu_and_cuda(engine_results):
    chain, stage = engine_results
    lines = "\n".join(engines.report_lines({"token_chain": chain, "two_stage": stage}, "CPU"))
    for expected in ("Token chain (CPU): 64 exact runs", "ratio 10.0x", "sampled  batched            0.50 s",
                     "(ratio 100.0x)", "max |ΔJ| batched vs alone 1.0e-16"):
        assert expected in lines, expected
    cuda = {"token_chain": chain, "two_stage": stage, "budget_s": 10.0,
            "token_chain_largest_within_budget": {"runs": 4096, "seconds": 8.0},
            "two_stage_largest_within_budget": None}
    lines = "\n".join(engines.report_lines(cuda, "CUDA, H200"))
    assert "largest token chain sweep within 10 s: {'runs': 4096, 'seconds': 8.0}" in lines
    assert "largest two stage sweep within 10 s: None" in lines

