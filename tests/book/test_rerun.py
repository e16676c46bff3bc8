"""The "Rerun this chapter" box (rlvr_dynamics.book.rerun): commands the CLI reads back, the measured
run time of the committed records, two valid variations per chapter, a stable text."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest

from rlvr_dynamics.book import cli, rerun
from rlvr_dynamics.book.params import NotebookSpec, Variation
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.config import ParameterError
from rlvr_dynamics.files import project_root


def resolved(command):
    """What `rlvr-book run` executes for the last `rlvr-book run` of ``command``: (settings, config)."""
    words = shlex.split(command.split(" && ")[-1])
    assert words[:2] == [rerun.CLI, "run"]
    args = cli.make_parser().parse_args(words[1:])
    spec = NOTEBOOKS[args.name]
    return spec.resolve(cli._collect_parameters(spec, args), strict=True, check_device=False)


def test_median_run_seconds_and_its_wording():
    assert rerun.median_run_seconds({"run_seconds": {"0": 4.0, "1": 6.0, "2": 5.5}}) == 5.5
    assert rerun.median_run_seconds({"run_seconds": {"0": 4.0, "1": 6.0}}) == 5.0
    assert rerun.median_run_seconds({"run_seconds": {}}) is None and rerun.median_run_seconds(None) is None
    assert [rerun.describe_seconds(s) for s in (None, 4.96, 18.2, 89, 150)] == [
        "not measured", "about 5.0 s", "about 18 s", "about 89 s", "about 2.5 min"]


def test_run_command_is_read_back_by_the_cli():
    command = rerun.run_command("figure1", "ci", {"seed": 3, "device": "cpu", "step_size": 1.0, "fallback": "nearest"})
    assert command == ".venv/bin/rlvr-book run figure1 -p seed 3 -p device cpu -p step_size 1.0 -p fallback nearest"
    settings, config = resolved(command)
    assert (settings.seed, settings.device, config.step_size, config.fallback) == (3, "cpu", 1.0, "nearest")
    assert rerun.run_command("two_stage", "paper") == ".venv/bin/rlvr-book run two_stage --preset paper"
    assert resolved(rerun.run_command("figure2", parameters={"learning_rates": "1e-4,3e-4,0.1"}))[1].learning_rates == (
        "1e-4,3e-4,0.1")


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_every_chapter_has_two_variations_the_cli_accepts_and_a_paper_note(name):
    spec = NOTEBOOKS[name]
    assert len(spec.variations) == 2 and spec.paper_note
    for variation in spec.variations:
        command = rerun.run_command(name, parameters=variation.parameters)
        settings, config = resolved(command)  # every value valid, the config's own check passes
        for key, value in variation.parameters.items():
            assert getattr(config, key) == value
        assert variation.why.endswith((".", "?"))


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_the_box_of_every_chapter_from_its_committed_record(name):
    record = rerun.load_record(project_root(), name)
    box = rerun.rerun_box(NOTEBOOKS[name], record, "ci", {"seed": 0, "device": "cpu"})
    html, text = box._repr_html_(), repr(box)
    assert html.startswith(f'<div class="{rerun.RERUN_CLASS}" id="rerun-{name.replace("_", "-")}">')
    assert f"rlvr-book run {name} -p seed 0 -p device cpu</code>" in html
    assert f"median over the 10 seeds of <code>data/robustness/{name}.json</code>" in html
    assert html.count('<pre class="rerun-command">') == 4 and f"run {name} --preset paper" in html
    assert text.splitlines()[0] == f"Rerun this chapter: .venv/bin/rlvr-book run {name} -p seed 0 -p device cpu"
    assert text == repr(rerun.rerun_box(NOTEBOOKS[name], record, "ci", {"seed": 0, "device": "cpu"}))
    assert str(project_root()) not in html + text


def test_the_run_time_is_the_median_of_the_record_and_html_is_escaped():
    spec = dataclasses.replace(NOTEBOOKS["performance"], paper_note="<same page>")
    box = rerun.rerun_box(spec, {"run_seconds": {"0": 1.0, "1": 120.0, "2": 200.0}})
    assert box.run_time == "about 2.0 min" and box.seeds_measured == 3
    assert "&lt;same page&gt;" in box.html() and "<same page>" not in box.html()
    assert "not measured yet" in rerun.rerun_box(spec, None).html()


def test_a_bad_variation_is_refused_when_the_spec_is_built():
    spec = NOTEBOOKS["gradient_gap"]
    fields = dict(name=spec.name, title=spec.title, source=spec.source, config=spec.config, presets=spec.presets)
    with pytest.raises(ParameterError, match="'vocab_size' = 99 is out of range"):
        NotebookSpec(**fields, variations=(Variation({"vocab_size": 99}, "Too large."),))
    with pytest.raises(ParameterError, match="unknown"):
        NotebookSpec(**fields, variations=(Variation({"typo": 1}, "Unknown."),))
    with pytest.raises(TypeError, match="needs parameters"):
        NotebookSpec(**fields, variations=(Variation({}, "Nothing to run."),))
    with pytest.raises(TypeError, match="no output_dir"):
        NotebookSpec(**fields, variations=(Variation({"output_dir": "x"}, "A folder."),))


def test_the_records_folder_is_the_robustness_runners():
    from rlvr_dynamics.book.robustness import ROBUSTNESS_DIR

    assert rerun.RECORDS_DIR == ROBUSTNESS_DIR


def test_the_paper_preset_timings_come_from_the_committed_preset_records(tmp_path):
    from rlvr_dynamics.book import runner

    assert rerun.PRESET_TIMINGS_DIR == runner.BENCHMARKS_DIR / "presets"
    folder = tmp_path / rerun.PRESET_TIMINGS_DIR
    folder.mkdir(parents=True)
    machine = {"cpu_count": 2, "cuda": None}
    (folder / "cpu.json").write_text(json.dumps({
        "preset": "paper", "device": "cpu", "measured_on": "2026-11-30", "machine": machine, "shortened": {},
        "chapters": {"figure1": {"status": "finished", "seconds": 480.0, "claims": 13, "claims_held": 13},
                     "figure2": {"status": "stopped", "seconds": 3600.0, "reason": "did not finish within 60 min"}}}))
    (folder / "gpu.json").write_text(json.dumps({
        "preset": "paper", "device": "cuda", "measured_on": "2026-12-01", "machine": {"cpu_count": 16, "cuda": "H200"},
        "shortened": {"figure2": {"steps": "100"}},
        "chapters": {"figure2": {"status": "finished", "seconds": 100.0, "claims": 9, "claims_held": 8}}}))
    (folder / "ci.json").write_text(json.dumps({"preset": "ci", "chapters": {"figure1": {"status": "finished"}}}))
    assert rerun.paper_timings(tmp_path, "figure1") == (
        "about 8.0 min on a 2-core CPU, 13 of 13 claims held (2026-11-30, cpu.json)",)
    assert rerun.paper_timings(tmp_path, "figure2") == (
        "stopped after about 60.0 min on a 2-core CPU: did not finish within 60 min (2026-11-30, cpu.json)",
        "about 1.7 min on H200, shortened (steps = 100), 8 of 9 claims held (2026-12-01, gpu.json)")
    assert rerun.paper_timings(tmp_path, "two_stage") == ()
    box = rerun.rerun_box(NOTEBOOKS["figure1"], None, timings=rerun.paper_timings(tmp_path, "figure1"))
    assert "Measured (<code>make bench-presets</code>, <code>make gpu-check</code>): about 8.0 min" in box.html()
    assert "  paper preset measured: about 8.0 min on a 2-core CPU" in box.text()
    assert "paper preset measured: not yet" in rerun.rerun_box(NOTEBOOKS["figure1"], None).text()
