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


def bandit_table(records: dict[str, dict]) -> pd.DataFrame:
    """The bandit-engine timings of each record (one column per record): the Figure-1 workload and
    the 64-configuration sweep against the NumPy loop and the engine one run at a time."""
    rows = []
    for name, record in records.items():
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
            "sweep: float32 compiled (s)": sweep.get("batched_float32_compiled_s", float("nan")),
            "sweep: NumPy loop (s)": sweep["numpy_loop_s"],
            "sweep: engine one run at a time (s)": sweep["engine_one_run_at_a_time_s"],
            # the floor, measured in the same run (records before it have none)
            "sweep: its exponentials alone, float32 (s)": sweep.get("exp_floor_float32_s", float("nan")),
            "sweep: float32 / floor": sweep.get("floor_ratio_float32", float("nan")),
            "sweep: float32 compiled / floor": sweep.get("floor_ratio_float32_compiled", float("nan")),
        })
    return pd.DataFrame(rows).set_index("record").T


def ratio_table(records: dict[str, dict]) -> pd.DataFrame:
    """Per record and batched variant: the speed-ups and the agreement with the NumPy loop; a CUDA
    record adds its GPU sweep."""
    rows = []
    for name, record in records.items():
        sweep = record["sweep"]
        for variant, error in sweep["max_abs_value_difference_vs_numpy"].items():
            rows.append({"record": name, "batched variant": variant,
                         "× vs per-run NumPy loop": sweep[f"speedup_{variant}_vs_numpy_loop"],
                         "× vs engine one run at a time": sweep[f"speedup_{variant}_vs_engine_one_run_at_a_time"],
                         "max |ΔJ| vs NumPy": error})
        if record.get("cuda"):
            cuda = record["cuda"]
            rows.append({"record": name, "batched variant": f"CUDA {cuda['device_name']}: "
                         f"64 configs float32 {cuda['sweep64_float32_s']:.2f} s; largest ≤ 10 s: "
                         f"{cuda['largest_sweep_within_10s']}"})
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


def engine_agreement_margins(records: dict[str, dict]) -> list[float]:
    """Tolerance − max |ΔJ| against the NumPy loop: every timed sweep variant (float32 tolerances for
    the float32 and compiled variants), then every Figure-1 workload (float64)."""
    return ([AGREEMENT_TOLERANCE["float64" if variant == "float64" else "float32"] - error
             for record in records.values()
             for variant, error in record["sweep"]["max_abs_value_difference_vs_numpy"].items()]
            + [AGREEMENT_TOLERANCE["float64"] - record["figure1"]["max_abs_value_difference"]
               for record in records.values()])


def sweep_exponentials(record: dict) -> int:
    """The floor of the sweep on a CPU: one exponential per (run, context, arm, step), the contexts being
    the evaluation and the pool contexts of the Section-5.1 problem."""
    spec = BanditSpec()
    sweep = record["sweep"]
    return sweep["configurations"] * sweep["steps"] * (sweep["evaluation_contexts"] + spec.pool_size) * spec.arms
