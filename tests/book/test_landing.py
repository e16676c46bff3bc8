"""*Results at a glance* is generated from the runs, and fails when a finding it lists loses its claim."""

from __future__ import annotations

import json
import re

import pytest

from rlvr_dynamics.book import landing
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.book.robustness import load_tables
from rlvr_dynamics.files import project_root

ROOT = project_root()


def fake_metrics(findings=landing.FINDINGS, extra=1) -> dict[str, dict]:
    """Runs in which every finding's claim has the outcome it relies on, plus ``extra`` claims per
    chapter that hold."""
    metrics = {name: {"claims": [{"claim": f"{name} claim {i}", "holds": True, "enforced": True}
                                 for i in range(extra)]} for name in NOTEBOOKS}
    for finding in findings:
        metrics[finding.chapter]["claims"].append({"claim": finding.claim, "holds": finding.holds,
                                                   "enforced": finding.holds})
    return metrics


def robustness(held: int = 10) -> dict[str, dict]:
    return {name: {"seeds": list(range(10)), "run_seconds": {"0": 60.0 * (i + 1), "1": 1.0},
                   "claims": [{"claim": "a", "enforced": True, "held": held, "of": 10},
                              {"claim": "b", "enforced": True, "held": 10, "of": 10},
                              {"claim": "c", "enforced": False, "held": 0, "of": 10}]}
            for i, name in enumerate(NOTEBOOKS)}


def test_every_finding_names_a_claim_of_its_chapter_and_a_section_it_has():
    """Each finding backs onto the committed record of its chapter's claims and links a section target
    that its chapter defines."""
    tables = load_tables(ROOT, list(NOTEBOOKS))
    for finding in landing.FINDINGS:
        claims = {claim["claim"]: claim for claim in tables[finding.chapter]["claims"]}
        assert finding.claim in claims, f"{finding.chapter}: {finding.claim!r} is not in data/robustness"
        record = claims[finding.claim]
        # the outcome the landing page relies on is the one recorded at every seed
        assert record["held"] == (record["of"] if finding.holds else 0), (finding.claim, record)
        source = (ROOT / NOTEBOOKS[finding.chapter].source).read_text(encoding="utf-8")
        assert re.search(rf"^\({re.escape(finding.section)}\)=\n#+ ", source, flags=re.M), finding.section
    assert {f.reproduces for f in landing.FINDINGS} == {True, False}


def test_the_glance_counts_claims_per_chapter_and_links_each_finding():
    metrics = fake_metrics(extra=2)
    titles = {name: spec.title for name, spec in NOTEBOOKS.items()}
    page = landing.render_glance(metrics, robustness(held=9), titles)
    total = sum(len(m["claims"]) for m in metrics.values())
    fails = sum(not f.holds for f in landing.FINDINGS)
    assert f"**{total} claims checked, {total - fails} hold**" in page
    # one row per chapter: its claims, those that hold, and 1 of its 2 enforced claims held at every seed
    assert page.count("* - {doc}`") == len(NOTEBOOKS)
    assert page.count("  - 1 of 2") == len(NOTEBOOKS)
    for finding in landing.FINDINGS:
        assert f"({{ref}}`{finding.section}`)" in page
    assert page.index("**What reproduces.**") < page.index("**What does not reproduce as stated.**")
    # run times: the seed-0 runs summed (60 s × (1 + … + n) for n chapters), the slowest (the last) named
    n = len(NOTEBOOKS)
    assert f"take {n * (n + 1) // 2} min in all" in page
    assert f"(the slowest, {{doc}}`../notebooks/performance`, {n} min)" in page


def test_a_finding_whose_claim_disappears_or_flips_fails_the_build():
    metrics = fake_metrics()
    finding = landing.FINDINGS[0]
    titles = {}
    gone = json.loads(json.dumps(metrics))
    gone[finding.chapter]["claims"] = [c for c in gone[finding.chapter]["claims"] if c["claim"] != finding.claim]
    with pytest.raises(ValueError, match="no claim"):
        landing.render_glance(gone, robustness(), titles)
    flipped = json.loads(json.dumps(metrics))
    for claim in flipped[finding.chapter]["claims"]:
        if claim["claim"] == finding.claim:
            claim["holds"] = False
    with pytest.raises(ValueError, match="the landing page says it holds"):
        landing.render_glance(flipped, robustness(), titles)
    rejected = next(f for f in landing.FINDINGS if not f.holds)
    now_holds = json.loads(json.dumps(metrics))
    for claim in now_holds[rejected.chapter]["claims"]:
        if claim["claim"] == rejected.claim:
            claim["holds"] = True
    with pytest.raises(ValueError, match="the landing page says it fails"):
        landing.render_glance(now_holds, robustness(), titles)


def test_write_glance_writes_the_page_the_intro_includes(tmp_path):
    outputs = tmp_path / "outputs"
    for name, metrics in fake_metrics().items():
        (outputs / name).mkdir(parents=True)
        (outputs / name / "metrics.json").write_text(json.dumps(metrics))
    page = landing.write_glance(tmp_path / "site", outputs, ROOT)
    assert page == tmp_path / "site" / landing.GLANCE_PAGE
    assert "claims checked" in page.read_text()
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    assert "```{include} " + landing.GLANCE_PAGE.removeprefix("book/") in intro
