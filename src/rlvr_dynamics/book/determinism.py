"""Fingerprints of a run's results, to prove that two executions with the same seed agree.

A fingerprint maps each notebook's ``metrics.json`` (with the timing entries
:data:`~rlvr_dynamics.book.results.TIMING_KEYS` left out) and each of its figure files (PNG and SVG,
byte for byte) to a SHA-256. ``make test`` records the fingerprint of the papermill execution,
lets nbval execute every notebook a second time into the same folders, and
``tests/test_determinism.py`` compares the two.

    python -m rlvr_dynamics.book.determinism record build/outputs build/determinism/first-run.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from rlvr_dynamics.book.results import TIMING_KEYS
from rlvr_dynamics.files import read_json, write_json_atomic

FIGURE_SUFFIXES = (".png", ".svg")


def canonical_metrics(path: Path) -> bytes:
    """``metrics.json`` without its timings, serialized canonically."""
    metrics = read_json(path)
    for key in TIMING_KEYS:
        metrics.pop(key, None)
    return json.dumps(metrics, sort_keys=True, ensure_ascii=False).encode("utf-8")


def result_fingerprint(folder: Path) -> dict[str, str]:
    """File name → SHA-256 of one result folder: its metrics.json (canonical, timings aside; it must
    exist) and every figure file."""
    folder = Path(folder)
    files = {"metrics.json": hashlib.sha256(canonical_metrics(folder / "metrics.json")).hexdigest()}
    for path in sorted(folder.iterdir()):
        if path.suffix in FIGURE_SUFFIXES and not path.name.startswith("."):
            files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def fingerprint(outputs_dir: Path) -> dict[str, dict[str, str]]:
    """notebook → {file name → SHA-256} for every ``outputs_dir/NAME/`` holding a metrics.json."""
    return {folder.name: result_fingerprint(folder)
            for folder in sorted(p for p in Path(outputs_dir).iterdir() if (p / "metrics.json").is_file())}


def differences(first: dict[str, dict[str, str]], second: dict[str, dict[str, str]]) -> list[str]:
    """One line per notebook or file that is missing from one fingerprint or differs."""
    lines = []
    for notebook in sorted(set(first) | set(second)):
        a, b = first.get(notebook), second.get(notebook)
        if a is None or b is None:
            lines.append(f"{notebook}: only in the {'second' if a is None else 'first'} run")
            continue
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                state = "missing in one run" if None in (a.get(name), b.get(name)) else "differs"
                lines.append(f"{notebook}/{name}: {state}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlvr_dynamics.book.determinism",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="write the fingerprint of OUTPUTS to RECORD (JSON)")
    record.add_argument("outputs", type=Path)
    record.add_argument("record", type=Path)
    args = parser.parse_args(argv)
    prints = fingerprint(args.outputs)
    write_json_atomic(args.record, prints)
    print(f"fingerprint of {len(prints)} notebooks' results ({sum(map(len, prints.values()))} files): {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
