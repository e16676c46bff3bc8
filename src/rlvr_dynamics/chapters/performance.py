"""The appendix *Performance*: it reads the committed benchmark records (``data/benchmarks``, one
JSON file per machine, written by ``rlvr-book bench`` and ``rlvr-book bench-lm``) and tabulates them;
it has only the common parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rlvr_dynamics.engines.bandit import BanditSpec

LM_OVERHEAD_LIMIT = 0.25
"""The paper's estimate (a) may cost at most this fraction of a plain GRPO step."""
AGREEMENT_TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
"""Largest |ΔJ| between a timed engine run and the NumPy loop of the definitions, per dtype."""
SETUP_NUMBERS = {"0.01": 0.01}
"""Decimals the prose may type: the sweep's smallest step size (``rlvr_dynamics.bench.bandit.SWEEP_STEP_SIZES``)."""


@dataclass(frozen=True)
class PerformanceConfig:
    """A page with only the common parameters (it reads committed data)."""

    def estimated_peak_bytes(self) -> int:
        """No tensor of the page grows with a parameter: it tabulates a few JSON records (the interpreter
        and its libraries, ≈ 0.4 GB, not included)."""
        return 0


PRESETS = {"ci": {}, "paper": {}}


def load_records(folder: Path) -> dict[str, dict]:
    """Every ``*.json`` benchmark record in ``folder``, by file stem, in name order."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(Path(folder).glob("*.json"))}


def cpu_records(records: dict[str, dict]) -> dict[str, dict]:
    """The records with CPU workloads (a GPU-only record has none)."""
    return {name: record for name, record in records.items() if "sweep" in record}


def bandit_table(records: dict[str, dict]) -> pd.DataFrame:
    """The bandit-engine timings of each CPU record (one column per record): the Figure-1 workload and
    the 64-configuration sweep against the NumPy loop, the engine one run at a time and the floor."""
    rows = []
    for name, record in cpu_records(records).items():
        machine, figure1, sweep = record["machine"], record["figure1"], record["sweep"]
        rows.append({
            "record": name,
            "measured on": record.get("measured_on", "?"),
            "machine": f"{machine['processor']}, {machine['cpu_count']} cores"
                       + (f", {machine['cuda']}" if machine.get("cuda") else ""),
            "Figure 1: engine (s)": figure1["engine_s"],
            "Figure 1: NumPy loop (s)": figure1["numpy_loop_s"],
            "Figure 1: ratio": figure1["speedup"],
            "sweep: float64 (s)": sweep["batched_float64_s"],
            "sweep: float32 (s)": sweep["batched_float32_s"],
            "sweep: float64 compiled (s)": sweep.get("batched_float64_compiled_s", float("nan")),
            "sweep: float32 compiled (s)": sweep.get("batched_float32_compiled_s", float("nan")),
            "sweep: NumPy loop (s)": sweep["numpy_loop_s"],
            "sweep: engine one run at a time (s)": sweep["engine_one_run_at_a_time_s"],
            # the floor, measured in the same run (records before it have none)
            "sweep: its exponentials alone, float64 (s)": sweep.get("exp_floor_float64_s", float("nan")),
            "sweep: its exponentials alone, float32 (s)": sweep.get("exp_floor_float32_s", float("nan")),
            **{f"sweep: {variant.replace('_', ' ')} / floor": sweep.get(f"floor_ratio_{variant}", float("nan"))
               for variant in ("float64", "float32", "float64_compiled", "float32_compiled")},
        })
    return pd.DataFrame(rows).set_index("record").T


def floor_ratios(records: dict[str, dict]) -> dict[str, float]:
    """The best (smallest) ratio of a batched sweep to its floor in each CPU record that measured one."""
    return {name: min(value for key, value in record["sweep"].items() if key.startswith("floor_ratio_"))
            for name, record in cpu_records(records).items()
            if any(key.startswith("floor_ratio_") for key in record["sweep"])}


def cuda_table(records: dict[str, dict]) -> pd.DataFrame:
    """The bandit sweeps of each record with a GPU: 64 configurations eager and compiled, the 10⁴-configuration
    goal sweep, the largest eager sweep within 10 s, and the memory bandwidth the goal sweep reaches."""
    rows = []
    for name, record in records.items():
        cuda = record.get("cuda")
        if not cuda:
            continue
        goal, largest = cuda.get("goal_sweep") or {}, cuda.get("largest_sweep_within_10s") or {}
        rows.append({"record": name, "measured on": record.get("measured_on", "?"), "card": cuda["device_name"],
                     **{f"64 configs, {variant.replace('_', ' ')} (s)": cuda.get(f"sweep64_{variant}_s", float("nan"))
                        for variant in ("float64", "float32", "float64_compiled", "float32_compiled")},
                     "10⁴ configs, float32 (s)": goal.get("seconds", float("nan")),
                     "largest eager sweep within 10 s (configs)": largest.get("configurations", float("nan")),
                     "share of the card's memory bandwidth": cuda.get("bandwidth_fraction", float("nan"))})
    return pd.DataFrame(rows).set_index("record").T if rows else pd.DataFrame()


def engine_sweep_table(records: dict[str, dict]) -> pd.DataFrame:
    """The token-chain and two-stage sweeps of each record, on its CPU and (when it has one) its GPU, one
    column each: batched seconds and the ratio to the same runs one at a time."""
    rows = []
    for name, record in records.items():
        for device, results in (("CPU", record), ("CUDA", (record.get("cuda") or {}).get("engines"))):
            if not results or "token_chain" not in results:
                continue
            chain, stage = results["token_chain"], results["two_stage"]
            rows.append({
                "record": f"{name} ({device})",
                f"token chain: {chain['runs']} runs × {chain['steps']} steps (s)": chain["batched_s"],
                "token chain: × vs one run at a time": chain["speedup_vs_one_run_at_a_time"],
                f"two stage sampled: {stage['runs']} runs × {stage['steps']} steps (s)": stage["sampled_batched_s"],
                "two stage sampled: × vs one run at a time": stage["sampled_speedup_vs_one_run_at_a_time"],
                f"two stage expected: {stage['runs']} runs × {stage['steps']} steps (s)": stage["expected_batched_s"],
                "two stage expected: × vs one run at a time": stage["expected_speedup_vs_one_run_at_a_time"],
            })
    return pd.DataFrame(rows).set_index("record").T if rows else pd.DataFrame()


def preset_table(records: dict[str, dict]) -> pd.DataFrame:
    """Each chapter's run at the timed preset, one column per record: minutes and claims held, or why it did
    not finish; shortenings are named."""
    columns = {}
    for name, record in records.items():
        column = {}
        for chapter, result in record["chapters"].items():
            shortened = record.get("shortened", {}).get(chapter)
            note = f" (shortened: {', '.join(f'{k} = {v}' for k, v in shortened.items())})" if shortened else ""
            if result["status"] == "finished":
                column[chapter] = (f"{result['seconds'] / 60:.1f} min, {result['claims_held']}/{result['claims']} "
                                   f"claims held{note}")
            else:
                column[chapter] = f"{result['status']} after {result['seconds'] / 60:.1f} min: {result['reason']}{note}"
        columns[f"{name} ({record['preset']}, {record['machine']['cpu_count']} cores"
                f"{', ' + record['machine']['cuda'] if record['machine'].get('cuda') else ''}, "
                f"{record.get('measured_on', '?')})"] = column
    return pd.DataFrame(columns)


def preset_claim_margins(records: dict[str, dict]) -> list[float]:
    """Per finished chapter run of every preset record: 1 when every enforced claim held, −1 otherwise."""
    return [1.0 if not result["enforced_failed"] else -1.0 for record in records.values()
            for result in record["chapters"].values() if result["status"] == "finished"]


def ratio_table(records: dict[str, dict]) -> pd.DataFrame:
    """Per CPU record and batched variant: the speed-ups and the agreement with the NumPy loop."""
    rows = []
    for name, record in cpu_records(records).items():
        sweep = record["sweep"]
        for variant, error in sweep["max_abs_value_difference_vs_numpy"].items():
            rows.append({"record": name, "batched variant": variant.replace("_", " "),
                         "× vs per-run NumPy loop": sweep[f"speedup_{variant}_vs_numpy_loop"],
                         "× vs engine one run at a time": sweep[f"speedup_{variant}_vs_engine_one_run_at_a_time"],
                         "max |ΔJ| vs NumPy": error})
    return pd.DataFrame(rows)


def lm_table(records: dict[str, dict]) -> pd.DataFrame:
    """Seconds per GRPO step with tracking off, (a) and (a)+(b), and the overheads, per record."""
    rows = [{"record": name, "device": record["device"], "threads": record["cpu_threads"],
             "parameters": record["parameters"], "steps timed": record["steps"] - record["skip"],
             **{f"{mode}: s/step": record["tracking"][mode]["seconds_per_step"] for mode in record["tracking"]},
             "(a) overhead": f"{100 * record['tracking']['estimate']['overhead']:+.1f}%",
             "(a)+(b) overhead, mean step": f"{100 * record['tracking']['measured']['overhead']:+.1f}%",
             # the median step carries the batch gap alone (each prompt's own gap comes every 10th step)
             "(a)+(b) overhead, median step": (
                 f"{100 * record['tracking']['measured']['overhead_median']:+.1f}%"
                 if "overhead_median" in record["tracking"]["measured"] else "not recorded")}
            for name, record in records.items()]
    return pd.DataFrame(rows).set_index("record").T


def lm_overhead_margins(records: dict[str, dict]) -> list[float]:
    """LM_OVERHEAD_LIMIT − the overhead of the paper's estimate (a), per LM record."""
    return [LM_OVERHEAD_LIMIT - record["tracking"]["estimate"]["overhead"] for record in records.values()]


def measured_gap_overhead_margins(records: dict[str, dict]) -> list[float]:
    """LM_OVERHEAD_LIMIT − the median-step overhead of (a)+(b) (the batch gap ḡ⁺ − ḡ⁻ on top of (a)), per LM
    record that has it."""
    return [LM_OVERHEAD_LIMIT - record["tracking"]["measured"]["overhead_median"] for record in records.values()
            if "overhead_median" in record["tracking"]["measured"]]


def engine_agreement_margins(records: dict[str, dict]) -> list[float]:
    """Tolerance − max |ΔJ| against the NumPy loop: every timed sweep variant (float32 tolerances for
    the float32 and compiled variants), then every Figure-1 workload (float64)."""
    cpu = cpu_records(records).values()
    engines = [results for record in records.values()
               for results in (record, (record.get("cuda") or {}).get("engines"))
               if results and "token_chain" in results]
    return ([AGREEMENT_TOLERANCE["float64" if variant.startswith("float64") else "float32"] - error
             for record in cpu for variant, error in record["sweep"]["max_abs_value_difference_vs_numpy"].items()]
            + [AGREEMENT_TOLERANCE["float64"] - record["figure1"]["max_abs_value_difference"] for record in cpu]
            # the token-chain and two-stage (expected) sweeps batched against their runs one at a time
            + [AGREEMENT_TOLERANCE["float64"] - difference for results in engines
               for difference in (results["token_chain"]["max_abs_value_difference"],
                                  results["two_stage"]["expected_max_abs_value_difference"])])


def sweep_exponentials(record: dict) -> int:
    """The floor of the sweep on a CPU: one exponential per (run, context, arm, step), the contexts being
    the evaluation and the pool contexts of the Section-5.1 problem."""
    spec = BanditSpec()
    sweep = record["sweep"]
    return sweep["configurations"] * sweep["steps"] * (sweep["evaluation_contexts"] + spec.pool_size) * spec.arms
