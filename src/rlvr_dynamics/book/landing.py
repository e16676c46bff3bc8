"""*Results at a glance*, the top of the book's landing page, generated from the runs.

Nothing in it is typed by hand: the claims checked and held per chapter come from the runs'
``metrics.json`` (the build's seed) and the committed records over seeds 0–9
(``data/robustness/NAME.json``, :mod:`rlvr_dynamics.book.robustness`); the time the chapters take
comes from the same records; what reproduces and what does not is the curated list
:data:`FINDINGS`, each entry naming the claim that backs it — :func:`render_glance` raises when that
claim is missing from its chapter's run or no longer has the outcome the entry states, so the landing
page cannot keep a headline the book no longer shows. :func:`write_glance` is called when the book is
staged (:func:`rlvr_dynamics.book.runner.stage_site`); ``book/intro.md`` includes the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from rlvr_dynamics.book.appendix import escape_markdown, load_metrics

GLANCE_PAGE = "book/results_at_a_glance.md"
ROBUSTNESS_SEED = "0"  # the records' run at the book's seed gives each chapter's measured run time


@dataclass(frozen=True)
class Finding:
    """One line of *Results at a glance*.

    Attributes:
        reproduces: True for a result of the paper the book reproduces, False for one it does not
            reproduce as stated (the text says what the book finds instead).
        text: the line a reader sees (MyST).
        chapter: the notebook that shows it.
        section: the MyST target of the section that shows it (``(label)=`` before its heading).
        claim: the exact text of the claim in the chapter's ``metrics.json`` that backs the line.
        holds: the outcome of that claim the line relies on (a paper's hypothesis the book tests and
            rejects is backed by its claim failing).
    """

    reproduces: bool
    text: str
    chapter: str
    section: str
    claim: str
    holds: bool = True


FINDINGS: tuple[Finding, ...] = (
    Finding(True, "The Gradient-Gap identity (10), $\\nabla J = J(1-J)(g^+ - g^-)$, holds to rounding in closed "
            "form, with autograd and by Monte Carlo.", "gradient_gap", "gg-sec-identity",
            "Identity (10), closed form = autograd: token-level policies, closed-form scores"),
    Finding(True, "Theorem 1(b): under the step condition (15a) the success rate stays above the bound (15b) at "
            "every step of every run.", "trajectory_theory", "tt-sec-theorem1",
            "Theorem 1(b) at every K ≥ 1 when η_k satisfies (15a): f_K − f0 ≥ M(K)/2, i.e. J_K ≥ (15b) "
            "(3 rules × 7 starts)"),
    Finding(True, "Theorem 2: an explicit instance in which every step is aligned with the gap and the success "
            "rate still falls at every step.", "trajectory_theory", "tt-sec-theorem2",
            "Theorem 2 instance: J strictly decreases at every step for every η in the window"),
    Finding(True, "Theorem 4 at the token level: explicit instances collapse ($J < 10^{-3}$) at steps inside "
            "the window (19).", "token_theory", "tok-sec-theorem4",
            "Theorem 4 instances: J falls below 10⁻³ within 20000 steps at every length and instance"),
    Finding(True, "Length normalization: Dr. GRPO's effective step outgrows the safe step in proportion to the "
            "response length; GRPO's $1/|o|$ removes most of that growth.", "token_theory",
            "tok-sec-effective-steps",
            "GRPO's length normalization removes most of the growth (T-slope below Dr. GRPO's by ≥ 0.4)"),
    Finding(True, "Figure 1, Observation 2: contexts either converge or stay stuck; a context converges exactly "
            "when its optimal arm is the arm the policy learns.", "figure1", "f1-sec-findings",
            "Observation 2: two regimes — at most 5% of contexts end with 0.1 < J_K < 0.9 (every seed)"),
    Finding(True, "The two-stage dynamic of Yao et al.: the better action takes over later for a smaller initial "
            "probability, earlier with more rollouts.", "two_stage", "ts-sec-rollouts",
            "The takeover comes later for a smaller π_O(0) (every G)"),
    Finding(False, "The second-order expansion (17) as printed leaves an $O(\\eta^2)$ residual: it needs a factor "
            "$\\tfrac12$.", "trajectory_theory", "tt-sec-expansion",
            "Without the ½ (the paper's (17) as printed) the residual shrinks only like η² (median slope < 2.2)"),
    Finding(False, "The $1/T$ length law of (18a) and (19): the measured critical step falls more slowly than "
            "$1/T$.", "token_theory", "tok-sec-length-law",
            "Length law: the paper's 1/T is not attained (every verifier's 95% interval lies above −1)"),
    Finding(False, "The paper's hypothesis that GRPO with a fixed learning rate stagnates strictly below 100% is "
            "not observed in sampled training.", "token_theory", "tok-sec-sampled-training",
            "Paper's hypothesis: GRPO stagnates strictly below 100% (tail-J interval < 0.99 at every working "
            "rate ≥ 16)", holds=False),
    Finding(False, "Figure 2's cumulative gap as the variable accuracy follows: across optimizers and learning "
            "rates the step count predicts held-out runs better than the cumulative gap.", "figure2", "f2-sec-clock",
            "the step count predicts held-out runs better than the cumulative gap (b) (mean over GRPO seeds)"),
    Finding(False, "Yao et al.'s negative-only updates as the way to keep the reasoning boundary: on many prompts "
            "GRPO-N and GSPO-N shrink pass@k at large k the most, and positive-only GRPO-P keeps it better.",
            "boundary", "bd-sec-exact",
            "GRPO-P ends with a larger pass@k at the largest k than GRPO-N (mean over the problems)"),
    Finding(False, "Yao et al.'s \"largely unchanged\" better action during exploitation: below a threshold it "
            "loses more than half its mass first.", "two_stage", "ts-sec-two-stage",
            "At the smallest π_O(0) the better action loses more than half its mass during exploitation "
            "(not 'largely unchanged')"),
)


def _claim(metrics: Mapping[str, Any], text: str) -> Mapping[str, Any] | None:
    return next((claim for claim in metrics["claims"] if claim["claim"] == text), None)


def check_findings(findings: Sequence[Finding], metrics_by_notebook: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise a ``ValueError`` naming every finding whose claim is missing from its chapter's run or has
    another outcome than the finding relies on."""
    wrong = []
    for finding in findings:
        metrics = metrics_by_notebook.get(finding.chapter)
        claim = None if metrics is None else _claim(metrics, finding.claim)
        if claim is None:
            wrong.append(f"{finding.chapter}: no claim {finding.claim!r} in its metrics.json")
        elif bool(claim["holds"]) != finding.holds:
            wrong.append(f"{finding.chapter}: claim {finding.claim!r} "
                         f"{'holds' if claim['holds'] else 'fails'}, the landing page says it "
                         f"{'holds' if finding.holds else 'fails'}")
    if wrong:
        raise ValueError("Results at a glance is out of date (rlvr_dynamics.book.landing.FINDINGS):\n"
                         + "\n".join(wrong))


def _held_at_every_seed(table: Mapping[str, Any] | None) -> tuple[int, int]:
    """(enforced claims that held at every recorded seed, enforced claims) of a robustness table."""
    enforced = [c for c in (table or {}).get("claims", []) if c["enforced"]]
    return sum(c["held"] == c["of"] for c in enforced), len(enforced)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def execution_seconds(robustness: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Each chapter's measured run time at the book's seed, from its record over seeds."""
    seconds = {}
    for name, table in robustness.items():
        runs = table.get("run_seconds", {})
        if ROBUSTNESS_SEED in runs:
            seconds[name] = float(runs[ROBUSTNESS_SEED])
        elif runs:
            seconds[name] = float(median(runs.values()))
    return seconds


def render_glance(metrics_by_notebook: Mapping[str, Mapping[str, Any]],
                  robustness: Mapping[str, Mapping[str, Any]], titles: Mapping[str, str],
                  findings: Sequence[Finding] = FINDINGS) -> str:
    """The MyST text of *Results at a glance* for these runs (book order) and records over seeds."""
    check_findings(findings, metrics_by_notebook)
    claims = [claim for metrics in metrics_by_notebook.values() for claim in metrics["claims"]]
    held = sum(bool(claim["holds"]) for claim in claims)
    enforced = sum(bool(claim["enforced"]) for claim in claims)
    seeds = sorted({int(s) for table in robustness.values() for s in table.get("seeds", [])})
    seed_text = f"seeds {seeds[0]}–{seeds[-1]}" if seeds else "the recorded seeds"
    lines = [
        f"**{len(claims)} claims checked, {held} hold** at the book's seed; {enforced} of them are enforced "
        f"(the build fails when one breaks), the others are findings the chapters report. The table counts them "
        f"per chapter, with how many enforced claims held at every one of {seed_text} "
        "({doc}`reproducibility` lists every claim).",
        "",
        ":::{list-table}",
        ":header-rows: 1",
        ":class: glance-table",
        "",
        "* - chapter",
        "  - claims",
        "  - hold",
        f"  - enforced, held at every seed ({seed_text})",
    ]
    for name, metrics in metrics_by_notebook.items():
        chapter_claims = metrics["claims"]
        every, of = _held_at_every_seed(robustness.get(name))
        lines += [f"* - {{doc}}`{escape_markdown(titles.get(name, name))} <../notebooks/{name}>`",
                  f"  - {len(chapter_claims)}",
                  f"  - {sum(bool(c['holds']) for c in chapter_claims)}",
                  f"  - {every} of {of}" if of else "  - —"]
    lines += [":::", ""]
    for reproduces, heading in ((True, "What reproduces"), (False, "What does not reproduce as stated")):
        lines += [f"**{heading}.**", ""]
        lines += [f"- {finding.text} ({{ref}}`{finding.section}`)" for finding in findings
                  if finding.reproduces is reproduces]
        lines += [""]
    seconds = execution_seconds({name: robustness[name] for name in metrics_by_notebook if name in robustness})
    if seconds:
        slowest = max(seconds, key=seconds.get)
        lines += [
            f"The chapters' executions at the `ci` preset take {_minutes(sum(seconds.values()))} in all, one after "
            f"the other (the slowest, {{doc}}`../notebooks/{slowest}`, {_minutes(seconds[slowest])}): the run times "
            "recorded with the claims over seeds (`data/robustness/`, measured on the 2-core CI machine kind).",
            "",
        ]
    return "\n".join(lines)


def write_glance(site: Path, outputs_dir: Path, root: Path) -> Path:
    """Render *Results at a glance* from ``outputs_dir/*/metrics.json`` and the committed records over
    seeds into the staged book ``site``."""
    from rlvr_dynamics.book.registry import NOTEBOOKS
    from rlvr_dynamics.book.robustness import load_tables
    from rlvr_dynamics.files import write_bytes_atomic

    metrics = load_metrics(outputs_dir)
    titles = {name: spec.title for name, spec in NOTEBOOKS.items()}
    text = render_glance(metrics, load_tables(root, list(metrics)), titles)
    return write_bytes_atomic(Path(site) / GLANCE_PAGE, text.encode("utf-8"))
