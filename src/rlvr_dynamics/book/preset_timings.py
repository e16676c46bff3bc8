"""``rlvr-book bench-presets``: how long each chapter takes at a preset (the ``paper`` one by default),
so a reader can plan a rerun.

Each chapter runs as ``rlvr-book run NAME --preset PRESET -p device DEVICE`` in its own process, one
after another (the machine's cores to itself), into a scratch folder; its wall time, the notebook's own
``run_seconds``, the device it ran on and how many of its claims held are recorded. A run refused
before it starts (a parameter or memory check: exit 2) is recorded with its one-line reason, a run past
``--timeout-minutes`` as stopped there, a failed run with its last line. ``-s NAME KEY VALUE`` shortens
a chapter where a record must fit a budget; the record lists every such change, so nothing is
shortened silently. The record (JSON, default ``build/bench/presets.json``) is shown in the performance
appendix when committed under ``data/benchmarks/presets/``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlvr_dynamics.bench.bandit import machine
from rlvr_dynamics.book.params import PRESETS
from rlvr_dynamics.book.registry import NOTEBOOKS, notebook_spec
from rlvr_dynamics.config import ParameterError
from rlvr_dynamics.files import package_versions, read_json, write_json_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rlvr-book bench-presets``."""
    parser.add_argument("names", nargs="*", help="only these chapters (default: every one)")
    parser.add_argument("--preset", default="paper", choices=PRESETS, help="the preset timed (default paper)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    parser.add_argument("--timeout-minutes", type=float, default=60.0,
                        help="stop a chapter after this many minutes and record that (default 60)")
    parser.add_argument("-s", "--shorten", nargs=3, action="append", metavar=("NAME", "KEY", "VALUE"), default=[],
                        help="run chapter NAME with parameter KEY = VALUE (recorded as a shortening)")
    parser.add_argument("--output", default="build/bench/presets.json", help="JSON file for the record")


def check(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Every option checked before anything runs; returns the shortenings by chapter."""
    for name in args.names:
        notebook_spec(name)  # an unknown name is a one-line error
    if not 0 < args.timeout_minutes <= 24 * 60:
        raise ParameterError(f"--timeout-minutes = {args.timeout_minutes} is out of range: allowed 0 < minutes ≤ 1440")
    shortened: dict[str, dict[str, str]] = {}
    for name, key, value in args.shorten:
        spec = notebook_spec(name)
        if key in ("preset", "device", "output_dir", "seed"):
            raise ParameterError(f"--shorten {name} {key}: '{key}' is set by bench-presets itself")
        if key in shortened.get(name, {}):
            raise ParameterError(f"--shorten {name} {key} is given twice")
        shortened.setdefault(name, {})[key] = value
    for name, values in shortened.items():  # each chapter's changes together: a combination can be inconsistent
        spec = notebook_spec(name)
        spec.resolve({**{key: spec.parameter(key).coerce(text) for key, text in values.items()},
                      "preset": args.preset, "device": args.device}, strict=True, check_device=False)
    return shortened


def time_chapter(name: str, preset: str, device: str, parameters: dict[str, str], timeout_s: float,
                 scratch: Path) -> dict:
    """One chapter at ``preset`` in its own process: wall seconds and what its metrics say."""
    output = scratch / name
    command = [sys.executable, "-m", "rlvr_dynamics", "run", name, "--preset", preset, "--output-dir", str(output),
               "-p", "device", device]
    for key, value in parameters.items():
        command += ["-p", key, value]
    started = time.perf_counter()
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return {"status": "stopped", "seconds": time.perf_counter() - started,
                "reason": f"did not finish within {timeout_s / 60:g} min"}
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        lines = [line for line in finished.stderr.splitlines() if line.strip()]
        return {"status": "refused" if finished.returncode == 2 else "failed", "seconds": seconds,
                "reason": lines[-1] if lines else f"exit {finished.returncode}"}
    metrics = read_json(output / "metrics.json")
    claims = metrics.get("claims", [])
    return {"status": "finished", "seconds": seconds, "run_seconds": metrics.get("run_seconds"),
            "device": metrics.get("device"), "claims": len(claims),
            "claims_held": sum(bool(claim["holds"]) for claim in claims),
            "enforced_failed": [claim["claim"] for claim in claims if claim.get("enforced") and not claim["holds"]]}


def run(args: argparse.Namespace, command: str) -> int:
    """``rlvr-book bench-presets``: time, print, write ``args.output``; exit 1 if a chapter failed."""
    shortened = check(args)
    names = args.names or [name for name in NOTEBOOKS if name != "performance"]  # it reads records only
    record = {"measured_on": time.strftime("%Y-%m-%d"), "command": command, "preset": args.preset,
              "device": args.device, "machine": machine(), "versions": package_versions(),
              "timeout_minutes": args.timeout_minutes, "shortened": shortened, "chapters": {}}
    with tempfile.TemporaryDirectory(prefix="rlvr-presets-") as scratch:
        for name in names:
            print(f"[{args.preset}] {name} ...", flush=True)
            result = time_chapter(name, args.preset, args.device, shortened.get(name, {}),
                                  60 * args.timeout_minutes, Path(scratch))
            record["chapters"][name] = result
            held = (f", {result['claims_held']}/{result['claims']} claims held" if result["status"] == "finished"
                    else f": {result['reason']}")
            print(f"[{args.preset}] {name}: {result['status']} in {result['seconds'] / 60:.1f} min{held}", flush=True)
            write_json_atomic(Path(args.output), record)  # after every chapter: a stop keeps what was measured
    total = sum(result["seconds"] for result in record["chapters"].values())
    print(f"total {total / 60:.1f} min; written: {args.output}")
    return 1 if any(result["status"] == "failed" for result in record["chapters"].values()) else 0
