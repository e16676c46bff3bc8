"""Benchmark of the batched contextual-bandit engine (``make bench`` / ``rlvr-book bench``).

Times, on this machine in one run:

1. **Figure-1 workload** (the chapter's main run at the paper's settings: 2000 steps, 500
   evaluation contexts, every step recorded, float64): the batched engine against the per-run
   NumPy loop of the definitions (:func:`rlvr_dynamics.engines.bandit.simulate_reference_numpy`).
2. **A 64-configuration sweep** (8 seeds × 8 step sizes on the log grid 0.01 … 10, 2000 steps
   each, summaries recorded every 100 steps): one batched tensor program, in float64 and in
   float32, against (a) the per-run NumPy loop and (b) the same engine called once per
   configuration — (b) separates what batching gives from what the rank-one algebra gives.
   Per-run baselines are timed on ``baseline_runs`` configurations and scaled to 64 (their cost
   is a sum over runs); ``--full-baseline`` times all 64 instead (≈ 7 min on 2 cores).
3. **The floor** of the sweep on this machine, measured in the same run: the time of its
   exponentials alone — one per (configuration, context, arm, step), ``torch.exp`` over the same
   element count, dtype and threads, one step's tensor at a time (:func:`exponential_floor`) —
   and the engine's ratio to it.
4. On CUDA (when present): the same sweep on the GPU, and the largest sweep (doubling the number
   of configurations) that finishes in 10 s.
5. The token-chain and two-stage engines' sweeps (:mod:`rlvr_dynamics.bench.engines`), on the CPU
   and, when present, on CUDA.

Every timed engine run is checked against the NumPy loop on the configurations both ran.
Results are printed and written as JSON (default ``build/bench/bandit.json``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from rlvr_dynamics.bench import engines
from rlvr_dynamics.config import ParameterError
from rlvr_dynamics.engines import bandit
from rlvr_dynamics.files import package_versions, write_json_atomic

STEPS = 2000
SWEEP_SEEDS = 8
SWEEP_STEP_SIZES = np.geomspace(0.01, 10.0, 8)
FIGURE1_STEP_SIZE = 0.1


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def _simulate(bandits, step_sizes, steps, record_every, compile=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bandit.EmptyBandWarning)  # the band is empty by design at the start
        result = bandit.simulate(bandits, step_sizes, steps, record_every=record_every, compile=compile)
    if bandits.contexts.is_cuda:
        torch.cuda.synchronize()
    return result


def _sweep_problem(device, dtype, n_seeds=SWEEP_SEEDS, steps=STEPS):
    bandits = bandit.make_bandits(bandit.BanditSpec(), range(n_seeds), steps, device=device, dtype=dtype)
    return bandits.repeat(len(SWEEP_STEP_SIZES)), np.tile(SWEEP_STEP_SIZES, n_seeds)


def figure1_workload(steps: int = STEPS) -> dict:
    """The chapter's main run: engine (float64, CPU) vs the NumPy definitions loop."""
    bandits = bandit.make_bandits(bandit.BanditSpec(), [0], steps, device="cpu", dtype=torch.float64)
    _simulate(bandits, FIGURE1_STEP_SIZE, 20, 1)  # warm-up
    engine_s, result = _timed(_simulate, bandits, FIGURE1_STEP_SIZE, steps, 1)
    numpy_s, reference = _timed(bandit.simulate_reference_numpy, bandits, 0, FIGURE1_STEP_SIZE, steps)
    error = float(np.abs(result.value[:, 0].numpy() - reference["value"]).max())
    return {"engine_s": engine_s, "numpy_loop_s": numpy_s, "speedup": numpy_s / engine_s,
            "max_abs_value_difference": error}


def exponential_floor(configurations: int, contexts: int, arms: int, steps: int, dtype: torch.dtype,
                      device="cpu", repeats: int = 3) -> float:
    """Seconds for ``steps`` × ``torch.exp`` of a (configurations, contexts, arms) tensor into a preallocated
    one: what the sweep's exponentials alone cost (the engine needs at least one per logit per step).
    The fastest of ``repeats`` timings, like any floor."""
    logits = torch.randn(configurations, contexts, arms, dtype=dtype, device=device,
                         generator=torch.Generator(device=device).manual_seed(0))
    out = torch.empty_like(logits)
    best = math.inf
    for _ in range(repeats):
        torch.exp(logits, out=out)  # warm-up: page in both buffers
        if logits.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            torch.exp(logits, out=out)
        if logits.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def sweep_workload(baseline_runs: int, steps: int = STEPS) -> dict:
    """64 configurations: batched engine (float64 and float32) vs per-run baselines."""
    n_configs = SWEEP_SEEDS * len(SWEEP_STEP_SIZES)
    out = {"configurations": n_configs, "steps": steps, "evaluation_contexts": bandit.BanditSpec().eval_size}
    batched = {}
    for name, dtype in bandit.DTYPES.items():
        bandits, alphas = _sweep_problem("cpu", dtype, steps=steps)
        _simulate(bandits, alphas, 20, 100)  # warm-up
        seconds, result = _timed(_simulate, bandits, alphas, steps, 100)
        batched[name] = (seconds, result, bandits)
        out[f"batched_{name}_s"] = seconds
    try:  # torch.compile fuses each step into a few loops; its one-off compilation is timed separately
        for name, dtype in bandit.DTYPES.items():
            bandits, alphas = _sweep_problem("cpu", dtype, steps=steps)
            out[f"compile_once_{name}_s"], _ = _timed(_simulate, bandits, alphas, 20, 100, True)
            seconds, result = _timed(_simulate, bandits, alphas, steps, 100, True)
            batched[f"{name}_compiled"] = (seconds, result, bandits)
            out[f"batched_{name}_compiled_s"] = seconds
    except Exception as error:  # no C++ compiler, unsupported platform …
        out["compiled_unavailable"] = f"{type(error).__name__}: {error}".splitlines()[0]

    spec = bandit.BanditSpec()
    for name, dtype in bandit.DTYPES.items():
        floor = exponential_floor(n_configs, spec.pool_size + spec.eval_size, spec.arms, steps, dtype)
        out[f"exp_floor_{name}_s"] = floor
        out[f"floor_ratio_{name}"] = out[f"batched_{name}_s"] / floor
        if f"batched_{name}_compiled_s" in out:
            out[f"floor_ratio_{name}_compiled"] = out[f"batched_{name}_compiled_s"] / floor

    # Per-run baselines on an evenly spread subset of the configurations.
    subset = np.linspace(0, n_configs - 1, baseline_runs).round().astype(int)
    bandits64, alphas = batched["float64"][2], np.tile(SWEEP_STEP_SIZES, SWEEP_SEEDS)
    numpy_s, engine_single_s = 0.0, 0.0
    errors = dict.fromkeys(batched, 0.0)
    for row in subset:
        seconds, reference = _timed(bandit.simulate_reference_numpy, bandits64, int(row), float(alphas[row]), steps)
        numpy_s += seconds
        single = bandit.make_bandits(bandit.BanditSpec(), [bandits64.seeds[row]], steps, dtype=torch.float64)
        seconds, _ = _timed(_simulate, single, float(alphas[row]), steps, 100)
        engine_single_s += seconds
        recorded = batched["float64"][1].recorded_steps.numpy()
        for name in errors:
            values = batched[name][1].value[:, row].double().numpy()
            errors[name] = max(errors[name], float(np.abs(values - reference["value"][recorded]).max()))
    scale = n_configs / len(subset)
    out.update({
        "baseline_runs_timed": len(subset),
        "numpy_loop_s": numpy_s * scale,
        "engine_one_run_at_a_time_s": engine_single_s * scale,
        "max_abs_value_difference_vs_numpy": errors,
    })
    for name in batched:
        out[f"speedup_{name}_vs_numpy_loop"] = out["numpy_loop_s"] / out[f"batched_{name}_s"]
        out[f"speedup_{name}_vs_engine_one_run_at_a_time"] = (out["engine_one_run_at_a_time_s"]
                                                              / out[f"batched_{name}_s"])
    return out


PEAK_MEMORY_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L40S": 0.864e12, "L4": 0.3e12}
"""Bytes per second of the memory of cards the benchmark knows, by a substring of their name (datasheets)."""


def logit_traffic_bytes(configurations: int, steps: int, dtype: torch.dtype) -> int:
    """The sweep's least memory traffic: every step reads and writes each (context, arm) logit once (the
    fused loop's traffic; the exponentials' floor moves the same bytes)."""
    spec = bandit.BanditSpec()
    return 2 * configurations * steps * (spec.pool_size + spec.eval_size) * spec.arms * dtype.itemsize


GOAL_CONFIGURATIONS = 10_000
"""The GPU goal's sweep: 10⁴ configurations × 2000 steps (1250 seeds × the 8 step sizes)."""


def cuda_workload(steps: int = STEPS, budget_s: float = 10.0, device: str = "cuda",
                  goal_configurations: int = GOAL_CONFIGURATIONS, compiled: bool = True) -> dict:
    """The 64-configuration sweep on the GPU, eager and compiled; the 10⁴-configuration sweep compiled; the
    largest eager sweep (configurations doubling) within ``budget_s``; and the memory bandwidth the goal
    sweep reaches against the card's. (``device``, ``goal_configurations`` and ``compiled`` let the tests
    run the same code small on a CPU.)"""
    name_of_card = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor()
    out = {"device_name": name_of_card}
    for compile in (False, True)[:1 + compiled]:
        suffix = "_compiled" if compile else ""
        for name, dtype in bandit.DTYPES.items():
            bandits, alphas = _sweep_problem(device, dtype, steps=steps)
            try:
                _simulate(bandits, alphas, min(20, steps), 100, compile)
            except Exception as error:  # no Triton, unsupported card …
                if not compile:
                    raise
                out["compiled_unavailable"] = f"{type(error).__name__}: {error}".splitlines()[0]
                break
            out[f"sweep64_{name}{suffix}_s"], _ = _timed(_simulate, bandits, alphas, steps, 100, compile)
    compile = "sweep64_float32_compiled_s" in out
    n_seeds = goal_configurations // len(SWEEP_STEP_SIZES)
    bandits, alphas = _sweep_problem(device, torch.float32, n_seeds=n_seeds, steps=steps)
    _simulate(bandits, alphas, min(2, steps), 100, compile)  # a new shape: compiled (or warmed up) outside the timing
    seconds, _ = _timed(_simulate, bandits, alphas, steps, 100, compile)
    configurations = n_seeds * len(SWEEP_STEP_SIZES)
    out["goal_sweep"] = {"configurations": configurations, "seconds": seconds, "dtype": "float32",
                         "compiled": compile,
                         "bytes_per_second": logit_traffic_bytes(configurations, steps, torch.float32) / seconds}
    del bandits, alphas
    largest, n_seeds = None, SWEEP_SEEDS
    while True:
        bandits, alphas = _sweep_problem(device, torch.float32, n_seeds=n_seeds, steps=steps)
        try:
            seconds, _ = _timed(_simulate, bandits, alphas, steps, 100)
        except torch.OutOfMemoryError:
            break
        if seconds > budget_s:
            break
        largest = {"configurations": n_seeds * len(SWEEP_STEP_SIZES), "seconds": seconds, "dtype": "float32"}
        n_seeds *= 2
    out["largest_sweep_within_10s"] = largest
    peak = next((value for key, value in PEAK_MEMORY_BANDWIDTH.items() if key in name_of_card), None)
    if peak is not None:
        out["peak_memory_bandwidth"] = peak
        out["bandwidth_fraction"] = out["goal_sweep"]["bytes_per_second"] / peak
    return out


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def report(results: dict) -> str:
    lines = [f"machine: {results['machine']['processor']}, {results['machine']['cpu_count']} cores, "
             f"torch threads {results['machine']['torch_threads']}"]
    if "sweep" in results:
        lines += _cpu_report(results)
    return "\n".join(lines + _cuda_report(results))


def _cpu_report(results: dict) -> list[str]:
    f1, sweep = results["figure1"], results["sweep"]
    lines = [
        "",
        f"Figure-1 workload ({STEPS} steps, 500 evaluation contexts, float64, CPU)",
        f"  batched engine          {f1['engine_s']:8.2f} s",
        f"  per-run NumPy loop      {f1['numpy_loop_s']:8.2f} s    ratio {f1['speedup']:.1f}x"
        f"   (max |ΔJ| {f1['max_abs_value_difference']:.1e})",
        "",
        f"Sweep of {sweep['configurations']} configurations (8 seeds × 8 step sizes 0.01…10, {STEPS} steps each, CPU)",
        f"  batched engine float64  {sweep['batched_float64_s']:8.2f} s",
        f"  batched engine float32  {sweep['batched_float32_s']:8.2f} s",
        *([f"  batched {name} + torch.compile {sweep[f'batched_{name}_compiled_s']:6.2f} s    (compiled once in "
           f"{sweep[f'compile_once_{name}_s']:.1f} s, not included)" for name in ("float64", "float32")]
          if "batched_float32_compiled_s" in sweep
          else [f"  torch.compile unavailable: {sweep.get('compiled_unavailable')}"]),
        (f"  per-run NumPy loop      {sweep['numpy_loop_s']:8.2f} s    "
         f"(timed on {sweep['baseline_runs_timed']} runs, scaled)"),
        f"  engine, one run a time  {sweep['engine_one_run_at_a_time_s']:8.2f} s    (same subset, scaled)",
        "  ratios vs NumPy loop:    " + ", ".join(f"{name} {sweep[f'speedup_{name}_vs_numpy_loop']:.1f}x"
                                                 for name in sweep["max_abs_value_difference_vs_numpy"]),
        "  ratios vs one-at-a-time: " + ", ".join(
            f"{name} {sweep[f'speedup_{name}_vs_engine_one_run_at_a_time']:.1f}x"
            for name in sweep["max_abs_value_difference_vs_numpy"]),
        "  max |ΔJ| vs NumPy:      " + ", ".join(f"{name} {error:.1e}"
                                               for name, error in sweep["max_abs_value_difference_vs_numpy"].items()),
        f"  floor (its exponentials alone, torch.exp): float64 {sweep['exp_floor_float64_s']:.2f} s, "
        f"float32 {sweep['exp_floor_float32_s']:.2f} s",
        "  ratio to the floor:      " + ", ".join(
            f"{name} {sweep[f'floor_ratio_{name}']:.1f}x"
            for name in ("float64", "float32", "float64_compiled", "float32_compiled")
            if f"floor_ratio_{name}" in sweep) + "   (goal: within 2x)",
    ]
    return lines + (engines.report_lines(results, "CPU") if "token_chain" in results else [])


def _cuda_report(results: dict) -> list[str]:
    lines = []
    if results.get("cuda"):
        cuda = results["cuda"]
        lines += ["", f"CUDA ({cuda['device_name']})",
                  f"  sweep of 64, float64   {cuda['sweep64_float64_s']:8.2f} s",
                  f"  sweep of 64, float32   {cuda['sweep64_float32_s']:8.2f} s",
                  f"  largest sweep ≤ 10 s    {cuda['largest_sweep_within_10s']}"]
        for name in ("float64", "float32"):
            if f"sweep64_{name}_compiled_s" in cuda:
                lines.append(f"  sweep of 64, {name} compiled {cuda[f'sweep64_{name}_compiled_s']:6.2f} s")
        goal = cuda["goal_sweep"]
        lines.append(f"  sweep of {goal['configurations']}, float32{' compiled' if goal['compiled'] else ''} "
                     f"{goal['seconds']:6.2f} s    (goal: ≤ 3 s)")
        if "bandwidth_fraction" in cuda:
            lines.append(f"  it moves {goal['bytes_per_second'] / 1e9:.0f} GB/s of logits: "
                         f"{100 * cuda['bandwidth_fraction']:.1f}% of the card's "
                         f"{cuda['peak_memory_bandwidth'] / 1e12:.2f} TB/s")
        if "engines" in cuda:
            lines += engines.report_lines(cuda["engines"], f"CUDA, {cuda['device_name']}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rlvr-book bench``."""
    parser.add_argument("--baseline-runs", type=int, default=4,
                        help="per-run baselines timed on this many of the 64 configurations, then scaled (default 4)")
    parser.add_argument("--full-baseline", action="store_true", help="time the per-run baselines on all 64")
    parser.add_argument("--output", default="build/bench/bandit.json", help="JSON file for the results")
    parser.add_argument("--gpu-only", action="store_true",
                        help="only the CUDA workloads (the GPU check: the CPU ones are recorded on their own machine)")


def run(args: argparse.Namespace, command: str) -> int:
    """``rlvr-book bench``: time, print, write ``args.output``; ``command`` is recorded as typed."""
    if not 1 <= args.baseline_runs <= 64:
        raise ParameterError(f"--baseline-runs = {args.baseline_runs} is out of range: allowed 1 … 64")
    baseline_runs = 64 if args.full_baseline else args.baseline_runs
    if args.gpu_only and not torch.cuda.is_available():
        raise ParameterError("--gpu-only: no CUDA device here")
    results = {"measured_on": time.strftime("%Y-%m-%d"), "command": command,
               "machine": machine(), "versions": package_versions()}
    if not args.gpu_only:
        cpu = torch.device("cpu")
        results.update(figure1=figure1_workload(), sweep=sweep_workload(baseline_runs),
                       token_chain=engines.token_chain_workload(cpu), two_stage=engines.two_stage_workload(cpu))
    if torch.cuda.is_available():
        results["cuda"] = cuda_workload()
        results["cuda"]["engines"] = engines.cuda_workloads(torch.device("cuda"))
    print(report(results))
    path = write_json_atomic(Path(args.output), results)
    print(f"\nwritten: {path}")
    return 0
