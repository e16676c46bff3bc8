"""Tests of rlvr_dynamics.chapters.performance on records written here (and on the committed ones)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlvr_dynamics.chapters import performance
from rlvr_dynamics.files import project_root


def bandit_record(error32=2e-6, error64=1e-15, figure1_error=0.0, cuda=None):
    sweep = {"batched_float64_s": 40.0, "batched_float32_s": 20.0, "numpy_loop_s": 400.0,
             "engine_one_run_at_a_time_s": 80.0, "max_abs_value_difference_vs_numpy": {"float64": error64,
                                                                                        "float32": error32}}
    for variant in ("float64", "float32"):
        sweep[f"speedup_{variant}_vs_numpy_loop"] = 400.0 / sweep[f"batched_{variant}_s"]
        sweep[f"speedup_{variant}_vs_engine_one_run_at_a_time"] = 80.0 / sweep[f"batched_{variant}_s"]
    record = {"measured_on": "2026-11-29", "machine": {"processor": "x86_64", "cpu_count": 2},
              "figure1": {"engine_s": 1.0, "numpy_loop_s": 6.0, "speedup": 6.0,
                          "max_abs_value_difference": figure1_error}, "sweep": sweep}
    if cuda:
        record["cuda"] = cuda
    return record


def lm_record(estimate=0.05, measured=0.8):
    tracking = {"off": {"seconds_per_step": 0.1}, "estimate": {"seconds_per_step": 0.1 * (1 + estimate),
                                                                "overhead": estimate},
                "measured": {"seconds_per_step": 0.1 * (1 + measured), "overhead": measured}}
    return {"device": "cpu", "cpu_threads": 2, "parameters": 140_000, "steps": 60, "skip": 5, "tracking": tracking}


def test_load_records_reads_every_json_by_name(tmp_path):
    for name in ("b", "a"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name}))
    assert list(performance.load_records(tmp_path)) == ["a", "b"]
    assert performance.load_records(tmp_path / "missing") == {}


def engine_results(chain_error=0.0, stage_error=0.0):
    return {"token_chain": {"runs": 64, "steps": 100, "batched_s": 1.3, "speedup_vs_one_run_at_a_time": 40.0,
                            "max_abs_value_difference": chain_error},
            "two_stage": {"runs": 256, "steps": 3000, "sampled_batched_s": 0.6, "expected_batched_s": 2.5,
                          "sampled_speedup_vs_one_run_at_a_time": 120.0, "expected_speedup_vs_one_run_at_a_time": 67.0,
                          "expected_max_abs_value_difference": stage_error}}


def test_tables_by_hand():
    cuda = {"device_name": "H200", "sweep64_float32_s": 1.5, "sweep64_float32_compiled_s": 0.3,
            "goal_sweep": {"configurations": 10_000, "seconds": 2.5}, "bandwidth_fraction": 0.4,
            "largest_sweep_within_10s": {"configurations": 2048, "seconds": 7.0}, "engines": engine_results()}
    records = {"one": bandit_record(cuda=cuda), "gpu": {"measured_on": "2026-12-01", "machine": {}, "cuda": cuda}}
    table = performance.bandit_table(records)
    assert list(table.columns) == ["one"]  # the GPU-only record has no CPU workloads
    assert table.loc["machine", "one"] == "x86_64, 2 cores" and table.loc["sweep: NumPy loop (s)", "one"] == 400.0
    ratios = performance.ratio_table(records)
    assert ratios["× vs per-run NumPy loop"].tolist() == [10.0, 20.0]
    gpu = performance.cuda_table(records)
    assert list(gpu.columns) == ["one", "gpu"] and gpu.loc["10⁴ configs, float32 (s)", "gpu"] == 2.5
    assert gpu.loc["64 configs, float32 compiled (s)", "one"] == 0.3 and np.isnan(gpu.loc["64 configs, float64 (s)",
                                                                                          "one"])
    assert gpu.loc["largest eager sweep within 10 s (configs)", "one"] == 2048
    assert performance.cuda_table({"cpu": bandit_record()}).empty
    records["one"].update(engine_results())
    engines = performance.engine_sweep_table(records)
    assert list(engines.columns) == ["one (CPU)", "one (CUDA)", "gpu (CUDA)"]
    assert engines.loc["token chain: 64 runs × 100 steps (s)"].tolist() == [1.3] * 3
    lm = performance.lm_table({"r": lm_record(0.05, 0.8)})
    assert lm.loc["(a) overhead", "r"] == "+5.0%" and lm.loc["(a)+(b) overhead, mean step", "r"] == "+80.0%"
    assert lm.loc["(a)+(b) overhead, median step", "r"] == "not recorded"  # a record from before the median
    record = lm_record(0.05, 0.8)
    record["tracking"]["measured"]["overhead_median"] = 0.2
    assert performance.lm_table({"r": record}).loc["(a)+(b) overhead, median step", "r"] == "+20.0%"
    assert np.isnan(table.loc["sweep: float32 / floor", "one"])  # a record from before the floor
    assert performance.floor_ratios(records) == {}
    records["one"]["sweep"].update(exp_floor_float32_s=8.0, floor_ratio_float32=2.5, floor_ratio_float32_compiled=1.8)
    assert performance.bandit_table(records).loc["sweep: float32 compiled / floor", "one"] == 1.8
    assert performance.floor_ratios(records) == {"one": 1.8}
    assert lm.loc["steps timed", "r"] == 55


def preset_record(**chapters):
    return {"measured_on": "2026-11-30", "preset": "paper", "machine": {"cpu_count": 2, "cuda": None},
            "shortened": {"figure2": {"steps": "100"}}, "chapters": chapters}


def test_the_preset_table_names_times_failures_and_shortenings():
    finished = {"status": "finished", "seconds": 90.0, "claims": 15, "claims_held": 15, "enforced_failed": []}
    stopped = {"status": "stopped", "seconds": 3600.0, "reason": "did not finish within 60 min"}
    table = performance.preset_table({"cpu": preset_record(figure1=finished, figure2=stopped)})
    column = table["cpu (paper, 2 cores, 2026-11-30)"]
    assert column["figure1"] == "1.5 min, 15/15 claims held"
    assert column["figure2"] == "stopped after 60.0 min: did not finish within 60 min (shortened: steps = 100)"
    assert performance.preset_claim_margins({"cpu": preset_record(figure1=finished, figure2=stopped)}) == [1.0]
    failing = dict(finished, claims_held=14, enforced_failed=["a claim"])
    assert performance.preset_claim_margins({"cpu": preset_record(figure1=failing)}) == [-1.0]


def test_margins_hold_and_fail_on_a_slow_estimate_or_a_disagreeing_engine():
    assert min(performance.lm_overhead_margins({"r": lm_record(estimate=0.1)})) == pytest.approx(0.15)
    assert min(performance.lm_overhead_margins({"r": lm_record(estimate=0.3)})) < 0
    assert min(performance.engine_agreement_margins({"r": bandit_record()})) > 0
    assert min(performance.engine_agreement_margins({"r": bandit_record(error32=2e-5)})) < 0  # float32 off
    assert min(performance.engine_agreement_margins({"r": bandit_record(error64=1e-10)})) < 0  # float64 off
    assert min(performance.engine_agreement_margins({"r": bandit_record(figure1_error=1e-9)})) < 0
    for engines in (engine_results(chain_error=1e-9), engine_results(stage_error=1e-9)):
        assert min(performance.engine_agreement_margins({"r": {**bandit_record(), **engines}})) < 0
        assert min(performance.engine_agreement_margins({"gpu": {"cuda": {"engines": engines}}})) < 0
    record = lm_record(0.05, 0.8)
    assert performance.measured_gap_overhead_margins({"r": record}) == []  # no median recorded
    record["tracking"]["measured"]["overhead_median"] = 0.2
    assert performance.measured_gap_overhead_margins({"r": record}) == [pytest.approx(0.05)]
    record["tracking"]["measured"]["overhead_median"] = 0.35
    assert performance.measured_gap_overhead_margins({"r": record})[0] < 0


def test_the_committed_records_pass():
    folder = project_root() / "data" / "benchmarks"
    records, lm_records = performance.load_records(folder), performance.load_records(folder / "lm")
    assert records and lm_records
    assert min(performance.engine_agreement_margins(records)) >= 0
    assert min(performance.lm_overhead_margins(lm_records)) >= 0
    assert min(performance.measured_gap_overhead_margins(lm_records)) >= 0
    presets = performance.load_records(folder / "presets")
    assert presets and min(performance.preset_claim_margins(presets)) > 0


def test_the_sweep_floor_counts_one_exponential_per_run_context_arm_and_step():
    record = bandit_record()
    record["sweep"].update(configurations=64, steps=2000, evaluation_contexts=500)
    assert performance.sweep_exponentials(record) == 64 * 2000 * (500 + 100) * 100  # 7.68e9


def test_the_prose_constants_are_the_benchmarks():
    from rlvr_dynamics.bench.bandit import SWEEP_STEP_SIZES

    assert list(performance.SETUP_NUMBERS) == ["0.01"] and performance.SETUP_NUMBERS["0.01"] == SWEEP_STEP_SIZES[0]


def test_estimated_peak_bytes_is_nothing_beyond_the_interpreter():
    # The page only reads JSON records: no tensor grows with a parameter, at either preset.
    assert {performance.PerformanceConfig(**performance.PRESETS[preset]).estimated_peak_bytes()
            for preset in ("ci", "paper")} == {0}
