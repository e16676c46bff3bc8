"""Tests of rlvr_dynamics.book.preset_timings (``rlvr-book bench-presets``): a chapter run in its own process is
timed with its claims; a refused and a stopped run are each recorded with their reason."""

from __future__ import annotations

import argparse
import json

import pytest

from rlvr_dynamics.book import preset_timings
from rlvr_dynamics.config import ParameterError


def test_a_finished_run_records_its_time_device_and_claims(tmp_path):
    result = preset_timings.time_chapter("performance", "ci", "cpu", {}, 300, tmp_path)
    assert result["status"] == "finished" and result["device"] == "n/a"
    assert result["claims"] >= 4 and result["claims_held"] == result["claims"] and result["enforced_failed"] == []
    assert 0 < result["run_seconds"] <= result["seconds"]


def test_a_refused_and_a_stopped_run_keep_their_reasons(tmp_path):
    refused = preset_timings.time_chapter("performance", "ci", "tpu", {}, 300, tmp_path)
    assert refused["status"] == "refused" and "'tpu' is unknown" in refused["reason"]
    out_of_range = preset_timings.time_chapter("gradient_gap", "ci", "cpu", {"bandit_dim": "0"}, 300, tmp_path)
    assert out_of_range["status"] == "refused" and "bandit_dim" in out_of_range["reason"]
    stopped = preset_timings.time_chapter("gradient_gap", "ci", "cpu", {}, 0.5, tmp_path)
    assert stopped["status"] == "stopped" and stopped["reason"] == "did not finish within 0.00833333 min"


def test_the_record_is_written_after_every_chapter_and_names_its_shortenings(tmp_path, monkeypatch):
    calls = []

    def fake(name, preset, device, parameters, timeout_s, scratch):
        calls.append((name, parameters))
        record = json.loads(output.read_text()) if output.exists() else {"chapters": {}}
        assert list(record["chapters"]) == [n for n, _ in calls[:-1]]  # the earlier chapters are on disk
        return {"status": "finished", "seconds": 1.0, "claims": 1, "claims_held": 1, "enforced_failed": []}

    output = tmp_path / "presets.json"
    monkeypatch.setattr(preset_timings, "time_chapter", fake)
    args = argparse.Namespace(names=["figure1", "figure2"], preset="paper", device="cpu", timeout_minutes=5.0,
                              shorten=[["figure2", "steps", "20"]], output=str(output))
    assert preset_timings.run(args, "rlvr-book bench-presets …") == 0
    record = json.loads(output.read_text())
    assert calls == [("figure1", {}), ("figure2", {"steps": "20"})]
    assert record["shortened"] == {"figure2": {"steps": "20"}} and record["preset"] == "paper"


@pytest.mark.parametrize("shorten, message", [
    ([["figure1", "seed", "3"]], "'seed' is set by bench-presets itself"),
    ([["figure2", "steps", "0"]], "parameter 'steps' = 0 is out of range"),
])
def test_shortenings_are_checked_before_anything_runs(shorten, message):
    args = argparse.Namespace(names=[], preset="paper", device="cpu", timeout_minutes=5.0, shorten=shorten)
    with pytest.raises(ParameterError, match=message):
        preset_timings.check(args)
