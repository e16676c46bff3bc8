"""Tests of rlvr_dynamics.bench.bandit (``rlvr-book bench``): the workload is checked against the NumPy
loop, the report prints every figure, and bad options are one line and exit 2 before anything runs."""

from __future__ import annotations

import argparse

import pytest

from rlvr_dynamics.bench import bandit as bench
from rlvr_dynamics.book.cli import main


def test_the_figure1_workload_agrees_with_the_numpy_loop_on_a_short_run():
    result = bench.figure1_workload(steps=25)
    assert result["max_abs_value_difference"] < 1e-12 and result["engine_s"] > 0 and result["speedup"] > 0


def test_report_prints_each_timing_and_ratio(engine_results):
    sweep = {"configurations": 64, "batched_float64_s": 40.0, "batched_float32_s": 20.0, "numpy_loop_s": 400.0,
             "baseline_runs_timed": 4, "engine_one_run_at_a_time_s": 80.0, "compiled_unavailable": "no compiler",
             "max_abs_value_difference_vs_numpy": {"float64": 1e-15, "float32": 2e-6},
             "speedup_float64_vs_numpy_loop": 10.0, "speedup_float32_vs_numpy_loop": 20.0,
             "speedup_float64_vs_engine_one_run_at_a_time": 2.0, "speedup_float32_vs_engine_one_run_at_a_time": 4.0,
             "exp_floor_float64_s": 16.0, "exp_floor_float32_s": 8.0, "floor_ratio_float64": 2.5,
             "floor_ratio_float32": 2.5}
    results = {"machine": {"processor": "x86_64", "cpu_count": 2, "torch_threads": 2},
               "figure1": {"engine_s": 1.4, "numpy_loop_s": 7.8, "speedup": 5.6, "max_abs_value_difference": 0.0},
               "sweep": sweep}
    text = bench.report(results)
    assert "Token chain" not in text  # a record from before the engine sweeps
    chain, stage = engine_results
    assert "Token chain (CPU): 64 exact runs" in bench.report({**results, "token_chain": chain, "two_stage": stage})
    for expected in ("ratio 5.6x", "float64 10.0x, float32 20.0x", "float32 4.0x", "torch.compile unavailable",
                     "float32 2.0e-06", "float32 8.00 s", "ratio to the floor:      float64 2.5x, float32 2.5x"):
        assert expected in text, expected


def test_a_gpu_only_record_reports_its_cuda_sweeps_and_the_bandwidth_they_reach():
    cuda = {"device_name": "NVIDIA H200", "sweep64_float64_s": 2.0, "sweep64_float32_s": 1.5,
            "sweep64_float32_compiled_s": 0.25, "sweep64_float64_compiled_s": 0.4,
            "largest_sweep_within_10s": {"configurations": 2048, "seconds": 7.0, "dtype": "float32"},
            "goal_sweep": {"configurations": 10_000, "seconds": 4.0, "dtype": "float32", "compiled": True,
                           "bytes_per_second": 2.4e12},
            "peak_memory_bandwidth": 4.8e12, "bandwidth_fraction": 0.5}
    text = bench.report({"machine": {"processor": "x86_64", "cpu_count": 16, "torch_threads": 16}, "cuda": cuda})
    for expected in ("CUDA (NVIDIA H200)", "sweep of 64, float32 compiled   0.25 s", "2400 GB/s",
                     "sweep of 10000, float32 compiled   4.00 s    (goal: ≤ 3 s)",
                     "50.0% of the card's 4.80 TB/s"):
        assert expected in text, expected
    assert "Figure-1 workload" not in text
    assert bench.logit_traffic_bytes(64, 2000, bench.torch.float32) == 2 * 64 * 2000 * 600 * 100 * 4


def test_the_gpu_workload_runs_small_on_a_cpu():
    """The CUDA workload's code, run on the CPU at toy sizes: every section recorded, the doubling stops."""
    out = bench.cuda_workload(steps=2, budget_s=0.05, device="cpu", goal_configurations=16, compiled=False)
    assert out["sweep64_float32_s"] > 0 and out["sweep64_float64_s"] > 0 and "sweep64_float32_compiled_s" not in out
    assert out["goal_sweep"]["configurations"] == 16 and out["goal_sweep"]["compiled"] is False
    assert out["goal_sweep"]["bytes_per_second"] > 0
    largest = out["largest_sweep_within_10s"]
    assert largest is None or largest["seconds"] <= 0.05


def test_the_floor_times_one_exponential_per_logit_and_step(monkeypatch):
    """steps × (configurations, contexts, arms) elements, in the dtype asked, each timing after a warm-up call."""
    import torch

    calls = []
    real_exp = torch.exp

    def counting_exp(tensor, out=None):
        calls.append((tuple(tensor.shape), tensor.dtype))
        return real_exp(tensor, out=out)

    monkeypatch.setattr(bench.torch, "exp", counting_exp)
    assert bench.exponential_floor(4, 60, 100, 5, torch.float32, repeats=2) > 0
    assert calls == [((4, 60, 100), torch.float32)] * (2 * (5 + 1))


def test_the_options_are_a_real_subcommand():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--baseline-runs", "8", "--output", "x.json"])
    assert (args.baseline_runs, args.full_baseline, args.output) == (8, False, "x.json")


@pytest.mark.parametrize("arguments, message", [
    (["bench", "--baseline-runs", "0"], "--baseline-runs = 0 is out of range"),
    (["bench", "--baseline-runs", "x"], "invalid int value"),
    (["bench", "--colour"], "unrecognized arguments"),
])
def test_bad_options_are_one_line_and_exit_2(arguments, message, capsys):
    try:
        code = main(arguments)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
