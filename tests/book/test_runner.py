"""Caching of executions and of the book build (with a fake papermill and a fake Sphinx: these
tests are about what gets re-run, not about running it)."""

import json
import shutil
import subprocess

import nbformat
import pytest

from rlvr_dynamics.book import landing, runner
from rlvr_dynamics.book.appendix import escape_markdown
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.book.results import ClaimLog, write_metrics

REAL_ROOT = runner.project_root()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project's sources in tmp_path, with papermill and jupyter-book replaced by
    fakes that record what they were asked to do."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("_toc.yml", "_config.yml", "pyproject.toml"):
        shutil.copy2(REAL_ROOT / name, root / name)
    for folder in ("book", "notebooks", "src/rlvr_dynamics", "data/robustness"):
        shutil.copytree(REAL_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    executed, builds = [], []

    def fake_execute(spec, parameters, output_notebook, root=None):
        # the executed notebook resolves the relative output folder from its own project root
        settings, config = spec.resolve({**parameters, "output_dir": str(root / parameters["output_dir"])})
        claims = ClaimLog()
        claims.check(f"{spec.name} holds", [1.0])
        for finding in landing.FINDINGS:  # the claims the landing page names, with their outcomes
            if finding.chapter == spec.name:
                claims.check(finding.claim, [1.0 if finding.holds else -1.0], enforced=False)
        write_metrics(settings.output_dir, spec.name, settings, config, "cpu", {}, claims, [f"{spec.name}.png"])
        (settings.output_dir / f"{spec.name}.png").write_bytes(b"\x89PNG " + spec.name.encode())
        output_notebook.parent.mkdir(parents=True, exist_ok=True)
        source = (root / spec.source).read_text()  # the executed notebook carries its source
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(source)]), output_notebook)
        executed.append(spec.name)
        return output_notebook

    def fake_sphinx(command, check, env):
        html = root / "build" / "site" / "_build" / "html"
        html.mkdir(parents=True, exist_ok=True)
        (html / "index.html").write_text("<html></html>")
        builds.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(runner, "project_root", lambda: root)
    monkeypatch.setattr(runner, "execute_notebook", fake_execute)
    monkeypatch.setattr(runner.subprocess, "run", fake_sphinx)
    return root, executed, builds


def build(executed, builds, log=None):
    """(the notebooks executed, in book order; the number of Sphinx builds); ``log`` collects the lines."""
    executed.clear()
    builds.clear()
    runner.build_book(log=(log.append if log is not None else lambda line: None))
    return [name for name in NOTEBOOKS if name in executed], len(builds)


def test_a_second_build_executes_and_rebuilds_nothing(project):
    root, executed, builds = project
    assert build(executed, builds) == (list(NOTEBOOKS), 1)
    assert build(executed, builds) == ([], 0)


def test_a_changed_notebook_re_executes_only_itself(project):
    root, executed, builds = project
    build(executed, builds)
    source = root / "notebooks" / "figure1.md"
    source.write_text(source.read_text() + "\nOne more sentence.\n")
    assert build(executed, builds) == (["figure1"], 1)
    assert build(executed, builds) == ([], 0)


def test_a_changed_page_rebuilds_the_book_but_executes_nothing(project):
    root, executed, builds = project
    build(executed, builds)
    page = root / "book" / "notation.md"
    page.write_text(page.read_text() + "\nA new remark.\n")
    assert build(executed, builds) == ([], 1)


def edit(path):
    path.write_text(path.read_text() + "\n# a comment changes the code digest\n")


def test_lost_outputs_or_changed_code_re_execute(project):
    root, executed, builds = project
    build(executed, builds)
    (root / "build" / "outputs" / "two_stage" / "metrics.json").unlink()
    assert build(executed, builds) == (["two_stage"], 1)
    edit(root / "src" / "rlvr_dynamics" / "engines" / "token_training.py")  # imported by the token-level chapter only
    assert build(executed, builds)[0] == ["token_theory"]
    edit(root / "src" / "rlvr_dynamics" / "engines" / "bandit.py")  # imported by four chapters' modules
    assert sorted(build(executed, builds)[0]) == ["boundary", "figure1", "many_prompts", "performance",
                                                  "trajectory_theory"]
    edit(root / "src" / "rlvr_dynamics" / "chapters" / "figure2.py")  # one chapter: another's cache holds
    assert build(executed, builds)[0] == ["figure2"]
    edit(root / "src" / "rlvr_dynamics" / "book" / "results.py")  # imported by every notebook's chapter context
    assert sorted(build(executed, builds)[0]) == sorted(NOTEBOOKS)


def test_a_changed_record_over_seeds_re_executes_its_chapter_only(project):
    root, executed, builds = project
    build(executed, builds)
    record = root / "data" / "robustness" / "figure2.json"  # the chapter's prose quotes its record
    record.write_text(json.dumps(dict(json.loads(record.read_text()), measured_on="later")))
    assert build(executed, builds)[0] == ["figure2"]


def test_code_no_notebook_imports_executes_nothing(project):
    root, executed, builds = project
    build(executed, builds)
    for module in ("book/browser.py", "book/appendix.py", "book/cli.py", "book/runner.py", "book/determinism.py",
                   "bench/lm.py", "bench/bandit.py"):
        edit(root / "src" / "rlvr_dynamics" / module)
    assert build(executed, builds) == ([], 0)


def test_code_dependencies_follow_imports_transitively():
    spec = NOTEBOOKS["figure2"]
    files = {p.relative_to(REAL_ROOT).as_posix() for p in runner.code_dependencies(spec, REAL_ROOT)}
    package = "src/rlvr_dynamics/"
    assert {package + f for f in ("__init__.py", "chapters/figure2.py", "lm/grpo.py", "lm/warmup.py",
                                  "lm/experiment.py", "book/registry.py", "book/params.py", "book/results.py",
                                  "book/plotting.py", "config.py", "files.py")} <= files
    assert not {package + f for f in ("book/runner.py", "book/cli.py", "book/browser.py", "bench/lm.py")} & files


def test_a_result_rewritten_by_a_run_elsewhere_is_re_executed_not_served(project):
    """A papermill run pointed at build/outputs/figure1 replaced its metrics.json: the cache names the
    file, re-executes figure1 (only), and the appendix reports the book's own run again."""
    root, executed, builds = project
    build(executed, builds)
    page = root / "build" / "site" / "book" / "reproducibility.md"
    assert all(escape_markdown(f"{name} holds") in page.read_text() for name in NOTEBOOKS)
    metrics_path = root / "build" / "outputs" / "figure1" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["claims"][0]["claim"] = "a claim recorded by a foreign run"
    metrics["parameters"]["seed"] = metrics["seed"] = 5
    metrics_path.write_text(json.dumps(metrics))
    log = []
    assert build(executed, builds, log)[0] == ["figure1"]
    assert any("figure1" in line and "build/outputs/figure1/metrics.json changed" in line for line in log), log
    assert "a claim recorded by a foreign run" not in page.read_text()
    assert json.loads(metrics_path.read_text())["seed"] == 0


@pytest.mark.parametrize("damage, reason", [
    ("garbage metrics", "metrics.json is damaged: not valid JSON"),
    ("empty metrics", "metrics.json is damaged: empty"),
    ("truncated notebook", "build/executed/two_stage.ipynb changed"),
    ("deleted figure", "two_stage.png is missing"),
    ("deleted notebook", "build/executed/two_stage.ipynb is missing"),
    ("damaged record", "provenance.json is damaged"),
    ("lost record", "no record of the execution"),
    ("extra figure", "two_stage-extra.svg was added"),
])
def test_a_damaged_or_incomplete_result_is_named_and_re_executed(project, damage, reason):
    root, executed, builds = project
    build(executed, builds)
    outputs, notebook = root / "build" / "outputs" / "two_stage", root / "build" / "executed" / "two_stage.ipynb"
    if damage == "garbage metrics":
        (outputs / "metrics.json").write_bytes(b"{not json")
    elif damage == "empty metrics":
        (outputs / "metrics.json").write_bytes(b"")
    elif damage == "truncated notebook":
        notebook.write_bytes(notebook.read_bytes()[:100])
    elif damage == "deleted figure":
        (outputs / "two_stage.png").unlink()
    elif damage == "deleted notebook":
        notebook.unlink()
    elif damage == "damaged record":
        (outputs / runner.PROVENANCE).write_bytes(b"\xff\xfe")
    elif damage == "lost record":
        (outputs / runner.PROVENANCE).unlink()
    else:
        (outputs / "two_stage-extra.svg").write_text("<svg/>")
    log = []
    assert build(executed, builds, log)[0] == ["two_stage"]
    assert any(line.startswith("[execute]  two_stage") and reason in line for line in log), log
    assert build(executed, builds) == ([], 0)


def test_a_moved_checkout_serves_its_cache(project, tmp_path, monkeypatch):
    """Nothing in the cache (key, provenance) holds the checkout's absolute path."""
    root, executed, builds = project
    build(executed, builds)
    moved = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    monkeypatch.setattr(runner, "project_root", lambda: moved)
    assert build(executed, builds) == ([], 0)


def test_a_run_that_names_no_output_folder_writes_its_own_not_the_books():
    """papermill or Jupyter with the parameters cell's output_dir = '' write to runs/NAME-PRESET."""
    spec = NOTEBOOKS["gradient_gap"]
    settings, _ = spec.resolve({"output_dir": ""})
    assert settings.output_dir == REAL_ROOT / "runs" / "gradient_gap-ci"
    settings, _ = spec.resolve({"preset": "paper"})
    assert settings.output_dir == REAL_ROOT / "runs" / "gradient_gap-paper"


def test_the_books_static_files_are_staged_where_jupyter_book_loads_them(project):
    """Jupyter Book 1 adds every .css/.js of the site's _static/ to every page: book/_static is staged
    there, a changed script rebuilds the book without executing anything, and a file removed from
    book/_static leaves the staged copy too."""
    root, executed, builds = project
    build(executed, builds)
    site = root / "build" / "site"
    assert {"figures.js", "figures.css", "maths.css"} <= {path.name for path in (site / "_static").iterdir()}
    assert "overflow-x: auto" in (site / "_static" / "maths.css").read_text()
    (root / "book" / "_static" / "figures.js").write_text("/* changed */")
    assert build(executed, builds) == ([], 1)
    assert (site / "_static" / "figures.js").read_text() == "/* changed */"
    (root / "book" / "_static" / "maths.css").unlink()
    build(executed, builds)
    assert not (site / "_static" / "maths.css").exists()


def test_execution_order_names_every_notebook_once():
    assert sorted(runner.EXECUTION_ORDER) == sorted(NOTEBOOKS)
    # two_stage and boundary read the LM warm-up many_prompts caches: they never start before it
    order = runner.EXECUTION_ORDER
    assert order.index("many_prompts") < min(order.index("two_stage"), order.index("boundary"))
    assert order[0] == "figure2"  # the longest


def test_nbval_re_executes_the_notebooks_longest_first(tmp_path):
    executed = tmp_path / "build" / "executed"
    executed.mkdir(parents=True)
    for name in ("gradient_gap", "zeta_extra", "figure2", "alpha_extra", "many_prompts"):
        (executed / f"{name}.ipynb").write_text("{}")
    (executed / "figure2.key").write_text("")
    assert [path.name for path in runner.executed_notebooks(tmp_path)] == [
        "figure2.ipynb", "many_prompts.ipynb", "gradient_gap.ipynb", "alpha_extra.ipynb", "zeta_extra.ipynb"]


def test_the_book_injects_no_path_of_the_building_machine(tmp_path):
    """The output folder is injected relative to the repository root, so the executed notebook and
    the cache key are the same in any checkout; the notebook resolves it to build/outputs/NAME."""
    spec = NOTEBOOKS["gradient_gap"]
    for root in (REAL_ROOT, tmp_path):
        parameters = runner.book_parameters(spec, "ci", root)
        assert parameters["output_dir"] == "build/outputs/gradient_gap"
        assert str(root) not in json.dumps(parameters)
    settings, _ = spec.resolve(runner.book_parameters(spec, "ci", REAL_ROOT))
    assert settings.output_dir == REAL_ROOT / "build" / "outputs" / "gradient_gap"


def test_the_landing_page_is_generated_from_the_runs(project):
    root, executed, builds = project
    build(executed, builds)
    glance = (root / "build" / "site" / landing.GLANCE_PAGE).read_text()
    assert "claims checked" in glance and "{ref}`gg-sec-identity`" in glance


def papermill_notebook():
    """An executed notebook as papermill writes it: the parameters cell, the injected cell, the scratch paths."""
    cells = [nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("seed = 3", metadata={"tags": ["injected-parameters"]}),
             nbformat.v4.new_code_cell("chapter = 1", metadata={"tags": ["hide-input"]})]
    metadata = {"papermill": {"input_path": "/tmp/rlvr-gradient_gap-x/gradient_gap.ipynb",
                              "output_path": "/tmp/rlvr-gradient_gap-x/gradient_gap.executed.ipynb",
                              "parameters": {"seed": 3, "output_dir": "build/outputs/gradient_gap"}}}
    return json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=cells, metadata=metadata)))


def test_scrub_paths_and_hide_parameter_cells_by_hand():
    notebook = papermill_notebook()
    assert "/tmp/" in json.dumps(notebook)  # what papermill records
    runner.scrub_paths(notebook, "notebooks/gradient_gap.md")
    assert notebook["metadata"]["papermill"]["input_path"] == "notebooks/gradient_gap.md"
    assert notebook["metadata"]["papermill"]["output_path"] is None and "/tmp/" not in json.dumps(notebook)
    runner.hide_parameter_cells(runner.hide_parameter_cells(notebook))  # twice: still one tag
    assert [cell["metadata"]["tags"] for cell in notebook["cells"]] == [
        ["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], ["hide-input"]]
    assert runner.scrub_paths({"metadata": {}}, "x") == {"metadata": {}}  # not a papermill notebook: unchanged


def test_the_staged_book_hides_parameter_cells_names_no_path_and_carries_the_style_sheet(project):
    root, executed, builds = project
    build(executed, builds)
    executed_notebook = root / "build" / "executed" / "gradient_gap.ipynb"
    executed_notebook.write_text(json.dumps(papermill_notebook()))
    site = runner.stage_site(root)
    staged = json.loads((site / "notebooks" / "gradient_gap.ipynb").read_text())
    assert all("remove-cell" in cell["metadata"]["tags"] for cell in staged["cells"][:2])
    assert "/tmp/" not in json.dumps(staged) and str(root) not in json.dumps(staged)
    style = (REAL_ROOT / "book" / "_static" / "chapter.css").read_text()
    assert (site / "_static" / "chapter.css").read_text() == style


def test_the_cache_key_follows_the_committed_data_each_notebook_reads(project):
    """Every rerun box quotes the preset timings; the performance page reads every benchmark record."""
    root, _, _ = project
    specs = [NOTEBOOKS[name] for name in ("figure1", "performance")]
    keys = lambda: [runner.cache_key(spec, {"seed": 0}, root) for spec in specs]  # noqa: E731
    before = keys()
    (root / "data" / "benchmarks" / "presets").mkdir(parents=True)
    (root / "data" / "benchmarks" / "presets" / "cpu.json").write_text('{"chapters": {}}')
    with_presets = keys()
    assert all(a != b for a, b in zip(before, with_presets, strict=True))
    (root / "data" / "benchmarks" / "bandit.json").write_text("{}")
    with_bandit = keys()
    assert with_bandit[0] == with_presets[0] and with_bandit[1] != with_presets[1]
