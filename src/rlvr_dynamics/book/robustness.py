"""Claims across seeds: a claim the book states must hold for any seed, not only for the book's.

:func:`run` executes chapters at a list of seeds (``rlvr-book robustness``; parallel jobs, one
thread per kernel, a progress bar) and writes one table per chapter, ``data/robustness/NAME.json``:
for every claim, whether it is enforced, its margin at each seed, at how many seeds it held and its
worst margin. A run whose enforced claim breaks fails (the chapter's closing cell asserts), but it
has written its ``metrics.json`` first, so the table records the failure with its margin; a run that
stops earlier records its error. ``tests/book/test_robustness.py`` fails when a committed table
shows an enforced claim failing at any seed, or no longer lists the chapter's claims; the book's
reproducibility appendix shows the tables.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rlvr_dynamics.book import interrupt
from rlvr_dynamics.book.params import NotebookSpec
from rlvr_dynamics.config import ParameterError
from rlvr_dynamics.files import package_versions, project_root, read_json, write_json_atomic

ROBUSTNESS_DIR = Path("data") / "robustness"
DEFAULT_SEEDS = "0-9"


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-9"``, ``"1,4,7"`` or ``"0-4,9"``: distinct, in increasing order; a one-line
    :class:`ParameterError` names a bad item."""
    seeds: set[int] = set()
    for item in (part.strip() for part in str(text).split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise ParameterError(f"--seeds {text!r}: {item!r} is not a seed or a range like 0-9")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise ParameterError(f"--seeds {text!r}: the range {item!r} is empty")
        seeds.update(range(low, high + 1))
    if len(seeds) > 1000:
        raise ParameterError(f"--seeds {text!r}: {len(seeds)} seeds, allowed at most 1000")
    return sorted(seeds)


def _number(margin: Any) -> float:
    """A margin from metrics.json as a float (JSON keeps inf and nan as the strings "inf" and "nan")."""
    return float(margin)


def seed_table(name: str, preset: str, seeds: Sequence[int], outcomes: Mapping[int, dict[str, Any]]) -> dict:
    """The table of chapter ``name`` from one outcome per seed: ``{"metrics": metrics.json}`` or
    ``{"error": text}``. Claims are listed in the order the chapter checks them; per claim, its margin
    and whether it held at each seed (a claim missing at a seed — its run stopped first — did not
    hold there), the number of seeds at which it held and its worst margin over the seeds."""
    entries: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        for claim in outcomes[seed].get("metrics", {}).get("claims", []):
            entry = entries.setdefault(claim["claim"], {"claim": claim["claim"], "enforced": claim["enforced"],
                                                        "margins": {}, "holds": {}})
            entry["enforced"] = entry["enforced"] or claim["enforced"]
            entry["margins"][str(seed)] = _number(claim["worst_margin"])
            entry["holds"][str(seed)] = bool(claim["holds"])
    claims = []
    for entry in entries.values():
        margins = [entry["margins"][str(seed)] for seed in seeds if str(seed) in entry["margins"]]
        worst = min(margins) if len(margins) == len(seeds) and not any(math.isnan(m) for m in margins) else None
        claims.append({**entry, "held": sum(entry["holds"].values()), "of": len(seeds), "worst_margin": worst})
    return {
        "chapter": name, "preset": preset, "seeds": list(seeds), "measured_on": time.strftime("%Y-%m-%d"),
        "command": f"rlvr-book robustness {name} --seeds {','.join(map(str, seeds))} --preset {preset}",
        "errors": {str(seed): outcomes[seed]["error"] for seed in seeds if "error" in outcomes[seed]},
        "run_seconds": {str(seed): outcomes[seed].get("metrics", {}).get("run_seconds") for seed in seeds},
        "versions": package_versions(), "claims": claims,
    }


def table_path(root: Path, name: str) -> Path:
    return root / ROBUSTNESS_DIR / f"{name}.json"


def load_tables(root: Path, names: Sequence[str]) -> dict[str, dict]:
    """The committed tables of ``names`` that exist."""
    return {name: read_json(table_path(root, name))
            for name in names if table_path(root, name).is_file()}


def failures(table: Mapping[str, Any]) -> list[str]:
    """One line per enforced claim that did not hold at every seed of ``table``."""
    return [f"{table['chapter']}: {claim['claim']!r} held at {claim['held']} of {claim['of']} seeds"
            for claim in table["claims"] if claim["enforced"] and claim["held"] < claim["of"]]


def _outcome(spec: NotebookSpec, seed: int, preset: str, folder: Path, root: Path) -> dict[str, Any]:
    """Execute ``spec`` at ``seed``; the run's metrics.json, or its error when it wrote none."""
    from rlvr_dynamics.book.runner import execute_notebook

    metrics = folder / "metrics.json"
    metrics.unlink(missing_ok=True)
    parameters = {"preset": preset, "seed": seed, "device": "cpu", "output_dir": str(folder)}
    error = None
    try:
        execute_notebook(spec, parameters, folder / f"{spec.name}.ipynb", root)
    except Exception as exception:  # a broken enforced claim fails the run after writing its metrics
        if interrupt.requested():
            raise
        lines = [line for line in str(exception).strip().splitlines() if line.strip()]
        error = lines[-1] if lines else type(exception).__name__
    if metrics.is_file():
        return {"metrics": read_json(metrics)}
    return {"error": error or "no metrics.json written"}


def run(specs: Sequence[NotebookSpec], seeds: Sequence[int], preset: str = "ci", jobs: int = 1,
        output: Path | None = None, log: Callable[[str], None] = print, progress: bool = True) -> list[str]:
    """Execute every chapter of ``specs`` at every seed (``jobs`` kernels at a time, each on one thread),
    write one table per chapter into ``output`` (default ``data/robustness``) and return the
    enforced claims that failed at some seed (:func:`failures`), one line each."""
    from tqdm import tqdm

    from rlvr_dynamics.book.runner import BOOK_THREADS, EXECUTION_ORDER, _environment, build_dir

    root = project_root()
    output = Path(output) if output is not None else root / ROBUSTNESS_DIR
    rank = {name: i for i, name in enumerate(EXECUTION_ORDER)}
    work = sorted(((spec, seed) for spec in specs for seed in seeds), key=lambda job: (rank.get(job[0].name, 99),
                                                                                        job[1]))
    outcomes: dict[str, dict[int, dict]] = {spec.name: {} for spec in specs}

    def one(spec: NotebookSpec, seed: int) -> tuple[str, int, dict]:
        if interrupt.requested():
            raise KeyboardInterrupt  # Ctrl-C: start no further kernel
        folder = build_dir(root) / "robustness" / spec.name / f"seed-{seed}"
        return spec.name, seed, _outcome(spec, seed, preset, folder, root)

    with _environment(BOOK_THREADS), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, spec, seed) for spec, seed in work]
        with tqdm(total=len(futures), desc="chapter × seed", unit="run", disable=not progress) as bar:
            for future in as_completed(futures):
                name, seed, outcome = future.result()
                outcomes[name][seed] = outcome
                state = "error" if "error" in outcome else "ok"
                bar.set_postfix_str(f"{name} seed {seed}: {state}")
                bar.update()
    broken = []
    for spec in specs:
        table = seed_table(spec.name, preset, seeds, outcomes[spec.name])
        path = write_json_atomic(output / f"{spec.name}.json", table)
        stopped = [f"{spec.name}: seed {seed} stopped: {error}" for seed, error in table["errors"].items()]
        failed = failures(table) + stopped
        log(f"{spec.name}: {len(table['claims'])} claims at {len(seeds)} seed(s): "
            + (f"{len(failed)} failure(s)" if failed else "every enforced claim held at every seed") + f" -> {path}")
        broken += failed
    return broken
