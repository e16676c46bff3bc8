"""Figure data against the committed references (data/reference/NAME.json). The marker
``reference`` compares the book's execution (build/outputs, from the papermill pass of
``make test``) with them; the other tests check the comparison and the re-record command."""

import json
import shutil

import pytest

from rlvr_dynamics.book import reference
from rlvr_dynamics.book.cli import main
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.files import project_root

ROOT = project_root()
OUTPUTS = ROOT / "build" / "outputs"


@pytest.mark.reference
@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_the_book_reproduces_the_reference_figure_data(name):
    path = reference.reference_path(ROOT, name)
    assert path.is_file(), f"no reference for {name}: `rlvr-book re-record {name}` after `make book`"
    metrics = OUTPUTS / name / "metrics.json"
    assert metrics.is_file(), f"no book execution of {name} at {metrics}: run `make book`"
    recorded = json.loads(path.read_text())
    tolerance = reference.tolerance_for(name, recorded)
    if not tolerance.compared:
        pytest.skip(f"{name} was recorded on another platform ({recorded['platform']}): {tolerance.why}")
    differences = reference.compare(recorded, json.loads(metrics.read_text()), tolerance)
    assert not differences, (f"{name} differs from {path} ({tolerance.why}); if the change is deliberate, "
                             f"re-record: rlvr-book re-record {name}\n" + "\n".join(differences))


def metrics_of(value=0.5, margin=0.25, steps=7, label="a", claims=None, **parameters):
    return {"notebook": "chapter", "headline": {"value": value, "series": [1.0, value], "steps": steps,
                                                "label": label, "nested": {"flag": True}},
            "claims": claims if claims is not None else [
                {"claim": "bound holds", "holds": margin >= 0, "worst_margin": margin, "n_checked": 10}],
            "parameters": {"preset": "ci", "seed": 0, "output_dir": "/anywhere", **parameters}}


TIGHT = reference.Tolerance(1e-6, 1e-9, "test")


def test_a_run_equal_to_its_reference_within_tolerance_passes():
    recorded = reference.reference_record(metrics_of())
    assert reference.compare(recorded, metrics_of(), TIGHT) == []
    assert reference.compare(recorded, metrics_of(value=0.5 * (1 + 1e-8)), TIGHT) == []
    moved = metrics_of(**{"output_dir": "/elsewhere"})  # where a run writes is not part of its result
    assert reference.compare(recorded, moved, TIGHT) == []


@pytest.mark.parametrize("changed, expected", [
    (metrics_of(value=0.51), ["headline/value", "headline/series[1]"]),
    (metrics_of(margin=0.2), ["claims/bound holds/worst_margin"]),
    (metrics_of(steps=8), ["headline/steps"]),
    (metrics_of(label="b"), ["headline/label"]),
    (metrics_of(value=float("nan")), ["headline/value", "headline/series[1]"]),
    (metrics_of(claims=[]), ["claims/bound holds/worst_margin: missing", "claims/bound holds/n_checked: missing",
                             "claims/bound holds/enforced: missing"]),
    (metrics_of(claims=[{"claim": "bound holds", "holds": True, "worst_margin": 0.25, "n_checked": 10},
                        {"claim": "another", "holds": True, "worst_margin": 1.0, "n_checked": 1}]),
     ["claims/another/worst_margin: new", "claims/another/n_checked: new", "claims/another/enforced: new"]),
    (metrics_of(seed=1), ["parameters differ (seed)"]),
])
def test_every_kind_of_change_is_reported(changed, expected):
    recorded = reference.reference_record(metrics_of())
    lines = reference.compare(recorded, changed, TIGHT)
    assert len(lines) == len(expected) and all(
        line.startswith(start) for line, start in zip(lines, expected, strict=True)), lines


def test_another_platforms_tolerance_may_leave_texts_and_findings_alone():
    """For float32 training on another CPU: numbers within the stated tolerance, texts (verdicts,
    formatted intervals) and non-enforced findings free; enforced claims still compared."""
    loose = reference.Tolerance(0.1, 0.02, "test", texts=False, findings=False)
    finding = {"claim": "a finding", "holds": True, "worst_margin": 0.0, "n_checked": 1, "enforced": False}
    enforced = {"claim": "bound holds", "holds": True, "worst_margin": 0.25, "n_checked": 10}
    recorded = reference.reference_record(metrics_of(claims=[enforced, finding]))
    flipped = {**finding, "holds": False, "worst_margin": -1.0}
    assert reference.compare(recorded, metrics_of(value=0.52, label="b", claims=[enforced, flipped]), loose) == []
    assert len(reference.compare(recorded, metrics_of(label="b", claims=[enforced, flipped]), TIGHT)) == 2
    broken = {**enforced, "worst_margin": 0.1}
    assert [line.split(":")[0] for line in reference.compare(recorded, metrics_of(claims=[broken, finding]), loose)] \
        == ["claims/bound holds/worst_margin"]


def test_the_tolerance_is_rounding_level_on_the_recording_platform_and_stated_elsewhere():
    recorded = {"platform": reference.platform_signature()}
    assert reference.tolerance_for("figure2", recorded) is reference.SAME_PLATFORM
    other = {"platform": {**reference.platform_signature(), "cpu": "another CPU"}}
    assert reference.tolerance_for("figure2", other) is reference.OTHER_PLATFORM["figure2"]
    assert set(reference.OTHER_PLATFORM) == set(NOTEBOOKS)
    assert all(t.why and t.rtol >= 0 and t.atol >= 0 for t in reference.OTHER_PLATFORM.values())
    assert reference.SAME_PLATFORM.compared and reference.SAME_PLATFORM.texts and reference.SAME_PLATFORM.findings


def test_re_record_writes_the_reference_from_the_book_execution(tmp_path, monkeypatch, capsys):
    """``rlvr-book re-record NAME`` copies build/outputs/NAME/metrics.json to data/reference; a
    run at other settings, a missing execution or an unknown name is refused in one line."""
    project = tmp_path / "project"
    for name in ("_toc.yml", "pyproject.toml"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    target = project / "build" / "outputs" / "gradient_gap" / "metrics.json"
    target.parent.mkdir(parents=True)
    book_run = {**metrics_of(device="cpu"), "notebook": "gradient_gap", "run_seconds": 3.0, "versions": {}}
    target.write_text(json.dumps(book_run))
    monkeypatch.chdir(project)

    assert main(["re-record", "gradient_gap"]) == 0
    written = json.loads((project / "data" / "reference" / "gradient_gap.json").read_text())
    metrics = json.loads(target.read_text())
    assert reference.compare(written, metrics, reference.SAME_PLATFORM) == []
    assert written["platform"] == reference.platform_signature()

    metrics["parameters"]["seed"] = 3
    target.write_text(json.dumps(metrics))
    before = (project / "data" / "reference" / "gradient_gap.json").read_bytes()
    capsys.readouterr()
    for argv, message in ((["re-record", "gradient_gap"], "not the book's ci execution"),
                          (["re-record", "figure1"], "no book execution of 'figure1'"),
                          (["re-record", "nosuch"], "nosuch")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert (project / "data" / "reference" / "gradient_gap.json").read_bytes() == before
