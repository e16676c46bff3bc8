"""Figure data against committed references: ``data/reference/NAME.json``.

A reference keeps what one notebook's figures and claims rest on, at the preset and seed the book
is built with: every number of its ``metrics.json`` headline, each claim's worst margin and
number of cases, and the parameters. ``make test`` compares the book's execution with it
(``tests/test_reference.py``), number by number:

    |run − reference| ≤ atol + rtol·|reference|

The parameters, booleans and the shape of the record must match exactly, and texts too unless
the tolerance says otherwise. On the platform the reference was recorded on (machine, CPU model,
torch's CPU kernels, torch and NumPy versions) the tolerance is at the level of rounding: the
determinism check shows such runs are bit-identical. Elsewhere each notebook has a stated,
measured tolerance (:data:`OTHER_PLATFORM`): float64 theory agrees to rounding, but float32
training and sampled rewards follow another path once a kernel rounds differently — so far, for
figure2's language-model runs, that they are another draw, compared on the recording platform only.

After a deliberate change, re-record from the book's execution (``make book`` first):

    rlvr-book re-record [NAME ...]
"""

from __future__ import annotations

import hashlib
import math
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rlvr_dynamics.files import read_json, write_json_atomic

REFERENCE_DIR = Path("data") / "reference"
IGNORED_PARAMETERS = ("output_dir",)  # where a run writes is not part of its result


@dataclass(frozen=True)
class Tolerance:
    """|run − reference| ≤ atol + rtol·|reference| for numbers; ``texts``: compare texts (verdicts,
    formatted intervals) exactly; ``findings``: compare the claims a notebook records without
    enforcing them (empirical findings that may change with the path a run takes)."""

    rtol: float
    atol: float
    why: str
    texts: bool = True
    findings: bool = True
    compared: bool = True  # False: a run elsewhere is another draw; compared on the recording platform only

    def allows(self, value: float, reference: float) -> bool:
        return abs(value - reference) <= self.atol + self.rtol * abs(reference)


SAME_PLATFORM = Tolerance(1e-9, 1e-12, "same platform: runs are bit-identical (determinism check); rounding only")
# Measured for the other platforms: the book's ci execution with torch's AVX2 kernels
# (ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2) against the AVX-512 reference.
_THEORY = Tolerance(1e-6, 1e-9, "float64 theory and seeded Monte Carlo: another CPU's kernels change only "
                    "rounding (measured with AVX2 kernels: ≤ 1e-9 apart)")
OTHER_PLATFORM = {
    "gradient_gap": _THEORY,
    "trajectory_theory": _THEORY,
    "token_theory": _THEORY,
    "figure1": _THEORY,
    "performance": _THEORY,
    "figure2": Tolerance(
        0.0, 0.0, "a float32 warm-up and GRPO runs on a language model: with another CPU's kernels they are another "
        "draw (measured with AVX2 kernels: the warm-up stops at 375 steps instead of 450, the GRPO run gains 0.14 "
        "instead of 0.20, Spearman 0.58 instead of 0.90), as far apart as two seeds; compared on the recording "
        "platform only", compared=False),
    "many_prompts": Tolerance(
        0.1, 0.05, "exact float64 runs at tuned, large step sizes are chaotic: another CPU's rounding takes another "
        "path (measured with AVX2 kernels: comparison means up to 0.038 apart, the per-step checks of the "
        "propositions unchanged); the language-model findings are another draw", texts=False, findings=False),
    "boundary": Tolerance(
        0.1, 0.05, "sampled training of float64 chains and a small GRPO language model: another CPU's kernels can take "
        "another path (not yet measured with AVX2 kernels; the tolerance is two_stage's, whose engines it shares in "
        "kind); verdict texts and non-enforced findings may change", texts=False, findings=False),
    "two_stage": Tolerance(
        0.1, 0.05, "sampled-reward bandits and a small GRPO language model: another CPU's kernels take another path "
        "(measured with AVX2 kernels: switch times 1% apart, accuracy margins 0.03); verdict texts and "
        "non-enforced findings may change", texts=False, findings=False),
}


def platform_signature() -> dict[str, str]:
    """What decides whether two runs round alike: machine, CPU model and instruction sets, the CPU
    kernels torch picked (AVX-512, AVX2, ...), torch and NumPy versions."""
    import torch

    cpu, flags = platform.processor() or "", ""
    try:  # (Linux) the model name can be generic ("AMD EPYC"): the instruction-set flags tell generations apart
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                    if ":" in line)
        info = {key.strip(): value.strip() for key, value in info.items()}
        cpu = info.get("model name", cpu)
        flags = hashlib.sha256(" ".join(sorted(info.get("flags", "").split())).encode()).hexdigest()[:16]
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu": cpu, "cpu_flags_sha256": flags,
            "torch_kernels": torch.backends.cpu.get_cpu_capability(),
            "torch": metadata.version("torch"), "numpy": metadata.version("numpy")}


def reference_record(metrics: dict[str, Any]) -> dict[str, Any]:
    """The part of a ``metrics.json`` a reference keeps (see the module docstring)."""
    return {
        "notebook": metrics["notebook"],
        "parameters": {k: v for k, v in metrics["parameters"].items() if k not in IGNORED_PARAMETERS},
        "headline": metrics["headline"],
        "claims": {c["claim"]: {"worst_margin": c["worst_margin"], "n_checked": c["n_checked"],
                                "enforced": c.get("enforced", True)} for c in metrics["claims"]},
    }


def _leaves(value: Any, path: str = ""):
    """(path, leaf) for every leaf of nested dicts and lists (an empty one has none: a list that
    empties is reported by its missing items)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}/{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(reference: dict[str, Any], metrics: dict[str, Any], tolerance: Tolerance) -> list[str]:
    """One line per difference between a reference and a run's ``metrics.json``: a parameter, a
    text or the shape that differs, or a number outside ``tolerance``. Empty when they agree."""
    run = reference_record(metrics)
    if run["parameters"] != reference["parameters"]:
        changed = sorted(k for k in set(run["parameters"]) | set(reference["parameters"])
                         if run["parameters"].get(k) != reference["parameters"].get(k))
        return [f"parameters differ ({', '.join(changed)}): the reference is for other settings"]
    lines = []
    if not tolerance.findings:  # compare only the claims the notebook enforces
        findings = {c for c, record in reference["claims"].items() if not record["enforced"]}
        reference = {**reference, "claims": {c: r for c, r in reference["claims"].items() if c not in findings}}
        run = {**run, "claims": {c: r for c, r in run["claims"].items() if c not in findings}}
    expected = dict(_leaves({k: reference[k] for k in ("headline", "claims")}))
    found = dict(_leaves({k: run[k] for k in ("headline", "claims")}))
    for path in [p for p in expected if p not in found]:
        lines.append(f"{path}: missing (reference {expected[path]!r})")
    for path in [p for p in found if p not in expected]:
        lines.append(f"{path}: new (not in the reference)")
    for path in [p for p in expected if p in found]:
        want, got = expected[path], found[path]
        if _is_number(want) and _is_number(got):
            if not (math.isfinite(want) and math.isfinite(got) and tolerance.allows(got, want)):
                lines.append(f"{path}: {got!r}, reference {want!r} (|Δ| = {abs(got - want):.3g}, "
                             f"allowed {tolerance.atol + tolerance.rtol * abs(want):.3g})")
        elif want != got and (tolerance.texts or not (isinstance(want, str) and isinstance(got, str))):
            lines.append(f"{path}: {got!r}, reference {want!r}")
    return lines


def reference_path(root: Path, name: str) -> Path:
    return root / REFERENCE_DIR / f"{name}.json"


def tolerance_for(name: str, reference: dict[str, Any]) -> Tolerance:
    """Rounding-level on the platform the reference was recorded on, the stated one elsewhere."""
    return SAME_PLATFORM if reference.get("platform") == platform_signature() else OTHER_PLATFORM[name]


def record(root: Path, name: str, metrics_path: Path) -> Path:
    """Write ``data/reference/NAME.json`` from a run's ``metrics.json``."""
    metrics = read_json(metrics_path)
    if metrics["notebook"] != name:
        raise ValueError(f"{metrics_path} is the metrics of {metrics['notebook']!r}, not {name!r}")
    payload = {
        "recorded_from": f"rlvr-book re-record {name} (the book's execution: preset, seed and device below)",
        "platform": platform_signature(),
        **reference_record(metrics),
    }
    return write_json_atomic(reference_path(root, name), payload)
