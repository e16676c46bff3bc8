"""The reproducibility appendix: every figure and claim of the metrics, commands that reproduce
the recorded parameters."""

import shlex

import pytest

from rlvr_dynamics.book import appendix, cli
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.book.results import ClaimLog, write_metrics


def recorded_run(tmp_path, name, overrides=None, claims=(("a claim", [0.5, 2.0]),), figures=("plot.png", "plot.svg")):
    """metrics.json of a (pretend) run of ``name`` with ``overrides``, read back as the appendix reads it."""
    spec = NOTEBOOKS[name]
    values = {"preset": "ci", "seed": 7, "device": "cpu", "output_dir": str(tmp_path / name), **(overrides or {})}
    settings, config = spec.resolve(values, check_device=False)  # (no memory check: a pretend run)
    log = ClaimLog()
    for claim, margins in claims:
        log.check(claim, margins, enforced=False)
    write_metrics(settings.output_dir, name, settings, config, "cpu", {}, log, list(figures))
    return appendix.load_metrics(tmp_path, [name])[name]


def resolved_from_command(command):
    """What `rlvr-book run` would execute for ``command``: (settings, config)."""
    words = shlex.split(command)
    assert words[:2] == [".venv/bin/rlvr-book", "run"]
    args = cli.make_parser().parse_args(words[1:])
    spec = NOTEBOOKS[args.name]
    return spec.resolve(cli._collect_parameters(spec, args), strict=True, check_device=False)


@pytest.mark.parametrize("name, overrides", [
    ("gradient_gap", {}),
    ("figure1", {"step_size": 1.0, "fallback": "nearest", "arms": 5}),
    ("figure2", {"learning_rates": "1e-4,3e-4,0.1", "loss_types": "dr_grpo,grpo,dr_grpo", "temperature": 0.7}),
    ("two_stage", {"reward_model": "bernoulli", "initial_optimal_grid": "0.01,0.05"}),
    ("token_theory", {"preset": "paper", "verifier": "contains"}),
])
def test_the_command_reproduces_the_recorded_parameters(tmp_path, name, overrides):
    metrics = recorded_run(tmp_path, name, overrides)
    command = appendix.regenerate_command(metrics)
    settings, config = resolved_from_command(command)
    recorded = {k: v for k, v in metrics["parameters"].items() if k not in ("output_dir",)}
    rerun = {"preset": settings.preset, "seed": settings.seed, "device": settings.device, **vars(config)}
    assert rerun == recorded
    assert appendix.changed_parameters(NOTEBOOKS[name], metrics) == {
        k: v for k, v in overrides.items() if k != "preset"}


def test_the_page_lists_every_figure_and_claim_with_its_chapter(tmp_path):
    runs = {
        "gradient_gap": recorded_run(tmp_path, "gradient_gap", claims=[("identity | holds", [0.0, 1.0]),
                                                                       ("bound $x$ *tight*", [-0.25])]),
        "figure1": recorded_run(tmp_path, "figure1", {"step_size": 1.0},
                                figures=("figure1.png", "figure1.svg", "seeds.png", "seeds.svg")),
    }
    robustness = {"gradient_gap": {"claims": [{"claim": "identity | holds", "held": 10, "of": 10, "worst_margin": 0.0},
                                              {"claim": "bound $x$ *tight*", "held": 7, "of": 10,
                                               "worst_margin": -0.5}]}}
    page = appendix.render_appendix(runs, robustness)
    assert "**2 chapters, 3 figures, 3 checked claims, 2 of which hold.**" in page
    for stem in ("plot", "figure1", "seeds"):
        assert f"| `{stem}` | PNG · SVG |" in page
    table = page[page.index(":::{list-table}"):]
    rows = [row.split("\n  - ") for row in table.split("\n* - ")[2:]]  # after the header row
    assert len(rows) == 3
    assert rows[0] == ["{ref}`gradient_\u200bgap <claims-gradient-gap>`", "identity \\| holds", "yes", "0", "2", "no",
                       "10 of 10", "0"]
    assert rows[1][1:] == ["bound \\$x\\$ \\*tight\\*", "**no**", "-0.25", "1", "no", "**7 of 10**", "-0.5"]
    assert rows[2][:4] == ["{ref}`figure1 <claims-figure1>`", "a claim", "yes", "0.5"]
    assert "2 claims checked: {ref}`the chapter's table of claims <claims-gradient-gap>`." in page
    assert rows[2][5:7] == ["no", "—"] and rows[2][-1].startswith("—\n:::")  # no robustness table for figure1
    assert "-p step_size 1.0" in page and "Parameters that differ from the preset: `step_size = 1.0`." in page
    assert "seed 7, device `cpu`" in page and "run time " in page
    section = page[page.index("### REINFORCE on contextual bandits"):]
    listed = section.split("All parameters of the run: ", 1)[1].split("\n", 1)[0]
    for name, value in runs["figure1"]["parameters"].items():
        if name not in ("preset", "seed", "device", "output_dir"):
            assert f"`{name} = {value!r}`" in listed


def test_missing_metrics_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="figure1/metrics.json is missing"):
        appendix.load_metrics(tmp_path, ["figure1"])


def test_escaping_keeps_text_as_typed():
    assert appendix.escape_markdown("a|b $x$ *y* [z] <w> \\") == "a\\|b \\$x\\$ \\*y\\* \\[z\\] \\<w\\> \\\\"


def test_every_chapter_labels_its_claims_section_for_the_appendix():
    """The appendix links to ``claims-NAME``: each notebook puts that label right above its heading
    "Claims checked in this chapter" (a missing one fails the strict build; this names it first)."""
    from rlvr_dynamics.files import project_root

    assert appendix.claims_label("two_stage") == "claims-two-stage"
    for name, spec in NOTEBOOKS.items():
        text = (project_root() / spec.source).read_text(encoding="utf-8")
        assert f"({appendix.claims_label(name)})=\n## Claims checked in this chapter\n" in text, name


def test_large_case_counts_are_short_and_can_break():
    """A seven-digit count overflowed the narrow column on a 1400 px page: counts from 10⁵ on are in k or M."""
    assert [appendix._count(n) for n in (12, 99_999, 189_320, 1_860_000)] == ["12", "99999", "189 k", "1.86 M"]
