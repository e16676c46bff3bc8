"""Tests of the chapter context (rlvr_dynamics.book.chapter): validation, seeding, the one rule for
findings, and the closing cell that writes metrics.json and fails on a broken enforced claim."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rlvr_dynamics.book.chapter import Chapter  # noqa: E402
from rlvr_dynamics.book.registry import NOTEBOOKS  # noqa: E402


def start(tmp_path, **values):
    return Chapter.start("gradient_gap", {"output_dir": str(tmp_path / "out"), "device": "cpu", **values})


def test_start_validates_and_sets_up_the_run(tmp_path, capsys):
    chapter = start(tmp_path, seed=7)
    assert chapter.settings.seed == 7 and chapter.device == torch.device("cpu")
    assert chapter.config == NOTEBOOKS["gradient_gap"].config(**NOTEBOOKS["gradient_gap"].presets["ci"])
    assert (tmp_path / "out").is_dir()
    shown = capsys.readouterr().out  # outside IPython, display() prints each object's text/plain
    assert "Parameters of this run" in shown and "seed                         7" in shown
    assert "empirical findings enforced  yes" in shown and "output_dir" not in shown and str(tmp_path) not in shown
    assert "Rerun this chapter: .venv/bin/rlvr-book run gradient_gap -p seed 7 -p device cpu" in shown
    with pytest.raises(ValueError, match="parameter 'bandit_arms' = 1 is out of range"):
        start(tmp_path, bandit_arms=1)


def test_generators_are_explicitly_seeded_streams(tmp_path):
    chapter = start(tmp_path, seed=3)
    draw = lambda generator: torch.rand(3, generator=generator)  # noqa: E731
    assert torch.equal(draw(chapter.generator()), draw(torch.Generator().manual_seed(3)))
    assert torch.equal(draw(chapter.generator(offset=5)), draw(torch.Generator().manual_seed(3005)))
    assert not torch.equal(draw(chapter.generator(offset=5)), draw(chapter.generator(offset=6)))


def test_findings_are_enforced_only_at_the_settings_where_they_were_measured(tmp_path):
    at_ci = start(tmp_path)
    changed = start(tmp_path, bandit_instances=3)
    assert at_ci.findings_enforced and not changed.findings_enforced
    assert at_ci.finding("f", [1.0]).enforced and not changed.finding("f", [1.0]).enforced
    assert changed.check("fact", [1.0]).enforced and not at_ci.record("observation", [1.0]).enforced
    # the paper preset was not where this chapter's findings were measured; figure1's were (both presets)
    assert not Chapter.start("gradient_gap", {"preset": "paper", "output_dir": str(tmp_path), "device": "cpu"}
                             ).findings_enforced
    spec = NOTEBOOKS["figure1"]
    assert spec.enforces_findings(spec.config(**spec.presets["paper"]))


def test_finish_writes_the_metrics_and_fails_on_a_broken_enforced_claim_only(tmp_path):
    chapter = start(tmp_path, bandit_instances=3)  # findings not enforced here
    chapter.check("holds", [0.5, 2.0])
    chapter.finding("a finding that breaks", [-1.0])
    chapter.record("an observation that breaks", [-1.0])
    chapter.headline["value"] = 1.5
    with chapter.timed("part_s"):
        pass
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    chapter.show(fig, "plot")
    chapter.finish()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["headline"] == {"value": 1.5} and metrics["figures"] == ["plot.png", "plot.svg"]
    assert set(metrics["figure_legibility"]) == {"plot"} and metrics["figure_legibility"]["plot"]["column_pt"] >= 10
    assert [c["enforced"] for c in metrics["claims"]] == [True, False, False]
    assert set(metrics["timings_s"]) == {"part_s"} and metrics["device"] == "cpu"
    chapter.check("a fact that breaks", [0.1, -0.2])
    with pytest.raises(AssertionError, match="a fact that breaks"):
        chapter.finish(device="n/a")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["device"] == "n/a"


def test_show_refuses_a_figure_whose_text_is_too_small_in_the_column(tmp_path):
    chapter = start(tmp_path)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for ax in axes:
        ax.plot([0, 1])
        ax.set_title("panel", fontsize=8)
    with pytest.raises(ValueError, match="figure 'row': its smallest text 'panel' \\(8 pt\\)"):
        chapter.show(fig, "row")
    assert not (tmp_path / "out" / "row.png").exists() and chapter.figures == []
    fig, axes = plt.subplots(3, 1, figsize=(7, 9))  # the same panels stacked, default sizes: legible
    for ax in axes:
        ax.plot([0, 1])
        ax.set_title("panel")
    chapter.show(fig, "stacked")
    assert chapter.figures == ["stacked.png", "stacked.svg"]
    assert chapter.figure_legibility["stacked"]["column_pt"] >= 10


def test_the_parameters_table_and_the_rerun_command_follow_the_run(tmp_path):
    chapter = start(tmp_path, seed=2, vocab_size=5)
    rows = {row[0]: row[1:] for row in chapter.parameters_table().rows}
    assert rows["seed"] == ("2", "") and rows["vocab_size"] == ("5", "set") and rows["max_length"] == ("5", "preset")
    assert rows["empirical findings enforced"] == ("no", "") and "output_dir" not in rows
    assert chapter.rerun_box().command == (".venv/bin/rlvr-book run gradient_gap -p seed 2 -p device cpu "
                                           "-p vocab_size 5")


def test_table_and_finish_display_html_tables(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objects: shown.extend(objects))
    chapter = start(tmp_path)
    chapter.table(pd.DataFrame({"a": [np.float64(0.5)]}), caption="c")
    chapter.check("holds", [1.0])
    chapter.finish()
    box, parameters, table, claims = shown
    assert "run-parameters" in parameters.html() and "rerun-box" in box.html()
    assert table.caption == "c" and table.rows == (("0.5",),)
    assert "claims-table" in claims.html() and claims.rows[0][:2] == ("holds", "✓ yes")
