"""Claims across seeds (rlvr_dynamics.book.robustness): the tables are built right, and the committed
ones show every enforced claim of every chapter holding at every seed 0–9."""

from __future__ import annotations

import json

import pytest

from rlvr_dynamics.book import robustness
from rlvr_dynamics.book.reference import reference_path
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.config import ParameterError
from rlvr_dynamics.files import project_root

ROOT = project_root()


def test_parse_seeds():
    assert robustness.parse_seeds("0-9") == list(range(10))
    assert robustness.parse_seeds(" 7, 1-3 ,2") == [1, 2, 3, 7]
    for bad, message in (("3-1", "is empty"), ("a", "is not a seed"), ("0-2000", "at most 1000"), ("", "not a seed")):
        with pytest.raises(ParameterError, match=message):
            robustness.parse_seeds(bad)


def metrics(*claims):
    return {"metrics": {"run_seconds": 1.0, "claims": [
        {"claim": text, "holds": float(margin) >= 0, "worst_margin": margin, "enforced": enforced}
        for text, margin, enforced in claims]}}


def test_the_table_counts_seeds_and_keeps_the_worst_margin():
    outcomes = {0: metrics(("a", 0.5, True), ("b", -1.0, False)),
                1: metrics(("a", 0.2, True), ("b", 2.0, False)),
                2: metrics(("a", -0.1, True)),  # its run broke at "a" (enforced) before checking "b"
                3: {"error": "ZeroDivisionError"}}
    table = robustness.seed_table("chapter", "ci", [0, 1, 2, 3], outcomes)
    a, b = table["claims"]
    assert (a["claim"], a["held"], a["of"], a["worst_margin"]) == ("a", 2, 4, None)  # missing at seed 3
    assert a["margins"] == {"0": 0.5, "1": 0.2, "2": -0.1} and a["holds"] == {"0": True, "1": True, "2": False}
    assert (b["held"], b["enforced"]) == (1, False)
    assert table["errors"] == {"3": "ZeroDivisionError"}
    assert robustness.failures(table) == ["chapter: 'a' held at 2 of 4 seeds"]  # "b" is not enforced
    complete = robustness.seed_table("chapter", "ci", [0, 1], outcomes)
    assert complete["claims"][0]["worst_margin"] == 0.2 and robustness.failures(complete) == []
    infinite = robustness.seed_table("c", "ci", [0], {0: metrics(("x", "inf", True))})
    assert infinite["claims"][0]["worst_margin"] == float("inf")


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_every_enforced_claim_held_at_every_seed(name):
    tables = robustness.load_tables(ROOT, [name])
    assert name in tables, f"no {robustness.table_path(ROOT, name)}: run `rlvr-book robustness {name}`"
    table = tables[name]
    assert table["preset"] == "ci" and table["seeds"] == list(range(10)) and not table["errors"]
    assert robustness.failures(table) == []


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_the_table_lists_the_chapters_claims(name):
    """The table is current: the same claims, enforced alike, as the book's reference execution."""
    table = robustness.load_tables(ROOT, [name])[name]
    reference = json.loads(reference_path(ROOT, name).read_text(encoding="utf-8"))["claims"]
    assert {c["claim"]: c["enforced"] for c in table["claims"]} == {k: v["enforced"] for k, v in reference.items()}
